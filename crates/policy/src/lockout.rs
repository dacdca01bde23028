//! The lockout check: a second, narrow IAM evaluator that decides whether a policy still lets
//! the protected principal (the remediator role, else the account root) call
//! `kms:PutKeyPolicy` on the key — an Allow that covers it without a condition, and no Deny
//! that covers it. Written principal values are read as written (the canonical form rewrites
//! some); wildcards are [`pattern`]'s.

use std::collections::BTreeSet;

use serde_json::Value;

use super::arn::Arn;
use super::canonical::{Conditions, Effect, Folded, Operator, Principal, Statement, is_account_id};
use super::pattern;
use super::validate::{LockoutGuard, ValidationError};

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
    let Arn {
        partition,
        service: "iam",
        region: "",
        account,
        resource,
    } = Arn::parse(arn)?
    else {
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
            || pattern::matches(p, &self.root_arn, false)
        {
            return true;
        }
        match self.role() {
            Some(role) => {
                pattern::matches(p, role, false)
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
        } else if pattern.contains("${") || pattern::matches(pattern, key, true) {
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
        "StringLike" => (|v, a| pattern::matches(v, a, false), false),
        "StringNotLike" => (|v, a| pattern::matches(v, a, false), true),
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
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| pattern::matches(p, a, false))
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
pub(crate) fn lockout(
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

/// The lockout a statement added to a checked document causes (a Deny that covers the
/// target), with `raw` the statement as written (`validate_merged`'s extras).
pub(crate) fn denial_of(
    index: usize,
    s: &Statement,
    raw: &Value,
    guard: &LockoutGuard,
) -> Option<ValidationError> {
    let written = Written {
        principal: written_aws(Some(raw), "Principal"),
        not_principal: written_aws(Some(raw), "NotPrincipal"),
    };
    denial(index, s, &written, &Target::new(guard))
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
    let matches = |a: &Folded| pattern::matches(a.as_written(), PUT_KEY_POLICY, true);
    match (&s.action, &s.not_action) {
        (Some(actions), _) => actions.iter().any(matches),
        (None, Some(not)) => !not.iter().any(matches),
        (None, None) => when_missing,
    }
}
