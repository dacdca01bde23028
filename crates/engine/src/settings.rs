//! How the engine behaves: the mode, the baseline, the exclude tag, the remediator, the
//! waits and the flap guard. Built by the application's typed configuration.

use std::collections::BTreeSet;

use crate::baseline::Baseline;
use crate::key::{AccountId, KeyArn, Region, RoleArn};
use crate::tenancy::Tenancy;
use std::time::Duration;

use crate::retry::Backoff;

/// Detect only, or detect and fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Report drift and publish metrics; never write.
    #[default]
    DryRun,
    /// Write the baseline over drifted policies, then verify.
    Enforce,
}

impl Mode {
    /// The configuration value (`dry-run`, `enforce`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dry-run" => Ok(Mode::DryRun),
            "enforce" => Ok(Mode::Enforce),
            other => Err(format!(
                "{other:?} is not a mode; use dry-run (report only, the default) or enforce (rewrite drifted policies)"
            )),
        }
    }
}

/// How a live policy must match its baseline (`BASELINE_MATCH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BaselineMatch {
    /// Equivalent to the baseline, nothing more or less.
    #[default]
    Exact,
    /// Every baseline statement present; extra statements kept unless they grant anything
    /// public, cross-account or administrative, or take away what the baseline allows.
    Contains,
}

impl BaselineMatch {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            BaselineMatch::Exact => "exact",
            BaselineMatch::Contains => "contains",
        }
    }
}

impl std::str::FromStr for BaselineMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "exact" => Ok(BaselineMatch::Exact),
            "contains" => Ok(BaselineMatch::Contains),
            other => Err(format!(
                "{other:?} is not a match mode; use exact (the policy is the baseline, the default) or contains (the baseline's statements must be present; harmless extra statements are kept)"
            )),
        }
    }
}

/// How the engine behaves; built by the application's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Dry-run or enforce.
    pub mode: Mode,
    /// Where the desired policy comes from.
    pub baseline: Baseline,
    /// Exact, or must-contain.
    pub baseline_match: BaselineMatch,
    /// Mirroring also rewrites ARNs of the key's own account and Region in conditions
    /// (`MIRROR_REWRITE`).
    pub mirror_rewrite: bool,
    /// Keys carrying this tag key are left alone; `None` (`EXCLUDE_TAG=off`) turns the
    /// check, and its ListResourceTags call before every write, off.
    pub exclude_tag: Option<String>,
    /// The function's own role: its events are ignored and it must never be locked out
    /// (in member accounts, the member role takes its place: [`Settings::actor_in`]).
    pub remediator: Option<RoleArn>,
    /// The accounts worked in: the function's own, and members through the member role.
    pub tenancy: Tenancy,
    /// Waiting for a replica that is still being created.
    pub consistency: Backoff,
    /// Keys reconciled at once.
    pub concurrency: usize,
    /// Regions a scheduled sweep covers.
    pub sweep_regions: Vec<Region>,
    /// When to stop rewriting a key that keeps drifting back.
    pub flap: FlapGuard,
    /// Whom a written policy may grant access besides the key's own account.
    pub trusted: Trusted,
    /// `EXEMPTION_MAX_DAYS`: an exemption without an end, or ending later than this from
    /// now, is not honoured.
    pub exemption_max: Option<Duration>,
}

/// The accounts and organisations besides the key's own that a policy the guard writes may
/// grant access to (`TRUSTED_ACCOUNTS`, `TRUSTED_ORGS`). Empty by default: only the key's
/// own account, and member accounts do not trust each other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted {
    /// 12-digit account ids.
    pub accounts: BTreeSet<AccountId>,
    /// Organisation ids (`o-...`).
    pub orgs: BTreeSet<String>,
}

impl Settings {
    /// Whom a policy written to `key` may grant access: its own account and the trusted
    /// set. The guardrails and every severity are judged against it.
    pub fn trust_for(&self, key: &KeyArn) -> krg_policy::Trust {
        krg_policy::Trust::new(
            &format!("arn:{}:iam::{}:root", key.partition(), key.account()),
            self.trusted.accounts.iter().map(ToString::to_string),
            self.trusted.orgs.iter().cloned(),
        )
    }

    /// The role that acts in `account` (see [`Tenancy::actor_in`]).
    pub fn actor_in(&self, account: &AccountId, partition: &str) -> Option<RoleArn> {
        self.tenancy
            .actor_in(account, partition, self.remediator.as_ref())
    }
}

/// A key rewritten `max` times within `window` is left alone: another writer is fighting
/// the baseline, and an alarm is better than an endless tug of war.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapGuard {
    /// Writes allowed within the window.
    pub max: usize,
    /// The window.
    pub window: Duration,
}

impl Default for FlapGuard {
    fn default() -> Self {
        Self {
            max: 5,
            window: Duration::from_secs(3600),
        }
    }
}
