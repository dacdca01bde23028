//! The desired policy for one replica: a rendered template, or the primary's policy
//! mirrored into the replica's Region.
//!
//! Rendering is textual and limited to `{{Name}}` placeholders, so IAM policy variables
//! (`${aws:PrincipalTag/team}`) pass through untouched. Validation of the result lives in
//! [`krg_policy`].

use serde_json::Value;

use super::key::{KeyArn, Region};

/// Where the desired policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// Mirror the primary key's current policy into each replica.
    Primary,
    /// A policy template with `{{...}}` placeholders.
    Template(Template),
}

impl Baseline {
    /// Whether the primary's policy is the source (so a primary's change fans out).
    pub fn mirrors_primary(&self) -> bool {
        matches!(self, Baseline::Primary)
    }

    /// Where the baseline came from, for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            Baseline::Primary => "the primary key's policy".to_owned(),
            Baseline::Template(t) => t.origin.clone(),
        }
    }
}

/// A baseline policy template and where it came from (`file:PATH`, `literal`, ...).
///
/// The text is split into literal runs and placeholders once, when the template is read,
/// so rendering for a key is a single pass of copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    origin: String,
    text: String,
    segments: Vec<Segment>,
}

/// A run of the template: literal text (a byte range of it) or a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Literal(usize, usize),
    /// Index into [`PLACEHOLDERS`].
    Placeholder(usize),
}

/// The per-key values placeholders are rendered from.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The key the policy is for.
    pub key: &'a KeyArn,
    /// The Region of its primary key.
    pub primary_region: &'a Region,
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "AccountId",
    "Region",
    "Partition",
    "KeyId",
    "KeyArn",
    "PrimaryRegion",
];

/// A baseline that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineError {
    /// A `{{...}}` that is not one of [`PLACEHOLDERS`].
    #[error(
        "baseline {origin}: unknown placeholder {{{{{name}}}}} at byte {offset}; the known placeholders are {{{{AccountId}}}}, {{{{Region}}}}, {{{{Partition}}}}, {{{{KeyId}}}}, {{{{KeyArn}}}}, {{{{PrimaryRegion}}}} (IAM variables use ${{...}} and are left alone)"
    )]
    UnknownPlaceholder {
        /// Where the template came from.
        origin: String,
        /// The name inside the braces.
        name: String,
        /// Byte offset of the `{{`.
        offset: usize,
    },
    /// A `{{` with no closing `}}`.
    #[error("baseline {origin}: `{{{{` at byte {offset} is never closed with `}}}}`")]
    Unclosed {
        /// Where the template came from.
        origin: String,
        /// Byte offset of the `{{`.
        offset: usize,
    },
    /// The primary's policy is not a JSON document and cannot be mirrored.
    #[error(
        "the primary key's policy ({primary}) is not valid JSON and cannot be mirrored: {problem}"
    )]
    PrimaryNotJson {
        /// The primary key's ARN.
        primary: String,
        /// The parser's message.
        problem: String,
    },
}

