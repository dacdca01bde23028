//! S3 backups of every policy the engine overwrites, written before the write and read
//! back for `restore`; and the record of the writes KMS accepted, read back by the flap
//! guard and to never repeat a write whose verification failed.
//!
//! Layout, so that one key's objects list in time order and "writes since T" is a single
//! ListObjectsV2 with `StartAfter`:
//! - backups: `s3://BUCKET/PREFIX/ACCOUNT/REGION/KEY_ID/YYYYMMDDTHHMMSS.mmmZ.json`;
//! - writes: `s3://BUCKET/PREFIX/writes/ACCOUNT/REGION/KEY_ID/YYYYMMDDTHHMMSS.mmmZ.ok.json`
//!   (`.mismatch.json` when the re-read was not what was written);
//! - claims: `s3://BUCKET/PREFIX/claims/ACCOUNT/REGION/KEY_ID/DRIFT.json`, created only when
//!   absent (`If-None-Match: *`) and deleted when the write is done, so that of concurrent
//!   invocations that find the same drift only one writes.

use std::time::SystemTime;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use krg_engine::error::{CallError, ErrorKind};
use krg_engine::key::KeyArn;
use krg_engine::ledger::MemoryLedger;
use krg_engine::outcome::rfc3339;
use krg_engine::ports::{Backup, BackupStore, Claimed, WriteClaim, WriteHistory, WriteRecord};

use super::{call_error, get_object, split_s3_url};

/// Backups in one S3 bucket.
#[derive(Clone)]
pub struct S3Backups {
    client: Client,
    bucket: String,
    prefix: String,
}

/// The backup document as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    key_arn: String,
    taken_at: String,
    reason: String,
    event_id: Option<String>,
    event_name: String,
    policy: String,
}

/// The write record as stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredWrite {
    key_arn: String,
    written_at: String,
    event_id: Option<String>,
    event_name: String,
    backup: String,
    written: String,
    mismatch: Option<String>,
}

/// The claim as stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredClaim {
    key_arn: String,
    drift: String,
    claimed_at: String,
    event_id: Option<String>,
    event_name: String,
}

const MISMATCH_SUFFIX: &str = ".mismatch.json";

fn key_path(key: &KeyArn) -> String {
    format!("{}/{}/{}/", key.account(), key.region(), key.key_id())
}

/// An RFC 3339 time read from a stored document; `what` names the field in the error.
fn parse_time(text: &str, what: &str) -> Result<SystemTime, BackupFormatError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).into())
        .map_err(|e| BackupFormatError(format!("{what}: {e}")))
}

fn stamp(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
}

impl S3Backups {
    /// Backups in `bucket` under `prefix` (may be empty).
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        let mut prefix: String = prefix.into();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self {
            client,
            bucket: bucket.into(),
            prefix,
        }
    }

    /// `PREFIX/ACCOUNT/REGION/KEY_ID/`: where the key's backups are.
    fn key_prefix(&self, key: &KeyArn) -> String {
        format!("{}{}", self.prefix, key_path(key))
    }

    /// `PREFIX/writes/ACCOUNT/REGION/KEY_ID/`: where the key's write records are.
    fn writes_prefix(&self, key: &KeyArn) -> String {
        format!("{}writes/{}", self.prefix, key_path(key))
    }

    /// `PREFIX/claims/ACCOUNT/REGION/KEY_ID/DRIFT.json`: the claim on one drift's write.
    fn claim_object(&self, claim: &WriteClaim) -> String {
        format!(
            "{}claims/{}{}.json",
            self.prefix,
            key_path(&claim.key),
            claim.drift
        )
    }

    fn location(&self, object: &str) -> String {
        format!("s3://{}/{object}", self.bucket)
    }

    /// Puts `doc` as pretty JSON at `object`; returns its `s3://` location. `if_absent`:
    /// only when no object of that name exists (else a [`ErrorKind::Conflict`]).
    async fn put_json(
        &self,
        object: String,
        doc: &impl Serialize,
        if_absent: bool,
    ) -> Result<String, CallError> {
        let location = self.location(&object);
        let body = serde_json::to_vec_pretty(doc).expect("a stored document always serialises");
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(object)
            .content_type("application/json")
            .set_if_none_match(if_absent.then(|| "*".to_owned()))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| call_error("PutObject", &location, e))?;
        Ok(location)
    }

    /// The backups of one key, oldest first, as `s3://` locations.
    pub async fn list(&self, key: &KeyArn) -> Result<Vec<String>, CallError> {
        self.keys_after(self.key_prefix(key), None)
            .await
            .map(|keys| keys.iter().map(|k| self.location(k)).collect())
    }

    async fn keys_after(
        &self,
        prefix: String,
        after: Option<String>,
    ) -> Result<Vec<String>, CallError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .set_start_after(after)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| call_error("ListObjectsV2", self.location(&prefix), e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    /// Reads a backup from `s3://bucket/key` (any bucket the caller may read).
    pub async fn load(&self, location: &str) -> Result<Backup, CallError> {
        let (bucket, key) = split_s3_url(location).ok_or_else(|| {
            CallError::new(
                "GetObject",
                location,
                ErrorKind::Invalid,
                "expected s3://BUCKET/KEY",
            )
        })?;
        let bytes = get_object(&self.client, bucket, key).await?;
        parse_backup(&bytes)
            .map_err(|e| CallError::new("GetObject", location, ErrorKind::Invalid, e.to_string()))
    }
}

