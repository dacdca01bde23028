//! The one result type: what happened to each key. The Lambda response, the CLI, the
//! per-key log line and the metrics are all derived from it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::key::{KeyArn, Region};

/// What was done to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Drift found and the baseline written and verified.
    Remediated,
    /// The live policy is equivalent to the baseline.
    InSync,
    /// Drift found; dry-run, so nothing was written.
    DriftDetected,
    /// Deliberately left alone (not a replica, excluded, pending deletion, ...).
    Skipped,
    /// Could not be brought to the baseline.
    Failed,
}

impl Action {
    /// The wire name (`in-sync`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Remediated => "remediated",
            Action::InSync => "in-sync",
            Action::DriftDetected => "drift-detected",
            Action::Skipped => "skipped",
            Action::Failed => "failed",
        }
    }
}

/// The reason prefix of a key left alone by the flap guard.
pub const FLAPPING: &str = "flapping";

/// Whether retrying the invocation can help a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retry {
    /// Transient (throttling, a key still being created, a timeout): Lambda should retry.
    Retryable,
    /// Retrying the same input fails the same way (bad baseline, access denied, KMS rewrote
    /// the policy): an operator has to act.
    NonRetryable,
}

/// The result for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The key.
    pub key_arn: KeyArn,
    /// Its Region.
    pub region: Region,
    /// What was done.
    pub action: Action,
    /// Why, in words an operator can act on.
    pub reason: Option<String>,
    /// Statement-level diff of live vs baseline, when there was drift.
    pub diff: Option<String>,
    /// For failures: can a retry help.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

impl Outcome {
    /// An outcome without diff or failure class.
    pub fn new(key: &KeyArn, action: Action, reason: impl Into<Option<String>>) -> Self {
        Self {
            key_arn: key.clone(),
            region: key.region().clone(),
            action,
            reason: reason.into(),
            diff: None,
            retry: None,
        }
    }

    /// A failure with its retry class.
    pub fn failed(key: &KeyArn, reason: String, retry: Retry) -> Self {
        Self {
            retry: Some(retry),
            ..Self::new(key, Action::Failed, reason)
        }
    }

    /// Whether the flap guard left this key alone.
    pub fn is_flap_suppressed(&self) -> bool {
        self.action == Action::Skipped
            && self
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with(FLAPPING))
    }

    /// Attaches a drift diff.
    pub fn with_diff(mut self, diff: String) -> Self {
        self.diff = Some(diff);
        self
    }
}

/// A failure that concerns no single key (e.g. a Region that could not be listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunError {
    /// What failed and what to do.
    pub message: String,
    /// Can a retry help.
    pub retry: Retry,
}

/// The outcomes of one invocation or sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One entry per key looked at.
    pub outcomes: Vec<Outcome>,
    /// Failures outside any one key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RunError>,
    /// Sweeps: how many replicas ended in each action (in-sync ones are only counted here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<BTreeMap<Action, usize>>,
}

impl Report {
    /// How many outcomes have this action.
    pub fn count(&self, action: Action) -> usize {
        self.outcomes.iter().filter(|o| o.action == action).count()
    }

    /// The failed outcomes.
    pub fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| o.action == Action::Failed)
    }

    /// `None` when nothing failed; otherwise whether a retry of the whole invocation can
    /// help (any retryable failure makes it retryable: the fixed keys are in sync by then).
    pub fn failure_class(&self) -> Option<Retry> {
        let classes = self
            .failures()
            .filter_map(|o| o.retry)
            .chain(self.errors.iter().map(|e| e.retry));
        classes.fold(None, |acc, r| match (acc, r) {
            (Some(Retry::Retryable), _) | (_, Retry::Retryable) => Some(Retry::Retryable),
            _ => Some(Retry::NonRetryable),
        })
    }

    /// The metric data for this report: per Region and fleet-wide totals.
    pub fn metrics(&self) -> Vec<MetricDatum> {
        let mut per_region: BTreeMap<&Region, [f64; 4]> = BTreeMap::new();
        for o in &self.outcomes {
            let counts = per_region.entry(&o.region).or_default();
            match o.action {
                Action::Remediated => {
                    counts[0] += 1.0;
                    counts[1] += 1.0;
                }
                Action::DriftDetected => counts[1] += 1.0,
                Action::Failed => counts[2] += 1.0,
                Action::Skipped if o.is_flap_suppressed() => {
                    counts[1] += 1.0;
                    counts[3] += 1.0;
                }
                Action::InSync | Action::Skipped => {}
            }
        }
        let mut data = Vec::new();
        let mut total = [0.0; 4];
        for (region, counts) in per_region {
            for (i, metric) in Metric::COUNTED.iter().enumerate() {
                total[i] += counts[i];
                data.push(MetricDatum {
                    metric: *metric,
                    region: Some(region.clone()),
                    value: counts[i],
                });
            }
        }
        if !data.is_empty() {
            for (i, metric) in Metric::COUNTED.iter().enumerate() {
                data.push(MetricDatum {
                    metric: *metric,
                    region: None,
                    value: total[i],
                });
            }
        }
        data
    }
}

