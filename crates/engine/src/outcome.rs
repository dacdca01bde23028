//! The one result type: what happened to each key, and why, as values. The Lambda response,
//! the CLI, the per-key log line and the metrics are all derived from it; reasons become
//! text only at that edge ([`fmt::Display`]), and metrics and exit codes match on variants.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::baseline::Rewrite;
use crate::catalogue::{OutOfScope, UnknownBaseline};
use crate::error::CallError;
use crate::key::{AccountId, KeyArn, Region};
use crate::tenancy::NotAllowed;
use crate::trigger::Actor;
pub use krg_policy::{Access, Breach, Exposure, Extra, Severity};

/// A time as records and reasons show it: RFC 3339 in UTC.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339()
}

/// What was done to a key (the wire's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Drift found and the baseline written and verified.
    Remediated,
    /// The live policy is equivalent to the baseline.
    InSync,
    /// Drift found; dry-run, so nothing was written.
    DriftDetected,
    /// Deliberately left alone (not a replica, excluded, pending deletion, ...).
    Skipped,
    /// Could not be brought to the baseline.
    Failed,
}

impl Action {
    /// The wire name (`in-sync`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Remediated => "remediated",
            Action::InSync => "in-sync",
            Action::DriftDetected => "drift-detected",
            Action::Skipped => "skipped",
            Action::Failed => "failed",
        }
    }
}

/// Whether retrying the invocation can help a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retry {
    /// Transient (throttling, a key still being created, a timeout): Lambda should retry.
    Retryable,
    /// Retrying the same input fails the same way (bad baseline, access denied, KMS rewrote
    /// the policy): an operator has to act.
    NonRetryable,
}

impl Retry {
    /// The class of a failed call.
    pub fn of(e: &CallError) -> Self {
        if e.kind.is_retryable() {
            Retry::Retryable
        } else {
            Retry::NonRetryable
        }
    }
}

/// Why a key was written and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remediation {
    /// What the write was for.
    pub cause: WriteCause,
    /// Where the previous policy was kept.
    pub backup: String,
}

/// What a write puts in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCause {
    /// The policy drifted from this baseline (its description).
    Drift {
        /// `file:...`, `the primary's policy`, ...
        baseline: String,
    },
    /// An operator restores this backup.
    Restore {
        /// The backup's location.
        from: String,
    },
}

impl fmt::Display for WriteCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteCause::Drift { baseline } => write!(f, "drift from {baseline}"),
            WriteCause::Restore { from } => write!(f, "restore of {from}"),
        }
    }
}

/// Why a key in sync says more than "in sync".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InSyncNote {
    /// Another invocation claimed and wrote this very fix; the re-read is equivalent.
    WrittenByConcurrentInvocation {
        /// Who held the claim (`event NAME ID at TIME`).
        holder: String,
    },
    /// A restore found the key already holding the backup's policy.
    AlreadyRestored {
        /// The backup's location.
        from: String,
    },
}

/// Why a drift was left in place without failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftNote {
    /// Dry-run: detect and report only.
    DryRun,
    /// A restore in dry-run would change the policy.
    RestoreWouldChange {
        /// The backup's location.
        from: String,
    },
}

/// Why a key was deliberately left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The event names a single-Region key.
    SingleRegionEvent,
    /// The event names a primary and the baseline does not mirror it.
    PrimaryNotMirrored,
    /// The event names a primary with no replicas.
    PrimaryWithoutReplicas,
    /// Scheduled for deletion.
    PendingDeletion,
    /// A primary waiting for its replicas to be deleted.
    PendingReplicaDeletion,
    /// Its custom key store is disconnected.
    Unavailable,
    /// Listed as a replica, but now the primary (the primary Region moved).
    NowPrimary,
    /// Listed as a replica, but DescribeKey shows a single-Region key.
    SingleRegion,
    /// The key carries the exclude tag, and its exemption has not ended.
    Excluded {
        /// The tag key.
        tag: String,
        /// When the exemption ends (RFC 3339), if the tag's value says (`until=...`).
        until: Option<String>,
    },
    /// The key's account is not one the function may work in (no AssumeRole, no call).
    AccountNotAllowed(NotAllowed),
    /// The flap guard: rewritten `writes` times within `window` already.
    Flapping {
        /// Writes within the window.
        writes: usize,
        /// The flap guard's window.
        window: Duration,
    },
}

