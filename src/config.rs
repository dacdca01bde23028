//! Typed configuration from the environment, checked once at start-up. Every error names
//! the variable, what was wrong and what to set instead.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::aws::kms::RateLimits;
use crate::core::baseline::{Baseline, RenderContext, Template};
use crate::core::key::{KeyArn, Region, RoleArn};
use crate::core::policy::{LockoutGuard, ValidationError, validate};
use crate::reconcile::ports::CallError;
use crate::reconcile::{FlapGuard, Mode, Settings};
use crate::retry::Backoff;

/// Default CloudWatch namespace.
pub const DEFAULT_NAMESPACE: &str = "KmsReplicaGuard";
/// Default tag key that excludes a key from management.
pub const DEFAULT_EXCLUDE_TAG: &str = "kms-replica-guard:exclude";

/// `EXCLUDE_TAG` value that turns exclusion by tag off (one KMS call fewer per fix).
pub const EXCLUDE_TAG_OFF: &str = "off";

/// Everything the function is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the reconcile engine does.
    pub settings: Arc<Settings>,
    /// CloudWatch namespace for the metrics.
    pub metrics_namespace: String,
    /// Client-side KMS rate limits per Region.
    pub rate_limits: RateLimits,
    /// Where previous policies are backed up (`BACKUP_BUCKET`), if anywhere.
    pub backup_bucket: Option<String>,
    /// Key prefix of the backups in the bucket (`BACKUP_PREFIX`).
    pub backup_prefix: String,
}

/// Where a baseline kept outside the function is read from.
pub trait RemoteText {
    /// The value of an SSM parameter (decrypted).
    fn ssm_parameter(&self, name: &str) -> impl Future<Output = Result<String, CallError>> + Send;
    /// The body of an S3 object.
    fn s3_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<String, CallError>> + Send;
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
}

impl RemoteBaseline {
    /// Recognises `ssm:NAME` and `s3://bucket/key`.
    pub fn parse(source: &str) -> Option<Result<Self, ConfigError>> {
        if let Some(name) = source.strip_prefix("ssm:") {
            return Some(if name.is_empty() {
                Err(err(
                    "BASELINE_SOURCE",
                    "ssm: needs a parameter name, e.g. ssm:/kms-replica-guard/baseline",
                ))
            } else {
                Ok(Self::Ssm(name.to_owned()))
            });
        }
        if !source.starts_with("s3://") {
            return None;
        }
        Some(match crate::aws::split_s3_url(source) {
            Some((bucket, key)) => Ok(Self::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
            None => Err(err(
                "BASELINE_SOURCE",
                format!("{source:?}: use s3://BUCKET/KEY"),
            )),
        })
    }

    /// Reads the template text.
    pub async fn fetch(&self, remote: &impl RemoteText) -> Result<Template, ConfigError> {
        let (origin, text) = match self {
            Self::Ssm(name) => (format!("ssm:{name}"), remote.ssm_parameter(name).await),
            Self::S3 { bucket, key } => (
                format!("s3://{bucket}/{key}"),
                remote.s3_object(bucket, key).await,
            ),
        };
        let text = text.map_err(|e| {
            err(
                "BASELINE_SOURCE",
                format!("cannot read the baseline {origin}: {e}; create it, or fix the name and the function's read permission"),
            )
        })?;
        Template::new(origin, text).map_err(|e| err("BASELINE_SOURCE", e.to_string()))
    }
}

/// A configuration problem; the function refuses to act until it is fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
}

