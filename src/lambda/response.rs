//! What an invocation answers, typed, and serialised once at the edge ([`Response::into_value`]).
//! The JSON is the same as the handler has always answered: a report's fields at the top
//! level with what was published beside them, a plan, an SQS batch's failures, or Config's
//! answers.

use serde::Serialize;
use serde_json::Value;

use krg_engine::error::CallError;
use krg_engine::outcome::Report;

/// One invocation's answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// A trigger carried out: the report, and what was published about it.
    Ran {
        /// The keys and what happened to them.
        #[serde(flatten)]
        report: Box<Report>,
        /// Metrics put in CloudWatch (none when there was nothing to count).
        #[serde(skip_serializing_if = "Option::is_none")]
        metrics: Option<Published>,
        /// Drift notifications put on the bus (none without a notifier or a drift).
        #[serde(skip_serializing_if = "Option::is_none")]
        notifications: Option<Published>,
        /// Security Hub findings (the detector with `SECURITY_HUB=on`).
        #[serde(skip_serializing_if = "Option::is_none")]
        findings: Option<Imported>,
    },
    /// A sweep of every account, planned onto the work queue.
    Planned {
        /// Work items sent.
        planned: usize,
        /// Accounts they cover.
        accounts: usize,
        /// Each item's place (`account/Region`).
        places: Vec<String>,
    },
    /// An SQS batch: the items that failed, for SQS to retry (`ReportBatchItemFailures`).
    Batch {
        /// The failed items.
        #[serde(rename = "batchItemFailures")]
        failures: Vec<BatchItemFailure>,
    },
    /// An AWS Config rule answered.
    Evaluated {
        /// Each evaluation put.
        evaluations: Vec<EvaluationSummary>,
        /// How many Config took.
        put: usize,
    },
}

impl Response {
    /// The answer as JSON, as Lambda returns it.
    pub fn into_value(self) -> Value {
        serde_json::to_value(self).expect("a response always serialises")
    }
}

/// Metrics or notifications: how many went out, or why none did.
#[derive(Debug, Serialize)]
pub struct Published {
    /// How many were published.
    pub published: usize,
    /// Why they were not (logged too; the outcomes stand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Published {
    /// `count` published, or none and why.
    pub fn of(result: Result<usize, CallError>) -> Self {
        match result {
            Ok(published) => Self {
                published,
                error: None,
            },
            Err(e) => Self {
                published: 0,
                error: Some(e.to_string()),
            },
        }
    }
}

/// Security Hub findings: how many were imported, and how many not and why.
#[derive(Debug, Serialize)]
pub struct Imported {
    /// Findings Security Hub took.
    pub imported: usize,
    /// Findings it did not take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_imported: Option<usize>,
    /// Why (the first failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One failed item of an SQS batch.
#[derive(Debug, Serialize)]
pub struct BatchItemFailure {
    /// The SQS message id.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// One evaluation put to AWS Config.
#[derive(Debug, Serialize)]
pub struct EvaluationSummary {
    /// The key id.
    pub resource_id: String,
    /// `COMPLIANT`, `NON_COMPLIANT` or `NOT_APPLICABLE`.
    pub compliance: &'static str,
    /// Why.
    pub annotation: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_answer_has_the_shape_lambda_has_always_returned() {
        let ran = Response::Ran {
            report: Box::default(),
            metrics: Some(Published::of(Ok(3))),
            notifications: None,
            findings: Some(Imported {
                imported: 1,
                not_imported: Some(2),
                error: Some("throttled".into()),
            }),
        }
        .into_value();
        let report = serde_json::to_value(Report::default()).unwrap();
        for (k, v) in report.as_object().unwrap() {
            assert_eq!(&ran[k], v, "{k} at the top level");
        }
        assert_eq!(ran["metrics"], json!({"published": 3}));
        assert!(ran.get("notifications").is_none());
        assert_eq!(
            ran["findings"],
            json!({"imported": 1, "not_imported": 2, "error": "throttled"})
        );
        let batch = Response::Batch {
            failures: vec![BatchItemFailure {
                item_identifier: "m-1".into(),
            }],
        }
        .into_value();
        assert_eq!(
            batch,
            json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
        );
        let planned = Response::Planned {
            planned: 2,
            accounts: 1,
            places: vec!["a/us-east-1".into()],
        }
        .into_value();
        assert_eq!(
            planned,
            json!({"planned": 2, "accounts": 1, "places": ["a/us-east-1"]})
        );
    }
}
