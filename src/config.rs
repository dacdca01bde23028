//! Typed configuration from the environment, checked once at start-up. Every error names
//! the variable, what was wrong and what to set instead.

use std::sync::Arc;

use crate::core::baseline::{Baseline, RenderContext, Template};
use crate::core::key::{KeyArn, Region, RoleArn};
use crate::core::policy::{LockoutGuard, ValidationError, validate};
use crate::reconcile::{Mode, Settings};
use crate::retry::Backoff;

/// Default CloudWatch namespace.
pub const DEFAULT_NAMESPACE: &str = "KmsReplicaGuard";
/// Default tag key that excludes a key from management.
pub const DEFAULT_EXCLUDE_TAG: &str = "kms-replica-guard:exclude";

/// Everything the function is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the reconcile engine does.
    pub settings: Arc<Settings>,
    /// CloudWatch namespace for the metrics.
    pub metrics_namespace: String,
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

    /// Reads configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
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
        let baseline = parse_baseline(get("BASELINE_SOURCE").as_deref().unwrap_or("primary"))?;
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
            exclude_tag: get("EXCLUDE_TAG").unwrap_or_else(|| DEFAULT_EXCLUDE_TAG.to_owned()),
            remediator,
            consistency,
            concurrency: number("CONCURRENCY", 8)?.clamp(1, 64) as usize,
            sweep_regions,
        };
        Ok(Self {
            settings: Arc::new(settings),
            metrics_namespace,
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
                "{source:?}: SSM and S3 baselines are not supported by this version; use primary, file:PATH or a literal JSON document"
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
    let sample: KeyArn =
        format!("arn:aws:kms:{region}:{account}:key/mrk-00000000000000000000000000000000")
            .parse()
            .expect("a well-formed sample ARN");
    let text = t
        .render(RenderContext {
            key: &sample,
            primary_region: sample.region(),
        })
        .map_err(|e| err("BASELINE_SOURCE", e.to_string()))?;
    let guard = LockoutGuard {
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
        assert_eq!(c.settings.exclude_tag, "kms-replica-guard:exclude");
        assert_eq!(c.settings.sweep_regions, vec!["us-east-1".parse().unwrap()]);
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
            ("BASELINE_SOURCE", "ssm:/kms/baseline", "not supported"),
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
