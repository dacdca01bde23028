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
use crate::error::{CallError, ErrorKind};
use crate::key::{AccountId, KeyArn, Place, Region};
use crate::ledger::MemoryLedger;
use crate::outcome::{Outcome, Refused, Report, RunError, Skip};
use crate::ports::{BackupStore, KeyDirectory, PolicyStore, Tags};
use crate::settings::Settings;
use crate::tenancy::{Admission, Members};
use crate::trigger::{EventInfo, Scope, Target, Trigger};

/// Reconciles replica key policies against the baseline, through the ports it is given.
pub struct Reconciler<K, P, B = MemoryLedger> {
    keys: K,
    policies: P,
    backups: B,
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
            settings,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
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
                let cache = RunCache::default();
                let mut report = Report::default();
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
        let event = EventInfo {
            id: None,
            name: "check".into(),
            actor: None,
        };
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

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore> Reconciler<K, P, B> {
    /// Whether the engine may work in `account` (the organisation's accounts are read only
    /// for `MEMBER_ACCOUNTS=organization`, and cached by the adapter).
    pub async fn admit(&self, account: &AccountId) -> Result<Admission, CallError> {
        let tenancy = &self.settings.tenancy;
        if tenancy.is_home(account) || !tenancy.needs_organization() {
            return Ok(tenancy.admit(account, None));
        }
        let org = self.keys.organization_accounts().await?;
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
                .keys
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
        "DescribeKey",
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
