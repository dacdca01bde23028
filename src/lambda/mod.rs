//! The Lambda entry point: payload → trigger → reconcile → metrics → response. Any failed
//! key fails the invocation, so Lambda retries it and the on-failure destination keeps it.

use lambda_runtime::Diagnostic;
use serde_json::Value;

use crate::config::{Config, ConfigError};
use crate::core::outcome::{Report, Retry};
use crate::core::trigger::{self, EventError};
use crate::reconcile::Reconciler;
use crate::reconcile::ports::{KeyDirectory, MetricsSink, PolicyStore};

/// Why an invocation failed. The `error_type` Lambda records says whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The function's configuration is invalid; every invocation fails until it is fixed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The payload could not be understood.
    #[error(transparent)]
    Event(#[from] EventError),
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
            InvocationError::Config(_) => "NonRetryable.ConfigurationError",
            InvocationError::Event(_) => "NonRetryable.MalformedEvent",
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

/// The function: configuration (or why it is invalid) and its ports, built once per
/// execution environment and lent to every invocation.
pub struct App<K, P, M> {
    engine: Result<(Reconciler<K, P>, String), ConfigError>,
    metrics: M,
}

impl<K: KeyDirectory, P: PolicyStore, M: MetricsSink> App<K, P, M> {
    /// An app over these ports. A configuration error is kept and returned by every
    /// invocation, so it shows in the function's errors instead of a crash loop.
    pub fn new(config: Result<Config, ConfigError>, keys: K, policies: P, metrics: M) -> Self {
        if let Err(e) = &config {
            tracing::error!(error = %e, "invalid configuration; every invocation will fail until it is fixed");
        }
        let engine = config.map(|c| {
            (
                Reconciler::new(keys, policies, c.settings),
                c.metrics_namespace,
            )
        });
        Self { engine, metrics }
    }

    /// Handles one invocation payload.
    pub async fn handle(&self, payload: Value) -> Result<Value, InvocationError> {
        let (engine, namespace) = self.engine.as_ref().map_err(|e| e.clone())?;
        let trigger =
            trigger::parse(&payload, engine.settings().remediator.as_ref()).inspect_err(|e| {
                tracing::error!(error = %e, "event rejected");
            })?;
        // Boxed: the engine's nested futures are deep enough to hit the type-layout limit.
        let report = Box::pin(engine.run(&trigger)).await;
        let metrics = report.metrics();
        let mut response = serde_json::to_value(&report).expect("a report always serialises");
        if !metrics.is_empty() {
            // A metrics failure is reported but never undoes or blocks a fix.
            let published = match self.metrics.publish(namespace, &metrics).await {
                Ok(()) => serde_json::json!({"published": metrics.len()}),
                Err(e) => {
                    tracing::error!(error = %e, "publishing metrics failed; the outcomes stand");
                    serde_json::json!({"published": 0, "error": e.to_string()})
                }
            };
            response["metrics"] = published;
        }
        match report.failure_class() {
            None => Ok(response),
            Some(retry) => Err(failure(&report, retry)),
        }
    }
}

fn failure(report: &Report, retry: Retry) -> InvocationError {
    let failed: Vec<&_> = report.failures().collect();
    let summary = serde_json::json!({"failed": failed, "errors": report.errors});
    InvocationError::Keys {
        failed: failed.len() + report.errors.len(),
        retry,
        summary: summary.to_string(),
    }
}
