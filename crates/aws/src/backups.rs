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
//!
//! History is dated by S3, not by names or bodies: anyone who can put an object under the
//! prefix can choose both. Flap counting, a claim's age and "the latest backup" use the
//! object's `LastModified`; a name or body that dates an object after S3 stored it (beyond
//! [`CLOCK_SKEW`]), a name the guard does not give, or a body that is not the guard's
//! document for this key is ignored and logged as suspicious. Names still bound a listing
//! (`StartAfter`), so the calls stay one ListObjectsV2 per flap check.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::primitives::DateTime as S3Time;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use krg_engine::error::{Api, CallError, ErrorKind};
use krg_engine::key::KeyArn;
use krg_engine::ledger::MemoryLedger;
use krg_engine::outcome::rfc3339;
use krg_engine::ports::{Backup, BackupStore, Claimed, WriteClaim, WriteHistory, WriteRecord};
use krg_engine::reconcile::CLAIM_TTL;

use super::{call_error, split_s3_url};

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

const OK_SUFFIX: &str = ".ok.json";
const MISMATCH_SUFFIX: &str = ".mismatch.json";
const BACKUP_SUFFIX: &str = ".json";
const STAMP_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// How much later than S3's `LastModified` a document may date itself (in its name or body)
/// and still be taken as the guard's: the guard stamps a document just before it puts it,
/// and Lambda's and S3's clocks agree within seconds. A document dated later was not put
/// when it says: it is ignored and logged as suspicious.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// An object of the bucket, dated by S3.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    key: String,
    modified: SystemTime,
}

/// A GetObject's body with S3's facts about it.
struct Fetched {
    bytes: Vec<u8>,
    modified: SystemTime,
    etag: Option<String>,
}

/// Why an object under the guard's prefix is not taken as the guard's own document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Suspicion {
    /// Its name or body dates it after S3 stored it.
    FutureDated { claimed: SystemTime },
    /// Its name is not one the guard gives (`STAMP.json`, `STAMP.ok.json`, ...).
    ForeignName,
    /// Its body is not the guard's document, or is about another key or drift.
    ForeignBody(String),
}

impl fmt::Display for Suspicion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suspicion::FutureDated { claimed } => write!(
                f,
                "it is dated {} but S3 stored it earlier, by more than the {} s clock skew allowed",
                rfc3339(*claimed),
                CLOCK_SKEW.as_secs()
            ),
            Suspicion::ForeignName => f.write_str("its name is not one the guard gives"),
            Suspicion::ForeignBody(why) => write!(f, "its body is not the guard's: {why}"),
        }
    }
}

/// Whether a document that S3 stored at `modified` dates itself `claimed` too late to have
/// been put by the guard.
fn future_dated(claimed: SystemTime, modified: SystemTime) -> bool {
    claimed > modified + CLOCK_SKEW
}

/// Logs an object that is ignored because it does not look like the guard's own.
fn suspicious(key: &KeyArn, kind: &str, location: &str, modified: SystemTime, why: &Suspicion) {
    let claimed = match why {
        Suspicion::FutureDated { claimed } => rfc3339(*claimed),
        _ => "-".to_owned(),
    };
    tracing::warn!(
        key_arn = %key,
        kind,
        object = %location,
        claimed_at = %claimed,
        last_modified = %rfc3339(modified),
        reason = %why,
        "suspicious object in the backup bucket ignored: forged or tampered with (only the guard should write under its prefix)"
    );
}

/// The time a name gives (`STAMP` and one of `suffixes`, directly under `prefix`), when it
/// is exactly a stamp the guard writes.
fn named_time(object: &str, prefix: &str, suffixes: &[&str]) -> Option<SystemTime> {
    let name = object.strip_prefix(prefix)?;
    let text = suffixes.iter().find_map(|s| name.strip_suffix(s))?;
    let time: SystemTime = NaiveDateTime::parse_from_str(text, STAMP_FORMAT)
        .ok()?
        .and_utc()
        .into();
    (stamp(time) == text).then_some(time)
}

