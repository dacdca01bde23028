//! The event stage: each target of an event is described (waiting, bounded, for a replica
//! that is still being created or not yet visible), then fanned out to the replicas it
//! reaches.

use futures::StreamExt;
use futures::stream;

use super::{Known, Reconciler, RunCache, log_outcome, updating};
use crate::decide::{KeyFacts, KeyState, Reach, reach};
use crate::error::{CallError, ErrorKind};
use crate::key::KeyArn;
use crate::outcome::{Outcome, Report};
use crate::ports::{AccountDirectory, BackupStore, KeyDirectory, PolicyStore};
use crate::retry::{Step, retry};
use crate::trigger::{EventInfo, Target};

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore, A: AccountDirectory> Reconciler<K, P, B, A> {
    /// Reconciles every replica one target reaches, adding their outcomes to `report`.
    pub(super) async fn reconcile_target(
        &self,
        event: &EventInfo,
        target: &Target,
        cache: &RunCache,
        report: &mut Report,
    ) {
        let facts = match self.describe_ready(&target.key).await {
            Ok(f) => f,
            Err(e) => {
                let o = Outcome::call_failed(&target.key, &e);
                log_outcome(event, &o);
                report.outcomes.push(o);
                return;
            }
        };
        let mirrors = self.settings.baseline.mirrors_primary();
        let (primary, replicas) = match reach(&facts, target.scope, mirrors) {
            Reach::Skip(why) => {
                let o = Outcome::skipped(&target.key, why);
                log_outcome(event, &o);
                report.outcomes.push(o);
                return;
            }
            Reach::Replicas { primary, replicas } => (primary, replicas),
        };
        let mut outcomes: Vec<Outcome> = stream::iter(replicas)
            .map(|replica| {
                let known = if replica == facts.arn {
                    Known::Facts(Box::new(facts.clone()))
                } else {
                    Known::Replica
                };
                let primary = &primary;
                async move {
                    self.reconcile_replica(event, &replica, primary, known, cache, None)
                        .await
                }
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        outcomes.sort_by(|a, b| a.key_arn.cmp(&b.key_arn));
        for o in outcomes {
            log_outcome(event, &o);
            report.outcomes.push(o);
        }
    }

    /// DescribeKey, waiting (bounded) while a fresh replica is not yet visible, or while a
    /// primary Region change is `Updating` the key (DescribeKey may then show the new primary
    /// as a replica). A replica still `Creating` is not waited for: KMS lets a key in that
    /// state be managed (its policy read and written), only not used for cryptography.
    async fn describe_ready(&self, key: &KeyArn) -> Result<KeyFacts, CallError> {
        let backoff = self.settings.consistency;
        retry(&backoff, |n| async move {
            match self.keys.describe_key(key).await {
                Ok(f) if f.state == KeyState::Updating => Step::Again(updating(key, n)),
                Ok(f) => Step::Done(Ok(f)),
                Err(e) if e.kind == ErrorKind::NotFound => Step::Again(CallError {
                    message: format!(
                        "{} (still not found after {n} attempts; a replica is visible a few seconds after ReplicateKey, so Lambda will retry the event)",
                        e.message
                    ),
                    ..e
                }),
                Err(e) => Step::Done(Err(e)),
            }
        })
        .await
    }
}
