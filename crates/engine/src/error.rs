//! The error of a failed AWS call, as the ports report it: adapters map SDK errors onto it,
//! the engine decides retries on its [`ErrorKind`].

use std::fmt;

use crate::key::{KeyArn, Place, Region, RoleArn};

macro_rules! api {
    ($($op:ident),* $(,)?) => {
        /// The AWS API operations the adapters call: a failed call names one, typed, so that
        /// nothing decides on a spelled name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Api {
            $(
                #[doc = concat!("`", stringify!($op), "`.")]
                $op,
            )*
        }

        impl Api {
            /// The operation's name as AWS spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Api::$op => stringify!($op),)*
                }
            }

            /// The operation AWS spells `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $(stringify!($op) => Some(Api::$op),)*
                    _ => None,
                }
            }
        }
    };
}

api!(
    AssumeRole,
    BatchImportFindings,
    DeleteObject,
    DescribeAlarmsForMetric,
    DescribeKey,
    DescribeRule,
    DescribeTrails,
    GetCallerIdentity,
    GetEventSelectors,
    GetFunctionConfiguration,
    GetKeyPolicy,
    GetObject,
    GetParameter,
    GetParametersByPath,
    GetTrailStatus,
    ListAccounts,
    ListEventSourceMappings,
    ListKeys,
    ListObjectsV2,
    ListResourceTags,
    ListRuleNamesByTarget,
    PutEvaluations,
    PutEvents,
    PutKeyPolicy,
    PutMetricData,
    PutObject,
    SendMessageBatch,
);

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a failed call was made on, typed where something decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A KMS key.
    Key(KeyArn),
    /// An IAM role (AssumeRole into a member account: the role names the account).
    Role(RoleArn),
    /// A Region (a put of metrics or events).
    Region(Region),
    /// An account's Region (a listing of its keys).
    Place(Place),
    /// Anything else, as shown (an S3 location, a parameter, a queue, a function).
    Named(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Key(k) => k.fmt(f),
            Target::Role(r) => r.fmt(f),
            Target::Region(r) => r.fmt(f),
            Target::Place(p) => p.fmt(f),
            Target::Named(n) => f.write_str(n),
        }
    }
}

impl From<&KeyArn> for Target {
    fn from(k: &KeyArn) -> Self {
        Target::Key(k.clone())
    }
}

impl From<&RoleArn> for Target {
    fn from(r: &RoleArn) -> Self {
        Target::Role(r.clone())
    }
}

impl From<&Region> for Target {
    fn from(r: &Region) -> Self {
        Target::Region(r.clone())
    }
}

impl From<&Place> for Target {
    fn from(p: &Place) -> Self {
        Target::Place(p.clone())
    }
}

impl From<&str> for Target {
    fn from(n: &str) -> Self {
        Target::Named(n.to_owned())
    }
}

impl From<String> for Target {
    fn from(n: String) -> Self {
        Target::Named(n)
    }
}

impl From<&String> for Target {
    fn from(n: &String) -> Self {
        Target::Named(n.clone())
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
#[error("{operation} on {target} failed: {message}{}", self.hint())]
pub struct CallError {
    /// The API operation.
    pub operation: Api,
    /// What it was called on (boxed: errors travel in every `Result` of the ports).
    pub target: Box<Target>,
    /// The failure class.
    pub kind: ErrorKind,
    /// The service's code and message.
    pub message: String,
}

impl CallError {
    /// The operator's next step after the message.
    fn hint(&self) -> &'static str {
        match (self.operation, self.kind) {
            (Api::AssumeRole, ErrorKind::AccessDenied) => {
                " (the hub cannot enter this account: deploy the member stack there, and check that the member role trusts the hub's function role and, when MEMBER_EXTERNAL_ID is set, that external id)"
            }
            (Api::AssumeRole, ErrorKind::Throttled) => {
                " (STS throttled AssumeRole after retries; Lambda will retry)"
            }
            (_, kind) => kind.hint(),
        }
    }

    /// A call error.
    pub fn new(
        operation: Api,
        target: impl Into<Target>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            target: Box::new(target.into()),
            kind,
            message: message.into(),
        }
    }
}
