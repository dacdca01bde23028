//! The CloudWatch metrics of a report: counts per Region and in total.

use super::*;

impl Report {
    /// The metric data for this report: per Region and fleet-wide totals.
    pub fn metrics(&self) -> Vec<MetricDatum> {
        let mut per_region: BTreeMap<&Region, Counts> = BTreeMap::new();
        for o in &self.outcomes {
            per_region.entry(&o.region).or_default().add(&o.status);
        }
        let mut data = Vec::new();
        let mut total = Counts::default();
        for (region, counts) in per_region {
            total.merge(&counts);
            data.extend(counts.data(Some(region)));
        }
        if !data.is_empty() {
            data.extend(total.data(None));
        }
        let call_errors = self
            .outcomes
            .iter()
            .filter_map(|o| match &o.status {
                Status::Failed(Failure::Call(e)) => Some(e),
                _ => None,
            })
            .chain(self.errors.iter().map(|e| &e.0));
        let not_entered = accounts_not_entered(call_errors).len();
        let not_allowed = self.accounts_refused.len()
            + self
                .outcomes
                .iter()
                .filter(|o| matches!(o.status, Status::Skipped(Skip::AccountNotAllowed(_))))
                .count();
        let exemptions_ended = self
            .outcomes
            .iter()
            .filter(|o| o.exemption_ended.is_some())
            .count();
        let tag_news = |kind| self.tag_changes.iter().filter(|t| t.change == kind).count();
        for (metric, n) in [
            (Metric::AccountNotEntered, not_entered),
            (Metric::AccountNotAllowed, not_allowed),
            (Metric::ExemptionExpired, exemptions_ended),
            (
                Metric::ExemptionGranted,
                tag_news(TagNewsKind::ExemptionGranted),
            ),
            (
                Metric::BaselineSwitched,
                tag_news(TagNewsKind::BaselineSwitched),
            ),
        ] {
            if n > 0 {
                data.push(MetricDatum {
                    metric,
                    region: None,
                    severity: None,
                    value: n as f64,
                });
            }
        }
        // Drifts by what they mean, in dry-run too: a drift the guard leaves alone on
        // purpose (excluded, another account's) is not counted, a flapping or failed one is.
        if let Some(summary) = &self.summary {
            // The heartbeat: a sweep that ran through, and how many keys it covered. An
            // alarm on missing data sees a stopped schedule, rule, mapping or role.
            data.push(MetricDatum {
                metric: Metric::SweepCompleted,
                region: None,
                severity: None,
                value: self.sweeps_completed as f64,
            });
            data.push(MetricDatum {
                metric: Metric::SweepKeysCovered,
                region: None,
                severity: None,
                value: summary.values().sum::<usize>() as f64,
            });
        }
        if let Some(n) = self.excluded {
            // Every sweep, zero included: "how many drifts are exempt" is one graph.
            data.push(MetricDatum {
                metric: Metric::KeysExcluded,
                region: None,
                severity: None,
                value: n as f64,
            });
        }
        let exposures = self
            .outcomes
            .iter()
            .filter(|o| o.exposure_alarms())
            .filter_map(|o| o.exposure.as_ref().map(|e| e.severity));
        let writes = self
            .outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::Remediated(_)))
            .filter_map(|o| o.write_exposure.as_ref().map(|e| e.severity))
            .filter(|s| *s >= Severity::Admin);
        let refused = self.outcomes.iter().filter_map(|o| {
            o.guardrail_breaches()
                .and_then(|b| b.iter().map(|b| b.severity).max())
        });
        for (metric, severities) in [
            (Metric::ExposureDrift, exposures.collect::<Vec<_>>()),
            (Metric::WriteExposure, writes.collect()),
            (Metric::GuardrailRefused, refused.collect()),
        ] {
            let mut by_severity: BTreeMap<Severity, usize> = BTreeMap::new();
            for s in severities {
                *by_severity.entry(s).or_default() += 1;
            }
            for (severity, n) in by_severity {
                data.push(MetricDatum {
                    metric,
                    region: None,
                    severity: Some(severity),
                    value: n as f64,
                });
            }
        }
        data
    }
}

/// The accounts whose member role could not be assumed, in the failures of a report.
fn accounts_not_entered<'a>(
    failures: impl Iterator<Item = &'a CallError>,
) -> std::collections::BTreeSet<crate::key::AccountId> {
    failures
        .filter_map(|e| match (e.operation, &*e.target) {
            (Api::AssumeRole, Target::Role(role)) => Some(role.account().clone()),
            _ => None,
        })
        .collect()
}

/// Metric counts of some outcomes.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    auto_fix_applied: f64,
    drift_detected: f64,
    auto_fix_failed: f64,
    flap_suppressed: f64,
}

