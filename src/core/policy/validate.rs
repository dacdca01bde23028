//! Checks a rendered policy against what KMS accepts and against locking the
//! remediator out, before anything is written.

use std::fmt;

use serde_json::Value;

use super::canonical::{
    CanonicalPolicy, Effect, PolicyError, Principal, Statement, read_document, statement_values,
};

/// Largest key policy KMS accepts, in bytes.
pub const MAX_POLICY_BYTES: usize = 32_768;

/// Policy language versions KMS accepts.
pub const ACCEPTED_VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

/// What the lockout check must keep able to call kms:PutKeyPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutGuard {
    /// The 12-digit account that owns the key.
    pub account_id: String,
    /// The account's partition: `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: String,
    /// The role the remediator writes with; when `None` the account root must keep access.
    pub remediator_role_arn: Option<String>,
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
    /// No statement would let the remediator (or root) change the policy again.
    #[error(
        "the policy would lock out {who}: no Allow statement without a Condition lets it call kms:PutKeyPolicy; add a statement such as {{\"Sid\": \"AllowKeyPolicyManagement\", \"Effect\": \"Allow\", \"Principal\": {{\"AWS\": \"{principal}\"}}, \"Action\": \"kms:PutKeyPolicy\", \"Resource\": \"*\"}}{}",
        also(.alternative)
    )]
    LockoutNotAllowed {
        /// Who would be locked out, in words.
        who: String,
        /// The principal ARN the suggested statement should allow.
        principal: String,
        /// Another principal whose allowance would also do (the account root for a role).
        alternative: Option<String>,
    },
    /// A Deny statement would stop the remediator (or root) changing the policy again.
    #[error(
        "{}: this Deny has no Condition and covers kms:PutKeyPolicy for {who}, which would lock it out; remove the statement or exempt {who} from it, e.g. with the Condition {exemption}",
        at(.index, .sid)
    )]
    LockoutDenied {
        /// Index of the Deny statement in the document.
        index: usize,
        /// Its Sid, if any.
        sid: Option<String>,
        /// Who would be locked out, in words.
        who: String,
        /// A Condition block that would exempt them.
        exemption: String,
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
    let mut errors = Vec::new();
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
            check_structure(index, obj, &mut errors);
        }
    }
    if grammar_ok && !raw.is_empty() {
        errors.extend(lockout(&doc.indexed, guard));
    }
    if errors.is_empty() {
        Ok(doc.into_policy())
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
    errors: &mut Vec<ValidationError>,
) {
    let sid = stmt.get("Sid").and_then(Value::as_str).map(str::to_owned);
    let effect = stmt.get("Effect");
    let effect_ok = effect
        .and_then(Value::as_str)
        .is_some_and(|e| e.eq_ignore_ascii_case("allow") || e.eq_ignore_ascii_case("deny"));
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
            (false, false) => errors.push(ValidationError::MissingElement {
                index,
                sid,
                element,
                alternative,
            }),
            (true, true) => errors.push(ValidationError::ConflictingElements {
                index,
                sid,
                element,
                alternative,
            }),
            _ => {}
        }
    }
}

/// Whom the lockout check protects.
struct Target<'a> {
    guard: &'a LockoutGuard,
    root_arn: String,
}

impl Target<'_> {
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
                self.guard.account_id
            ),
        }
    }

    /// An AWS principal value in an Allow that grants the target: its own ARN, or the
    /// account (root delegates to IAM policies), or everyone.
    fn granted_by(&self, p: &str) -> bool {
        p == "*" || p == self.guard.account_id || self.role() == Some(p)
    }

    /// An AWS principal value in a Deny that reaches the target. Wider than
    /// `granted_by`: a Deny naming the account or one of the role's sessions applies too.
    fn denied_by(&self, p: &str) -> bool {
        if self.granted_by(p) || glob(p, &self.root_arn, false) {
            return true;
        }
        match self.role() {
            Some(role) => {
                glob(p, role, false) || self.session_prefix().is_some_and(|s| p.starts_with(&s))
            }
            None => false,
        }
    }

    /// `arn:P:sts::ACCOUNT:assumed-role/NAME/`, the prefix of the role's session ARNs.
    fn session_prefix(&self) -> Option<String> {
        let role = self.role()?;
        let name = role
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && role.contains(":role/"))?;
        Some(format!(
            "arn:{}:sts::{}:assumed-role/{name}/",
            self.guard.partition, self.guard.account_id
        ))
    }

    /// Whether a NotPrincipal list certainly exempts the target from a Deny. The caller
    /// is a role session, so for the role only a session ARN of that role counts.
    fn exempted_by(&self, not: &Principal) -> bool {
        let Some(aws) = not.aws() else {
            return false;
        };
        match self.session_prefix() {
            Some(prefix) => aws.iter().any(|p| p.starts_with(&prefix)),
            None => self.role().is_none() && aws.contains(&self.guard.account_id),
        }
    }
}

