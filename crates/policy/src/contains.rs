//! "Must-contain" baseline matching (`BASELINE_MATCH=contains`): every baseline statement
//! must be in the live policy, and extra live statements may stay when they grant nothing
//! public, cross-account or administrative and take nothing away from what the baseline
//! grants.
//!
//! A baseline statement is present when a live statement has the same canonical form, Sid
//! included (as in exact matching, where a Sid change is drift too). Each distinct extra
//! statement E is judged alone against the baseline B with the access explanation,
//! `explain(B, B + E)`: any gain rated `public`, `cross-account` or `admin` removes it, any
//! loss (an added Deny of what B allows) removes it as contradicting the baseline, and so
//! does reusing the Sid of a baseline statement (it is a changed copy of that statement,
//! which the baseline's version replaces) or naming a deleted principal (an IAM unique id,
//! which KMS refuses to write). Everything else is kept. Judging extras one at
//! a time is enough: a unit of access the kept extras grant together is one some kept
//! extra grants alone, rated the same, so the merged document never gains more than
//! `access` over the baseline.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::canonical::{
    CanonicalPolicy, Json, PolicyError, Principal, Statement, read_document, statement_values,
};
use super::{Exposure, MAX_POLICY_BYTES, Severity, Trust, explain, is_unique_id};

/// One live statement the baseline does not have, and what contains matching made of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Extra {
    /// Its Sid, if it has one.
    pub sid: Option<String>,
    /// The statement as written in the live policy (the first spelling, when the live
    /// policy has several equivalent copies).
    pub statement: Value,
    /// What adding it to the baseline means as access ([`explain`]): `access` or
    /// `cosmetic` for a kept extra; `public`, `cross-account`, `admin` or `narrowing` (a
    /// contradiction) for most removed ones. A changed copy of a baseline statement is
    /// removed whatever its severity.
    pub severity: Severity,
    /// Why it was kept or removed, with the access it grants or takes away, e.g.
    /// `grants public access: * gains kms:Decrypt (no condition); ...`.
    pub why: String,
}

/// The live policy measured against a baseline in contains mode.
///
/// [`Containment::satisfied`] says whether the live policy may stay as it is; when not,
/// [`Containment::merged`] is the document to write instead.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Containment {
    /// The document that satisfies the baseline while keeping the allowed extras.
    ///
    /// When [`satisfied`](Containment::satisfied), the live text itself: it already is
    /// that document, and nothing is written. Otherwise, with no extra kept, the baseline
    /// text, what exact matching writes; else the baseline's top-level elements (`Version`,
    /// `Id`, ...) in its order, its statements as written, then the kept extras as written
    /// in the live policy, in canonical order (by Sid), so that live policies with the same
    /// extras in another order merge to the same document: one element and one statement
    /// a line (the baseline's as written, the extras compact), or compact throughout when
    /// that would be over [`MAX_POLICY_BYTES`].
    pub merged: String,
    /// Baseline statements the live policy lacks, in canonical order (by Sid): their Sid,
    /// or when they have none a short description,
    /// `(no Sid) Allow {"AWS":["arn:aws:iam::111122223333:role/App"]}: kms:Decrypt`.
    pub missing: Vec<String>,
    /// Extras that stay, each once, in canonical order.
    pub kept: Vec<Extra>,
    /// Extras that a write of `merged` removes, each once, in canonical order.
    pub removed: Vec<Extra>,
    /// Top-level elements (`Version`, `Id`, unknown ones) the live policy has otherwise
    /// than the baseline, which `merged` sets back, e.g.
    /// `Version: "2008-10-17" in the live policy, "2012-10-17" in the baseline`.
    pub elements: Vec<String>,
    /// Why the live policy could not be read, when it could not: then nothing of it is
    /// kept, every baseline statement is missing and `merged` is the baseline (a live
    /// policy that does not parse is drift, never an error that blocks the fix).
    pub unreadable: Option<String>,
    /// The live policy in canonical form, when it could be read: what
    /// [`assess_parsed`](crate::assess_parsed) takes, so that an event parses its live
    /// policy once. Not serialised.
    #[serde(skip)]
    pub live: Option<CanonicalPolicy>,
}