/// Why a key could not be brought to the baseline. Each variant has its retry class
/// ([`Failure::retry`]): a failure cannot be made without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// An AWS call failed (DescribeKey, GetKeyPolicy, PutKeyPolicy, ListResourceTags, ...).
    Call(CallError),
    /// The write history could not be read, so nothing was written.
    HistoryUnreadable(CallError),
    /// The write claim could not be taken, so nothing was written.
    ClaimUnavailable(CallError),
    /// The previous policy could not be backed up, so nothing was written.
    BackupFailed(CallError),
    /// The policy was written, but the re-read to verify it failed.
    RereadFailed(CallError),
    /// Another invocation claimed this fix, and the policy became something else.
    ConcurrentWriteDiffers {
        /// Who held the claim.
        holder: String,
    },
    /// Another invocation claimed this fix, and its write had not landed after the re-reads.
    ConcurrentWriteNotLanded {
        /// Who held the claim.
        holder: String,
        /// Re-reads made.
        attempts: u32,
        /// When an abandoned claim is taken over.
        claim_ttl: Duration,
    },
    /// The policy was written, but every re-read still returned the previous one.
    StaleAfterWrite {
        /// Re-reads made.
        attempts: u32,
    },
    /// After the write, KMS holds something not equivalent to what was written.
    VerificationFailed {
        /// The statement diff of what KMS stores against what was written.
        rest: String,
    },
    /// An earlier write of this same baseline failed verification, and the key still
    /// holds what KMS stored then: not written again.
    VerificationFailedEarlier {
        /// When (RFC 3339).
        at: String,
        /// The event of that write.
        event_name: String,
        /// Its id, when it had one.
        event_id: Option<String>,
    },
    /// KMS refused the write, every time within the bounded retry, because a principal the
    /// document names does not exist or is not visible to it.
    PrincipalsRefused {
        /// Every AWS principal the document names (KMS does not say which one it refused).
        principals: Vec<String>,
        /// PutKeyPolicy attempts made.
        attempts: u32,
        /// KMS's answer.
        error: CallError,
    },
    /// KMS's own lockout safety check refused the write: the policy would lock the writer
    /// out. A configuration problem (the baseline), never retried.
    LockoutRefused {
        /// What the write was for (the baseline, or a restore).
        cause: WriteCause,
        /// KMS's answer.
        error: CallError,
    },
    /// The mirrored primary's policy names deleted principals (KMS shows them by their
    /// unique ids, and refuses any write of a document that carries one): nothing was
    /// written; the primary's policy must be fixed.
    PrimaryNamesDeletedPrincipals {
        /// The primary.
        primary: KeyArn,
        /// The unique ids it shows.
        ids: Vec<String>,
    },
    /// The desired policy for this key is invalid (grammar, size, lockout, a mirrored
    /// primary that cannot be rewritten): nothing was written.
    InvalidBaseline {
        /// What is wrong.
        problem: String,
    },
    /// The key's tag names a baseline the catalogue does not have: nothing was written.
    UnknownBaseline(UnknownBaseline),
    /// The key's tag names a baseline its account may not select: nothing was written.
    BaselineOutOfScope(OutOfScope),
    /// The policy the guard would write grants public access, access outside the trusted
    /// accounts and organisations, or access to an unpinned service principal: nothing was
    /// written (in dry-run, the same refusal shows what enforce would refuse).
    GuardrailRefused {
        /// What would have been written: the baseline, the primary's policy, a restore.
        source: String,
        /// Each grant that breaks a guardrail.
        breaches: Vec<Breach>,
    },
}

impl Failure {
    /// Whether retrying the invocation can help.
    pub fn retry(&self) -> Retry {
        match self {
            Failure::Call(e)
            | Failure::HistoryUnreadable(e)
            | Failure::ClaimUnavailable(e)
            | Failure::BackupFailed(e)
            | Failure::RereadFailed(e) => Retry::of(e),
            Failure::ConcurrentWriteDiffers { .. }
            | Failure::ConcurrentWriteNotLanded { .. }
            | Failure::StaleAfterWrite { .. } => Retry::Retryable,
            Failure::VerificationFailed { .. }
            | Failure::VerificationFailedEarlier { .. }
            | Failure::PrimaryNamesDeletedPrincipals { .. }
            | Failure::PrincipalsRefused { .. }
            | Failure::LockoutRefused { .. }
            | Failure::InvalidBaseline { .. }
            | Failure::UnknownBaseline(_)
            | Failure::BaselineOutOfScope(_)
            | Failure::GuardrailRefused { .. } => Retry::NonRetryable,
        }
    }
}

/// What happened to a key, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Written and verified.
    Remediated(Remediation),
    /// Equivalent to the baseline.
    InSync(Option<InSyncNote>),
    /// Drifted, left in place.
    DriftDetected(DriftNote),
    /// Left alone.
    Skipped(Skip),
    /// Not brought to the baseline.
    Failed(Failure),
}

impl Status {
    /// The wire's action.
    pub fn action(&self) -> Action {
        match self {
            Status::Remediated(_) => Action::Remediated,
            Status::InSync(_) => Action::InSync,
            Status::DriftDetected(_) => Action::DriftDetected,
            Status::Skipped(_) => Action::Skipped,
            Status::Failed(_) => Action::Failed,
        }
    }
}

