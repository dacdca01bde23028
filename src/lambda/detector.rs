//! The detector function (`src/bin/detector.rs`): the same engine, always in dry-run, for
//! what security teams read. It never writes a key policy, and its role in the stacks cannot.
//!
//! - **Security Hub findings** (`SECURITY_HUB=on`): every replica the detector evaluates
//!   becomes a finding in the key's own account and Region, `FAILED` while drifted, `PASSED`
//!   once in sync. It evaluates the key named by each of the remediator's drift
//!   notifications (source `kms-replica-guard`: a heal turns the finding `PASSED` within
//!   seconds), every key on a schedule (a dry-run sweep that refreshes the whole fleet), and
//!   any CloudTrail event or `{"sweep": …}` payload the remediator would take. A notification
//!   is never believed: the key it names is read again, so a forged one can only make the
//!   detector tell the truth about a key it guards.
//! - **AWS Config rule invocations** (`krg_engine::config_rule`): the keys named are evaluated and the
//!   answers go back with `PutEvaluations` and the invocation's result token.
//!
//! It publishes only its own failure counts (`FindingsNotImported`, `EvaluationsNotPut`):
//! the remediator's metrics (drifts, sweeps, the mode) stay the remediator's, so an alarm on
//! them never hears the detector's dry-run. A finding that could not be imported for a reason
//! that may pass fails the invocation retryably (Lambda retries it; the on-failure
//! destination keeps it); one that cannot pass (Security Hub not enabled in that account and
//! Region, access denied) is logged and counted, and the invocation succeeds.
//!
//! Why a second function: the Security Hub and Config clients made the remediator's init
//! over its budget (BENCHMARKS.md); the remediator, the function every drift waits on, links
//! neither.

use serde_json::Value;

use super::response::{EvaluationSummary, Imported, Response};
use super::{InvocationError, failure};
use crate::config::{Config, ConfigError};
use krg_engine::Mode;
use krg_engine::Reconciler;
use krg_engine::config_rule;
use krg_engine::error::CallError;
use krg_engine::findings::Evaluation;
use krg_engine::ledger::MemoryLedger;
use krg_engine::outcome::{Metric, MetricDatum, Report};
use krg_engine::ports::{
    AccountDirectory, EvaluationSink, FindingsSink, KeyDirectory, MetricsSink, PolicyStore,
    Undelivered,
};
use krg_engine::trigger::{self, EventError, EventInfo, Scope, Target, Trigger};

/// The detector's ports, as one bundle of types (the AWS adapters in Lambda, the fake in
/// the unit tests). Policies are only read: the engine runs in dry-run.
pub trait DetectorPorts {
    /// What keys exist and what they are (KMS).
    type Keys: KeyDirectory;
    /// Key policies (KMS), read.
    type Policies: PolicyStore;
    /// The organisation's accounts (Organizations), for `MEMBER_ACCOUNTS=organization`.
    type Accounts: AccountDirectory;
    /// Where its failure counts go (CloudWatch).
    type Metrics: MetricsSink;
    /// Security Hub, in each key's account and Region.
    type Findings: FindingsSink;
    /// AWS Config, in the evaluated account.
    type Evaluations: EvaluationSink;
}

/// The engine of the detector: no backups, it never writes.
type Engine<X> = Reconciler<
    <X as DetectorPorts>::Keys,
    <X as DetectorPorts>::Policies,
    MemoryLedger,
    <X as DetectorPorts>::Accounts,
>;

/// The detector: configuration (or why it is invalid) and its ports, built once per
/// execution environment.
pub struct Detector<X: DetectorPorts> {
    /// The engine and the metrics namespace, or why the configuration is invalid.
    engine: Result<(Engine<X>, String), ConfigError>,
    metrics: X::Metrics,
    findings: Option<X::Findings>,
    evaluations: X::Evaluations,
}

impl<X: DetectorPorts> Detector<X> {
    /// A detector over these ports: `findings` when `SECURITY_HUB=on`, `evaluations` to
    /// answer Config. The configured mode is ignored: the detector runs in dry-run.
    pub fn new(
        config: Result<Config, ConfigError>,
        keys: X::Keys,
        policies: X::Policies,
        accounts: X::Accounts,
        metrics: X::Metrics,
        findings: Option<X::Findings>,
        evaluations: X::Evaluations,
    ) -> Self {
        if let Err(e) = &config {
            tracing::error!(error = %e, "invalid configuration; every invocation will fail until it is fixed");
        }
        let engine = config.map(|c| {
            let mut settings = (*c.settings).clone();
            settings.mode = Mode::DryRun;
            (
                Reconciler::new(keys, policies, std::sync::Arc::new(settings))
                    .with_accounts(accounts),
                c.metrics_namespace,
            )
        });
        Self {
            engine,
            metrics,
            findings,
            evaluations,
        }
    }

