//! The reconcile engine: takes a [`Trigger`], looks at live state through the
//! [`ports`](crate::ports), and returns one [`Outcome`] per key. Knows nothing about Lambda;
//! the CLI and the handler both drive it. One file per stage:
//!
//! - `event.rs`: an event's targets, described (waiting for fresh replicas) and
//!   fanned out to the replicas they reach;
//! - `sweep.rs`: every replica of some Regions, with the fewest calls;
//! - `replica.rs`: one replica: desired policy, live policy, verdict, the
//!   guards before a write (state, exclude tag, dry-run, flap guard, earlier mismatch);
//! - `claimed_write.rs`: the claim that makes concurrent invocations
//!   write one drift once;
//! - `verify.rs`: back up, write, re-read until the write shows;
//! - `restore.rs`: a backed-up policy put back.

mod claimed_write;
mod event;
mod replica;
mod restore;
mod sweep;
mod verify;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fleet;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub use claimed_write::CLAIM_TTL;
pub use replica::BaselineForError;

use crate::decide::KeyFacts;
use crate::error::{Api, CallError, ErrorKind};
use crate::key::{AccountId, KeyArn, Place, Region};
use crate::ledger::MemoryLedger;
use krg_policy::{CanonicalPolicy, Verdict, compare};

use crate::baseline::{Baseline, RenderContext};
use crate::outcome::{Outcome, Refused, Report, RunError, Skip, TagNews, TagNewsKind};
use crate::ports::{
    AccountDirectory, BackupStore, KeyDirectory, NoOrganization, PolicyStore, Tags,
};
use crate::settings::BaselineMatch;
use crate::settings::Settings;
use crate::tenancy::{Admission, Members};
use crate::trigger::{EventInfo, Scope, TagChange, Target, Trigger};

/// Reconciles replica key policies against the baseline, through the ports it is given.
pub struct Reconciler<K, P, B = MemoryLedger, A = NoOrganization> {
    keys: K,
    policies: P,
    backups: B,
    accounts: A,
    settings: Arc<Settings>,
}

/// Receives sweep progress: the CLI draws a progress bar; the Lambda needs nothing.
pub trait Progress: Sync {
    /// The sweep found this many multi-Region key copies to look at.
    fn planned(&self, _copies: usize) {}
    /// One copy is done (`None`: a primary, which is only a mirror source).
    fn advanced(&self, _outcome: Option<&Outcome>) {}
}

/// No progress reporting.
pub struct Quiet;
impl Progress for Quiet {}

/// What is already known about a replica before its policy is read.
enum Known {
    /// DescribeKey facts (the event path).
    Facts(Box<KeyFacts>),
    /// Only that a DescribeKey of a related key lists it as a replica (the sweep, fan-out):
    /// its own state is read only when a write is about to happen.
    Replica,
}

/// What one run reads once however many replicas need it: primary policies (mirrored by
/// every replica) and key tags (a catalogue pick, the exclude check, a primary's tag read
/// for each of its replicas).
#[derive(Default)]
struct RunCache {
    policies: Mutex<HashMap<KeyArn, Arc<PolicyCell>>>,
    tags: Mutex<HashMap<KeyArn, Arc<TagsCell>>>,
}

type PolicyCell = OnceCell<Result<String, CallError>>;
type TagsCell = OnceCell<Result<Tags, CallError>>;

impl RunCache {
    /// The cell of `key` in `map`, made on first use.
    fn cell<T>(map: &Mutex<HashMap<KeyArn, Arc<OnceCell<T>>>>, key: &KeyArn) -> Arc<OnceCell<T>> {
        map.lock()
            .expect("no panics while held")
            .entry(key.clone())
            .or_default()
            .clone()
    }
}

