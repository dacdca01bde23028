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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub use claimed_write::CLAIM_TTL;
pub use replica::BaselineForError;

use crate::decide::KeyFacts;
use crate::error::{CallError, ErrorKind};
use crate::key::KeyArn;
use crate::ledger::MemoryLedger;
use crate::outcome::{Outcome, Report};
use crate::ports::{BackupStore, KeyDirectory, PolicyStore};
use crate::settings::Settings;
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

/// Primary policies read once per run, however many replicas mirror them.
#[derive(Default)]
struct PrimaryPolicies(Mutex<HashMap<KeyArn, Arc<PolicyCell>>>);

type PolicyCell = OnceCell<Result<String, CallError>>;

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
            Trigger::Sweep { regions } => {
                let regions = regions.as_deref().unwrap_or(&self.settings.sweep_regions);
                self.sweep(regions, &Quiet).await
            }
            Trigger::Keys { event, targets } => {
                let cache = PrimaryPolicies::default();
                let mut report = Report::default();
                for target in targets {
                    self.reconcile_target(event, target, &cache, &mut report)
                        .await;
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
        };
        let target = Target {
            key: key.clone(),
            scope: Scope::Key,
        };
        let mut report = Report::default();
        self.reconcile_target(&event, &target, &PrimaryPolicies::default(), &mut report)
            .await;
        report
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

/// The per-key log line: the outcome as the response has it, with the event.
fn log_outcome(event: &EventInfo, o: &Outcome) {
    tracing::info!(
        event_name = %event.name,
        event_id = event.id.as_deref().unwrap_or(""),
        key_arn = %o.key_arn,
        region = %o.region,
        action = o.action().as_str(),
        reason = o.reason().as_deref().unwrap_or(""),
        diff = o.diff.as_deref().unwrap_or(""),
        "key reconciled"
    );
}