    /// Handles one invocation: an AWS Config rule invocation, one of the remediator's drift
    /// notifications, or anything the remediator takes as a trigger (evaluated in dry-run).
    /// The answer as Lambda returns it.
    pub async fn handle(&self, payload: Value) -> Result<Value, InvocationError> {
        self.respond(payload).await.map(Response::into_value)
    }

    /// The typed answer to one invocation.
    pub async fn respond(&self, payload: Value) -> Result<Response, InvocationError> {
        let (engine, namespace) = self.engine.as_ref().map_err(|e| e.clone())?;
        if config_rule::is_config_invocation(&payload) {
            let invocation = config_rule::parse(&payload).inspect_err(|e| {
                tracing::error!(error = %e, "AWS Config invocation rejected");
            })?;
            return Box::pin(self.evaluate(engine, namespace, invocation)).await;
        }
        let settings = engine.settings();
        let trigger = match trigger::parse_notification(&payload) {
            Some(parsed) => parsed,
            None => trigger::parse_in(&payload, &settings.tenancy, settings.remediator.as_ref()),
        }
        .inspect_err(|e| tracing::error!(error = %e, "event rejected"))?;
        let report = Box::pin(engine.run(&trigger)).await;
        let (findings, not_imported) = match &self.findings {
            Some(sink) => Box::pin(import_findings(sink, &report))
                .await
                .map_or((None, None), |(f, missed)| (Some(f), missed)),
            None => (None, None),
        };
        if let Some(missed) = &not_imported {
            self.count(namespace, Metric::FindingsNotImported, missed.count)
                .await;
        }
        match (report.failure_class(), not_imported) {
            (Some(retry), _) => Err(failure(&report, retry)),
            (None, Some(missed)) if missed.error.kind.is_retryable() => {
                Err(InvocationError::Findings(missed.error))
            }
            _ => Ok(Response::Ran {
                report: Box::new(report),
                metrics: None,
                notifications: None,
                findings,
            }),
        }
    }

    /// Publishes one failure count of the detector's own; a failure to publish is logged.
    async fn count(&self, namespace: &str, metric: Metric, value: usize) {
        let datum = MetricDatum {
            metric,
            region: None,
            severity: None,
            value: value as f64,
        };
        if let Err(e) = self.metrics.publish(namespace, &[datum]).await {
            tracing::error!(error = %e, "publishing metrics failed");
        }
    }

    /// Answers an AWS Config rule invocation: the key (or, scheduled, every key of the
    /// account and Region) is evaluated, and PutEvaluations carries the answers back with
    /// the result token.
    async fn evaluate(
        &self,
        engine: &Engine<X>,
        namespace: &str,
        invocation: config_rule::Invocation,
    ) -> Result<Response, InvocationError> {
        // Config in an account the function may not work in gets no answer, and no call is
        // made there (no AssumeRole): the same admission as every event and sweep.
        let (_, refused) = engine
            .places(
                Some(std::slice::from_ref(&invocation.account)),
                Some(std::slice::from_ref(&invocation.region)),
            )
            .await
            .map_err(InvocationError::Evaluate)?;
        if let Some(r) = refused.first() {
            tracing::error!(account = %r.account, reason = %r.why, "AWS Config invocation from an account the function may not work in");
            return Err(InvocationError::Event(EventError::Malformed {
                field: "accountId".to_owned(),
                problem: format!("{}: {}", r.account, r.why),
            }));
        }
        let evaluations = Box::pin(evaluations_of(engine, &invocation)).await?;
        let answers: Vec<(Evaluation, std::time::SystemTime)> = evaluations
            .iter()
            .map(|e| (e.clone(), invocation.ordering))
            .collect();
        let summary: Vec<EvaluationSummary> = evaluations
            .iter()
            .map(|e| EvaluationSummary {
                resource_id: e.resource_id.clone(),
                compliance: e.compliance.as_str(),
                annotation: e.annotation.clone(),
            })
            .collect();
        match Box::pin(self.evaluations.put_evaluations(
            &invocation.account,
            &invocation.region,
            &invocation.result_token,
            &answers,
        ))
        .await
        {
            Ok(put) => {
                tracing::info!(rule = %invocation.rule, account = %invocation.account, region = %invocation.region, put, "AWS Config rule answered");
                Ok(Response::Evaluated {
                    evaluations: summary,
                    put,
                })
            }
            Err(Undelivered { count, error }) => {
                tracing::error!(rule = %invocation.rule, error = %error, not_put = count, "PutEvaluations failed");
                self.count(namespace, Metric::EvaluationsNotPut, count)
                    .await;
                Err(InvocationError::Evaluate(error))
            }
        }
    }
}

