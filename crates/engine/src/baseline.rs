//! The desired policy for one replica: a rendered template, or the primary's policy
//! mirrored into the replica's Region.
//!
//! Rendering is textual and limited to `{{Name}}` placeholders, so IAM policy variables
//! (`${aws:PrincipalTag/team}`) pass through untouched. Validation of the result lives in
//! [`krg_policy`].

use serde_json::Value;

use super::catalogue::Catalogue;
use super::key::{KeyArn, Region};

/// Where the desired policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// Mirror the primary key's current policy into each replica.
    Primary,
    /// A policy template with `{{...}}` placeholders.
    Template(Template),
    /// Named templates (and `primary`), each key picking one with a tag.
    Catalogue(Catalogue),
}

impl Baseline {
    /// Whether the primary's policy is the source (so a primary's change fans out).
    ///
    /// A catalogue may: any key's tag can name `primary`.
    pub fn mirrors_primary(&self) -> bool {
        matches!(self, Baseline::Primary | Baseline::Catalogue(_))
    }

    /// Where the baseline came from, for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            Baseline::Primary => "the primary key's policy".to_owned(),
            Baseline::Template(t) => t.origin.clone(),
            Baseline::Catalogue(c) => format!("the baseline catalogue {}", c.origin()),
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
    sha256: String,
}

/// A run of the template: literal text (a byte range of it) or a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Literal(usize, usize),
    /// Index into [`PLACEHOLDERS`].
    Placeholder(usize),
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        let sha256 = sha256_hex(text.as_bytes());
        Ok(Self {
            origin,
            text,
            segments,
            sha256,
        })
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The hex SHA-256 of the bytes read from its source (`BASELINE_SHA256` pins it).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether rendering needs the key's primary Region (`{{PrimaryRegion}}`), which only a
    /// DescribeKey tells.
    pub fn needs_primary_region(&self) -> bool {
        const PRIMARY_REGION: usize = 5;
        debug_assert_eq!(PLACEHOLDERS[PRIMARY_REGION], "PrimaryRegion");
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Placeholder(PRIMARY_REGION)))
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

/// How the primary's policy is mirrored into a replica (`MIRROR_REWRITE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorOptions {
    /// Also move ARNs in `Condition` values that name the key's own partition, its own
    /// account and the primary's Region into the replica's Region (only the Region field
    /// changes), e.g. the CloudWatch Logs encryption context
    /// `arn:aws:logs:us-east-1:111122223333:log-group:*`. Off by default: such an ARN may
    /// name a resource that exists only in the primary's Region, on purpose.
    pub rewrite_own_arns: bool,
}

/// Which rule of [`mirror_for_replica`] changed a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RewriteKind {
    /// The primary's own key ARN became the replica's.
    KeyArn,
    /// A `kms:ViaService` value named the primary's Region.
    ViaService,
    /// A regional service principal (`logs.us-east-1.amazonaws.com`) of the primary's Region.
    ServicePrincipal,
    /// An ARN of the key's own account in the primary's Region, in a `Condition` value
    /// ([`MirrorOptions::rewrite_own_arns`]).
    OwnArn,
}

/// One value [`mirror_for_replica`] changed: the value before and after, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rewrite {
    /// The value in the primary's policy (for [`RewriteKind::KeyArn`], the primary's ARN).
    pub from: String,
    /// The value in the replica's policy.
    pub to: String,
    /// The rule that changed it.
    pub what: RewriteKind,
}

/// The primary's policy mirrored for one replica, with what was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored {
    /// The replica's desired policy: pretty JSON in the primary's statement and key order.
    pub text: String,
    /// Each distinct change (`from` → `to`) once, in the order of the document; empty when
    /// the policy was copied unchanged (e.g. a replica in the primary's own Region).
    pub rewrites: Vec<Rewrite>,
}

/// The primary's policy rewritten for a replica, with the default [`MirrorOptions`]; see
/// [`mirror_for_replica`] for the rules.
pub fn mirror_primary(
    primary_policy: &str,
    primary: &KeyArn,
    replica: &KeyArn,
) -> Result<String, BaselineError> {
    mirror_for_replica(primary_policy, primary, replica, MirrorOptions::default()).map(|m| m.text)
}

