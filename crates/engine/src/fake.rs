//! An in-memory KMS + CloudWatch + backup store for the tests of the engine and of the
//! crates above it (feature `test-util`): it counts every call, so tests assert cost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::decide::{KeyFacts, KeyState, MultiRegion, MultiRegionRole};
use crate::error::{Api, CallError, ErrorKind};
use crate::findings::{Evaluation, Finding};
use crate::key::Region;
use crate::key::{AccountId, KeyArn, Place};
use crate::outcome::{MetricDatum, Notification};
use crate::ports::{
    AccountDirectory, Backup, BackupStore, Claimed, EvaluationSink, FindingsSink, KeyDirectory,
    MetricsSink, Notifier, PolicyStore, Tags, Undelivered, WorkQueue, WriteClaim, WriteHistory,
    WriteRecord,
};

#[derive(Debug, Clone)]
pub struct FakeKey {
    pub facts: KeyFacts,
    pub policy: String,
    pub tags: Tags,
    /// DescribeKey answers Creating this many more times.
    pub creating_for: u32,
    /// DescribeKey answers NotFound this many more times.
    pub invisible_for: u32,
}

#[derive(Default)]
pub struct FakeAws {
    pub keys: Mutex<HashMap<KeyArn, FakeKey>>,
    pub calls: Mutex<Vec<(&'static str, String)>>,
    /// Rewrites what PutKeyPolicy stores (simulates KMS normalising differently).
    pub put_rewrite: Option<fn(&str) -> String>,
    /// Errors injected per operation, consumed one per call.
    pub failures: Mutex<HashMap<&'static str, Vec<ErrorKind>>>,
    pub published: Mutex<Vec<(String, Vec<MetricDatum>)>>,
    /// Every notification taken (`PutEvents`).
    pub notified: Mutex<Vec<Notification>>,
    pub backups: Mutex<Vec<Backup>>,
    pub writes: Mutex<Vec<WriteRecord>>,
    /// After a PutKeyPolicy, GetKeyPolicy returns the previous policy this many more times
    /// (KMS's eventual consistency).
    pub stale_reads: Mutex<u32>,
    /// The previous policy per key while stale reads are pending.
    previous: Mutex<HashMap<KeyArn, String>>,
    /// Write claims held, by key and drift.
    pub claims: Mutex<HashMap<(KeyArn, String), WriteClaim>>,
    /// Each claim attempt first finds another invocation's claim of the same drift, taken at
    /// this time (one per attempt, oldest first).
    pub foreign_claims: Mutex<Vec<SystemTime>>,
    /// What Organizations ListAccounts answers (ACTIVE accounts).
    pub organization: Mutex<Vec<AccountId>>,
    /// Work items sent to the queue.
    pub queued: Mutex<Vec<Place>>,
    /// Findings imported (`BatchImportFindings`), latest import of an id last.
    pub findings: Mutex<Vec<Finding>>,
    /// Evaluations put (`PutEvaluations`): account, Region, result token, evaluation.
    pub evaluations: Mutex<Vec<(AccountId, Region, String, Evaluation)>>,
}

pub const ACCOUNT: &str = "111122223333";
pub const MRK: &str = "mrk-1234abcd12ab34cd56ef1234567890ab";

pub fn arn(region: &str) -> KeyArn {
    format!("arn:aws:kms:{region}:{ACCOUNT}:key/{MRK}")
        .parse()
        .unwrap()
}

impl FakeAws {
    /// A primary in us-east-1 with replicas in the given Regions, all with `policy`.
    pub fn family(policy: &str, replicas: &[&str]) -> Self {
        let fake = Self::default();
        let primary = arn("us-east-1");
        let replica_arns: Vec<KeyArn> = replicas.iter().map(|r| arn(r)).collect();
        let mut keys = fake.keys.lock().unwrap();
        let mut add = |key: KeyArn, role| {
            keys.insert(
                key.clone(),
                FakeKey {
                    facts: KeyFacts {
                        arn: key,
                        state: KeyState::Enabled,
                        multi_region: Some(MultiRegion {
                            role,
                            primary: primary.clone(),
                            replicas: replica_arns.clone(),
                        }),
                    },
                    policy: policy.to_owned(),
                    tags: Tags::new(),
                    creating_for: 0,
                    invisible_for: 0,
                },
            );
        };
        add(primary.clone(), MultiRegionRole::Primary);
        for r in &replica_arns {
            add(r.clone(), MultiRegionRole::Replica);
        }
        drop(keys);
        fake
    }

