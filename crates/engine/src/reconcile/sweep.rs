//! The sweep stage: every multi-Region replica in some Regions, with the fewest calls —
//! one ListKeys per page (single-Region keys cost nothing more), one DescribeKey per key id
//! (its MultiRegionConfiguration classifies every copy), one GetKeyPolicy per replica (plus
//! the primary's once when mirroring), tags and state only before a write. In-sync keys are
//! counted in the summary, not listed, so the report stays small.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use futures::stream;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Known, Progress, Reconciler, RunCache, log_outcome, updating};
use crate::decide::{KeyFacts, KeyState};
use crate::key::{AccountId, KeyArn, Place};
use crate::outcome::{Action, Outcome, Report, RunError, Skip, Status};
use crate::ports::{AccountDirectory, BackupStore, KeyDirectory, PolicyStore};
use crate::trigger::EventInfo;

/// The most KMS calls a sweep has in flight at once, whatever `CONCURRENCY` × places gives.
/// Each call in flight holds a socket, and a Lambda execution environment has 1,024 file
/// descriptors: 850 leaves the rest to the other clients (STS, S3, CloudWatch, EventBridge),
/// the runtime API and the logs. 17 Regions at the default `CONCURRENCY` (32) are 544.
pub const MAX_CALLS_IN_FLIGHT: usize = 850;

/// A sweep's call slots: one pool per account and Region (KMS quotas are per account and
/// Region) and one over them all ([`MAX_CALLS_IN_FLIGHT`]).
pub(super) struct Slots {
    per_place: HashMap<Place, Arc<Semaphore>>,
    all: Arc<Semaphore>,
}

/// A held call slot: its place's and one of the sweep's; given back when dropped.
pub(super) struct Slot {
    _place: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl Slots {
    /// `per_place` slots in each of `places`, at most `all` over them.
    pub(super) fn new(places: &[Place], per_place: usize, all: usize) -> Self {
        Self {
            per_place: places
                .iter()
                .map(|p| (p.clone(), Arc::new(Semaphore::new(per_place.max(1)))))
                .collect(),
            all: Arc::new(Semaphore::new(all.max(1))),
        }
    }

    /// Waits for a slot of the key's place (the exact account and Region, or the function's
    /// own account in that Region), then one of the sweep's. Always in that order, so a task
    /// holding a sweep slot never waits for anything else: no deadlock.
    pub(super) async fn acquire(&self, key: &KeyArn) -> Slot {
        let exact = Place::new(Some(key.account().clone()), key.region().clone());
        let own = Place::new(None, key.region().clone());
        let place = self
            .per_place
            .get(&exact)
            .or_else(|| self.per_place.get(&own))
            .expect("listed in a swept place")
            .clone();
        let place = place.acquire_owned().await.expect("never closed");
        let all = self
            .all
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        Slot {
            _place: place,
            _all: all,
        }
    }
}

impl<K: KeyDirectory, P: PolicyStore, B: BackupStore, A: AccountDirectory> Reconciler<K, P, B, A> {
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
        let slots = Slots::new(places, self.settings.concurrency, MAX_CALLS_IN_FLIGHT);
        let cache = RunCache::default();
        let mut counts: BTreeMap<Action, usize> = BTreeMap::new();
        let mut by_account: BTreeMap<AccountId, BTreeMap<Action, usize>> = BTreeMap::new();
        let mut outcomes = stream::iter(by_id.into_values())
            .map(|copies| self.sweep_key_id(copies, &slots, &cache, progress))
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
        mut copies: Vec<KeyArn>,
        slots: &Slots,
        cache: &RunCache,
        progress: &dyn Progress,
    ) -> Vec<Outcome> {
        // Any copy's DescribeKey lists them all, so one is asked: which one is spread by the
        // key id over the key's Regions. Always the first swept Region would give it every
        // key id's DescribeKey while the other Regions' slots idle (a sweep of 10,000
        // replicas in 17 Regions spends its time in its busiest Region).
        let first = spread(copies[0].key_id()) % copies.len();
        copies.rotate_left(first);
        // When one cannot be described, ask the next, so one unreadable copy never hides
        // its siblings.
        let mut unreadable: Vec<Outcome> = Vec::new();
        let mut described = None;
        for copy in &copies {
            let result = {
                let _slot = slots.acquire(copy).await;
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
                let slot = slots.acquire(copy).await;
                let o = Box::pin(self.reconcile_replica(
                    event,
                    copy,
                    primary,
                    Known::Replica,
                    cache,
                    Some(slot),
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

/// A stable number for a key id (FNV-1a): the same copy is described on every sweep.
fn spread(key_id: &str) -> usize {
    let hash = key_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash as usize
}

fn sweep_event() -> EventInfo {
    EventInfo::named("sweep")
}

#[cfg(test)]
mod slot_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Counts what is held now and the most ever held.
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Gauge {
        fn enter(&self) {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
        }
        fn leave(&self) {
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_sweep_holds_at_most_its_cap_of_calls_and_its_places_their_concurrency() {
        let regions = ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"];
        let places: Vec<Place> = regions
            .iter()
            .map(|r| Place::own(r.parse().unwrap()))
            .collect();
        // 4 places × 2 would be 8 calls at once; the cap is 3.
        let slots = Slots::new(&places, 2, 3);
        let all = Gauge::default();
        let per_region: Vec<Gauge> = regions.iter().map(|_| Gauge::default()).collect();
        let keys: Vec<(usize, KeyArn)> = (0..24)
            .map(|i| {
                let r = i % regions.len();
                let arn = format!("arn:aws:kms:{}:111122223333:key/mrk-{i:032x}", regions[r]);
                (r, arn.parse().unwrap())
            })
            .collect();
        futures::future::join_all(keys.iter().map(|(r, key)| {
            let (slots, all, mine) = (&slots, &all, &per_region[*r]);
            async move {
                let _slot = slots.acquire(key).await;
                all.enter();
                mine.enter();
                tokio::time::sleep(Duration::from_millis(5)).await;
                mine.leave();
                all.leave();
            }
        }))
        .await;
        assert_eq!(
            all.most.load(Ordering::SeqCst),
            3,
            "the sweep's cap, reached"
        );
        for g in &per_region {
            assert!(g.most.load(Ordering::SeqCst) <= 2, "a place's concurrency");
        }

        // Under the cap, each place has its own concurrency: 2 at once in one Region.
        let one = Slots::new(&places[..1], 2, MAX_CALLS_IN_FLIGHT);
        let gauge = Gauge::default();
        futures::future::join_all(keys.iter().filter(|(r, _)| *r == 0).map(|(_, key)| {
            let (one, gauge) = (&one, &gauge);
            async move {
                let _slot = one.acquire(key).await;
                gauge.enter();
                tokio::time::sleep(Duration::from_millis(5)).await;
                gauge.leave();
            }
        }))
        .await;
        assert_eq!(gauge.most.load(Ordering::SeqCst), 2);
    }
}
