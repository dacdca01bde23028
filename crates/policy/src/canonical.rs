//! Parsing a key policy into a canonical form in which `==` means "same meaning".

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// Why a document cannot be read as a key policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not JSON at all.
    #[error(
        "policy is not valid JSON at line {line}, column {column}: {reason}; fix the JSON syntax"
    )]
    NotJson {
        /// 1-based line of the syntax error, as reported by serde_json.
        line: usize,
        /// 1-based column of the syntax error, as reported by serde_json.
        column: usize,
        /// serde_json's description of the problem.
        reason: String,
    },
    /// The document is JSON but not an object.
    #[error(
        "policy must be a JSON object {{\"Version\": ..., \"Statement\": [...]}}, found {found}"
    )]
    NotAnObject {
        /// What was found instead, e.g. "an array".
        found: String,
    },
    /// The document has no `Statement` element.
    #[error(
        "policy has no \"Statement\" element; add a \"Statement\" array with at least one statement"
    )]
    MissingStatement,
    /// An element has a JSON type the policy grammar does not allow.
    #[error("{element} must be {expected}, found {found}")]
    WrongType {
        /// Path of the element, e.g. `Statement[1].Principal.AWS[0]`.
        element: String,
        /// What the grammar allows there.
        expected: &'static str,
        /// What was found instead.
        found: String,
    },
    /// Two condition keys under one operator differ only in case.
    #[error(
        "{element} has condition keys {first:?} and {second:?}, which differ only in case and so name the same key; merge their values under one key"
    )]
    DuplicateConditionKey {
        /// Path of the condition operator block.
        element: String,
        /// The first spelling of the key.
        first: String,
        /// The second spelling of the key.
        second: String,
    },
}

impl From<serde_json::Error> for PolicyError {
    fn from(e: serde_json::Error) -> Self {
        let full = e.to_string();
        // serde_json appends " at line L column C"; the fields carry that already.
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let reason = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        PolicyError::NotJson {
            line: e.line(),
            column: e.column(),
            reason,
        }
    }
}

/// A key policy parsed into canonical form; `==` is semantic equivalence.
///
/// Statements and list entries are sets (order and duplicates do not matter), action
/// names, condition keys and `Effect` are case-folded, account roots are reduced to the
/// bare account id, and condition values are strings. Everything else, including
/// elements this module does not know, is kept and compared exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPolicy {
    pub(super) version: Option<String>,
    pub(super) statements: BTreeSet<Statement>,
    pub(super) other: BTreeMap<String, Json>,
}

impl CanonicalPolicy {
    /// Parses policy text into canonical form.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let value: Value = serde_json::from_str(text)?;
        Self::from_value(&value)
    }

    /// Reads an already parsed JSON document into canonical form.
    pub fn from_value(v: &Value) -> Result<Self, PolicyError> {
        let mut doc = read_document(v)?;
        match std::mem::take(&mut doc.errors).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(doc.into_policy()),
        }
    }

    /// Every `AWS` principal the policy names (in Principal or NotPrincipal), sorted: the
    /// principals KMS checks exist when the policy is written.
    pub fn aws_principals(&self) -> BTreeSet<&str> {
        self.statements
            .iter()
            .flat_map(|s| [&s.principal, &s.not_principal])
            .filter_map(|p| match p {
                Some(Principal::Typed(types)) => types.get("AWS"),
                _ => None,
            })
            .flatten()
            .map(String::as_str)
            .filter(|p| *p != "*")
            .collect()
    }

    /// Deterministic canonical JSON (sorted keys/lists, normalised values) for logs and diffs.
    ///
    /// Every list is written as an array and every account root as the bare account id,
    /// so that two equivalent policies always render to the same text.
    pub fn to_value(&self) -> Value {
        let mut fields = BTreeMap::new();
        if let Some(v) = &self.version {
            fields.insert("Version".to_owned(), Value::String(v.clone()));
        }
        let statements = self.statements.iter().map(Statement::to_value).collect();
        fields.insert("Statement".to_owned(), Value::Array(statements));
        for (k, v) in &self.other {
            fields.insert(k.clone(), v.to_value());
        }
        sorted_object(fields)
    }
}