/// S3's date of an object; the epoch when S3 gave none (never, in practice), so that such
/// an object is the oldest and outside every window.
fn s3_time(t: Option<&S3Time>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(UNIX_EPOCH)
}

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
    DateTime::<Utc>::from(t).format(STAMP_FORMAT).to_string()
}

/// The condition of a PutObject.
enum Put<'a> {
    /// Whatever is there.
    Always,
    /// Only when no object of that name exists (`If-None-Match: *`).
    IfAbsent,
    /// Only over the object with this ETag (`If-Match`).
    IfMatch(&'a str),
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

    /// Puts `doc` as pretty JSON at `object`; returns its `s3://` location. A condition that
    /// does not hold is a [`ErrorKind::Conflict`] (or [`ErrorKind::NotFound`] for `IfMatch`
    /// of a missing object).
    async fn put_json(
        &self,
        object: String,
        doc: &impl Serialize,
        condition: Put<'_>,
    ) -> Result<String, CallError> {
        let location = self.location(&object);
        let body = serde_json::to_vec_pretty(doc).expect("a stored document always serialises");
        let (if_none_match, if_match) = match condition {
            Put::Always => (None, None),
            Put::IfAbsent => (Some("*".to_owned()), None),
            Put::IfMatch(etag) => (None, Some(etag.to_owned())),
        };
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(object)
            .content_type("application/json")
            .set_if_none_match(if_none_match)
            .set_if_match(if_match)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| call_error(Api::PutObject, &location, e))?;
        Ok(location)
    }

    /// The backups of one key, oldest first by S3's `LastModified`, as `s3://` locations;
    /// an object whose name is not one the guard gives, or dates it after S3 stored it, is
    /// left out and logged.
    pub async fn list(&self, key: &KeyArn) -> Result<Vec<String>, CallError> {
        Ok(self
            .backups_of(key)
            .await?
            .iter()
            .map(|o| self.location(&o.key))
            .collect())
    }

    /// The newest backup of one key by S3's `LastModified`, with its location. One
    /// ListObjectsV2 (per page) and one GetObject, plus one GetObject per newer object
    /// skipped because its body is not the guard's backup of this key or dates it after S3
    /// stored it (each logged).
    pub async fn latest(&self, key: &KeyArn) -> Result<Option<(Backup, String)>, CallError> {
        let mut backups = self.backups_of(key).await?;
        while let Some(newest) = backups.pop() {
            let location = self.location(&newest.key);
            let fetched = self.fetch(&newest.key).await?;
            match judge_backup(key, &fetched) {
                Ok(backup) => return Ok(Some((backup, location))),
                Err(why) => suspicious(key, "backup", &location, fetched.modified, &why),
            }
        }
        Ok(None)
    }

    /// The key's backups with names the guard gives, oldest first by `LastModified`.
    async fn backups_of(&self, key: &KeyArn) -> Result<Vec<Listed>, CallError> {
        let prefix = self.key_prefix(key);
        let mut listed = self.objects_after(&prefix, None).await?;
        listed.retain(|o| self.named_fairly(key, "backup", o, &prefix, &[BACKUP_SUFFIX]));
        listed.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
        Ok(listed)
    }

    /// Whether `object`'s name is one the guard gives and does not date it after S3 stored
    /// it; logs it when not.
    fn named_fairly(
        &self,
        key: &KeyArn,
        kind: &str,
        object: &Listed,
        prefix: &str,
        suffixes: &[&str],
    ) -> bool {
        let why = match named_time(&object.key, prefix, suffixes) {
            None => Suspicion::ForeignName,
            Some(claimed) if future_dated(claimed, object.modified) => {
                Suspicion::FutureDated { claimed }
            }
            Some(_) => return true,
        };
        suspicious(
            key,
            kind,
            &self.location(&object.key),
            object.modified,
            &why,
        );
        false
    }

    /// The objects under `prefix` whose names sort after `after`, with S3's dates.
    async fn objects_after(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<Vec<Listed>, CallError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(after)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| call_error(Api::ListObjectsV2, self.location(prefix), e))?;
            objects.extend(page.contents().iter().filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_owned(),
                    modified: s3_time(o.last_modified()),
                })
            }));
        }
        Ok(objects)
    }

    /// GetObject of one object of the bucket, with its date and ETag.
    async fn fetch(&self, object: &str) -> Result<Fetched, CallError> {
        fetch(&self.client, &self.bucket, object).await
    }

    /// Reads a backup from `s3://bucket/key` (any bucket the caller may read).
    pub async fn load(&self, location: &str) -> Result<Backup, CallError> {
        let (bucket, key) = split_s3_url(location).ok_or_else(|| {
            CallError::new(
                Api::GetObject,
                location,
                ErrorKind::Invalid,
                "expected s3://BUCKET/KEY",
            )
        })?;
        let fetched = fetch(&self.client, bucket, key).await?;
        let backup = parse_backup(&fetched.bytes).map_err(|e| {
            CallError::new(Api::GetObject, location, ErrorKind::Invalid, e.to_string())
        })?;
        // The operator named this one: loaded, but a date S3 contradicts is said.
        if future_dated(backup.taken_at, fetched.modified) {
            let why = Suspicion::FutureDated {
                claimed: backup.taken_at,
            };
            suspicious(&backup.key, "backup", location, fetched.modified, &why);
        }
        Ok(backup)
    }
}

