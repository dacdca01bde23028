//! The capabilities the reconcile engine needs from AWS, one small trait each. The AWS
//! adapters in [`crate::aws`] implement them; tests use in-memory fakes.

use std::fmt;
use std::future::Future;
use std::time::SystemTime;

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
    fn list_multi_region_keys(
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

/// The policy a write is about to replace, with why and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The key whose policy is replaced.
    pub key: KeyArn,
    /// The policy document before the write, as KMS returned it.
    pub policy: String,
    /// Why it is replaced.
    pub reason: String,
    /// The triggering event's id, when there is one.
    pub event_id: Option<String>,
    /// The triggering event's name (`PutKeyPolicy`, `sweep`, ...).
    pub event_name: String,
    /// When the backup was taken.
    pub taken_at: SystemTime,
}

/// A PutKeyPolicy that KMS accepted: the flap guard's history, and the memory that keeps a
/// verification failure from being written again for the same baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// The key written.
    pub key: KeyArn,
    /// When the write was accepted.
    pub at: SystemTime,
    /// The triggering event's id, when there is one.
    pub event_id: Option<String>,
    /// The triggering event's name (`PutKeyPolicy`, `sweep`, ...).
    pub event_name: String,
    /// Where the previous policy was kept.
    pub backup: String,
    /// The policy document written.
    pub written: String,
    /// What the re-read returned when it was not equivalent to `written`; `None` when the
    /// write was verified (or its re-read failed).
    pub mismatch: Option<String>,
}

/// The writes of one key within the flap window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteHistory {
    /// PutKeyPolicy calls KMS accepted (failed calls are not writes).
    pub writes: usize,
    /// The latest of them, when its verification failed.
    pub last_mismatch: Option<WriteRecord>,
}

impl WriteHistory {
    /// The history of `records` (of one key, oldest first) since `since`.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a WriteRecord>, since: SystemTime) -> Self {
        let recent: Vec<&WriteRecord> = records.into_iter().filter(|w| w.at >= since).collect();
        Self {
            writes: recent.len(),
            last_mismatch: recent
                .last()
                .filter(|w| w.mismatch.is_some())
                .map(|w| (*w).clone()),
        }
    }
}

/// Keeps the policies the engine overwrites, and the record of its writes.
pub trait BackupStore: Send + Sync {
    /// Whether backups are kept durably (and so can serve as write history).
    fn is_persistent(&self) -> bool;
    /// Saves a backup; the write must not happen when this fails. Returns where it is.
    fn save(&self, backup: &Backup) -> impl Future<Output = Result<String, CallError>> + Send;
    /// Records a write KMS accepted, after its verification.
    fn record_write(
        &self,
        write: &WriteRecord,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
    /// The writes of this key since `since`.
    fn writes_since(
        &self,
        key: &KeyArn,
        since: SystemTime,
    ) -> impl Future<Output = Result<WriteHistory, CallError>> + Send;
}

/// No backup store: the previous policy is only in the log line before the write.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBackups;

impl BackupStore for NoBackups {
    fn is_persistent(&self) -> bool {
        false
    }
    async fn save(&self, _backup: &Backup) -> Result<String, CallError> {
        Ok("logged only (no BACKUP_BUCKET)".to_owned())
    }
    async fn record_write(&self, _write: &WriteRecord) -> Result<(), CallError> {
        Ok(())
    }
    async fn writes_since(
        &self,
        _key: &KeyArn,
        _since: SystemTime,
    ) -> Result<WriteHistory, CallError> {
        Ok(WriteHistory::default())
    }
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
impl<T: BackupStore> BackupStore for &T {
    fn is_persistent(&self) -> bool {
        (**self).is_persistent()
    }
    async fn save(&self, backup: &Backup) -> Result<String, CallError> {
        (**self).save(backup).await
    }
    async fn record_write(&self, write: &WriteRecord) -> Result<(), CallError> {
        (**self).record_write(write).await
    }
    async fn writes_since(
        &self,
        key: &KeyArn,
        since: SystemTime,
    ) -> Result<WriteHistory, CallError> {
        (**self).writes_since(key, since).await
    }
}

impl<T: KeyDirectory> KeyDirectory for &T {
    async fn describe_key(&self, key: &KeyArn) -> Result<KeyFacts, CallError> {
        (**self).describe_key(key).await
    }
    async fn tag_keys(&self, key: &KeyArn) -> Result<Vec<String>, CallError> {
        (**self).tag_keys(key).await
    }
    async fn list_multi_region_keys(&self, region: &Region) -> Result<Vec<KeyArn>, CallError> {
        (**self).list_multi_region_keys(region).await
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
