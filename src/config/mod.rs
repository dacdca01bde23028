//! Typed configuration, checked once at start-up. The Lambda reads it from the environment
//! ([`Options::from_lookup`]); the CLI builds the same [`Options`] from its flags, with the
//! environment as clap's fallback. Every error names the variable, what was wrong and what
//! to set instead.

mod parse;
pub mod vars;

pub use parse::*;
pub use vars::Options;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use krg_aws::kms::RateLimits;
use std::collections::BTreeMap;

use krg_engine::baseline::{Baseline, RenderContext, Template};
use krg_engine::catalogue::{Catalogue, CatalogueError, Choice, DEFAULT_BASELINE_TAG, valid_name};
use krg_engine::decide::lockout_guard;
use krg_engine::error::{CallError, ErrorKind};
use krg_engine::key::{AccountId, KeyArn, Region, RoleArn};
use krg_engine::ports::RemoteText;
use krg_engine::retry::Backoff;
use krg_engine::tenancy::{Fleet, MemberRole, Members, Tenancy};
use krg_engine::{FlapGuard, Settings, Trusted};
use krg_policy::{
    Breach, BreachReason, CanonicalPolicy, Trust, ValidationError, guardrails, validate,
};

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

/// The `NAME.json` files of a catalogue directory (`dir:PATH`), sorted by name; other
/// files and subdirectories are not baselines.
fn read_dir(path: &str) -> Result<(String, Vec<Entry>), ConfigError> {
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
fn catalogue(
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

/// The bus drifts are published to unless `EVENT_BUS` says otherwise.
pub const DEFAULT_EVENT_BUS: &str = "default";

/// Each baseline's SHA-256 logged (every cold start says what it holds keys to) and, with
/// `BASELINE_SHA256`, checked: a mismatch, a catalogue entry without a pair, or a pair for
/// no entry is a configuration error, and nothing is written.
fn verify_digests(baseline: &Baseline, pinned: Option<&Digests>) -> Result<(), ConfigError> {
    const VAR: &str = "BASELINE_SHA256";
    let mismatch = |t: &Template, expected: &str| {
        format!(
            "{} has SHA-256 {}, but BASELINE_SHA256 pins {expected}: it changed since it was pinned; nothing is written until they agree (if the change is yours, pin the new digest)",
            t.origin(),
            t.sha256()
        )
    };
    match (baseline, pinned) {
        (Baseline::Primary, None) => Ok(()),
        (Baseline::Primary, Some(_)) => Err(err(
            VAR,
            "pins a baseline read from a source, and BASELINE_SOURCE=primary reads none (a mirrored primary is held to the guardrails instead); unset it, or point BASELINE_SOURCE at a baseline",
        )),
        (Baseline::Template(t), pinned) => {
            tracing::info!(baseline = %t.origin(), sha256 = %t.sha256(), "baseline loaded");
            match pinned {
                None => Ok(()),
                Some(Digests::One(expected)) if expected == t.sha256() => Ok(()),
                Some(Digests::One(expected)) => Err(err(VAR, mismatch(t, expected))),
                Some(Digests::Named(_)) => Err(err(
                    VAR,
                    format!(
                        "NAME=HEX pairs pin a catalogue, and {} is a single baseline; set BASELINE_SHA256={}",
                        t.origin(),
                        t.sha256()
                    ),
                )),
            }
        }
        (Baseline::Catalogue(c), pinned) => {
            for (name, t) in c.templates() {
                tracing::info!(baseline = %name, origin = %t.origin(), sha256 = %t.sha256(), "baseline loaded");
            }
            let named = match pinned {
                None => return Ok(()),
                Some(Digests::Named(named)) => named,
                Some(Digests::One(_)) => {
                    return Err(err(
                        VAR,
                        format!(
                            "{} is a catalogue: pin each baseline as NAME=HEX, comma-separated",
                            c.origin()
                        ),
                    ));
                }
            };
            let mut problems = Vec::new();
            for (name, t) in c.templates() {
                match named.get(name) {
                    None => problems.push(format!(
                        "{name} ({}) has no NAME=HEX pair, so it is not trusted (a baseline nobody pinned may have been planted); pin it as {name}={} or remove it",
                        t.origin(),
                        t.sha256()
                    )),
                    Some(expected) if expected != t.sha256() => {
                        problems.push(mismatch(t, expected))
                    }
                    Some(_) => {}
                }
            }
            for name in named.keys() {
                if !c.templates().any(|(n, _)| n == name) {
                    problems.push(format!(
                        "{name} is pinned but the catalogue {} has no baseline of that name",
                        c.origin()
                    ));
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(err(VAR, problems.join("\n")))
            }
        }
    }
}

/// The guardrails on a template rendered for `sample`. When the function's account is not
/// known yet (`account_known` false), grants to named accounts wait for the first real key.
fn breaches_of(
    t: &Template,
    sample: &KeyArn,
    trusted: &Trusted,
    account_known: bool,
) -> Vec<Breach> {
    let text = t.render(RenderContext {
        key: sample,
        primary_region: sample.region(),
    });
    let Ok(policy) = CanonicalPolicy::parse(&text) else {
        // Grammar is the validation's to report.
        return Vec::new();
    };
    let trust = Trust::new(
        &format!("arn:{}:iam::{}:root", sample.partition(), sample.account()),
        trusted.accounts.iter().map(ToString::to_string),
        trusted.orgs.iter().cloned(),
    );
    guardrails(&policy, &trust)
        .into_iter()
        .filter(|b| {
            account_known
                || !matches!(
                    b.reason,
                    BreachReason::ForeignAccount { .. } | BreachReason::UntrustedLimit
                )
        })
        .collect()
}

/// [`breaches_of`] as a configuration error listing each statement and why.
fn refuse_breaches(
    t: &Template,
    sample: &KeyArn,
    trusted: &Trusted,
    account_known: bool,
) -> Result<(), ConfigError> {
    let breaches = breaches_of(t, sample, trusted, account_known);
    if breaches.is_empty() {
        return Ok(());
    }
    Err(err(
        "BASELINE_SOURCE",
        format!(
            "baseline {} grants what the guard never writes (rendered for account {}); fix it, or trust the account or organisation (TRUSTED_ACCOUNTS, TRUSTED_ORGS) if the access is meant:\n{}",
            t.origin(),
            sample.account(),
            breaches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    ))
}

/// A key to check a baseline with before any real key is seen: in the function's own
/// account (or `account`), home Region and partition.
fn sample_key(
    remediator: Option<&RoleArn>,
    home: Option<&Region>,
    account: Option<&AccountId>,
) -> KeyArn {
    let account = account
        .map(AccountId::as_str)
        .or(remediator.map(|r| r.account().as_str()))
        .unwrap_or("123456789012");
    let region = home.map_or("us-east-1", Region::as_str);
    // The role's partition (else the home Region's): the lockout check compares principal
    // ARNs with their partition, so the sample key must live where the role does.
    let partition = remediator
        .map(RoleArn::partition)
        .or(home.map(Region::partition))
        .unwrap_or("aws");
    format!("arn:{partition}:kms:{region}:{account}:key/mrk-00000000000000000000000000000000")
        .parse()
        .expect("a well-formed sample ARN")
}

/// The sample key of a member account: the first listed, else a stand-in.
fn member_sample(fleet: &Fleet, remediator: Option<&RoleArn>, home: Option<&Region>) -> KeyArn {
    let account: AccountId = match &fleet.members {
        Members::Listed(ids) => ids.iter().next().cloned(),
        Members::Organization => None,
    }
    .unwrap_or_else(|| "000000000000".parse().expect("12 digits"));
    sample_key(remediator, home, Some(&account))
}

/// The baseline as it renders for a member account's key: the member role must keep
/// `kms:PutKeyPolicy` there (the lockout check of every write in that account).
fn check_member_template(
    t: &Template,
    fleet: &Fleet,
    remediator: Option<&RoleArn>,
    home: Option<&Region>,
) -> Result<(), ConfigError> {
    let sample = member_sample(fleet, remediator, home);
    let account = sample.account();
    let text = t.render(RenderContext {
        key: &sample,
        primary_region: sample.region(),
    });
    let role = fleet.role.arn_in(account, sample.partition());
    validate(&text, &lockout_guard(&sample, Some(&role))).map_err(|errors| {
        err(
            "BASELINE_SOURCE",
            format!(
                "baseline {} would lock the member role out of member accounts' keys (rendered for account {account}, role {role}); allow it, or the account root via {{{{AccountId}}}}, kms:PutKeyPolicy:\n{}",
                t.origin(),
                errors
                    .0
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        )
    })?;
    Ok(())
}

/// Renders the template for a sample key and validates it, so a bad baseline is caught at
/// start-up rather than at the first write. Without a role ARN the real account is not
/// known yet, so the lockout check waits for the first real key.
fn check_template(
    t: &Template,
    remediator: Option<&RoleArn>,
    home: Option<&Region>,
) -> Result<(), ConfigError> {
    let sample = sample_key(remediator, home, None);
    let text = t.render(RenderContext {
        key: &sample,
        primary_region: sample.region(),
    });
    let guard = lockout_guard(&sample, remediator);
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
    use krg_engine::error::Api;
    use krg_engine::{BaselineMatch, Mode};
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
    fn a_baseline_naming_a_deleted_principal_or_a_lowercase_effect_is_refused_at_start_up() {
        let deleted = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":{"AWS":"AROA6QJX2M4TBCKL7WZNE"},"Action":"kms:Decrypt","Resource":"*"}]}"#;
        let e = config(&[("BASELINE_SOURCE", deleted)]).unwrap_err();
        assert!(e.problem.contains("AROA6QJX2M4TBCKL7WZNE"), "{e}");
        let lower = r#"{"Version":"2012-10-17","Statement":[{"Effect":"allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#;
        let e = config(&[("BASELINE_SOURCE", lower)]).unwrap_err();
        assert!(e.problem.contains("Effect"), "{e}");
    }

    #[test]
    fn rate_limits_are_shared_by_the_reserved_concurrency() {
        let c = config(&[("RATE_INSTANCES", "5"), ("RATE_PUT_KEY_POLICY", "10")]).unwrap();
        assert_eq!(
            (c.rate_limits.instances, c.rate_limits.put_key_policy),
            (5, 10)
        );
        // 0 (unreserved concurrency) is no sharing.
        assert_eq!(
            config(&[("RATE_INSTANCES", "0")])
                .unwrap()
                .rate_limits
                .instances,
            1
        );
    }

    #[test]
    fn out_of_range_numbers_are_refused_naming_the_range_not_clamped() {
        for (var, bad, range) in [
            ("CONCURRENCY", "0", "from 1 to 64"),
            ("CONCURRENCY", "65", "from 1 to 64"),
            ("CREATING_RETRY_ATTEMPTS", "21", "from 1 to 20"),
            ("RATE_PUT_KEY_POLICY", "0", "from 1 to 100000"),
            ("RATE_INSTANCES", "10001", "from 0 to 10000"),
            ("FLAP_MAX", "0", "from 1 to 1000"),
        ] {
            let e = config(&[(var, bad)]).unwrap_err();
            assert_eq!(e.variable, var);
            assert!(e.problem.contains(range), "{var}={bad}: {e}");
        }
        assert_eq!(
            config(&[("CONCURRENCY", "64")])
                .unwrap()
                .settings
                .concurrency,
            64
        );
    }

    #[test]
    fn a_bad_region_is_reported_under_the_variable_it_was_read_from() {
        let e = config(&[("AWS_DEFAULT_REGION", "moon")]);
        let e = e.unwrap_err();
        assert_eq!(e.variable, "AWS_DEFAULT_REGION", "{e}");
        assert!(e.problem.contains("moon"), "{e}");
        let e = config(&[("AWS_REGION", "mars")]).unwrap_err();
        assert_eq!(e.variable, "AWS_REGION", "{e}");
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

    /// Start-up reads that all fail the same way.
    struct Failing(ErrorKind);

    impl RemoteText for Failing {
        async fn caller_account(&self) -> Result<AccountId, CallError> {
            Err(CallError::new(
                Api::GetCallerIdentity,
                "creds",
                self.0,
                "no",
            ))
        }
        async fn ssm_parameter(&self, name: &str) -> Result<String, CallError> {
            Err(CallError::new(Api::GetParameter, name, self.0, "no"))
        }
        async fn s3_object(&self, bucket: &str, _: &str) -> Result<String, CallError> {
            Err(CallError::new(Api::GetObject, bucket, self.0, "no"))
        }
        async fn ssm_parameters(&self, path: &str) -> Result<Vec<(String, String)>, CallError> {
            Err(CallError::new(Api::GetParametersByPath, path, self.0, "no"))
        }
        async fn s3_objects(
            &self,
            bucket: &str,
            _: &str,
        ) -> Result<Vec<(String, String)>, CallError> {
            Err(CallError::new(Api::ListObjectsV2, bucket, self.0, "no"))
        }
    }

    #[tokio::test]
    async fn a_start_up_read_that_may_pass_is_transient_and_a_missing_baseline_is_final() {
        let load = |kind: ErrorKind, source: &'static str| async move {
            let map: HashMap<String, String> = [("BASELINE_SOURCE", source)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Config::load_from(|k| map.get(k).cloned(), &Failing(kind))
                .await
                .unwrap_err()
        };
        for kind in [ErrorKind::Throttled, ErrorKind::AccessDenied] {
            for source in ["ssm:/kms-replica-guard/baseline", "s3://b/baselines/"] {
                let e = load(kind, source).await;
                assert!(e.transient, "{kind:?} {source}: {e}");
                assert_eq!(e.variable, "BASELINE_SOURCE");
            }
        }
        let e = load(ErrorKind::NotFound, "ssm:/kms-replica-guard/baseline").await;
        assert!(!e.transient, "{e}");
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

    const HUB_ROLE: &str = "arn:aws:iam::999999999999:role/hub";

    #[test]
    fn the_detectors_read_role_needs_the_member_role_and_leaves_it_the_lockout_checks_subject() {
        let e = config(&[("MEMBER_READ_ROLE_NAME", "kms-replica-guard-detector")]).unwrap_err();
        assert_eq!(e.variable, "MEMBER_READ_ROLE_NAME", "{e}");
        assert!(e.problem.contains("MEMBER_ROLE_NAME"), "{e}");
        let c = config(&[
            ("REMEDIATOR_ROLE_ARN", HUB_ROLE),
            ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
            ("MEMBER_READ_ROLE_NAME", "kms-replica-guard-detector"),
            ("MEMBER_ACCOUNTS", "222233334444"),
            ("MEMBER_EXTERNAL_ID", "ext-42"),
        ])
        .unwrap();
        let reader = c.member_read_role.expect("the read role");
        let account: AccountId = "222233334444".parse().unwrap();
        assert_eq!(
            reader.arn_in(&account, "aws").as_str(),
            "arn:aws:iam::222233334444:role/kms-replica-guard-detector"
        );
        assert_eq!(reader.external_id(), Some("ext-42"));
        let writer = c.settings.tenancy.member_role().unwrap();
        assert_eq!(
            writer.arn_in(&account, "aws").as_str(),
            "arn:aws:iam::222233334444:role/kms-replica-guard-member"
        );
    }

    #[test]
    fn member_accounts_need_both_the_role_and_the_list_and_say_what_to_set() {
        let e = config(&[("MEMBER_ROLE_NAME", "kms-replica-guard-member")]).unwrap_err();
        assert_eq!(e.variable, "MEMBER_ACCOUNTS", "{e}");
        assert!(e.problem.contains("organization"), "{e}");
        let e = config(&[("MEMBER_ACCOUNTS", "222233334444")]).unwrap_err();
        assert_eq!(e.variable, "MEMBER_ROLE_NAME", "{e}");
        let e = config(&[
            ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
            ("MEMBER_ACCOUNTS", "222233334444"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "REMEDIATOR_ROLE_ARN", "{e}");
        let e = config(&[
            ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
            ("MEMBER_ACCOUNTS", "2222,3333"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "MEMBER_ACCOUNTS", "{e}");
        assert!(e.problem.contains("12 digits"), "{e}");
    }

    #[test]
    fn drifts_go_to_the_default_bus_unless_event_bus_says_otherwise() {
        assert_eq!(config(&[]).unwrap().event_bus.as_deref(), Some("default"));
        assert_eq!(config(&[("EVENT_BUS", "off")]).unwrap().event_bus, None);
        let arn = "arn:aws:events:us-east-1:111122223333:event-bus/security";
        assert_eq!(
            config(&[("EVENT_BUS", arn)]).unwrap().event_bus.as_deref(),
            Some(arn)
        );
        let e = config(&[("EVENT_BUS", "no spaces please")]).unwrap_err();
        assert_eq!(e.variable, "EVENT_BUS", "{e}");
        assert!(e.problem.contains("off"), "{e}");
    }

    #[test]
    fn a_hub_with_members_knows_its_own_account_and_the_member_role() {
        let c = config(&[
            ("REMEDIATOR_ROLE_ARN", HUB_ROLE),
            ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
            ("MEMBER_EXTERNAL_ID", "ext-42"),
            ("MEMBER_ACCOUNTS", "organization"),
            (
                "SWEEP_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/999999999999/work",
            ),
        ])
        .unwrap();
        let t = &c.settings.tenancy;
        assert_eq!(t.home.as_ref().unwrap().as_str(), "999999999999");
        assert!(t.needs_organization());
        assert_eq!(t.member_role().unwrap().external_id(), Some("ext-42"));
        assert!(c.sweep_queue_url.is_some());
    }

    #[test]
    fn a_baseline_that_locks_the_member_role_out_is_refused_at_start_up() {
        // Allows the hub's role only: fine at home, a lockout in every member account.
        let hub_only = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{HUB_ROLE}"}},"Action":"kms:*","Resource":"*"}}]}}"#
        );
        let e = config(&[
            ("REMEDIATOR_ROLE_ARN", HUB_ROLE),
            ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
            ("MEMBER_ACCOUNTS", "222233334444"),
            ("BASELINE_SOURCE", &hub_only),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "BASELINE_SOURCE");
        assert!(
            e.problem
                .contains("arn:aws:iam::222233334444:role/kms-replica-guard-member"),
            "{e}"
        );
        let root = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#;
        config(&[
            ("REMEDIATOR_ROLE_ARN", HUB_ROLE),
            ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
            ("MEMBER_ACCOUNTS", "222233334444"),
            ("BASELINE_SOURCE", root),
        ])
        .unwrap();
    }

    /// The catalogue this repository ships (`baselines/`), as `dir:` reads it.
    fn shipped() -> String {
        format!("dir:{}/baselines", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_shipped_catalogue_loads_with_its_two_baselines() {
        let source = shipped();
        let c = config(&[
            ("BASELINE_SOURCE", &source),
            ("BASELINE_DEFAULT", "example"),
            ("BASELINE_MATCH", "contains"),
            ("REMEDIATOR_ROLE_ARN", ROLE),
        ])
        .unwrap();
        let Baseline::Catalogue(cat) = &c.settings.baseline else {
            panic!("{:?}", c.settings.baseline);
        };
        let names: Vec<&str> = cat.templates().map(|(n, _)| n).collect();
        assert_eq!(names, ["example", "logs"]);
        assert_eq!(cat.tag(), "kms-replica-guard:baseline");
        assert_eq!(cat.default(), &Choice::Named("example".into()));
        assert_eq!(c.settings.baseline_match, BaselineMatch::Contains);
    }

    #[test]
    fn a_catalogue_directory_with_broken_files_is_refused_naming_each() {
        let dir = std::env::temp_dir().join(format!("krg-catalogue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = std::fs::read_to_string(format!(
            "{}/baselines/example.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        std::fs::write(dir.join("good.json"), &good).unwrap();
        std::fs::write(
            dir.join("typo.json"),
            good.replace("{{Region}}", "{{Regon}}"),
        )
        .unwrap();
        std::fs::write(dir.join("not-json.json"), "{").unwrap();
        std::fs::write(dir.join("notes.txt"), "not a baseline").unwrap();
        let source = format!("dir:{}", dir.display());
        let e = config(&[
            ("BASELINE_SOURCE", &source),
            ("BASELINE_DEFAULT", "good"),
            ("REMEDIATOR_ROLE_ARN", ROLE),
        ])
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("2 invalid baseline(s)")
                && text.contains("typo.json")
                && text.contains("Regon")
                && text.contains("not-json.json")
                && !text.contains("good.json")
                && !text.contains("notes.txt"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_catalogue_needs_a_default_and_its_settings_need_a_catalogue() {
        let source = shipped();
        let e = config(&[("BASELINE_SOURCE", &source)]).unwrap_err();
        assert_eq!(e.variable, "BASELINE_DEFAULT");
        assert!(e.problem.contains("example, logs"), "{e}");
        let e = config(&[("BASELINE_SOURCE", &source), ("BASELINE_DEFAULT", "nope")]).unwrap_err();
        assert_eq!(e.variable, "BASELINE_DEFAULT");
        let c = config(&[
            ("BASELINE_SOURCE", &source),
            ("BASELINE_DEFAULT", "primary"),
        ])
        .unwrap();
        assert!(
            matches!(&c.settings.baseline, Baseline::Catalogue(cat) if cat.default() == &Choice::Primary)
        );
        for var in ["BASELINE_TAG", "BASELINE_DEFAULT"] {
            let e = config(&[("BASELINE_SOURCE", "primary"), (var, "x")]).unwrap_err();
            assert_eq!(e.variable, var);
            assert!(e.problem.contains("catalogue"), "{e}");
        }
        let e = config(&[("BASELINE_MATCH", "superset")]).unwrap_err();
        assert!(
            e.problem.contains("exact") && e.problem.contains("contains"),
            "{e}"
        );
        let e = config(&[("MIRROR_REWRITE", "maybe")]).unwrap_err();
        assert_eq!(e.variable, "MIRROR_REWRITE");
    }

    #[test]
    fn catalogue_sources_are_told_from_single_baselines_by_the_trailing_slash() {
        assert_eq!(
            RemoteBaseline::parse("ssm:/krg/baselines/"),
            Some(Ok(RemoteBaseline::SsmPath("/krg/baselines/".into())))
        );
        assert!(matches!(RemoteBaseline::parse("ssm:krg/"), Some(Err(_))));
        assert_eq!(
            RemoteBaseline::parse("s3://bucket/baselines/"),
            Some(Ok(RemoteBaseline::S3Prefix {
                bucket: "bucket".into(),
                prefix: "baselines/".into()
            }))
        );
        assert_eq!(
            "dir:baselines".parse::<BaselineSource>(),
            Ok(BaselineSource::Dir("baselines".into()))
        );
    }
}
