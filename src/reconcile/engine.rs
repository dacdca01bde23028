use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream;
use tokio::sync::{OnceCell, Semaphore};

use super::ports::{
    Backup, BackupStore, CallError, Claimed, ErrorKind, KeyDirectory, NoBackups, PolicyStore,
    WriteClaim, WriteHistory, WriteRecord, rfc3339,
};
use super::{Mode, Settings};
use crate::core::baseline::{Baseline, RenderContext, mirror_primary};
use crate::core::decide::{
    KeyFacts, KeyState, MultiRegionRole, Reach, Verdict, compare, drift_name, is_excluded, reach,
    skip_for_state,
};
use crate::core::key::{KeyArn, Region};
use crate::core::outcome::{Action, FLAPPING, Outcome, Report, Retry, RunError};
use crate::core::policy::{CanonicalPolicy, LockoutGuard, validate};
use crate::core::trigger::{EventInfo, Target, Trigger};
use crate::retry::{Step, retry};

/// Reconciles replica key policies against the baseline, through the ports it is given.
pub struct Reconciler<K, P, B = NoBackups> {
    keys: K,
    policies: P,
    backups: B,
    settings: Arc<Settings>,
}

/// A write claim older than this was left by an invocation that died between claiming and
/// releasing it (claim to release is a backup, one PutKeyPolicy and the re-read: seconds),
/// and is taken over.
pub const CLAIM_TTL: Duration = Duration::from_secs(120);

/// Receives sweep progress: the CLI draws a progress bar; the Lambda needs nothing.
pub trait Progress: Sync {
    /// The sweep found this many multi-Region key copies to look at.
    fn planned(&self, _copies: usize) {}
    /// One copy is done (`None`: a primary, which is only a mirror source).
    fn advanced(&self, _outcome: Option<&Outcome>) {}
}

/// No progress reporting.
pub struct Quiet;
impl Progress for Quiet {}

/// What is already known about a replica before its policy is read.
enum Known {
    /// DescribeKey facts (the event path).
    Facts(Box<KeyFacts>),
    /// Only that a DescribeKey of a related key lists it as a replica (the sweep, fan-out):
    /// its own state is read only when a write is about to happen.
    Replica,
}

/// Primary policies read once per run, however many replicas mirror them.
#[derive(Default)]
struct PrimaryPolicies(Mutex<HashMap<KeyArn, Arc<PolicyCell>>>);

type PolicyCell = OnceCell<Result<String, CallError>>;

