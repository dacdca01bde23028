//! The claimed-write stage: concurrent invocations that find the same drift (the same
//! policy to replace, the same policy to write) name the same claim; the first to take it
//! writes, the others wait for its write instead of writing the same policy again.

use std::time::{Duration, SystemTime};

use krg_policy::CanonicalPolicy;

use super::Reconciler;
use super::verify::{Reread, RereadError};
use crate::decide::drift_name;
use crate::error::CallError;
use crate::key::KeyArn;
use crate::outcome::{Failure, InSyncNote, Outcome, Status, WriteCause};
use crate::ports::{AccountDirectory, BackupStore, Claimed, KeyDirectory, PolicyStore, WriteClaim};
use crate::trigger::EventInfo;

/// A write claim older than this was left by an invocation that died between claiming and
/// releasing it (claim to release is a backup, one PutKeyPolicy and the re-read: seconds),
/// and is taken over.
pub const CLAIM_TTL: Duration = Duration::from_secs(120);

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore, A: AccountDirectory> Reconciler<K, P, B, A> {
    /// Writes `text` over `live` once this invocation holds the claim on that drift, and
    /// releases it after; when another invocation holds it, waits for that one's write.
    pub(super) async fn claimed_write(
        &self,
        event: &EventInfo,
        replica: &KeyArn,
        live: &str,
        text: &str,
        desired: &CanonicalPolicy,
    ) -> Outcome {
        let claim = WriteClaim {
            key: replica.clone(),
            drift: drift_name(live, text),
            at: SystemTime::now(),
            event_id: event.id.clone(),
            event_name: event.name.clone(),
        };
        match self.claim(&claim).await {
            Ok(Claimed::Won) => {}
            Ok(Claimed::Held(holder)) => {
                return self
                    .await_concurrent_write(replica, live, desired, &holder)
                    .await;
            }
            Err(e) => return Outcome::failed(replica, Failure::ClaimUnavailable(e)),
        }
        let cause = WriteCause::Drift {
            baseline: self.settings.baseline.describe(),
        };
        let outcome = self
            .write_verified(event, replica, live, text, desired, cause)
            .await;
        if let Err(e) = self.backups.release(&claim).await {
            tracing::warn!(key_arn = %replica, error = %e, "the write claim could not be released; it is taken over after {} s", CLAIM_TTL.as_secs());
        }
        outcome
    }

    /// Claims the write of one drift; a claim abandoned longer than [`CLAIM_TTL`] ago is
    /// released and claimed anew. (The bucket's store takes an abandoned claim over itself,
    /// conditionally on its ETag, so that of several invocations only one wins; it never
    /// answers with one. This is for stores without that, such as the in-process ledger.)
    pub(super) async fn claim(&self, claim: &WriteClaim) -> Result<Claimed, CallError> {
        match self.backups.claim(claim).await? {
            Claimed::Held(holder) if abandoned(&holder, claim.at) => {
                tracing::warn!(
                    key_arn = %claim.key,
                    holder = %holder.holder(),
                    "taking over a write claim abandoned for more than {} s",
                    CLAIM_TTL.as_secs()
                );
                self.backups.release(&holder).await?;
                self.backups.claim(claim).await
            }
            answer => Ok(answer),
        }
    }

    /// Another invocation claimed the write of this very drift: wait for its write (re-reading
    /// within the consistency backoff) instead of writing the same policy again.
    async fn await_concurrent_write(
        &self,
        key: &KeyArn,
        live: &str,
        desired: &CanonicalPolicy,
        holder: &WriteClaim,
    ) -> Outcome {
        let holder = holder.holder();
        match self.reread(key, live, desired).await {
            Ok(Reread::Verified) => Outcome::new(
                key,
                Status::InSync(Some(InSyncNote::WrittenByConcurrentInvocation { holder })),
            ),
            Ok(Reread::Mismatch { .. }) => {
                Outcome::failed(key, Failure::ConcurrentWriteDiffers { holder })
            }
            Err(RereadError::Stale(attempts)) => Outcome::failed(
                key,
                Failure::ConcurrentWriteNotLanded {
                    holder,
                    attempts,
                    claim_ttl: CLAIM_TTL,
                },
            ),
            Err(RereadError::Call(e)) => Outcome::call_failed(key, &e),
        }
    }
}

/// Whether a claim held since `holder.at` was abandoned, as seen at `now`.
fn abandoned(holder: &WriteClaim, now: SystemTime) -> bool {
    now.duration_since(holder.at)
        .is_ok_and(|age| age > CLAIM_TTL)
}