impl<K: KeyDirectory, P: PolicyStore> Reconciler<K, P, MemoryLedger> {
    /// An engine over these ports, keeping no backups (the previous policy is logged).
    pub fn new(keys: K, policies: P, settings: Arc<Settings>) -> Self {
        Self::with_backups(keys, policies, MemoryLedger::default(), settings)
    }
}

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore> Reconciler<K, P, B> {
    /// An engine that backs up every policy before overwriting it.
    pub fn with_backups(keys: K, policies: P, backups: B, settings: Arc<Settings>) -> Self {
        Self {
            keys,
            policies,
            backups,
            accounts: NoOrganization,
            settings,
        }
    }

    /// The same engine, reading the organisation's accounts from `accounts`
    /// (`MEMBER_ACCOUNTS=organization`).
    pub fn with_accounts<A: AccountDirectory>(self, accounts: A) -> Reconciler<K, P, B, A> {
        Reconciler {
            keys: self.keys,
            policies: self.policies,
            backups: self.backups,
            accounts,
            settings: self.settings,
        }
    }
}

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore, A: AccountDirectory> Reconciler<K, P, B, A> {
    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The same engine over the same ports, in dry-run whatever the configured mode: a
    /// detector (an AWS Config rule's invocation never writes a key policy).
    pub fn detector(&self) -> Reconciler<&K, &P, &B, &A> {
        let mut settings = (*self.settings).clone();
        settings.mode = crate::Mode::DryRun;
        Reconciler {
            keys: &self.keys,
            policies: &self.policies,
            backups: &self.backups,
            accounts: &self.accounts,
            settings: Arc::new(settings),
        }
    }

    /// Carries out a trigger and reports every key it touched.
    pub async fn run(&self, trigger: &Trigger) -> Report {
        match trigger {
            Trigger::Ignore { event, reason } => {
                tracing::info!(event_name = %event.name, event_id = ?event.id, reason = %reason, "no-op");
                Report::default()
            }
            Trigger::Sweep { accounts, regions } => {
                let (places, mut refused) =
                    match self.places(accounts.as_deref(), regions.as_deref()).await {
                        Ok(planned) => planned,
                        Err(e) => {
                            return Report {
                                errors: vec![RunError(e)],
                                ..Report::default()
                            };
                        }
                    };
                let mut report = self.sweep(&places, &Quiet).await;
                report.accounts_refused.append(&mut refused);
                report
            }
            Trigger::Keys { event, targets } => {
                if let Some(reason) = self.not_news(event, targets) {
                    tracing::info!(event_name = %event.name, event_id = ?event.id, reason = %reason, "no-op");
                    return Report::default();
                }
                let cache = RunCache::default();
                let mut report = Report {
                    tag_changes: self.tag_news(event, targets),
                    ..Report::default()
                };
                for target in targets {
                    let account = target.key.account();
                    let refusal = match self.admit(account).await {
                        Ok(Admission::Refused(why)) => {
                            Some(Outcome::skipped(&target.key, Skip::AccountNotAllowed(why)))
                        }
                        Ok(_) => None,
                        Err(e) => Some(Outcome::call_failed(&target.key, &e)),
                    };
                    match refusal {
                        Some(o) => {
                            log_outcome(event, &o);
                            report.outcomes.push(o);
                        }
                        None => {
                            self.reconcile_target(event, target, &cache, &mut report)
                                .await
                        }
                    }
                }
                report
            }
        }
    }

    /// Reconciles one key by ARN (the CLI's `check` and `diff`).
    pub async fn check(&self, key: &KeyArn) -> Report {
        let event = EventInfo::named("check");
        let target = Target {
            key: key.clone(),
            scope: Scope::Key,
        };
        let mut report = Report::default();
        self.reconcile_target(&event, &target, &RunCache::default(), &mut report)
            .await;
        report
    }
}

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore, A: AccountDirectory> Reconciler<K, P, B, A> {
    /// Why an event needs no call at all: a tag change of tags the guard does not read, or
    /// a PutKeyPolicy under the guard's own role that wrote exactly what the guard writes
    /// for that key (decided on CPU alone; when that cannot be decided without a call, the
    /// event is reconciled like any other and finds the key in sync).
    fn not_news(&self, event: &EventInfo, targets: &[Target]) -> Option<String> {
        if let Some(change) = &event.tags {
            let read = self.read_tags();
            return (!read.iter().any(|t| change.touches(t))).then(|| {
                format!(
                    "{} changed no tag the guard reads ({})",
                    event.name,
                    if read.is_empty() {
                        "none: EXCLUDE_TAG is off and there is no catalogue".to_owned()
                    } else {
                        read.join(", ")
                    }
                )
            });
        }
        let own = event.own_role.as_ref()?;
        let written = own.policy.as_deref();
        let ours = match (written, targets) {
            (Some(written), [target]) => self.is_what_the_guard_writes(&target.key, written),
            _ => false,
        };
        if ours {
            return Some(format!(
                "{} by the guard's role ({}) wrote what the guard writes for this key",
                event.name, own.role
            ));
        }
        tracing::warn!(event_name = %event.name, event_id = ?event.id, role = %own.role, "a call under the guard's own role did not write (or does not show) what the guard writes for this key; reconciled like any other");
        None
    }

    /// The tag keys the guard reads: the exclude tag and the catalogue's baseline tag.
    fn read_tags(&self) -> Vec<&str> {
        let catalogue = match &self.settings.baseline {
            Baseline::Catalogue(c) => Some(c.tag()),
            _ => None,
        };
        self.settings
            .exclude_tag
            .as_deref()
            .into_iter()
            .chain(catalogue)
            .collect()
    }

    /// Whether `written` is equivalent to the single baseline template rendered for `key`,
    /// without a call: only in exact mode, for a template that needs no DescribeKey.
    fn is_what_the_guard_writes(&self, key: &KeyArn, written: &str) -> bool {
        let Baseline::Template(t) = &self.settings.baseline else {
            return false;
        };
        if self.settings.baseline_match != BaselineMatch::Exact || t.needs_primary_region() {
            return false;
        }
        let rendered = t.render(RenderContext {
            key,
            primary_region: key.region(),
        });
        CanonicalPolicy::parse(&rendered)
            .is_ok_and(|desired| compare(written, &desired) == Verdict::InSync)
    }

    /// What a tag event changed of the tags the guard reads, as news naming the actor.
    fn tag_news(&self, event: &EventInfo, targets: &[Target]) -> Vec<TagNews> {
        let Some(change) = &event.tags else {
            return Vec::new();
        };
        let catalogue_tag = match &self.settings.baseline {
            Baseline::Catalogue(c) => Some(c.tag()),
            _ => None,
        };
        let mut news = Vec::new();
        for target in targets {
            let mut add = |tag: &str, kind| {
                let value = change.value_of(tag).map(str::to_owned);
                tracing::warn!(key_arn = %target.key, tag = %tag, value = ?value, change = ?kind, actor = ?event.actor.as_ref().and_then(|a| a.arn.as_deref()), "a tag the guard reads changed");
                news.push(TagNews {
                    key_arn: target.key.clone(),
                    change: kind,
                    tag: tag.to_owned(),
                    value,
                    actor: event.actor.clone(),
                });
            };
            if let Some(tag) = self.settings.exclude_tag.as_deref()
                && change.touches(tag)
            {
                let kind = match change {
                    TagChange::Set(_) => TagNewsKind::ExemptionGranted,
                    TagChange::Removed(_) => TagNewsKind::ExemptionRemoved,
                };
                add(tag, kind);
            }
            if let Some(tag) = catalogue_tag
                && change.touches(tag)
            {
                add(tag, TagNewsKind::BaselineSwitched);
            }
        }
        news
    }

    /// Whether the engine may work in `account` (the organisation's accounts are read only
    /// for `MEMBER_ACCOUNTS=organization`, from the account directory, which caches them).
    pub async fn admit(&self, account: &AccountId) -> Result<Admission, CallError> {
        let tenancy = &self.settings.tenancy;
        if tenancy.is_home(account) || !tenancy.needs_organization() {
            return Ok(tenancy.admit(account, None));
        }
        let org = self.accounts.organization_accounts().await?;
        Ok(tenancy.admit(account, Some(&org.into_iter().collect())))
    }

    /// The accounts the engine may work in: its own and every member (`MEMBER_ACCOUNTS`,
    /// or the organisation's ACTIVE accounts).
    pub async fn accounts(&self) -> Result<Vec<Option<AccountId>>, CallError> {
        let tenancy = &self.settings.tenancy;
        let home = tenancy.home.clone();
        let Some(fleet) = &tenancy.fleet else {
            return Ok(vec![home]);
        };
        let mut all: std::collections::BTreeSet<AccountId> = match &fleet.members {
            Members::Listed(ids) => ids.clone(),
            Members::Organization => self
                .accounts
                .organization_accounts()
                .await?
                .into_iter()
                .collect(),
        };
        all.extend(home);
        Ok(all.into_iter().map(Some).collect())
    }

    /// The (account, Region) places of a sweep: `accounts` (each admitted, the others
    /// refused) or every account the engine may work in, times `regions` or the configured
    /// sweep Regions.
    pub async fn places(
        &self,
        accounts: Option<&[AccountId]>,
        regions: Option<&[Region]>,
    ) -> Result<(Vec<Place>, Vec<Refused>), CallError> {
        let regions = regions.unwrap_or(&self.settings.sweep_regions);
        let mut refused = Vec::new();
        let accounts = match accounts {
            None => self.accounts().await?,
            Some(asked) => {
                let mut admitted = Vec::new();
                for account in asked {
                    match self.admit(account).await? {
                        Admission::Refused(why) => {
                            tracing::warn!(account = %account, reason = %why, "account not swept");
                            refused.push(Refused {
                                account: account.clone(),
                                why,
                            });
                        }
                        _ => admitted.push(Some(account.clone())),
                    }
                }
                admitted
            }
        };
        let places = accounts
            .iter()
            .flat_map(|a| regions.iter().map(|r| Place::new(a.clone(), r.clone())))
            .collect();
        Ok((places, refused))
    }
}

