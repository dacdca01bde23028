//! The one result type: what happened to each key, and why, as values. The Lambda response,
//! the CLI, the per-key log line and the metrics are all derived from it; reasons become
//! text only at that edge ([`fmt::Display`]), and metrics and exit codes match on variants.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::baseline::Rewrite;
use crate::catalogue::{OutOfScope, UnknownBaseline};
use crate::error::{Api, CallError, Target};
use crate::key::{AccountId, KeyArn, Region};
use crate::tenancy::NotAllowed;
use crate::trigger::Actor;
pub use krg_policy::{Access, Breach, Exposure, Extra, Severity};

/// A time as records and reasons show it: RFC 3339 in UTC.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339()
}

mod metrics;
mod notify;
mod reasons;
mod report;
mod status;
mod wire;

pub use metrics::*;
pub use notify::*;
use reasons::Reason;
pub use report::*;
pub use status::*;
pub use wire::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    use crate::fake::arn as key;

    fn throttled() -> CallError {
        CallError::new(Api::GetKeyPolicy, "k", ErrorKind::Throttled, "x")
    }

    #[test]
    fn an_outcome_serialises_to_the_documented_contract() {
        let o = Outcome::in_sync(&key("us-west-2")).with_diff("d".into());
        let v = serde_json::to_value(Report {
            outcomes: vec![o],
            ..Report::default()
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"outcomes": [{
                "key_arn": key("us-west-2").as_str(), "account": "111122223333",
                "region": "us-west-2", "action": "in-sync", "reason": null, "diff": "d",
                "exposure": null, "actor": null
            }]})
        );
        let failed = Outcome::failed(&key("us-west-2"), Failure::StaleAfterWrite { attempts: 3 });
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(v["action"], "failed");
        assert_eq!(v["retry"], "retryable");
        assert!(v["reason"].as_str().unwrap().contains("3 re-reads"), "{v}");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "key_arn", "account", "region", "action", "reason", "diff", "exposure", "actor",
                "retry"
            ]
        );
    }

    #[test]
    fn every_failure_carries_its_retry_class() {
        let denied = CallError::new(Api::PutKeyPolicy, "k", ErrorKind::AccessDenied, "no");
        assert_eq!(Failure::Call(throttled()).retry(), Retry::Retryable);
        assert_eq!(Failure::BackupFailed(denied).retry(), Retry::NonRetryable);
        assert_eq!(
            Failure::VerificationFailed { rest: "-".into() }.retry(),
            Retry::NonRetryable
        );
        assert_eq!(
            Failure::ConcurrentWriteDiffers { holder: "h".into() }.retry(),
            Retry::Retryable
        );
    }

    #[test]
    fn the_flap_guard_is_known_by_its_variant_not_its_words() {
        let flapping = Outcome::skipped(
            &key("us-west-2"),
            Skip::Flapping {
                writes: 5,
                window: Duration::from_secs(3600),
            },
        );
        assert!(flapping.is_flap_suppressed());
        assert!(
            flapping
                .reason()
                .unwrap()
                .starts_with("flapping: already rewritten 5 times in the last 3600 s")
        );
        let excluded = Outcome::skipped(
            &key("us-west-2"),
            Skip::Excluded {
                tag: "flapping".into(),
                until: None,
            },
        );
        assert!(!excluded.is_flap_suppressed());
    }

    #[test]
    fn accounts_the_hub_could_not_enter_are_counted_once_each() {
        let refused = |account: &str| {
            CallError::new(
                Api::AssumeRole,
                &format!("arn:aws:iam::{account}:role/kms-replica-guard-member")
                    .parse::<crate::key::RoleArn>()
                    .unwrap(),
                ErrorKind::AccessDenied,
                "AccessDenied: not authorized",
            )
        };
        let r = Report {
            outcomes: vec![Outcome::call_failed(
                &key("us-west-2"),
                &refused("222233334444"),
            )],
            errors: vec![
                RunError(refused("222233334444")),
                RunError(refused("333344445555")),
            ],
            ..Report::default()
        };
        let entered = r
            .metrics()
            .into_iter()
            .find(|d| d.metric == Metric::AccountNotEntered)
            .expect("published");
        assert_eq!((entered.value, entered.region), (2.0, None));
        assert!(refused("222233334444").to_string().contains("member stack"));
        assert_eq!(r.failure_class(), Some(Retry::NonRetryable));
    }

    #[test]
    fn every_metric_is_listed_once_in_all() {
        // A new variant fails to compile here until it is listed in Metric::ALL too.
        let position = |m: Metric| match m {
            Metric::AutoFixApplied
            | Metric::DriftDetected
            | Metric::AutoFixFailed
            | Metric::FlapSuppressed
            | Metric::AccountNotEntered
            | Metric::AccountNotAllowed
            | Metric::ExposureDrift
            | Metric::ExemptionExpired
            | Metric::GuardrailRefused
            | Metric::WriteExposure
            | Metric::ExemptionGranted
            | Metric::BaselineSwitched
            | Metric::KeysExcluded
            | Metric::SweepCompleted
            | Metric::SweepKeysCovered
            | Metric::EnforceMode
            | Metric::FindingsNotImported
            | Metric::EvaluationsNotPut => Metric::ALL.iter().position(|a| *a == m),
        };
        for m in Metric::ALL {
            assert!(position(m).is_some());
        }
        let names: std::collections::BTreeSet<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Metric::ALL.len(), "names are unique");
    }

    #[test]
    fn metrics_count_per_region_and_in_total() {
        let r = Report {
            outcomes: vec![
                Outcome::new(
                    &key("us-west-2"),
                    Status::Remediated(Remediation {
                        cause: WriteCause::Drift {
                            baseline: "b".into(),
                        },
                        backup: "s3://b/k".into(),
                    }),
                ),
                Outcome::new(&key("eu-west-1"), Status::DriftDetected(DriftNote::DryRun)),
                Outcome::failed(&key("eu-west-1"), Failure::Call(throttled())),
                Outcome::in_sync(&key("eu-west-1")),
            ],
            ..Report::default()
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
