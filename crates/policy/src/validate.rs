//! Checks a rendered policy against what KMS accepts and against locking the
//! remediator out, before anything is written.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use super::Containment;
use super::canonical::{
    CanonicalPolicy, Conditions, Effect, Folded, Operator, Path, PolicyError, Principal, Statement,
    is_account_id, read_document, read_statement, statement_values,
};

/// Largest key policy KMS accepts, in bytes.
pub const MAX_POLICY_BYTES: usize = 32_768;

/// Policy language versions KMS accepts.
pub const ACCEPTED_VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

/// What the lockout check must keep able to call kms:PutKeyPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutGuard {
    /// The ARN of the key the policy is for: an Allow keeps access only if its Resource
    /// covers this key, not merely some key of the account.
    pub key_arn: String,
    /// The 12-digit account that owns the key.
    pub account_id: String,
    /// The account's partition: `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: String,
    /// The role the remediator writes with; when `None` the account root must keep access.
    pub remediator_role_arn: Option<String>,
}

/// Where a policy to validate comes from. KMS accepts some documents it then ignores in part
/// (a statement without Action or Resource grants nothing): a configured baseline or a
/// backup is refused for that, a primary's policy KMS already accepted is mirrored with a
/// warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A baseline the operator configured, or a backup being restored: everything strict.
    Configured,
    /// A primary's policy, mirrored: statements KMS accepts but ignores are warnings.
    Mirrored,
}

/// A policy that may be written, with what is worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The canonical form of the document.
    pub policy: CanonicalPolicy,
    /// Problems that do not stop the write ([`Origin::Mirrored`] only).
    pub warnings: Vec<ValidationError>,
}

/// The prefixes of IAM unique ids (users `AIDA`, roles `AROA`, groups `AGPA`, policies
/// `ANPA`/`ANVA`, instance profiles `AIPA`, access keys `AKIA`/`ASIA`, ...). A key policy
/// shows a principal that was deleted by its unique id instead of its ARN, and KMS refuses
/// any PutKeyPolicy of a document that carries one ("invalid principals").
pub const UNIQUE_ID_PREFIXES: [&str; 12] = [
    "AIDA", "AROA", "AGPA", "ANPA", "ANVA", "AIPA", "AKIA", "ASIA", "ABIA", "ACCA", "APKA", "ASCA",
];

