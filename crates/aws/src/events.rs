//! Drift notifications on EventBridge: PutEvents, at most ten entries and under 256 KB of
//! entries per call (the service's limits, entry sizes counted as AWS documents them), each
//! detail bounded (a long diff is cut, with a pointer to the log line that has it whole),
//! the entries it did not take sent once more, then a failure naming how many are missing.
//! The function's caller decides what a failure means (it never blocks a fix).

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use futures::{StreamExt, stream};

use super::call_error;
use krg_engine::error::{Api, CallError, ErrorKind};
use krg_engine::outcome::{NOTIFICATION_SOURCE, Notification};
use krg_engine::ports::Notifier;

/// EventBridge's limit of entries per PutEvents.
const BATCH: usize = 10;

/// PutEvents calls in flight at once: at tens of milliseconds a call, a few hundred a
/// second at most, under the lowest Regional PutEvents quota.
const BATCHES_AT_ONCE: usize = 8;

/// EventBridge's limit on the entries of one PutEvents ("the total entry size must be less
/// than 256KB"), with room to spare.
const MAX_BATCH_BYTES: usize = 256 * 1024 - 1024;

/// The most one notification's detail carries: ten of them fit in one call, whatever the
/// policies' sizes (a drift of two 32 KB policies has a diff of about twice that).
const MAX_DETAIL_BYTES: usize = 24 * 1024;

/// An entry's size as EventBridge counts it: Source, DetailType, Detail and each Resource
/// in UTF-8 bytes (and 14 for Time, which is never set here).
fn entry_size(e: &PutEventsRequestEntry) -> usize {
    e.source().map_or(0, str::len)
        + e.detail_type().map_or(0, str::len)
        + e.detail().map_or(0, str::len)
        + e.resources().iter().map(String::len).sum::<usize>()
        + if e.time().is_some() { 14 } else { 0 }
}

/// The detail as sent: whole when it fits in [`MAX_DETAIL_BYTES`]; else with the diff cut
/// (`diff_truncated` says where the whole one is), and failing that only what identifies
/// the drift and how serious it is.
fn bounded_detail(detail: &serde_json::Value) -> String {
    let whole = detail.to_string();
    if whole.len() <= MAX_DETAIL_BYTES {
        return whole;
    }
    let note = "cut to fit the event; the function's log line for this key (same key_arn and event) has the whole diff";
    let mut cut = detail.clone();
    if let Some(diff) = detail["diff"].as_str() {
        let room = MAX_DETAIL_BYTES.saturating_sub(whole.len() - diff.len() + note.len() + 64);
        let mut end = room.min(diff.len());
        while !diff.is_char_boundary(end) {
            end -= 1;
        }
        cut["diff"] = serde_json::Value::String(diff[..end].to_owned());
        cut["diff_truncated"] = serde_json::Value::String(note.to_owned());
        let text = cut.to_string();
        if text.len() <= MAX_DETAIL_BYTES {
            return text;
        }
    }
    let mut brief = serde_json::Map::new();
    for field in [
        "key_arn", "account", "region", "action", "baseline", "actor", "retry",
    ] {
        if let Some(v) = detail.get(field) {
            brief.insert(field.to_owned(), v.clone());
        }
    }
    for field in ["exposure", "write_exposure"] {
        if let Some(severity) = detail[field].get("severity") {
            brief.insert(field.to_owned(), serde_json::json!({"severity": severity}));
        }
    }
    if let Some(reason) = detail["reason"].as_str() {
        let mut end = reason.len().min(4096);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        brief.insert("reason".into(), reason[..end].into());
    }
    brief.insert(
        "detail_truncated".into(),
        "the outcome was too large for an event; the function's log line for this key has it whole"
            .into(),
    );
    serde_json::Value::Object(brief).to_string()
}

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
            .detail(bounded_detail(&note.detail))
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
            .map_err(|e| call_error(Api::PutEvents, &self.bus, e))?;
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

    /// One batch, its refused entries sent once more: how many it published, or a failure
    /// naming how many of the `total` notifications are missing.
    async fn send(
        &self,
        entries: Vec<PutEventsRequestEntry>,
        total: usize,
    ) -> Result<usize, CallError> {
        let sent = entries.len();
        let left = self.put(entries).await?;
        let still = if left.is_empty() {
            left
        } else {
            self.put(left).await?
        };
        if !still.is_empty() {
            return Err(CallError::new(
                Api::PutEvents,
                &self.bus,
                ErrorKind::Transient,
                format!(
                    "EventBridge did not take {} of {} notifications after a second attempt",
                    still.len(),
                    total
                ),
            ));
        }
        Ok(sent)
    }
}

/// Entries in batches of at most [`BATCH`] entries and [`MAX_BATCH_BYTES`], in order.
fn batches(
    entries: impl Iterator<Item = PutEventsRequestEntry>,
) -> Vec<Vec<PutEventsRequestEntry>> {
    let mut out: Vec<Vec<PutEventsRequestEntry>> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let size = entry_size(&e);
        match out.last_mut() {
            Some(batch) if batch.len() < BATCH && bytes + size <= MAX_BATCH_BYTES => {
                bytes += size;
                batch.push(e);
            }
            _ => {
                bytes = size;
                out.push(vec![e]);
            }
        }
    }
    out
}