/// The primary's policy rewritten for a replica in another Region. Only these values change:
///
/// - the primary's own key ARN, anywhere, becomes the replica's;
/// - `kms:ViaService` values (under any condition operator; the key is compared
///   case-insensitively) that name the primary's Region (`ec2.us-east-1.amazonaws.com`)
///   name the replica's;
/// - regional service principals in `Principal.Service` (a string or a list) of the form
///   `SERVICE.PRIMARY_REGION.amazonaws.com` (or `.amazonaws.com.cn`) name the replica's
///   Region; global ones (`cloudtrail.amazonaws.com`) are kept;
/// - with [`MirrorOptions::rewrite_own_arns`], ARNs in `Condition` values of the key's own
///   partition and account in the primary's Region move to the replica's Region.
///
/// The Region is always matched as a whole label or field, so `us-east-10` is not
/// `us-east-1`. ARNs of other accounts, or of the own account in another Region, are never
/// changed. Fails only when the primary's policy is not JSON.
pub fn mirror_for_replica(
    primary_policy: &str,
    primary: &KeyArn,
    replica: &KeyArn,
    options: MirrorOptions,
) -> Result<Mirrored, BaselineError> {
    let mut doc: Value =
        serde_json::from_str(primary_policy).map_err(|e| BaselineError::PrimaryNotJson {
            primary: primary.to_string(),
            problem: e.to_string(),
        })?;
    let mut mirror = Mirror {
        primary,
        replica,
        options,
        moves_region: primary.region() != replica.region(),
        rewrites: Vec::new(),
    };
    mirror.document(&mut doc);
    Ok(Mirrored {
        text: serde_json::to_string_pretty(&doc).expect("a Value always serialises"),
        rewrites: mirror.rewrites,
    })
}

/// Where in the policy a string value sits, which decides the rules that apply to it.
#[derive(Debug, Clone, Copy)]
enum Context {
    /// Only the key ARN rule.
    Anywhere,
    /// A value of `Principal.Service`.
    ServicePrincipal,
    /// A value of a `Condition` key; `via_service` for `kms:ViaService`.
    Condition { via_service: bool },
}

/// One mirroring pass: the rules and the rewrites recorded so far.
struct Mirror<'a> {
    primary: &'a KeyArn,
    replica: &'a KeyArn,
    options: MirrorOptions,
    moves_region: bool,
    rewrites: Vec<Rewrite>,
}

impl Mirror<'_> {
    fn document(&mut self, doc: &mut Value) {
        let Value::Object(top) = doc else {
            return self.walk(doc, Context::Anywhere);
        };
        for (name, value) in top.iter_mut() {
            match (name.as_str(), value) {
                ("Statement", Value::Array(statements)) => {
                    statements.iter_mut().for_each(|st| self.statement(st));
                }
                ("Statement", statement) => self.statement(statement),
                (_, other) => self.walk(other, Context::Anywhere),
            }
        }
    }

    fn statement(&mut self, statement: &mut Value) {
        let Value::Object(fields) = statement else {
            return self.walk(statement, Context::Anywhere);
        };
        for (name, value) in fields.iter_mut() {
            match (name.as_str(), value) {
                ("Principal", Value::Object(principals)) => {
                    for (kind, values) in principals.iter_mut() {
                        let ctx = if kind == "Service" {
                            Context::ServicePrincipal
                        } else {
                            Context::Anywhere
                        };
                        self.walk(values, ctx);
                    }
                }
                ("Condition", Value::Object(operators)) => {
                    for keys in operators.values_mut() {
                        let Value::Object(keys) = keys else {
                            self.walk(keys, Context::Anywhere);
                            continue;
                        };
                        for (key, values) in keys.iter_mut() {
                            let via_service = key.eq_ignore_ascii_case("kms:ViaService");
                            self.walk(values, Context::Condition { via_service });
                        }
                    }
                }
                (_, other) => self.walk(other, Context::Anywhere),
            }
        }
    }

    fn walk(&mut self, value: &mut Value, ctx: Context) {
        match value {
            Value::String(s) => self.string(s, ctx),
            Value::Array(items) => items.iter_mut().for_each(|i| self.walk(i, ctx)),
            Value::Object(map) => map.values_mut().for_each(|i| self.walk(i, ctx)),
            _ => {}
        }
    }

    fn string(&mut self, s: &mut String, ctx: Context) {
        if let Some(new) = replace_key_arn(s, self.primary.as_str(), self.replica.as_str()) {
            self.record(
                self.primary.as_str(),
                self.replica.as_str(),
                RewriteKind::KeyArn,
            );
            *s = new;
        }
        if !self.moves_region {
            return;
        }
        let from = self.primary.region().as_str();
        let to = self.replica.region().as_str();
        let rewritten = match ctx {
            Context::ServicePrincipal => {
                regional_service_principal(s, from, to).map(|n| (n, RewriteKind::ServicePrincipal))
            }
            Context::Condition { via_service: true } => {
                via_service(s, from, to).map(|n| (n, RewriteKind::ViaService))
            }
            Context::Condition { via_service: false } if self.options.rewrite_own_arns => {
                self.own_arn(s, to).map(|n| (n, RewriteKind::OwnArn))
            }
            _ => None,
        };
        if let Some((new, what)) = rewritten {
            self.record(s, &new, what);
            *s = new;
        }
    }

    /// `s` with its Region field moved to `to`, when it is an ARN of the primary's partition
    /// and account in the primary's Region.
    fn own_arn(&self, s: &str, to: &str) -> Option<String> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return None;
        };
        let own = arn == "arn"
            && partition == self.primary.partition()
            && !service.is_empty()
            && region == self.primary.region().as_str()
            && account == self.primary.account().as_str();
        own.then(|| format!("arn:{partition}:{service}:{to}:{account}:{resource}"))
    }

    fn record(&mut self, from: &str, to: &str, what: RewriteKind) {
        let seen = self.rewrites.iter().any(|r| r.from == from && r.to == to);
        if from != to && !seen {
            self.rewrites.push(Rewrite {
                from: from.to_owned(),
                to: to.to_owned(),
                what,
            });
        }
    }
}