/// Whether a principal value is an IAM unique id rather than an ARN, account or service.
pub fn is_unique_id(value: &str) -> bool {
    value.len() >= 16
        && UNIQUE_ID_PREFIXES.iter().any(|p| value.starts_with(p))
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Every problem found in a policy document; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for ValidationErrors {}

/// One reason a policy may not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The text is over KMS's size limit.
    #[error(
        "policy is {bytes} bytes, over the KMS limit of {MAX_POLICY_BYTES} bytes; shorten it, e.g. by merging statements that share Effect, Principal and Condition"
    )]
    TooLarge {
        /// Size of the text in bytes.
        bytes: usize,
    },
    /// The text contains a character KMS rejects.
    #[error(
        "policy contains {character:?} (U+{:04X}) at byte offset {offset}; KMS accepts only U+0020-U+00FF, tab, LF and CR: remove or replace it",
        u32::from(*character)
    )]
    InvalidCharacter {
        /// The first offending character.
        character: char,
        /// Its byte offset in the text.
        offset: usize,
    },
    /// The document does not follow the policy grammar.
    #[error(transparent)]
    Grammar(#[from] PolicyError),
    /// `Version` is not one KMS accepts.
    #[error("Version is {found:?}; use \"2012-10-17\" (or the legacy \"2008-10-17\")")]
    UnsupportedVersion {
        /// The version found.
        found: String,
    },
    /// `Statement` is an empty array.
    #[error("Statement is empty; add at least one statement")]
    EmptyStatement,
    /// A principal is named by an IAM unique id: a deleted principal, as KMS shows it.
    #[error(
        "{}: principal {id} is an IAM unique id, which is how KMS shows a principal that was deleted; KMS refuses any policy that carries one (\"invalid principals\"): remove it, or name an existing principal by its ARN",
        at(.index, .sid)
    )]
    UniqueIdPrincipal {
        /// Index of the statement in the document.
        index: usize,
        /// The statement's Sid, if any.
        sid: Option<String>,
        /// The unique id.
        id: String,
    },
    /// A statement's `Effect` is missing or not Allow/Deny.
    #[error("{}: Effect is {}; set it to \"Allow\" or \"Deny\"", at(.index, .sid), found.as_deref().unwrap_or("missing"))]
    InvalidEffect {
        /// Index of the statement in the document.
        index: usize,
        /// The statement's Sid, if any.
        sid: Option<String>,
        /// The Effect found, as JSON; `None` when missing.
        found: Option<String>,
    },
    /// A statement has neither of two mutually exclusive elements.
    #[error("{}: has neither {element} nor {alternative}; add exactly one of them", at(.index, .sid))]
    MissingElement {
        /// Index of the statement in the document.
        index: usize,
        /// The statement's Sid, if any.
        sid: Option<String>,
        /// The usual element, e.g. `Principal`.
        element: &'static str,
        /// Its negated form, e.g. `NotPrincipal`.
        alternative: &'static str,
    },
    /// A statement has both of two mutually exclusive elements.
    #[error("{}: has both {element} and {alternative}; keep only one of them", at(.index, .sid))]
    ConflictingElements {
        /// Index of the statement in the document.
        index: usize,
        /// The statement's Sid, if any.
        sid: Option<String>,
        /// The usual element, e.g. `Principal`.
        element: &'static str,
        /// Its negated form, e.g. `NotPrincipal`.
        alternative: &'static str,
    },
    /// A statement names no principal, action or resource: an empty `Principal` object
    /// (or one whose lists are all empty), or an empty Action/Resource list.
    #[error("{}: {element} {}", at(.index, .sid), empty_hint(.element))]
    EmptyElement {
        /// Index of the statement in the document.
        index: usize,
        /// The statement's Sid, if any.
        sid: Option<String>,
        /// The empty element, e.g. `Principal` or `Resource`.
        element: &'static str,
    },
    /// No statement would let the remediator (or root) change the policy again.
    #[error(
        "the policy would lock out {who}: no Allow statement without a Condition lets it call kms:PutKeyPolicy on this key ({key}); add a statement such as {{\"Sid\": \"AllowKeyPolicyManagement\", \"Effect\": \"Allow\", \"Principal\": {{\"AWS\": \"{principal}\"}}, \"Action\": \"kms:PutKeyPolicy\", \"Resource\": \"*\"}}{}",
        also(.alternative)
    )]
    LockoutNotAllowed {
        /// Who would be locked out, in words.
        who: String,
        /// The principal ARN the suggested statement should allow.
        principal: String,
        /// Another principal whose allowance would also do (the account root for a role).
        alternative: Option<String>,
        /// The key the policy is for.
        key: String,
    },
    /// A Deny statement would stop the remediator (or root) changing the policy again.
    #[error("{}: {}", at(.index, .sid), denied(*.conditional, .who, .exemption))]
    LockoutDenied {
        /// Index of the Deny statement in the document.
        index: usize,
        /// Its Sid, if any.
        sid: Option<String>,
        /// Who would be locked out, in words.
        who: String,
        /// A Condition block that would exempt them.
        exemption: String,
        /// Whether the Deny has a Condition (one that holds for them).
        conditional: bool,
    },
}

fn also(alternative: &Option<String>) -> String {
    match alternative {
        Some(root) => format!(
            " (allowing the account root {root} instead also works, as the root delegates to IAM policies)"
        ),
        None => String::new(),
    }
}