impl<K: KeyDirectory, P: PolicyStore> Reconciler<K, P, NoBackups> {
    /// An engine over these ports, keeping no backups (the previous policy is logged).
    pub fn new(keys: K, policies: P, settings: Arc<Settings>) -> Self {
        Self::with_backups(keys, policies, NoBackups::default(), settings)
    }
}

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore> Reconciler<K, P, B> {
    /// An engine that backs up every policy before overwriting it.
    pub fn with_backups(keys: K, policies: P, backups: B, settings: Arc<Settings>) -> Self {
        Self {
            keys,
            policies,
            backups,
            settings,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Carries out a trigger and reports every key it touched.
    pub async fn run(&self, trigger: &Trigger) -> Report {
        match trigger {
            Trigger::Ignore { event, reason } => {
                tracing::info!(event_name = %event.name, event_id = ?event.id, reason = %reason, "no-op");
                Report::default()
            }
            Trigger::Sweep { regions } => {
                let regions = regions.as_deref().unwrap_or(&self.settings.sweep_regions);
                self.sweep(regions, &Quiet).await
            }
            Trigger::Keys { event, targets } => {
                let cache = PrimaryPolicies::default();
                let mut report = Report::default();
                for target in targets {
                    self.reconcile_target(event, target, &cache, &mut report)
                        .await;
                }
                report
            }
        }
    }

    /// Reconciles one key by ARN (the CLI's `check` and `diff`).
    pub async fn check(&self, key: &KeyArn) -> Report {
        let event = EventInfo {
            id: None,
            name: "check".into(),
        };
        let target = Target {
            key: key.clone(),
            scope: crate::core::trigger::Scope::Key,
        };
        let mut report = Report::default();
        self.reconcile_target(&event, &target, &PrimaryPolicies::default(), &mut report)
            .await;
        report
    }

    /// Reconciles every multi-Region replica in these Regions, with the fewest calls: one
    /// ListKeys per page (single-Region keys cost nothing more), one DescribeKey per key id
    /// (its MultiRegionConfiguration classifies every copy), one GetKeyPolicy per replica
    /// (plus the primary's once when mirroring), tags and state only before a write.
    /// In-sync keys are counted in the summary, not listed, so the report stays small.
    pub async fn sweep(&self, regions: &[Region], progress: &dyn Progress) -> Report {
        let event = EventInfo {
            id: None,
            name: "sweep".into(),
        };
        let mut report = Report::default();
        let listings =
            futures::future::join_all(regions.iter().map(|r| self.keys.list_multi_region_keys(r)))
                .await;
        let mut by_id: BTreeMap<String, Vec<KeyArn>> = BTreeMap::new();
        let mut copies = 0;
        for listing in listings {
            match listing {
                Ok(found) => {
                    for key in found {
                        copies += 1;
                        by_id.entry(key.key_id().to_owned()).or_default().push(key);
                    }
                }
                Err(e) => report.errors.push(RunError {
                    message: e.to_string(),
                    retry: retry_class(&e),
                }),
            }
        }
        progress.planned(copies);
        let per_region: HashMap<&Region, Semaphore> = regions
            .iter()
            .map(|r| (r, Semaphore::new(self.settings.concurrency.max(1))))
            .collect();
        let cache = PrimaryPolicies::default();
        let mut counts: BTreeMap<Action, usize> = BTreeMap::new();
        let mut outcomes = stream::iter(by_id.into_values())
            .map(|copies| self.sweep_key_id(copies, &per_region, &cache, progress))
            .buffer_unordered(self.settings.concurrency.max(1) * regions.len().max(1));
        while let Some(batch) = outcomes.next().await {
            for o in batch {
                log_outcome(&event, &o);
                *counts.entry(o.action).or_default() += 1;
                if o.action != Action::InSync {
                    report.outcomes.push(o);
                }
            }
        }
        report.outcomes.sort_by(|a, b| a.key_arn.cmp(&b.key_arn));
        report.summary = Some(counts);
        report
    }

    /// All copies of one multi-Region key id found by the sweep.
    async fn sweep_key_id(
        &self,
        copies: Vec<KeyArn>,
        per_region: &HashMap<&Region, Semaphore>,
        cache: &PrimaryPolicies,
        progress: &dyn Progress,
    ) -> Vec<Outcome> {
        let slot = |key: &KeyArn| {
            per_region
                .get(key.region())
                .expect("listed in a swept Region")
        };
        // Any copy's DescribeKey lists them all: when one cannot be described, ask the next,
        // so one unreadable copy never hides its siblings.
        let mut unreadable: Vec<Outcome> = Vec::new();
        let mut described = None;
        for copy in &copies {
            let result = {
                let _permit = slot(copy).acquire().await.expect("never closed");
                self.keys.describe_key(copy).await
            };
            match result {
                Ok(facts) => {
                    described = Some(facts);
                    break;
                }
                Err(e) => unreadable.push(call_failed(copy, &e)),
            }
        }
        // The copies before the described one could not be described: each is reported.
        let rest = &copies[unreadable.len()..];
        unreadable.iter().for_each(|o| progress.advanced(Some(o)));
        let mut outcomes = unreadable;
        let mr = match described {
            Some(KeyFacts {
                state: KeyState::Updating,
                ..
            }) => {
                // The primary is not known while it moves: report the other copies, write none.
                for copy in rest {
                    let o = call_failed(copy, &updating(copy, 1));
                    progress.advanced(Some(&o));
                    outcomes.push(o);
                }
                return outcomes;
            }
            Some(KeyFacts {
                multi_region: Some(mr),
                ..
            }) => mr,
            Some(_) => {
                rest.iter().for_each(|_| progress.advanced(None));
                return outcomes;
            }
            None => return outcomes,
        };
        for copy in rest {
            if *copy == mr.primary {
                progress.advanced(None);
                continue;
            }
            let _permit = slot(copy).acquire().await.expect("never closed");
            let sweep = EventInfo {
                id: None,
                name: "sweep".into(),
            };
            let o = self
                .reconcile_replica(&sweep, copy, &mr.primary, Known::Replica, cache)
                .await;
            progress.advanced(Some(&o));
            outcomes.push(o);
        }
        outcomes
    }

    async fn reconcile_target(
        &self,
        event: &EventInfo,
        target: &Target,
        cache: &PrimaryPolicies,
        report: &mut Report,
    ) {
        let facts = match self.describe_ready(&target.key).await {
            Ok(f) => f,
            Err(e) => {
                let o = call_failed(&target.key, &e);
                log_outcome(event, &o);
                report.outcomes.push(o);
                return;
            }
        };
        let mirrors = self.settings.baseline.mirrors_primary();
        let (primary, replicas) = match reach(&facts, target.scope, mirrors) {
            Reach::Skip(reason) => {
                let o = Outcome::new(&target.key, Action::Skipped, reason);
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
                    self.reconcile_replica(event, &replica, primary, known, cache)
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

    /// DescribeKey, waiting (bounded) while a fresh replica is `Creating` or not yet visible,
    /// or while a primary Region change is `Updating` the key (DescribeKey may then show the
    /// new primary as a replica).
    async fn describe_ready(&self, key: &KeyArn) -> Result<KeyFacts, CallError> {
        let backoff = self.settings.consistency;
        retry(&backoff, |n| async move {
            match self.keys.describe_key(key).await {
                Ok(f) if f.state == KeyState::Creating => Step::Again(CallError::new(
                    "DescribeKey",
                    key,
                    ErrorKind::InvalidState,
                    format!("the key is still Creating after {n} attempts; Lambda will retry the event"),
                )),
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

    /// Brings one replica to the baseline (or reports why not).
    async fn reconcile_replica(
        &self,
        event: &EventInfo,
        replica: &KeyArn,
        primary: &KeyArn,
        known: Known,
        cache: &PrimaryPolicies,
    ) -> Outcome {
        let mut checked = false;
        if let Known::Facts(facts) = &known {
            if let Some(skip) = managed(replica, facts) {
                return skip;
            }
            checked = true;
        }

        let (desired_text, desired) = match self.desired_policy(replica, primary, cache).await {
            Ok(d) => d,
            Err(outcome) => return *outcome,
        };
        let live = match self.policies.get_policy(replica).await {
            Ok(p) => p,
            Err(e) => return call_failed(replica, &e),
        };
        let drift = match compare(&live, &desired) {
            Verdict::InSync => return Outcome::new(replica, Action::InSync, None),
            Verdict::Drift(diff) => diff,
        };

        if !checked {
            match self.keys.describe_key(replica).await {
                Ok(facts) => {
                    if let Some(skip) = managed(replica, &facts) {
                        return skip.with_diff(drift);
                    }
                }
                Err(e) => return call_failed(replica, &e).with_diff(drift),
            }
        }
        if let Some(tag) = &self.settings.exclude_tag {
            match self.keys.tag_keys(replica).await {
                Ok(tags) if is_excluded(tags.iter().map(String::as_str), tag) => {
                    return Outcome::new(
                        replica,
                        Action::Skipped,
                        format!("excluded by tag {tag}; drift left in place"),
                    )
                    .with_diff(drift);
                }
                Ok(_) => {}
                Err(e) => return call_failed(replica, &e).with_diff(drift),
            }
        }

        if self.settings.mode == Mode::DryRun {
            return Outcome::new(
                replica,
                Action::DriftDetected,
                "policy differs from the baseline; dry-run, nothing written".to_owned(),
            )
            .with_diff(drift);
        }

        let history = match self.write_history(replica).await {
            Ok(h) => h,
            Err(e) => {
                return Outcome::failed(
                    replica,
                    format!(
                        "the write history (backups) could not be read, so nothing was written: {e}"
                    ),
                    retry_class(&e),
                )
                .with_diff(drift);
            }
        };
        if let Some(earlier) = history
            .last_mismatch
            .as_ref()
            .and_then(|w| same_mismatch(w, &live, &desired))
        {
            return earlier.with_diff(drift);
        }
        match history.writes {
            n if n >= self.settings.flap.max => {
                return Outcome::new(
                    replica,
                    Action::Skipped,
                    format!(
                        "{FLAPPING}: already rewritten {n} times in the last {} s; another writer keeps changing this policy, so it is left alone (see the runbook)",
                        self.settings.flap.window.as_secs()
                    ),
                )
                .with_diff(drift);
            }
            _ => {}
        }

        self.claimed_write(event, replica, &live, &desired_text, &desired)
            .await
            .with_diff(drift)
    }

    /// Writes `text` over `live` once this invocation holds the claim on that drift, and
    /// releases it after; when another invocation holds it, waits for that one's write.
    async fn claimed_write(
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
            Err(e) => {
                return Outcome::failed(
                    replica,
                    format!("the write could not be claimed, so nothing was written: {e}"),
                    retry_class(&e),
                );
            }
        }
        let reason = format!("drift from {}", self.settings.baseline.describe());
        let outcome = self
            .write_verified(event, replica, live, text, desired, reason)
            .await;
        if let Err(e) = self.backups.release(&claim).await {
            tracing::warn!(key_arn = %replica, error = %e, "the write claim could not be released; it is taken over after {} s", CLAIM_TTL.as_secs());
        }
        outcome
    }

    /// Claims the write of one drift; a claim abandoned longer than [`CLAIM_TTL`] ago is
    /// released and claimed anew.
    async fn claim(&self, claim: &WriteClaim) -> Result<Claimed, CallError> {
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
                Action::InSync,
                format!(
                    "written by a concurrent invocation that claimed the same fix ({holder}); re-read and equivalent to the baseline, nothing written here"
                ),
            ),
            Ok(Reread::Mismatch { .. }) => Outcome::failed(
                key,
                format!(
                    "a concurrent invocation claimed the same fix ({holder}), and the policy changed to something other than the baseline; nothing written here; Lambda will retry the event"
                ),
                Retry::Retryable,
            ),
            Err(RereadError::Stale(attempts)) => Outcome::failed(
                key,
                format!(
                    "a concurrent invocation claimed the same fix ({holder}) and its write had not landed after {attempts} re-reads; nothing written here; Lambda will retry the event (a claim is taken over after {} s)",
                    CLAIM_TTL.as_secs()
                ),
                Retry::Retryable,
            ),
            Err(RereadError::Call(e)) => call_failed(key, &e),
        }
    }

    /// Backs up `live`, writes `text`, re-reads and verifies it against `desired`. The write
    /// does not happen when the backup fails; a mismatch after the write is never retried.
    async fn write_verified(
        &self,
        event: &EventInfo,
        key: &KeyArn,
        live: &str,
        text: &str,
        desired: &CanonicalPolicy,
        reason: String,
    ) -> Outcome {
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
            Err(e) => {
                return Outcome::failed(
                    key,
                    format!(
                        "the previous policy could not be backed up, so nothing was written: {e}"
                    ),
                    retry_class(&e),
                );
            }
        };
        tracing::warn!(
            key_arn = %key,
            previous_policy = %live,
            backup = %kept_at,
            reason = %reason,
            "overwriting a key policy; the previous policy is in this line and in the backup"
        );
        if let Err(e) = self.policies.put_policy(key, text).await {
            return call_failed(key, &e);
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
                Action::Remediated,
                format!("policy rewritten ({reason}) and verified; previous policy: {kept_at}"),
            ),
            Ok(Reread::Mismatch { stored, rest }) => {
                write.mismatch = Some(stored);
                Outcome::failed(
                    key,
                    format!(
                        "verification failed: after PutKeyPolicy the key's policy is still not equivalent to what was written (KMS stored something else; compare the diff, fix the baseline; not rewritten again for this baseline):\n{rest}"
                    ),
                    Retry::NonRetryable,
                )
            }
            Err(RereadError::Stale(attempts)) => Outcome::failed(
                key,
                format!(
                    "the policy was written, but {attempts} re-reads still returned the previous policy (KMS is eventually consistent); Lambda will retry the event and find it in sync"
                ),
                Retry::Retryable,
            ),
            Err(RereadError::Call(e)) => Outcome::failed(
                key,
                format!("the policy was written but could not be re-read to verify it: {e}"),
                retry_class(&e),
            ),
        };
        if let Err(e) = self.backups.record_write(&write).await {
            tracing::error!(key_arn = %key, error = %e, "the write could not be recorded; the flap guard will not count it");
        }
        outcome
    }

    /// Re-reads a policy just written, until it is no longer the previous one (a stale read
    /// right after the write), within the consistency backoff.
    async fn reread(
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

    /// The rendered, validated baseline for one key, found from its own DescribeKey (the
    /// CLI's `validate-baseline --key`). `Err` carries the reason in words.
    pub async fn baseline_for(&self, key: &KeyArn) -> Result<String, String> {
        let facts = self
            .keys
            .describe_key(key)
            .await
            .map_err(|e| e.to_string())?;
        let primary = facts
            .multi_region
            .map(|m| m.primary)
            .ok_or_else(|| format!("{key} is not a multi-Region key"))?;
        self.desired_policy(key, &primary, &PrimaryPolicies::default())
            .await
            .map(|(text, _)| text)
            .map_err(|o| o.reason.unwrap_or_default())
    }

    /// Puts a previously backed-up policy back (the CLI's `restore`): validated like any
    /// baseline (never a lockout), skipped when already equivalent, dry-run unless the mode
    /// is enforce, backed up and verified like any write.
    pub async fn restore(&self, key: &KeyArn, policy: &str, from: &str) -> Outcome {
        let guard = self.lockout_guard(key);
        let desired = match validate(policy, &guard) {
            Ok(c) => c,
            Err(e) => {
                return *bad_baseline(
                    key,
                    &format!("the backup {from} is not a writable policy: {e}"),
                );
            }
        };
        let live = match self.policies.get_policy(key).await {
            Ok(p) => p,
            Err(e) => return call_failed(key, &e),
        };
        let drift = match compare(&live, &desired) {
            Verdict::InSync => {
                return Outcome::new(key, Action::InSync, format!("already equivalent to {from}"));
            }
            Verdict::Drift(d) => d,
        };
        if self.settings.mode == Mode::DryRun {
            return Outcome::new(
                key,
                Action::DriftDetected,
                format!("restoring {from} would change the policy; dry-run, nothing written (add --apply)"),
            )
            .with_diff(drift);
        }
        let event = EventInfo {
            id: None,
            name: "restore".into(),
        };
        self.write_verified(
            &event,
            key,
            &live,
            policy,
            &desired,
            format!("restore of {from}"),
        )
        .await
        .with_diff(drift)
    }

    fn lockout_guard(&self, key: &KeyArn) -> LockoutGuard {
        LockoutGuard {
            key_arn: key.to_string(),
            account_id: key.account().to_string(),
            partition: key.partition().to_owned(),
            remediator_role_arn: self.settings.remediator.as_ref().map(|r| r.to_string()),
        }
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
    ) -> Result<(String, CanonicalPolicy), Box<Outcome>> {
        let text = match &self.settings.baseline {
            Baseline::Template(t) => t.render(RenderContext {
                key: replica,
                primary_region: primary.region(),
            }),
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
                    .map_err(|e| Box::new(call_failed(replica, e)))?;
                mirror_primary(primary_policy, primary, replica)
                    .map_err(|e| bad_baseline(replica, &e.to_string()))?
            }
        };
        let guard = self.lockout_guard(replica);
        let canonical =
            validate(&text, &guard).map_err(|e| bad_baseline(replica, &e.to_string()))?;
        Ok((text, canonical))
    }
}

/// Whether a claim held since `holder.at` was abandoned, as seen at `now`.
fn abandoned(holder: &WriteClaim, now: SystemTime) -> bool {
    now.duration_since(holder.at)
        .is_ok_and(|age| age > CLAIM_TTL)
}

fn bad_baseline(key: &KeyArn, problem: &str) -> Box<Outcome> {
    Box::new(Outcome::failed(
        key,
        format!("the baseline for this key is invalid, nothing was written: {problem}"),
        Retry::NonRetryable,
    ))
}

/// What the re-read after a write found.
enum Reread {
    /// Equivalent to what was written.
    Verified,
    /// KMS stores something else than what was written.
    Mismatch { stored: String, rest: String },
}

/// Why a write could not be verified.
enum RereadError {
    /// Still the previous policy after this many re-reads.
    Stale(u32),
    /// GetKeyPolicy failed.
    Call(CallError),
}

impl std::fmt::Display for RereadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RereadError::Stale(n) => write!(f, "re-read {n} still returned the previous policy"),
            RereadError::Call(e) => e.fmt(f),
        }
    }
}

/// The failure to report instead of writing again, when the latest write of this key wrote
/// this same baseline, failed verification, and the key still holds what KMS stored then.
fn same_mismatch(earlier: &WriteRecord, live: &str, desired: &CanonicalPolicy) -> Option<Outcome> {
    let stored = CanonicalPolicy::parse(earlier.mismatch.as_deref()?).ok()?;
    let same_baseline = compare(&earlier.written, desired) == Verdict::InSync;
    let unchanged = compare(live, &stored) == Verdict::InSync;
    (same_baseline && unchanged).then(|| {
        let at = rfc3339(earlier.at);
        Outcome::failed(
            &earlier.key,
            format!(
                "verification failed earlier ({at}, event {} {}): KMS stores this baseline as something it is not equivalent to, so it is not written again; fix the baseline to match what KMS stores (see the diff), and the next event or sweep writes it",
                earlier.event_name,
                earlier.event_id.as_deref().unwrap_or("-"),
            ),
            Retry::NonRetryable,
        )
    })
}

fn retry_class(e: &CallError) -> Retry {
    if e.kind.is_retryable() {
        Retry::Retryable
    } else {
        Retry::NonRetryable
    }
}

/// The failure while a primary Region change is in progress: which key is the primary is
/// not known until it ends, so nothing is written.
fn updating(key: &KeyArn, attempts: u32) -> CallError {
    CallError::new(
        "DescribeKey",
        key,
        ErrorKind::InvalidState,
        format!(
            "the key is still Updating (a primary Region change is in progress) after {attempts} attempt(s); nothing was written; Lambda will retry the event"
        ),
    )
}

/// Why a replica is not managed, from its own DescribeKey facts.
fn managed(replica: &KeyArn, facts: &KeyFacts) -> Option<Outcome> {
    if facts.state == KeyState::Updating {
        return Some(call_failed(replica, &updating(replica, 1)));
    }
    if let Some(reason) = skip_for_state(&facts.state) {
        return Some(Outcome::new(replica, Action::Skipped, reason));
    }
    match facts.multi_region.as_ref().map(|m| m.role) {
        Some(MultiRegionRole::Replica) => None,
        Some(MultiRegionRole::Primary) => Some(Outcome::new(
            replica,
            Action::Skipped,
            "the key is now the primary (the primary Region moved)".to_owned(),
        )),
        None => Some(Outcome::new(
            replica,
            Action::Skipped,
            "single-Region key".to_owned(),
        )),
    }
}

fn call_failed(key: &KeyArn, e: &CallError) -> Outcome {
    Outcome::failed(key, e.to_string(), retry_class(e))
}

fn log_outcome(event: &EventInfo, o: &Outcome) {
    tracing::info!(
        event_name = %event.name,
        event_id = event.id.as_deref().unwrap_or(""),
        key_arn = %o.key_arn,
        region = %o.region,
        action = o.action.as_str(),
        reason = o.reason.as_deref().unwrap_or(""),
        diff = o.diff.as_deref().unwrap_or(""),
        "key reconciled"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::baseline::Template;
    use crate::core::trigger::Scope;
    use crate::reconcile::FlapGuard;
    use crate::reconcile::fake::{FakeAws, arn};
    use crate::retry::Backoff;
    use std::time::Duration;

    const BASELINE: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::{{AccountId}}:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "App", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::{{AccountId}}:role/app"}, "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*"}
  ]
}"#;

    fn rendered() -> String {
        BASELINE.replace("{{AccountId}}", "111122223333")
    }

    const DEFAULT_POLICY: &str = r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;

    fn settings(mode: Mode, baseline: Baseline) -> Arc<Settings> {
        Arc::new(Settings {
            mode,
            baseline,
            exclude_tag: Some("kms-replica-guard:exclude".into()),
            remediator: None,
            consistency: Backoff {
                attempts: 3,
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            concurrency: 4,
            sweep_regions: vec!["us-west-2".parse().unwrap()],
            flap: FlapGuard::default(),
        })
    }

    fn template() -> Baseline {
        Baseline::Template(Template::new("literal", BASELINE).unwrap())
    }

    fn event_on(region: &str, scope: Scope) -> Trigger {
        Trigger::Keys {
            event: EventInfo {
                id: Some("e-1".into()),
                name: "PutKeyPolicy".into(),
            },
            targets: vec![Target {
                key: arn(region),
                scope,
            }],
        }
    }

    async fn run(fake: &FakeAws, mode: Mode, baseline: Baseline, trigger: Trigger) -> Report {
        Reconciler::new(fake, fake, settings(mode, baseline))
            .run(&trigger)
            .await
    }

    /// An enforcing run of a replica-scoped event with the template baseline.
    async fn enforce(fake: &FakeAws, region: &str) -> Report {
        run(
            fake,
            Mode::Enforce,
            template(),
            event_on(region, Scope::Key),
        )
        .await
    }

    fn only(report: &Report) -> &Outcome {
        assert_eq!(report.outcomes.len(), 1, "{report:#?}");
        &report.outcomes[0]
    }

    #[tokio::test]
    async fn a_replica_with_the_default_policy_is_rewritten_and_verified_in_enforce_mode() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
        let r = enforce(&fake, "us-west-2").await;
        let o = only(&r);
        assert_eq!(o.action, Action::Remediated, "{o:#?}");
        assert!(o.diff.as_deref().unwrap().contains("App"), "{o:#?}");
        assert_eq!(fake.policy(&arn("us-west-2")), rendered());
        assert_eq!(
            fake.policy(&arn("eu-west-1")),
            DEFAULT_POLICY,
            "other replicas untouched"
        );
        assert_eq!(fake.count("PutKeyPolicy"), 1);
        assert_eq!(fake.count("GetKeyPolicy"), 2, "read, then verify");
    }

    #[tokio::test]
    async fn dry_run_reports_drift_and_writes_nothing() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let r = run(
            &fake,
            Mode::DryRun,
            template(),
            event_on("us-west-2", Scope::Key),
        )
        .await;
        assert_eq!(only(&r).action, Action::DriftDetected);
        assert!(only(&r).diff.is_some());
        assert_eq!(fake.count("PutKeyPolicy"), 0);
        assert_eq!(fake.policy(&arn("us-west-2")), DEFAULT_POLICY);
    }

    #[tokio::test]
    async fn an_equivalent_but_reformatted_policy_is_in_sync_and_costs_two_calls() {
        let reformatted = r#"{"Statement":[{"Resource":"*","Action":["KMS:encrypt","kms:Decrypt","kms:Decrypt"],"Principal":{"AWS":["arn:aws:iam::111122223333:role/app"]},"Effect":"allow","Sid":"App"},{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":["*"]}],"Version":"2012-10-17"}"#;
        let fake = FakeAws::family(reformatted, &["us-west-2"]);
        let r = enforce(&fake, "us-west-2").await;
        assert_eq!(only(&r).action, Action::InSync, "{r:#?}");
        assert_eq!(
            fake.policy(&arn("us-west-2")),
            reformatted,
            "left byte for byte"
        );
        assert_eq!(
            fake.calls.lock().unwrap().len(),
            2,
            "DescribeKey + GetKeyPolicy only"
        );
    }

    #[tokio::test]
    async fn replaying_the_same_event_writes_once() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
        let trigger = event_on("us-west-2", Scope::Key);
        let mut actions = vec![];
        for _ in 0..20 {
            actions.push(only(&engine.run(&trigger).await).action);
        }
        assert_eq!(fake.count("PutKeyPolicy"), 1);
        assert_eq!(actions[0], Action::Remediated);
        assert!(actions[1..].iter().all(|a| *a == Action::InSync));
    }

    #[tokio::test]
    async fn a_primary_is_never_written_and_is_skipped_when_not_mirrored() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let r = enforce(&fake, "us-east-1").await;
        assert_eq!(only(&r).action, Action::Skipped);
        assert_eq!(fake.count("PutKeyPolicy"), 0);
    }

    #[tokio::test]
    async fn a_primary_policy_change_is_mirrored_to_every_replica() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
        let primary_policy = rendered().replace("role/app", "role/app-v2");
        fake.with_key(&arn("us-east-1"), |k| k.policy = primary_policy.clone());
        let r = run(
            &fake,
            Mode::Enforce,
            Baseline::Primary,
            event_on("us-east-1", Scope::Key),
        )
        .await;
        assert_eq!(r.count(Action::Remediated), 2, "{r:#?}");
        for region in ["us-west-2", "eu-west-1"] {
            assert!(fake.policy(&arn(region)).contains("role/app-v2"));
        }
        assert_eq!(
            fake.policy(&arn("us-east-1")),
            primary_policy,
            "the primary is the source, never written"
        );
        let primary_reads = fake
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(op, on)| *op == "GetKeyPolicy" && on.contains("us-east-1"))
            .count();
        assert_eq!(
            primary_reads, 1,
            "the primary's policy is read once per run"
        );
    }

    #[tokio::test]
    async fn a_moved_primary_reconciles_all_related_replicas() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
        let r = run(
            &fake,
            Mode::DryRun,
            template(),
            event_on("us-east-1", Scope::AllRelated),
        )
        .await;
        assert_eq!(r.count(Action::DriftDetected), 2, "{r:#?}");
    }

    #[tokio::test]
    async fn an_excluded_replica_is_skipped_with_its_drift_shown() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.with_key(&arn("us-west-2"), |k| {
            k.tags = vec!["kms-replica-guard:exclude".into()]
        });
        let r = enforce(&fake, "us-west-2").await;
        let o = only(&r);
        assert_eq!(o.action, Action::Skipped);
        assert!(o.reason.as_deref().unwrap().contains("excluded"));
        assert!(o.diff.is_some());
        assert_eq!(fake.count("PutKeyPolicy"), 0);
    }

    #[tokio::test]
    async fn with_exclusion_by_tag_off_a_fix_costs_four_calls_and_tags_are_not_read() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.with_key(&arn("us-west-2"), |k| {
            k.tags = vec!["kms-replica-guard:exclude".into()]
        });
        let mut s = (*settings(Mode::Enforce, template())).clone();
        s.exclude_tag = None;
        let r = Reconciler::new(&fake, &fake, Arc::new(s))
            .run(&event_on("us-west-2", Scope::Key))
            .await;
        assert_eq!(only(&r).action, Action::Remediated, "{r:#?}");
        let calls = fake.operations();
        assert_eq!(
            calls,
            [
                "DescribeKey",
                "GetKeyPolicy",
                "PutKeyPolicy",
                "GetKeyPolicy"
            ],
            "no ListResourceTags"
        );
    }

    #[tokio::test]
    async fn keys_pending_deletion_are_skipped_with_the_reason() {
        for state in [
            KeyState::PendingDeletion,
            KeyState::PendingReplicaDeletion,
            KeyState::Unavailable,
        ] {
            let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
            fake.with_key(&arn("us-west-2"), |k| k.facts.state = state.clone());
            let r = enforce(&fake, "us-west-2").await;
            assert_eq!(only(&r).action, Action::Skipped, "{state:?}");
            assert!(
                only(&r).reason.as_deref().unwrap().contains("pending")
                    || state == KeyState::Unavailable
            );
            assert_eq!(fake.count("GetKeyPolicy"), 0);
        }
    }

    #[tokio::test]
    async fn a_replica_still_creating_is_waited_for_then_fixed() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.with_key(&arn("us-west-2"), |k| {
            k.invisible_for = 1;
            k.creating_for = 1;
        });
        let r = enforce(&fake, "us-west-2").await;
        assert_eq!(only(&r).action, Action::Remediated, "{r:#?}");
        assert_eq!(fake.count("DescribeKey"), 3);
    }

    #[tokio::test]
    async fn a_replica_that_stays_creating_fails_retryably() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.with_key(&arn("us-west-2"), |k| k.creating_for = 99);
        let r = enforce(&fake, "us-west-2").await;
        let o = only(&r);
        assert_eq!(
            (o.action, o.retry),
            (Action::Failed, Some(Retry::Retryable))
        );
        assert!(
            o.reason.as_deref().unwrap().contains("still Creating"),
            "{o:#?}"
        );
        assert_eq!(
            fake.count("DescribeKey"),
            3,
            "bounded by the backoff's attempts"
        );
        assert_eq!(r.failure_class(), Some(Retry::Retryable));
    }

    #[tokio::test]
    async fn a_key_that_never_appears_fails_retryably() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.with_key(&arn("us-west-2"), |k| k.invisible_for = 99);
        let r = enforce(&fake, "us-west-2").await;
        let o = only(&r);
        assert_eq!(o.retry, Some(Retry::Retryable));
        assert!(
            o.reason.as_deref().unwrap().contains("still not found"),
            "{o:#?}"
        );
    }

    #[tokio::test]
    async fn an_invalid_rendered_baseline_writes_nothing() {
        let lockout = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:role/app"},"Action":"kms:Decrypt","Resource":"*"}]}"#;
        let baseline = Baseline::Template(Template::new("literal", lockout).unwrap());
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let r = run(
            &fake,
            Mode::Enforce,
            baseline,
            event_on("us-west-2", Scope::Key),
        )
        .await;
        let o = only(&r);
        assert_eq!(
            (o.action, o.retry),
            (Action::Failed, Some(Retry::NonRetryable))
        );
        assert!(o.reason.as_deref().unwrap().contains("lock out"), "{o:#?}");
        assert_eq!(fake.count("PutKeyPolicy"), 0);
    }

    #[tokio::test]
    async fn a_primary_policy_that_would_lock_out_the_remediator_is_not_mirrored() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.with_key(&arn("us-east-1"), |k| {
            k.policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/app"},"Action":"kms:*","Resource":"*"}]}"#.into()
        });
        let r = run(
            &fake,
            Mode::Enforce,
            Baseline::Primary,
            event_on("us-west-2", Scope::Key),
        )
        .await;
        assert_eq!(only(&r).action, Action::Failed);
        assert_eq!(fake.count("PutKeyPolicy"), 0);
    }

    #[tokio::test]
    async fn a_policy_kms_stores_differently_is_a_verification_failure_not_a_loop() {
        let mut fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.put_rewrite = Some(|p| p.replace("kms:Encrypt", "kms:ReEncrypt*"));
        let r = enforce(&fake, "us-west-2").await;
        let o = only(&r);
        assert_eq!(
            (o.action, o.retry),
            (Action::Failed, Some(Retry::NonRetryable))
        );
        assert!(
            o.reason.as_deref().unwrap().contains("verification failed"),
            "{o:#?}"
        );
        assert_eq!(
            fake.count("PutKeyPolicy"),
            1,
            "one write, no retry loop inside the run"
        );
    }

    #[tokio::test]
    async fn failures_carry_the_retry_class_of_their_cause() {
        for (op, kind, retry) in [
            ("GetKeyPolicy", ErrorKind::Throttled, Retry::Retryable),
            ("PutKeyPolicy", ErrorKind::Transient, Retry::Retryable),
            ("PutKeyPolicy", ErrorKind::AccessDenied, Retry::NonRetryable),
            ("DescribeKey", ErrorKind::AccessDenied, Retry::NonRetryable),
        ] {
            let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
            fake.fail(op, &[kind]);
            let r = enforce(&fake, "us-west-2").await;
            let o = only(&r);
            assert_eq!(
                (o.action, o.retry),
                (Action::Failed, Some(retry)),
                "{op} {kind:?}"
            );
            assert_eq!(
                fake.policy(&arn("us-west-2")),
                DEFAULT_POLICY,
                "{op} {kind:?}: nothing half-written"
            );
        }
    }

    #[tokio::test]
    async fn a_sweep_checks_every_replica_in_its_regions_and_only_them() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
        let single: KeyArn =
            "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .parse()
                .unwrap();
        let mut k = fake.keys.lock().unwrap()[&arn("us-west-2")].clone();
        k.facts.arn = single.clone();
        k.facts.multi_region = None;
        fake.keys.lock().unwrap().insert(single.clone(), k);
        let trigger = Trigger::Sweep {
            regions: Some(vec![
                "us-east-1".parse().unwrap(),
                "us-west-2".parse().unwrap(),
            ]),
        };
        let r = run(&fake, Mode::DryRun, template(), trigger).await;
        assert_eq!(only(&r).key_arn, arn("us-west-2"), "{r:#?}");
        assert_eq!(
            r.summary.as_ref().unwrap().get(&Action::DriftDetected),
            Some(&1)
        );
        assert_eq!(only(&r).action, Action::DriftDetected);
        let described: Vec<String> = fake
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(op, _)| *op == "DescribeKey")
            .map(|(_, on)| on.clone())
            .collect();
        assert!(
            !described.contains(&single.to_string()),
            "no call for single-Region keys"
        );
    }

    #[tokio::test]
    async fn a_region_that_cannot_be_listed_is_a_run_error() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.fail("ListKeys", &[ErrorKind::AccessDenied]);
        let r = run(
            &fake,
            Mode::DryRun,
            template(),
            Trigger::Sweep { regions: None },
        )
        .await;
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.failure_class(), Some(Retry::NonRetryable));
    }

    fn with_backups(fake: &FakeAws, mode: Mode) -> Reconciler<&FakeAws, &FakeAws, &FakeAws> {
        Reconciler::with_backups(fake, fake, fake, settings(mode, template()))
    }

    #[tokio::test]
    async fn a_sweep_describes_each_key_id_once_and_counts_in_sync_replicas_without_listing_them() {
        let fake = FakeAws::family(&rendered(), &["us-west-2", "eu-west-1"]);
        fake.with_key(&arn("eu-west-1"), |k| k.policy = DEFAULT_POLICY.into());
        let regions: Vec<Region> = ["us-east-1", "us-west-2", "eu-west-1"]
            .map(|r| r.parse().unwrap())
            .to_vec();
        let engine = Reconciler::new(&fake, &fake, settings(Mode::DryRun, template()));
        let r = engine.sweep(&regions, &Quiet).await;
        assert_eq!(only(&r).key_arn, arn("eu-west-1"), "{r:#?}");
        let summary = r.summary.clone().unwrap();
        assert_eq!(summary.get(&Action::InSync), Some(&1));
        assert_eq!(summary.get(&Action::DriftDetected), Some(&1));
        assert_eq!(fake.count("ListKeys"), 3);
        assert_eq!(
            fake.count("DescribeKey"),
            2,
            "one per key id, plus the drifted replica's own state"
        );
        assert_eq!(fake.count("GetKeyPolicy"), 2, "one per replica");
        assert_eq!(
            fake.count("ListResourceTags"),
            1,
            "tags only for the drifted replica"
        );
    }

    #[tokio::test]
    async fn the_previous_policy_is_backed_up_before_every_write() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let engine = with_backups(&fake, Mode::Enforce);
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(only(&r).action, Action::Remediated, "{r:#?}");
        let backups = fake.backups.lock().unwrap();
        assert_eq!(backups.len(), 1);
        assert_eq!(backups[0].policy, DEFAULT_POLICY);
        assert_eq!(backups[0].event_id.as_deref(), Some("e-1"));
        let calls = fake.operations();
        let backup_at = calls.iter().position(|op| *op == "PutObject").unwrap();
        let write_at = calls.iter().position(|op| *op == "PutKeyPolicy").unwrap();
        assert!(backup_at < write_at, "{calls:?}");
        assert!(only(&r).reason.as_deref().unwrap().contains("memory://1"));
    }

    #[tokio::test]
    async fn a_failed_backup_blocks_the_write() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.fail("PutObject", &[ErrorKind::AccessDenied]);
        let r = with_backups(&fake, Mode::Enforce)
            .run(&event_on("us-west-2", Scope::Key))
            .await;
        failed_without_write(
            &fake,
            only(&r),
            Retry::NonRetryable,
            "could not be backed up",
        );
    }

    #[tokio::test]
    async fn a_key_that_keeps_drifting_back_trips_the_flap_guard() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let engine = with_backups(&fake, Mode::Enforce);
        let trigger = event_on("us-west-2", Scope::Key);
        let mut actions = Vec::new();
        for _ in 0..8 {
            // Another automation puts its own policy back after every fix.
            fake.with_key(&arn("us-west-2"), |k| k.policy = DEFAULT_POLICY.into());
            let r = engine.run(&trigger).await;
            actions.push(only(&r).action);
            if only(&r).action == Action::Skipped {
                assert!(only(&r).is_flap_suppressed(), "{r:#?}");
                assert!(
                    r.metrics()
                        .iter()
                        .any(|d| d.metric.name() == "FlapSuppressed" && d.value == 1.0)
                );
            }
        }
        assert_eq!(
            fake.count("PutKeyPolicy"),
            5,
            "FLAP_MAX writes, then hands off: {actions:?}"
        );
        assert!(
            actions[5..].iter().all(|a| *a == Action::Skipped),
            "{actions:?}"
        );
    }

    #[tokio::test]
    async fn without_backups_the_flap_guard_counts_writes_in_memory() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
        for _ in 0..7 {
            fake.with_key(&arn("us-west-2"), |k| k.policy = DEFAULT_POLICY.into());
            engine.run(&event_on("us-west-2", Scope::Key)).await;
        }
        assert_eq!(fake.count("PutKeyPolicy"), 5);
    }

    /// Delivers the same event three times (Lambda's async retries after function errors)
    /// and returns the reasons of the failures.
    async fn deliver_thrice<B: BackupStore>(
        engine: &Reconciler<&FakeAws, &FakeAws, B>,
    ) -> Vec<String> {
        let mut reasons = vec![];
        for _ in 0..3 {
            let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
            let o = only(&r).clone();
            assert_eq!(
                (o.action, o.retry),
                (Action::Failed, Some(Retry::NonRetryable)),
                "{o:#?}"
            );
            assert!(o.diff.is_some(), "the diff shows what KMS stored");
            reasons.push(o.reason.unwrap());
        }
        reasons
    }

    #[tokio::test]
    async fn a_verification_failure_is_not_written_again_when_lambda_redelivers_the_event() {
        let rewrite: fn(&str) -> String = |p| p.replace("kms:Encrypt", "kms:ReEncrypt*");
        // Durable history (backups kept), then in-process history (no backups).
        let mut durable = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        durable.put_rewrite = Some(rewrite);
        let reasons_durable = deliver_thrice(&with_backups(&durable, Mode::Enforce)).await;
        let mut memory = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        memory.put_rewrite = Some(rewrite);
        let engine = Reconciler::new(&memory, &memory, settings(Mode::Enforce, template()));
        let reasons_memory = deliver_thrice(&engine).await;
        for (fake, reasons) in [(&durable, reasons_durable), (&memory, reasons_memory)] {
            assert_eq!(fake.count("PutKeyPolicy"), 1, "{reasons:#?}");
            assert!(reasons[0].contains("verification failed:"), "{reasons:?}");
            for r in &reasons[1..] {
                assert!(r.contains("verification failed earlier"), "{r}");
                assert!(r.contains("not written again"), "{r}");
            }
        }
    }

    #[tokio::test]
    async fn after_a_verification_failure_a_changed_baseline_or_policy_is_written_again() {
        let mut fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.put_rewrite = Some(|p| p.replace("kms:Encrypt", "kms:ReEncrypt*"));
        let engine = with_backups(&fake, Mode::Enforce);
        engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(fake.count("PutKeyPolicy"), 1);
        // Someone else rewrites the policy: it is no longer what KMS stored for our write,
        // so the baseline is written (and fails verification) once more.
        fake.keys
            .lock()
            .unwrap()
            .get_mut(&arn("us-west-2"))
            .unwrap()
            .policy = DEFAULT_POLICY.to_owned();
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert!(
            only(&r)
                .reason
                .as_deref()
                .unwrap()
                .starts_with("verification failed:")
        );
        assert_eq!(fake.count("PutKeyPolicy"), 2);
        // A fixed baseline (what KMS stores) is written and verified.
        let fixed = BASELINE.replace("kms:Encrypt", "kms:ReEncrypt*");
        let engine = Reconciler::with_backups(
            &fake,
            &fake,
            &fake,
            settings(
                Mode::Enforce,
                Baseline::Template(Template::new("literal", &fixed).unwrap()),
            ),
        );
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(only(&r).action, Action::InSync, "{r:#?}");
    }

    #[tokio::test]
    async fn failed_writes_are_not_counted_by_the_flap_guard() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.fail("PutKeyPolicy", &[ErrorKind::AccessDenied; 8]);
        let engine = with_backups(&fake, Mode::Enforce);
        for delivery in 0..8 {
            let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
            let o = only(&r);
            assert_eq!(
                (o.action, o.retry),
                (Action::Failed, Some(Retry::NonRetryable)),
                "delivery {delivery}: a denied write stays a failure, never `flapping`: {o:#?}"
            );
        }
        assert_eq!(
            fake.backups.lock().unwrap().len(),
            8,
            "a backup before each attempt"
        );
        assert!(
            fake.writes.lock().unwrap().is_empty(),
            "no write went through"
        );
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(only(&r).action, Action::Remediated, "{r:#?}");
    }

    #[tokio::test]
    async fn a_stale_read_right_after_the_write_is_read_again_then_verified() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        *fake.stale_reads.lock().unwrap() = 2;
        let r = enforce(&fake, "us-west-2").await;
        assert_eq!(only(&r).action, Action::Remediated, "{r:#?}");
        assert_eq!(
            fake.count("GetKeyPolicy"),
            4,
            "read, two stale re-reads, verify"
        );

        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        *fake.stale_reads.lock().unwrap() = 10;
        let r = enforce(&fake, "us-west-2").await;
        let o = only(&r);
        assert_eq!(
            (o.action, o.retry),
            (Action::Failed, Some(Retry::Retryable)),
            "{o:#?}"
        );
        assert!(
            o.reason
                .as_deref()
                .unwrap()
                .contains("still returned the previous policy")
        );
        assert_eq!(fake.count("PutKeyPolicy"), 1);
        assert_eq!(
            fake.policy(&arn("us-west-2")),
            rendered(),
            "the write stands"
        );
    }

    /// Just after UpdatePrimaryRegion(us-east-1 -> us-west-2): both keys are Updating and
    /// DescribeKey may show both as replicas (KMS developer guide).
    fn primary_moving(fake: &FakeAws) {
        let all = vec![arn("us-east-1"), arn("us-west-2"), arn("eu-west-1")];
        for region in ["us-east-1", "us-west-2"] {
            fake.with_key(&arn(region), |k| {
                k.facts.state = KeyState::Updating;
                let mr = k.facts.multi_region.as_mut().unwrap();
                mr.role = MultiRegionRole::Replica;
                mr.replicas = all.clone();
            });
        }
        fake.with_key(&arn("eu-west-1"), |k| {
            k.facts.multi_region.as_mut().unwrap().replicas = all.clone();
        });
    }

    #[tokio::test]
    async fn nothing_is_written_while_a_primary_region_change_is_updating_the_keys() {
        for baseline in [template(), Baseline::Primary] {
            let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
            primary_moving(&fake);
            let moved = event_on("us-east-1", Scope::AllRelated);
            let r = run(&fake, Mode::Enforce, baseline, moved).await;
            let o = only(&r);
            assert_eq!(
                (o.action, o.retry),
                (Action::Failed, Some(Retry::Retryable)),
                "{o:#?}"
            );
            assert!(o.reason.as_deref().unwrap().contains("Updating"), "{o:#?}");
            assert_eq!(fake.count("PutKeyPolicy"), 0);

            // A sweep in the middle of it writes nothing either, and says why for each copy.
            let regions: Vec<Region> = ["us-east-1", "us-west-2", "eu-west-1"]
                .map(|r| r.parse().unwrap())
                .to_vec();
            let r = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()))
                .sweep(&regions, &Quiet)
                .await;
            assert_eq!(r.outcomes.len(), 3, "{r:#?}");
            assert!(r.outcomes.iter().all(|o| o.retry == Some(Retry::Retryable)));
            assert_eq!(fake.count("PutKeyPolicy"), 0);
        }
    }

    #[tokio::test]
    async fn a_replica_whose_own_state_is_updating_is_not_written_by_a_fan_out() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
        fake.with_key(&arn("us-west-2"), |k| k.facts.state = KeyState::Updating);
        let moved = event_on("us-east-1", Scope::AllRelated);
        let r = run(&fake, Mode::Enforce, template(), moved).await;
        let by_region = |region: &str| {
            r.outcomes
                .iter()
                .find(|o| o.region.as_str() == region)
                .unwrap()
        };
        assert_eq!(by_region("us-west-2").action, Action::Failed, "{r:#?}");
        assert_eq!(by_region("eu-west-1").action, Action::Remediated, "{r:#?}");
        assert_eq!(fake.policy(&arn("us-west-2")), DEFAULT_POLICY);
    }

    #[tokio::test]
    async fn a_sweep_describes_the_next_copy_when_one_cannot_be_described() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
        fake.fail("DescribeKey", &[ErrorKind::AccessDenied]);
        let regions: Vec<Region> = ["us-west-2", "eu-west-1", "us-east-1"]
            .map(|r| r.parse().unwrap())
            .to_vec();
        let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
        let r = engine.sweep(&regions, &Quiet).await;
        let failed: Vec<_> = r.failures().map(|o| o.key_arn.clone()).collect();
        assert_eq!(failed.len(), 1, "{r:#?}");
        let remediated: Vec<_> = r
            .outcomes
            .iter()
            .filter(|o| o.action == Action::Remediated)
            .map(|o| o.key_arn.clone())
            .collect();
        assert_eq!(remediated.len(), 1, "the sibling is still fixed: {r:#?}");
        assert_ne!(failed[0], remediated[0]);
        assert_eq!(fake.policy(&remediated[0]), rendered());
        assert_eq!(r.failure_class(), Some(Retry::NonRetryable));
    }

    /// `o` failed as `retry` with a reason containing `says`, and the us-west-2 replica was
    /// not written.
    fn failed_without_write(fake: &FakeAws, o: &Outcome, retry: Retry, says: &str) {
        assert_eq!((o.action, o.retry), (Action::Failed, Some(retry)), "{o:#?}");
        assert!(o.reason.as_deref().unwrap().contains(says), "{o:#?}");
        assert_eq!(fake.count("PutKeyPolicy"), 0);
        assert_eq!(fake.policy(&arn("us-west-2")), DEFAULT_POLICY);
    }

    /// One enforcing event on the us-west-2 replica, through a store that keeps claims.
    async fn claimed_run(fake: &FakeAws) -> Outcome {
        let r = with_backups(fake, Mode::Enforce)
            .run(&event_on("us-west-2", Scope::Key))
            .await;
        only(&r).clone()
    }

    #[tokio::test]
    async fn a_fix_claimed_by_a_concurrent_invocation_is_waited_for_and_not_written_again() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.foreign_claims.lock().unwrap().push(SystemTime::now());
        // The holder's write lands right after this invocation read the drifted policy.
        fake.with_key(&arn("us-west-2"), |k| k.policy = rendered());
        fake.written_concurrently(&arn("us-west-2"), DEFAULT_POLICY);
        let o = claimed_run(&fake).await;
        assert_eq!(o.action, Action::InSync, "{o:#?}");
        let reason = o.reason.as_deref().unwrap();
        assert!(
            reason.contains("written by a concurrent invocation"),
            "{reason}"
        );
        assert!(reason.contains("event CreateKey other"), "{reason}");
        assert!(o.diff.is_some(), "the drift it found is still shown");
        assert_eq!(fake.count("PutKeyPolicy"), 0);
        assert!(fake.backups.lock().unwrap().is_empty(), "no backup either");
        assert_eq!(
            fake.count("DeleteObject"),
            0,
            "another invocation's claim is left to it"
        );
    }

    #[tokio::test]
    async fn a_claimed_fix_that_never_lands_fails_retryably_and_writes_nothing() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.foreign_claims.lock().unwrap().push(SystemTime::now());
        let o = claimed_run(&fake).await;
        failed_without_write(
            &fake,
            &o,
            Retry::Retryable,
            "had not landed after 3 re-reads",
        );
    }

    #[tokio::test]
    async fn an_abandoned_claim_is_taken_over_and_the_fix_written_once() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let long_ago = SystemTime::now() - CLAIM_TTL - Duration::from_secs(1);
        fake.foreign_claims.lock().unwrap().push(long_ago);
        let o = claimed_run(&fake).await;
        assert_eq!(o.action, Action::Remediated, "{o:#?}");
        assert_eq!(fake.count("PutKeyPolicy"), 1);
        assert_eq!(fake.policy(&arn("us-west-2")), rendered());
        assert_eq!(
            fake.count("DeleteObject"),
            2,
            "the abandoned claim, then this invocation's own"
        );
        assert!(fake.claims.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_claim_is_released_whatever_the_write_did_so_the_next_event_can_write() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.fail("PutKeyPolicy", &[ErrorKind::AccessDenied]);
        let denied = claimed_run(&fake).await;
        assert_eq!(denied.action, Action::Failed, "{denied:#?}");
        assert!(
            fake.claims.lock().unwrap().is_empty(),
            "released after a denied write"
        );
        let fixed = claimed_run(&fake).await;
        assert_eq!(fixed.action, Action::Remediated, "{fixed:#?}");
        assert!(
            fake.claims.lock().unwrap().is_empty(),
            "released after a verified write"
        );
        let calls = fake.operations();
        let claimed = calls
            .iter()
            .rposition(|op| *op == "PutObject If-None-Match")
            .unwrap();
        let backup = calls.iter().rposition(|op| *op == "PutObject").unwrap();
        assert!(
            claimed < backup,
            "claimed before the backup and the write: {calls:?}"
        );
    }

    #[tokio::test]
    async fn a_claim_that_cannot_be_taken_writes_nothing() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.fail("PutObject If-None-Match", &[ErrorKind::AccessDenied]);
        let o = claimed_run(&fake).await;
        failed_without_write(&fake, &o, Retry::NonRetryable, "could not be claimed");
        assert!(fake.backups.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_a_bucket_claims_are_kept_in_memory_and_released() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
        let key = arn("us-west-2");
        let held = WriteClaim {
            key: key.clone(),
            drift: drift_name(DEFAULT_POLICY, &rendered()),
            at: SystemTime::now(),
            event_id: Some("other".into()),
            event_name: "CreateKey".into(),
        };
        assert_eq!(engine.claim(&held).await, Ok(Claimed::Won));
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(
            only(&r).action,
            Action::Failed,
            "held in this process: {r:#?}"
        );
        assert_eq!(fake.count("PutKeyPolicy"), 0);
        engine.backups.release(&held).await.unwrap();
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(only(&r).action, Action::Remediated, "{r:#?}");
        assert!(engine.backups.holds_no_claims());
        assert_eq!(
            fake.count("PutObject If-None-Match"),
            0,
            "the store is not asked"
        );
    }

    #[tokio::test]
    async fn a_fix_with_a_bucket_makes_five_store_calls_around_the_write() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        assert_eq!(claimed_run(&fake).await.action, Action::Remediated);
        let calls = fake.operations();
        let kms = [
            "DescribeKey",
            "GetKeyPolicy",
            "ListResourceTags",
            "PutKeyPolicy",
        ];
        let store: Vec<&str> = calls
            .iter()
            .copied()
            .filter(|op| !kms.contains(op))
            .collect();
        assert_eq!(
            store,
            [
                "ListObjectsV2",           // write history (flap guard, earlier mismatch)
                "PutObject If-None-Match", // the claim
                "PutObject",               // the backup
                "PutObject",               // the write record
                "DeleteObject",            // the claim released
            ],
            "{calls:?}"
        );
        let write = calls.iter().position(|op| *op == "PutKeyPolicy").unwrap();
        assert_eq!(
            calls[write - 1],
            "PutObject",
            "backed up just before: {calls:?}"
        );
    }
}