impl Containment {
    /// True when the live policy satisfies the baseline as it is: it could be read, no
    /// baseline statement is missing, no extra has to go and the top-level elements are
    /// the baseline's. Then the live policy is equivalent to `merged` and nothing needs
    /// writing.
    pub fn satisfied(&self) -> bool {
        self.unreadable.is_none()
            && self.missing.is_empty()
            && self.removed.is_empty()
            && self.elements.is_empty()
    }
}

/// Measures a live policy against a baseline in contains mode (see the module
/// documentation for the rules): the baseline statements it lacks, the extras it may keep
/// and must lose (each with its severity and why), and the merged document to write.
///
/// `trust` is the key's own account and the trusted ones, as [`explain`] takes it.
/// The baseline must parse ([`CanonicalPolicy::parse`]); a live policy that does not parse
/// is reported in [`Containment::unreadable`] and replaced by the baseline. Each text is
/// parsed once; each distinct extra costs one [`explain`] of that statement. A caller that
/// already holds the baseline's canonical form (from [`validate`](crate::validate)) uses
/// [`contain_with`] and saves a parse of the baseline.
pub fn contain(live: &str, baseline: &str, trust: &Trust) -> Result<Containment, PolicyError> {
    let value: Value = serde_json::from_str(baseline)?;
    let policy = CanonicalPolicy::from_value(&value)?;
    Ok(measure(live, baseline, Some(&value), &policy, trust))
}

/// [`contain`] for a baseline already parsed: `baseline` must be the canonical form of
/// `baseline_text` (what [`validate`](crate::validate) returned for it). The text is read
/// again only to write a merged document that keeps extras (its statements as written);
/// a satisfied live policy costs a parse of the live policy, as [`compare`](crate::compare),
/// and one [`explain`] of each extra. Should the text not parse after all, the merged
/// document is written from the canonical form, which is equivalent.
pub fn contain_with(
    live: &str,
    baseline_text: &str,
    baseline: &CanonicalPolicy,
    trust: &Trust,
) -> Containment {
    measure(live, baseline_text, None, baseline, trust)
}

/// [`contain`]; `value` is `text` parsed, when the caller has it.
fn measure(
    live: &str,
    text: &str,
    value: Option<&Value>,
    base: &CanonicalPolicy,
    trust: &Trust,
) -> Containment {
    let unreadable = |e: PolicyError| Containment {
        merged: text.to_owned(),
        missing: base.statements.iter().map(name).collect(),
        kept: Vec::new(),
        removed: Vec::new(),
        elements: Vec::new(),
        unreadable: Some(format!(
            "live policy does not parse ({e}); the baseline replaces it"
        )),
        live: None,
    };
    let live_value: Value = match serde_json::from_str(live) {
        Ok(v) => v,
        Err(e) => return unreadable(e.into()),
    };
    let mut live_doc = match read_document(&live_value) {
        Ok(doc) => doc,
        Err(e) => return unreadable(e),
    };
    if let Some(e) = std::mem::take(&mut live_doc.errors).into_iter().next() {
        return unreadable(e);
    }
    let live_raw = live_value
        .get("Statement")
        .and_then(statement_values)
        .unwrap_or_default();

    // Distinct extras in canonical order, each with its first position in the live policy.
    let mut present: BTreeSet<&Statement> = BTreeSet::new();
    let mut extras: BTreeMap<&Statement, usize> = BTreeMap::new();
    for (i, s) in &live_doc.indexed {
        if base.statements.contains(s) {
            present.insert(s);
        } else {
            extras.entry(s).or_insert(*i);
        }
    }
    let missing = base
        .statements
        .iter()
        .filter(|s| !present.contains(s))
        .map(name)
        .collect();

    let base_sids: BTreeSet<&str> = base
        .statements
        .iter()
        .filter_map(|s| s.sid.as_deref())
        .collect();
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for (s, i) in extras {
        let from = covers_of(base, s);
        let mut to = from.clone();
        to.statements.insert(s.clone());
        let exposure = explain(&from, &to, trust);
        let reused_sid = s.sid.as_deref().filter(|sid| base_sids.contains(sid));
        let (keep, why) = judge(&exposure, reused_sid, deleted_principal(s));
        let extra = Extra {
            sid: s.sid.clone(),
            statement: live_raw.get(i).map_or(Value::Null, |v| (*v).clone()),
            severity: exposure.severity,
            why,
        };
        if keep {
            kept.push(extra)
        } else {
            removed.push(extra)
        }
    }

    let elements = elements(&live_doc.version, &live_doc.other, base);
    let mut c = Containment {
        merged: String::new(),
        missing,
        kept,
        removed,
        elements,
        unreadable: None,
        live: None,
    };
    // Satisfied (the steady state): nothing to write, nothing to build.
    c.merged = if c.satisfied() {
        live.to_owned()
    } else if c.kept.is_empty() {
        text.to_owned()
    } else {
        write_merged(text, value, base, &c.kept)
    };
    c.live = Some(live_doc.into_policy());
    c
}