fn denied(conditional: bool, who: &str, exemption: &str) -> String {
    if conditional {
        format!(
            "this Deny covers kms:PutKeyPolicy for {who} and its Condition holds for requests from {who}, which would lock it out; remove the statement or exempt {who} from it by adding {exemption} to its Condition (where the Condition already has that operator and key, add the value to their list instead)"
        )
    } else {
        format!(
            "this Deny has no Condition and covers kms:PutKeyPolicy for {who}, which would lock it out; remove the statement or exempt {who} from it, e.g. with the Condition {exemption}"
        )
    }
}

fn empty_hint(element: &str) -> &'static str {
    match element {
        "Principal" | "NotPrincipal" => {
            "names no principal (it is empty, or all its lists are); name at least one, e.g. {\"AWS\": \"arn:aws:iam::ACCOUNT_ID:root\"}"
        }
        "Action" => "is an empty list; list at least one action, e.g. \"kms:Decrypt\"",
        "NotAction" => {
            "is an empty list; list at least one action to exclude, or use Action instead"
        }
        "Resource" => {
            "is an empty list; list at least one resource: in a key policy, \"*\" (the key itself)"
        }
        _ => {
            "is an empty list; list at least one resource to exclude, or use \"Resource\": \"*\" instead"
        }
    }
}

fn at(index: &usize, sid: &Option<String>) -> String {
    match sid {
        Some(s) => format!("Statement[{index}] (Sid {})", Value::String(s.clone())),
        None => format!("Statement[{index}] (no Sid)"),
    }
}

/// Validates a rendered policy document before it may be written.
///
/// Every problem is collected. The lockout check runs only when the statements parsed,
/// since judging a half-read policy would report lockouts that are not there.
pub fn validate(text: &str, guard: &LockoutGuard) -> Result<CanonicalPolicy, ValidationErrors> {
    validate_as(text, guard, Origin::Configured).map(|v| v.policy)
}

/// Validates a policy from `origin`: like [`validate`], with the problems KMS tolerates in
/// a policy it already accepted kept as warnings for [`Origin::Mirrored`].
pub fn validate_as(
    text: &str,
    guard: &LockoutGuard,
    origin: Origin,
) -> Result<Validated, ValidationErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if text.len() > MAX_POLICY_BYTES {
        errors.push(ValidationError::TooLarge { bytes: text.len() });
    }
    if let Some((offset, character)) = first_rejected(text) {
        errors.push(ValidationError::InvalidCharacter { character, offset });
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(fail(errors, PolicyError::from(e).into())),
    };
    let mut doc = match read_document(&value) {
        Ok(doc) => doc,
        Err(e) => return Err(fail(errors, e.into())),
    };
    if let Some(v) = &doc.version
        && !ACCEPTED_VERSIONS.contains(&v.as_str())
    {
        errors.push(ValidationError::UnsupportedVersion { found: v.clone() });
    }
    let grammar_ok = doc.errors.is_empty();
    errors.extend(
        std::mem::take(&mut doc.errors)
            .into_iter()
            .map(ValidationError::Grammar),
    );

    let raw = value
        .get("Statement")
        .and_then(statement_values)
        .unwrap_or_default();
    if value.get("Statement").is_some_and(Value::is_array) && raw.is_empty() {
        errors.push(ValidationError::EmptyStatement);
    }
    for (index, stmt) in raw.iter().enumerate() {
        if let Some(obj) = stmt.as_object() {
            check_structure(index, obj, origin, &mut errors, &mut warnings);
        }
    }
    if grammar_ok && !raw.is_empty() {
        errors.extend(lockout(&doc.indexed, &raw, guard));
    }
    if errors.is_empty() {
        Ok(Validated {
            policy: doc.into_policy(),
            warnings,
        })
    } else {
        Err(ValidationErrors(errors))
    }
}