impl Notifier for EventBus {
    async fn notify(&self, notes: &[Notification]) -> Result<usize, CallError> {
        // A few batches at a time: one after another, the 36 calls of a sweep that healed
        // 179 replicas took 0.7 s of its 2.3 s (bench-scale).
        let sent: Vec<Result<usize, CallError>> =
            stream::iter(batches(notes.iter().map(|n| self.entry(n))))
                .map(|entries| self.send(entries, notes.len()))
                .buffered(BATCHES_AT_ONCE)
                .collect()
                .await;
        sent.into_iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use krg_engine::outcome::DriftNews;
    use serde_json::json;

    /// The notification of a drift between two ~30 KB policies: its diff is about 60 KB.
    fn drift_of_thirty_kb(i: usize) -> Notification {
        let key = format!("arn:aws:kms:eu-west-1:111122223333:key/mrk-{i:032x}");
        let line =
            "+ statement \"App001\" {\"Action\": [\"kms:Decrypt\"], \"Effect\": \"Allow\"}\n";
        let diff = line.repeat(60 * 1024 / line.len());
        Notification {
            news: DriftNews::Remediated,
            key_arn: key.parse().unwrap(),
            detail: json!({"key_arn": key, "account": "111122223333", "region": "eu-west-1",
                           "action": "remediated", "reason": "policy rewritten",
                           "diff": diff, "exposure": {"severity": "public", "gains": [], "losses": []}}),
        }
    }

    fn bus(client: aws_sdk_eventbridge::Client) -> EventBus {
        EventBus::new(client, "default")
    }

    #[tokio::test]
    async fn ten_drifts_of_thirty_kb_policies_are_all_published_within_the_request_limits() {
        let notes: Vec<Notification> = (0..10).map(drift_of_thirty_kb).collect();
        let taken = |n: usize| {
            PutEventsOutput::builder()
                .set_entries(Some(
                    (0..n)
                        .map(|i| {
                            PutEventsResultEntry::builder()
                                .event_id(format!("e{i}"))
                                .build()
                        })
                        .collect(),
                ))
                .build()
        };
        // Every request must be within EventBridge's limits; the answer takes its entries.
        let within = |r: &aws_sdk_eventbridge::operation::put_events::PutEventsInput| {
            let entries = r.entries();
            entries.len() <= BATCH && entries.iter().map(entry_size).sum::<usize>() < 256 * 1024
        };
        let ten = mock!(aws_sdk_eventbridge::Client::put_events)
            .match_requests(move |r| within(r) && r.entries().len() == 10)
            .then_output(move || taken(10));
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&ten]);
        let published = bus(client).notify(&notes).await.unwrap();
        assert_eq!(published, 10);
        assert_eq!(ten.num_calls(), 1, "bounded details fit ten to a call");

        let entries: Vec<_> = notes.iter().map(|n| bus(dummy()).entry(n)).collect();
        for e in &entries {
            let detail: serde_json::Value = serde_json::from_str(e.detail().unwrap()).unwrap();
            assert!(e.detail().unwrap().len() <= MAX_DETAIL_BYTES);
            assert!(
                detail["diff_truncated"]
                    .as_str()
                    .unwrap()
                    .contains("log line")
            );
            assert_eq!(
                detail["exposure"]["severity"], "public",
                "the severity stays"
            );
            assert!(detail["diff"].as_str().unwrap().starts_with("+ statement"));
        }
    }

    fn dummy() -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
                .build(),
        )
    }

    #[test]
    fn batches_close_at_ten_entries_or_before_the_size_limit() {
        let entry = |bytes: usize| {
            PutEventsRequestEntry::builder()
                .source(NOTIFICATION_SOURCE)
                .detail_type("Replica Key Policy Remediated")
                .detail("x".repeat(bytes))
                .resources("arn:aws:kms:eu-west-1:111122223333:key/mrk-1")
                .build()
        };
        let small: Vec<usize> = batches((0..23).map(|_| entry(100)))
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(small, [10, 10, 3]);
        let large = batches((0..5).map(|_| entry(100 * 1024)));
        assert_eq!(large.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        for batch in &large {
            assert!(batch.iter().map(entry_size).sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn a_detail_that_fits_is_sent_whole_and_an_outsized_one_keeps_what_identifies_it() {
        let small = json!({"key_arn": "k", "diff": "- a\n+ b"});
        assert_eq!(bounded_detail(&small), small.to_string());
        // Too large even without its diff: only what identifies the drift and its severity.
        let huge = json!({"key_arn": "k", "action": "remediated", "reason": "r",
                          "extras": {"kept": "y".repeat(40 * 1024)},
                          "exposure": {"severity": "admin", "gains": []}});
        let brief: serde_json::Value = serde_json::from_str(&bounded_detail(&huge)).unwrap();
        assert_eq!(brief["key_arn"], "k");
        assert_eq!(brief["exposure"]["severity"], "admin");
        assert!(brief.get("extras").is_none());
        assert!(brief["detail_truncated"].is_string());
    }
}