/// The baseline's top-level elements with its statements as written followed by the kept
/// extras; from the canonical form if the text does not read as a policy.
///
/// The text is not parsed into a tree: its elements and statements are copied verbatim,
/// one per line, and each kept extra is written compact on a line of its own, which costs
/// a scan of the text rather than a parse. Over [`MAX_POLICY_BYTES`] so, the document is
/// parsed (`value`, when the caller has it) and written compact throughout.
fn write_merged(
    text: &str,
    value: Option<&Value>,
    base: &CanonicalPolicy,
    kept: &[Extra],
) -> String {
    if let Some(verbatim) = write_verbatim(text, kept)
        && verbatim.len() <= MAX_POLICY_BYTES
    {
        return verbatim;
    }
    let parsed;
    let value = match value {
        Some(v) => Some(v),
        None => {
            parsed = serde_json::from_str::<Value>(text).ok();
            parsed.as_ref()
        }
    };
    let canonical;
    let (fields, written) = match value.and_then(parts) {
        Some(p) => p,
        None => {
            canonical = base.to_value();
            match parts(&canonical) {
                Some(p) => p,
                // Unreachable: canonical JSON is an object with a Statement array.
                None => return text.to_owned(),
            }
        }
    };
    let doc = Merged {
        fields: fields.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        statements: written
            .into_iter()
            .chain(kept.iter().map(|e| &e.statement))
            .collect(),
    };
    // Unreachable errors: JSON values with string keys always serialise. The baseline
    // alone is the safe answer regardless.
    match serde_json::to_string_pretty(&doc) {
        Ok(pretty) if pretty.len() <= MAX_POLICY_BYTES => pretty,
        _ => serde_json::to_string(&doc).unwrap_or_else(|_| text.to_owned()),
    }
}

/// [`write_merged`] without parsing the baseline into a tree: `None` when its text is
/// not an object with a Statement (then the tree path decides).
fn write_verbatim(text: &str, kept: &[Extra]) -> Option<String> {
    let RawFields(fields) = serde_json::from_str(text).ok()?;
    let statement = fields.iter().find(|(k, _)| k == "Statement")?.1;
    let written: Vec<&RawValue> = match statement.get().as_bytes().first() {
        Some(b'[') => serde_json::from_str(statement.get()).ok()?,
        Some(b'{') => vec![statement],
        _ => return None,
    };
    let extras: Vec<Box<RawValue>> = kept
        .iter()
        .map(|e| serde_json::value::to_raw_value(&e.statement))
        .collect::<Result<_, _>>()
        .ok()?;
    let doc = Merged {
        fields: fields.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
        statements: written
            .into_iter()
            .chain(extras.iter().map(|e| &**e))
            .collect(),
    };
    serde_json::to_string_pretty(&doc).ok()
}