/// Validates the document contains matching writes ([`Containment::merged`]): `baseline`,
/// already validated, plus the extras it keeps from a live policy KMS accepted.
///
/// As [`validate_as`] with [`Origin::Mirrored`] on the whole merged document would, but
/// checking only what the kept extras add: the size and characters of the merged text,
/// each extra's structure, and whether a kept Deny locks the remediator out (the
/// baseline's Allow that keeps it able to call kms:PutKeyPolicy is still there). The
/// canonical form returned is the merged document's, built without parsing it again.
/// Error indexes count the baseline's statements as written first, then the extras.
pub fn validate_merged(
    c: &Containment,
    baseline: &CanonicalPolicy,
    guard: &LockoutGuard,
) -> Result<Validated, ValidationErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if c.merged.len() > MAX_POLICY_BYTES {
        errors.push(ValidationError::TooLarge {
            bytes: c.merged.len(),
        });
    }
    if let Some((offset, character)) = first_rejected(&c.merged) {
        errors.push(ValidationError::InvalidCharacter { character, offset });
    }
    // Statements keep the first position of each distinct one: the last of those is at
    // least as far as the baseline goes.
    let before = baseline
        .statements
        .iter()
        .filter_map(|s| s.at.0)
        .max()
        .unwrap_or(baseline.statements.len());
    let target = Target::new(guard);
    let mut policy = baseline.clone();
    for (k, extra) in c.kept.iter().enumerate() {
        let index = before + k;
        let raw = &extra.statement;
        if let Some(obj) = raw.as_object() {
            check_structure(index, obj, Origin::Mirrored, &mut errors, &mut warnings);
        }
        let mut grammar = Vec::new();
        let root = Path::Root("Statement");
        let at = Path::Index(&root, index);
        let Some(s) = read_statement(at, raw, index + 1, &mut grammar) else {
            errors.extend(grammar.into_iter().map(ValidationError::Grammar));
            continue;
        };
        let written = Written {
            principal: written_aws(Some(raw), "Principal"),
            not_principal: written_aws(Some(raw), "NotPrincipal"),
        };
        errors.extend(denial(index, &s, &written, &target));
        policy.statements.insert(s);
    }
    if errors.is_empty() {
        Ok(Validated { policy, warnings })
    } else {
        Err(ValidationErrors(errors))
    }
}

fn fail(mut errors: Vec<ValidationError>, last: ValidationError) -> ValidationErrors {
    errors.push(last);
    ValidationErrors(errors)
}

/// The first character KMS rejects, with its byte offset. Policies are nearly always
/// ASCII, so bytes are checked first; characters only from the first non-ASCII byte on
/// (which, after only ASCII, starts a character).
fn first_rejected(text: &str) -> Option<(usize, char)> {
    let ascii_ok = |b: &u8| matches!(*b, 0x20..=0x7F | b'\t' | b'\n' | b'\r');
    let from = text.bytes().position(|b| !ascii_ok(&b))?;
    text[from..]
        .char_indices()
        .map(|(offset, c)| (from + offset, c))
        .find(|(_, c)| !kms_accepts(*c))
}

fn kms_accepts(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{FF}' | '\t' | '\n' | '\r')
}

