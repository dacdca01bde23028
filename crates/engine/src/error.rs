//! The error of a failed AWS call, as the ports report it: adapters map SDK errors onto it,
//! the engine decides retries on its [`ErrorKind`].

use std::fmt;

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
    /// KMS refused a policy that names a principal that does not exist, or is not visible
    /// yet (MalformedPolicyDocumentException "... invalid principals").
    InvalidPrincipals,
    /// KMS's own lockout safety check refused a policy (MalformedPolicyDocumentException
    /// "The new key policy will not allow you to update the key policy in the future").
    LockoutRefused,
    /// Timeouts, connection failures and 5xx: worth retrying.
    Transient,
    /// A conditional write lost to a concurrent one (S3 412 / 409).
    Conflict,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// What the operator reads after the message, for the kinds that need them to act.
    fn hint(self) -> &'static str {
        match self {
            ErrorKind::AccessDenied => {
                " (grant the function's role this action in IAM and in the key policy)"
            }
            ErrorKind::Throttled => " (throttled after retries; Lambda will retry the event)",
            _ => "",
        }
    }

    /// Whether retrying later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled
                | ErrorKind::Transient
                | ErrorKind::NotFound
                | ErrorKind::InvalidState
                | ErrorKind::Conflict
        )
    }
}

/// A failed AWS call, with the context an operator needs: the operation, what it was
/// called on, the failure class, the service's words, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} on {resource} failed: {message}{}", self.hint())]
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
    /// The operator's next step after the message.
    fn hint(&self) -> &'static str {
        match (self.operation, self.kind) {
            ("AssumeRole", ErrorKind::AccessDenied) => {
                " (the hub cannot enter this account: deploy the member stack there, and check that the member role trusts the hub's function role and, when MEMBER_EXTERNAL_ID is set, that external id)"
            }
            ("AssumeRole", ErrorKind::Throttled) => {
                " (STS throttled AssumeRole after retries; Lambda will retry)"
            }
            (_, kind) => kind.hint(),
        }
    }

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
