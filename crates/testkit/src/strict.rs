//! Real KMS where LocalStack is kind: a layer of the proxy, switched on per test, that makes
//! the emulator's KMS answers look like AWS's (DESIGN.md, "Real AWS is stricter than the
//! emulator"):
//!
//! - GetKeyPolicy re-serialises the document in KMS's own style (`"Key" : value`, two-space
//!   indent, `[ {` ... `} ]`) and returns Principal and Action lists, and the statements, in
//!   another order than submitted (aws-cli #9456; terraform-provider-aws #11801, #39788);
//! - reads lag writes: the first reads after a PutKeyPolicy return the previous policy;
//! - PutKeyPolicy refuses a policy naming a principal that does not exist, or is not visible
//!   yet (a principal can appear after some refusals: IAM propagation), with
//!   `MalformedPolicyDocumentException` "Policy contains a statement with one or more invalid
//!   principals.";
//! - a deleted principal reads back as its unique id (`AROA…`), and any PutKeyPolicy of a
//!   document that carries a unique id is refused the same way;
//! - KMS's own lockout safety check refuses a policy that would not let the caller update the
//!   policy again: "The new key policy will not allow you to update the key policy in the
//!   future."
//!
//! The rules here are written from those documented behaviours, independently of the
//! product's own validation, so a test cannot pass because both share a mistake.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// The message of KMS's refusal of an unknown principal.
pub const INVALID_PRINCIPALS: &str =
    "Policy contains a statement with one or more invalid principals.";
/// The message of KMS's lockout safety check.
pub const LOCKOUT: &str =
    "The new key policy will not allow you to update the key policy in the future.";

/// Which strict behaviours a proxy applies.
#[derive(Debug, Clone, Default)]
pub struct StrictKms {
    /// GetKeyPolicy re-serialises and reorders the document.
    pub reserialise: bool,
    /// GetKeyPolicy returns the previous policy this many times after each PutKeyPolicy.
    pub stale_reads: usize,
    /// When set, the principals that exist besides account roots and bare account ids; a
    /// PutKeyPolicy naming another is refused.
    pub existing: Option<BTreeSet<String>>,
    /// Principals that are refused this many more times, then exist (IAM propagation).
    pub appearing: HashMap<String, usize>,
    /// Deleted principals: ARN → the unique id GetKeyPolicy shows in its place.
    pub deleted: HashMap<String, String>,
    /// The caller of PutKeyPolicy (the function's role): the lockout check keeps it able to
    /// call kms:PutKeyPolicy, directly or through the account root's statement.
    pub caller: Option<String>,
}

/// What the strict layer does with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Forward,
    /// Answer 400 MalformedPolicyDocumentException with this message.
    Refuse(&'static str),
}

/// The strict layer's memory: the last policy read of each key, and its pending stale reads.
#[derive(Debug, Default)]
pub struct StrictState {
    /// The behaviours.
    pub config: StrictKms,
    last_read: HashMap<String, String>,
    stale: HashMap<String, (String, usize)>,
    /// PutKeyPolicy requests refused, by message.
    pub refused: HashMap<&'static str, usize>,
}

impl StrictState {
    /// A layer with these behaviours.
    pub fn new(config: StrictKms) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Judges a PutKeyPolicy request body before it reaches the emulator.
    pub fn put(&mut self, request: &Value) -> Verdict {
        let Some(policy) = request["Policy"]
            .as_str()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
        else {
            return Verdict::Forward;
        };
        let verdict = self.judge(&policy);
        match verdict {
            Verdict::Refuse(message) => *self.refused.entry(message).or_default() += 1,
            Verdict::Forward => {
                let key = key_of(request);
                if self.config.stale_reads > 0
                    && let Some(previous) = self.last_read.get(&key)
                {
                    self.stale
                        .insert(key, (previous.clone(), self.config.stale_reads));
                }
            }
        }
        verdict
    }