const PUT_KEY_POLICY: &str = "kms:PutKeyPolicy";

fn lockout(statements: &[(usize, Statement)], guard: &LockoutGuard) -> Vec<ValidationError> {
    let target = Target {
        guard,
        root_arn: format!("arn:{}:iam::{}:root", guard.partition, guard.account_id),
    };
    let mut errors = Vec::new();
    let allowed = statements.iter().any(|(_, s)| allow_covers(s, &target));
    if !allowed {
        errors.push(ValidationError::LockoutNotAllowed {
            who: target.who(),
            principal: target.principal().to_owned(),
            alternative: target.role().map(|_| target.root_arn.clone()),
        });
    }
    for (index, s) in statements {
        if deny_covers(s, &target) {
            errors.push(ValidationError::LockoutDenied {
                index: *index,
                sid: s.sid.clone(),
                who: target.who(),
                exemption: target.exemption(),
            });
        }
    }
    errors
}

/// Counts only what certainly grants access: NotPrincipal and NotResource allows are
/// too open-ended to rely on, and any Condition may not hold.
fn allow_covers(s: &Statement, t: &Target<'_>) -> bool {
    if s.effect != Some(Effect::Allow) || s.is_conditional() || s.not_principal.is_some() {
        return false;
    }
    let principal = match &s.principal {
        Some(Principal::Everyone) => true,
        Some(p) => p
            .aws()
            .is_some_and(|aws| aws.iter().any(|v| t.granted_by(v))),
        None => false,
    };
    let resource = s.resource.as_ref().is_some_and(|rs| {
        rs.iter()
            .any(|r| names_account_key(r, t.guard) == Some(true))
    });
    principal && resource && action_covers(s, false)
}

/// Counts anything that might deny: when unsure, it is a lockout.
fn deny_covers(s: &Statement, t: &Target<'_>) -> bool {
    if s.effect != Some(Effect::Deny) || s.is_conditional() {
        return false;
    }
    let principal = match (&s.principal, &s.not_principal) {
        (Some(Principal::Everyone), _) => true,
        (Some(p), _) => p
            .aws()
            .is_some_and(|aws| aws.iter().any(|v| t.denied_by(v))),
        (None, Some(not)) => !t.exempted_by(not),
        (None, None) => true,
    };
    let resource = match (&s.resource, &s.not_resource) {
        (Some(rs), _) => rs
            .iter()
            .any(|r| names_account_key(r, t.guard) != Some(false)),
        (None, Some(not)) => !not.contains("*"),
        (None, None) => true,
    };
    principal && resource && action_covers(s, true)
}

fn action_covers(s: &Statement, when_missing: bool) -> bool {
    let matches = |a: &String| glob(a, PUT_KEY_POLICY, true);
    match (&s.action, &s.not_action) {
        (Some(actions), _) => actions.iter().any(matches),
        (None, Some(not)) => !not.iter().any(matches),
        (None, None) => when_missing,
    }
}

/// Whether a Resource pattern names a key of the guarded account: `Some(true)` when it
/// does, `Some(false)` when it cannot, `None` when a wildcard makes it impossible to say.
fn names_account_key(pattern: &str, guard: &LockoutGuard) -> Option<bool> {
    if pattern == "*" {
        return Some(true);
    }
    let parts: Vec<&str> = pattern.splitn(6, ':').collect();
    let &[arn, partition, service, _region, account, resource] = parts.as_slice() else {
        return if pattern.contains(['*', '?']) {
            None
        } else {
            Some(false)
        };
    };
    let key_like = resource.starts_with("key/") || glob(resource, "key/", false);
    Some(
        glob(arn, "arn", false)
            && glob(partition, &guard.partition, false)
            && glob(service, "kms", false)
            && glob(account, &guard.account_id, false)
            && key_like,
    )
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
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
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