/// GetObject of `s3://bucket/key`, with S3's date and the ETag.
async fn fetch(client: &Client, bucket: &str, key: &str) -> Result<Fetched, CallError> {
    let object = super::get_object(client, bucket, key).await?;
    Ok(Fetched {
        modified: s3_time(object.last_modified.as_ref()),
        bytes: object.bytes,
        etag: object.etag,
    })
}

/// A backup read from the bucket, when it is the guard's backup of `key`, dated no later
/// than S3 stored it.
fn judge_backup(key: &KeyArn, fetched: &Fetched) -> Result<Backup, Suspicion> {
    let backup = parse_backup(&fetched.bytes).map_err(|e| Suspicion::ForeignBody(e.to_string()))?;
    if backup.key != *key {
        return Err(Suspicion::ForeignBody(format!(
            "it is a backup of {}",
            backup.key
        )));
    }
    if future_dated(backup.taken_at, fetched.modified) {
        return Err(Suspicion::FutureDated {
            claimed: backup.taken_at,
        });
    }
    Ok(backup)
}

/// A write record read from the bucket, when it is the guard's record of a write to `key`
/// dated no later than S3 stored it; its time is then S3's.
fn judge_write(key: &KeyArn, fetched: &Fetched) -> Result<WriteRecord, Suspicion> {
    let record = parse_write(&fetched.bytes).map_err(|e| Suspicion::ForeignBody(e.to_string()))?;
    if record.key != *key {
        return Err(Suspicion::ForeignBody(format!(
            "it records a write to {}",
            record.key
        )));
    }
    if future_dated(record.at, fetched.modified) {
        return Err(Suspicion::FutureDated { claimed: record.at });
    }
    Ok(WriteRecord {
        at: fetched.modified,
        ..record
    })
}

