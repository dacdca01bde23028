//! The sweep stage: every multi-Region replica in some Regions, with the fewest calls —
//! one ListKeys per page (single-Region keys cost nothing more), one DescribeKey per key id
//! (its MultiRegionConfiguration classifies every copy), one GetKeyPolicy per replica (plus
//! the primary's once when mirroring), tags and state only before a write. In-sync keys are
//! counted in the summary, not listed, so the report stays small.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use futures::stream;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{Known, Progress, Reconciler, RunCache, log_outcome, updating};
use crate::decide::{KeyFacts, KeyState};
use crate::key::{AccountId, KeyArn, Place};
use crate::outcome::{Action, Outcome, Report, RunError, Skip, Status};
use crate::ports::{BackupStore, KeyDirectory, PolicyStore};
use crate::trigger::EventInfo;

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore> Reconciler<K, P, B> {
    /// Reconciles every multi-Region replica in these places (accounts and Regions). The
    /// caller decides which places may be swept ([`Reconciler::places`]).
    pub async fn sweep(&self, places: &[Place], progress: &dyn Progress) -> Report {
        let event = sweep_event();
        let mut report = Report::default();
        let listings =
            futures::future::join_all(places.iter().map(|p| self.keys.list_multi_region_keys(p)))
                .await;
        let mut by_id: BTreeMap<(AccountId, String), Vec<KeyArn>> = BTreeMap::new();
        let mut copies = 0;
        for (place, listing) in places.iter().zip(listings) {
            match listing {
                Ok(found) => {
                    for key in found {
                        copies += 1;
                        by_id
                            .entry((key.account().clone(), key.key_id().to_owned()))
                            .or_default()
                            .push(key);
                    }
                }
                Err(e) => {
                    tracing::error!(place = %place, error = %e, "place not swept");
                    report.errors.push(RunError(e));
                }
            }
        }
        progress.planned(copies);
        // One slot pool per account and Region: KMS quotas are per account and Region.
        let per_place: HashMap<&Place, Arc<Semaphore>> = places
            .iter()
            .map(|p| {
                (
                    p,
                    Arc::new(Semaphore::new(self.settings.concurrency.max(1))),
                )
            })
            .collect();
        let cache = RunCache::default();
        let mut counts: BTreeMap<Action, usize> = BTreeMap::new();
        let mut by_account: BTreeMap<AccountId, BTreeMap<Action, usize>> = BTreeMap::new();
        let mut outcomes = stream::iter(by_id.into_values())
            .map(|copies| self.sweep_key_id(copies, &per_place, &cache, progress))
            .buffer_unordered(self.settings.concurrency.max(1) * places.len().max(1));
        while let Some(batch) = outcomes.next().await {
            for o in batch {
                log_outcome(&event, &o);
                *counts.entry(o.action()).or_default() += 1;
                *by_account
                    .entry(o.key_arn.account().clone())
                    .or_default()
                    .entry(o.action())
                    .or_default() += 1;
                if o.action() == Action::InSync {
                    report.in_sync.push(o);
                } else {
                    report.outcomes.push(o);
                }
            }
        }
        report.outcomes.sort_by(|a, b| a.key_arn.cmp(&b.key_arn));
        let accounts: std::collections::BTreeSet<_> = places.iter().map(|p| &p.account).collect();
        if accounts.len() > 1 {
            for (account, counts) in &by_account {
                tracing::info!(account = %account, summary = ?counts, "account swept");
            }
            report.summary_by_account = by_account;
        }
        report.summary = Some(counts);
        report.sweeps_completed = usize::from(report.errors.is_empty());
        report.excluded = Some(
            report
                .outcomes
                .iter()
                .filter(|o| matches!(o.status, Status::Skipped(Skip::Excluded { .. })))
                .count(),
        );
        report
    }

    /// All copies of one multi-Region key id found by the sweep.
    async fn sweep_key_id(
        &self,
        copies: Vec<KeyArn>,
        per_place: &HashMap<&Place, Arc<Semaphore>>,
        cache: &RunCache,
        progress: &dyn Progress,
    ) -> Vec<Outcome> {
        let slot = |key: &KeyArn| {
            let exact = Place::new(Some(key.account().clone()), key.region().clone());
            let own = Place::new(None, key.region().clone());
            per_place
                .get(&exact)
                .or_else(|| per_place.get(&own))
                .expect("listed in a swept place")
        };
        // Any copy's DescribeKey lists them all: when one cannot be described, ask the next,
        // so one unreadable copy never hides its siblings.
        let mut unreadable: Vec<Outcome> = Vec::new();
        let mut described = None;
        for copy in &copies {
            let result = {
                let _permit = slot(copy).acquire().await.expect("never closed");
                // Boxed, here and for each replica: a call's future is large (tens of KB in
                // a debug build), and the thousands of copies waiting for a slot need not
                // carry one.
                Box::pin(self.keys.describe_key(copy)).await
            };
            match result {
                Ok(facts) => {
                    described = Some(facts);
                    break;
                }
                Err(e) => unreadable.push(Outcome::call_failed(copy, &e)),
            }
        }
        // The copies before the described one could not be described: each is reported.
        let rest = &copies[unreadable.len()..];
        unreadable.iter().for_each(|o| progress.advanced(Some(o)));
        let mut outcomes = unreadable;
        let mr = match described {
            Some(KeyFacts {
                state: KeyState::Updating,
                ..
            }) => {
                // The primary is not known while it moves: report the other copies, write none.
                for copy in rest {
                    let o = Outcome::call_failed(copy, &updating(copy, 1));
                    progress.advanced(Some(&o));
                    outcomes.push(o);
                }
                return outcomes;
            }
            Some(KeyFacts {
                multi_region: Some(mr),
                ..
            }) => mr,
            Some(_) => {
                rest.iter().for_each(|_| progress.advanced(None));
                return outcomes;
            }
            None => return outcomes,
        };
        // The replicas of one key are in different Regions (or accounts): reconciled side by
        // side, each in its own Region's slot pool, rather than one after another.
        let event = sweep_event();
        let replicas = rest.iter().filter(|copy| **copy != mr.primary).map(|copy| {
            let event = &event;
            let primary = &mr.primary;
            async move {
                let permit = slot(copy).clone().acquire_owned().await;
                let permit = permit.expect("never closed");
                let o = Box::pin(self.reconcile_replica(
                    event,
                    copy,
                    primary,
                    Known::Replica,
                    cache,
                    Some(permit),
                ))
                .await;
                progress.advanced(Some(&o));
                o
            }
        });
        let reconciled = futures::future::join_all(replicas).await;
        if rest.contains(&mr.primary) {
            progress.advanced(None);
        }
        outcomes.extend(reconciled);
        outcomes
    }
}

fn sweep_event() -> EventInfo {
    EventInfo::named("sweep")
}
