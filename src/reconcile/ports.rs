//! The capabilities the reconcile engine needs from AWS, one small trait each. The AWS
//! adapters in [`crate::aws`] implement them; tests use in-memory fakes.

use std::fmt;
use std::future::Future;

use crate::core::decide::KeyFacts;
use crate::core::key::{KeyArn, Region};
use crate::core::outcome::MetricDatum;

/// Reads what a key is (DescribeKey, tags) and which keys exist (ListKeys).
pub trait KeyDirectory: Send + Sync {
    /// Live facts about one key.
    fn describe_key(
        &self,
        key: &KeyArn,
    ) -> impl Future<Output = Result<KeyFacts, CallError>> + Send;
    /// Tag keys of one key.
    fn tag_keys(&self, key: &KeyArn)
    -> impl Future<Output = Result<Vec<String>, CallError>> + Send;
    /// Every key in a Region (all pages).
    fn list_keys(
        &self,
        region: &Region,
    ) -> impl Future<Output = Result<Vec<KeyArn>, CallError>> + Send;
}

/// Reads and writes the `default` key policy.
pub trait PolicyStore: Send + Sync {
    /// The key's current policy document.
    fn get_policy(&self, key: &KeyArn) -> impl Future<Output = Result<String, CallError>> + Send;
    /// Replaces the key's policy. Never bypasses the lockout safety check.
    fn put_policy(
        &self,
        key: &KeyArn,
        policy: &str,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// Publishes metric data.
pub trait MetricsSink: Send + Sync {
    /// Publishes all data in as few calls as the service allows.
    fn publish(
        &self,
        namespace: &str,
        data: &[MetricDatum],
    ) -> impl Future<Output = Result<(), CallError>> + Send;
}

// Borrowed ports work too, so one adapter value can serve several roles.
impl<T: KeyDirectory> KeyDirectory for &T {
    async fn describe_key(&self, key: &KeyArn) -> Result<KeyFacts, CallError> {
        (**self).describe_key(key).await
    }
    async fn tag_keys(&self, key: &KeyArn) -> Result<Vec<String>, CallError> {
        (**self).tag_keys(key).await
    }
    async fn list_keys(&self, region: &Region) -> Result<Vec<KeyArn>, CallError> {
        (**self).list_keys(region).await
    }
}

impl<T: PolicyStore> PolicyStore for &T {
    async fn get_policy(&self, key: &KeyArn) -> Result<String, CallError> {
        (**self).get_policy(key).await
    }
    async fn put_policy(&self, key: &KeyArn, policy: &str) -> Result<(), CallError> {
        (**self).put_policy(key, policy).await
    }
}

impl<T: MetricsSink> MetricsSink for &T {
    async fn publish(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), CallError> {
        (**self).publish(namespace, data).await
    }
}

/// What kind of failure an AWS call had; decides retries and the operator's next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The key (or other resource) does not exist, or not yet.
    NotFound,
    /// Throttled past the SDK's retries.
    Throttled,
    /// The caller is not allowed (IAM or key policy).
    AccessDenied,
    /// The key is in a state that forbids the call.
    InvalidState,
    /// The service rejected the request as invalid (e.g. a malformed policy).
    Invalid,
    /// Timeouts, connection failures and 5xx: worth retrying.
    Transient,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether retrying later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled
                | ErrorKind::Transient
                | ErrorKind::NotFound
                | ErrorKind::InvalidState
        )
    }
}

/// A failed AWS call, with the context an operator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The API operation (`GetKeyPolicy`, ...).
    pub operation: &'static str,
    /// What it was called on (a key ARN, a Region, a namespace).
    pub resource: String,
    /// The failure class.
    pub kind: ErrorKind,
    /// The service's code and message.
    pub message: String,
}

impl CallError {
    /// A call error.
    pub fn new(
        operation: &'static str,
        resource: impl fmt::Display,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            resource: resource.to_string(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} failed: {}",
            self.operation, self.resource, self.message
        )?;
        match self.kind {
            ErrorKind::AccessDenied => {
                f.write_str(" (grant the function's role this action in IAM and in the key policy)")
            }
            ErrorKind::Throttled => {
                f.write_str(" (throttled after retries; Lambda will retry the event)")
            }
            _ => Ok(()),
        }
    }
}

impl std::error::Error for CallError {}
