//! The restore stage (the CLI's `restore`): a previously backed-up policy put back,
//! validated like any baseline (never a lockout), skipped when already equivalent, dry-run
//! unless the mode is enforce, backed up and verified like any write.

use krg_policy::{Verdict, compare, validate};

use super::Reconciler;
use crate::key::KeyArn;
use crate::outcome::{DriftNote, Failure, InSyncNote, Outcome, Status, WriteCause};
use crate::ports::{BackupStore, KeyDirectory, PolicyStore};
use crate::settings::Mode;
use crate::trigger::EventInfo;

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore> Reconciler<K, P, B> {
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
        let live = match self.policies.get_policy(key).await {
            Ok(p) => p,
            Err(e) => return Outcome::call_failed(key, &e),
        };
        let drift = match compare(&live, &desired) {
            Verdict::InSync => {
                return Outcome::new(
                    key,
                    Status::InSync(Some(InSyncNote::AlreadyRestored { from: from.into() })),
                );
            }
            Verdict::Drift(d) => d,
        };
        if self.settings.mode == Mode::DryRun {
            return Outcome::new(
                key,
                Status::DriftDetected(DriftNote::RestoreWouldChange { from: from.into() }),
            )
            .with_diff(drift);
        }
        let event = EventInfo {
            id: None,
            name: "restore".into(),
            actor: None,
        };
        self.write_verified(
            &event,
            key,
            &live,
            policy,
            &desired,
            WriteCause::Restore { from: from.into() },
        )
        .await
        .with_diff(drift)
    }
}