/// Whether two policy texts mean the same thing.
pub fn equivalent(a: &str, b: &str) -> Result<bool, PolicyError> {
    Ok(CanonicalPolicy::parse(a)? == CanonicalPolicy::parse(b)?)
}

/// JSON with a total order, so unknown elements can live inside ordered sets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Json {
    Null,
    Bool(bool),
    // Stored as text because `serde_json::Number` has no `Ord`.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    fn from_value(v: &Value) -> Self {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.to_string()),
            Value::String(s) => Json::String(s.clone()),
            Value::Array(a) => Json::Array(a.iter().map(Json::from_value).collect()),
            Value::Object(o) => Json::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Json::from_value(v)))
                    .collect(),
            ),
        }
    }

    pub(super) fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => n
                .parse::<serde_json::Number>()
                .map(Value::Number)
                // Unreachable: the text came from a `Number`; keep the data regardless.
                .unwrap_or_else(|_| Value::String(n.clone())),
            Json::String(s) => Value::String(s.clone()),
            Json::Array(a) => Value::Array(a.iter().map(Json::to_value).collect()),
            Json::Object(o) => sorted_object(o.iter().map(|(k, v)| (k.clone(), v.to_value()))),
        }
    }
}

/// Builds an object in sorted key order even if serde_json's `preserve_order` is
/// switched on by another crate in the build.
fn sorted_object(fields: impl IntoIterator<Item = (String, Value)>) -> Value {
    let sorted: BTreeMap<String, Value> = fields.into_iter().collect();
    Value::Object(sorted.into_iter().collect::<Map<String, Value>>())
}

/// `Effect`, case-folded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Effect {
    Allow,
    Deny,
    // Kept verbatim: an invalid value must not become equal to a valid one.
    Other(String),
}

impl Effect {
    fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("allow") {
            Effect::Allow
        } else if s.eq_ignore_ascii_case("deny") {
            Effect::Deny
        } else {
            Effect::Other(s.to_owned())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
            Effect::Other(s) => s,
        }
    }
}

/// `Principal` / `NotPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Principal {
    /// `"Principal": "*"`, which is not the same as `{"AWS": "*"}`.
    Everyone,
    /// Principal type (`AWS`, `Service`, ...) to values; types with no values are dropped.
    Typed(BTreeMap<String, BTreeSet<String>>),
}

impl Principal {
    fn to_value(&self) -> Value {
        match self {
            Principal::Everyone => Value::String("*".to_owned()),
            Principal::Typed(m) => sorted_object(m.iter().map(|(k, v)| (k.clone(), list(v)))),
        }
    }
}

/// The base condition operators of the IAM policy language, in their documented spelling.
const OPERATORS: [&str; 27] = [
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
];

/// A condition operator name as IAM reads it, for judging what a block means (the
/// canonical form keeps operator names as written: a re-cased operator is still drift).
///
/// IAM's User Guide documents each operator in one spelling ("IAM JSON policy elements:
/// Condition operators") and context key names as not case-sensitive ("IAM JSON policy
/// elements: Condition"), but says nothing of the case of operator names; IAM refuses
/// `stringEquals` in a role policy ("Invalid Condition type"), so a re-cased operator is
/// either refused, or matches nothing, or means its documented twin. Reading it as the
/// twin is therefore never wrong about access a policy KMS stored can grant: an Allow
/// under an operator IAM does not know grants nothing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Operator<'a> {
    /// `ForAnyValue`, `ForAllValues` (any case) or another prefix before a `:`, as written.
    qualifier: Option<&'a str>,
    /// The base operator in its documented spelling when IAM has it, else as written.
    pub(super) base: &'a str,
    /// The `...IfExists` form (any case): it also holds when the key is absent.
    pub(super) if_exists: bool,
}

