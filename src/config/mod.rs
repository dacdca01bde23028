//! Typed configuration, checked once at start-up. The Lambda reads it from the environment
//! ([`Options::from_lookup`]); the CLI builds the same [`Options`] from its flags, with the
//! environment as clap's fallback. Every error names the variable, what was wrong and what
//! to set instead.
//!
//! - `vars`: every setting declared once (variable, flag, stack names, parser, docs);
//! - `parse`: the value parsers those declarations name;
//! - `sources`: where baselines come from, and a catalogue's entries checked together;
//! - `check`: the start-up checks of a resolved baseline (digests, guardrails, lockout);
//! - here: [`Config`], resolved from [`Options`].

mod check;
mod parse;
mod sources;
#[cfg(test)]
mod tests;
pub mod vars;

use check::*;
pub use parse::*;
pub use sources::*;
pub use vars::Options;

use std::sync::Arc;
use std::time::Duration;

use krg_aws::kms::RateLimits;

use krg_engine::baseline::{Baseline, RenderContext, Template};
use krg_engine::decide::lockout_guard;
use krg_engine::error::{CallError, ErrorKind};
use krg_engine::key::AccountId;
use krg_engine::ports::RemoteText;
use krg_engine::retry::Backoff;
use krg_engine::tenancy::{Fleet, MemberRole, Tenancy};
use krg_engine::{FlapGuard, Settings, Trusted};
use krg_policy::{Breach, validate};

/// Default CloudWatch namespace.
pub const DEFAULT_NAMESPACE: &str = "KmsReplicaGuard";
/// Default tag key that excludes a key from management.
pub const DEFAULT_EXCLUDE_TAG: &str = "kms-replica-guard:exclude";
/// Default key prefix of backups, write records and claims in `BACKUP_BUCKET`.
pub const DEFAULT_BACKUP_PREFIX: &str = "kms-replica-guard/";
/// Default number of keys reconciled at once (per Region in a sweep). A Region read at the
/// GetKeyPolicy pace (800/s) needs about 800/s × its latency in flight: 20 at 25 ms (the
/// measurements behind the value: the book's Performance chapter). A sweep never has more
/// than 850 calls in flight (`MAX_CALLS_IN_FLIGHT`), whatever this × its places.
pub const DEFAULT_CONCURRENCY: u64 = 32;

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
    /// Where a scheduled sweep sends its planned work items (`SWEEP_QUEUE_URL`); `None`:
    /// the sweep runs inline.
    pub sweep_queue_url: Option<String>,
    /// The EventBridge bus every drift is published to (`EVENT_BUS`, default `default`);
    /// `None` (`off`): no notifications.
    pub event_bus: Option<String>,
    /// Every drift, and every heal, as a Security Hub finding in the key's own account and
    /// Region (`SECURITY_HUB=on`; default off).
    pub security_hub: bool,
    /// The role the detector assumes in member accounts (`MEMBER_READ_ROLE_NAME`); `None`:
    /// the member role.
    pub member_read_role: Option<MemberRole>,
}

/// A configuration problem; the function refuses to act until it is fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
    /// A read at start-up failed for a reason that may pass (throttling, a timeout, a grant
    /// not yet visible to IAM): the invocation fails retryably and the next one reads again,
    /// instead of the execution environment keeping the error for its life.
    pub transient: bool,
}

fn err(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
        transient: false,
    }
}

/// A start-up read that failed: transient when retrying may help (throttled, timed out,
/// unreachable) or when access was denied (IAM grants take a while to be seen after a
/// deployment); a missing parameter or object, or a bad value, is final.
fn read_failed(variable: &'static str, problem: String, e: &CallError) -> ConfigError {
    ConfigError {
        transient: matches!(
            e.kind,
            ErrorKind::Throttled | ErrorKind::Transient | ErrorKind::AccessDenied
        ),
        ..err(variable, problem)
    }
}

