//! Where baselines come from: a source named by `BASELINE_SOURCE` (`primary`, a file, a
//! directory catalogue, an SSM parameter or path, an S3 object or prefix), read once at
//! start-up, and a catalogue's entries rendered and checked together.

use std::str::FromStr;

use std::collections::BTreeMap;

use krg_engine::Trusted;
use krg_engine::baseline::Template;
use krg_engine::catalogue::{Catalogue, CatalogueError, Choice, DEFAULT_BASELINE_TAG, valid_name};
use krg_engine::error::CallError;
use krg_engine::ports::RemoteText;
use krg_engine::tenancy::Tenancy;

use super::*;

/// Where the desired policy comes from (`BASELINE_SOURCE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaselineSource {
    /// `primary`: mirror each replica's primary.
    Primary,
    /// `file:PATH`.
    File(String),
    /// A literal JSON document (starts with `{`).
    Literal(String),
    /// `dir:PATH`: a catalogue, one `NAME.json` template per baseline.
    Dir(String),
    /// `ssm:NAME` or `s3://BUCKET/KEY` (one baseline), `ssm:/PATH/` or `s3://BUCKET/PREFIX/`
    /// (a catalogue): read with calls at start-up.
    Remote(RemoteBaseline),
}

impl FromStr for BaselineSource {
    type Err = String;

    fn from_str(source: &str) -> Result<Self, String> {
        let source = source.trim();
        if source == "primary" {
            Ok(Self::Primary)
        } else if let Some(path) = source.strip_prefix("file:") {
            Ok(Self::File(path.to_owned()))
        } else if let Some(path) = source.strip_prefix("dir:") {
            if path.is_empty() {
                Err("dir: needs a directory, e.g. dir:baselines".into())
            } else {
                Ok(Self::Dir(path.to_owned()))
            }
        } else if source.starts_with('{') {
            Ok(Self::Literal(source.to_owned()))
        } else if let Some(remote) = RemoteBaseline::parse(source) {
            remote.map(Self::Remote)
        } else {
            Err(format!(
                "{source:?} is not a baseline source; use primary, file:PATH, ssm:NAME, s3://BUCKET/KEY, a literal JSON policy document, or a catalogue: dir:PATH, ssm:/PATH/, s3://BUCKET/PREFIX/"
            ))
        }
    }
}

/// A baseline source that needs a call to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteBaseline {
    /// `ssm:NAME`.
    Ssm(String),
    /// `s3://bucket/key`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
    },
    /// `ssm:/path/`: a catalogue, one parameter per baseline (named by its last segment).
    SsmPath(String),
    /// `s3://bucket/prefix/`: a catalogue, one `NAME.json` object per baseline.
    S3Prefix {
        /// The bucket.
        bucket: String,
        /// The prefix, ending in `/` (or empty: the bucket's top level).
        prefix: String,
    },
}

/// A baseline source as read: one template, or the catalogue's (name, origin, text).
#[derive(Debug, Clone)]
pub enum Fetched {
    /// `ssm:NAME`, `s3://BUCKET/KEY`.
    One(Template),
    /// `ssm:/PATH/`, `s3://BUCKET/PREFIX/`, `dir:PATH`.
    Catalogue {
        /// Where the catalogue is.
        origin: String,
        /// Each baseline.
        entries: Vec<Entry>,
    },
}

/// One baseline of a catalogue as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name (what a key's tag says).
    pub name: String,
    /// Where it came from (`file:…`, `ssm:…`, `s3://…`), for messages.
    pub origin: String,
    /// The template text.
    pub text: String,
}