/// Why a document in the backup bucket (a backup, a write record, a claim) is not readable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackupFormatError(String);

/// Reads a backup document (from S3 or a local file).
pub fn parse_backup(bytes: &[u8]) -> Result<Backup, BackupFormatError> {
    let stored: Stored = serde_json::from_slice(bytes)
        .map_err(|e| BackupFormatError(format!("not a kms-replica-guard backup: {e}")))?;
    let key = stored
        .key_arn
        .parse()
        .map_err(|e| BackupFormatError(format!("backup names a bad key ARN: {e}")))?;
    let taken_at = parse_time(&stored.taken_at, "backup has a bad taken_at")?;
    Ok(Backup {
        key,
        policy: stored.policy,
        reason: stored.reason,
        event_id: stored.event_id,
        event_name: stored.event_name,
        taken_at,
    })
}

impl BackupStore for S3Backups {
    async fn save(&self, backup: &Backup) -> Result<String, CallError> {
        let object = format!(
            "{}{}.json",
            self.key_prefix(&backup.key),
            stamp(backup.taken_at)
        );
        let doc = Stored {
            key_arn: backup.key.to_string(),
            taken_at: rfc3339(backup.taken_at),
            reason: backup.reason.clone(),
            event_id: backup.event_id.clone(),
            event_name: backup.event_name.clone(),
            policy: backup.policy.clone(),
        };
        self.put_json(object, &doc, false).await
    }

    async fn record_write(&self, write: &WriteRecord) -> Result<(), CallError> {
        let status = if write.mismatch.is_some() {
            MISMATCH_SUFFIX
        } else {
            ".ok.json"
        };
        let object = format!(
            "{}{}{status}",
            self.writes_prefix(&write.key),
            stamp(write.at)
        );
        let doc = StoredWrite {
            key_arn: write.key.to_string(),
            written_at: rfc3339(write.at),
            event_id: write.event_id.clone(),
            event_name: write.event_name.clone(),
            backup: write.backup.clone(),
            written: write.written.clone(),
            mismatch: write.mismatch.clone(),
        };
        self.put_json(object, &doc, false).await.map(drop)
    }

    /// One ListObjectsV2; one GetObject more only when the latest write failed verification.
    async fn writes_since(
        &self,
        key: &KeyArn,
        since: SystemTime,
    ) -> Result<WriteHistory, CallError> {
        let prefix = self.writes_prefix(key);
        let after = format!("{prefix}{}", stamp(since));
        let records = self.keys_after(prefix, Some(after)).await?;
        let last_mismatch = match records.last() {
            Some(last) if last.ends_with(MISMATCH_SUFFIX) => {
                let location = self.location(last);
                let bytes = get_object(&self.client, &self.bucket, last).await?;
                Some(parse_write(&bytes).map_err(|m| {
                    CallError::new("GetObject", &location, ErrorKind::Invalid, m.to_string())
                })?)
            }
            _ => None,
        };
        Ok(WriteHistory {
            writes: records.len(),
            last_mismatch,
        })
    }

