//! Checks a rendered policy against what KMS accepts and against locking the
//! remediator out, before anything is written.

use std::fmt;

use serde_json::Value;

use super::Containment;
use super::canonical::{
    CanonicalPolicy, Path, PolicyError, read_document, read_statement, statement_values,
};
use super::lockout;

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
        errors.extend(lockout::lockout(&doc.indexed, &raw, guard));
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
        errors.extend(lockout::denial_of(index, &s, raw, guard));
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