fn err(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the process environment, fetching an `ssm:` or `s3://` baseline through `remote`.
    pub async fn load(remote: &impl RemoteText) -> Result<Self, ConfigError> {
        Self::load_from(|k| std::env::var(k).ok().filter(|v| !v.is_empty()), remote).await
    }

    /// Like [`Config::load`], reading variables through `get`.
    pub async fn load_from(
        get: impl Fn(&str) -> Option<String>,
        remote: &impl RemoteText,
    ) -> Result<Self, ConfigError> {
        let source = get("BASELINE_SOURCE").unwrap_or_default();
        match RemoteBaseline::parse(source.trim()) {
            Some(spec) => {
                let template = spec?.fetch(remote).await?;
                Self::build(&get, Some(template))
            }
            None => Self::build(&get, None),
        }
    }

    /// Reads configuration through `get` (the environment, or a map in tests). `ssm:` and
    /// `s3://` baselines need a call: use [`Config::load_from`] for them.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::build(&get, None)
    }

    fn build(
        get: &impl Fn(&str) -> Option<String>,
        fetched: Option<Template>,
    ) -> Result<Self, ConfigError> {
        let mode = match get("REMEDIATION_MODE").as_deref() {
            None | Some("dry-run") => Mode::DryRun,
            Some("enforce") => Mode::Enforce,
            Some(other) => {
                return Err(err(
                    "REMEDIATION_MODE",
                    format!(
                        "{other:?} is not a mode; use dry-run (report only, the default) or enforce (rewrite drifted policies)"
                    ),
                ));
            }
        };
        let remediator = get("REMEDIATOR_ROLE_ARN")
            .map(|v| v.parse::<RoleArn>())
            .transpose()
            .map_err(|e| {
                err(
                    "REMEDIATOR_ROLE_ARN",
                    format!("{e}; set it to the function's execution role ARN"),
                )
            })?;
        let home = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .map(|r| r.parse::<Region>())
            .transpose()
            .map_err(|e| err("AWS_REGION", e.to_string()))?;
        let sweep_regions = match get("SWEEP_REGIONS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::parse::<Region>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    err(
                        "SWEEP_REGIONS",
                        format!("{e}; use a comma-separated list such as us-east-1,eu-west-1"),
                    )
                })?,
            None => home.iter().cloned().collect(),
        };
        let baseline = match fetched {
            Some(t) => Baseline::Template(t),
            None => parse_baseline(get("BASELINE_SOURCE").as_deref().unwrap_or("primary"))?,
        };
        if let Baseline::Template(t) = &baseline {
            check_template(t, remediator.as_ref(), home.as_ref())?;
        }
        let metrics_namespace =
            get("METRICS_NAMESPACE").unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        if metrics_namespace.starts_with("AWS/") || metrics_namespace.len() > 255 {
            return Err(err(
                "METRICS_NAMESPACE",
                "must not start with AWS/ and must be at most 255 characters",
            ));
        }
        let number = |var: &'static str, default: u64| -> Result<u64, ConfigError> {
            get(var).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| err(var, format!("{v:?} is not a whole number")))
            })
        };
        let defaults = Backoff::default();
        let consistency = Backoff {
            attempts: number("CREATING_RETRY_ATTEMPTS", defaults.attempts.into())?.clamp(1, 20)
                as u32,
            base: std::time::Duration::from_millis(number(
                "CREATING_RETRY_BASE_MS",
                defaults.base.as_millis() as u64,
            )?),
            max: defaults.max,
        };
        let settings = Settings {
            mode,
            baseline,
            exclude_tag: match get("EXCLUDE_TAG") {
                Some(off) if off == EXCLUDE_TAG_OFF => None,
                Some(tag) => Some(tag),
                None => Some(DEFAULT_EXCLUDE_TAG.to_owned()),
            },
            remediator,
            consistency,
            concurrency: number("CONCURRENCY", 8)?.clamp(1, 64) as usize,
            sweep_regions,
            flap: FlapGuard {
                max: number("FLAP_MAX", FlapGuard::default().max as u64)?.max(1) as usize,
                window: match get("FLAP_WINDOW") {
                    Some(w) => parse_duration(&w).ok_or_else(|| {
                        err(
                            "FLAP_WINDOW",
                            format!("{w:?} is not a duration; use e.g. 3600, 90m or 1h"),
                        )
                    })?,
                    None => FlapGuard::default().window,
                },
            },
        };
        let defaults = RateLimits::default();
        let rate = |var, default: u32| -> Result<u32, ConfigError> {
            Ok(number(var, default.into())?.clamp(1, 100_000) as u32)
        };
        let rate_limits = RateLimits {
            describe_key: rate("RATE_DESCRIBE_KEY", defaults.describe_key)?,
            get_key_policy: rate("RATE_GET_KEY_POLICY", defaults.get_key_policy)?,
            put_key_policy: rate("RATE_PUT_KEY_POLICY", defaults.put_key_policy)?,
            list_keys: rate("RATE_LIST_KEYS", defaults.list_keys)?,
            list_resource_tags: rate("RATE_LIST_RESOURCE_TAGS", defaults.list_resource_tags)?,
        };
        Ok(Self {
            settings: Arc::new(settings),
            metrics_namespace,
            rate_limits,
            backup_bucket: get("BACKUP_BUCKET"),
            backup_prefix: get("BACKUP_PREFIX").unwrap_or_else(|| "kms-replica-guard/".to_owned()),
        })
    }
}

