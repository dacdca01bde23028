//! The planned sweep's work queue on SQS: SendMessageBatch, ten items per call, the items
//! SQS did not take sent once more, then a failure naming how many are missing.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::call_error;
use krg_engine::error::{Api, CallError, ErrorKind};
use krg_engine::key::Place;
use krg_engine::ports::WorkQueue;
use krg_engine::trigger::work_item;

/// SQS's limit of entries per SendMessageBatch.
const BATCH: usize = 10;

/// The work queue at `url`.
#[derive(Clone)]
pub struct Sqs {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Sqs {
    /// Work items go to the queue at `url`.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    async fn send_batch(
        &self,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<Vec<SendMessageBatchRequestEntry>, CallError> {
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries.clone()))
            .send()
            .await
            .map_err(|e| call_error(Api::SendMessageBatch, &self.url, e))?;
        let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
        for f in out.failed() {
            tracing::warn!(queue = %self.url, id = f.id(), code = f.code(), message = ?f.message(), sender_fault = f.sender_fault(), "work item not taken");
        }
        Ok(entries
            .into_iter()
            .filter(|e| failed.contains(&e.id()))
            .collect())
    }
}

impl WorkQueue for Sqs {
    async fn send(&self, items: &[Place]) -> Result<usize, CallError> {
        for (n, chunk) in items.chunks(BATCH).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, place)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("item-{}", n * BATCH + i))
                        .message_body(work_item(place).to_string())
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let left = self.send_batch(entries).await?;
            if !left.is_empty() {
                let still = self.send_batch(left).await?;
                if !still.is_empty() {
                    return Err(CallError::new(
                        Api::SendMessageBatch,
                        &self.url,
                        ErrorKind::Transient,
                        format!(
                            "SQS did not take {} of {} work items after a second attempt; the sweep is retried",
                            still.len(),
                            items.len()
                        ),
                    ));
                }
            }
        }
        Ok(items.len())
    }
}