    fn judge(&mut self, policy: &Value) -> Verdict {
        let principals = aws_principals(policy);
        let unknown = principals.iter().any(|p| {
            if is_unique_id(p) {
                return true;
            }
            if let Some(left) = self.config.appearing.get_mut(p) {
                if *left > 0 {
                    *left -= 1;
                    return true;
                }
                return false;
            }
            match &self.config.existing {
                Some(existing) => !(is_account(p) || existing.contains(p)),
                None => false,
            }
        });
        if unknown {
            return Verdict::Refuse(INVALID_PRINCIPALS);
        }
        if let Some(caller) = &self.config.caller
            && !keeps_access(policy, caller)
        {
            return Verdict::Refuse(LOCKOUT);
        }
        Verdict::Forward
    }

    /// Rewrites a GetKeyPolicy response body as KMS would answer it.
    pub fn get(&mut self, request: &Value, response: &mut Value) {
        let key = key_of(request);
        let Some(stored) = response["Policy"].as_str().map(str::to_owned) else {
            return;
        };
        let mut shown = stored.clone();
        if let Some((previous, left)) = self.stale.get_mut(&key) {
            if *left > 0 {
                *left -= 1;
                shown = previous.clone();
            } else {
                self.stale.remove(&key);
            }
        }
        for (arn, id) in &self.config.deleted {
            shown = shown.replace(&format!("\"{arn}\""), &format!("\"{id}\""));
        }
        if self.config.reserialise
            && let Ok(mut doc) = serde_json::from_str::<Value>(&shown)
        {
            reorder(&mut doc);
            shown = kms_style(&doc);
        }
        self.last_read.insert(key, shown.clone());
        response["Policy"] = Value::String(shown);
    }
}

/// The key a request names, as sent (the adapter sends the ARN).
fn key_of(request: &Value) -> String {
    request["KeyId"].as_str().unwrap_or_default().to_owned()
}

