//! The work queue's side: an SQS batch of planned sweep items (or any payload the function
//! takes), each run on its own. The answer lists the items that failed
//! (`ReportBatchItemFailures`), so SQS retries only those and moves the ones that keep
//! failing to the queue's DLQ; the others are deleted. Metrics of the whole batch are
//! published once.
//!
//! Read by hand rather than with aws_lambda_events' `sqs` feature: three fields, and that
//! feature would add serde_with to the package.

use serde::Deserialize;
use serde_json::Value;

use super::App;
use krg_engine::Reconciler;
use krg_engine::outcome::Report;
use krg_engine::ports::{BackupStore, KeyDirectory, MetricsSink, Notifier, PolicyStore, WorkQueue};

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

impl<K, P, M, B, Q, N> App<K, P, M, B, Q, N>
where
    K: KeyDirectory,
    P: PolicyStore,
    M: MetricsSink,
    B: BackupStore,
    Q: WorkQueue,
    N: Notifier,
{
    /// Runs each record inline (a work item is never planned again) and answers with the
    /// ones that failed.
    pub(super) async fn handle_batch(
        &self,
        engine: &Reconciler<K, P, B>,
        namespace: &str,
        records: Vec<Record>,
    ) -> Value {
        let mut all = Report::default();
        let mut failed = Vec::new();
        for record in records {
            let ok = match serde_json::from_str::<Value>(&record.body) {
                Err(e) => {
                    tracing::error!(message_id = %record.message_id, error = %e, "work item is not JSON; left for the queue's DLQ");
                    false
                }
                Ok(payload) => match self.trigger(engine, &payload) {
                    Err(_) => false,
                    Ok(trigger) => {
                        // Run inline: only the app plans, and it never plans a queue's item.
                        let report = Box::pin(engine.run(&trigger)).await;
                        let ok = report.failure_class().is_none();
                        if !ok {
                            tracing::error!(message_id = %record.message_id, failed = report.failures().count(), errors = report.errors.len(), "work item failed; SQS retries it alone");
                        }
                        merge(&mut all, report);
                        ok
                    }
                },
            };
            if !ok {
                failed.push(record.message_id);
            }
        }
        self.publish(namespace, &all).await;
        self.notify(&all).await;
        let failures: Vec<Value> = failed
            .iter()
            .map(|id| serde_json::json!({ "itemIdentifier": id }))
            .collect();
        serde_json::json!({ "batchItemFailures": failures })
    }
}

/// Adds `report` to the batch's (for one metrics call).
fn merge(all: &mut Report, report: Report) {
    all.outcomes.extend(report.outcomes);
    all.errors.extend(report.errors);
    all.accounts_refused.extend(report.accounts_refused);
}