/// The failure while a primary Region change is in progress: which key is the primary is
/// not known until it ends, so nothing is written.
fn updating(key: &KeyArn, attempts: u32) -> CallError {
    CallError::new(
        Api::DescribeKey,
        key,
        ErrorKind::InvalidState,
        format!(
            "the key is still Updating (a primary Region change is in progress) after {attempts} attempt(s); nothing was written; Lambda will retry the event"
        ),
    )
}

/// A log field holding an outcome's object as compact JSON (as the response has it), or
/// empty when there is none.
fn json_or_empty<T: serde::Serialize>(v: &Option<T>) -> String {
    v.as_ref()
        .and_then(|v| serde_json::to_string(v).ok())
        .unwrap_or_default()
}

/// The per-key log line: the outcome as the response has it, with the event.
fn log_outcome(event: &EventInfo, o: &Outcome) {
    tracing::info!(
        event_name = %event.name,
        event_id = event.id.as_deref().unwrap_or(""),
        key_arn = %o.key_arn,
        account = %o.key_arn.account(),
        region = %o.region,
        action = o.action().as_str(),
        reason = o.reason().as_deref().unwrap_or(""),
        diff = o.diff.as_deref().unwrap_or(""),
        severity = o.exposure.as_ref().map_or("", |e| e.severity.as_str()),
        exposure = json_or_empty(&o.exposure),
        actor_arn = o.actor.as_ref().and_then(|a| a.arn.as_deref()).unwrap_or(""),
        actor = json_or_empty(&o.actor),
        "key reconciled"
    );
}