impl RemoteBaseline {
    /// Recognises `ssm:NAME` and `s3://bucket/key`; `None` for any other source.
    pub fn parse(source: &str) -> Option<Result<Self, String>> {
        if let Some(name) = source.strip_prefix("ssm:") {
            return Some(if name.is_empty() {
                Err("ssm: needs a parameter name, e.g. ssm:/kms-replica-guard/baseline".into())
            } else if name.ends_with('/') {
                if name.starts_with('/') {
                    Ok(Self::SsmPath(name.to_owned()))
                } else {
                    Err(format!(
                        "ssm:{name}: a catalogue path starts and ends with /, e.g. ssm:/kms-replica-guard/baselines/"
                    ))
                }
            } else {
                Ok(Self::Ssm(name.to_owned()))
            });
        }
        if !source.starts_with("s3://") {
            return None;
        }
        if source.ends_with('/') {
            let rest = &source["s3://".len()..];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Some(if bucket.is_empty() {
                Err(format!("{source:?}: use s3://BUCKET/PREFIX/"))
            } else {
                Ok(Self::S3Prefix {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                })
            });
        }
        Some(match krg_aws::split_s3_url(source) {
            Some((bucket, key)) => Ok(Self::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
            None => Err(format!("{source:?}: use s3://BUCKET/KEY")),
        })
    }

    /// Reads the template text, or every template of a catalogue.
    pub async fn fetch(&self, remote: &impl RemoteText) -> Result<Fetched, ConfigError> {
        let origin = self.to_string();
        let unreadable = |e: CallError| {
            read_failed(
                "BASELINE_SOURCE",
                format!(
                    "cannot read the baseline {origin}: {e}; create it, or fix the name and the function's read permission"
                ),
                &e,
            )
        };
        let entries = match self {
            Self::Ssm(name) => {
                let text = remote.ssm_parameter(name).await.map_err(unreadable)?;
                return Template::new(origin.clone(), text)
                    .map(Fetched::One)
                    .map_err(|e| err("BASELINE_SOURCE", e.to_string()));
            }
            Self::S3 { bucket, key } => {
                let text = remote.s3_object(bucket, key).await.map_err(unreadable)?;
                return Template::new(origin.clone(), text)
                    .map(Fetched::One)
                    .map_err(|e| err("BASELINE_SOURCE", e.to_string()));
            }
            Self::SsmPath(path) => remote
                .ssm_parameters(path)
                .await
                .map_err(unreadable)?
                .into_iter()
                .map(|(name, text)| {
                    let short = name.strip_prefix(path.as_str()).unwrap_or(&name).to_owned();
                    Entry {
                        name: short,
                        origin: format!("ssm:{name}"),
                        text,
                    }
                })
                .collect(),
            Self::S3Prefix { bucket, prefix } => remote
                .s3_objects(bucket, prefix)
                .await
                .map_err(unreadable)?
                .into_iter()
                .filter_map(|(key, text)| {
                    let short = key.strip_prefix(prefix.as_str())?.strip_suffix(".json")?;
                    Some(Entry {
                        name: short.to_owned(),
                        origin: format!("s3://{bucket}/{key}"),
                        text,
                    })
                })
                .collect(),
        };
        Ok(Fetched::Catalogue { origin, entries })
    }
}

impl std::fmt::Display for RemoteBaseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ssm(name) => write!(f, "ssm:{name}"),
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Self::SsmPath(path) => write!(f, "ssm:{path}"),
            Self::S3Prefix { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// The `NAME.json` files of a catalogue directory (`dir:PATH`), sorted by name; other
/// files and subdirectories are not baselines.
pub(super) fn read_dir(path: &str) -> Result<(String, Vec<Entry>), ConfigError> {
    const VAR: &str = "BASELINE_SOURCE";
    let dir = std::fs::read_dir(path).map_err(|e| {
        err(
            VAR,
            format!("cannot read the baseline catalogue directory {path}: {e}"),
        )
    })?;
    let mut entries = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| err(VAR, format!("cannot list {path}: {e}")))?;
        let file = entry.path();
        let Some(name) = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        if name.starts_with('.') || !file.is_file() {
            continue;
        }
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| err(VAR, format!("cannot read baseline file {shown}: {e}")))?;
        entries.push(Entry {
            name: name.to_owned(),
            origin: format!("file:{shown}"),
            text,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((format!("dir:{path}"), entries))
}

/// Every baseline of a catalogue rendered and validated (grammar, limits, the lockout check
/// for the function's role and the member role), every problem reported at once naming its
/// file; then the catalogue with its tag and default.
pub(super) fn catalogue(
    o: &Options,
    tenancy: &Tenancy,
    trusted: &Trusted,
    origin: String,
    entries: Vec<Entry>,
) -> Result<Catalogue, ConfigError> {
    const VAR: &str = "BASELINE_SOURCE";
    let tag = o
        .baseline_tag
        .clone()
        .unwrap_or_else(|| DEFAULT_BASELINE_TAG.to_owned());
    let mut problems = Vec::new();
    let mut templates = BTreeMap::new();
    for Entry {
        name,
        origin: from,
        text,
    } in entries
    {
        if !valid_name(&name) {
            problems.push(format!(
                "{from}: {name:?} cannot name a baseline (1 to 128 letters, digits, '.', '_' or '-'; `primary` is reserved); rename it"
            ));
            continue;
        }
        let checked = Template::new(from.clone(), text)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                check_template(&t, o.remediator.as_ref(), o.home.as_ref())
                    .map_err(|e| e.problem)?;
                if let Some(fleet) = &tenancy.fleet {
                    check_member_template(&t, fleet, o.remediator.as_ref(), o.home.as_ref())
                        .map_err(|e| e.problem)?;
                }
                Ok(t)
            });
        match checked {
            Ok(t) => {
                // A breach fails the keys that pick this baseline, not the whole catalogue
                // (one planted entry must not stop the guard everywhere).
                let sample = sample_key(
                    o.remediator.as_ref(),
                    o.home.as_ref(),
                    tenancy.home.as_ref(),
                );
                if let Err(e) = refuse_breaches(&t, &sample, trusted, tenancy.home.is_some()) {
                    tracing::warn!(baseline = %name, origin = %t.origin(), problem = %e.problem, "a catalogue baseline breaks the guardrails; keys that pick it fail and nothing is written to them");
                }
                templates.insert(name, t);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(err(
            VAR,
            format!(
                "the baseline catalogue {origin} has {} invalid baseline(s); nothing is written until every one is fixed:\n{}",
                problems.len(),
                problems.join("\n")
            ),
        ));
    }
    let default = match &o.baseline_default {
        Some(name) => Choice::parse(name),
        None if templates.contains_key("default") => Choice::Named("default".into()),
        None => {
            return Err(err(
                "BASELINE_DEFAULT",
                format!(
                    "the catalogue {origin} has no baseline named default, so keys without the tag {tag} have none: set BASELINE_DEFAULT to one of {}, or to primary (mirror the primary)",
                    templates.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    };
    Catalogue::new(origin, templates, tag, default)
        .and_then(|c| c.with_scope(o.baseline_scope.clone().unwrap_or_default()))
        .map_err(|e| {
            let var = match e {
                CatalogueError::UnknownDefault { .. } => "BASELINE_DEFAULT",
                CatalogueError::UnknownScoped { .. } => "BASELINE_SCOPE",
                _ => VAR,
            };
            err(var, e.to_string())
        })
}
