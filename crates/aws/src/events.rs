//! Drift notifications on EventBridge: PutEvents, ten entries per call (the service's
//! limit), the entries it did not take sent once more, then a failure naming how many are
//! missing. The function's caller decides what a failure means (it never blocks a fix).

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::call_error;
use krg_engine::error::{CallError, ErrorKind};
use krg_engine::outcome::{NOTIFICATION_SOURCE, Notification};
use krg_engine::ports::Notifier;

/// EventBridge's limit of entries per PutEvents.
const BATCH: usize = 10;

/// Notifications go to the event bus `bus` (a name or ARN; `default` for the account's
/// default bus).
#[derive(Clone)]
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBus {
    /// Notifications go to `bus`.
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    fn entry(&self, note: &Notification) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(NOTIFICATION_SOURCE)
            .detail_type(note.news.detail_type())
            .resources(note.key_arn.as_str())
            .detail(note.detail.to_string())
            .build()
    }

    /// Sends one batch; the entries that were not taken.
    async fn put(
        &self,
        entries: Vec<PutEventsRequestEntry>,
    ) -> Result<Vec<PutEventsRequestEntry>, CallError> {
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries.clone()))
            .send()
            .await
            .map_err(|e| call_error("PutEvents", &self.bus, e))?;
        // The result entries are in request order; a failed one has an error code.
        let results = out.entries();
        Ok(entries
            .into_iter()
            .enumerate()
            .filter(|(i, _)| {
                let failed = results.get(*i).is_none_or(|r| r.error_code().is_some());
                if let Some(r) = results.get(*i).filter(|_| failed) {
                    tracing::warn!(bus = %self.bus, code = ?r.error_code(), message = ?r.error_message(), "notification not taken");
                }
                failed
            })
            .map(|(_, e)| e)
            .collect())
    }
}

impl Notifier for EventBus {
    async fn notify(&self, notes: &[Notification]) -> Result<usize, CallError> {
        let mut taken = 0;
        for chunk in notes.chunks(BATCH) {
            let entries: Vec<_> = chunk.iter().map(|n| self.entry(n)).collect();
            let sent = entries.len();
            let left = self.put(entries).await?;
            let still = if left.is_empty() {
                left
            } else {
                self.put(left).await?
            };
            if !still.is_empty() {
                return Err(CallError::new(
                    "PutEvents",
                    &self.bus,
                    ErrorKind::Transient,
                    format!(
                        "EventBridge did not take {} of {} notifications after a second attempt",
                        still.len(),
                        notes.len()
                    ),
                ));
            }
            taken += sent;
        }
        Ok(taken)
    }
}
