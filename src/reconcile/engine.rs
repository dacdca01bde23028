use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::stream;
use tokio::sync::OnceCell;

use super::ports::{CallError, ErrorKind, KeyDirectory, PolicyStore};
use super::{Mode, Settings};
use crate::core::baseline::{Baseline, RenderContext, mirror_primary};
use crate::core::decide::{
    KeyFacts, KeyState, MultiRegionRole, Reach, Verdict, compare, is_excluded, reach,
    skip_for_state,
};
use crate::core::key::{KeyArn, Region};
use crate::core::outcome::{Action, Outcome, Report, Retry, RunError};
use crate::core::policy::{CanonicalPolicy, LockoutGuard, validate};
use crate::core::trigger::{EventInfo, Scope, Target, Trigger};
use crate::retry::{Step, retry};

/// Reconciles replica key policies against the baseline, through the ports it is given.
pub struct Reconciler<K, P> {
    keys: K,
    policies: P,
    settings: Arc<Settings>,
}

/// Primary policies read once per run, however many replicas mirror them.
#[derive(Default)]
struct PrimaryPolicies(Mutex<HashMap<KeyArn, Arc<PolicyCell>>>);

type PolicyCell = OnceCell<Result<String, CallError>>;

impl<K: KeyDirectory, P: PolicyStore> Reconciler<K, P> {
    /// An engine over these ports.
    pub fn new(keys: K, policies: P, settings: Arc<Settings>) -> Self {
        Self {
            keys,
            policies,
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
                self.sweep(regions).await
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

    /// Reconciles every multi-Region replica in these Regions.
    pub async fn sweep(&self, regions: &[Region]) -> Report {
        let cache = PrimaryPolicies::default();
        let mut report = Report::default();
        let listings =
            futures::future::join_all(regions.iter().map(|r| self.keys.list_keys(r))).await;
        let mut keys = Vec::new();
        for listing in listings {
            match listing {
                Ok(found) => keys.extend(found.into_iter().filter(KeyArn::is_multi_region)),
                Err(e) => report.errors.push(RunError {
                    message: e.to_string(),
                    retry: retry_class(&e),
                }),
            }
        }
        let outcomes: Vec<Option<Outcome>> = stream::iter(keys)
            .map(|key| {
                let cache = &cache;
                async move {
                    let facts = match self.keys.describe_key(&key).await {
                        Ok(f) => f,
                        Err(e) => return Some(call_failed(&key, &e)),
                    };
                    let mr = facts.multi_region.as_ref()?;
                    if mr.role != MultiRegionRole::Replica {
                        return None;
                    }
                    let primary = mr.primary.clone();
                    Some(
                        self.reconcile_replica(&key, &primary, Some(facts), cache)
                            .await,
                    )
                }
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let event = EventInfo {
            id: None,
            name: "sweep".into(),
        };
        for o in outcomes.into_iter().flatten() {
            log_outcome(&event, &o);
            report.outcomes.push(o);
        }
        report.outcomes.sort_by(|a, b| a.key_arn.cmp(&b.key_arn));
        report
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
        let outcomes: Vec<Outcome> = stream::iter(replicas)
            .map(|replica| {
                let known =
                    (replica == facts.arn && target.scope == Scope::Key).then(|| facts.clone());
                let primary = &primary;
                async move {
                    self.reconcile_replica(&replica, primary, known, cache)
                        .await
                }
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for o in outcomes {
            log_outcome(event, &o);
            report.outcomes.push(o);
        }
    }

    /// DescribeKey, waiting (bounded) while a fresh replica is `Creating` or not yet visible.
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
        replica: &KeyArn,
        primary: &KeyArn,
        known: Option<KeyFacts>,
        cache: &PrimaryPolicies,
    ) -> Outcome {
        let facts = match known {
            Some(f) => f,
            None => match self.describe_ready(replica).await {
                Ok(f) => f,
                Err(e) => return call_failed(replica, &e),
            },
        };
        if let Some(reason) = skip_for_state(&facts.state) {
            return Outcome::new(replica, Action::Skipped, reason);
        }
        match facts.multi_region.as_ref().map(|m| m.role) {
            Some(MultiRegionRole::Replica) => {}
            Some(MultiRegionRole::Primary) => {
                return Outcome::new(
                    replica,
                    Action::Skipped,
                    "the key is now the primary (the primary Region moved)".to_owned(),
                );
            }
            None => {
                return Outcome::new(replica, Action::Skipped, "single-Region key".to_owned());
            }
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

        match self.keys.tag_keys(replica).await {
            Ok(tags)
                if is_excluded(tags.iter().map(String::as_str), &self.settings.exclude_tag) =>
            {
                return Outcome::new(
                    replica,
                    Action::Skipped,
                    format!(
                        "excluded by tag {}; drift left in place",
                        self.settings.exclude_tag
                    ),
                )
                .with_diff(drift);
            }
            Ok(_) => {}
            Err(e) => return call_failed(replica, &e).with_diff(drift),
        }

        if self.settings.mode == Mode::DryRun {
            return Outcome::new(
                replica,
                Action::DriftDetected,
                "policy differs from the baseline; dry-run, nothing written".to_owned(),
            )
            .with_diff(drift);
        }

        tracing::warn!(
            key_arn = %replica,
            previous_policy = %live,
            "overwriting a drifted key policy; the previous policy is kept in this log line"
        );
        if let Err(e) = self.policies.put_policy(replica, &desired_text).await {
            return call_failed(replica, &e).with_diff(drift);
        }
        match self.policies.get_policy(replica).await {
            Ok(after) => match compare(&after, &desired) {
                Verdict::InSync => Outcome::new(
                    replica,
                    Action::Remediated,
                    format!("policy rewritten to {} and verified", self.settings.baseline.describe()),
                )
                .with_diff(drift),
                Verdict::Drift(rest) => Outcome::failed(
                    replica,
                    format!(
                        "verification failed: after PutKeyPolicy the key's policy is still not equivalent to the baseline (KMS stored something else; compare the diff, fix the baseline; not rewritten again):\n{rest}"
                    ),
                    Retry::NonRetryable,
                )
                .with_diff(drift),
            },
            Err(e) => Outcome::failed(
                replica,
                format!("the policy was written but could not be re-read to verify it: {e}"),
                retry_class(&e),
            )
            .with_diff(drift),
        }
    }

    /// The rendered, validated baseline for one replica.
    async fn desired_policy(
        &self,
        replica: &KeyArn,
        primary: &KeyArn,
        cache: &PrimaryPolicies,
    ) -> Result<(String, CanonicalPolicy), Box<Outcome>> {
        let text = match &self.settings.baseline {
            Baseline::Template(t) => t
                .render(RenderContext {
                    key: replica,
                    primary_region: primary.region(),
                })
                .map_err(|e| bad_baseline(replica, &e.to_string()))?,
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
        let guard = LockoutGuard {
            account_id: replica.account().to_string(),
            partition: replica.partition().to_owned(),
            remediator_role_arn: self.settings.remediator.as_ref().map(|r| r.to_string()),
        };
        let canonical =
            validate(&text, &guard).map_err(|e| bad_baseline(replica, &e.to_string()))?;
        Ok((text, canonical))
    }
}

fn bad_baseline(key: &KeyArn, problem: &str) -> Box<Outcome> {
    Box::new(Outcome::failed(
        key,
        format!("the baseline for this key is invalid, nothing was written: {problem}"),
        Retry::NonRetryable,
    ))
}

fn retry_class(e: &CallError) -> Retry {
    if e.kind.is_retryable() {
        Retry::Retryable
    } else {
        Retry::NonRetryable
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
