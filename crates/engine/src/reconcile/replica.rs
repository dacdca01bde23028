//! The replica stage: one replica brought to the baseline, or told why not. The desired
//! policy is rendered (or mirrored) and validated, the live policy read and compared; on
//! drift the guards run before any write — the key's own state (when not yet described),
//! the exclude tag, dry-run, the flap guard and an earlier verification failure — and only
//! then the claimed write.

use std::ops::ControlFlow;
use std::time::SystemTime;

use super::sweep::Slot;

use krg_policy::{
    CanonicalPolicy, LockoutGuard, Origin, Trust, ValidationError, Verdict, assess, assess_parsed,
    compare, contain_with, explain, guardrails, validate_as, validate_merged,
};

use super::{Known, Reconciler, RunCache, updating};
use crate::baseline::{
    Baseline, MirrorOptions, RenderContext, Rewrite, Template, mirror_for_replica,
};
use crate::catalogue::{PRIMARY, Pick, PickError};
use crate::decide::{KeyFacts, KeyState, MultiRegionRole, lockout_guard, skip_for_state};
use crate::error::CallError;
use crate::exemption::{Exemption, exemption};
use crate::key::KeyArn;
use crate::outcome::{DriftNote, Extras, Failure, Outcome, Skip, Status, rfc3339};
use crate::ports::Tags;
use crate::ports::{
    AccountDirectory, BackupStore, KeyDirectory, PolicyStore, WriteHistory, WriteRecord,
};
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

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore, A: AccountDirectory> Reconciler<K, P, B, A> {
    /// Brings one replica to the baseline (or reports why not). A sweep's Region `slot` is
    /// held while the replica is read and given back once it has drifted: the checks and
    /// the write that follow wait for their own pacing (PutKeyPolicy's is the slowest),
    /// not in the place of the Region's next reads.
    pub(super) async fn reconcile_replica(
        &self,
        event: &EventInfo,
        replica: &KeyArn,
        primary: &KeyArn,
        known: Known,
        cache: &RunCache,
        slot: Option<Slot>,
    ) -> Outcome {
        if let Known::Facts(facts) = &known
            && let Some(skip) = unmanaged(replica, facts)
        {
            return skip;
        }
        let trust = self.settings.trust_for(replica);
        let wanted = match self.desired_policy(replica, primary, cache).await {
            Ok(d) => d,
            Err(Refusal {
                failure,
                baseline,
                assess_default,
            }) => {
                let mut o = Outcome::failed(replica, failure);
                o.baseline = baseline;
                if assess_default {
                    self.assess_against_default(replica, primary, cache, &mut o)
                        .await;
                }
                return o;
            }
        };
        let live = match self.policies.get_policy(replica).await {
            Ok(p) => p,
            Err(e) => return wanted.name(Outcome::call_failed(replica, &e)),
        };
        // The live policy is parsed once: here, or by contains matching.
        let (desired_text, desired, extras, parsed) = match self.settings.baseline_match {
            BaselineMatch::Exact => (
                wanted.text.clone(),
                wanted.policy.clone(),
                None,
                CanonicalPolicy::parse(&live).ok(),
            ),
            BaselineMatch::Contains => match self.merged(replica, &live, &wanted, &trust) {
                Ok(merged) => merged,
                Err(failure) => return wanted.name(Outcome::failed(replica, *failure)),
            },
        };
        let (drift, exposure) = match assess_parsed(&live, parsed.as_ref(), &desired, &trust) {
            (Verdict::InSync, _) => {
                let mut o = wanted.name(Outcome::in_sync(replica));
                o.extras = extras;
                return o;
            }
            (Verdict::Drift(diff), exposure) => (diff, exposure),
        };
        drop(slot);
        let mut outcome = match self.left_alone(replica, &known, cache).await {
            ControlFlow::Break(left) => left,
            ControlFlow::Continue(note) => {
                let mut o = self
                    .guarded_write(event, replica, &live, &desired_text, &desired)
                    .await;
                match note {
                    ExemptionNote::None => {}
                    ExemptionNote::Ended(ended) => o.exemption_ended = Some(ended),
                    ExemptionNote::Ignored(why) => o.exemption_ignored = Some(why),
                }
                o
            }
        }
        .with_drift(drift, exposure);
        if matches!(
            outcome.status,
            Status::Remediated(_) | Status::DriftDetected(_)
        ) {
            // The write judged the other way round: what it gives that the key did not have.
            outcome.write_exposure = parsed.as_ref().map(|l| explain(l, &desired, &trust));
        }
        outcome.actor = event.actor.clone();
        outcome.extras = extras;
        wanted.name(outcome)
    }

    /// A key whose tag picks no baseline it may have is still judged: its live policy
    /// against the default baseline, so an exposure behind a bad tag is reported (never
    /// written).
    async fn assess_against_default(
        &self,
        replica: &KeyArn,
        primary: &KeyArn,
        cache: &RunCache,
        outcome: &mut Outcome,
    ) {
        let Baseline::Catalogue(catalogue) = &self.settings.baseline else {
            return;
        };
        let template = match catalogue.pick(replica.account(), None, None) {
            Ok((Pick::Template { template, .. }, _)) => Some(template),
            Ok((Pick::Primary, _)) => None,
            Err(_) => return,
        };
        let Ok((text, _, _)) = self
            .render_or_mirror(replica, primary, template, cache)
            .await
        else {
            return;
        };
        let (Ok(default), Ok(live)) = (
            CanonicalPolicy::parse(&text),
            self.policies.get_policy(replica).await,
        ) else {
            return;
        };
        if let (Verdict::Drift(diff), exposure) =
            assess(&live, &default, &self.settings.trust_for(replica))
        {
            outcome.diff = Some(diff);
            outcome.exposure = exposure;
        }
    }

    /// `contains` mode: the baseline with the live policy's allowed extras, validated (the
    /// lockout check included) as the document to hold, and the live policy parsed.
    fn merged(
        &self,
        replica: &KeyArn,
        live: &str,
        wanted: &Desired,
        trust: &Trust,
    ) -> Result<Merged, Box<Failure>> {
        // A live policy that does not parse has no statements to keep: the baseline alone.
        let c = contain_with(live, &wanted.text, &wanted.policy, trust);
        let validated = if c.kept.is_empty() {
            None
        } else {
            // The kept extras come from a policy KMS accepted: tolerate what KMS tolerates
            // (as for a mirrored primary); the lockout check is as strict as ever. The
            // baseline is validated already: only what the extras add is checked.
            let v = validate_merged(&c, &wanted.policy, &self.lockout_guard(replica)).map_err(|e| {
                Box::new(Failure::InvalidBaseline { problem: format!(
                    "the baseline with the live policy's kept extra statements is not a policy KMS would accept: {e}"
                )})
            })?;
            // The extras were judged harmless one by one; the document written is judged
            // whole.
            refuse_breaches(
                &v.policy,
                trust,
                "the baseline with the live policy's kept extra statements",
            )?;
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
    /// and the exclude tag. Continues with what became of the key's exemption, if it has
    /// one that does not hold: ended, or not honoured (fail closed).
    async fn left_alone(
        &self,
        replica: &KeyArn,
        known: &Known,
        cache: &RunCache,
    ) -> ControlFlow<Outcome, ExemptionNote> {
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
            return ControlFlow::Continue(ExemptionNote::None);
        };
        let tags = match self.tags(replica, cache).await {
            Ok(tags) => tags,
            Err(e) => return ControlFlow::Break(Outcome::call_failed(replica, &e)),
        };
        let Some(value) = tags.get(tag) else {
            return ControlFlow::Continue(ExemptionNote::None);
        };
        let now = SystemTime::now();
        let exemption = exemption(value, now);
        let ignored = |why: String| {
            tracing::warn!(key_arn = %replica, tag = %tag, value = %value, reason = %why, "the key's exemption is not honoured; reconciled");
            ControlFlow::Continue(ExemptionNote::Ignored(why))
        };
        let too_long = |end: Option<SystemTime>| {
            let max = self.settings.exemption_max?;
            let limit = now.checked_add(max)?;
            end.is_none_or(|end| end > limit).then(|| {
                format!(
                    "the exemption {} lasts longer than EXEMPTION_MAX_DAYS={} allows; set until= within {} days",
                    match end {
                        Some(end) => format!("until {}", rfc3339(end)),
                        None => "has no end and".to_owned(),
                    },
                    max.as_secs() / 86_400,
                    max.as_secs() / 86_400,
                )
            })
        };
        let until = match exemption {
            Exemption::Forever => None,
            Exemption::Until(end) => Some(end),
            Exemption::Unreadable { value, problem } => {
                return ignored(format!(
                    "the exclude tag {tag}'s value {value:?} cannot be read ({problem}), and an exemption that cannot be read does not exclude"
                ));
            }
            e @ Exemption::Expired { .. } => {
                let ended = e.ends().unwrap_or_default();
                tracing::warn!(key_arn = %replica, tag = %tag, ended = %ended, "the key's exemption has ended; reconciled again (remove the tag)");
                return ControlFlow::Continue(ExemptionNote::Ended(ended));
            }
        };
        if let Some(why) = too_long(until) {
            return ignored(why);
        }
        ControlFlow::Break(Outcome::skipped(
            replica,
            Skip::Excluded {
                tag: tag.clone(),
                until: until.map(rfc3339),
            },
        ))
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
            .map_err(|r| BaselineForError::Desired(r.failure))
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
    ) -> Result<(String, Option<&Template>), Refusal> {
        let catalogue = match &self.settings.baseline {
            Baseline::Template(t) => return Ok((t.origin().to_owned(), Some(t))),
            Baseline::Primary => return Ok((PRIMARY.to_owned(), None)),
            Baseline::Catalogue(c) => c,
        };
        let call = |e| Refusal::new(Failure::Call(e), None);
        let tags = self.tags(replica, cache).await.map_err(call)?;
        let own = tags.get(catalogue.tag());
        let inherited = match own {
            Some(_) => None,
            None => self
                .tags(primary, cache)
                .await
                .map_err(call)?
                .get(catalogue.tag())
                .cloned(),
        };
        let picked = catalogue.pick(
            replica.account(),
            own.map(String::as_str),
            inherited.as_deref(),
        );
        match picked {
            Ok((Pick::Template { name, template }, _)) => Ok((name.to_owned(), Some(template))),
            Ok((Pick::Primary, _)) => Ok((PRIMARY.to_owned(), None)),
            Err(e) => {
                let failure = match e {
                    PickError::Unknown(e) => Failure::UnknownBaseline(e),
                    PickError::OutOfScope(e) => Failure::BaselineOutOfScope(e),
                };
                Err(Refusal {
                    failure,
                    baseline: None,
                    assess_default: true,
                })
            }
        }
    }

    /// The policy text for one replica: the template rendered, or the primary's policy
    /// mirrored (read once per run), with where it came from and what mirroring rewrote.
    async fn render_or_mirror(
        &self,
        replica: &KeyArn,
        primary: &KeyArn,
        template: Option<&Template>,
        cache: &RunCache,
    ) -> Result<(String, Origin, Vec<Rewrite>), Failure> {
        if let Some(t) = template {
            let text = t.render(RenderContext {
                key: replica,
                primary_region: primary.region(),
            });
            return Ok((text, Origin::Configured, Vec::new()));
        }
        let cell = RunCache::cell(&cache.policies, primary);
        let primary_policy = cell
            .get_or_init(|| self.policies.get_policy(primary))
            .await
            .as_ref()
            .map_err(|e| Failure::Call(e.clone()))?;
        let options = MirrorOptions {
            rewrite_own_arns: self.settings.mirror_rewrite,
        };
        let mirrored =
            mirror_for_replica(primary_policy, primary, replica, options).map_err(|e| {
                Failure::InvalidBaseline {
                    problem: e.to_string(),
                }
            })?;
        Ok((mirrored.text, Origin::Mirrored, mirrored.rewrites))
    }

    /// The rendered (or mirrored), validated baseline for one replica, within the
    /// guardrails; on failure, the baseline's name when one was picked.
    async fn desired_policy(
        &self,
        replica: &KeyArn,
        primary: &KeyArn,
        cache: &RunCache,
    ) -> Result<Desired, Refusal> {
        let (name, template) = self.pick(replica, primary, cache).await?;
        let named = |f: Failure| Refusal::new(f, Some(name.clone()));
        let (text, origin, rewrites) = self
            .render_or_mirror(replica, primary, template, cache)
            .await
            .map_err(named)?;
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
        let source = match template {
            Some(t) if t.origin() == name => format!("baseline {name}"),
            Some(t) => format!("baseline {name} ({})", t.origin()),
            None => format!("the primary {primary}'s policy, mirrored"),
        };
        refuse_breaches(
            &validated.policy,
            &self.settings.trust_for(replica),
            &source,
        )
        .map_err(|f| named(*f))?;
        for warning in &validated.warnings {
            tracing::warn!(key_arn = %replica, primary = %primary, warning = %warning, "the primary's policy has a statement KMS accepts but ignores; mirrored as it is");
        }
        Ok(Desired {
            text,
            policy: validated.policy,
            baseline: name,
            sha256: template.map(|t| t.sha256().to_owned()),
            rewrites,
        })
    }
}

/// Why a replica has no desired policy.
pub(super) struct Refusal {
    /// The failure reported.
    failure: Failure,
    /// The baseline's name, when one was picked.
    baseline: Option<String>,
    /// The key's tag picked no baseline it may have: its live policy is still judged
    /// against the default baseline.
    assess_default: bool,
}

impl Refusal {
    fn new(failure: Failure, baseline: Option<String>) -> Self {
        Self {
            failure,
            baseline,
            assess_default: false,
        }
    }
}

/// The guardrails on a policy about to be written (or, in dry-run, that would be): any
/// breach refuses it whole.
pub(super) fn refuse_breaches(
    policy: &CanonicalPolicy,
    trust: &Trust,
    source: &str,
) -> Result<(), Box<Failure>> {
    let breaches = guardrails(policy, trust);
    if breaches.is_empty() {
        return Ok(());
    }
    Err(Box::new(Failure::GuardrailRefused {
        source: source.to_owned(),
        breaches,
    }))
}

/// Contains matching's document to hold: its text, its canonical form, the extras kept and
/// removed, and the live policy parsed (when it parses).
type Merged = (
    String,
    CanonicalPolicy,
    Option<Extras>,
    Option<CanonicalPolicy>,
);

/// What became of a key's exemption when it does not leave the key alone.
enum ExemptionNote {
    /// No exclude tag.
    None,
    /// It ended then (RFC 3339).
    Ended(String),
    /// It is not honoured: why.
    Ignored(String),
}

/// The desired policy of one replica, and what went into it.
pub(super) struct Desired {
    /// As written.
    text: String,
    /// Its canonical form.
    policy: CanonicalPolicy,
    /// The baseline's name (catalogue), `primary`, or the single baseline's origin.
    baseline: String,
    /// The template's SHA-256 (not for a mirrored primary).
    sha256: Option<String>,
    /// What mirroring rewrote.
    rewrites: Vec<Rewrite>,
}

impl Desired {
    /// `o`, naming this baseline and its rewrites.
    fn name(&self, mut o: Outcome) -> Outcome {
        o.baseline = Some(self.baseline.clone());
        o.baseline_sha256 = self.sha256.clone();
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