/// The reason of a status, in words an operator can act on.
struct Reason<'a>(&'a Status);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Status::Remediated(r) => write!(
                f,
                "policy rewritten ({}) and verified; previous policy: {}",
                r.cause, r.backup
            ),
            Status::InSync(None) => Ok(()),
            Status::InSync(Some(InSyncNote::WrittenByConcurrentInvocation { holder })) => write!(
                f,
                "written by a concurrent invocation that claimed the same fix ({holder}); re-read and equivalent to the baseline, nothing written here"
            ),
            Status::InSync(Some(InSyncNote::AlreadyRestored { from })) => {
                write!(f, "already equivalent to {from}")
            }
            Status::DriftDetected(DriftNote::DryRun) => {
                f.write_str("policy differs from the baseline; dry-run, nothing written")
            }
            Status::DriftDetected(DriftNote::RestoreWouldChange { from }) => write!(
                f,
                "restoring {from} would change the policy; dry-run, nothing written (add --apply)"
            ),
            Status::Skipped(skip) => skip.fmt(f),
            Status::Failed(failure) => failure.fmt(f),
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::SingleRegionEvent => {
                f.write_str("single-Region key; only multi-Region replicas are managed")
            }
            Skip::PrimaryNotMirrored => f.write_str(
                "primary key; only replicas are managed (the baseline does not mirror the primary)",
            ),
            Skip::PrimaryWithoutReplicas => f.write_str("primary key without replicas"),
            Skip::PendingDeletion => f.write_str("key is pending deletion"),
            Skip::PendingReplicaDeletion => f.write_str("key is pending replica deletion"),
            Skip::Unavailable => {
                f.write_str("key is unavailable (its custom key store is disconnected)")
            }
            Skip::NowPrimary => {
                f.write_str("the key is now the primary (the primary Region moved)")
            }
            Skip::SingleRegion => f.write_str("single-Region key"),
            Skip::Excluded { tag, until: None } => {
                write!(f, "excluded by tag {tag}; drift left in place")
            }
            Skip::Excluded {
                tag,
                until: Some(until),
            } => write!(
                f,
                "excluded by tag {tag} until {until}; drift left in place, reconciled after that"
            ),
            Skip::AccountNotAllowed(why) => why.fmt(f),
            Skip::Flapping { writes, window } => write!(
                f,
                "flapping: already rewritten {writes} times in the last {} s; another writer keeps changing this policy, so it is left alone (see the runbook)",
                window.as_secs()
            ),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Call(e) => e.fmt(f),
            Failure::HistoryUnreadable(e) => write!(
                f,
                "the write history (backups) could not be read, so nothing was written: {e}"
            ),
            Failure::ClaimUnavailable(e) => write!(
                f,
                "the write could not be claimed, so nothing was written: {e}"
            ),
            Failure::BackupFailed(e) => write!(
                f,
                "the previous policy could not be backed up, so nothing was written: {e}"
            ),
            Failure::RereadFailed(e) => write!(
                f,
                "the policy was written but could not be re-read to verify it: {e}"
            ),
            Failure::ConcurrentWriteDiffers { holder } => write!(
                f,
                "a concurrent invocation claimed the same fix ({holder}), and the policy changed to something other than the baseline; nothing written here; Lambda will retry the event"
            ),
            Failure::ConcurrentWriteNotLanded {
                holder,
                attempts,
                claim_ttl,
            } => write!(
                f,
                "a concurrent invocation claimed the same fix ({holder}) and its write had not landed after {attempts} re-reads; nothing written here; Lambda will retry the event (a claim is taken over after {} s)",
                claim_ttl.as_secs()
            ),
            Failure::StaleAfterWrite { attempts } => write!(
                f,
                "the policy was written, but {attempts} re-reads still returned the previous policy (KMS is eventually consistent); Lambda will retry the event and find it in sync"
            ),
            Failure::VerificationFailed { rest } => write!(
                f,
                "verification failed: after PutKeyPolicy the key's policy is still not equivalent to what was written (KMS stored something else; compare the diff, fix the baseline; not rewritten again for this baseline):\n{rest}"
            ),
            Failure::VerificationFailedEarlier {
                at,
                event_name,
                event_id,
            } => write!(
                f,
                "verification failed earlier ({at}, event {event_name} {}): KMS stores this baseline as something it is not equivalent to, so it is not written again; fix the baseline to match what KMS stores (see the diff), and the next event or sweep writes it",
                event_id.as_deref().unwrap_or("-"),
            ),
            Failure::PrincipalsRefused {
                principals,
                attempts,
                error,
            } => write!(
                f,
                "KMS refused the policy {attempts} times because a principal it names does not exist or is not visible yet ({}); nothing was written: create the missing principal, or remove it from the baseline. The policy names: {}",
                error.message,
                principals.join(", ")
            ),
            Failure::LockoutRefused { cause, error } => write!(
                f,
                "KMS's lockout safety check refused the policy ({}): it would not let the function's role update the key policy again, so {cause} would lock the remediator out of this key; nothing was written: fix the baseline so it allows the role (REMEDIATOR_ROLE_ARN) kms:PutKeyPolicy",
                error.message
            ),
            Failure::PrimaryNamesDeletedPrincipals { primary, ids } => write!(
                f,
                "the primary's policy names deleted principal(s) {} (KMS shows a deleted principal by its unique id, and refuses any policy that carries one), so it cannot be mirrored; nothing was written: fix the primary {primary}'s policy (remove them, or name existing principals by ARN), and its PutKeyPolicy event brings the replicas along",
                ids.join(", ")
            ),
            Failure::InvalidBaseline { problem } => write!(
                f,
                "the baseline for this key is invalid, nothing was written: {problem}"
            ),
            Failure::UnknownBaseline(e) => e.fmt(f),
            Failure::BaselineOutOfScope(e) => e.fmt(f),
            Failure::GuardrailRefused { source, breaches } => {
                write!(
                    f,
                    "refused by the guardrails, nothing was written: {source} grants what the guard never writes ({} breach(es)); fix it, or trust the account or organisation (TRUSTED_ACCOUNTS, TRUSTED_ORGS) if the access is meant:",
                    breaches.len()
                )?;
                for b in breaches {
                    write!(f, "\n{b}")?;
                }
                Ok(())
            }
        }
    }
}

/// The result for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The key.
    pub key_arn: KeyArn,
    /// Its Region.
    pub region: Region,
    /// What was done, and why.
    pub status: Status,
    /// Statement-level diff of live vs baseline, when there was drift.
    pub diff: Option<String>,
    /// The drift as access gained and lost, with its severity, when there was drift (and
    /// the live policy parsed).
    pub exposure: Option<Exposure>,
    /// Who made the change the event records (event-driven outcomes with a drift only).
    pub actor: Option<Actor>,
    /// The baseline the key was compared with: its catalogue name, `primary`, or the
    /// single baseline's origin (`None` when the key was left before one was chosen).
    pub baseline: Option<String>,
    /// What mirroring rewrote for this replica's Region (primary mode).
    pub rewrites: Vec<Rewrite>,
    /// `BASELINE_MATCH=contains`: the live policy's statements beyond the baseline, kept or
    /// removed, with why.
    pub extras: Option<Extras>,
    /// The key's exemption (the exclude tag's `until=`) ended then (RFC 3339), so it was
    /// reconciled again.
    pub exemption_ended: Option<String>,
    /// The key carries the exclude tag but the exemption is not honoured (its end cannot be
    /// read, or it lasts longer than `EXEMPTION_MAX_DAYS`): why, so it was reconciled.
    pub exemption_ignored: Option<String>,
    /// The hex SHA-256 of the baseline template the key was compared with (not for a
    /// mirrored primary).
    pub baseline_sha256: Option<String>,
    /// What the policy written (or, in dry-run, to be written) grants that the live policy
    /// did not: the write judged the other way round from `exposure`.
    pub write_exposure: Option<Exposure>,
}

