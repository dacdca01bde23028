//! The capabilities the reconcile engine needs from AWS, one small trait each. The AWS
//! adapters of the `krg-aws` crate implement them; [`crate::ledger`] keeps write history and
//! claims in memory; tests use the fakes of `crate::fake`.

use std::future::Future;
use std::time::SystemTime;

use crate::decide::KeyFacts;
use crate::error::{Api, CallError, ErrorKind};
use crate::findings::{Evaluation, Finding};
use crate::key::{AccountId, KeyArn, Place};
use crate::outcome::{MetricDatum, Notification, rfc3339};

/// A key's tags: tag key to value.
pub type Tags = std::collections::BTreeMap<String, String>;

/// Reads what a key is (DescribeKey, tags) and which keys exist (ListKeys).
pub trait KeyDirectory: Send + Sync {
    /// Live facts about one key.
    fn describe_key(
        &self,
        key: &KeyArn,
    ) -> impl Future<Output = Result<KeyFacts, CallError>> + Send;
    /// The tags of one key (tag key to value).
    fn tags(&self, key: &KeyArn) -> impl Future<Output = Result<Tags, CallError>> + Send;
    /// Every multi-Region key in a Region of an account (all pages).
    fn list_multi_region_keys(
        &self,
        place: &Place,
    ) -> impl Future<Output = Result<Vec<KeyArn>, CallError>> + Send;
}

/// Lists the organisation's accounts (Organizations ListAccounts), for
/// `MEMBER_ACCOUNTS=organization`.
pub trait AccountDirectory: Send + Sync {
    /// The organisation's ACTIVE accounts, cached by the adapter.
    fn organization_accounts(
        &self,
    ) -> impl Future<Output = Result<Vec<AccountId>, CallError>> + Send;
}

/// No organisation to list: every engine without one (the accounts are listed in
/// `MEMBER_ACCOUNTS`, or there are no members). Asking it is an `Invalid` error.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOrganization;

impl AccountDirectory for NoOrganization {
    async fn organization_accounts(&self) -> Result<Vec<AccountId>, CallError> {
        Err(CallError::new(
            Api::ListAccounts,
            "the organisation",
            ErrorKind::Invalid,
            "the organisation's accounts are only read with MEMBER_ROLE_NAME set and MEMBER_ACCOUNTS=organization",
        ))
    }
}

/// The organisation when there is one, else [`NoOrganization`].
impl<T: AccountDirectory> AccountDirectory for Option<T> {
    async fn organization_accounts(&self) -> Result<Vec<AccountId>, CallError> {
        match self {
            Some(directory) => directory.organization_accounts().await,
            None => NoOrganization.organization_accounts().await,
        }
    }
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

/// The claim on the one write that fixes one drift. Concurrent invocations that find the
/// same drift (the same policy to replace, the same policy to write) name the same claim;
/// only the first to take it writes, the others wait for its write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteClaim {
    /// The key to be written.
    pub key: KeyArn,
    /// The drift's name: a digest of the policy replaced and the policy written.
    pub drift: String,
    /// When it was claimed.
    pub at: SystemTime,
    /// The claiming event's id, when there is one.
    pub event_id: Option<String>,
    /// The claiming event's name (`PutKeyPolicy`, `sweep`, ...).
    pub event_name: String,
}