impl<'a> Operator<'a> {
    /// Reads `ForAnyValue:StringEqualsIfExists`, `ARNLike`, `stringequals`, ...
    pub(super) fn read(op: &'a str) -> Self {
        // IAM operator names are ASCII: matching ignores ASCII case (see the type's doc).
        let (qualifier, rest) = match op.split_once(':') {
            Some((q, rest)) => (Some(q), rest),
            None => (None, op),
        };
        let cut = rest.len().checked_sub("IfExists".len());
        let (rest, if_exists) = match cut.and_then(|at| rest.split_at_checked(at)) {
            Some((base, suffix)) if suffix.eq_ignore_ascii_case("IfExists") => (base, true),
            _ => (rest, false),
        };
        let base = OPERATORS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(rest))
            .map_or(rest, |known| *known);
        Operator {
            qualifier,
            base,
            if_exists,
        }
    }

    /// No set qualifier and no `IfExists`: the plain operator.
    pub(super) fn is_plain(&self) -> bool {
        self.qualifier.is_none() && !self.if_exists
    }

    /// Whether a set qualifier (`ForAnyValue:`, `ForAllValues:`) precedes the operator.
    pub(super) fn is_qualified(&self) -> bool {
        self.qualifier.is_some()
    }

    /// `ForAnyValue:` (any case).
    pub(super) fn is_for_any_value(&self) -> bool {
        self.qualifier
            .is_some_and(|q| q.eq_ignore_ascii_case("ForAnyValue"))
    }

    /// Whether both carry the same set qualifier (or none).
    pub(super) fn same_qualifier(&self, other: &Operator<'_>) -> bool {
        match (self.qualifier, other.qualifier) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }

    /// StringNotEquals, StringNotLike, NumericNotEquals, DateNotEquals, ArnNotEquals,
    /// ArnNotLike, NotIpAddress: the values are NORed, and a missing key satisfies it.
    pub(super) fn is_negated(&self) -> bool {
        self.base.contains("Not")
    }
}

/// Operator (case-sensitive) to condition key (case-folded) to values (as strings).
pub(super) type Conditions = BTreeMap<String, BTreeMap<Folded, BTreeSet<String>>>;

/// One statement in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Statement {
    // First, so that canonical statement order is by Sid.
    pub(super) sid: Option<String>,
    pub(super) effect: Option<Effect>,
    pub(super) principal: Option<Principal>,
    pub(super) not_principal: Option<Principal>,
    pub(super) action: Option<BTreeSet<Folded>>,
    pub(super) not_action: Option<BTreeSet<Folded>>,
    pub(super) resource: Option<BTreeSet<String>>,
    pub(super) not_resource: Option<BTreeSet<String>>,
    pub(super) condition: Option<Conditions>,
    pub(super) other: BTreeMap<String, Json>,
    /// Where it was first written; not part of its meaning.
    pub(super) at: Position,
}

/// The 1-based position of a statement in the document it was read from, for messages
/// that name a statement without a Sid. Every position equals every other, so that it
/// never takes part in equivalence or canonical order: a set of equal statements keeps
/// the first one read, and with it the first position.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Position(pub(super) Option<usize>);

impl PartialEq for Position {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Position {}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Position {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// A name IAM matches ASCII-case-insensitively (an action name, a condition key), kept as
/// first written: equal to and ordered like its lower-case form, shown as written. A set of
/// them keeps the first spelling of each name (`BTreeSet::insert` never replaces an equal
/// element), so reading a policy costs no lower-cased copies and display loses nothing.
#[derive(Debug, Clone)]
pub(super) struct Folded(String);

impl Folded {
    pub(super) fn new(s: &str) -> Self {
        Folded(s.to_owned())
    }

    /// As first written (`kms:GenerateDataKey*`).
    pub(super) fn as_written(&self) -> &str {
        &self.0
    }

