//! The Lambda entry point: payload → trigger → reconcile → metrics → response. Any failed
//! key fails the invocation, so Lambda retries it and the on-failure destination keeps it.
//!
//! With a work queue (`SWEEP_QUEUE_URL`), a sweep of every account is planned instead of run:
//! one item per (account, Region) goes to the queue, and the same function consumes it
//! (`batch.rs`), answering with the items that failed so that only they are retried.
//!
//! Security Hub findings and AWS Config rule answers are the detector's (`detector.rs`, a
//! second function that never writes): an AWS Config invocation that reaches this function
//! is refused by name, so a rule pointed at the wrong function shows in its errors.

mod batch;
pub mod detector;
pub mod response;

use response::{Published, Response};

use lambda_runtime::Diagnostic;
use serde_json::Value;

use crate::config::{Config, ConfigError};
use krg_engine::Mode;
use krg_engine::Reconciler;
use krg_engine::config_rule;
use krg_engine::error::CallError;
use krg_engine::outcome::{Metric, MetricDatum, Report, Retry};
use krg_engine::ports::{
    AccountDirectory, BackupStore, KeyDirectory, MetricsSink, Notifier, PolicyStore, WorkQueue,
};
use krg_engine::trigger::{self, EventError, Trigger};

/// Why an invocation failed. The `error_type` Lambda records says whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The function's configuration is invalid; every invocation fails until it is fixed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The payload could not be understood.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A sweep could not be planned onto the work queue (the organisation could not be
    /// listed, or SQS did not take the items).
    #[error("the sweep could not be planned: {0}")]
    Plan(CallError),
    /// An AWS Config rule invocation could not be answered (a key could not be evaluated,
    /// or PutEvaluations failed).
    #[error("the AWS Config rule could not be answered: {0}")]
    Evaluate(CallError),
    /// Security Hub did not take findings, for a reason that may pass (the detector).
    #[error("Security Hub findings were not imported: {0}")]
    Findings(CallError),
    /// An invocation meant for the other function (an AWS Config rule pointed at the
    /// remediator).
    #[error("{0}")]
    Misrouted(&'static str),
    /// One or more keys failed.
    #[error("{failed} key(s) failed: {summary}")]
    Keys {
        /// How many.
        failed: usize,
        /// Whether retrying the event can help.
        retry: Retry,
        /// The failed outcomes and run errors as JSON.
        summary: String,
    },
}

impl InvocationError {
    /// The `errorType` Lambda records: `Retryable.*` or `NonRetryable.*`.
    pub fn error_type(&self) -> &'static str {
        match self {
            InvocationError::Config(e) if e.transient => "Retryable.ConfigurationUnavailable",
            InvocationError::Config(_) => "NonRetryable.ConfigurationError",
            InvocationError::Event(_) => "NonRetryable.MalformedEvent",
            InvocationError::Plan(e) if e.kind.is_retryable() => "Retryable.PlanFailure",
            InvocationError::Plan(_) => "NonRetryable.PlanFailure",
            InvocationError::Evaluate(e) if e.kind.is_retryable() => "Retryable.EvaluationFailure",
            InvocationError::Evaluate(_) => "NonRetryable.EvaluationFailure",
            InvocationError::Findings(_) => "Retryable.FindingsNotImported",
            InvocationError::Misrouted(_) => "NonRetryable.Misrouted",
            InvocationError::Keys {
                retry: Retry::Retryable,
                ..
            } => "Retryable.KeyFailure",
            InvocationError::Keys {
                retry: Retry::NonRetryable,
                ..
            } => "NonRetryable.KeyFailure",
        }
    }
}