impl Template {
    /// A template from text; fails on unknown or unclosed placeholders.
    pub fn new(origin: impl Into<String>, text: impl Into<String>) -> Result<Self, BaselineError> {
        let origin = origin.into();
        let text = text.into();
        let segments = split(&origin, &text)?;
        Ok(Self {
            origin,
            text,
            segments,
        })
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Renders the template for one key.
    pub fn render(&self, ctx: RenderContext<'_>) -> String {
        let key = ctx.key;
        let account = key.account().to_string();
        let region = key.region().to_string();
        let arn = key.to_string();
        let primary_region = ctx.primary_region.to_string();
        // In the order of PLACEHOLDERS.
        let values: [&str; 6] = [
            &account,
            &region,
            key.partition(),
            key.key_id(),
            &arn,
            &primary_region,
        ];
        let mut out = String::with_capacity(self.text.len() + 64);
        for segment in &self.segments {
            match *segment {
                Segment::Literal(from, to) => out.push_str(&self.text[from..to]),
                Segment::Placeholder(i) => out.push_str(values[i]),
            }
        }
        out
    }
}

/// Splits a template into literal runs and known placeholders.
fn split(origin: &str, text: &str) -> Result<Vec<Segment>, BaselineError> {
    let mut segments = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find("{{") {
        let start = at + found;
        if start > at {
            segments.push(Segment::Literal(at, start));
        }
        let after = start + 2;
        let Some(len) = text[after..].find("}}") else {
            return Err(BaselineError::Unclosed {
                origin: origin.to_owned(),
                offset: start,
            });
        };
        let name = &text[after..after + len];
        let Some(index) = PLACEHOLDERS.iter().position(|p| *p == name) else {
            return Err(BaselineError::UnknownPlaceholder {
                origin: origin.to_owned(),
                name: name.to_owned(),
                offset: start,
            });
        };
        segments.push(Segment::Placeholder(index));
        at = after + len + 2;
    }
    if at < text.len() {
        segments.push(Segment::Literal(at, text.len()));
    }
    Ok(segments)
}

/// The primary's policy rewritten for a replica: the primary's own key ARN becomes the
/// replica's, and `kms:ViaService` values naming the primary's Region name the replica's.
pub fn mirror_primary(
    primary_policy: &str,
    primary: &KeyArn,
    replica: &KeyArn,
) -> Result<String, BaselineError> {
    let mut doc: Value =
        serde_json::from_str(primary_policy).map_err(|e| BaselineError::PrimaryNotJson {
            primary: primary.to_string(),
            problem: e.to_string(),
        })?;
    let from_region = format!(".{}.", primary.region());
    let to_region = format!(".{}.", replica.region());
    rewrite_strings(&mut doc, &mut |s| {
        if s.contains(primary.as_str()) {
            *s = s.replace(primary.as_str(), replica.as_str());
        }
    });
    if let Some(statements) = doc.get_mut("Statement") {
        let statements = match statements {
            Value::Array(list) => list.iter_mut().collect::<Vec<_>>(),
            other => vec![other],
        };
        for st in statements {
            let Some(Value::Object(ops)) = st.get_mut("Condition") else {
                continue;
            };
            for keys in ops.values_mut() {
                let Value::Object(keys) = keys else { continue };
                for (k, v) in keys.iter_mut() {
                    if k.eq_ignore_ascii_case("kms:ViaService") {
                        rewrite_strings(v, &mut |s| {
                            if s.contains(&from_region) {
                                *s = s.replace(&from_region, &to_region);
                            }
                        });
                    }
                }
            }
        }
    }
    Ok(serde_json::to_string_pretty(&doc).expect("a Value always serialises"))
}

fn rewrite_strings(v: &mut Value, f: &mut impl FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_strings(i, f)),
        Value::Object(map) => map.values_mut().for_each(|i| rewrite_strings(i, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(region: &str) -> KeyArn {
        format!("arn:aws:kms:{region}:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab")
            .parse()
            .unwrap()
    }

    #[test]
    fn every_placeholder_is_rendered_for_the_target_key() {
        let t = Template::new(
            "literal",
            "{{AccountId}}|{{Region}}|{{Partition}}|{{KeyId}}|{{KeyArn}}|{{PrimaryRegion}}",
        )
        .unwrap();
        let replica = key("eu-west-1");
        let out = t.render(RenderContext {
            key: &replica,
            primary_region: &"us-east-1".parse().unwrap(),
        });
        assert_eq!(
            out,
            format!(
                "111122223333|eu-west-1|aws|mrk-1234abcd12ab34cd56ef1234567890ab|{replica}|us-east-1"
            )
        );
    }

    #[test]
    fn iam_policy_variables_pass_through_untouched() {
        let text = r#"{"x": "${aws:PrincipalTag/team} ${aws:username} {{Region}}"}"#;
        let t = Template::new("literal", text).unwrap();
        let k = key("us-west-2");
        let out = t.render(RenderContext {
            key: &k,
            primary_region: k.region(),
        });
        assert_eq!(
            out,
            r#"{"x": "${aws:PrincipalTag/team} ${aws:username} us-west-2"}"#
        );
    }

    #[test]
    fn an_unknown_placeholder_is_named_in_the_error() {
        let err = Template::new("file:/b.json", r#"{"a": "{{Acount}}"}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("{{Acount}}") && msg.contains("file:/b.json"),
            "{msg}"
        );
        assert!(msg.contains("{{AccountId}}"), "{msg}");
    }

    #[test]
    fn an_unclosed_placeholder_is_an_error() {
        let err = Template::new("literal", r#"{"a": "{{Region"}"#).unwrap_err();
        assert!(
            matches!(err, BaselineError::Unclosed { offset: 7, .. }),
            "{err}"
        );
    }

    #[test]
    fn mirroring_rewrites_the_primary_arn_and_via_service_region() {
        let primary = key("us-east-1");
        let replica = key("eu-west-1");
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "ViaS3",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/app"},
                "Action": "kms:Decrypt",
                "Resource": primary.to_string(),
                "Condition": {"StringEquals": {
                    "kms:ViaService": ["s3.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com"],
                    "kms:CallerAccount": "111122223333"
                }}
            }, {
                "Sid": "Other",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": "kms:*",
                "Resource": "*",
                "Condition": {"StringLike": {"aws:SourceArn": "arn:aws:s3:::us-east-1-bucket"}}
            }]
        });
        let out = mirror_primary(&policy.to_string(), &primary, &replica).unwrap();
        let out: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["Statement"][0]["Resource"], json!(replica.to_string()));
        assert_eq!(
            out["Statement"][0]["Condition"]["StringEquals"]["kms:ViaService"],
            json!(["s3.eu-west-1.amazonaws.com", "sqs.eu-west-1.amazonaws.com"])
        );
        assert_eq!(
            out["Statement"][1]["Condition"]["StringLike"]["aws:SourceArn"],
            json!("arn:aws:s3:::us-east-1-bucket"),
            "only kms:ViaService values are Region-rewritten"
        );
    }

    #[test]
    fn mirroring_keeps_the_primary_statement_order() {
        let p = key("us-east-1");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Z","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#;
        let out = mirror_primary(policy, &p, &key("us-west-2")).unwrap();
        let sid = out.find("\"Sid\"").unwrap();
        let effect = out.find("\"Effect\"").unwrap();
        assert!(out.find("\"Version\"").unwrap() < out.find("\"Statement\"").unwrap());
        assert!(sid < effect, "keys keep the primary's order:\n{out}");
    }

    #[test]
    fn a_primary_policy_that_is_not_json_cannot_be_mirrored() {
        let p = key("us-east-1");
        let err = mirror_primary("{not json", &p, &key("us-west-2")).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"));
    }
}