    /// The lower-case form, the same for every spelling (canonical text).
    pub(super) fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for Folded {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Folded {}

impl PartialOrd for Folded {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Folded {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        // Most names compared are spelled the same: one memcmp.
        if a == b {
            return std::cmp::Ordering::Equal;
        }
        for (x, y) in a.iter().zip(b) {
            match x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()) {
                std::cmp::Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        a.len().cmp(&b.len())
    }
}

/// How a statement renders its folded names.
#[derive(Clone, Copy)]
enum Names<'a> {
    /// Lower-cased: the canonical text, the same for equivalent statements.
    Folded,
    /// As written; where the other side of a pair has an equal name, its spelling.
    Written(Option<&'a Statement>),
}

impl Statement {
    /// Canonical JSON: names folded, the same text for equivalent statements.
    pub(super) fn to_value(&self) -> Value {
        self.render(Names::Folded)
    }

    /// Like [`Statement::to_value`] but with action names and condition keys as written:
    /// as `prefer` (the other side of a pair) spells them where it has them too, so that a
    /// re-casing alone is no difference, else as this statement spells them.
    pub(super) fn display_value(&self, prefer: Option<&Statement>) -> Value {
        self.render(Names::Written(prefer))
    }

    fn render(&self, names: Names<'_>) -> Value {
        let shown = |n: &Folded, other: Option<&Folded>| match names {
            Names::Folded => n.folded(),
            Names::Written(_) => other.unwrap_or(n).as_written().to_owned(),
        };
        let prefer = match names {
            Names::Written(p) => p,
            Names::Folded => None,
        };
        let actions = |v: &BTreeSet<Folded>, theirs: Option<&BTreeSet<Folded>>| {
            let names = v.iter().map(|a| shown(a, theirs.and_then(|t| t.get(a))));
            Value::Array(names.map(Value::String).collect())
        };
        let mut f: BTreeMap<String, Value> = BTreeMap::new();
        let mut put = |k: &str, v: Value| {
            f.insert(k.to_owned(), v);
        };
        if let Some(s) = &self.sid {
            put("Sid", Value::String(s.clone()));
        }
        if let Some(e) = &self.effect {
            put("Effect", Value::String(e.as_str().to_owned()));
        }
        if let Some(p) = &self.principal {
            put("Principal", p.to_value());
        }
        if let Some(p) = &self.not_principal {
            put("NotPrincipal", p.to_value());
        }
        let their =
            |f: fn(&Statement) -> &Option<BTreeSet<Folded>>| prefer.and_then(|p| f(p).as_ref());
        if let Some(v) = &self.action {
            put("Action", actions(v, their(|s| &s.action)));
        }
        if let Some(v) = &self.not_action {
            put("NotAction", actions(v, their(|s| &s.not_action)));
        }
        for (k, v) in [
            ("Resource", &self.resource),
            ("NotResource", &self.not_resource),
        ] {
            if let Some(v) = v {
                put(k, list(v));
            }
        }
        if let Some(c) = &self.condition {
            let theirs = prefer.and_then(|p| p.condition.as_ref());
            let ops = c.iter().map(|(op, keys)| {
                let other = theirs.and_then(|t| t.get(op));
                let keys = keys.iter().map(|(k, vals)| {
                    let spelled = other.and_then(|o| o.get_key_value(k)).map(|(k, _)| k);
                    (shown(k, spelled), list(vals))
                });
                (op.clone(), sorted_object(keys))
            });
            put("Condition", sorted_object(ops));
        }
        for (k, v) in &self.other {
            put(k, v.to_value());
        }
        sorted_object(f)
    }

    /// Whether the statement carries a condition that could make it not apply.
    pub(super) fn is_conditional(&self) -> bool {
        self.condition.as_ref().is_some_and(|c| !c.is_empty())
    }
}

fn list(items: &BTreeSet<String>) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

/// Where an element sits in the document (`Statement[2].Principal.AWS[0]`), written out
/// only when an error names it.
#[derive(Clone, Copy)]
pub(super) enum Path<'a> {
    Root(&'a str),
    Index(&'a Path<'a>, usize),
    Key(&'a Path<'a>, &'a str),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
        }
    }
}

/// A document read leniently: every grammar problem is collected, not only the first.
pub(super) struct Document {
    pub(super) version: Option<String>,
    /// Statements that parsed, with their index in the document.
    pub(super) indexed: Vec<(usize, Statement)>,
    pub(super) other: BTreeMap<String, Json>,
    pub(super) errors: Vec<PolicyError>,
}

impl Document {
    /// The canonical policy of the statements that parsed.
    pub(super) fn into_policy(self) -> CanonicalPolicy {
        CanonicalPolicy {
            version: self.version,
            statements: self.indexed.into_iter().map(|(_, s)| s).collect(),
            other: self.other,
        }
    }
}

/// The statements of a `Statement` element, which may be one object or an array.
pub(super) fn statement_values(v: &Value) -> Option<Vec<&Value>> {
    match v {
        Value::Object(_) => Some(vec![v]),
        Value::Array(a) => Some(a.iter().collect()),
        _ => None,
    }
}

/// Reads a document; only "not an object" stops it, everything else lands in `errors`.
pub(super) fn read_document(v: &Value) -> Result<Document, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| PolicyError::NotAnObject { found: describe(v) })?;
    let mut errors = Vec::new();
    let mut version = None;
    let mut other = BTreeMap::new();
    let mut indexed = Vec::new();
    let mut saw_statement = false;
    for (key, value) in obj {
        match key.as_str() {
            "Version" => match value {
                Value::String(s) => version = Some(s.clone()),
                _ => errors.push(wrong_type(Path::Root("Version"), "a string", value)),
            },
            "Statement" => {
                saw_statement = true;
                let Some(items) = statement_values(value) else {
                    errors.push(wrong_type(
                        Path::Root("Statement"),
                        "an object or an array of objects",
                        value,
                    ));
                    continue;
                };
                let single = value.is_object();
                let root = Path::Root("Statement");
                for (i, item) in items.into_iter().enumerate() {
                    let path = if single { root } else { Path::Index(&root, i) };
                    if let Some(s) = read_statement(path, item, i + 1, &mut errors) {
                        indexed.push((i, s));
                    }
                }
            }
            _ => {
                other.insert(key.clone(), Json::from_value(value));
            }
        }
    }
    if !saw_statement {
        errors.push(PolicyError::MissingStatement);
    }
    Ok(Document {
        version,
        indexed,
        other,
        errors,
    })
}

/// One statement; `position` is its 1-based place in the document.
pub(super) fn read_statement(
    path: Path<'_>,
    v: &Value,
    position: usize,
    errors: &mut Vec<PolicyError>,
) -> Option<Statement> {
    let Some(obj) = v.as_object() else {
        errors.push(wrong_type(path, "an object", v));
        return None;
    };
    let before = errors.len();
    let mut s = Statement {
        sid: None,
        effect: None,
        principal: None,
        not_principal: None,
        action: None,
        not_action: None,
        resource: None,
        not_resource: None,
        condition: None,
        other: BTreeMap::new(),
        at: Position(Some(position)),
    };
    for (key, value) in obj {
        let at = Path::Key(&path, key);
        match key.as_str() {
            "Sid" => match value {
                // A missing Sid and an empty Sid both mean "no identifier".
                Value::String(x) if x.is_empty() => {}
                Value::String(x) => s.sid = Some(x.clone()),
                _ => errors.push(wrong_type(at, "a string", value)),
            },
            "Effect" => match value {
                Value::String(x) => s.effect = Some(Effect::parse(x)),
                _ => errors.push(wrong_type(at, "the string \"Allow\" or \"Deny\"", value)),
            },
            "Principal" => s.principal = keep(read_principal(at, value), errors),
            "NotPrincipal" => s.not_principal = keep(read_principal(at, value), errors),
            "Action" => s.action = keep(read_actions(at, value), errors),
            "NotAction" => s.not_action = keep(read_actions(at, value), errors),
            "Resource" => s.resource = keep(read_strings(at, value), errors),
            "NotResource" => s.not_resource = keep(read_strings(at, value), errors),
            "Condition" => s.condition = read_conditions(at, value, errors),
            _ => {
                s.other.insert(key.clone(), Json::from_value(value));
            }
        }
    }
    (errors.len() == before).then_some(s)
}

/// Keeps a value or records why it was rejected, so one bad element does not hide others.
fn keep<T>(r: Result<T, PolicyError>, errors: &mut Vec<PolicyError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn read_strings(path: Path<'_>, v: &Value) -> Result<BTreeSet<String>, PolicyError> {
    read_strings_as(path, v, str::to_owned)
}

/// A string or an array of strings, each mapped by `f`.
fn read_strings_as<T: Ord>(
    path: Path<'_>,
    v: &Value,
    f: impl Fn(&str) -> T,
) -> Result<BTreeSet<T>, PolicyError> {
    match v {
        Value::String(s) => Ok(BTreeSet::from([f(s)])),
        Value::Array(items) => {
            // `insert` keeps the first of equal elements (a `Folded` name's first spelling);
            // collecting would keep the last.
            let mut set = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => {
                        set.insert(f(s));
                    }
                    _ => return Err(wrong_type(Path::Index(&path, i), "a string", item)),
                }
            }
            Ok(set)
        }
        _ => Err(wrong_type(path, "a string or an array of strings", v)),
    }
}

fn read_actions(path: Path<'_>, v: &Value) -> Result<BTreeSet<Folded>, PolicyError> {
    // IAM matches action names case-insensitively.
    read_strings_as(path, v, Folded::new)
}

fn read_principal(path: Path<'_>, v: &Value) -> Result<Principal, PolicyError> {
    const EXPECTED: &str =
        "\"*\" or an object mapping principal types to strings or arrays of strings";
    match v {
        Value::String(s) if s == "*" => Ok(Principal::Everyone),
        Value::Object(types) => {
            let mut out = BTreeMap::new();
            for (kind, values) in types {
                let at = Path::Key(&path, kind);
                let set = if kind == "AWS" {
                    read_strings_as(at, values, account_principal)?
                } else {
                    read_strings(at, values)?
                };
                if !set.is_empty() {
                    out.insert(kind.clone(), set);
                }
            }
            Ok(Principal::Typed(out))
        }
        _ => Err(wrong_type(path, EXPECTED, v)),
    }
}

/// `arn:PARTITION:iam::ID:root` becomes `ID`: an account id lives in exactly one
/// partition, so the partition adds nothing and KMS itself stores the ARN form.
fn account_principal(p: &str) -> String {
    let root = p
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(":iam::"))
        .and_then(|(partition, rest)| {
            let valid = !partition.is_empty()
                && partition
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            valid.then_some(rest)
        })
        .and_then(|rest| rest.strip_suffix(":root"))
        .filter(|id| is_account_id(id));
    root.unwrap_or(p).to_owned()
}