impl WriteClaim {
    /// Who holds it, in words: `event NAME ID at TIME`.
    pub fn holder(&self) -> String {
        format!(
            "event {} {} at {}",
            self.event_name,
            self.event_id.as_deref().unwrap_or("-"),
            rfc3339(self.at)
        )
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The caller holds the claim and writes; it releases the claim when done.
    Won,
    /// Another invocation holds it: this one.
    Held(Box<WriteClaim>),
}

/// Keeps the policies the engine overwrites, the record of its writes, and the claims that
/// keep concurrent invocations from writing the same fix twice.
pub trait BackupStore: Send + Sync {
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
    /// Takes `claim` unless another invocation holds a claim of the same name.
    fn claim(&self, claim: &WriteClaim) -> impl Future<Output = Result<Claimed, CallError>> + Send;
    /// Gives up a claim (the caller's own when done, or one found abandoned).
    fn release(&self, claim: &WriteClaim) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// What the configuration reads once at start-up: a baseline kept outside the function, and
/// the function's own account when it has member accounts and no `REMEDIATOR_ROLE_ARN`.
pub trait RemoteText {
    /// The account of the function's own credentials (STS GetCallerIdentity).
    fn caller_account(&self) -> impl Future<Output = Result<AccountId, CallError>> + Send;
    /// The value of an SSM parameter (decrypted).
    fn ssm_parameter(&self, name: &str) -> impl Future<Output = Result<String, CallError>> + Send;
    /// The body of an S3 object.
    fn s3_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<String, CallError>> + Send;
    /// The parameters directly under an SSM path (`/a/b/`), as (full name, decrypted value),
    /// every page.
    fn ssm_parameters(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, CallError>> + Send;
    /// The `.json` objects directly under an S3 prefix, as (key, body), every page.
    fn s3_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, CallError>> + Send;
}

/// Publishes drift notifications (EventBridge events in the function).
pub trait Notifier: Send + Sync {
    /// Publishes every notification in as few calls as the service allows; how many were
    /// taken.
    fn notify(
        &self,
        notes: &[Notification],
    ) -> impl Future<Output = Result<usize, CallError>> + Send;
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

/// Some of the items a call was given were not delivered: how many, and the first error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// Items not delivered.
    pub count: usize,
    /// Why (the first failure), with the count in its message.
    pub error: CallError,
}

/// Imports findings into Security Hub, each in its key's own account and Region.
pub trait FindingsSink: Send + Sync {
    /// Imports every finding (at most 100 a call); how many Security Hub took. Every batch
    /// is tried; any finding not taken makes it an [`Undelivered`].
    fn import(
        &self,
        findings: &[Finding],
    ) -> impl Future<Output = Result<usize, Undelivered>> + Send;
}

/// Answers an AWS Config rule invocation (PutEvaluations with its result token).
pub trait EvaluationSink: Send + Sync {
    /// Puts every evaluation (at most 100 a call) in `account`'s Config, in `region`; how
    /// many Config took.
    fn put_evaluations(
        &self,
        account: &AccountId,
        region: &crate::key::Region,
        result_token: &str,
        evaluations: &[(Evaluation, SystemTime)],
    ) -> impl Future<Output = Result<usize, Undelivered>> + Send;
}

// Borrowed ports work too, so one adapter value can serve several roles.
impl<T: BackupStore> BackupStore for &T {
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
    async fn claim(&self, claim: &WriteClaim) -> Result<Claimed, CallError> {
        (**self).claim(claim).await
    }
    async fn release(&self, claim: &WriteClaim) -> Result<(), CallError> {
        (**self).release(claim).await
    }
}

impl<T: KeyDirectory> KeyDirectory for &T {
    async fn describe_key(&self, key: &KeyArn) -> Result<KeyFacts, CallError> {
        (**self).describe_key(key).await
    }
    async fn tags(&self, key: &KeyArn) -> Result<Tags, CallError> {
        (**self).tags(key).await
    }
    async fn list_multi_region_keys(&self, place: &Place) -> Result<Vec<KeyArn>, CallError> {
        (**self).list_multi_region_keys(place).await
    }
}

impl<T: AccountDirectory> AccountDirectory for &T {
    async fn organization_accounts(&self) -> Result<Vec<AccountId>, CallError> {
        (**self).organization_accounts().await
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

impl<T: Notifier> Notifier for &T {
    async fn notify(&self, notes: &[Notification]) -> Result<usize, CallError> {
        (**self).notify(notes).await
    }
}

/// The queue of planned sweep work: one item per (account, Region), consumed by the same
/// function ([`crate::trigger::work_item`] is the message body).
pub trait WorkQueue: Send + Sync {
    /// Sends every item (in as few calls as the service allows); returns how many were sent.
    /// Fails when any item could not be sent.
    fn send(&self, items: &[Place]) -> impl Future<Output = Result<usize, CallError>> + Send;
}

impl<T: WorkQueue> WorkQueue for &T {
    async fn send(&self, items: &[Place]) -> Result<usize, CallError> {
        (**self).send(items).await
    }
}

impl<T: FindingsSink> FindingsSink for &T {
    async fn import(&self, findings: &[Finding]) -> Result<usize, Undelivered> {
        (**self).import(findings).await
    }
}

impl<T: EvaluationSink> EvaluationSink for &T {
    async fn put_evaluations(
        &self,
        account: &AccountId,
        region: &crate::key::Region,
        result_token: &str,
        evaluations: &[(Evaluation, SystemTime)],
    ) -> Result<usize, Undelivered> {
        (**self)
            .put_evaluations(account, region, result_token, evaluations)
            .await
    }
}