    /// One conditional PutObject; one GetObject more when another invocation holds it.
    async fn claim(&self, claim: &WriteClaim) -> Result<Claimed, CallError> {
        let doc = StoredClaim {
            key_arn: claim.key.to_string(),
            drift: claim.drift.clone(),
            claimed_at: rfc3339(claim.at),
            event_id: claim.event_id.clone(),
            event_name: claim.event_name.clone(),
        };
        // Twice: the holder may release it between the refused put and the read.
        for _ in 0..2 {
            match self.put_json(self.claim_object(claim), &doc, true).await {
                Ok(_) => return Ok(Claimed::Won),
                Err(e) if e.kind == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
            if let Some(holder) = self.holder(claim).await? {
                return Ok(Claimed::Held(Box::new(holder)));
            }
        }
        Err(CallError::new(
            "PutObject",
            self.location(&self.claim_object(claim)),
            ErrorKind::Conflict,
            "the write claim was refused twice and its holder could not be read either time: taken and released by concurrent invocations, or the function's role cannot read claims (it needs s3:GetObject on the claims and s3:ListBucket on the bucket, else S3 answers 403 for a released claim)",
        ))
    }

    async fn release(&self, claim: &WriteClaim) -> Result<(), CallError> {
        let object = self.claim_object(claim);
        let location = self.location(&object);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(object)
            .send()
            .await
            .map_err(|e| call_error("DeleteObject", &location, e))?;
        Ok(())
    }
}

impl S3Backups {
    /// Reads the claim that holds `claim`'s name; `None` when it is gone (released). S3
    /// answers a read of a missing object with 404 only to a caller allowed to list the
    /// bucket, and with 403 (AccessDenied) otherwise: both mean "released" here. The
    /// caller's two attempts bound what a real denial costs, and its error names both causes.
    async fn holder(&self, claim: &WriteClaim) -> Result<Option<WriteClaim>, CallError> {
        let object = self.claim_object(claim);
        let bytes = match get_object(&self.client, &self.bucket, &object).await {
            Ok(bytes) => bytes,
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::AccessDenied) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        parse_claim(&bytes).map(Some).map_err(|m| {
            CallError::new(
                "GetObject",
                self.location(&object),
                ErrorKind::Invalid,
                m.to_string(),
            )
        })
    }
}

fn parse_claim(bytes: &[u8]) -> Result<WriteClaim, BackupFormatError> {
    let stored: StoredClaim = serde_json::from_slice(bytes)
        .map_err(|e| BackupFormatError(format!("not a kms-replica-guard write claim: {e}")))?;
    Ok(WriteClaim {
        key: stored
            .key_arn
            .parse()
            .map_err(|e| BackupFormatError(format!("write claim names a bad key ARN: {e}")))?,
        drift: stored.drift,
        at: parse_time(&stored.claimed_at, "write claim has a bad claimed_at")?,
        event_id: stored.event_id,
        event_name: stored.event_name,
    })
}

fn parse_write(bytes: &[u8]) -> Result<WriteRecord, BackupFormatError> {
    let stored: StoredWrite = serde_json::from_slice(bytes)
        .map_err(|e| BackupFormatError(format!("not a kms-replica-guard write record: {e}")))?;
    Ok(WriteRecord {
        key: stored
            .key_arn
            .parse()
            .map_err(|e| BackupFormatError(format!("write record names a bad key ARN: {e}")))?,
        at: parse_time(&stored.written_at, "write record has a bad written_at")?,
        event_id: stored.event_id,
        event_name: stored.event_name,
        backup: stored.backup,
        written: stored.written,
        mismatch: stored.mismatch,
    })
}

/// The backup store the configuration asks for: S3 when `BACKUP_BUCKET` is set, else none.
pub enum Backups {
    /// No bucket: the previous policy is only logged; the write history and claims are per
    /// process.
    Off(MemoryLedger),
    /// Backups in S3.
    S3(S3Backups),
}

impl Default for Backups {
    fn default() -> Self {
        Backups::Off(MemoryLedger::default())
    }
}

impl BackupStore for Backups {
    async fn save(&self, backup: &Backup) -> Result<String, CallError> {
        match self {
            Backups::Off(memory) => memory.save(backup).await,
            Backups::S3(s3) => s3.save(backup).await,
        }
    }
    async fn record_write(&self, write: &WriteRecord) -> Result<(), CallError> {
        match self {
            Backups::Off(memory) => memory.record_write(write).await,
            Backups::S3(s3) => s3.record_write(write).await,
        }
    }
    async fn writes_since(
        &self,
        key: &KeyArn,
        since: SystemTime,
    ) -> Result<WriteHistory, CallError> {
        match self {
            Backups::Off(memory) => memory.writes_since(key, since).await,
            Backups::S3(s3) => s3.writes_since(key, since).await,
        }
    }
    async fn claim(&self, claim: &WriteClaim) -> Result<Claimed, CallError> {
        match self {
            Backups::Off(memory) => memory.claim(claim).await,
            Backups::S3(s3) => s3.claim(claim).await,
        }
    }
    async fn release(&self, claim: &WriteClaim) -> Result<(), CallError> {
        match self {
            Backups::Off(memory) => memory.release(claim).await,
            Backups::S3(s3) => s3.release(claim).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use std::time::{Duration, UNIX_EPOCH};

    fn claim() -> WriteClaim {
        WriteClaim {
            key: "arn:aws:kms:us-west-2:111122223333:key/mrk-1"
                .parse()
                .unwrap(),
            drift: "d".repeat(64),
            at: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            event_id: Some("e-1".into()),
            event_name: "PutKeyPolicy".into(),
        }
    }

    const REFUSED: &str = "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>";
    const DENIED: &str = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";

    #[tokio::test]
    async fn a_claim_released_between_the_refused_put_and_the_read_is_taken_even_when_s3_answers_403()
     {
        // Without s3:ListBucket, S3 answers GetObject of a missing object with 403, not 404.
        let refused = mock!(Client::put_object)
            .sequence()
            .http_status(412, Some(REFUSED.into()))
            .build();
        let gone = mock!(Client::get_object)
            .sequence()
            .http_status(403, Some(DENIED.into()))
            .build();
        let taken = mock!(Client::put_object).then_output(|| PutObjectOutput::builder().build());
        let client = mock_client!(aws_sdk_s3, RuleMode::Sequential, &[&refused, &gone, &taken]);
        let store = S3Backups::new(client, "bucket", "kms-replica-guard/");
        assert_eq!(store.claim(&claim()).await, Ok(Claimed::Won));
        assert_eq!(taken.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_claim_that_can_never_be_read_fails_bounded_naming_both_causes() {
        let refused = mock!(Client::put_object)
            .sequence()
            .http_status(412, Some(REFUSED.into()))
            .times(2)
            .build();
        let denied = mock!(Client::get_object)
            .sequence()
            .http_status(403, Some(DENIED.into()))
            .times(2)
            .build();
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, &[&refused, &denied]);
        let store = S3Backups::new(client, "bucket", "kms-replica-guard/");
        let e = store.claim(&claim()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        assert!(e.to_string().contains("s3:ListBucket"), "{e}");
        assert_eq!((refused.num_calls(), denied.num_calls()), (2, 2));
    }

    #[test]
    fn stamps_sort_in_time_order_whatever_the_fraction() {
        let a = UNIX_EPOCH + Duration::from_millis(1_795_000_000_000);
        let b = a + Duration::from_millis(5);
        let c = a + Duration::from_secs(1);
        let (sa, sb, sc) = (stamp(a), stamp(b), stamp(c));
        assert!(sa < sb && sb < sc, "{sa} {sb} {sc}");
        assert_eq!(sa.len(), sc.len());
    }

    #[test]
    fn a_backup_document_round_trips() {
        let doc = serde_json::json!({
            "key_arn": "arn:aws:kms:us-west-2:111122223333:key/mrk-1",
            "taken_at": "2026-11-22T14:30:15.123+00:00",
            "reason": "drift", "event_id": null, "event_name": "sweep", "policy": "{}"
        });
        let b = parse_backup(doc.to_string().as_bytes()).unwrap();
        assert_eq!(b.key.key_id(), "mrk-1");
        assert_eq!(stamp(b.taken_at), "20261122T143015.123Z");
        assert!(
            parse_backup(b"{}")
                .unwrap_err()
                .to_string()
                .contains("not a kms-replica-guard backup")
        );
    }
}
