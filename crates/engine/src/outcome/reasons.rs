//! Reasons in words: the one place a status becomes text an operator can act on.

use super::*;

/// The reason of a status, in words an operator can act on.
pub(super) struct Reason<'a>(pub(super) &'a Status);

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