    pub fn with_key(&self, key: &KeyArn, f: impl FnOnce(&mut FakeKey)) {
        f(self.keys.lock().unwrap().get_mut(key).expect("known key"));
    }

    pub fn policy(&self, key: &KeyArn) -> String {
        self.keys.lock().unwrap()[key].policy.clone()
    }

    /// The operations called so far, in order.
    pub fn operations(&self) -> Vec<&'static str> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(op, _)| *op)
            .collect()
    }

    pub fn count(&self, op: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == op)
            .count()
    }

    /// Another writer changed `key` from `before` to its current policy just after the next
    /// GetKeyPolicy, which still returns `before`.
    pub fn written_concurrently(&self, key: &KeyArn, before: &str) {
        self.previous
            .lock()
            .unwrap()
            .insert(key.clone(), before.to_owned());
        *self.stale_reads.lock().unwrap() = 1;
    }

    pub fn fail(&self, op: &'static str, kinds: &[ErrorKind]) {
        self.failures.lock().unwrap().insert(op, kinds.to_vec());
    }

    fn call(&self, op: &'static str, on: &dyn std::fmt::Display) -> Result<(), CallError> {
        self.calls.lock().unwrap().push((op, on.to_string()));
        let mut failures = self.failures.lock().unwrap();
        if let Some(kinds) = failures.get_mut(op)
            && !kinds.is_empty()
        {
            let kind = kinds.remove(0);
            return Err(CallError::new(
                // The fake's own names qualify some calls (`PutObject If-None-Match`).
                Api::from_name(op.split(' ').next().unwrap_or(op))
                    .expect("the fake names real operations"),
                on.to_string(),
                kind,
                format!("injected {kind:?}"),
            ));
        }
        Ok(())
    }

    fn not_found(op: &'static str, key: &KeyArn) -> CallError {
        CallError::new(
            Api::from_name(op).expect("the fake names real operations"),
            key,
            ErrorKind::NotFound,
            "NotFoundException: no such key",
        )
    }
}

impl KeyDirectory for FakeAws {
    async fn describe_key(&self, key: &KeyArn) -> Result<KeyFacts, CallError> {
        self.call("DescribeKey", key)?;
        let mut keys = self.keys.lock().unwrap();
        let k = keys
            .get_mut(key)
            .ok_or_else(|| Self::not_found("DescribeKey", key))?;
        if k.invisible_for > 0 {
            k.invisible_for -= 1;
            return Err(Self::not_found("DescribeKey", key));
        }
        let mut facts = k.facts.clone();
        if k.creating_for > 0 {
            k.creating_for -= 1;
            facts.state = KeyState::Creating;
        }
        Ok(facts)
    }

    async fn tags(&self, key: &KeyArn) -> Result<Tags, CallError> {
        self.call("ListResourceTags", key)?;
        Ok(self.keys.lock().unwrap()[key].tags.clone())
    }

    async fn list_multi_region_keys(&self, place: &Place) -> Result<Vec<KeyArn>, CallError> {
        self.call("ListKeys", place)?;
        let mut keys: Vec<KeyArn> = self
            .keys
            .lock()
            .unwrap()
            .keys()
            .filter(|k| {
                k.region() == &place.region
                    && k.is_multi_region()
                    && place.account.as_ref().is_none_or(|a| a == k.account())
            })
            .cloned()
            .collect();
        keys.sort();
        Ok(keys)
    }
}

impl AccountDirectory for FakeAws {
    async fn organization_accounts(&self) -> Result<Vec<AccountId>, CallError> {
        self.call("ListAccounts", &"organization")?;
        Ok(self.organization.lock().unwrap().clone())
    }
}

impl PolicyStore for FakeAws {
    async fn get_policy(&self, key: &KeyArn) -> Result<String, CallError> {
        self.call("GetKeyPolicy", key)?;
        {
            let mut stale = self.stale_reads.lock().unwrap();
            if *stale > 0
                && let Some(previous) = self.previous.lock().unwrap().get(key)
            {
                *stale -= 1;
                return Ok(previous.clone());
            }
        }
        let keys = self.keys.lock().unwrap();
        Ok(keys
            .get(key)
            .ok_or_else(|| Self::not_found("GetKeyPolicy", key))?
            .policy
            .clone())
    }

