//! What is news: the EventBridge notifications of a report.

use super::*;

/// The `source` of every notification event.
pub const NOTIFICATION_SOURCE: &str = "kms-replica-guard";

/// What a notification says happened to a drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftNews {
    /// Found and left as it is (dry-run, or the flap guard).
    Detected,
    /// Rewritten and verified.
    Remediated,
    /// Found, and could not be fixed.
    RemediationFailed,
    /// The guardrails refused the policy the guard would write (dry-run too).
    WriteRefused,
    /// A write granted key administration (or more).
    WriteGrantsAccess,
    /// The exclude tag was set on a key.
    ExemptionGranted,
    /// The baseline tag of a key was set or removed.
    BaselineSwitched,
}

impl DriftNews {
    /// Every kind of news.
    pub const ALL: [DriftNews; 7] = [
        DriftNews::Detected,
        DriftNews::Remediated,
        DriftNews::RemediationFailed,
        DriftNews::WriteRefused,
        DriftNews::WriteGrantsAccess,
        DriftNews::ExemptionGranted,
        DriftNews::BaselineSwitched,
    ];

    /// The EventBridge `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            DriftNews::Detected => "Replica Key Policy Drift Detected",
            DriftNews::Remediated => "Replica Key Policy Remediated",
            DriftNews::RemediationFailed => "Replica Key Policy Remediation Failed",
            DriftNews::WriteRefused => "Replica Key Policy Write Refused",
            DriftNews::WriteGrantsAccess => "Replica Key Policy Write Grants Access",
            DriftNews::ExemptionGranted => "Replica Key Exemption Granted",
            DriftNews::BaselineSwitched => "Replica Key Baseline Switched",
        }
    }
}

/// One drift, told to whoever listens (an EventBridge event: `source`
/// [`NOTIFICATION_SOURCE`], `detail-type` from [`DriftNews`], `detail` the outcome).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// What happened.
    pub news: DriftNews,
    /// The key (the event's `resources`).
    pub key_arn: KeyArn,
    /// The outcome as the response has it, exposure and actor included.
    pub detail: serde_json::Value,
}

impl Report {
    /// One notification per drift found: remediated, detected (dry-run or flapping) or
    /// failed after it was found. Keys left alone on purpose (excluded, another account's)
    /// and outcomes without a drift are not news.
    pub fn notifications(&self) -> Vec<Notification> {
        let detail = |o: &Outcome| serde_json::to_value(o).expect("an outcome serialises");
        let mut out = Vec::new();
        for o in &self.outcomes {
            let news = match &o.status {
                Status::Failed(Failure::GuardrailRefused { .. }) => Some(DriftNews::WriteRefused),
                _ if o.diff.is_none() => None,
                Status::Remediated(_) => Some(DriftNews::Remediated),
                Status::DriftDetected(_) | Status::Skipped(Skip::Flapping { .. }) => {
                    Some(DriftNews::Detected)
                }
                Status::Skipped(Skip::Excluded { .. }) if o.exposure_alarms() => {
                    Some(DriftNews::Detected)
                }
                Status::Failed(_) => Some(DriftNews::RemediationFailed),
                Status::InSync(_) | Status::Skipped(_) => None,
            };
            let Some(news) = news else { continue };
            out.push(Notification {
                news,
                key_arn: o.key_arn.clone(),
                detail: detail(o),
            });
            let granted = o.write_exposure.as_ref().map(|e| e.severity);
            if matches!(o.status, Status::Remediated(_)) && granted >= Some(Severity::Admin) {
                out.push(Notification {
                    news: DriftNews::WriteGrantsAccess,
                    key_arn: o.key_arn.clone(),
                    detail: detail(o),
                });
            }
        }
        for t in &self.tag_changes {
            let news = match t.change {
                TagNewsKind::ExemptionGranted => DriftNews::ExemptionGranted,
                TagNewsKind::BaselineSwitched => DriftNews::BaselineSwitched,
                TagNewsKind::ExemptionRemoved => continue,
            };
            out.push(Notification {
                news,
                key_arn: t.key_arn.clone(),
                detail: serde_json::to_value(t).expect("tag news serialises"),
            });
        }
        out
    }
}