/// `primary`, `file:PATH` or a literal JSON document.
fn parse_baseline(source: &str) -> Result<Baseline, ConfigError> {
    const VAR: &str = "BASELINE_SOURCE";
    let source = source.trim();
    if source == "primary" {
        return Ok(Baseline::Primary);
    }
    let template = if let Some(path) = source.strip_prefix("file:") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(VAR, format!("cannot read baseline file {path}: {e}")))?;
        Template::new(format!("file:{path}"), text)
    } else if source.starts_with('{') {
        Template::new("literal BASELINE_SOURCE", source)
    } else if source.starts_with("ssm:") || source.starts_with("s3://") {
        return Err(err(
            VAR,
            format!(
                "{source:?} must be read with a call; load the configuration with Config::load"
            ),
        ));
    } else {
        return Err(err(
            VAR,
            format!(
                "{source:?} is not a baseline source; use primary, file:PATH or a literal JSON policy document"
            ),
        ));
    };
    template
        .map(Baseline::Template)
        .map_err(|e| err(VAR, e.to_string()))
}

/// `3600`, `3600s`, `90m`, `1h`, `2d`.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Renders the template for a sample key and validates it, so a bad baseline is caught at
/// start-up rather than at the first write. Without a role ARN the real account is not
/// known yet, so the lockout check waits for the first real key.
fn check_template(
    t: &Template,
    remediator: Option<&RoleArn>,
    home: Option<&Region>,
) -> Result<(), ConfigError> {
    let account = remediator.map_or("123456789012", |r| r.account().as_str());
    let region = home.map_or("us-east-1", Region::as_str);
    // The role's partition (else the home Region's): the lockout check compares principal
    // ARNs with their partition, so the sample key must live where the role does.
    let partition = remediator
        .and_then(|r| r.as_str().split(':').nth(1))
        .or(home.map(Region::partition))
        .unwrap_or("aws");
    let sample: KeyArn =
        format!("arn:{partition}:kms:{region}:{account}:key/mrk-00000000000000000000000000000000")
            .parse()
            .expect("a well-formed sample ARN");
    let text = t.render(RenderContext {
        key: &sample,
        primary_region: sample.region(),
    });
    let guard = LockoutGuard {
        key_arn: sample.to_string(),
        account_id: account.to_owned(),
        partition: sample.partition().to_owned(),
        remediator_role_arn: remediator.map(|r| r.to_string()),
    };
    match validate(&text, &guard) {
        Ok(_) => Ok(()),
        Err(errors) => {
            let relevant: Vec<String> = errors
                .0
                .iter()
                .filter(|e| {
                    remediator.is_some()
                        || !matches!(
                            e,
                            ValidationError::LockoutNotAllowed { .. }
                                | ValidationError::LockoutDenied { .. }
                        )
                })
                .map(ToString::to_string)
                .collect();
            if relevant.is_empty() {
                Ok(())
            } else {
                Err(err(
                    "BASELINE_SOURCE",
                    format!(
                        "baseline {} is invalid; fix it before anything is written:\n{}",
                        t.origin(),
                        relevant.join("\n")
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const ROLE: &str = "arn:aws:iam::111122223333:role/kms-replica-guard-remediator";

    #[test]
    fn defaults_are_dry_run_mirroring_the_primary() {
        let c = config(&[("AWS_REGION", "us-east-1")]).unwrap();
        assert_eq!(c.settings.mode, Mode::DryRun);
        assert_eq!(c.settings.baseline, Baseline::Primary);
        assert_eq!(c.metrics_namespace, "KmsReplicaGuard");
        assert_eq!(
            c.settings.exclude_tag.as_deref(),
            Some("kms-replica-guard:exclude")
        );
        assert_eq!(c.settings.sweep_regions, vec!["us-east-1".parse().unwrap()]);
    }

    #[test]
    fn exclusion_by_tag_can_be_renamed_or_turned_off() {
        let renamed = config(&[("EXCLUDE_TAG", "team:hands-off")]).unwrap();
        assert_eq!(
            renamed.settings.exclude_tag.as_deref(),
            Some("team:hands-off")
        );
        let off = config(&[("EXCLUDE_TAG", "off")]).unwrap();
        assert_eq!(off.settings.exclude_tag, None);
    }

    #[test]
    fn a_literal_baseline_is_validated_at_start_up() {
        let ok = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#;
        let c = config(&[("BASELINE_SOURCE", ok), ("REMEDIATOR_ROLE_ARN", ROLE)]).unwrap();
        assert!(matches!(c.settings.baseline, Baseline::Template(_)));

        let missing_action = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Resource":"*"}]}"#;
        let e = config(&[("BASELINE_SOURCE", missing_action)]).unwrap_err();
        assert_eq!(e.variable, "BASELINE_SOURCE");
        assert!(e.problem.contains("Action"), "{e}");
    }

    #[test]
    fn a_baseline_that_locks_out_the_configured_role_is_refused_at_start_up() {
        let lockout = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:role/app"},"Action":"kms:*","Resource":"*"}]}"#;
        let e = config(&[("BASELINE_SOURCE", lockout), ("REMEDIATOR_ROLE_ARN", ROLE)]).unwrap_err();
        assert!(e.problem.contains("lock out"), "{e}");
    }

    #[test]
    fn a_baseline_is_checked_for_a_key_in_the_roles_partition() {
        let root = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:{{Partition}}:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#;
        let china = "arn:aws-cn:iam::111122223333:role/kms-replica-guard-remediator";
        config(&[("BASELINE_SOURCE", root), ("REMEDIATOR_ROLE_ARN", china)]).unwrap();
        // A baseline that names the root of another partition grants the role nothing.
        let commercial = root.replace("arn:{{Partition}}", "arn:aws");
        let e = config(&[
            ("BASELINE_SOURCE", commercial.as_str()),
            ("REMEDIATOR_ROLE_ARN", china),
        ])
        .unwrap_err();
        assert!(e.problem.contains("lock out"), "{e}");
    }

    #[test]
    fn flap_window_accepts_seconds_and_units() {
        for (v, secs) in [
            ("3600", 3600),
            ("90m", 5400),
            ("1h", 3600),
            ("2d", 172_800),
            ("30s", 30),
        ] {
            let c = config(&[("FLAP_WINDOW", v)]).unwrap();
            assert_eq!(c.settings.flap.window.as_secs(), secs, "{v}");
        }
        assert!(config(&[("FLAP_WINDOW", "0")]).is_err());
    }

    #[test]
    fn remote_baseline_sources_are_recognised() {
        assert_eq!(
            RemoteBaseline::parse("ssm:/a/b"),
            Some(Ok(RemoteBaseline::Ssm("/a/b".into())))
        );
        assert_eq!(
            RemoteBaseline::parse("s3://bucket/dir/b.json"),
            Some(Ok(RemoteBaseline::S3 {
                bucket: "bucket".into(),
                key: "dir/b.json".into()
            }))
        );
        assert!(matches!(RemoteBaseline::parse("s3://bucket"), Some(Err(_))));
        assert!(matches!(RemoteBaseline::parse("ssm:"), Some(Err(_))));
        assert_eq!(RemoteBaseline::parse("primary"), None);
    }

    #[test]
    fn a_baseline_file_is_read_and_a_missing_one_is_named() {
        let dir = std::env::temp_dir().join(format!("krg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("baseline.json");
        std::fs::write(
            &path,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#,
        )
        .unwrap();
        let source = format!("file:{}", path.display());
        assert!(config(&[("BASELINE_SOURCE", &source)]).is_ok());
        let e = config(&[("BASELINE_SOURCE", "file:/nonexistent/b.json")]).unwrap_err();
        assert!(e.problem.contains("/nonexistent/b.json"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_name_the_variable_and_the_fix() {
        let cases = [
            ("REMEDIATION_MODE", "fix-it", "enforce"),
            (
                "REMEDIATOR_ROLE_ARN",
                "arn:aws:iam::111122223333:user/bob",
                "execution role",
            ),
            ("SWEEP_REGIONS", "us-east-1,moon", "comma-separated"),
            ("BASELINE_SOURCE", "ssm:/kms/baseline", "Config::load"),
            ("FLAP_WINDOW", "an hour", "duration"),
            ("BASELINE_SOURCE", "mirror", "primary"),
            (
                "BASELINE_SOURCE",
                r#"{"a": "{{Nope}}"}"#,
                "unknown placeholder",
            ),
            ("METRICS_NAMESPACE", "AWS/KMS", "AWS/"),
            ("CONCURRENCY", "many", "whole number"),
        ];
        for (var, value, hint) in cases {
            let e = config(&[(var, value)]).unwrap_err();
            assert_eq!(e.variable, var, "{e}");
            assert!(e.to_string().contains(hint), "{var}={value}: {e}");
        }
    }
}
