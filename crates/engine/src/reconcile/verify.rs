//! The verified-write stage: back up the policy about to be replaced, write, then re-read
//! until the write shows. The write does not happen when the backup fails; a mismatch after
//! the write is reported and recorded, never retried.

use std::time::SystemTime;

use krg_policy::{CanonicalPolicy, Verdict, compare};

use super::Reconciler;
use crate::error::{CallError, ErrorKind};
use crate::key::KeyArn;
use crate::outcome::{Failure, Outcome, Remediation, Status, WriteCause};
use crate::ports::{AccountDirectory, Backup, BackupStore, KeyDirectory, PolicyStore, WriteRecord};
use crate::retry::{Backoff, Step, retry};
use crate::trigger::EventInfo;

/// PutKeyPolicy attempts while KMS refuses a principal as invalid (0.5 + 1 + 2 s of waiting
/// with the default backoff): a principal created seconds ago becomes visible; one that does
/// not exist never does, and the failure says which principals the document names.
pub const PRINCIPAL_ATTEMPTS: u32 = 4;

/// The failure of a refused PutKeyPolicy, typed by why KMS refused it.
fn refusal(e: CallError, desired: &CanonicalPolicy, cause: &WriteCause) -> Failure {
    match e.kind {
        ErrorKind::InvalidPrincipals => Failure::PrincipalsRefused {
            principals: desired
                .aws_principals()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            attempts: PRINCIPAL_ATTEMPTS,
            error: e,
        },
        ErrorKind::LockoutRefused => Failure::LockoutRefused {
            cause: cause.clone(),
            error: e,
        },
        _ => Failure::Call(e),
    }
}

/// What the re-read after a write found.
pub(super) enum Reread {
    /// Equivalent to what was written.
    Verified,
    /// KMS stores something else than what was written.
    Mismatch {
        /// The policy KMS returned.
        stored: String,
        /// Its statement diff against what was written.
        rest: String,
    },
}

/// Why a write could not be verified.
#[derive(Debug, thiserror::Error)]
pub(super) enum RereadError {
    /// Still the previous policy after this many re-reads.
    #[error("re-read {0} still returned the previous policy")]
    Stale(u32),
    /// GetKeyPolicy failed.
    #[error(transparent)]
    Call(CallError),
}

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore, A: AccountDirectory> Reconciler<K, P, B, A> {
    /// Backs up `live`, writes `text`, re-reads and verifies it against `desired`.
    pub(super) async fn write_verified(
        &self,
        event: &EventInfo,
        key: &KeyArn,
        live: &str,
        text: &str,
        desired: &CanonicalPolicy,
        cause: WriteCause,
    ) -> Outcome {
        let reason = cause.to_string();
        let backup = Backup {
            key: key.clone(),
            policy: live.to_owned(),
            reason: reason.clone(),
            event_id: event.id.clone(),
            event_name: event.name.clone(),
            taken_at: SystemTime::now(),
        };
        let kept_at = match self.backups.save(&backup).await {
            Ok(location) => location,
            Err(e) => return Outcome::failed(key, Failure::BackupFailed(e)),
        };
        tracing::warn!(
            key_arn = %key,
            previous_policy = %live,
            backup = %kept_at,
            reason = %reason,
            "overwriting a key policy; the previous policy is in this line and in the backup"
        );
        if let Err(e) = self.put_policy(key, text).await {
            return Outcome::failed(key, refusal(e, desired, &cause));
        }
        let reread = self.reread(key, live, desired).await;
        let mut write = WriteRecord {
            key: key.clone(),
            at: SystemTime::now(),
            event_id: event.id.clone(),
            event_name: event.name.clone(),
            backup: kept_at.clone(),
            written: text.to_owned(),
            mismatch: None,
        };
        let outcome = match reread {
            Ok(Reread::Verified) => Outcome::new(
                key,
                Status::Remediated(Remediation {
                    cause,
                    backup: kept_at,
                }),
            ),
            Ok(Reread::Mismatch { stored, rest }) => {
                write.mismatch = Some(stored);
                Outcome::failed(key, Failure::VerificationFailed { rest })
            }
            Err(RereadError::Stale(attempts)) => {
                Outcome::failed(key, Failure::StaleAfterWrite { attempts })
            }
            Err(RereadError::Call(e)) => Outcome::failed(key, Failure::RereadFailed(e)),
        };
        if let Err(e) = self.backups.record_write(&write).await {
            tracing::error!(key_arn = %key, error = %e, "the write could not be recorded; the flap guard will not count it");
        }
        outcome
    }

    /// PutKeyPolicy, retried a few times while KMS refuses a principal of the document: one
    /// created seconds ago may not be visible to KMS yet (IAM propagation).
    async fn put_policy(&self, key: &KeyArn, text: &str) -> Result<(), CallError> {
        let backoff = Backoff {
            attempts: PRINCIPAL_ATTEMPTS,
            ..self.settings.consistency
        };
        retry(&backoff, |_| async move {
            match self.policies.put_policy(key, text).await {
                Err(e) if e.kind == ErrorKind::InvalidPrincipals => Step::Again(e),
                done => Step::Done(done),
            }
        })
        .await
    }

    /// Re-reads a policy just written, until it is no longer the previous one (a stale read
    /// right after the write), within the consistency backoff.
    pub(super) async fn reread(
        &self,
        key: &KeyArn,
        previous: &str,
        desired: &CanonicalPolicy,
    ) -> Result<Reread, RereadError> {
        let previous = CanonicalPolicy::parse(previous).ok();
        let previous = previous.as_ref();
        retry(&self.settings.consistency, |n| async move {
            let after = match self.policies.get_policy(key).await {
                Ok(after) => after,
                Err(e) => return Step::Done(Err(RereadError::Call(e))),
            };
            match compare(&after, desired) {
                Verdict::InSync => Step::Done(Ok(Reread::Verified)),
                Verdict::Drift(_)
                    if previous.is_some_and(|p| compare(&after, p) == Verdict::InSync) =>
                {
                    Step::Again(RereadError::Stale(n))
                }
                Verdict::Drift(rest) => Step::Done(Ok(Reread::Mismatch {
                    stored: after,
                    rest,
                })),
            }
        })
        .await
    }
}