/// A claim read from the bucket, when it is the guard's claim named `claim` dated no later
/// than S3 stored it; its time is then S3's (the engine ages it from there).
fn judge_claim(claim: &WriteClaim, fetched: &Fetched) -> Result<WriteClaim, Suspicion> {
    let held = parse_claim(&fetched.bytes).map_err(|e| Suspicion::ForeignBody(e.to_string()))?;
    if held.key != claim.key || held.drift != claim.drift {
        return Err(Suspicion::ForeignBody(
            "it names another key or drift than its object name".into(),
        ));
    }
    if future_dated(held.at, fetched.modified) {
        return Err(Suspicion::FutureDated { claimed: held.at });
    }
    Ok(WriteClaim {
        at: fetched.modified,
        ..held
    })
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
        self.put_json(object, &doc, Put::Always).await
    }

    async fn record_write(&self, write: &WriteRecord) -> Result<(), CallError> {
        let status = if write.mismatch.is_some() {
            MISMATCH_SUFFIX
        } else {
            OK_SUFFIX
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
        self.put_json(object, &doc, Put::Always).await.map(drop)
    }

    /// One ListObjectsV2 (per page); one GetObject more only when the latest write failed
    /// verification. Records count by S3's `LastModified` within the window; the names only
    /// start the listing, [`CLOCK_SKEW`] early. Only the latest record's body is read: when
    /// it is not the guard's (or dates itself after S3 stored it), it is not counted and
    /// there is no earlier verification failure to honour, which costs at most one more
    /// write that fails its verification again.
    async fn writes_since(
        &self,
        key: &KeyArn,
        since: SystemTime,
    ) -> Result<WriteHistory, CallError> {
        let prefix = self.writes_prefix(key);
        let from = since.checked_sub(CLOCK_SKEW).unwrap_or(UNIX_EPOCH);
        let after = format!("{prefix}{}", stamp(from));
        let mut recent = self.objects_after(&prefix, Some(after)).await?;
        recent.retain(|o| {
            o.modified >= since
                && self.named_fairly(
                    key,
                    "write record",
                    o,
                    &prefix,
                    &[OK_SUFFIX, MISMATCH_SUFFIX],
                )
        });
        recent.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
        let mut last_mismatch = None;
        if let Some(last) = recent.last().filter(|o| o.key.ends_with(MISMATCH_SUFFIX)) {
            let fetched = self.fetch(&last.key).await?;
            match judge_write(key, &fetched) {
                Ok(record) => last_mismatch = Some(record),
                Err(why) => {
                    suspicious(
                        key,
                        "write record",
                        &self.location(&last.key),
                        fetched.modified,
                        &why,
                    );
                    recent.pop();
                }
            }
        }
        Ok(WriteHistory {
            writes: recent.len(),
            last_mismatch,
        })
    }

    /// One conditional PutObject; one GetObject more when another invocation holds it, and
    /// one PutObject more (`If-Match` its ETag, so that of several invocations only one takes
    /// it) when the claim found is not the guard's or dates itself after S3 stored it. A
    /// held claim is dated by S3, so the engine ages it from `LastModified`.
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
            match self
                .put_json(self.claim_object(claim), &doc, Put::IfAbsent)
                .await
            {
                Ok(_) => return Ok(Claimed::Won),
                Err(e) if e.kind == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
            match self.holder(claim).await? {
                Holder::Released => {}
                Holder::Held(holder) => return Ok(Claimed::Held(Box::new(holder))),
                Holder::Abandoned { etag } => {
                    let taken = self
                        .put_json(self.claim_object(claim), &doc, Put::IfMatch(&etag))
                        .await;
                    match taken {
                        Ok(_) => return Ok(Claimed::Won),
                        // Replaced or removed since it was read: claim anew.
                        Err(e) if matches!(e.kind, ErrorKind::Conflict | ErrorKind::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(CallError::new(
            Api::PutObject,
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
            .map_err(|e| call_error(Api::DeleteObject, &location, e))?;
        Ok(())
    }
}

/// What holds a claim's name.
enum Holder {
    /// Nothing any more (released).
    Released,
    /// Another invocation's claim, dated by S3.
    Held(WriteClaim),
    /// An object that is not the guard's claim, or dates itself after S3 stored it, or a
    /// claim S3 stored longer than `CLAIM_TTL` ago: taken over as abandoned, only if it still
    /// has this ETag (of several invocations taking it over, one wins).
    Abandoned { etag: String },
}

impl S3Backups {
    /// Reads what holds `claim`'s name. S3 answers a read of a missing object with 404 only
    /// to a caller allowed to list the bucket, and with 403 (AccessDenied) otherwise: both
    /// mean "released" here. The caller's two attempts bound what a real denial costs, and
    /// its error names both causes.
    async fn holder(&self, claim: &WriteClaim) -> Result<Holder, CallError> {
        let object = self.claim_object(claim);
        let fetched = match self.fetch(&object).await {
            Ok(fetched) => fetched,
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::AccessDenied) => {
                return Ok(Holder::Released);
            }
            Err(e) => return Err(e),
        };
        let location = self.location(&object);
        let etag = |fetched: Fetched| {
            fetched.etag.ok_or_else(|| {
                CallError::new(
                    Api::GetObject,
                    &location,
                    ErrorKind::Other,
                    "S3 gave no ETag for the claim, so it cannot be taken over safely",
                )
            })
        };
        match judge_claim(claim, &fetched) {
            // Abandoned by S3's own date: taken over here, conditionally, rather than
            // deleted and claimed again (two invocations doing that could both win).
            Ok(held)
                if SystemTime::now()
                    .duration_since(fetched.modified)
                    .is_ok_and(|age| age > CLAIM_TTL) =>
            {
                tracing::warn!(key_arn = %claim.key, holder = %held.holder(), object = %location, "taking over a write claim abandoned for more than {} s", CLAIM_TTL.as_secs());
                Ok(Holder::Abandoned {
                    etag: etag(fetched)?,
                })
            }
            Ok(held) => Ok(Holder::Held(held)),
            Err(why) => {
                suspicious(&claim.key, "write claim", &location, fetched.modified, &why);
                Ok(Holder::Abandoned {
                    etag: etag(fetched)?,
                })
            }
        }
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
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_sdk_s3::types::Object;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use std::time::Duration;

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

    const WRITES: &str = "kms-replica-guard/writes/111122223333/us-west-2/mrk-1/";
    const BACKUPS: &str = "kms-replica-guard/111122223333/us-west-2/mrk-1/";
    const HOUR: Duration = Duration::from_secs(3600);

    fn key() -> KeyArn {
        claim().key
    }

    fn store(rules: &[&Rule]) -> S3Backups {
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules);
        S3Backups::new(client, "bucket", "kms-replica-guard/")
    }

    fn object(key: String, modified: SystemTime) -> Object {
        Object::builder()
            .key(key)
            .last_modified(S3Time::from(modified))
            .build()
    }

    /// A ListObjectsV2 that answers `objects`, when asked after `start_after` (any when
    /// `None`).
    fn listing(objects: Vec<Object>, start_after: Option<String>) -> Rule {
        mock!(Client::list_objects_v2)
            .match_requests(move |r| {
                start_after.is_none() || r.start_after() == start_after.as_deref()
            })
            .then_output(move || {
                ListObjectsV2Output::builder()
                    .set_contents(Some(objects.clone()))
                    .build()
            })
    }

    /// A GetObject of `object` that answers `body`, stored at `modified` with `etag`.
    fn stored(object: String, body: String, modified: SystemTime, etag: &'static str) -> Rule {
        mock!(Client::get_object)
            .match_requests(move |r| r.key() == Some(object.as_str()))
            .then_output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from(body.clone().into_bytes()))
                    .last_modified(S3Time::from(modified))
                    .e_tag(etag)
                    .build()
            })
    }

    fn write_body(key: &str, at: SystemTime, mismatch: bool) -> String {
        serde_json::json!({
            "key_arn": key, "written_at": rfc3339(at), "event_id": null,
            "event_name": "sweep", "backup": "s3://bucket/b.json", "written": "{}",
            "mismatch": mismatch.then_some("{}"),
        })
        .to_string()
    }

    #[tokio::test]
    async fn five_write_records_dated_in_the_year_9999_are_not_counted_and_not_read() {
        let now = SystemTime::now();
        let mut objects: Vec<Object> = (0..5)
            .map(|i| object(format!("{WRITES}99991231T23595{i}.000Z.ok.json"), now))
            .collect();
        // A name the guard never gives, and one genuine write ten minutes ago.
        objects.push(object(format!("{WRITES}zzz.ok.json"), now));
        let genuine = now - Duration::from_secs(600);
        objects.push(object(
            format!("{WRITES}{}.ok.json", stamp(genuine)),
            genuine,
        ));
        // The listing starts CLOCK_SKEW before the window by name.
        let since = now - HOUR;
        let list = listing(
            objects,
            Some(format!("{WRITES}{}", stamp(since - CLOCK_SKEW))),
        );
        let history = store(&[&list]).writes_since(&key(), since).await.unwrap();
        assert_eq!(
            history,
            WriteHistory {
                writes: 1,
                last_mismatch: None
            }
        );
        assert_eq!(list.num_calls(), 1, "one ListObjectsV2, no GetObject");
    }

    #[tokio::test]
    async fn write_records_are_counted_by_when_s3_stored_them_not_by_their_names() {
        let now = SystemTime::now();
        let objects = vec![
            // Named within the window, stored two hours ago: outside it.
            object(
                format!("{WRITES}{}.ok.json", stamp(now - Duration::from_secs(60))),
                now - 2 * HOUR,
            ),
            // Named two hours ago, stored now: inside it.
            object(format!("{WRITES}{}.ok.json", stamp(now - 2 * HOUR)), now),
        ];
        let list = listing(objects, None);
        let history = store(&[&list])
            .writes_since(&key(), now - HOUR)
            .await
            .unwrap();
        assert_eq!(history.writes, 1);
    }

    #[tokio::test]
    async fn a_planted_mismatch_record_dated_ahead_of_s3_or_unreadable_neither_blocks_nor_counts() {
        let now = SystemTime::now();
        let genuine = now - Duration::from_secs(60);
        let planted = format!(
            "{WRITES}{}.mismatch.json",
            stamp(now - Duration::from_secs(1))
        );
        let k = key().to_string();
        for body in [
            write_body(&k, now + 30 * 24 * HOUR, true),
            write_body("arn:aws:kms:us-west-2:111122223333:key/mrk-2", now, true),
            "not json".to_owned(),
        ] {
            let list = listing(
                vec![
                    object(format!("{WRITES}{}.ok.json", stamp(genuine)), genuine),
                    object(planted.clone(), now),
                ],
                None,
            );
            let get = stored(planted.clone(), body.clone(), now, "\"e\"");
            let history = store(&[&list, &get])
                .writes_since(&key(), now - HOUR)
                .await
                .unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(
                history,
                WriteHistory {
                    writes: 1,
                    last_mismatch: None
                },
                "{body}"
            );
            assert_eq!(get.num_calls(), 1);
        }
    }

    #[tokio::test]
    async fn the_latest_mismatch_is_the_newest_by_s3_and_dated_by_s3() {
        let now = SystemTime::now();
        let mismatch = now - Duration::from_secs(120);
        let name = format!("{WRITES}{}.mismatch.json", stamp(mismatch));
        // An ok record whose name sorts after the mismatch but that S3 stored before it.
        let earlier = now - Duration::from_secs(300);
        let list = listing(
            vec![
                object(
                    format!("{WRITES}{}.ok.json", stamp(now - Duration::from_secs(60))),
                    earlier,
                ),
                object(name.clone(), mismatch + Duration::from_secs(1)),
            ],
            None,
        );
        let get = stored(
            name,
            write_body(key().as_str(), mismatch, true),
            mismatch + Duration::from_secs(1),
            "\"e\"",
        );
        let history = store(&[&list, &get])
            .writes_since(&key(), now - HOUR)
            .await
            .unwrap();
        assert_eq!(history.writes, 2);
        let last = history.last_mismatch.expect("the mismatch is the latest");
        assert_eq!(last.at, mismatch + Duration::from_secs(1), "S3's date");
    }

    fn claim_body(claim: &WriteClaim, claimed_at: SystemTime) -> String {
        serde_json::json!({
            "key_arn": claim.key.to_string(), "drift": claim.drift, "claimed_at": rfc3339(claimed_at),
            "event_id": "e-0", "event_name": "PutKeyPolicy",
        })
        .to_string()
    }

    fn claim_object() -> String {
        format!(
            "kms-replica-guard/claims/111122223333/us-west-2/mrk-1/{}.json",
            claim().drift
        )
    }

    #[tokio::test]
    async fn a_planted_claim_dated_in_the_future_or_unreadable_is_taken_over_with_if_match() {
        let now = SystemTime::now();
        for body in [
            claim_body(&claim(), now + 365 * 24 * HOUR),
            "{}".to_owned(),
            claim_body(
                &WriteClaim {
                    drift: "e".repeat(64),
                    ..claim()
                },
                now,
            ),
        ] {
            let refused = mock!(Client::put_object)
                .match_requests(|r| r.if_none_match() == Some("*"))
                .sequence()
                .http_status(412, Some(REFUSED.into()))
                .build();
            let planted = stored(claim_object(), body.clone(), now, "\"planted\"");
            let taken = mock!(Client::put_object)
                .match_requests(|r| {
                    r.if_match() == Some("\"planted\"") && r.if_none_match().is_none()
                })
                .then_output(|| PutObjectOutput::builder().build());
            let store = store(&[&refused, &planted, &taken]);
            assert_eq!(store.claim(&claim()).await, Ok(Claimed::Won), "{body}");
            assert_eq!(
                (refused.num_calls(), planted.num_calls(), taken.num_calls()),
                (1, 1, 1),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn a_planted_claim_taken_over_by_another_invocation_first_is_held_by_it() {
        let now = SystemTime::now();
        let refused = mock!(Client::put_object)
            .match_requests(|r| r.if_none_match() == Some("*") || r.if_match().is_some())
            .sequence()
            .http_status(412, Some(REFUSED.into()))
            .times(3)
            .build();
        let reads = mock!(Client::get_object)
            .sequence()
            .output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from(
                        claim_body(&claim(), now + 365 * 24 * HOUR).into_bytes(),
                    ))
                    .last_modified(S3Time::from(now))
                    .e_tag("\"planted\"")
                    .build()
            })
            .output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from(claim_body(&claim(), now).into_bytes()))
                    .last_modified(S3Time::from(now))
                    .e_tag("\"theirs\"")
                    .build()
            })
            .build();
        let answer = store(&[&refused, &reads]).claim(&claim()).await.unwrap();
        let Claimed::Held(holder) = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(holder.at, now);
        assert_eq!((refused.num_calls(), reads.num_calls()), (3, 2));
    }

    #[tokio::test]
    async fn a_held_claim_is_aged_from_when_s3_stored_it_not_from_its_body() {
        let now = SystemTime::now();
        let refused = mock!(Client::put_object)
            .sequence()
            .http_status(412, Some(REFUSED.into()))
            .build();
        // The body says an hour ago (abandoned, if believed); S3 stored it just now.
        let held = stored(
            claim_object(),
            claim_body(&claim(), now - HOUR),
            now,
            "\"e\"",
        );
        let answer = store(&[&refused, &held]).claim(&claim()).await.unwrap();
        let Claimed::Held(holder) = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(holder.at, now, "S3's date");
        assert_eq!(holder.event_id.as_deref(), Some("e-0"));
    }

    #[tokio::test]
    async fn a_claim_abandoned_by_s3_s_date_is_taken_over_with_if_match_so_only_one_racer_wins() {
        let now = SystemTime::now();
        let long_ago = now - CLAIM_TTL - Duration::from_secs(60);
        // Won: the abandoned claim still has its ETag when this invocation takes it over.
        let refused = mock!(Client::put_object)
            .match_requests(|r| r.if_none_match() == Some("*"))
            .sequence()
            .http_status(412, Some(REFUSED.into()))
            .build();
        let abandoned = stored(
            claim_object(),
            claim_body(&claim(), long_ago),
            long_ago,
            "\"old\"",
        );
        let taken = mock!(Client::put_object)
            .match_requests(|r| r.if_match() == Some("\"old\""))
            .then_output(|| PutObjectOutput::builder().build());
        let deleted = mock!(Client::delete_object).then_output(|| {
            aws_sdk_s3::operation::delete_object::DeleteObjectOutput::builder().build()
        });
        let store_won = store(&[&refused, &abandoned, &taken, &deleted]);
        assert_eq!(store_won.claim(&claim()).await, Ok(Claimed::Won));
        assert_eq!(
            (taken.num_calls(), deleted.num_calls()),
            (1, 0),
            "never deleted"
        );

        // Lost: another invocation took it over first; this one waits for that one's write.
        let refused = mock!(Client::put_object)
            .match_requests(|r| r.if_none_match() == Some("*") || r.if_match().is_some())
            .sequence()
            .http_status(412, Some(REFUSED.into()))
            .times(3)
            .build();
        let reads = mock!(Client::get_object)
            .sequence()
            .output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from(
                        claim_body(&claim(), long_ago).into_bytes(),
                    ))
                    .last_modified(S3Time::from(long_ago))
                    .e_tag("\"old\"")
                    .build()
            })
            .output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from(claim_body(&claim(), now).into_bytes()))
                    .last_modified(S3Time::from(now))
                    .e_tag("\"theirs\"")
                    .build()
            })
            .build();
        let answer = store(&[&refused, &reads]).claim(&claim()).await.unwrap();
        let Claimed::Held(holder) = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(holder.at, now, "the winner's fresh claim");
    }

    fn backup_body(key: &str, taken_at: SystemTime, policy: &str) -> String {
        serde_json::json!({
            "key_arn": key, "taken_at": rfc3339(taken_at), "reason": "drift",
            "event_id": null, "event_name": "sweep", "policy": policy,
        })
        .to_string()
    }

    #[tokio::test]
    async fn the_latest_backup_is_the_newest_stored_not_the_last_name_nor_a_forged_body() {
        let now = SystemTime::now();
        let genuine = format!("{BACKUPS}{}.json", stamp(now - Duration::from_secs(10)));
        let later_name = format!("{BACKUPS}{}.json", stamp(now + Duration::from_secs(60)));
        let other_key = format!("{BACKUPS}{}.json", stamp(now - Duration::from_secs(2)));
        let list = listing(
            vec![
                // Sorts last among plausible names, but S3 stored it first.
                object(later_name, now - Duration::from_secs(20)),
                object(genuine.clone(), now - Duration::from_secs(10)),
                // Newest, but its body is another key's backup.
                object(other_key.clone(), now - Duration::from_secs(2)),
                // Newest of all, but dated in the year 9999 or not named by the guard.
                object(format!("{BACKUPS}99991231T235959.000Z.json"), now),
                object(format!("{BACKUPS}latest.json"), now),
            ],
            None,
        );
        let forged = stored(
            other_key,
            backup_body("arn:aws:kms:us-west-2:111122223333:key/mrk-2", now, "{}"),
            now - Duration::from_secs(2),
            "\"f\"",
        );
        let real = stored(
            genuine.clone(),
            backup_body(
                key().as_str(),
                now - Duration::from_secs(10),
                "{\"genuine\":1}",
            ),
            now - Duration::from_secs(10),
            "\"g\"",
        );
        let store = store(&[&list, &forged, &real]);
        let (backup, location) = store.latest(&key()).await.unwrap().expect("a backup");
        assert_eq!(location, format!("s3://bucket/{genuine}"));
        assert_eq!(backup.policy, "{\"genuine\":1}");
        assert_eq!((forged.num_calls(), real.num_calls()), (1, 1));
        assert_eq!(
            store.list(&key()).await.unwrap().len(),
            3,
            "the two with names the guard would not give are not listed"
        );
    }

    #[test]
    fn a_name_or_body_may_run_ahead_of_s3_by_the_clock_skew_only() {
        let stored = SystemTime::now();
        assert!(!future_dated(stored + CLOCK_SKEW, stored));
        assert!(future_dated(
            stored + CLOCK_SKEW + Duration::from_secs(1),
            stored
        ));
        assert!(!future_dated(stored - HOUR, stored), "older is fine");
        let name = format!("{WRITES}20261122T143015.123Z.mismatch.json");
        assert_eq!(
            named_time(&name, WRITES, &[OK_SUFFIX, MISMATCH_SUFFIX]).map(stamp),
            Some("20261122T143015.123Z".to_owned())
        );
        for foreign in [
            "x/20261122T143015.123Z.ok.json",
            "20261122T143015Z.ok.json",
            "20261122T143015.123Z.json",
        ] {
            assert_eq!(
                named_time(
                    &format!("{WRITES}{foreign}"),
                    WRITES,
                    &[OK_SUFFIX, MISMATCH_SUFFIX]
                ),
                None,
                "{foreign}"
            );
        }
    }
}