impl From<InvocationError> for Diagnostic {
    fn from(e: InvocationError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// The remediator's ports, as one bundle of types: the AWS adapters in Lambda
/// ([`crate::wiring::AwsPorts`]), the in-memory fake in the unit tests.
pub trait Ports {
    /// What keys exist and what they are (KMS).
    type Keys: KeyDirectory;
    /// Key policies, read and written (KMS).
    type Policies: PolicyStore;
    /// The organisation's accounts (Organizations), for `MEMBER_ACCOUNTS=organization`.
    type Accounts: AccountDirectory;
    /// Where a policy is kept before it is overwritten.
    type Backups: BackupStore;
    /// Where the metrics go (CloudWatch).
    type Metrics: MetricsSink;
    /// Where a sweep of every account is planned (SQS).
    type Queue: WorkQueue;
    /// Where drifts are published (EventBridge).
    type Notifier: Notifier;
}

/// The remediator's ports: one value of each of [`Ports`]' types.
pub struct PortSet<X: Ports> {
    /// KMS keys.
    pub keys: X::Keys,
    /// KMS key policies.
    pub policies: X::Policies,
    /// The organisation's accounts.
    pub accounts: X::Accounts,
    /// Backups before each write.
    pub backups: X::Backups,
    /// Metrics.
    pub metrics: X::Metrics,
    /// The sweep's work queue (`SWEEP_QUEUE_URL`); without one, a sweep runs inline.
    pub queue: Option<X::Queue>,
    /// Where drifts are published (`EVENT_BUS`); without one, nowhere.
    pub notifier: Option<X::Notifier>,
}

/// The reconcile engine over a bundle's ports.
pub type Engine<X> = Reconciler<
    <X as Ports>::Keys,
    <X as Ports>::Policies,
    <X as Ports>::Backups,
    <X as Ports>::Accounts,
>;

/// The function: configuration (or why it is invalid) and its ports, built once per
/// execution environment and lent to every invocation.
pub struct App<X: Ports> {
    /// The engine and the metrics namespace, or why the configuration is invalid.
    engine: Result<(Engine<X>, String), ConfigError>,
    metrics: X::Metrics,
    queue: Option<X::Queue>,
    notifier: Option<X::Notifier>,
}

impl<X: Ports> App<X> {
    /// An app over these ports. A configuration error is kept and returned by every
    /// invocation, so it shows in the function's errors instead of a crash loop.
    pub fn new(config: Result<Config, ConfigError>, ports: PortSet<X>) -> Self {
        if let Err(e) = &config {
            tracing::error!(error = %e, "invalid configuration; every invocation will fail until it is fixed");
        }
        let PortSet {
            keys,
            policies,
            accounts,
            backups,
            metrics,
            queue,
            notifier,
        } = ports;
        let engine = config.map(|c| {
            (
                Reconciler::with_backups(keys, policies, backups, c.settings)
                    .with_accounts(accounts),
                c.metrics_namespace,
            )
        });
        Self {
            engine,
            metrics,
            queue,
            notifier,
        }
    }

    /// Handles one invocation payload: an SQS batch of work items, or one trigger. The
    /// answer as Lambda returns it.
    pub async fn handle(&self, payload: Value) -> Result<Value, InvocationError> {
        self.respond(payload).await.map(Response::into_value)
    }

    /// The typed answer to one invocation payload.
    pub async fn respond(&self, payload: Value) -> Result<Response, InvocationError> {
        let (engine, namespace) = self.engine.as_ref().map_err(|e| e.clone())?;
        if config_rule::is_config_invocation(&payload) {
            tracing::error!("an AWS Config rule invocation reached the remediator");
            return Err(InvocationError::Misrouted(MISROUTED_CONFIG));
        }
        if let Some(batch) = batch::records(&payload) {
            return Ok(self.handle_batch(engine, namespace, batch).await);
        }
        let trigger = self.trigger(engine, &payload)?;
        if let (
            Trigger::Sweep {
                accounts: None,
                regions,
            },
            Some(queue),
        ) = (&trigger, &self.queue)
        {
            return self.plan(engine, queue, regions.as_deref()).await;
        }
        // Boxed: the engine's nested futures are deep enough to hit the type-layout limit.
        let report = Box::pin(engine.run(&trigger)).await;
        // Notifications need nothing from the metrics: sent meanwhile.
        let (metrics, notifications) = futures::join!(
            self.publish(namespace, engine.settings().mode, &report),
            self.notify(&report)
        );
        match report.failure_class() {
            None => Ok(Response::Ran {
                report: Box::new(report),
                metrics,
                notifications,
                findings: None,
            }),
            Some(retry) => Err(failure(&report, retry)),
        }
    }

    /// The trigger of a payload, events of the role acting in their account ignored.
    fn trigger(&self, engine: &Engine<X>, payload: &Value) -> Result<Trigger, EventError> {
        let settings = engine.settings();
        trigger::parse_in(payload, &settings.tenancy, settings.remediator.as_ref()).inspect_err(
            |e| {
                tracing::error!(error = %e, "event rejected");
            },
        )
    }

    /// Plans a sweep: one work item per (account, Region) onto the queue.
    async fn plan(
        &self,
        engine: &Engine<X>,
        queue: &X::Queue,
        regions: Option<&[krg_engine::key::Region]>,
    ) -> Result<Response, InvocationError> {
        let (places, _) = engine
            .places(None, regions)
            .await
            .map_err(InvocationError::Plan)?;
        let sent = queue.send(&places).await.map_err(|e| {
            tracing::error!(error = %e, "sweep not planned");
            InvocationError::Plan(e)
        })?;
        let accounts: std::collections::BTreeSet<_> =
            places.iter().map(|p| p.account.clone()).collect();
        tracing::info!(
            items = sent,
            accounts = accounts.len(),
            "sweep planned onto the work queue"
        );
        Ok(Response::Planned {
            planned: sent,
            accounts: accounts.len(),
            places: places.iter().map(ToString::to_string).collect(),
        })
    }

    /// Publishes one notification per drift of the report; like metrics, a failure is
    /// logged and reported but never undoes or blocks a fix. `None` without a notifier or
    /// a drift.
    async fn notify(&self, report: &Report) -> Option<Published> {
        let notifier = self.notifier.as_ref()?;
        let notes = report.notifications();
        if notes.is_empty() {
            return None;
        }
        let result = notifier.notify(&notes).await.inspect_err(|e| {
            tracing::error!(error = %e, "publishing drift notifications failed; the outcomes stand");
        });
        Some(Published::of(result))
    }

    /// Publishes the report's metrics; a failure is reported but never undoes or blocks a
    /// fix. `None` when there was nothing to publish.
    async fn publish(&self, namespace: &str, mode: Mode, report: &Report) -> Option<Published> {
        let mut metrics = report.metrics();
        if metrics.is_empty() {
            return None;
        }
        // The mode rides along with every batch (a sweep's at least): switching the guard to
        // dry-run shows on a graph and can be alarmed on.
        metrics.push(MetricDatum {
            metric: Metric::EnforceMode,
            region: None,
            severity: None,
            value: if mode == Mode::Enforce { 1.0 } else { 0.0 },
        });
        let result = self.metrics.publish(namespace, &metrics).await;
        Some(Published::of(result.map(|()| metrics.len()).inspect_err(
            |e| {
                tracing::error!(error = %e, "publishing metrics failed; the outcomes stand");
            },
        )))
    }
}

/// What an AWS Config invocation of the remediator is told.
const MISROUTED_CONFIG: &str = "an AWS Config rule invocation reached the remediator, which never answers Config: point the rule at the detector function (the stacks' ConfigRule parameter does)";

/// The most an invocation error's summary carries. Lambda keeps the error message in the
/// on-failure destination's record next to the event, within the record's size limit; every
/// outcome, diff included, is in the function's log anyway.
const MAX_SUMMARY_BYTES: usize = 32 * 1024;

fn failure(report: &Report, retry: Retry) -> InvocationError {
    let failed: Vec<&_> = report.failures().collect();
    let count = failed.len() + report.errors.len();
    let full = serde_json::json!({"failed": failed, "errors": report.errors}).to_string();
    let summary = if full.len() <= MAX_SUMMARY_BYTES {
        full
    } else {
        bounded_summary(report)
    };
    InvocationError::Keys {
        failed: count,
        retry,
        summary,
    }
}

/// The failures without diffs, reasons cut to 1,000 characters, as many as fit.
fn bounded_summary(report: &Report) -> String {
    fn cut(text: &str) -> String {
        match text.char_indices().nth(1_000) {
            Some((at, _)) => format!("{}...", &text[..at]),
            None => text.to_owned(),
        }
    }
    let entries = report
        .failures()
        .map(|o| {
            serde_json::json!({
                "key_arn": o.key_arn,
                "region": o.region,
                "reason": o.reason().as_deref().map(cut),
                "retry": o.retry(),
            })
        })
        .chain(
            report
                .errors
                .iter()
                .map(|e| serde_json::json!({"error": cut(&e.0.to_string()), "retry": e.retry()})),
        );
    let mut kept = Vec::new();
    let mut size = 0;
    let mut omitted = 0;
    for entry in entries {
        let len = entry.to_string().len() + 1;
        if size + len > MAX_SUMMARY_BYTES - 512 {
            omitted += 1;
        } else {
            size += len;
            kept.push(entry);
        }
    }
    serde_json::json!({
        "failed": kept,
        "omitted": omitted,
        "note": "shortened to fit the on-failure record: diffs are left out; the function's log has one line per key with the full reason and diff",
    })
    .to_string()
}

#[cfg(test)]
mod fakes;

#[cfg(test)]
mod hostile;

#[cfg(test)]
mod findings_tests;

#[cfg(test)]
mod tests {
    use super::fakes::{Fakes, fakes};
    use super::*;
    use crate::config::Config;
    use krg_engine::error::ErrorKind;
    use krg_engine::fake::{FakeAws, arn};
    use serde_json::json;
    use std::collections::HashMap;

    const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|k| map.get(k).map(|v| v.to_string()))
    }