/// The live policy's statements beyond the baseline (`BASELINE_MATCH=contains`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extras {
    /// Kept: they grant nothing public, cross-account or administrative, and take nothing
    /// away from the baseline.
    pub kept: Vec<Extra>,
    /// Removed by the rewrite (or, in dry-run, that would be), with why.
    pub removed: Vec<Extra>,
}

impl Outcome {
    /// The outcome of `status` for `key`, without a diff.
    pub fn new(key: &KeyArn, status: Status) -> Self {
        Self {
            key_arn: key.clone(),
            region: key.region().clone(),
            status,
            diff: None,
            exposure: None,
            actor: None,
            baseline: None,
            rewrites: Vec::new(),
            extras: None,
            exemption_ended: None,
            exemption_ignored: None,
            baseline_sha256: None,
            write_exposure: None,
        }
    }

    /// In sync, nothing more to say.
    pub fn in_sync(key: &KeyArn) -> Self {
        Self::new(key, Status::InSync(None))
    }

    /// Left alone.
    pub fn skipped(key: &KeyArn, why: Skip) -> Self {
        Self::new(key, Status::Skipped(why))
    }

    /// Not brought to the baseline; the failure carries its retry class.
    pub fn failed(key: &KeyArn, failure: Failure) -> Self {
        Self::new(key, Status::Failed(failure))
    }

    /// A failed AWS call.
    pub fn call_failed(key: &KeyArn, e: &CallError) -> Self {
        Self::failed(key, Failure::Call(e.clone()))
    }

    /// The wire's action.
    pub fn action(&self) -> Action {
        self.status.action()
    }

    /// The reason in words (`None` for a plain in-sync key).
    pub fn reason(&self) -> Option<String> {
        match &self.status {
            Status::InSync(None) => None,
            status => Some(Reason(status).to_string()),
        }
    }

    /// For failures: whether a retry can help.
    pub fn retry(&self) -> Option<Retry> {
        match &self.status {
            Status::Failed(failure) => Some(failure.retry()),
            _ => None,
        }
    }

    /// Whether the flap guard left this key alone.
    pub fn is_flap_suppressed(&self) -> bool {
        matches!(self.status, Status::Skipped(Skip::Flapping { .. }))
    }

    /// Attaches a drift diff.
    pub fn with_diff(mut self, diff: String) -> Self {
        self.diff = Some(diff);
        self
    }

    /// The drift's diff and, when known, its explanation.
    /// The grants the guardrails refused, when they refused this key's write.
    pub fn guardrail_breaches(&self) -> Option<&[Breach]> {
        match &self.status {
            Status::Failed(Failure::GuardrailRefused { breaches, .. }) => Some(breaches),
            _ => None,
        }
    }

    /// Whether this outcome's exposure counts in `ExposureDrift` and is published: every
    /// drift looked at, and a key an exemption leaves in place when its exposure is public or
    /// cross-account (the exemption stops the write, never the alarm); not keys left alone
    /// for other reasons.
    pub fn exposure_alarms(&self) -> bool {
        let Some(exposure) = &self.exposure else {
            return false;
        };
        match &self.status {
            Status::Skipped(Skip::Flapping { .. }) => true,
            Status::Skipped(Skip::Excluded { .. }) => exposure.severity >= Severity::CrossAccount,
            Status::Skipped(_) => false,
            _ => true,
        }
    }

    pub fn with_drift(mut self, diff: String, exposure: Option<Exposure>) -> Self {
        self.diff = Some(diff);
        self.exposure = exposure;
        self
    }
}

/// The documented contract: `key_arn`, `account`, `region`, `action`, `reason` (text or
/// null), `diff` (text or null), `exposure` and `actor` (objects or null), and only when
/// they apply: `retry` (failures), `baseline` (the baseline compared with), `rewrites`
/// (mirroring), `extras` (`contains` mode), `exemption_ended`.
impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let retry = self.retry();
        let optional = usize::from(retry.is_some())
            + usize::from(self.baseline.is_some())
            + usize::from(!self.rewrites.is_empty())
            + usize::from(self.extras.is_some())
            + usize::from(self.exemption_ended.is_some())
            + usize::from(self.exemption_ignored.is_some())
            + usize::from(self.baseline_sha256.is_some())
            + usize::from(self.write_exposure.is_some())
            + usize::from(self.guardrail_breaches().is_some());
        let mut s = serializer.serialize_struct("Outcome", 8 + optional)?;
        s.serialize_field("key_arn", &self.key_arn)?;
        s.serialize_field("account", self.key_arn.account())?;
        s.serialize_field("region", &self.region)?;
        s.serialize_field("action", &self.action())?;
        s.serialize_field("reason", &self.reason())?;
        s.serialize_field("diff", &self.diff)?;
        s.serialize_field("exposure", &self.exposure)?;
        s.serialize_field("actor", &self.actor)?;
        if let Some(retry) = retry {
            s.serialize_field("retry", &retry)?;
        }
        if let Some(baseline) = &self.baseline {
            s.serialize_field("baseline", baseline)?;
        }
        if !self.rewrites.is_empty() {
            s.serialize_field("rewrites", &self.rewrites)?;
        }
        if let Some(extras) = &self.extras {
            s.serialize_field("extras", extras)?;
        }
        if let Some(ended) = &self.exemption_ended {
            s.serialize_field("exemption_ended", ended)?;
        }
        if let Some(ignored) = &self.exemption_ignored {
            s.serialize_field("exemption_ignored", ignored)?;
        }
        if let Some(digest) = &self.baseline_sha256 {
            s.serialize_field("baseline_sha256", digest)?;
        }
        if let Some(write) = &self.write_exposure {
            s.serialize_field("write_exposure", write)?;
        }
        if let Some(breaches) = self.guardrail_breaches() {
            s.serialize_field("guardrail", breaches)?;
        }
        s.end()
    }
}