fn check_structure(
    index: usize,
    stmt: &serde_json::Map<String, Value>,
    origin: Origin,
    errors: &mut Vec<ValidationError>,
    warnings: &mut Vec<ValidationError>,
) {
    let sid = stmt.get("Sid").and_then(Value::as_str).map(str::to_owned);
    let effect = stmt.get("Effect");
    // Case-sensitive, as IAM and KMS read it: "allow" is refused.
    let effect_ok = effect
        .and_then(Value::as_str)
        .is_some_and(|e| e == "Allow" || e == "Deny");
    if !effect_ok {
        errors.push(ValidationError::InvalidEffect {
            index,
            sid: sid.clone(),
            found: effect.map(Value::to_string),
        });
    }
    for (element, alternative) in [
        ("Principal", "NotPrincipal"),
        ("Action", "NotAction"),
        ("Resource", "NotResource"),
    ] {
        let sid = sid.clone();
        match (stmt.contains_key(element), stmt.contains_key(alternative)) {
            (false, false) => {
                let missing = ValidationError::MissingElement {
                    index,
                    sid,
                    element,
                    alternative,
                };
                // KMS accepts a statement without Action or Resource (it grants nothing):
                // a mirrored primary KMS accepted is written with a warning.
                if origin == Origin::Mirrored && element != "Principal" {
                    warnings.push(missing);
                } else {
                    errors.push(missing);
                }
            }
            (true, true) => errors.push(ValidationError::ConflictingElements {
                index,
                sid,
                element,
                alternative,
            }),
            _ => {}
        }
    }
    for element in [
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
    ] {
        let empty = match stmt.get(element) {
            // Empty lists for one principal type are as good as absent; only a principal
            // element with nothing in any of its types names no one.
            Some(Value::Object(types)) if element.ends_with("Principal") => types
                .values()
                .all(|v| v.as_array().is_some_and(Vec::is_empty)),
            Some(Value::Array(items)) => items.is_empty(),
            _ => false,
        };
        if empty {
            errors.push(ValidationError::EmptyElement {
                index,
                sid: sid.clone(),
                element,
            });
        }
    }
    for element in ["Principal", "NotPrincipal"] {
        let aws = stmt.get(element).and_then(|p| p.get("AWS"));
        let values: Vec<&str> = match aws {
            Some(Value::String(v)) => vec![v.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for id in values.into_iter().filter(|v| is_unique_id(v)) {
            errors.push(ValidationError::UniqueIdPrincipal {
                index,
                sid: sid.clone(),
                id: id.to_owned(),
            });
        }
    }
}

/// Whom the lockout check protects.
struct Target<'a> {
    guard: &'a LockoutGuard,
    /// The account of the protected principal: the role's own account (which may differ
    /// from the key's), else the key's.
    account: String,
    /// `arn:PARTITION:iam::ACCOUNT:root` of that account.
    root_arn: String,
    /// `arn:PARTITION:sts::ACCOUNT:assumed-role/NAME/`, the prefix of the role's session
    /// ARNs; `None` without a role (or with one whose ARN does not parse).
    session_prefix: Option<String>,
}

/// The parts of `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME` the check needs.
fn role_parts(arn: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let &["arn", partition, "iam", "", account, resource] = parts.as_slice() else {
        return None;
    };
    let name = resource
        .strip_prefix("role/")?
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())?;
    (!partition.is_empty() && is_account_id(account)).then_some((partition, account, name))
}

/// The account a principal value names as a whole: a bare account id or an account root
/// ARN in any partition.
fn account_named(p: &str) -> Option<&str> {
    let id = match p.strip_prefix("arn:") {
        Some(rest) => rest.split_once(":iam::")?.1.strip_suffix(":root")?,
        None => p,
    };
    is_account_id(id).then_some(id)
}

impl<'a> Target<'a> {
    fn new(guard: &'a LockoutGuard) -> Self {
        let role = guard.remediator_role_arn.as_deref().and_then(role_parts);
        let (partition, account) = match role {
            Some((partition, account, _)) => (partition, account),
            None => (guard.partition.as_str(), guard.account_id.as_str()),
        };
        Target {
            guard,
            account: account.to_owned(),
            root_arn: format!("arn:{partition}:iam::{account}:root"),
            session_prefix: role.map(|(partition, account, name)| {
                format!("arn:{partition}:sts::{account}:assumed-role/{name}/")
            }),
        }
    }

    fn role(&self) -> Option<&str> {
        self.guard.remediator_role_arn.as_deref()
    }

    fn principal(&self) -> &str {
        self.role().unwrap_or(&self.root_arn)
    }

    fn who(&self) -> String {
        match self.role() {
            Some(role) => format!("the remediator role {role}"),
            None => format!("the account root {}", self.root_arn),
        }
    }