/// `s` with every whole occurrence of the key ARN `from` replaced by `to`, or `None` when
/// there is none. An occurrence followed by a key id character is another key's ARN.
fn replace_key_arn(s: &str, from: &str, to: &str) -> Option<String> {
    if from == to || !s.contains(from) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + to.len());
    let mut copied = 0;
    let mut changed = false;
    for (at, _) in s.match_indices(from) {
        let end = at + from.len();
        let whole = s[end..]
            .bytes()
            .next()
            .is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'-'));
        if whole {
            out.push_str(&s[copied..at]);
            out.push_str(to);
            copied = end;
            changed = true;
        }
    }
    out.push_str(&s[copied..]);
    changed.then_some(out)
}

/// A `kms:ViaService` value with the Region label `from` replaced by `to`.
fn via_service(s: &str, from: &str, to: &str) -> Option<String> {
    let from = format!(".{from}.");
    s.contains(&from)
        .then(|| s.replace(&from, &format!(".{to}.")))
}

/// `SERVICE.FROM.amazonaws.com` (or `.amazonaws.com.cn`) as `SERVICE.TO.amazonaws.com`
/// (the same suffix), or `None` for any other principal.
fn regional_service_principal(s: &str, from: &str, to: &str) -> Option<String> {
    [".amazonaws.com", ".amazonaws.com.cn"]
        .into_iter()
        .find_map(|suffix| {
            let service = s
                .strip_suffix(suffix)?
                .strip_suffix(from)?
                .strip_suffix('.')?;
            (!service.is_empty()).then(|| format!("{service}.{to}{suffix}"))
        })
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
    fn a_template_knows_the_digest_of_its_bytes_and_whether_it_needs_the_primary_region() {
        let t = Template::new("literal", "{}").unwrap();
        // sha256("{}"), as `printf '{}' | sha256sum` prints it.
        assert_eq!(
            t.sha256(),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(!t.needs_primary_region());
        let t = Template::new("literal", r#"{"x": "{{PrimaryRegion}}"}"#).unwrap();
        assert!(t.needs_primary_region());
        let t = Template::new("literal", r#"{"x": "{{Region}}"}"#).unwrap();
        assert!(!t.needs_primary_region());
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

    /// A CloudWatch Logs key policy as the Logs documentation gives it.
    fn logs_policy(primary: &KeyArn, log_group_arn: &str) -> Value {
        json!({
            "Version": "2012-10-17",
            "Id": "key-logs",
            "Statement": [{
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": "kms:*",
                "Resource": "*"
            }, {
                "Sid": "Allow CloudWatch Logs",
                "Effect": "Allow",
                "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*"
                ],
                "Resource": primary.to_string(),
                "Condition": {"ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": log_group_arn
                }}
            }]
        })
    }

    const LOG_GROUPS: &str = "arn:aws:logs:us-east-1:111122223333:log-group:*";

    fn mirror(policy: &Value, replica: &str, rewrite_own_arns: bool) -> (Value, Vec<Rewrite>) {
        let m = mirror_for_replica(
            &policy.to_string(),
            &key("us-east-1"),
            &key(replica),
            MirrorOptions { rewrite_own_arns },
        )
        .unwrap();
        (serde_json::from_str(&m.text).unwrap(), m.rewrites)
    }

    fn rewrite(from: &str, to: &str, what: RewriteKind) -> Rewrite {
        Rewrite {
            from: from.to_owned(),
            to: to.to_owned(),
            what,
        }
    }

    #[test]
    fn a_logs_key_policy_gets_the_replica_regions_service_principal() {
        let primary = key("us-east-1");
        let replica = key("eu-west-1");
        let policy = logs_policy(&primary, LOG_GROUPS);
        let (out, rewrites) = mirror(&policy, "eu-west-1", false);
        let logs = &out["Statement"][1];
        assert_eq!(
            logs["Principal"]["Service"],
            json!("logs.eu-west-1.amazonaws.com")
        );
        assert_eq!(logs["Resource"], json!(replica.to_string()));
        assert_eq!(
            logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"],
            json!(LOG_GROUPS),
            "own-account ARNs stay without MIRROR_REWRITE"
        );
        assert_eq!(out["Statement"][0], policy["Statement"][0]);
        assert_eq!(
            rewrites,
            vec![
                rewrite(
                    "logs.us-east-1.amazonaws.com",
                    "logs.eu-west-1.amazonaws.com",
                    RewriteKind::ServicePrincipal
                ),
                rewrite(primary.as_str(), replica.as_str(), RewriteKind::KeyArn),
            ]
        );
    }

    #[test]
    fn the_own_arn_option_moves_the_logs_encryption_context_to_the_replica_region() {
        let primary = key("us-east-1");
        let (out, rewrites) = mirror(&logs_policy(&primary, LOG_GROUPS), "eu-west-1", true);
        let moved = "arn:aws:logs:eu-west-1:111122223333:log-group:*";
        assert_eq!(
            out["Statement"][1]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"],
            json!(moved)
        );
        assert_eq!(
            rewrites.last(),
            Some(&rewrite(LOG_GROUPS, moved, RewriteKind::OwnArn))
        );
        assert_eq!(rewrites.len(), 3, "{rewrites:?}");
    }

    #[test]
    fn arns_of_other_accounts_regions_or_partitions_are_never_rewritten() {
        let primary = key("us-east-1");
        for other in [
            "arn:aws:logs:us-east-1:222233334444:log-group:*",
            "arn:aws:logs:us-west-2:111122223333:log-group:*",
            "arn:aws-cn:logs:us-east-1:111122223333:log-group:*",
            "arn:aws:logs:*:111122223333:log-group:*",
            "arn:aws:s3:::us-east-1-bucket",
        ] {
            for option in [false, true] {
                let (out, rewrites) = mirror(&logs_policy(&primary, other), "eu-west-1", option);
                assert_eq!(
                    out["Statement"][1]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"],
                    json!(other)
                );
                assert!(
                    rewrites.iter().all(|r| r.what != RewriteKind::OwnArn),
                    "{other}: {rewrites:?}"
                );
            }
        }
    }

    #[test]
    fn a_region_is_matched_as_a_whole_label_never_as_a_prefix() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": ["logs.us-east-10.amazonaws.com", "logs.xus-east-1.amazonaws.com"]},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": "ec2.us-east-10.amazonaws.com"},
                    "ArnLike": {"aws:SourceArn": "arn:aws:logs:us-east-10:111122223333:log-group:*"}
                }
            }]
        });
        let (out, rewrites) = mirror(&policy, "eu-west-1", true);
        assert_eq!(out, policy);
        assert!(rewrites.is_empty(), "{rewrites:?}");
    }

    #[test]
    fn global_service_principals_are_untouched() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": [
                    "cloudtrail.amazonaws.com",
                    "delivery.logs.amazonaws.com",
                    "logs.us-east-1.amazonaws.com"
                ]},
                "Action": "kms:GenerateDataKey*",
                "Resource": "*"
            }]
        });
        let (out, _) = mirror(&policy, "ap-south-1", false);
        assert_eq!(
            out["Statement"][0]["Principal"]["Service"],
            json!([
                "cloudtrail.amazonaws.com",
                "delivery.logs.amazonaws.com",
                "logs.ap-south-1.amazonaws.com"
            ])
        );
    }

    #[test]
    fn a_regional_service_name_outside_principal_service_is_untouched() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "logs.us-east-1.amazonaws.com",
                "Effect": "Allow",
                "Principal": {"AWS": "logs.us-east-1.amazonaws.com"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:PrincipalServiceName": "logs.us-east-1.amazonaws.com"}}
            }]
        });
        let (out, rewrites) = mirror(&policy, "eu-west-1", true);
        assert_eq!(out, policy);
        assert!(rewrites.is_empty(), "{rewrites:?}");
    }

    #[test]
    fn china_service_principals_keep_their_suffix() {
        let arn = |r: &str| -> KeyArn {
            format!("arn:aws-cn:kms:{r}:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab")
                .parse()
                .unwrap()
        };
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "logs.cn-north-1.amazonaws.com.cn"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": "arn:aws-cn:logs:cn-north-1:111122223333:log-group:*"
                }}
            }]
        });
        let m = mirror_for_replica(
            &policy.to_string(),
            &arn("cn-north-1"),
            &arn("cn-northwest-1"),
            MirrorOptions {
                rewrite_own_arns: true,
            },
        )
        .unwrap();
        let out: Value = serde_json::from_str(&m.text).unwrap();
        assert_eq!(
            out["Statement"][0]["Principal"]["Service"],
            json!("logs.cn-northwest-1.amazonaws.com.cn")
        );
        assert_eq!(
            out["Statement"][0]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"],
            json!("arn:aws-cn:logs:cn-northwest-1:111122223333:log-group:*")
        );
    }

    #[test]
    fn via_service_is_rewritten_under_any_operator_and_key_case() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"ForAnyValue:StringLike": {"KMS:viaService": ["ec2.us-east-1.amazonaws.com", "rds.*.amazonaws.com"]}}
            }
        });
        let (out, rewrites) = mirror(&policy, "us-west-2", false);
        assert_eq!(
            out["Statement"]["Condition"]["ForAnyValue:StringLike"]["KMS:viaService"],
            json!(["ec2.us-west-2.amazonaws.com", "rds.*.amazonaws.com"])
        );
        assert_eq!(
            rewrites,
            vec![rewrite(
                "ec2.us-east-1.amazonaws.com",
                "ec2.us-west-2.amazonaws.com",
                RewriteKind::ViaService
            )]
        );
    }

    #[test]
    fn the_rewrites_name_each_change_once_in_document_order() {
        let primary = key("us-east-1");
        let replica = key("eu-west-1");
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/app"},
                "Action": "kms:Decrypt",
                "Resource": primary.to_string(),
                "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
            }, {
                "Effect": "Allow",
                "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
                "Action": "kms:Decrypt",
                "Resource": primary.to_string(),
                "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
            }]
        });
        let (_, rewrites) = mirror(&policy, "eu-west-1", false);
        assert_eq!(
            rewrites,
            vec![
                rewrite(primary.as_str(), replica.as_str(), RewriteKind::KeyArn),
                rewrite(
                    "s3.us-east-1.amazonaws.com",
                    "s3.eu-west-1.amazonaws.com",
                    RewriteKind::ViaService
                ),
                rewrite(
                    "logs.us-east-1.amazonaws.com",
                    "logs.eu-west-1.amazonaws.com",
                    RewriteKind::ServicePrincipal
                ),
            ]
        );
        assert_eq!(
            serde_json::to_value(&rewrites[2]).unwrap(),
            json!({"from": "logs.us-east-1.amazonaws.com", "to": "logs.eu-west-1.amazonaws.com", "what": "service-principal"})
        );
    }

    #[test]
    fn mirroring_into_the_primary_region_is_a_no_op() {
        let primary = key("us-east-1");
        let policy = logs_policy(&primary, LOG_GROUPS);
        let m = mirror_for_replica(
            &policy.to_string(),
            &primary,
            &primary,
            MirrorOptions {
                rewrite_own_arns: true,
            },
        )
        .unwrap();
        assert_eq!(m.text, serde_json::to_string_pretty(&policy).unwrap());
        assert!(m.rewrites.is_empty(), "{:?}", m.rewrites);
    }

    #[test]
    fn another_key_whose_arn_starts_like_the_primarys_is_untouched() {
        let primary = key("us-east-1");
        let longer = format!("{primary}0");
        let policy = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt",
            "Resource": [longer, format!("{primary}-x"), format!("{primary}/x")]
        }]});
        let (out, _) = mirror(&policy, "eu-west-1", false);
        assert_eq!(
            out["Statement"][0]["Resource"],
            json!([
                longer,
                format!("{primary}-x"),
                format!("{}/x", key("eu-west-1"))
            ])
        );
    }

    #[test]
    fn mirror_primary_is_mirror_for_replica_with_the_default_options() {
        let primary = key("us-east-1");
        let policy = logs_policy(&primary, LOG_GROUPS).to_string();
        let replica = key("eu-west-1");
        assert_eq!(
            mirror_primary(&policy, &primary, &replica).unwrap(),
            mirror_for_replica(&policy, &primary, &replica, MirrorOptions::default())
                .unwrap()
                .text
        );
    }
}