/// A failure that concerns no single key (e.g. a Region that could not be listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError(pub CallError);

impl RunError {
    /// Can a retry help.
    pub fn retry(&self) -> Retry {
        Retry::of(&self.0)
    }
}

impl Serialize for RunError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RunError", 2)?;
        s.serialize_field("message", &self.0.to_string())?;
        s.serialize_field("retry", &self.retry())?;
        s.end()
    }
}

/// The outcomes of one invocation or sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One entry per key looked at.
    pub outcomes: Vec<Outcome>,
    /// Failures outside any one key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RunError>,
    /// Sweeps: how many replicas ended in each action (in-sync ones are only counted here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<BTreeMap<Action, usize>>,
    /// Sweeps of several accounts: the summary per account.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub summary_by_account: BTreeMap<AccountId, BTreeMap<Action, usize>>,
    /// Accounts a sweep was asked for but may not work in (nothing was called there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts_refused: Vec<Refused>,
    /// Sweeps: how many drifted keys an exemption left in place (the `KeysExcluded` metric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<usize>,
    /// Tag events: the exemptions granted and removed, and the baselines switched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tag_changes: Vec<TagNews>,
    /// Sweeps that ran through without a run error (the heartbeat, `SweepCompleted`).
    #[serde(skip)]
    pub sweeps_completed: usize,
    /// Sweeps: the in-sync replicas, left out of `outcomes` (and of the response) but kept
    /// for what reports on every key (Security Hub findings, AWS Config evaluations).
    #[serde(skip)]
    pub in_sync: Vec<Outcome>,
}

/// A change of the exclude or baseline tag: itself news, whoever made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagNews {
    /// The key tagged or untagged.
    pub key_arn: KeyArn,
    /// What the change means.
    pub change: TagNewsKind,
    /// The tag key.
    pub tag: String,
    /// The value set (`None`: removed).
    pub value: Option<String>,
    /// Who made the call.
    pub actor: Option<Actor>,
}

/// What a tag change means to the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagNewsKind {
    /// The exclude tag was set: the guard stops writing to the key (never alarming on it).
    ExemptionGranted,
    /// The exclude tag was removed.
    ExemptionRemoved,
    /// The baseline tag was set or removed: the key (or a primary's replicas) may now be
    /// held to another baseline.
    BaselineSwitched,
}

/// An account left alone, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The account.
    pub account: AccountId,
    /// Why it is not worked in.
    pub why: NotAllowed,
}

impl Serialize for Refused {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Refused", 2)?;
        s.serialize_field("account", &self.account)?;
        s.serialize_field("reason", &self.why.to_string())?;
        s.end()
    }
}

/// The accounts whose member role could not be assumed, in the failures of a report.
fn accounts_not_entered<'a>(
    failures: impl Iterator<Item = &'a CallError>,
) -> std::collections::BTreeSet<String> {
    failures
        .filter(|e| e.operation == ASSUME_ROLE)
        .map(|e| {
            e.resource
                .split(':')
                .nth(4)
                .unwrap_or(&e.resource)
                .to_owned()
        })
        .collect()
}

/// The operation name of the call that enters a member account.
pub const ASSUME_ROLE: &str = "AssumeRole";

impl Report {
    /// Adds another report's outcomes, errors and counts to this one (an SQS batch of
    /// planned sweep items answers as one).
    pub fn merge(&mut self, other: Report) {
        self.outcomes.extend(other.outcomes);
        self.errors.extend(other.errors);
        self.accounts_refused.extend(other.accounts_refused);
        self.tag_changes.extend(other.tag_changes);
        if let Some(counts) = other.summary {
            let summary = self.summary.get_or_insert_with(BTreeMap::new);
            for (action, n) in counts {
                *summary.entry(action).or_default() += n;
            }
        }
        for (account, counts) in other.summary_by_account {
            let mine = self.summary_by_account.entry(account).or_default();
            for (action, n) in counts {
                *mine.entry(action).or_default() += n;
            }
        }
        if let Some(n) = other.excluded {
            *self.excluded.get_or_insert(0) += n;
        }
        self.sweeps_completed += other.sweeps_completed;
        self.in_sync.extend(other.in_sync);
    }