/// Reads a variable of the process environment; an empty value is unset.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// The guardrail breaches of a template rendered for a sample key of the function's own
    /// account (`validate-baseline`); empty when it is within the guardrails.
    pub fn breaches(&self, t: &Template) -> Vec<Breach> {
        let settings = &self.settings;
        let home = settings.tenancy.home.as_ref();
        let sample = sample_key(
            settings.remediator.as_ref(),
            settings.sweep_regions.first(),
            home,
        );
        breaches_of(t, &sample, &settings.trusted, home.is_some())
    }

    /// What is wrong with the baseline(s) rendered for a sample key of `account` (in the first
    /// sweep Region): grammar, the lockout check for the role that writes there (the
    /// remediator at home, the member role elsewhere), and the guardrails. Empty when every
    /// template would be written there; `doctor` asks it of each account worked in.
    pub fn problems_in(&self, account: &AccountId) -> Vec<String> {
        let settings = &self.settings;
        let sample = sample_key(
            settings.remediator.as_ref(),
            settings.sweep_regions.first(),
            Some(account),
        );
        let role = settings.actor_in(account, sample.partition());
        let templates: Vec<(&str, &Template)> = match &settings.baseline {
            Baseline::Primary => Vec::new(),
            Baseline::Template(t) => vec![(t.origin(), t)],
            Baseline::Catalogue(c) => c.templates().collect(),
        };
        let mut problems = Vec::new();
        for (name, t) in templates {
            let text = t.render(RenderContext {
                key: &sample,
                primary_region: sample.region(),
            });
            if let Err(errors) = validate(&text, &lockout_guard(&sample, role.as_ref())) {
                problems.extend(errors.0.iter().map(|e| format!("{name}: {e}")));
            }
            problems.extend(
                breaches_of(t, &sample, &settings.trusted, true)
                    .iter()
                    .map(|b| format!("{name}: refused by the guardrails: {b}")),
            );
        }
        problems
    }

    /// Reads the process environment, fetching an `ssm:` or `s3://` baseline through `remote`.
    pub async fn load(remote: &impl RemoteText) -> Result<Self, ConfigError> {
        Self::load_from(env_var, remote).await
    }

    /// Like [`Config::load`], reading variables through `get`.
    pub async fn load_from(
        get: impl Fn(&str) -> Option<String>,
        remote: &impl RemoteText,
    ) -> Result<Self, ConfigError> {
        Self::resolve(Options::from_lookup(get)?, remote).await
    }

    /// Reads configuration through `get` (the environment, or a map in tests). `ssm:` and
    /// `s3://` baselines need a call: use [`Config::load_from`] for them.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::build(Options::from_lookup(get)?, None, None)
    }

    /// Checks `options` as a whole and applies the defaults, fetching an `ssm:` or `s3://`
    /// baseline through `remote`, and the function's own account (GetCallerIdentity) when it
    /// has member accounts and no `REMEDIATOR_ROLE_ARN` names it.
    pub async fn resolve(options: Options, remote: &impl RemoteText) -> Result<Self, ConfigError> {
        let fetched = match &options.baseline {
            Some(BaselineSource::Remote(spec)) => Some(spec.fetch(remote).await?),
            _ => None,
        };
        let caller = match (&options.member_role, &options.remediator) {
            (Some(_), None) => Some(remote.caller_account().await.map_err(|e| {
                read_failed(
                    "MEMBER_ROLE_NAME",
                    format!("the function's own account is needed to tell it from member accounts, and reading it failed: {e}; set REMEDIATOR_ROLE_ARN to the function's role ARN"),
                    &e,
                )
            })?),
            _ => None,
        };
        Self::build(options, fetched, caller)
    }

    /// The accounts worked in: the function's own (from `REMEDIATOR_ROLE_ARN`, else the
    /// caller's) and, with `MEMBER_ROLE_NAME`, the members of `MEMBER_ACCOUNTS`.
    fn tenancy(o: &Options, caller: Option<AccountId>) -> Result<Tenancy, ConfigError> {
        let home = o
            .remediator
            .as_ref()
            .map(|r| r.account().clone())
            .or(caller);
        let fleet = match (&o.member_role, &o.member_accounts) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(err(
                    "MEMBER_ROLE_NAME",
                    "MEMBER_ACCOUNTS is set but MEMBER_ROLE_NAME is not: set MEMBER_ROLE_NAME to the role the member stack creates in each account (e.g. kms-replica-guard-member), or unset MEMBER_ACCOUNTS to heal this account only",
                ));
            }
            (Some(_), None) => {
                return Err(err(
                    "MEMBER_ACCOUNTS",
                    "MEMBER_ROLE_NAME is set, so the function may enter other accounts, but MEMBER_ACCOUNTS does not say which: set it to a comma-separated list of 12-digit account ids, or to `organization` for every active account of the organisation",
                ));
            }
            (Some(name), Some(members)) => Some(Fleet {
                role: MemberRole::new(name, o.member_external_id.clone())
                    .map_err(|e| err("MEMBER_ROLE_NAME", e.to_string()))?,
                members: members.clone(),
            }),
        };
        if fleet.is_some() && home.is_none() {
            return Err(err(
                "REMEDIATOR_ROLE_ARN",
                "with MEMBER_ROLE_NAME set, the function's own account must be known: set REMEDIATOR_ROLE_ARN to the function's role ARN (or load the configuration with Config::load, which asks STS)",
            ));
        }
        Ok(Tenancy { home, fleet })
    }

    fn build(
        o: Options,
        fetched: Option<Fetched>,
        caller: Option<AccountId>,
    ) -> Result<Self, ConfigError> {
        const VAR: &str = "BASELINE_SOURCE";
        let tenancy = Self::tenancy(&o, caller)?;
        let member_read_role = match (&o.member_read_role, &o.member_role) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(err(
                    "MEMBER_READ_ROLE_NAME",
                    "MEMBER_READ_ROLE_NAME is set but MEMBER_ROLE_NAME is not: the read-only role is the detector's way into the member accounts MEMBER_ROLE_NAME and MEMBER_ACCOUNTS open; set both, or unset MEMBER_READ_ROLE_NAME",
                ));
            }
            (Some(name), Some(_)) => Some(
                MemberRole::new(name, o.member_external_id.clone())
                    .map_err(|e| err("MEMBER_READ_ROLE_NAME", e.to_string()))?,
            ),
        };
        let trusted = Trusted {
            accounts: o.trusted_accounts.clone().unwrap_or_default(),
            orgs: o.trusted_orgs.clone().unwrap_or_default(),
        };
        let baseline = match (
            o.baseline.clone().unwrap_or(BaselineSource::Primary),
            fetched,
        ) {
            (_, Some(Fetched::One(t))) => Baseline::Template(t),
            (_, Some(Fetched::Catalogue { origin, entries })) => {
                Baseline::Catalogue(catalogue(&o, &tenancy, &trusted, origin, entries)?)
            }
            (BaselineSource::Dir(path), None) => {
                let (origin, entries) = read_dir(&path)?;
                Baseline::Catalogue(catalogue(&o, &tenancy, &trusted, origin, entries)?)
            }
            (BaselineSource::Primary, None) => Baseline::Primary,
            (BaselineSource::File(path), None) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| err(VAR, format!("cannot read baseline file {path}: {e}")))?;
                Baseline::Template(
                    Template::new(format!("file:{path}"), text)
                        .map_err(|e| err(VAR, e.to_string()))?,
                )
            }
            (BaselineSource::Literal(text), None) => Baseline::Template(
                Template::new("literal BASELINE_SOURCE", text)
                    .map_err(|e| err(VAR, e.to_string()))?,
            ),
            (BaselineSource::Remote(spec), None) => {
                return Err(err(
                    VAR,
                    format!(
                        "{spec} must be read with a call; load the configuration with Config::load"
                    ),
                ));
            }
        };
        verify_digests(&baseline, o.baseline_sha256.as_ref())?;
        if let Baseline::Template(t) = &baseline {
            check_template(t, o.remediator.as_ref(), o.home.as_ref())?;
            let home_key = sample_key(
                o.remediator.as_ref(),
                o.home.as_ref(),
                tenancy.home.as_ref(),
            );
            refuse_breaches(t, &home_key, &trusted, tenancy.home.is_some())?;
            if let Some(fleet) = &tenancy.fleet {
                check_member_template(t, fleet, o.remediator.as_ref(), o.home.as_ref())?;
                let member = member_sample(fleet, o.remediator.as_ref(), o.home.as_ref());
                refuse_breaches(t, &member, &trusted, true)?;
            }
        }
        if !matches!(baseline, Baseline::Catalogue(_)) {
            for (var, set) in [
                ("BASELINE_TAG", o.baseline_tag.is_some()),
                ("BASELINE_DEFAULT", o.baseline_default.is_some()),
                ("BASELINE_SCOPE", o.baseline_scope.is_some()),
            ] {
                if set {
                    return Err(err(
                        var,
                        "applies to a baseline catalogue only (BASELINE_SOURCE=dir:PATH, ssm:/PATH/ or s3://BUCKET/PREFIX/); unset it, or point BASELINE_SOURCE at a catalogue",
                    ));
                }
            }
        }
        let metrics_namespace = o
            .metrics_namespace
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        let event_bus = match o.event_bus {
            None => Some(DEFAULT_EVENT_BUS.to_owned()),
            Some(off) if off.eq_ignore_ascii_case(EVENT_BUS_OFF) => None,
            Some(bus) => Some(bus),
        };
        let backoff = Backoff::default();
        let consistency = Backoff {
            attempts: o
                .creating_retry_attempts
                .map_or(backoff.attempts, |n| n as u32),
            base: o
                .creating_retry_base_ms
                .map_or(backoff.base, Duration::from_millis),
            max: backoff.max,
        };
        let flap = FlapGuard::default();
        let settings = Settings {
            mode: o.mode.unwrap_or_default(),
            baseline,
            baseline_match: o.baseline_match.unwrap_or_default(),
            mirror_rewrite: o.mirror_rewrite.unwrap_or(false),
            exclude_tag: match o.exclude_tag {
                Some(off) if off == EXCLUDE_TAG_OFF => None,
                Some(tag) => Some(tag),
                None => Some(DEFAULT_EXCLUDE_TAG.to_owned()),
            },
            consistency,
            concurrency: o.concurrency.unwrap_or(DEFAULT_CONCURRENCY) as usize,
            sweep_regions: o
                .sweep_regions
                .unwrap_or_else(|| o.home.iter().cloned().collect()),
            flap: FlapGuard {
                max: o.flap_max.map_or(flap.max, |n| n as usize),
                window: o.flap_window.unwrap_or(flap.window),
            },
            remediator: o.remediator,
            tenancy,
            trusted,
            exemption_max: o
                .exemption_max_days
                .map(|days| Duration::from_secs(days * 86_400)),
        };
        // The ranges were checked when the values were read (vars.rs).
        let defaults = RateLimits::default();
        let rate = |given: Option<u64>, default: u32| given.map_or(default, |n| n as u32);
        let rate_limits = RateLimits {
            describe_key: rate(o.rate_describe_key, defaults.describe_key),
            get_key_policy: rate(o.rate_get_key_policy, defaults.get_key_policy),
            put_key_policy: rate(o.rate_put_key_policy, defaults.put_key_policy),
            list_keys: rate(o.rate_list_keys, defaults.list_keys),
            list_resource_tags: rate(o.rate_list_resource_tags, defaults.list_resource_tags),
            // 0: the function's concurrency is not reserved, so nothing is shared.
            instances: o.rate_instances.map_or(1, |n| n.max(1) as u32),
        };
        Ok(Self {
            settings: Arc::new(settings),
            metrics_namespace,
            rate_limits,
            backup_bucket: o.backup_bucket,
            backup_prefix: o
                .backup_prefix
                .unwrap_or_else(|| DEFAULT_BACKUP_PREFIX.to_owned()),
            sweep_queue_url: o.sweep_queue_url,
            event_bus,
            security_hub: o.security_hub.unwrap_or(false),
            member_read_role,
        })
    }
}

/// The bus drifts are published to unless `EVENT_BUS` says otherwise.
pub const DEFAULT_EVENT_BUS: &str = "default";