impl Counts {
    fn add(&mut self, status: &Status) {
        match status {
            Status::Remediated(_) => {
                self.auto_fix_applied += 1.0;
                self.drift_detected += 1.0;
            }
            Status::DriftDetected(_) => self.drift_detected += 1.0,
            Status::Failed(_) => self.auto_fix_failed += 1.0,
            Status::Skipped(Skip::Flapping { .. }) => {
                self.drift_detected += 1.0;
                self.flap_suppressed += 1.0;
            }
            Status::InSync(_) | Status::Skipped(_) => {}
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.auto_fix_applied += other.auto_fix_applied;
        self.drift_detected += other.drift_detected;
        self.auto_fix_failed += other.auto_fix_failed;
        self.flap_suppressed += other.flap_suppressed;
    }

    fn data(&self, region: Option<&Region>) -> [MetricDatum; 4] {
        let datum = |metric, value| MetricDatum {
            metric,
            region: region.cloned(),
            severity: None,
            value,
        };
        [
            datum(Metric::AutoFixApplied, self.auto_fix_applied),
            datum(Metric::DriftDetected, self.drift_detected),
            datum(Metric::AutoFixFailed, self.auto_fix_failed),
            datum(Metric::FlapSuppressed, self.flap_suppressed),
        ]
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
    /// Accounts whose member role could not be assumed (refused, throttled, unreachable):
    /// their keys were not checked. A fleet total only.
    AccountNotEntered,
    /// Events or sweep items from accounts outside `MEMBER_ACCOUNTS`: nothing was done.
    /// A fleet total only.
    AccountNotAllowed,
    /// Drifts by their access severity (dimension `Severity` only): dry-run included.
    ExposureDrift,
    /// Keys whose exemption (the exclude tag's `until=`) has ended and that were reconciled
    /// again: the tag can be removed. A fleet total only.
    ExemptionExpired,
    /// Policies the guardrails refused to write, by the worst breach (dimension `Severity`):
    /// dry-run included.
    GuardrailRefused,
    /// Writes that granted key administration or more (dimension `Severity`).
    WriteExposure,
    /// Exclude tags set (TagResource events). A fleet total only.
    ExemptionGranted,
    /// Baseline tags set or removed (TagResource, UntagResource events). A fleet total only.
    BaselineSwitched,
    /// Drifted keys an exemption left in place, every sweep (zero included).
    KeysExcluded,
    /// A sweep (scheduled, or one planned work item) that ran through without a run error:
    /// the heartbeat an alarm on missing data watches.
    SweepCompleted,
    /// The replicas a sweep looked at, every sweep (zero included).
    SweepKeysCovered,
    /// The function's mode, with every batch of metrics: 1 enforce, 0 dry-run.
    EnforceMode,
    /// Security Hub findings that could not be imported (the fixes stand). A fleet total.
    FindingsNotImported,
    /// AWS Config evaluations that could not be put (PutEvaluations failed). A fleet total.
    EvaluationsNotPut,
}

impl Metric {
    /// Every metric, in the order of [`Metric`] (the stacks' contract lists their names).
    pub const ALL: [Metric; 18] = [
        Metric::AutoFixApplied,
        Metric::DriftDetected,
        Metric::AutoFixFailed,
        Metric::FlapSuppressed,
        Metric::AccountNotEntered,
        Metric::AccountNotAllowed,
        Metric::ExposureDrift,
        Metric::ExemptionExpired,
        Metric::GuardrailRefused,
        Metric::WriteExposure,
        Metric::ExemptionGranted,
        Metric::BaselineSwitched,
        Metric::KeysExcluded,
        Metric::SweepCompleted,
        Metric::SweepKeysCovered,
        Metric::EnforceMode,
        Metric::FindingsNotImported,
        Metric::EvaluationsNotPut,
    ];

    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::AutoFixApplied => "AutoFixApplied",
            Metric::DriftDetected => "DriftDetected",
            Metric::AutoFixFailed => "AutoFixFailed",
            Metric::FlapSuppressed => "FlapSuppressed",
            Metric::AccountNotEntered => "AccountNotEntered",
            Metric::AccountNotAllowed => "AccountNotAllowed",
            Metric::ExposureDrift => "ExposureDrift",
            Metric::ExemptionExpired => "ExemptionExpired",
            Metric::GuardrailRefused => "GuardrailRefused",
            Metric::WriteExposure => "WriteExposure",
            Metric::ExemptionGranted => "ExemptionGranted",
            Metric::BaselineSwitched => "BaselineSwitched",
            Metric::KeysExcluded => "KeysExcluded",
            Metric::SweepCompleted => "SweepCompleted",
            Metric::SweepKeysCovered => "SweepKeysCovered",
            Metric::EnforceMode => "EnforceMode",
            Metric::FindingsNotImported => "FindingsNotImported",
            Metric::EvaluationsNotPut => "EvaluationsNotPut",
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
    /// The `Severity` dimension (`ExposureDrift` only).
    pub severity: Option<Severity>,
    /// The count.
    pub value: f64,
}

impl MetricDatum {
    /// The datum's dimensions as (name, value).
    pub fn dimensions(&self) -> Vec<(&'static str, &str)> {
        let region = self.region.as_ref().map(|r| ("Region", r.as_str()));
        let severity = self.severity.map(|s| ("Severity", s.as_str()));
        region.into_iter().chain(severity).collect()
    }
}