    /// How many outcomes have this action.
    pub fn count(&self, action: Action) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.action() == action)
            .count()
    }

    /// The failed outcomes.
    pub fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.action() == Action::Failed)
    }

    /// `None` when nothing failed; otherwise whether a retry of the whole invocation can
    /// help (any retryable failure makes it retryable: the fixed keys are in sync by then).
    pub fn failure_class(&self) -> Option<Retry> {
        let classes = self
            .failures()
            .filter_map(Outcome::retry)
            .chain(self.errors.iter().map(RunError::retry));
        classes.fold(None, |acc, r| match (acc, r) {
            (Some(Retry::Retryable), _) | (_, Retry::Retryable) => Some(Retry::Retryable),
            _ => Some(Retry::NonRetryable),
        })
    }

    /// The metric data for this report: per Region and fleet-wide totals.
    pub fn metrics(&self) -> Vec<MetricDatum> {
        let mut per_region: BTreeMap<&Region, Counts> = BTreeMap::new();
        for o in &self.outcomes {
            per_region.entry(&o.region).or_default().add(&o.status);
        }
        let mut data = Vec::new();
        let mut total = Counts::default();
        for (region, counts) in per_region {
            total.merge(&counts);
            data.extend(counts.data(Some(region)));
        }
        if !data.is_empty() {
            data.extend(total.data(None));
        }
        let call_errors = self
            .outcomes
            .iter()
            .filter_map(|o| match &o.status {
                Status::Failed(Failure::Call(e)) => Some(e),
                _ => None,
            })
            .chain(self.errors.iter().map(|e| &e.0));
        let not_entered = accounts_not_entered(call_errors).len();
        let not_allowed = self.accounts_refused.len()
            + self
                .outcomes
                .iter()
                .filter(|o| matches!(o.status, Status::Skipped(Skip::AccountNotAllowed(_))))
                .count();
        let exemptions_ended = self
            .outcomes
            .iter()
            .filter(|o| o.exemption_ended.is_some())
            .count();
        let tag_news = |kind| self.tag_changes.iter().filter(|t| t.change == kind).count();
        for (metric, n) in [
            (Metric::AccountNotEntered, not_entered),
            (Metric::AccountNotAllowed, not_allowed),
            (Metric::ExemptionExpired, exemptions_ended),
            (
                Metric::ExemptionGranted,
                tag_news(TagNewsKind::ExemptionGranted),
            ),
            (
                Metric::BaselineSwitched,
                tag_news(TagNewsKind::BaselineSwitched),
            ),
        ] {
            if n > 0 {
                data.push(MetricDatum {
                    metric,
                    region: None,
                    severity: None,
                    value: n as f64,
                });
            }
        }
        // Drifts by what they mean, in dry-run too: a drift the guard leaves alone on
        // purpose (excluded, another account's) is not counted, a flapping or failed one is.
        if let Some(summary) = &self.summary {
            // The heartbeat: a sweep that ran through, and how many keys it covered. An
            // alarm on missing data sees a stopped schedule, rule, mapping or role.
            data.push(MetricDatum {
                metric: Metric::SweepCompleted,
                region: None,
                severity: None,
                value: self.sweeps_completed as f64,
            });
            data.push(MetricDatum {
                metric: Metric::SweepKeysCovered,
                region: None,
                severity: None,
                value: summary.values().sum::<usize>() as f64,
            });
        }
        if let Some(n) = self.excluded {
            // Every sweep, zero included: "how many drifts are exempt" is one graph.
            data.push(MetricDatum {
                metric: Metric::KeysExcluded,
                region: None,
                severity: None,
                value: n as f64,
            });
        }
        let exposures = self
            .outcomes
            .iter()
            .filter(|o| o.exposure_alarms())
            .filter_map(|o| o.exposure.as_ref().map(|e| e.severity));
        let writes = self
            .outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::Remediated(_)))
            .filter_map(|o| o.write_exposure.as_ref().map(|e| e.severity))
            .filter(|s| *s >= Severity::Admin);
        let refused = self.outcomes.iter().filter_map(|o| {
            o.guardrail_breaches()
                .and_then(|b| b.iter().map(|b| b.severity).max())
        });
        for (metric, severities) in [
            (Metric::ExposureDrift, exposures.collect::<Vec<_>>()),
            (Metric::WriteExposure, writes.collect()),
            (Metric::GuardrailRefused, refused.collect()),
        ] {
            let mut by_severity: BTreeMap<Severity, usize> = BTreeMap::new();
            for s in severities {
                *by_severity.entry(s).or_default() += 1;
            }
            for (severity, n) in by_severity {
                data.push(MetricDatum {
                    metric,
                    region: None,
                    severity: Some(severity),
                    value: n as f64,
                });
            }
        }
        data
    }
}

/// The `source` of every notification event.
pub const NOTIFICATION_SOURCE: &str = "kms-replica-guard";

/// What a notification says happened to a drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftNews {
    /// Found and left as it is (dry-run, or the flap guard).
    Detected,
    /// Rewritten and verified.
    Remediated,
    /// Found, and could not be fixed.
    RemediationFailed,
    /// The guardrails refused the policy the guard would write (dry-run too).
    WriteRefused,
    /// A write granted key administration (or more).
    WriteGrantsAccess,
    /// The exclude tag was set on a key.
    ExemptionGranted,
    /// The baseline tag of a key was set or removed.
    BaselineSwitched,
}

impl DriftNews {
    /// The EventBridge `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            DriftNews::Detected => "Replica Key Policy Drift Detected",
            DriftNews::Remediated => "Replica Key Policy Remediated",
            DriftNews::RemediationFailed => "Replica Key Policy Remediation Failed",
            DriftNews::WriteRefused => "Replica Key Policy Write Refused",
            DriftNews::WriteGrantsAccess => "Replica Key Policy Write Grants Access",
            DriftNews::ExemptionGranted => "Replica Key Exemption Granted",
            DriftNews::BaselineSwitched => "Replica Key Baseline Switched",
        }
    }
}

/// One drift, told to whoever listens (an EventBridge event: `source`
/// [`NOTIFICATION_SOURCE`], `detail-type` from [`DriftNews`], `detail` the outcome).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// What happened.
    pub news: DriftNews,
    /// The key (the event's `resources`).
    pub key_arn: KeyArn,
    /// The outcome as the response has it, exposure and actor included.
    pub detail: serde_json::Value,
}