pub(super) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn read_conditions(path: Path<'_>, v: &Value, errors: &mut Vec<PolicyError>) -> Option<Conditions> {
    const EXPECTED: &str = "an object mapping condition operators to objects";
    let Some(ops) = v.as_object() else {
        errors.push(wrong_type(path, EXPECTED, v));
        return None;
    };
    let before = errors.len();
    let mut out = Conditions::new();
    for (op, keys) in ops {
        let op_path = Path::Key(&path, op);
        let Some(keys) = keys.as_object() else {
            errors.push(wrong_type(
                op_path,
                "an object mapping condition keys to values",
                keys,
            ));
            continue;
        };
        let mut folded: BTreeMap<Folded, BTreeSet<String>> = BTreeMap::new();
        // The keys seen in this block (a few at most): a linear scan allocates nothing.
        let mut seen: Vec<&String> = Vec::new();
        for (key, values) in keys {
            if let Some(first) = seen.iter().find(|k| k.eq_ignore_ascii_case(key)) {
                // Merging or picking one would guess at what IAM does with the clash.
                errors.push(PolicyError::DuplicateConditionKey {
                    element: op_path.to_string(),
                    first: (*first).clone(),
                    second: key.clone(),
                });
                continue;
            }
            seen.push(key);
            match read_condition_values(Path::Key(&op_path, key), values) {
                Ok(set) => {
                    folded.insert(Folded::new(key), set);
                }
                Err(e) => errors.push(e),
            }
        }
        out.insert(op.clone(), folded);
    }
    (errors.len() == before).then_some(out)
}

fn read_condition_values(path: Path<'_>, v: &Value) -> Result<BTreeSet<String>, PolicyError> {
    const EXPECTED: &str = "a string, number or boolean, or an array of them";
    let scalar = |p: Path<'_>, x: &Value| match x {
        Value::String(s) => Ok(s.clone()),
        // IAM compares condition values as strings: `true` is "true", `5` is "5".
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(wrong_type(p, "a string, number or boolean", x)),
    };
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| scalar(Path::Index(&path, i), x))
            .collect(),
        Value::Object(_) | Value::Null => Err(wrong_type(path, EXPECTED, v)),
        _ => scalar(path, v).map(|s| BTreeSet::from([s])),
    }
}

fn wrong_type(element: Path<'_>, expected: &'static str, found: &Value) -> PolicyError {
    PolicyError::WrongType {
        element: element.to_string(),
        expected,
        found: describe(found),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", Value::String(s.clone())),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}
