//! The error of a failed AWS call, as the ports report it: adapters map SDK errors onto it,
//! the engine decides retries on its [`ErrorKind`].

use std::fmt;

use crate::key::{KeyArn, Place, Region, RoleArn};

macro_rules! api {
    ($($op:ident => $action:expr, [$($caller:ident),*];)*) => {
        /// The AWS API operations the adapters call: a failed call names one, typed, so that
        /// nothing decides on a spelled name. Each is declared with the IAM action that
        /// authorises it and who calls it (the stacks' roles are checked against both, through
        /// `infra/contract.json`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Api {
            $(
                #[doc = concat!("`", stringify!($op), "`.")]
                $op,
            )*
        }

        impl Api {
            /// Every operation.
            pub const ALL: &'static [Api] = &[$(Api::$op,)*];

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

            /// The IAM action that authorises the call (`None`: it needs none).
            pub fn iam_action(self) -> Option<&'static str> {
                match self {
                    $(Api::$op => $action,)*
                }
            }

            /// Who makes the call, with whose credentials.
            pub fn callers(self) -> &'static [Caller] {
                match self {
                    $(Api::$op => &[$(Caller::$caller),*],)*
                }
            }
        }
    };
}

/// Who calls an AWS operation, and so which role must grant it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// The remediator function, in its own account (the hub's function role).
    Remediator,
    /// The detector function, in its own account (its role).
    Detector,
    /// The remediator in a member account (the member role).
    MemberRemediator,
    /// The detector in a member account (the detector's member role).
    MemberDetector,
    /// The operator's CLI with the operator's credentials (`doctor`'s reads): no role's grant.
    Operator,
}

impl Caller {
    /// Every caller.
    pub const ALL: [Caller; 5] = [
        Caller::Remediator,
        Caller::Detector,
        Caller::MemberRemediator,
        Caller::MemberDetector,
        Caller::Operator,
    ];

    /// The name the contract uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Remediator => "remediator",
            Caller::Detector => "detector",
            Caller::MemberRemediator => "member-remediator",
            Caller::MemberDetector => "member-detector",
            Caller::Operator => "operator",
        }
    }
}

// KMS reads are everyone's; the one write is the remediator's. Baselines and catalogues are
// read (SSM, S3) by both functions at start-up; backups, claims and write records (S3) are the
// remediator's. GetCallerIdentity needs no grant.
api!(
    AssumeRole => Some("sts:AssumeRole"), [Remediator, Detector];
    BatchImportFindings => Some("securityhub:BatchImportFindings"), [Detector, MemberDetector];
    DeleteObject => Some("s3:DeleteObject"), [Remediator];
    DescribeAlarmsForMetric => Some("cloudwatch:DescribeAlarmsForMetric"), [Operator];
    DescribeKey => Some("kms:DescribeKey"), [Remediator, Detector, MemberRemediator, MemberDetector];
    DescribeRule => Some("events:DescribeRule"), [Operator];
    DescribeTrails => Some("cloudtrail:DescribeTrails"), [Operator];
    GetCallerIdentity => None, [Remediator, Detector];
    GetEventSelectors => Some("cloudtrail:GetEventSelectors"), [Operator];
    GetFunctionConfiguration => Some("lambda:GetFunctionConfiguration"), [Operator];
    GetKeyPolicy => Some("kms:GetKeyPolicy"), [Remediator, Detector, MemberRemediator, MemberDetector];
    GetObject => Some("s3:GetObject"), [Remediator, Detector];
    GetParameter => Some("ssm:GetParameter"), [Remediator, Detector];
    GetParametersByPath => Some("ssm:GetParametersByPath"), [Remediator, Detector];
    GetTrailStatus => Some("cloudtrail:GetTrailStatus"), [Operator];
    ListAccounts => Some("organizations:ListAccounts"), [Remediator, Detector];
    ListEventSourceMappings => Some("lambda:ListEventSourceMappings"), [Operator];
    ListKeys => Some("kms:ListKeys"), [Remediator, Detector, MemberRemediator, MemberDetector];
    ListObjectsV2 => Some("s3:ListBucket"), [Remediator, Detector];
    ListResourceTags => Some("kms:ListResourceTags"), [Remediator, Detector, MemberRemediator, MemberDetector];
    ListRuleNamesByTarget => Some("events:ListRuleNamesByTarget"), [Operator];
    PutEvaluations => Some("config:PutEvaluations"), [Detector, MemberDetector];
    PutEvents => Some("events:PutEvents"), [Remediator];
    PutKeyPolicy => Some("kms:PutKeyPolicy"), [Remediator, MemberRemediator];
    PutMetricData => Some("cloudwatch:PutMetricData"), [Remediator, Detector];
    PutObject => Some("s3:PutObject"), [Remediator];
    SendMessageBatch => Some("sqs:SendMessage"), [Remediator];
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

#[cfg(test)]
mod tests {
    use super::{Api, Caller};

    #[test]
    fn every_operation_has_a_caller_and_the_detector_never_writes() {
        for op in Api::ALL {
            assert!(!op.callers().is_empty(), "{op}: who calls it?");
            assert_eq!(Api::from_name(op.as_str()), Some(*op));
            if op.iam_action().is_none() {
                assert_eq!(*op, Api::GetCallerIdentity, "{op}: needs no grant?");
            }
        }
        let writes = [
            "kms:PutKeyPolicy",
            "s3:PutObject",
            "s3:DeleteObject",
            "events:PutEvents",
        ];
        for op in Api::ALL {
            let detector = op
                .callers()
                .iter()
                .any(|c| matches!(c, Caller::Detector | Caller::MemberDetector));
            if detector {
                assert!(
                    !writes.contains(&op.iam_action().unwrap_or("")),
                    "the detector calls {op}"
                );
            }
        }
        let operator_only: Vec<_> = Api::ALL
            .iter()
            .filter(|op| op.callers().contains(&Caller::Operator))
            .collect();
        for op in operator_only {
            assert_eq!(
                op.callers(),
                [Caller::Operator],
                "{op}: doctor's reads only"
            );
        }
        assert_eq!(Caller::ALL.len(), 5);
    }
}
