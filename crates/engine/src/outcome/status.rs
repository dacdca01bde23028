//! The status of one key: what was done (Action), and why as values (Status and its notes,
//! skips and failures), and whether Lambda should retry (Retry).

use super::*;

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
