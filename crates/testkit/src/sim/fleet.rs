//! The keys of every simulated account, generated from a seed: multi-Region primaries with
//! replicas in other Regions, single-Region keys, and for each replica a policy that is the
//! baseline, the baseline written differently (equivalent), or drifted (KMS's default key
//! policy). The same seed and account always give the same keys.

use std::collections::HashMap;

use serde_json::Value;

use super::model::{hash, unit};

/// How a replica's policy was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The rendered baseline, compact.
    InSync,
    /// The rendered baseline written differently: statements reversed, single actions as
    /// lists, pretty-printed in KMS's own `"Key" : value` style. Equivalent.
    Reformatted,
    /// KMS's default key policy: drift.
    Drifted,
    /// A primary (its policy is the baseline) or a single-Region key.
    NotReplica,
}

/// What every account holds.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The seed of every choice.
    pub seed: u64,
    /// The account's Regions.
    pub regions: Vec<String>,
    /// Multi-Region primaries per account, spread round-robin over the Regions.
    pub primaries: usize,
    /// Replicas of each primary, in the next Regions of the list (at most regions - 1).
    pub replicas_per_primary: usize,
    /// Single-Region keys per account, round-robin over the Regions.
    pub single_region: usize,
    /// The fraction of replicas that are drifted.
    pub drift: f64,
    /// The fraction of replicas that are the baseline reformatted.
    pub reformatted: f64,
    /// The baseline: a key policy with `{{AccountId}}`, `{{Region}}` and `{{Partition}}`.
    pub baseline: String,
    /// Only these accounts hold keys (others are empty); `None`: every account.
    pub accounts: Option<Vec<String>>,
}

impl Fleet {
    /// The baseline rendered for a key of `account` in `region`.
    pub fn render(&self, account: &str, region: &str) -> String {
        self.baseline
            .replace("{{AccountId}}", account)
            .replace("{{Region}}", region)
            .replace("{{Partition}}", "aws")
    }

    /// Replicas per account.
    pub fn replicas(&self) -> usize {
        self.primaries
            * self
                .replicas_per_primary
                .min(self.regions.len().saturating_sub(1))
    }
}

/// One key as the simulator keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub id: String,
    pub region: String,
    /// Multi-Region: the primary's Region and the replicas' Regions.
    pub multi: Option<(String, Vec<String>)>,
    pub kind: Kind,
    pub policy: String,
    /// Written, not yet visible to GetKeyPolicy: (visible from, policy), oldest first.
    pub pending: std::collections::VecDeque<(std::time::Instant, String)>,
    pub created: f64,
}

impl Key {
    pub fn arn(&self, account: &str) -> String {
        arn(account, &self.region, &self.id)
    }

    pub fn is_replica(&self) -> bool {
        matches!(&self.multi, Some((primary, _)) if *primary != self.region)
    }
}

pub(crate) fn arn(account: &str, region: &str, id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{id}")
}

/// The keys of one Region of an account, in ListKeys order.
#[derive(Debug, Default)]
pub(crate) struct RegionKeys {
    pub order: Vec<String>,
    pub keys: HashMap<String, Key>,
}

impl RegionKeys {
    fn add(&mut self, key: Key) {
        self.order.push(key.id.clone());
        self.keys.insert(key.id.clone(), key);
    }
}

fn hex(h: u64, h2: u64) -> String {
    format!("{h:016x}{h2:016x}")
}

/// KMS's default key policy for `account`.
pub fn default_policy(account: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    )
}

/// `policy` written differently and equivalently: statements reversed, single actions as
/// one-element lists, pretty-printed with KMS's `"Key" : value`.
pub fn reformat(policy: &str) -> String {
    let mut v: Value = serde_json::from_str(policy).expect("the baseline is JSON");
    if let Some(Value::Array(statements)) = v.get_mut("Statement") {
        statements.reverse();
        for s in statements.iter_mut() {
            if let Some(a @ Value::String(_)) = s.get_mut("Action") {
                *a = Value::Array(vec![a.take()]);
            }
        }
    }
    serde_json::to_string_pretty(&v)
        .expect("serialisable")
        .replace("\": ", "\" : ")
}

/// Every Region's keys of `account`.
pub(crate) fn generate(fleet: &Fleet, account: &str) -> HashMap<String, RegionKeys> {
    let mut out: HashMap<String, RegionKeys> = fleet
        .regions
        .iter()
        .map(|r| (r.clone(), RegionKeys::default()))
        .collect();
    if fleet
        .accounts
        .as_ref()
        .is_some_and(|a| !a.iter().any(|x| x == account))
    {
        return out;
    }
    let n = fleet.regions.len();
    if n == 0 {
        return out;
    }
    let replicas = fleet.replicas_per_primary.min(n - 1);
    let created = 1_700_000_000.0;
    // Interleave single-Region keys among the multi-Region ones, as ListKeys does.
    let total = fleet.primaries + fleet.single_region;
    let (mut p, mut s) = (0, 0);
    for _ in 0..total {
        let multi_next = s >= fleet.single_region
            || (p < fleet.primaries && p * fleet.single_region <= s * fleet.primaries);
        if multi_next {
            let home = &fleet.regions[p % n];
            let id = format!(
                "mrk-{}",
                &hex(
                    hash(fleet.seed, &[account, "mrk"], p as u64),
                    hash(fleet.seed, &[account, "mrk2"], p as u64)
                )[..32]
            );
            let copies: Vec<String> = (1..=replicas)
                .map(|k| fleet.regions[(p + k) % n].clone())
                .collect();
            out.get_mut(home).expect("a Region").add(Key {
                id: id.clone(),
                region: home.clone(),
                multi: Some((home.clone(), copies.clone())),
                kind: Kind::NotReplica,
                policy: fleet.render(account, home),
                pending: Default::default(),
                created,
            });
            for region in &copies {
                let u = unit(hash(fleet.seed, &[account, region, &id], 7));
                let (kind, policy) = if u < fleet.drift {
                    (Kind::Drifted, default_policy(account))
                } else if u < fleet.drift + fleet.reformatted {
                    (Kind::Reformatted, reformat(&fleet.render(account, region)))
                } else {
                    (Kind::InSync, fleet.render(account, region))
                };
                out.get_mut(region).expect("a Region").add(Key {
                    id: id.clone(),
                    region: region.clone(),
                    multi: Some((home.clone(), copies.clone())),
                    kind,
                    policy,
                    pending: Default::default(),
                    created,
                });
            }
            p += 1;
        } else {
            let region = &fleet.regions[s % n];
            let h = hex(
                hash(fleet.seed, &[account, "single"], s as u64),
                hash(fleet.seed, &[account, "single2"], s as u64),
            );
            let id = format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            );
            out.get_mut(region).expect("a Region").add(Key {
                id,
                region: region.clone(),
                multi: None,
                kind: Kind::NotReplica,
                policy: default_policy(account),
                pending: Default::default(),
                created,
            });
            s += 1;
        }
    }
    out
}