/// The evaluations of a Config invocation.
async fn evaluations_of<K: KeyDirectory, P: PolicyStore, A: AccountDirectory>(
    engine: &Reconciler<K, P, MemoryLedger, A>,
    invocation: &config_rule::Invocation,
) -> Result<Vec<Evaluation>, InvocationError> {
    match &invocation.subject {
        config_rule::Subject::Key { key, gone: true } => Ok(vec![Evaluation::not_applicable(
            key.key_id(),
            "deleted, or out of the rule's scope",
        )]),
        config_rule::Subject::Key { key, gone: false } => {
            let trigger = Trigger::Keys {
                event: EventInfo::named("AWS Config rule"),
                targets: vec![Target {
                    key: key.clone(),
                    scope: Scope::Key,
                }],
            };
            let report = Box::pin(engine.run(&trigger)).await;
            if let Some(e) = report.errors.first() {
                return Err(InvocationError::Evaluate(e.0.clone()));
            }
            let Some(outcome) = report.outcomes.iter().find(|o| &o.key_arn == key) else {
                // A mirrored primary reaches its replicas: the key itself is not one the
                // guard manages.
                return Ok(vec![Evaluation::not_applicable(
                    key.key_id(),
                    "primary key; its replicas are evaluated on their own",
                )]);
            };
            match Evaluation::of(outcome) {
                Some(e) => Ok(vec![e]),
                None => Err(InvocationError::Evaluate(failed_call(outcome))),
            }
        }
        config_rule::Subject::Scheduled => {
            let trigger = Trigger::Sweep {
                accounts: Some(vec![invocation.account.clone()]),
                regions: Some(vec![invocation.region.clone()]),
            };
            let report = Box::pin(engine.run(&trigger)).await;
            if let Some(e) = report.errors.first() {
                return Err(InvocationError::Evaluate(e.0.clone()));
            }
            let mut out = Vec::new();
            for o in report.outcomes.iter().chain(&report.in_sync) {
                match Evaluation::of(o) {
                    Some(e) => out.push(e),
                    None => return Err(InvocationError::Evaluate(failed_call(o))),
                }
            }
            Ok(out)
        }
    }
}

/// The call error of an outcome that could not be evaluated.
fn failed_call(outcome: &krg_engine::outcome::Outcome) -> CallError {
    match &outcome.status {
        krg_engine::outcome::Status::Failed(krg_engine::outcome::Failure::Call(e)) => e.clone(),
        // Not a call that failed: the key could not be judged, so no evaluation is put.
        _ => CallError::new(
            krg_engine::error::Api::PutEvaluations,
            &outcome.key_arn,
            krg_engine::error::ErrorKind::Other,
            outcome.reason().unwrap_or_default(),
        ),
    }
}

/// Imports the report's findings through `sink`: what the response says of them, and what
/// was not imported. `None` when there is nothing to import. A failure is logged and
/// returned, never raised: the caller decides what it costs.
pub async fn import_findings<F: FindingsSink>(
    sink: &F,
    report: &Report,
) -> Option<(Imported, Option<Undelivered>)> {
    let findings = report.findings(std::time::SystemTime::now());
    if findings.is_empty() {
        return None;
    }
    Some(match Box::pin(sink.import(&findings)).await {
        Ok(imported) => (
            Imported {
                imported,
                not_imported: None,
                error: None,
            },
            None,
        ),
        Err(missed) => {
            tracing::error!(error = %missed.error, not_imported = missed.count, "importing Security Hub findings failed");
            (
                Imported {
                    imported: findings.len() - missed.count,
                    not_imported: Some(missed.count),
                    error: Some(missed.error.to_string()),
                },
                Some(missed),
            )
        }
    })
}