    async fn put_policy(&self, key: &KeyArn, policy: &str) -> Result<(), CallError> {
        self.call("PutKeyPolicy", key)?;
        let stored = self
            .put_rewrite
            .map_or_else(|| policy.to_owned(), |f| f(policy));
        let previous = std::mem::replace(
            &mut self
                .keys
                .lock()
                .unwrap()
                .get_mut(key)
                .ok_or_else(|| Self::not_found("PutKeyPolicy", key))?
                .policy,
            stored,
        );
        self.previous.lock().unwrap().insert(key.clone(), previous);
        Ok(())
    }
}

impl MetricsSink for FakeAws {
    async fn publish(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), CallError> {
        self.call("PutMetricData", &namespace)?;
        self.published
            .lock()
            .unwrap()
            .push((namespace.to_owned(), data.to_vec()));
        Ok(())
    }
}

impl Notifier for FakeAws {
    async fn notify(&self, notes: &[Notification]) -> Result<usize, CallError> {
        self.call("PutEvents", &"default")?;
        self.notified.lock().unwrap().extend(notes.iter().cloned());
        Ok(notes.len())
    }
}

impl FindingsSink for FakeAws {
    async fn import(&self, findings: &[Finding]) -> Result<usize, Undelivered> {
        for batch in findings.chunks(100) {
            self.call("BatchImportFindings", &batch.len())
                .map_err(|error| Undelivered {
                    count: findings.len(),
                    error,
                })?;
        }
        self.findings
            .lock()
            .unwrap()
            .extend(findings.iter().cloned());
        Ok(findings.len())
    }
}

impl EvaluationSink for FakeAws {
    async fn put_evaluations(
        &self,
        account: &AccountId,
        region: &Region,
        result_token: &str,
        evaluations: &[(Evaluation, SystemTime)],
    ) -> Result<usize, Undelivered> {
        for batch in evaluations.chunks(100) {
            self.call("PutEvaluations", &batch.len())
                .map_err(|error| Undelivered {
                    count: evaluations.len(),
                    error,
                })?;
        }
        self.evaluations
            .lock()
            .unwrap()
            .extend(evaluations.iter().map(|(e, _)| {
                (
                    account.clone(),
                    region.clone(),
                    result_token.to_owned(),
                    e.clone(),
                )
            }));
        Ok(evaluations.len())
    }
}

impl BackupStore for FakeAws {
    async fn save(&self, backup: &Backup) -> Result<String, CallError> {
        self.call("PutObject", &backup.key)?;
        let mut backups = self.backups.lock().unwrap();
        backups.push(backup.clone());
        Ok(format!("memory://{}", backups.len()))
    }
    async fn record_write(&self, write: &WriteRecord) -> Result<(), CallError> {
        self.call("PutObject", &write.key)?;
        self.writes.lock().unwrap().push(write.clone());
        Ok(())
    }
    async fn writes_since(
        &self,
        key: &KeyArn,
        since: SystemTime,
    ) -> Result<WriteHistory, CallError> {
        self.call("ListObjectsV2", key)?;
        let writes = self.writes.lock().unwrap();
        Ok(WriteHistory::of(
            writes.iter().filter(|w| &w.key == key),
            since,
        ))
    }
    async fn claim(&self, claim: &WriteClaim) -> Result<Claimed, CallError> {
        self.call("PutObject If-None-Match", &claim.key)?;
        let mut claims = self.claims.lock().unwrap();
        let name = (claim.key.clone(), claim.drift.clone());
        let mut foreign = self.foreign_claims.lock().unwrap();
        if !foreign.is_empty() {
            let at = foreign.remove(0);
            claims.insert(
                name.clone(),
                WriteClaim {
                    at,
                    event_id: Some("other".to_owned()),
                    event_name: "CreateKey".to_owned(),
                    ..claim.clone()
                },
            );
        }
        if let Some(held) = claims.get(&name) {
            return Ok(Claimed::Held(Box::new(held.clone())));
        }
        claims.insert(name, claim.clone());
        Ok(Claimed::Won)
    }
    async fn release(&self, claim: &WriteClaim) -> Result<(), CallError> {
        self.call("DeleteObject", &claim.key)?;
        self.claims
            .lock()
            .unwrap()
            .remove(&(claim.key.clone(), claim.drift.clone()));
        Ok(())
    }
}

impl WorkQueue for FakeAws {
    async fn send(&self, items: &[Place]) -> Result<usize, CallError> {
        self.call("SendMessageBatch", &"work queue")?;
        self.queued.lock().unwrap().extend_from_slice(items);
        Ok(items.len())
    }
}