fn statements(policy: &Value) -> Vec<&Value> {
    match &policy["Statement"] {
        Value::Array(items) => items.iter().collect(),
        one @ Value::Object(_) => vec![one],
        _ => Vec::new(),
    }
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn aws_principals(policy: &Value) -> Vec<String> {
    statements(policy)
        .into_iter()
        .flat_map(|s| {
            ["Principal", "NotPrincipal"]
                .into_iter()
                .flat_map(move |e| strings(&s[e]["AWS"]))
        })
        .filter(|p| *p != "*")
        .map(str::to_owned)
        .collect()
}

/// An IAM unique id (`AROA…`, `AIDA…`, ...): upper-case letters and digits, 16+ long.
fn is_unique_id(p: &str) -> bool {
    p.len() >= 16
        && p.starts_with('A')
        && !p.contains(':')
        && p.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A bare account id or an account root ARN: always a valid principal.
fn is_account(p: &str) -> bool {
    (p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit())) || p.ends_with(":root")
}

/// Whether an unconditional Allow lets `caller` (directly, or through its account root's
/// statement, which delegates to IAM) call kms:PutKeyPolicy.
fn keeps_access(policy: &Value, caller: &str) -> bool {
    let account = caller.split(':').nth(4).unwrap_or_default();
    statements(policy).into_iter().any(|s| {
        s["Effect"] == "Allow"
            && s.get("Condition").is_none()
            && strings(&s["Principal"]["AWS"]).iter().any(|p| {
                *p == caller || *p == account || *p == format!("arn:aws:iam::{account}:root")
            })
            && strings(&s["Action"]).iter().any(|a| {
                let a = a.to_ascii_lowercase();
                a == "kms:*" || a == "kms:putkeypolicy" || a == "kms:put*" || a == "*"
            })
    })
}

/// Lists in another order than submitted: the statements, and each statement's Principal
/// and Action lists, reversed.
fn reorder(doc: &mut Value) {
    if let Some(items) = doc["Statement"].as_array_mut() {
        items.reverse();
        for s in items {
            if let Some(actions) = s.get_mut("Action").and_then(Value::as_array_mut) {
                actions.reverse();
            }
            if let Some(principals) = s
                .get_mut("Principal")
                .and_then(|p| p.get_mut("AWS"))
                .and_then(Value::as_array_mut)
            {
                principals.reverse();
            }
        }
    }
}

/// The document as GetKeyPolicy prints it: `"Key" : value`, two-space indent.
pub fn kms_style(v: &Value) -> String {
    let mut out = String::new();
    write(v, 0, &mut out);
    out
}

fn write(v: &Value, depth: usize, out: &mut String) {
    let pad = |n: usize| "  ".repeat(n);
    match v {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            for (i, (k, v)) in map.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(" : ");
                write(v, depth + 1, out);
                if i + 1 < map.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[ ");
            for (i, item) in items.iter().enumerate() {
                write(item, depth, out);
                if i + 1 < items.len() {
                    out.push_str(", ");
                }
            }
            out.push_str(" ]");
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},{"Sid":"App","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/a","arn:aws:iam::111122223333:role/b"]},"Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*"}]}"#;

    #[test]
    fn kms_style_is_key_space_colon_with_two_space_indent() {
        let doc: Value = serde_json::from_str(
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"S","Action":["a","b"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            kms_style(&doc),
            "{\n  \"Version\" : \"2012-10-17\",\n  \"Statement\" : [ {\n    \"Sid\" : \"S\",\n    \"Action\" : [ \"a\", \"b\" ]\n  } ]\n}"
        );
    }

    #[test]
    fn a_read_is_reordered_and_reserialised_and_lags_a_write() {
        let mut s = StrictState::new(StrictKms {
            reserialise: true,
            stale_reads: 1,
            ..StrictKms::default()
        });
        let req = serde_json::json!({"KeyId": "k", "PolicyName": "default"});
        let mut resp = serde_json::json!({"Policy": POLICY});
        s.get(&req, &mut resp);
        let shown = resp["Policy"].as_str().unwrap().to_owned();
        assert!(shown.contains("\"Sid\" : \"App\""), "{shown}");
        assert!(
            shown.find("App").unwrap() < shown.find("Root").unwrap(),
            "reordered"
        );
        let put = serde_json::json!({"KeyId": "k", "Policy": POLICY.replace("role/b", "role/c")});
        assert_eq!(s.put(&put), Verdict::Forward);
        let mut after = serde_json::json!({"Policy": POLICY.replace("role/b", "role/c")});
        s.get(&req, &mut after);
        assert!(
            after["Policy"].as_str().unwrap().contains("role/b"),
            "stale"
        );
        let mut later = serde_json::json!({"Policy": POLICY.replace("role/b", "role/c")});
        s.get(&req, &mut later);
        assert!(
            later["Policy"].as_str().unwrap().contains("role/c"),
            "caught up"
        );
    }

    #[test]
    fn unknown_deleted_and_appearing_principals_and_the_lockout_check() {
        let mut s = StrictState::new(StrictKms {
            existing: Some(BTreeSet::from([
                "arn:aws:iam::111122223333:role/a".to_owned()
            ])),
            appearing: HashMap::from([("arn:aws:iam::111122223333:role/b".to_owned(), 1)]),
            caller: Some("arn:aws:iam::111122223333:role/fn".to_owned()),
            ..StrictKms::default()
        });
        let put = |p: &str| serde_json::json!({"KeyId": "k", "Policy": p});
        assert_eq!(
            s.put(&put(POLICY)),
            Verdict::Refuse(INVALID_PRINCIPALS),
            "b not yet"
        );
        assert_eq!(s.put(&put(POLICY)), Verdict::Forward, "b visible now");
        let with_id = POLICY.replace("arn:aws:iam::111122223333:role/a", "AROA6QJX2M4TBCKL7WZNE");
        assert_eq!(s.put(&put(&with_id)), Verdict::Refuse(INVALID_PRINCIPALS));
        let no_root = POLICY.replace(
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::111122223333:role/a",
        );
        assert_eq!(s.put(&put(&no_root)), Verdict::Refuse(LOCKOUT));
        assert_eq!(s.refused[INVALID_PRINCIPALS], 2);
    }
}
