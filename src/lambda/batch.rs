//! The work queue's side: an SQS batch of planned sweep items, each run on its own. A
//! message is taken only as the planner's item (one account, one Region:
//! [`krg_engine::work_item`]); anything else the function would take as an event — an empty
//! `{"sweep": {}}` that sweeps the whole organisation, a CloudTrail event — is refused. The
//! answer lists the items that failed or were refused (`ReportBatchItemFailures`), so SQS
//! retries only those and moves the ones that keep failing to the queue's DLQ; the others
//! are deleted. Metrics of the whole batch are published once.
//!
//! Read by hand rather than with aws_lambda_events' `sqs` feature: three fields, and that
//! feature would add serde_with to the package.

use serde::Deserialize;
use serde_json::Value;

use super::response::{BatchItemFailure, Response};
use super::{App, Ports};
use krg_engine::outcome::Report;
use krg_engine::trigger::Trigger;
use krg_engine::work_item;

/// One SQS message of the batch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Record {
    message_id: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
struct Batch {
    #[serde(rename = "Records")]
    records: Vec<SourcedRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SourcedRecord {
    event_source: String,
    #[serde(flatten)]
    record: Record,
}

/// The SQS records of `payload`, when it is an SQS batch.
pub(super) fn records(payload: &Value) -> Option<Vec<Record>> {
    if !payload
        .get("Records")?
        .get(0)?
        .get("eventSource")
        .is_some_and(|s| s == "aws:sqs")
    {
        return None;
    }
    let batch: Batch = serde_json::from_value(payload.clone()).ok()?;
    Some(
        batch
            .records
            .into_iter()
            .filter(|r| r.event_source == "aws:sqs")
            .map(|r| r.record)
            .collect(),
    )
}

impl<X: Ports> App<X> {
    /// Runs each work item inline (a work item is never planned again) and answers with the
    /// ones that failed or were refused.
    pub(super) async fn handle_batch(
        &self,
        engine: &super::Engine<X>,
        namespace: &str,
        records: Vec<Record>,
    ) -> Response {
        let mut all = Report::default();
        let mut failed = Vec::new();
        for record in records {
            let ok = match work_item::parse(&record.body, &engine.settings().tenancy) {
                Err(e) => {
                    tracing::error!(message_id = %record.message_id, error = %e, "sweep queue message refused; SQS moves it to the queue's DLQ after maxReceiveCount");
                    false
                }
                Ok(place) => {
                    let trigger = Trigger::Sweep {
                        accounts: place.account.map(|a| vec![a]),
                        regions: Some(vec![place.region]),
                    };
                    // Run inline: only the app plans, and it never plans a queue's item.
                    let report = Box::pin(engine.run(&trigger)).await;
                    let ok = report.failure_class().is_none();
                    if !ok {
                        tracing::error!(message_id = %record.message_id, failed = report.failures().count(), errors = report.errors.len(), "work item failed; SQS retries it alone");
                    }
                    all.merge(report);
                    ok
                }
            };
            if !ok {
                failed.push(record.message_id);
            }
        }
        self.publish(namespace, engine.settings().mode, &all).await;
        self.notify(&all).await;
        Response::Batch {
            failures: failed
                .into_iter()
                .map(|item_identifier| BatchItemFailure { item_identifier })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::App;
    use super::super::PortSet;
    use super::super::fakes::fakes;
    use crate::config::Config;
    use krg_engine::fake::FakeAws;
    use serde_json::{Value, json};

    const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;

    fn batch(bodies: &[(&str, Value)]) -> Value {
        json!({"Records": bodies.iter().map(|(id, body)| json!({
            "messageId": id, "body": body.to_string(), "eventSource": "aws:sqs",
        })).collect::<Vec<_>>()})
    }

    #[tokio::test]
    async fn a_forged_empty_sweep_on_the_queue_is_refused_and_sweeps_nothing() {
        let fake = FakeAws::family(POLICY, &["us-west-2"]);
        let config = Config::from_lookup(|k| match k {
            "REMEDIATOR_ROLE_ARN" => Some("arn:aws:iam::111122223333:role/hub".into()),
            "MEMBER_ROLE_NAME" => Some("kms-replica-guard-member".into()),
            "MEMBER_ACCOUNTS" => Some("organization".into()),
            "SWEEP_REGIONS" => Some("us-west-2,eu-west-1".into()),
            _ => None,
        });
        let app = App::new(
            config,
            PortSet {
                queue: Some(&fake),
                ..fakes(&fake)
            },
        );
        let genuine = json!({"sweep": {"account": "111122223333", "regions": ["us-west-2"]}});
        let answer = app
            .handle(batch(&[
                ("forged", json!({"sweep": {}})),
                ("genuine", genuine),
                (
                    "event",
                    json!({"detail-type": "Scheduled Event", "source": "aws.events"}),
                ),
            ]))
            .await
            .unwrap();
        assert_eq!(
            answer,
            json!({"batchItemFailures": [{"itemIdentifier": "forged"}, {"itemIdentifier": "event"}]})
        );
        assert_eq!(
            fake.count("ListAccounts"),
            0,
            "the organisation was never listed"
        );
        assert_eq!(
            fake.count("ListKeys"),
            1,
            "one Region of one account swept: {:?}",
            fake.operations()
        );
        assert!(fake.queued.lock().unwrap().is_empty(), "nothing planned");
    }
}