    /// A Condition that keeps a Deny away from the target.
    fn exemption(&self) -> String {
        match self.role() {
            Some(role) => format!(r#"{{"ArnNotEquals": {{"aws:PrincipalArn": "{role}"}}}}"#),
            None => format!(
                r#"{{"StringNotEquals": {{"aws:PrincipalAccount": "{}"}}}}"#,
                self.account
            ),
        }
    }

    /// The target's account, as a bare id or as its root ARN in the target's partition.
    fn is_account(&self, p: &str) -> bool {
        p == self.account || p == self.root_arn
    }

    /// An AWS principal value (as written) in an Allow that grants the target: its own
    /// ARN, or its account (the root delegates to IAM policies), or everyone.
    fn granted_by(&self, p: &str) -> bool {
        p == "*" || self.is_account(p) || self.role() == Some(p)
    }

    /// An AWS principal value (as written) in a Deny that reaches the target. Wider than
    /// `granted_by`: the account in any partition, and any session of the role, count.
    fn denied_by(&self, p: &str) -> bool {
        if self.granted_by(p)
            || account_named(p) == Some(self.account.as_str())
            || glob(p, &self.root_arn, false)
        {
            return true;
        }
        match self.role() {
            Some(role) => {
                glob(p, role, false)
                    || self
                        .session_prefix
                        .as_ref()
                        .is_some_and(|s| p.starts_with(s.as_str()))
            }
            None => false,
        }
    }

    /// Whether a NotPrincipal list (as written) certainly exempts the target from a Deny.
    /// IAM may judge the account first, then the role, then the session, so for a role
    /// all three must be listed: the account, the role and a session of the role.
    fn exempted_by(&self, not: &[&str]) -> bool {
        let account = not.iter().any(|p| self.is_account(p));
        match (self.role(), &self.session_prefix) {
            (None, _) => account,
            (Some(role), Some(prefix)) => {
                account
                    && not.contains(&role)
                    && not.iter().any(|p| {
                        p.strip_prefix(prefix.as_str()).is_some_and(|session| {
                            !session.is_empty() && !session.contains(['*', '?'])
                        })
                    })
            }
            (Some(_), None) => false,
        }
    }

    /// Whether a Resource pattern names the key: `Some(true)` when it certainly does (`*`,
    /// or a match segment by segment and case-sensitively), `None` when it might (a policy
    /// variable, a wildcard spanning segments, a match only ignoring case), `Some(false)`
    /// when it cannot.
    fn names_key(&self, pattern: &str) -> Option<bool> {
        let key = self.guard.key_arn.as_str();
        if pattern == "*" || arn_like(pattern, key) {
            Some(true)
        } else if pattern.contains("${") || glob(pattern, key, true) {
            None
        } else {
            Some(false)
        }
    }

    /// Whether a Condition holds for the remediator's own kms:PutKeyPolicy call:
    /// `Some(false)` when some block certainly fails, `Some(true)` when every block
    /// certainly holds, `None` otherwise. Blocks are ANDed across operators and keys.
    fn condition_holds(&self, conditions: &Conditions) -> Option<bool> {
        let mut holds = Some(true);
        for (operator, keys) in conditions {
            for (key, values) in keys {
                match self.block_holds(operator, key, values) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => holds = None,
                }
            }
        }
        holds
    }

    /// What the remediator's request carries for a (case-folded) condition key, one entry
    /// per possibility (`None`: the key is absent); `None` when the check does not know.
    fn context(&self, key: &Folded) -> Option<Vec<Option<&str>>> {
        match key.folded().as_str() {
            // For a role session, the role's ARN (not the session's).
            "aws:principalarn" => self.role().map(|role| vec![Some(role)]),
            "aws:principalaccount" => Some(vec![Some(self.account.as_str())]),
            // The SDK calls KMS over HTTPS only.
            "aws:securetransport" => Some(vec![Some("true")]),
            // The remediator never sets the flag; whether KMS then puts `false` into the
            // request context is not documented, so both.
            "kms:bypasspolicylockoutsafetycheck" => Some(vec![None, Some("false")]),
            _ => None,
        }
    }

    fn block_holds(&self, operator: &str, key: &Folded, values: &BTreeSet<String>) -> Option<bool> {
        let mut outcome = None;
        for actual in self.context(key)? {
            let now = evaluate(operator, actual, values)?;
            if outcome.is_some_and(|before| before != now) {
                return None;
            }
            outcome = Some(now);
        }
        outcome
    }
}

