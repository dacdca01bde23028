//! The replica stage: one replica brought to the baseline, or told why not. The desired
//! policy is rendered (or mirrored) and validated, the live policy read and compared; on
//! drift the guards run before any write — the key's own state (when not yet described),
//! the exclude tag, dry-run, the flap guard and an earlier verification failure — and only
//! then the claimed write.

use std::time::SystemTime;

use krg_policy::{
    CanonicalPolicy, LockoutGuard, Origin, ValidationError, Verdict, assess, compare, validate_as,
};

use super::{Known, PrimaryPolicies, Reconciler, updating};
use crate::baseline::{Baseline, RenderContext, mirror_primary};
use crate::decide::{
    KeyFacts, KeyState, MultiRegionRole, is_excluded, lockout_guard, skip_for_state,
};
use crate::error::CallError;
use crate::key::KeyArn;
use crate::outcome::{DriftNote, Failure, Outcome, Skip, Status, rfc3339};
use crate::ports::{BackupStore, KeyDirectory, PolicyStore, WriteHistory, WriteRecord};
use crate::settings::Mode;
use crate::trigger::EventInfo;

/// Why no baseline could be rendered for a key (the CLI's `validate-baseline --key`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineForError {
    /// DescribeKey failed.
    #[error(transparent)]
    Describe(CallError),
    /// Only multi-Region keys have a baseline.
    #[error("{0} is not a multi-Region key")]
    NotMultiRegion(KeyArn),
    /// The desired policy could not be made or is invalid.
    #[error("{0}")]
    Desired(Failure),
}

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore> Reconciler<K, P, B> {
    /// Brings one replica to the baseline (or reports why not).
    pub(super) async fn reconcile_replica(
        &self,
        event: &EventInfo,
        replica: &KeyArn,
        primary: &KeyArn,
        known: Known,
        cache: &PrimaryPolicies,
    ) -> Outcome {
        if let Known::Facts(facts) = &known
            && let Some(skip) = unmanaged(replica, facts)
        {
            return skip;
        }
        let (desired_text, desired) = match self.desired_policy(replica, primary, cache).await {
            Ok(d) => d,
            Err(failure) => return Outcome::failed(replica, failure),
        };
        let live = match self.policies.get_policy(replica).await {
            Ok(p) => p,
            Err(e) => return Outcome::call_failed(replica, &e),
        };
        // The explanation judges principals against the key's own account.
        let own = format!(
            "arn:{}:iam::{}:root",
            replica.partition(),
            replica.account()
        );
        let (drift, exposure) = match assess(&live, &desired, &own) {
            (Verdict::InSync, _) => return Outcome::in_sync(replica),
            (Verdict::Drift(diff), exposure) => (diff, exposure),
        };
        let mut outcome = self
            .before_write(event, replica, &known, &live, &desired_text, &desired)
            .await
            .with_drift(drift, exposure);
        outcome.actor = event.actor.clone();
        outcome
    }

    /// The guards between a drift and its write, then the claimed write.
    async fn before_write(
        &self,
        event: &EventInfo,
        replica: &KeyArn,
        known: &Known,
        live: &str,
        desired_text: &str,
        desired: &CanonicalPolicy,
    ) -> Outcome {
        // Found through a related key: its own state is read only now that it drifted.
        if let Known::Replica = known {
            match self.keys.describe_key(replica).await {
                Ok(facts) => {
                    if let Some(skip) = unmanaged(replica, &facts) {
                        return skip;
                    }
                }
                Err(e) => return Outcome::call_failed(replica, &e),
            }
        }
        if let Some(tag) = &self.settings.exclude_tag {
            match self.keys.tag_keys(replica).await {
                Ok(tags) if is_excluded(tags.iter().map(String::as_str), tag) => {
                    return Outcome::skipped(replica, Skip::Excluded { tag: tag.clone() });
                }
                Ok(_) => {}
                Err(e) => return Outcome::call_failed(replica, &e),
            }
        }
        if self.settings.mode == Mode::DryRun {
            return Outcome::new(replica, Status::DriftDetected(DriftNote::DryRun));
        }
        let history = match self.write_history(replica).await {
            Ok(h) => h,
            Err(e) => return Outcome::failed(replica, Failure::HistoryUnreadable(e)),
        };
        if let Some(earlier) = history
            .last_mismatch
            .as_ref()
            .and_then(|w| same_mismatch(w, live, desired))
        {
            return earlier;
        }
        if history.writes >= self.settings.flap.max {
            return Outcome::skipped(
                replica,
                Skip::Flapping {
                    writes: history.writes,
                    window: self.settings.flap.window,
                },
            );
        }
        self.claimed_write(event, replica, live, desired_text, desired)
            .await
    }

    /// The rendered, validated baseline for one key, found from its own DescribeKey (the
    /// CLI's `validate-baseline --key`).
    pub async fn baseline_for(&self, key: &KeyArn) -> Result<String, BaselineForError> {
        let facts = self
            .keys
            .describe_key(key)
            .await
            .map_err(BaselineForError::Describe)?;
        let primary = facts
            .multi_region
            .map(|m| m.primary)
            .ok_or_else(|| BaselineForError::NotMultiRegion(key.clone()))?;
        self.desired_policy(key, &primary, &PrimaryPolicies::default())
            .await
            .map(|(text, _)| text)
            .map_err(BaselineForError::Desired)
    }

    /// The lockout check for writes to `key`, with the role that acts in its account (the
    /// member role in a member account).
    pub(super) fn lockout_guard(&self, key: &KeyArn) -> LockoutGuard {
        let actor = self.settings.actor_in(key.account(), key.partition());
        lockout_guard(key, actor.as_ref())
    }

    /// The key's writes within the flap window: from the write records next to the backups
    /// when they are kept (so the history survives cold starts), else from this process.
    async fn write_history(&self, key: &KeyArn) -> Result<WriteHistory, CallError> {
        let since = SystemTime::now()
            .checked_sub(self.settings.flap.window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.backups.writes_since(key, since).await
    }

    /// The rendered, validated baseline for one replica.
    async fn desired_policy(
        &self,
        replica: &KeyArn,
        primary: &KeyArn,
        cache: &PrimaryPolicies,
    ) -> Result<(String, CanonicalPolicy), Failure> {
        let (text, origin) = match &self.settings.baseline {
            Baseline::Template(t) => (
                t.render(RenderContext {
                    key: replica,
                    primary_region: primary.region(),
                }),
                Origin::Configured,
            ),
            Baseline::Primary => {
                let cell = cache
                    .0
                    .lock()
                    .expect("no panics while held")
                    .entry(primary.clone())
                    .or_default()
                    .clone();
                let primary_policy = cell
                    .get_or_init(|| self.policies.get_policy(primary))
                    .await
                    .as_ref()
                    .map_err(|e| Failure::Call(e.clone()))?;
                let text = mirror_primary(primary_policy, primary, replica).map_err(|e| {
                    Failure::InvalidBaseline {
                        problem: e.to_string(),
                    }
                })?;
                (text, Origin::Mirrored)
            }
        };
        let validated = validate_as(&text, &self.lockout_guard(replica), origin).map_err(|e| {
            let deleted: Vec<String> =
                e.0.iter()
                    .filter_map(|e| match e {
                        ValidationError::UniqueIdPrincipal { id, .. } => Some(id.clone()),
                        _ => None,
                    })
                    .collect();
            if origin == Origin::Mirrored && !deleted.is_empty() {
                Failure::PrimaryNamesDeletedPrincipals {
                    primary: primary.clone(),
                    ids: deleted,
                }
            } else {
                Failure::InvalidBaseline {
                    problem: e.to_string(),
                }
            }
        })?;
        for warning in &validated.warnings {
            tracing::warn!(key_arn = %replica, primary = %primary, warning = %warning, "the primary's policy has a statement KMS accepts but ignores; mirrored as it is");
        }
        Ok((text, validated.policy))
    }
}

/// The failure to report instead of writing again, when the latest write of this key wrote
/// this same baseline, failed verification, and the key still holds what KMS stored then.
fn same_mismatch(earlier: &WriteRecord, live: &str, desired: &CanonicalPolicy) -> Option<Outcome> {
    let stored = CanonicalPolicy::parse(earlier.mismatch.as_deref()?).ok()?;
    let same_baseline = compare(&earlier.written, desired) == Verdict::InSync;
    let unchanged = compare(live, &stored) == Verdict::InSync;
    (same_baseline && unchanged).then(|| {
        Outcome::failed(
            &earlier.key,
            Failure::VerificationFailedEarlier {
                at: rfc3339(earlier.at),
                event_name: earlier.event_name.clone(),
                event_id: earlier.event_id.clone(),
            },
        )
    })
}

/// Why a replica is not managed, from its own DescribeKey facts.
fn unmanaged(replica: &KeyArn, facts: &KeyFacts) -> Option<Outcome> {
    if facts.state == KeyState::Updating {
        return Some(Outcome::call_failed(replica, &updating(replica, 1)));
    }
    if let Some(skip) = skip_for_state(&facts.state) {
        return Some(Outcome::skipped(replica, skip));
    }
    match facts.multi_region.as_ref().map(|m| m.role) {
        Some(MultiRegionRole::Replica) => None,
        Some(MultiRegionRole::Primary) => Some(Outcome::skipped(replica, Skip::NowPrimary)),
        None => Some(Outcome::skipped(replica, Skip::SingleRegion)),
    }
}