    /// The app over the in-memory fake, configured with `vars`.
    fn app<'a>(fake: &'a FakeAws, vars: &[(&str, &str)]) -> App<Fakes<'a>> {
        App::new(config(vars), fakes(fake))
    }

    /// The same, publishing its drifts to the fake.
    fn notifying<'a>(fake: &'a FakeAws, vars: &[(&str, &str)]) -> App<Fakes<'a>> {
        let ports = PortSet {
            notifier: Some(fake),
            ..fakes(fake)
        };
        App::new(config(vars), ports)
    }

    fn sample(name: &str) -> Value {
        let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn drifted() -> FakeAws {
        let fake = FakeAws::family(POLICY, &["us-west-2", "eu-west-1"]);
        fake.with_key(&arn("us-west-2"), |k| {
            k.policy = POLICY.replace("kms:*", "kms:Decrypt")
        });
        fake
    }

    #[tokio::test]
    async fn an_event_is_answered_with_outcomes_and_metrics_are_published_once() {
        let fake = drifted();
        let app = app(&fake, &[("REMEDIATION_MODE", "enforce")]);
        let response = app
            .handle(sample("put-key-policy-replica-id.json"))
            .await
            .unwrap();
        assert_eq!(
            response["outcomes"][0]["action"], "remediated",
            "{response:#}"
        );
        assert_eq!(response["outcomes"][0]["region"], "us-west-2");
        assert_eq!(fake.count("PutMetricData"), 1);
        let published = fake.published.lock().unwrap();
        let (namespace, data) = &published[0];
        assert_eq!(namespace, "KmsReplicaGuard");
        assert!(
            data.iter().any(|d| d.metric.name() == "AutoFixApplied"
                && d.region.is_none()
                && d.value == 1.0)
        );
    }

    const HUB: &[(&str, &str)] = &[
        ("REMEDIATION_MODE", "enforce"),
        ("REMEDIATOR_ROLE_ARN", "arn:aws:iam::999988887777:role/hub"),
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
        ("MEMBER_ACCOUNTS", "111122223333,444455556666"),
        ("SWEEP_REGIONS", "us-west-2,eu-west-1"),
    ];

    #[tokio::test]
    async fn with_a_work_queue_a_scheduled_sweep_is_planned_per_account_and_region() {
        let fake = drifted();
        let app = App::new(
            config(HUB),
            PortSet {
                queue: Some(&fake),
                ..fakes(&fake)
            },
        );
        let response = app.handle(sample("scheduled-sweep.json")).await.unwrap();
        assert_eq!(response["planned"], 6, "{response:#}");
        assert_eq!(response["accounts"], 3);
        let queued: Vec<String> = fake
            .queued
            .lock()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(queued.len(), 6);
        assert!(
            queued.contains(&"444455556666/eu-west-1".to_owned()),
            "{queued:?}"
        );
        assert!(
            queued.contains(&"999988887777/us-west-2".to_owned()),
            "{queued:?}"
        );
        assert_eq!(
            fake.operations(),
            ["SendMessageBatch"],
            "planning calls no KMS and assumes no role"
        );
    }

    #[tokio::test]
    async fn a_batch_of_work_items_reports_only_the_item_that_failed() {
        let fake = drifted();
        // The second item's ListKeys fails; the first item is swept and fixed.
        fake.fail("ListKeys", &[]);
        let app = App::new(
            config(HUB),
            PortSet {
                queue: Some(&fake),
                ..fakes(&fake)
            },
        );
        let mut batch = sample("sqs-sweep-work-items.json");
        let first = batch["Records"][0]["messageId"].clone();
        let second = batch["Records"][1]["messageId"]
            .as_str()
            .unwrap()
            .to_owned();
        let answer = {
            let ok = app.handle(batch.clone()).await.unwrap();
            assert_eq!(
                ok,
                json!({"batchItemFailures": []}),
                "both items fine: {ok:#}"
            );
            assert!(
                krg_policy::equivalent(&fake.policy(&arn("us-west-2")), POLICY).unwrap(),
                "the first item fixed its account's replica"
            );
            fake.fail("ListKeys", &[ErrorKind::Throttled]);
            batch["Records"].as_array_mut().unwrap().swap(0, 1);
            app.handle(batch).await.unwrap()
        };
        assert_eq!(
            answer,
            json!({"batchItemFailures": [{"itemIdentifier": second}]}),
            "only the failed item ({second}, not {first}) is retried"
        );
        assert!(
            fake.queued.lock().unwrap().is_empty(),
            "items are never planned again"
        );
    }

    #[tokio::test]
    async fn a_write_the_guardrails_refuse_is_published_and_counted_in_dry_run_too() {
        let public = POLICY.replace(
            r#"}]}"#,
            r#"},{"Sid":"OpenToAll","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#,
        );
        let fake = FakeAws::family(&public, &["us-west-2"]);
        fake.with_key(&arn("us-west-2"), |k| k.policy = POLICY.to_owned());
        let err = notifying(&fake, &[("BASELINE_SOURCE", "primary")])
            .handle(sample("put-key-policy-primary.json"))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "NonRetryable.KeyFailure");
        assert_eq!(fake.count("PutKeyPolicy"), 0);
        let notes = fake.notified.lock().unwrap();
        assert_eq!(notes.len(), 1, "{notes:#?}");
        assert_eq!(
            notes[0].news.detail_type(),
            "Replica Key Policy Write Refused"
        );
        assert_eq!(notes[0].detail["guardrail"][0]["sid"], "OpenToAll");
        assert_eq!(notes[0].detail["guardrail"][0]["severity"], "public");
        let published = fake.published.lock().unwrap();
        assert!(published.iter().flat_map(|(_, d)| d.iter()).any(|d| {
            d.metric.name() == "GuardrailRefused"
                && d.severity.map(|s| s.as_str()) == Some("public")
                && d.value == 1.0
        }));
    }

    #[tokio::test]
    async fn every_completed_sweep_beats_the_heartbeat_with_the_keys_it_covered_and_the_mode() {
        let datum = |fake: &FakeAws, name: &str| -> Vec<f64> {
            let published = fake.published.lock().unwrap();
            published
                .iter()
                .flat_map(|(_, data)| data.iter())
                .filter(|d| d.metric.name() == name)
                .map(|d| d.value)
                .collect()
        };
        // A scheduled sweep, inline: one beat, two replicas covered, dry-run.
        let fake = drifted();
        app(&fake, &[("SWEEP_REGIONS", "us-west-2,eu-west-1")])
            .handle(sample("scheduled-sweep.json"))
            .await
            .unwrap();
        assert_eq!(datum(&fake, "SweepCompleted"), [1.0]);
        assert_eq!(datum(&fake, "SweepKeysCovered"), [2.0]);
        assert_eq!(datum(&fake, "EnforceMode"), [0.0]);
        assert_eq!(datum(&fake, "KeysExcluded"), [0.0]);
        // Planned work items: one beat per item that ran through, in enforce mode; an item
        // whose listing failed does not beat.
        let fake = drifted();
        let app = App::new(
            config(HUB),
            PortSet {
                queue: Some(&fake),
                ..fakes(&fake)
            },
        );
        fake.fail("ListKeys", &[ErrorKind::Throttled]);
        app.handle(sample("sqs-sweep-work-items.json"))
            .await
            .unwrap();
        assert_eq!(
            datum(&fake, "SweepCompleted"),
            [1.0],
            "two items, one listed"
        );
        assert_eq!(datum(&fake, "EnforceMode"), [1.0]);
    }

    #[tokio::test]
    async fn a_member_event_from_an_account_outside_the_list_is_a_counted_no_op() {
        let fake = drifted();
        let vars: Vec<(&str, &str)> = HUB
            .iter()
            .copied()
            .map(|(k, v)| {
                if k == "MEMBER_ACCOUNTS" {
                    (k, "111122223333")
                } else {
                    (k, v)
                }
            })
            .collect();
        let app = app(&fake, &vars);
        let response = app
            .handle(sample("put-key-policy-member-account.json"))
            .await
            .unwrap();
        assert_eq!(response["outcomes"][0]["action"], "skipped", "{response:#}");
        assert_eq!(response["outcomes"][0]["account"], "444455556666");
        assert!(
            response["outcomes"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("MEMBER_ACCOUNTS")
        );
        assert_eq!(
            fake.operations(),
            ["PutMetricData"],
            "no KMS call, no AssumeRole"
        );
        let published = fake.published.lock().unwrap();
        assert!(
            published[0]
                .1
                .iter()
                .any(|d| d.metric.name() == "AccountNotAllowed" && d.value == 1.0)
        );
    }

    #[tokio::test]
    async fn a_metrics_failure_is_reported_but_the_fix_stands() {
        let fake = drifted();
        fake.fail("PutMetricData", &[ErrorKind::AccessDenied]);
        let app = app(&fake, &[("REMEDIATION_MODE", "enforce")]);
        let response = app
            .handle(sample("put-key-policy-replica-id.json"))
            .await
            .unwrap();
        assert_eq!(response["outcomes"][0]["action"], "remediated");
        assert_eq!(response["metrics"]["published"], 0);
        assert!(
            response["metrics"]["error"]
                .as_str()
                .unwrap()
                .contains("PutMetricData")
        );
        let now = fake.policy(&arn("us-west-2"));
        assert!(krg_policy::equivalent(&now, POLICY).unwrap(), "{now}");
    }

    #[tokio::test]
    async fn every_drift_is_published_and_a_publishing_failure_never_blocks_the_fix() {
        let fake = drifted();
        let notifying = |fake| notifying(fake, &[("REMEDIATION_MODE", "enforce")]);
        let response = notifying(&fake)
            .handle(sample("put-key-policy-replica-id.json"))
            .await
            .unwrap();
        // The drift, and the write's own news: it gave the account root kms:* back, which
        // is key administration.
        assert_eq!(
            response["notifications"],
            json!({"published": 2}),
            "{response:#}"
        );
        {
            let notes = fake.notified.lock().unwrap();
            assert_eq!(notes.len(), 2);
            assert_eq!(notes[0].news.detail_type(), "Replica Key Policy Remediated");
            assert_eq!(
                notes[1].news.detail_type(),
                "Replica Key Policy Write Grants Access"
            );
            assert_eq!(notes[1].detail["write_exposure"]["severity"], "admin");
            assert_eq!(notes[0].key_arn, arn("us-west-2"));
            assert_eq!(
                notes[0].detail, response["outcomes"][0],
                "the detail is the outcome"
            );
            assert_eq!(notes[0].detail["exposure"]["severity"], "narrowing");
            assert_eq!(
                notes[0].detail["actor"]["arn"],
                "arn:aws:sts::111122223333:assumed-role/Admin/alice"
            );
        }
        // In sync now: nothing to tell.
        let again = notifying(&fake)
            .handle(sample("put-key-policy-replica-id.json"))
            .await
            .unwrap();
        assert_eq!(again["outcomes"][0]["action"], "in-sync");
        assert!(again.get("notifications").is_none(), "{again:#}");
        assert_eq!(fake.count("PutEvents"), 1);

        // EventBridge refuses: reported, and the fix stands.
        let fake = drifted();
        fake.fail("PutEvents", &[ErrorKind::AccessDenied]);
        let response = notifying(&fake)
            .handle(sample("put-key-policy-replica-id.json"))
            .await
            .unwrap();
        assert_eq!(response["outcomes"][0]["action"], "remediated");
        assert_eq!(response["notifications"]["published"], 0);
        assert!(
            response["notifications"]["error"]
                .as_str()
                .unwrap()
                .contains("PutEvents"),
            "{response:#}"
        );
        let now = fake.policy(&arn("us-west-2"));
        assert!(krg_policy::equivalent(&now, POLICY).unwrap(), "{now}");
    }

    #[tokio::test]
    async fn a_dry_run_drift_is_published_as_detected() {
        let fake = drifted();
        let response = notifying(&fake, &[])
            .handle(sample("put-key-policy-replica-id.json"))
            .await
            .unwrap();
        assert_eq!(response["outcomes"][0]["action"], "drift-detected");
        let notes = fake.notified.lock().unwrap();
        assert_eq!(notes.len(), 1, "{response:#}");
        assert_eq!(
            notes[0].news.detail_type(),
            "Replica Key Policy Drift Detected"
        );
    }

    #[tokio::test]
    async fn no_op_events_answer_with_no_outcomes_and_no_metrics() {
        let fake = drifted();
        let app = app(
            &fake,
            &[
                ("REMEDIATION_MODE", "enforce"),
                (
                    "REMEDIATOR_ROLE_ARN",
                    "arn:aws:iam::111122223333:role/kms-replica-guard-remediator",
                ),
            ],
        );
        for name in [
            "put-key-policy-error.json",
            "unrelated-service.json",
            "tag-resource-other-tag.json",
        ] {
            let response = app.handle(sample(name)).await.unwrap();
            assert_eq!(response, serde_json::json!({"outcomes": []}), "{name}");
        }
        assert_eq!(fake.calls.lock().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn the_guards_own_write_is_a_no_op_only_when_it_wrote_what_the_guard_writes() {
        let event = sample("put-key-policy-by-remediator.json");
        let written = event["detail"]["requestParameters"]["policy"]
            .as_str()
            .unwrap()
            .to_owned();
        let role = "arn:aws:iam::111122223333:role/kms-replica-guard-remediator";
        // The baseline is what the record wrote: the guard's own fix, decided without a call.
        let fake = drifted();
        let own = app(
            &fake,
            &[
                ("REMEDIATION_MODE", "enforce"),
                ("REMEDIATOR_ROLE_ARN", role),
                ("BASELINE_SOURCE", &written),
            ],
        );
        let response = own.handle(event.clone()).await.unwrap();
        assert_eq!(response, json!({"outcomes": []}));
        assert_eq!(fake.calls.lock().unwrap().len(), 0);
        // Any other policy under the same role is someone using it: reconciled.
        let fake = drifted();
        let other = app(
            &fake,
            &[
                ("REMEDIATION_MODE", "enforce"),
                ("REMEDIATOR_ROLE_ARN", role),
                (
                    "BASELINE_SOURCE",
                    &written.replace("kms:Get*", "kms:GetKeyPolicy"),
                ),
            ],
        );
        let response = other.handle(event).await.unwrap();
        assert_eq!(
            response["outcomes"][0]["action"], "remediated",
            "{response:#}"
        );
    }

    #[tokio::test]
    async fn a_failed_key_fails_the_invocation_with_a_retryable_type() {
        let fake = drifted();
        fake.fail("PutKeyPolicy", &[ErrorKind::Throttled]);
        let app = app(&fake, &[("REMEDIATION_MODE", "enforce")]);
        let err = app
            .handle(sample("put-key-policy-replica-id.json"))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Retryable.KeyFailure");
        let d: Diagnostic = err.into();
        assert!(
            d.error_message.contains("PutKeyPolicy"),
            "{}",
            d.error_message
        );
        assert_eq!(
            fake.count("PutMetricData"),
            1,
            "AutoFixFailed is published before failing"
        );
    }

    #[tokio::test]
    async fn a_bad_configuration_fails_every_invocation_without_touching_aws() {
        let fake = drifted();
        let app = app(&fake, &[("REMEDIATION_MODE", "yes")]);
        for _ in 0..2 {
            let err = app
                .handle(sample("put-key-policy-replica-id.json"))
                .await
                .unwrap_err();
            assert_eq!(err.error_type(), "NonRetryable.ConfigurationError");
            assert!(err.to_string().contains("REMEDIATION_MODE"));
        }
        assert_eq!(fake.calls.lock().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn a_malformed_event_is_a_non_retryable_error() {
        let fake = drifted();
        let app = app(&fake, &[]);
        let err = app
            .handle(serde_json::json!({"detail-type": 5}))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "NonRetryable.MalformedEvent");
        assert!(err.to_string().contains("detail-type"), "{err}");
    }

    #[test]
    fn a_sweep_with_many_failures_keeps_its_error_small_enough_for_the_on_failure_record() {
        use krg_engine::outcome::{Failure, Outcome, Report};
        let mut report = Report::default();
        for i in 0..400 {
            let key = format!("arn:aws:kms:us-west-2:111122223333:key/mrk-{i:032x}")
                .parse()
                .unwrap();
            let failure = if i == 7 {
                Failure::StaleAfterWrite { attempts: 3 }
            } else {
                Failure::VerificationFailed {
                    rest: "x".repeat(2_000),
                }
            };
            report
                .outcomes
                .push(Outcome::failed(&key, failure).with_diff("d".repeat(3_000)));
        }
        let err = failure(&report, Retry::Retryable);
        assert_eq!(err.error_type(), "Retryable.KeyFailure");
        let InvocationError::Keys {
            failed, summary, ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(*failed, 400, "the count covers every failure");
        assert!(summary.len() <= MAX_SUMMARY_BYTES, "{}", summary.len());
        let v: Value = serde_json::from_str(summary).expect("still JSON");
        let kept = v["failed"].as_array().unwrap().len();
        assert!(kept > 10, "{kept}");
        assert_eq!(v["omitted"].as_u64().unwrap() as usize + kept, 400);
        assert!(v["note"].as_str().unwrap().contains("log"));
        assert!(!summary.contains("ddd"), "diffs are left out");

        // A small failure keeps its diff.
        report.outcomes.truncate(1);
        report.outcomes[0].diff = Some("statement App: missing".into());
        let InvocationError::Keys { summary, .. } = failure(&report, Retry::NonRetryable) else {
            unreachable!()
        };
        assert!(summary.contains("statement App: missing"), "{summary}");
    }
}