/// One condition operator over one key as IAM evaluates it, against the request's value
/// (`None`: the key is absent). Values are ORed; a negated operator holds when none
/// matches. `None` for operators the check does not know and values it cannot judge.
fn evaluate(operator: &str, actual: Option<&str>, values: &BTreeSet<String>) -> Option<bool> {
    let op = Operator::read(operator);
    if op.is_qualified() {
        return None;
    }
    let (base, if_exists) = (op.base, op.if_exists);
    let (matches, negated): (fn(&str, &str) -> bool, bool) = match base {
        "StringEquals" => (|v, a| v == a, false),
        "StringNotEquals" => (|v, a| v == a, true),
        "StringEqualsIgnoreCase" => (|v, a| v.eq_ignore_ascii_case(a), false),
        "StringNotEqualsIgnoreCase" => (|v, a| v.eq_ignore_ascii_case(a), true),
        "StringLike" => (|v, a| glob(v, a, false), false),
        "StringNotLike" => (|v, a| glob(v, a, false), true),
        "ArnEquals" | "ArnLike" => (arn_like, false),
        "ArnNotEquals" | "ArnNotLike" => (arn_like, true),
        "Bool" => (|v, a| v.eq_ignore_ascii_case(a), false),
        _ => return None,
    };
    let Some(actual) = actual else {
        // A missing key: the IfExists forms and the negated operators hold.
        return Some(if_exists || negated);
    };
    let judgeable = !values.is_empty()
        && !values.iter().any(|v| v.contains("${"))
        && (base != "Bool"
            || values
                .iter()
                .all(|v| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")))
        && (!base.starts_with("Arn") || actual.starts_with("arn:"));
    if !judgeable {
        return None;
    }
    Some(values.iter().any(|v| matches(v, actual)) != negated)
}

/// IAM's ARN match: each of the six colon-separated segments is matched on its own,
/// case-sensitively, with `*` and `?` wildcards that never span a colon.
fn arn_like(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| glob(p, a, false))
}

/// The AWS principal values of a statement's `Principal` or `NotPrincipal` as written.
/// The canonical form reduces `arn:PARTITION:iam::ID:root` to `ID`, which is right for
/// equivalence but loses the partition, and a root of another partition grants nothing.
fn written_aws<'v>(statement: Option<&'v Value>, element: &str) -> Vec<&'v str> {
    match statement
        .and_then(|s| s.get(element))
        .and_then(|p| p.get("AWS"))
    {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A statement's AWS principals as written, beside its canonical form.
struct Written<'v> {
    principal: Vec<&'v str>,
    not_principal: Vec<&'v str>,
}

const PUT_KEY_POLICY: &str = "kms:PutKeyPolicy";

/// `raw` holds the statements as written, indexed as in the document, for the principal
/// values the canonical form has rewritten.
fn lockout(
    statements: &[(usize, Statement)],
    raw: &[&Value],
    guard: &LockoutGuard,
) -> Vec<ValidationError> {
    let target = Target::new(guard);
    let written: Vec<Written<'_>> = statements
        .iter()
        .map(|(index, _)| Written {
            principal: written_aws(raw.get(*index).copied(), "Principal"),
            not_principal: written_aws(raw.get(*index).copied(), "NotPrincipal"),
        })
        .collect();
    let mut errors = Vec::new();
    let allowed = statements
        .iter()
        .zip(&written)
        .any(|((_, s), w)| allow_covers(s, w, &target));
    if !allowed {
        errors.push(ValidationError::LockoutNotAllowed {
            who: target.who(),
            principal: target.principal().to_owned(),
            alternative: target.role().map(|_| target.root_arn.clone()),
            key: guard.key_arn.clone(),
        });
    }
    for ((index, s), w) in statements.iter().zip(&written) {
        errors.extend(denial(*index, s, w, &target));
    }
    errors
}

