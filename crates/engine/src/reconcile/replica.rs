//! The replica stage: one replica brought to the baseline, or told why not. The desired
//! policy is rendered (or mirrored) and validated, the live policy read and compared; on
//! drift the guards run before any write — the key's own state (when not yet described),
//! the exclude tag, dry-run, the flap guard and an earlier verification failure — and only
//! then the claimed write.

use std::ops::ControlFlow;
use std::time::SystemTime;

use krg_policy::{
    CanonicalPolicy, LockoutGuard, Origin, Trust, ValidationError, Verdict, assess_parsed, compare,
    contain_with, validate_as, validate_merged,
};

use super::{Known, Reconciler, RunCache, updating};
use crate::baseline::{
    Baseline, MirrorOptions, RenderContext, Rewrite, Template, mirror_for_replica,
};
use crate::catalogue::{PRIMARY, Pick};
use crate::decide::{KeyFacts, KeyState, MultiRegionRole, lockout_guard, skip_for_state};
use crate::error::CallError;
use crate::exemption::{Exemption, exemption};
use crate::key::KeyArn;
use crate::outcome::{DriftNote, Extras, Failure, Outcome, Skip, Status, rfc3339};
use crate::ports::Tags;
use crate::ports::{BackupStore, KeyDirectory, PolicyStore, WriteHistory, WriteRecord};
use crate::settings::BaselineMatch;
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
        cache: &RunCache,
    ) -> Outcome {
        if let Known::Facts(facts) = &known
            && let Some(skip) = unmanaged(replica, facts)
        {
            return skip;
        }
        let wanted = match self.desired_policy(replica, primary, cache).await {
            Ok(d) => d,
            Err((failure, baseline)) => {
                let mut o = Outcome::failed(replica, failure);
                o.baseline = baseline;
                return o;
            }
        };
        let live = match self.policies.get_policy(replica).await {
            Ok(p) => p,
            Err(e) => return wanted.name(Outcome::call_failed(replica, &e)),
        };
        // The explanation judges principals against the key's own account.
        let own = Trust::own(&format!(
            "arn:{}:iam::{}:root",
            replica.partition(),
            replica.account()
        ));
        // The live policy is parsed once: here, or by contains matching.
        let (desired_text, desired, extras, parsed) = match self.settings.baseline_match {
            BaselineMatch::Exact => (
                wanted.text.clone(),
                wanted.policy.clone(),
                None,
                CanonicalPolicy::parse(&live).ok(),
            ),
            BaselineMatch::Contains => match self.merged(replica, &live, &wanted, &own) {
                Ok(merged) => merged,
                Err(problem) => {
                    let failure = Failure::InvalidBaseline { problem };
                    return wanted.name(Outcome::failed(replica, failure));
                }
            },
        };
        let (drift, exposure) = match assess_parsed(&live, parsed.as_ref(), &desired, &own) {
            (Verdict::InSync, _) => {
                let mut o = wanted.name(Outcome::in_sync(replica));
                o.extras = extras;
                return o;
            }
            (Verdict::Drift(diff), exposure) => (diff, exposure),
        };
        let mut outcome = match self.left_alone(replica, &known, cache).await {
            ControlFlow::Break(left) => left,
            ControlFlow::Continue(exemption_ended) => {
                let mut o = self
                    .guarded_write(event, replica, &live, &desired_text, &desired)
                    .await;
                o.exemption_ended = exemption_ended;
                o
            }
        }
        .with_drift(drift, exposure);
        outcome.actor = event.actor.clone();
        outcome.extras = extras;
        wanted.name(outcome)
    }

    /// `contains` mode: the baseline with the live policy's allowed extras, validated (the
    /// lockout check included) as the document to hold, and the live policy parsed.
    fn merged(
        &self,
        replica: &KeyArn,
        live: &str,
        wanted: &Desired,
        own: &Trust,
    ) -> Result<
        (
            String,
            CanonicalPolicy,
            Option<Extras>,
            Option<CanonicalPolicy>,
        ),
        String,
    > {
        // A live policy that does not parse has no statements to keep: the baseline alone.
        let c = contain_with(live, &wanted.text, &wanted.policy, own);
        let validated = if c.kept.is_empty() {
            None
        } else {
            // The kept extras come from a policy KMS accepted: tolerate what KMS tolerates
            // (as for a mirrored primary); the lockout check is as strict as ever. The
            // baseline is validated already: only what the extras add is checked.
            let v = validate_merged(&c, &wanted.policy, &self.lockout_guard(replica)).map_err(|e| {
                format!(
                    "the baseline with the live policy's kept extra statements is not a policy KMS would accept: {e}"
                )
            })?;
            Some(v.policy)
        };
        let extras = Extras {
            kept: c.kept,
            removed: c.removed,
        };
        let extras = (!extras.kept.is_empty() || !extras.removed.is_empty()).then_some(extras);
        Ok(match validated {
            Some(policy) => (c.merged, policy, extras, c.live),
            None => (wanted.text.clone(), wanted.policy.clone(), extras, c.live),
        })
    }

    /// The guards that leave a drifted key alone: its own state (when not yet described)
    /// and the exclude tag. Continues with when the key's exemption ended, if it had one
    /// that has.
    async fn left_alone(
        &self,
        replica: &KeyArn,
        known: &Known,
        cache: &RunCache,
    ) -> ControlFlow<Outcome, Option<String>> {
        // Found through a related key: its own state is read only now that it drifted.
        if let Known::Replica = known {
            match self.keys.describe_key(replica).await {
                Ok(facts) => {
                    if let Some(skip) = unmanaged(replica, &facts) {
                        return ControlFlow::Break(skip);
                    }
                }
                Err(e) => return ControlFlow::Break(Outcome::call_failed(replica, &e)),
            }
        }
        let Some(tag) = &self.settings.exclude_tag else {
            return ControlFlow::Continue(None);
        };
        let tags = match self.tags(replica, cache).await {
            Ok(tags) => tags,
            Err(e) => return ControlFlow::Break(Outcome::call_failed(replica, &e)),
        };
        let Some(value) = tags.get(tag) else {
            return ControlFlow::Continue(None);
        };
        let skip = match exemption(value, SystemTime::now()) {
            Exemption::Forever => Skip::Excluded {
                tag: tag.clone(),
                until: None,
            },
            e @ Exemption::Until(_) => Skip::Excluded {
                tag: tag.clone(),
                until: e.ends(),
            },
            Exemption::Unreadable { value, problem } => Skip::ExemptionUnreadable {
                tag: tag.clone(),
                value,
                problem,
            },
            e @ Exemption::Expired { .. } => {
                let ended = e.ends().unwrap_or_default();
                tracing::warn!(key_arn = %replica, tag = %tag, ended = %ended, "the key's exemption has ended; reconciled again (remove the tag)");
                return ControlFlow::Continue(Some(ended));
            }
        };
        ControlFlow::Break(Outcome::skipped(replica, skip))
    }

    /// The guards after the exclude tag: dry-run, the flap guard, an earlier verification
    /// failure; then the claimed write.
    async fn guarded_write(
        &self,
        event: &EventInfo,
        replica: &KeyArn,
        live: &str,
        desired_text: &str,
        desired: &CanonicalPolicy,
    ) -> Outcome {
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
        self.desired_policy(key, &primary, &RunCache::default())
            .await
            .map(|d| d.text)
            .map_err(|(f, _)| BaselineForError::Desired(f))
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

    /// A key's tags, read once per run.
    async fn tags(&self, key: &KeyArn, cache: &RunCache) -> Result<Tags, CallError> {
        RunCache::cell(&cache.tags, key)
            .get_or_init(|| self.keys.tags(key))
            .await
            .clone()
    }

    /// The baseline this replica is held to: the one configured, or its catalogue pick (the
    /// replica's tag, else its primary's, else the default).
    async fn pick(
        &self,
        replica: &KeyArn,
        primary: &KeyArn,
        cache: &RunCache,
    ) -> Result<(String, Option<&Template>), Failure> {
        let catalogue = match &self.settings.baseline {
            Baseline::Template(t) => return Ok((t.origin().to_owned(), Some(t))),
            Baseline::Primary => return Ok((PRIMARY.to_owned(), None)),
            Baseline::Catalogue(c) => c,
        };
        let tags = self.tags(replica, cache).await.map_err(Failure::Call)?;
        let own = tags.get(catalogue.tag());
        let inherited = match own {
            Some(_) => None,
            None => self
                .tags(primary, cache)
                .await
                .map_err(Failure::Call)?
                .get(catalogue.tag())
                .cloned(),
        };
        match catalogue.pick(own.map(String::as_str), inherited.as_deref()) {
            Ok((Pick::Template { name, template }, _)) => Ok((name.to_owned(), Some(template))),
            Ok((Pick::Primary, _)) => Ok((PRIMARY.to_owned(), None)),
            Err(unknown) => Err(Failure::UnknownBaseline(unknown)),
        }
    }

    /// The rendered (or mirrored), validated baseline for one replica; on failure, the
    /// baseline's name when one was picked.
    async fn desired_policy(
        &self,
        replica: &KeyArn,
        primary: &KeyArn,
        cache: &RunCache,
    ) -> Result<Desired, (Failure, Option<String>)> {
        let (name, template) = self
            .pick(replica, primary, cache)
            .await
            .map_err(|f| (f, None))?;
        let named = |f: Failure| (f, Some(name.clone()));
        let (text, origin, rewrites) = match template {
            Some(t) => (
                t.render(RenderContext {
                    key: replica,
                    primary_region: primary.region(),
                }),
                Origin::Configured,
                Vec::new(),
            ),
            None => {
                let cell = RunCache::cell(&cache.policies, primary);
                let primary_policy = cell
                    .get_or_init(|| self.policies.get_policy(primary))
                    .await
                    .as_ref()
                    .map_err(|e| named(Failure::Call(e.clone())))?;
                let options = MirrorOptions {
                    rewrite_own_arns: self.settings.mirror_rewrite,
                };
                let mirrored = mirror_for_replica(primary_policy, primary, replica, options)
                    .map_err(|e| {
                        named(Failure::InvalidBaseline {
                            problem: e.to_string(),
                        })
                    })?;
                (mirrored.text, Origin::Mirrored, mirrored.rewrites)
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
            named(if origin == Origin::Mirrored && !deleted.is_empty() {
                Failure::PrimaryNamesDeletedPrincipals {
                    primary: primary.clone(),
                    ids: deleted,
                }
            } else {
                Failure::InvalidBaseline {
                    problem: e.to_string(),
                }
            })
        })?;
        for warning in &validated.warnings {
            tracing::warn!(key_arn = %replica, primary = %primary, warning = %warning, "the primary's policy has a statement KMS accepts but ignores; mirrored as it is");
        }
        Ok(Desired {
            text,
            policy: validated.policy,
            baseline: name,
            rewrites,
        })
    }
}

/// The desired policy of one replica, and what went into it.
pub(super) struct Desired {
    /// As written.
    text: String,
    /// Its canonical form.
    policy: CanonicalPolicy,
    /// The baseline's name (catalogue), `primary`, or the single baseline's origin.
    baseline: String,
    /// What mirroring rewrote.
    rewrites: Vec<Rewrite>,
}

impl Desired {
    /// `o`, naming this baseline and its rewrites.
    fn name(&self, mut o: Outcome) -> Outcome {
        o.baseline = Some(self.baseline.clone());
        o.rewrites = self.rewrites.clone();
        o
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