/// A JSON object's members in document order, values unparsed; a repeated name keeps
/// the last value at the first place, as a parsed `Value` (with `preserve_order`) does.
struct RawFields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawFields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Members<'a> {
            type Value = RawFields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields: Vec<(String, &'a RawValue)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'a RawValue>()? {
                    match fields.iter_mut().find(|(name, _)| *name == k) {
                        Some(field) => field.1 = v,
                        None => fields.push((k, v)),
                    }
                }
                Ok(RawFields(fields))
            }
        }
        deserializer.deserialize_map(Members(std::marker::PhantomData))
    }
}

/// A document's elements and its statements, when it is an object with a Statement.
fn parts(v: &Value) -> Option<(&Map<String, Value>, Vec<&Value>)> {
    Some((
        v.as_object()?,
        v.get("Statement").and_then(statement_values)?,
    ))
}

/// A document written from borrowed parts: `fields` in their order, with `Statement`
/// replaced by `statements` (no copy of the baseline is made to write it). `V` is a parsed
/// `Value` or an unparsed `RawValue`.
struct Merged<'a, V: ?Sized> {
    fields: Vec<(&'a str, &'a V)>,
    statements: Vec<&'a V>,
}

impl<V: serde::Serialize + ?Sized> serde::Serialize for Merged<'_, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            if *k == "Statement" {
                map.serialize_entry(k, &self.statements)?;
            } else {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// A baseline statement as [`Containment::missing`] names it: its Sid, or
/// `(no Sid) EFFECT PRINCIPAL: ACTIONS`.
fn name(s: &Statement) -> String {
    if let Some(sid) = &s.sid {
        return sid.clone();
    }
    let v = s.display_value(None);
    let effect = v["Effect"].as_str().unwrap_or("(no Effect)");
    let who = match (v.get("Principal"), v.get("NotPrincipal")) {
        (Some(p), _) => p.to_string(),
        (None, Some(p)) => format!("NotPrincipal {p}"),
        (None, None) => "(no Principal)".to_owned(),
    };
    let names = |a: &Value| {
        let names: Vec<&str> = a
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        names.join(", ")
    };
    let what = match (v.get("Action"), v.get("NotAction")) {
        (Some(a), _) => names(a),
        (None, Some(a)) => format!("every action except {}", names(a)),
        (None, None) => "(no Action)".to_owned(),
    };
    format!("(no Sid) {effect} {who}: {what}")
}

/// The baseline statements [`explain`] can use to cover or cancel what `extra` grants or
/// denies: those naming one of its principals, or anyone (`*`, `{"AWS": "*"}`, a
/// NotPrincipal). These are the only shared statements `explain` compiles, so
/// `explain(covers, covers + extra)` is `explain(baseline, baseline + extra)` without
/// walking and comparing the whole baseline once per extra. Should `explain` come to use
/// more covers, this errs on the safe side only: fewer covers mean more gains and losses,
/// so an extra is at worst removed, never wrongly kept.
fn covers_of(base: &CanonicalPolicy, extra: &Statement) -> CanonicalPolicy {
    let pairs: Vec<(&str, &str)> = match &extra.principal {
        Some(Principal::Typed(types)) => types
            .iter()
            .flat_map(|(kind, values)| values.iter().map(move |v| (kind.as_str(), v.as_str())))
            .collect(),
        _ => Vec::new(),
    };
    let may_cover = |s: &Statement| match &s.principal {
        Some(Principal::Everyone) => true,
        Some(Principal::Typed(types)) => types.iter().any(|(kind, values)| {
            values.iter().any(|v| {
                (kind == "AWS" && v == "*") || pairs.contains(&(kind.as_str(), v.as_str()))
            })
        }),
        None => s.not_principal.is_some(),
    };
    CanonicalPolicy {
        version: None,
        statements: base
            .statements
            .iter()
            .filter(|s| may_cover(s))
            .cloned()
            .collect(),
        other: BTreeMap::new(),
    }
}

/// The first AWS principal of a statement (Principal or NotPrincipal) that is an IAM unique
/// id: a deleted principal, which KMS refuses in any policy it is asked to write.
fn deleted_principal(s: &Statement) -> Option<&str> {
    [&s.principal, &s.not_principal]
        .into_iter()
        .filter_map(|p| match p {
            Some(Principal::Typed(types)) => types.get("AWS"),
            _ => None,
        })
        .flatten()
        .map(String::as_str)
        .find(|v| is_unique_id(v))
}

/// Whether an extra stays, and why, from what adding it to the baseline means.
fn judge(e: &Exposure, reused_sid: Option<&str>, deleted: Option<&str>) -> (bool, String) {
    if let Some(id) = deleted {
        return (
            false,
            format!(
                "names principal {id}, an IAM unique id (how KMS shows a principal that was deleted); KMS refuses any policy that carries one, so it cannot be kept: name an existing principal by its ARN"
            ),
        );
    }
    let gains = || join(e.gains.iter().map(|a| a.sentence(true)));
    let only_baseline =
        "only the baseline may grant that: add the statement to the baseline if it is intended";
    match e.severity {
        Severity::Public => {
            return (
                false,
                format!("grants public access: {}; {only_baseline}", gains()),
            );
        }
        Severity::CrossAccount => {
            return (
                false,
                format!(
                    "grants access to another account or an organisation: {}; {only_baseline}",
                    gains()
                ),
            );
        }
        Severity::Admin => {
            return (
                false,
                format!("grants key administration: {}; {only_baseline}", gains()),
            );
        }
        Severity::Access | Severity::Narrowing | Severity::Cosmetic => {}
    }
    if !e.losses.is_empty() {
        let losses = join(e.losses.iter().map(|a| a.sentence(false)));
        return (
            false,
            format!(
                "contradicts the baseline: {losses}; only the baseline may restrict what it grants: change the baseline if the restriction is intended"
            ),
        );
    }
    if let Some(sid) = reused_sid {
        return (
            false,
            format!(
                "changes baseline statement {}, which the baseline's version replaces; give the statement a Sid of its own to keep it as an extra",
                Value::String(sid.to_owned())
            ),
        );
    }
    if e.gains.is_empty() {
        (true, "grants nothing the baseline does not".to_owned())
    } else {
        (
            true,
            format!(
                "grants access that is neither public, cross-account nor key administration: {}",
                gains()
            ),
        )
    }
}

fn join(lines: impl Iterator<Item = String>) -> String {
    lines.collect::<Vec<_>>().join("; ")
}

/// The top-level elements the live policy has otherwise than the baseline.
fn elements(
    version: &Option<String>,
    other: &BTreeMap<String, Json>,
    base: &CanonicalPolicy,
) -> Vec<String> {
    let shown = |v: Option<Value>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
    let line = |name: &str, live: Option<Value>, desired: Option<Value>| {
        format!(
            "{name}: {} in the live policy, {} in the baseline",
            shown(live),
            shown(desired)
        )
    };
    let mut out = Vec::new();
    if version != &base.version {
        let as_value = |v: &Option<String>| v.clone().map(Value::String);
        out.push(line("Version", as_value(version), as_value(&base.version)));
    }
    let names: BTreeSet<&String> = other.keys().chain(base.other.keys()).collect();
    for name in names {
        let (live, desired) = (other.get(name), base.other.get(name));
        if live != desired {
            out.push(line(
                name,
                live.map(Json::to_value),
                desired.map(Json::to_value),
            ));
        }
    }
    out
}