impl Report {
    /// One notification per drift found: remediated, detected (dry-run or flapping) or
    /// failed after it was found. Keys left alone on purpose (excluded, another account's)
    /// and outcomes without a drift are not news.
    pub fn notifications(&self) -> Vec<Notification> {
        let detail = |o: &Outcome| serde_json::to_value(o).expect("an outcome serialises");
        let mut out = Vec::new();
        for o in &self.outcomes {
            let news = match &o.status {
                Status::Failed(Failure::GuardrailRefused { .. }) => Some(DriftNews::WriteRefused),
                _ if o.diff.is_none() => None,
                Status::Remediated(_) => Some(DriftNews::Remediated),
                Status::DriftDetected(_) | Status::Skipped(Skip::Flapping { .. }) => {
                    Some(DriftNews::Detected)
                }
                Status::Skipped(Skip::Excluded { .. }) if o.exposure_alarms() => {
                    Some(DriftNews::Detected)
                }
                Status::Failed(_) => Some(DriftNews::RemediationFailed),
                Status::InSync(_) | Status::Skipped(_) => None,
            };
            let Some(news) = news else { continue };
            out.push(Notification {
                news,
                key_arn: o.key_arn.clone(),
                detail: detail(o),
            });
            let granted = o.write_exposure.as_ref().map(|e| e.severity);
            if matches!(o.status, Status::Remediated(_)) && granted >= Some(Severity::Admin) {
                out.push(Notification {
                    news: DriftNews::WriteGrantsAccess,
                    key_arn: o.key_arn.clone(),
                    detail: detail(o),
                });
            }
        }
        for t in &self.tag_changes {
            let news = match t.change {
                TagNewsKind::ExemptionGranted => DriftNews::ExemptionGranted,
                TagNewsKind::BaselineSwitched => DriftNews::BaselineSwitched,
                TagNewsKind::ExemptionRemoved => continue,
            };
            out.push(Notification {
                news,
                key_arn: t.key_arn.clone(),
                detail: serde_json::to_value(t).expect("tag news serialises"),
            });
        }
        out
    }
}

/// Metric counts of some outcomes.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    auto_fix_applied: f64,
    drift_detected: f64,
    auto_fix_failed: f64,
    flap_suppressed: f64,
}

impl Counts {
    fn add(&mut self, status: &Status) {
        match status {
            Status::Remediated(_) => {
                self.auto_fix_applied += 1.0;
                self.drift_detected += 1.0;
            }
            Status::DriftDetected(_) => self.drift_detected += 1.0,
            Status::Failed(_) => self.auto_fix_failed += 1.0,
            Status::Skipped(Skip::Flapping { .. }) => {
                self.drift_detected += 1.0;
                self.flap_suppressed += 1.0;
            }
            Status::InSync(_) | Status::Skipped(_) => {}
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.auto_fix_applied += other.auto_fix_applied;
        self.drift_detected += other.drift_detected;
        self.auto_fix_failed += other.auto_fix_failed;
        self.flap_suppressed += other.flap_suppressed;
    }

    fn data(&self, region: Option<&Region>) -> [MetricDatum; 4] {
        let datum = |metric, value| MetricDatum {
            metric,
            region: region.cloned(),
            severity: None,
            value,
        };
        [
            datum(Metric::AutoFixApplied, self.auto_fix_applied),
            datum(Metric::DriftDetected, self.drift_detected),
            datum(Metric::AutoFixFailed, self.auto_fix_failed),
            datum(Metric::FlapSuppressed, self.flap_suppressed),
        ]
    }
}

/// The metrics the function publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A drifted policy was rewritten and verified (the auto-fix metric alarms watch).
    AutoFixApplied,
    /// A policy was found drifted, fixed or not.
    DriftDetected,
    /// A key could not be brought to the baseline.
    AutoFixFailed,
    /// A drifting key was left alone by the flap guard.
    FlapSuppressed,
    /// Accounts whose member role could not be assumed (refused, throttled, unreachable):
    /// their keys were not checked. A fleet total only.
    AccountNotEntered,
    /// Events or sweep items from accounts outside `MEMBER_ACCOUNTS`: nothing was done.
    /// A fleet total only.
    AccountNotAllowed,
    /// Drifts by their access severity (dimension `Severity` only): dry-run included.
    ExposureDrift,
    /// Keys whose exemption (the exclude tag's `until=`) has ended and that were reconciled
    /// again: the tag can be removed. A fleet total only.
    ExemptionExpired,
    /// Policies the guardrails refused to write, by the worst breach (dimension `Severity`):
    /// dry-run included.
    GuardrailRefused,
    /// Writes that granted key administration or more (dimension `Severity`).
    WriteExposure,
    /// Exclude tags set (TagResource events). A fleet total only.
    ExemptionGranted,
    /// Baseline tags set or removed (TagResource, UntagResource events). A fleet total only.
    BaselineSwitched,
    /// Drifted keys an exemption left in place, every sweep (zero included).
    KeysExcluded,
    /// A sweep (scheduled, or one planned work item) that ran through without a run error:
    /// the heartbeat an alarm on missing data watches.
    SweepCompleted,
    /// The replicas a sweep looked at, every sweep (zero included).
    SweepKeysCovered,
    /// The function's mode, with every batch of metrics: 1 enforce, 0 dry-run.
    EnforceMode,
    /// Security Hub findings that could not be imported (the fixes stand). A fleet total.
    FindingsNotImported,
    /// AWS Config evaluations that could not be put (PutEvaluations failed). A fleet total.
    EvaluationsNotPut,
}

impl Metric {
    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::AutoFixApplied => "AutoFixApplied",
            Metric::DriftDetected => "DriftDetected",
            Metric::AutoFixFailed => "AutoFixFailed",
            Metric::FlapSuppressed => "FlapSuppressed",
            Metric::AccountNotEntered => "AccountNotEntered",
            Metric::AccountNotAllowed => "AccountNotAllowed",
            Metric::ExposureDrift => "ExposureDrift",
            Metric::ExemptionExpired => "ExemptionExpired",
            Metric::GuardrailRefused => "GuardrailRefused",
            Metric::WriteExposure => "WriteExposure",
            Metric::ExemptionGranted => "ExemptionGranted",
            Metric::BaselineSwitched => "BaselineSwitched",
            Metric::KeysExcluded => "KeysExcluded",
            Metric::SweepCompleted => "SweepCompleted",
            Metric::SweepKeysCovered => "SweepKeysCovered",
            Metric::EnforceMode => "EnforceMode",
            Metric::FindingsNotImported => "FindingsNotImported",
            Metric::EvaluationsNotPut => "EvaluationsNotPut",
        }
    }
}