/// The lockout a Deny statement at `index` causes, if it covers the target.
fn denial(
    index: usize,
    s: &Statement,
    written: &Written<'_>,
    target: &Target<'_>,
) -> Option<ValidationError> {
    deny_covers(s, written, target).then(|| ValidationError::LockoutDenied {
        index,
        sid: s.sid.clone(),
        who: target.who(),
        exemption: target.exemption(),
        conditional: s
            .condition
            .as_ref()
            .is_some_and(|c| c.values().any(|keys| !keys.is_empty())),
    })
}

/// Counts only what certainly grants access to this key: NotPrincipal and NotResource
/// allows are too open-ended to rely on, and any Condition may not hold.
fn allow_covers(s: &Statement, written: &Written<'_>, t: &Target<'_>) -> bool {
    if s.effect != Some(Effect::Allow) || s.is_conditional() || s.not_principal.is_some() {
        return false;
    }
    let principal = match &s.principal {
        Some(Principal::Everyone) => true,
        Some(_) => written.principal.iter().any(|v| t.granted_by(v)),
        None => false,
    };
    let resource = s
        .resource
        .as_ref()
        .is_some_and(|rs| rs.iter().any(|r| t.names_key(r) == Some(true)));
    principal && resource && action_covers(s, false)
}

/// Counts anything that might deny: when unsure, it is a lockout. The exception is a
/// Condition on a key the check cannot judge, which is assumed not to hold for the
/// remediator (so that, e.g., an organisation guard on aws:PrincipalOrgID passes).
fn deny_covers(s: &Statement, written: &Written<'_>, t: &Target<'_>) -> bool {
    if s.effect != Some(Effect::Deny) {
        return false;
    }
    if let Some(condition) = &s.condition
        && t.condition_holds(condition) != Some(true)
    {
        return false;
    }
    let principal = match (&s.principal, &s.not_principal) {
        (Some(Principal::Everyone), _) => true,
        (Some(_), _) => written.principal.iter().any(|v| t.denied_by(v)),
        (None, Some(_)) => !t.exempted_by(&written.not_principal),
        (None, None) => true,
    };
    let resource = match (&s.resource, &s.not_resource) {
        (Some(rs), _) => rs.iter().any(|r| t.names_key(r) != Some(false)),
        (None, Some(not)) => !not.iter().any(|r| t.names_key(r) == Some(true)),
        (None, None) => true,
    };
    principal && resource && action_covers(s, true)
}

fn action_covers(s: &Statement, when_missing: bool) -> bool {
    let matches = |a: &Folded| glob(a.as_written(), PUT_KEY_POLICY, true);
    match (&s.action, &s.not_action) {
        (Some(actions), _) => actions.iter().any(matches),
        (None, Some(not)) => !not.iter().any(matches),
        (None, None) => when_missing,
    }
}

/// IAM wildcard match: `*` is any run of characters, `?` exactly one.
fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |c: char| {
        if ignore_case {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let p: Vec<char> = pattern.chars().map(fold).collect();
    let t: Vec<char> = text.chars().map(fold).collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // The last `*` absorbs one more character; match again after it.
            let st = st + 1;
            star = Some((sp, st));
            (pi, ti) = (sp + 1, st);
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod scan {
    use super::{first_rejected, kms_accepts};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_byte_scan_finds_what_a_character_scan_finds(
            ascii in "[ -~\t\n\r]{0,40}",
            rest in "(?s).{0,40}",
        ) {
            let text = format!("{ascii}{rest}");
            let by_char = text.char_indices().find(|(_, c)| !kms_accepts(*c));
            prop_assert_eq!(first_rejected(&text), by_char);
        }
    }

    #[test]
    fn latin_1_passes_and_the_first_character_past_it_is_reported() {
        assert_eq!(first_rejected("caf\u{e9} \u{ff}"), None);
        assert_eq!(first_rejected("\u{e9}a\u{7}"), Some((3, '\u{7}')));
        assert_eq!(first_rejected("ab\u{100}"), Some((2, '\u{100}')));
    }
}
