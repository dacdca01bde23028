//! The restore stage (the CLI's `restore`): a previously backed-up policy put back,
//! validated like any baseline (never a lockout) and held to the same guardrails (a backup
//! is in a bucket, and a bucket can be written to), skipped when already equivalent, dry-run
//! unless the mode is enforce, backed up and verified like any write.

use krg_policy::{CanonicalPolicy, Verdict, compare, explain, validate};

use super::Reconciler;
use super::replica::refuse_breaches;
use crate::key::KeyArn;
use crate::outcome::{DriftNote, Failure, InSyncNote, Outcome, Status, WriteCause};
use crate::ports::{AccountDirectory, BackupStore, KeyDirectory, PolicyStore};
use crate::settings::Mode;
use crate::trigger::EventInfo;

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore, A: AccountDirectory> Reconciler<K, P, B, A> {
    /// Puts `policy`, backed up at `from`, back on `key`.
    pub async fn restore(&self, key: &KeyArn, policy: &str, from: &str) -> Outcome {
        let desired = match validate(policy, &self.lockout_guard(key)) {
            Ok(c) => c,
            Err(e) => {
                return Outcome::failed(
                    key,
                    Failure::InvalidBaseline {
                        problem: format!("the backup {from} is not a writable policy: {e}"),
                    },
                );
            }
        };
        let trust = self.settings.trust_for(key);
        if let Err(refused) = refuse_breaches(&desired, &trust, &format!("the backup {from}")) {
            return Outcome::failed(key, *refused);
        }
        let live = match self.policies.get_policy(key).await {
            Ok(p) => p,
            Err(e) => return Outcome::call_failed(key, &e),
        };
        let write_exposure = CanonicalPolicy::parse(&live)
            .ok()
            .map(|l| explain(&l, &desired, &trust));
        let drift = match compare(&live, &desired) {
            Verdict::InSync => {
                return Outcome::new(
                    key,
                    Status::InSync(Some(InSyncNote::AlreadyRestored { from: from.into() })),
                );
            }
            Verdict::Drift(d) => d,
        };
        let mut outcome = if self.settings.mode == Mode::DryRun {
            Outcome::new(
                key,
                Status::DriftDetected(DriftNote::RestoreWouldChange { from: from.into() }),
            )
            .with_diff(drift)
        } else {
            self.write(key, &live, policy, &desired, from)
                .await
                .with_diff(drift)
        };
        outcome.write_exposure = write_exposure;
        outcome
    }

    async fn write(
        &self,
        key: &KeyArn,
        live: &str,
        policy: &str,
        desired: &CanonicalPolicy,
        from: &str,
    ) -> Outcome {
        let event = EventInfo::named("restore");
        self.write_verified(
            &event,
            key,
            live,
            policy,
            desired,
            WriteCause::Restore { from: from.into() },
        )
        .await
    }
}