/// The metrics the function publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A drifted policy was rewritten and verified (the auto-fix metric alarms watch).
    AutoFixApplied,
    /// A policy was found drifted, fixed or not.
    DriftDetected,
    /// A key could not be brought to the baseline.
    AutoFixFailed,
    /// A drifting key was left alone by the flap guard.
    FlapSuppressed,
}

impl Metric {
    const COUNTED: [Metric; 4] = [
        Metric::AutoFixApplied,
        Metric::DriftDetected,
        Metric::AutoFixFailed,
        Metric::FlapSuppressed,
    ];

    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::AutoFixApplied => "AutoFixApplied",
            Metric::DriftDetected => "DriftDetected",
            Metric::AutoFixFailed => "AutoFixFailed",
            Metric::FlapSuppressed => "FlapSuppressed",
        }
    }
}

/// One count to publish. `region: None` is the fleet-wide total that alarms watch;
/// CloudWatch does not aggregate across dimensions, so both are published.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    /// Which metric.
    pub metric: Metric,
    /// The `Region` dimension, or none for the total.
    pub region: Option<Region>,
    /// The count.
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(region: &str) -> KeyArn {
        format!("arn:aws:kms:{region}:111122223333:key/mrk-1")
            .parse()
            .unwrap()
    }

    #[test]
    fn an_outcome_serialises_to_the_documented_contract() {
        let o = Outcome::new(&key("us-west-2"), Action::InSync, None).with_diff("d".into());
        let v = serde_json::to_value(Report {
            outcomes: vec![o],
            ..Report::default()
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"outcomes": [{
                "key_arn": "arn:aws:kms:us-west-2:111122223333:key/mrk-1",
                "region": "us-west-2", "action": "in-sync", "reason": null, "diff": "d"
            }]})
        );
    }

    #[test]
    fn metrics_count_per_region_and_in_total() {
        let r = Report {
            errors: vec![],
            summary: None,
            outcomes: vec![
                Outcome::new(&key("us-west-2"), Action::Remediated, None),
                Outcome::new(&key("eu-west-1"), Action::DriftDetected, None),
                Outcome::failed(&key("eu-west-1"), "x".into(), Retry::Retryable),
                Outcome::new(&key("eu-west-1"), Action::InSync, None),
            ],
        };
        let get = |m: Metric, region: Option<&str>| {
            r.metrics()
                .into_iter()
                .find(|d| d.metric == m && d.region.as_ref().map(Region::as_str) == region)
                .map(|d| d.value)
        };
        assert_eq!(get(Metric::AutoFixApplied, Some("us-west-2")), Some(1.0));
        assert_eq!(get(Metric::DriftDetected, Some("us-west-2")), Some(1.0));
        assert_eq!(get(Metric::DriftDetected, Some("eu-west-1")), Some(1.0));
        assert_eq!(get(Metric::AutoFixFailed, Some("eu-west-1")), Some(1.0));
        assert_eq!(get(Metric::AutoFixApplied, None), Some(1.0));
        assert_eq!(get(Metric::DriftDetected, None), Some(2.0));
        assert_eq!(get(Metric::AutoFixFailed, None), Some(1.0));
        assert_eq!(r.metrics().len(), 12);
        assert!(Report::default().metrics().is_empty());
    }
}