/// One count to publish. `region: None` is the fleet-wide total that alarms watch;
/// CloudWatch does not aggregate across dimensions, so both are published.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    /// Which metric.
    pub metric: Metric,
    /// The `Region` dimension, or none for the total.
    pub region: Option<Region>,
    /// The `Severity` dimension (`ExposureDrift` only).
    pub severity: Option<Severity>,
    /// The count.
    pub value: f64,
}

impl MetricDatum {
    /// The datum's dimensions as (name, value).
    pub fn dimensions(&self) -> Vec<(&'static str, &str)> {
        let region = self.region.as_ref().map(|r| ("Region", r.as_str()));
        let severity = self.severity.map(|s| ("Severity", s.as_str()));
        region.into_iter().chain(severity).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    use crate::fake::arn as key;

    fn throttled() -> CallError {
        CallError::new("GetKeyPolicy", "k", ErrorKind::Throttled, "x")
    }

    #[test]
    fn an_outcome_serialises_to_the_documented_contract() {
        let o = Outcome::in_sync(&key("us-west-2")).with_diff("d".into());
        let v = serde_json::to_value(Report {
            outcomes: vec![o],
            ..Report::default()
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"outcomes": [{
                "key_arn": key("us-west-2").as_str(), "account": "111122223333",
                "region": "us-west-2", "action": "in-sync", "reason": null, "diff": "d",
                "exposure": null, "actor": null
            }]})
        );
        let failed = Outcome::failed(&key("us-west-2"), Failure::StaleAfterWrite { attempts: 3 });
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(v["action"], "failed");
        assert_eq!(v["retry"], "retryable");
        assert!(v["reason"].as_str().unwrap().contains("3 re-reads"), "{v}");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "key_arn", "account", "region", "action", "reason", "diff", "exposure", "actor",
                "retry"
            ]
        );
    }

    #[test]
    fn every_failure_carries_its_retry_class() {
        let denied = CallError::new("PutKeyPolicy", "k", ErrorKind::AccessDenied, "no");
        assert_eq!(Failure::Call(throttled()).retry(), Retry::Retryable);
        assert_eq!(Failure::BackupFailed(denied).retry(), Retry::NonRetryable);
        assert_eq!(
            Failure::VerificationFailed { rest: "-".into() }.retry(),
            Retry::NonRetryable
        );
        assert_eq!(
            Failure::ConcurrentWriteDiffers { holder: "h".into() }.retry(),
            Retry::Retryable
        );
    }

    #[test]
    fn the_flap_guard_is_known_by_its_variant_not_its_words() {
        let flapping = Outcome::skipped(
            &key("us-west-2"),
            Skip::Flapping {
                writes: 5,
                window: Duration::from_secs(3600),
            },
        );
        assert!(flapping.is_flap_suppressed());
        assert!(
            flapping
                .reason()
                .unwrap()
                .starts_with("flapping: already rewritten 5 times in the last 3600 s")
        );
        let excluded = Outcome::skipped(
            &key("us-west-2"),
            Skip::Excluded {
                tag: "flapping".into(),
                until: None,
            },
        );
        assert!(!excluded.is_flap_suppressed());
    }

    #[test]
    fn accounts_the_hub_could_not_enter_are_counted_once_each() {
        let refused = |account: &str| {
            CallError::new(
                ASSUME_ROLE,
                format!("arn:aws:iam::{account}:role/kms-replica-guard-member"),
                ErrorKind::AccessDenied,
                "AccessDenied: not authorized",
            )
        };
        let r = Report {
            outcomes: vec![Outcome::call_failed(
                &key("us-west-2"),
                &refused("222233334444"),
            )],
            errors: vec![
                RunError(refused("222233334444")),
                RunError(refused("333344445555")),
            ],
            ..Report::default()
        };
        let entered = r
            .metrics()
            .into_iter()
            .find(|d| d.metric == Metric::AccountNotEntered)
            .expect("published");
        assert_eq!((entered.value, entered.region), (2.0, None));
        assert!(refused("222233334444").to_string().contains("member stack"));
        assert_eq!(r.failure_class(), Some(Retry::NonRetryable));
    }

    #[test]
    fn metrics_count_per_region_and_in_total() {
        let r = Report {
            outcomes: vec![
                Outcome::new(
                    &key("us-west-2"),
                    Status::Remediated(Remediation {
                        cause: WriteCause::Drift {
                            baseline: "b".into(),
                        },
                        backup: "s3://b/k".into(),
                    }),
                ),
                Outcome::new(&key("eu-west-1"), Status::DriftDetected(DriftNote::DryRun)),
                Outcome::failed(&key("eu-west-1"), Failure::Call(throttled())),
                Outcome::in_sync(&key("eu-west-1")),
            ],
            ..Report::default()
        };
        let get = |m: Metric, region: Option<&str>| {
            r.metrics()
                .into_iter()
                .find(|d| d.metric == m && d.region.as_ref().map(Region::as_str) == region)
                .map(|d| d.value)
        };
        assert_eq!(get(Metric::AutoFixApplied, Some("us-west-2")), Some(1.0));
        assert_eq!(get(Metric::DriftDetected, Some("us-west-2")), Some(1.0));
        assert_eq!(get(Metric::DriftDetected, Some("eu-west-1")), Some(1.0));
        assert_eq!(get(Metric::AutoFixFailed, Some("eu-west-1")), Some(1.0));
        assert_eq!(get(Metric::AutoFixApplied, None), Some(1.0));
        assert_eq!(get(Metric::DriftDetected, None), Some(2.0));
        assert_eq!(get(Metric::AutoFixFailed, None), Some(1.0));
        assert_eq!(r.metrics().len(), 12);
        assert!(Report::default().metrics().is_empty());
    }
}
