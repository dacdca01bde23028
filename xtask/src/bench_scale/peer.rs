//! The sequential peer: what a script written the obvious way does (the shape of the Python
//! tool this project replaced), here in Rust on the same SDK client so that only the method
//! differs. One call at a time: per Region every ListKeys page, DescribeKey for every key
//! listed, GetKeyPolicy for every replica, a comparison with the same equivalence rules as
//! the guard (`krg_policy::equivalent`), PutKeyPolicy for every drifted one.

use std::time::Instant;

use aws_sdk_kms::types::MultiRegionKeyType;
use std::collections::BTreeMap;

use krg_testkit::sim::{Fleet, KmsSim, SimConfig};
use serde::{Deserialize, Serialize};

use super::{HUB, by_op};

/// The sequential peer's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRun {
    /// Wall time.
    pub seconds: f64,
    /// Policies it wrote.
    pub written: u64,
    /// Replicas still drifted after it.
    pub left_drifted: usize,
    /// Its KMS calls, by operation.
    pub calls: BTreeMap<String, u64>,
    /// All its KMS calls.
    pub calls_total: u64,
    /// Throttling answers it got.
    pub throttled: u64,
}

/// Heals `regions` of a fresh simulated account of `fleet`, sequentially: its figures.
pub async fn run(regions: &[&str], fleet: Fleet) -> anyhow::Result<PeerRun> {
    let sim = KmsSim::start(SimConfig::new(fleet)).await;
    let sdk = super::sdk(&sim.endpoint, HUB).await;
    let started = Instant::now();
    let mut written = 0u64;
    for region in regions {
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&sdk)
                .region(aws_sdk_kms::config::Region::new((*region).to_owned()))
                .build(),
        );
        let desired = sim.config().fleet.render(HUB, region);
        let mut marker = None;
        loop {
            let page = kms.list_keys().set_marker(marker.take()).send().await?;
            for entry in page.keys() {
                let id = entry.key_id().unwrap_or_default();
                let meta = kms.describe_key().key_id(id).send().await?;
                let replica = meta
                    .key_metadata()
                    .and_then(|m| m.multi_region_configuration())
                    .and_then(|c| c.multi_region_key_type())
                    == Some(&MultiRegionKeyType::Replica);
                if !replica {
                    continue;
                }
                let live = kms
                    .get_key_policy()
                    .key_id(id)
                    .policy_name("default")
                    .send()
                    .await?
                    .policy
                    .unwrap_or_default();
                if !krg_policy::equivalent(&live, &desired).unwrap_or(false) {
                    kms.put_key_policy()
                        .key_id(id)
                        .policy_name("default")
                        .policy(&desired)
                        .send()
                        .await?;
                    written += 1;
                }
            }
            match page.next_marker {
                Some(m) if page.truncated => marker = Some(m),
                _ => break,
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let calls = by_op(&sim.counts());
    let left = sim
        .keys(HUB)
        .iter()
        .filter(|k| k.replica && regions.contains(&k.region.as_str()))
        .filter(|k| {
            !krg_policy::equivalent(&k.policy, &sim.config().fleet.render(HUB, &k.region))
                .unwrap_or(false)
        })
        .count();
    Ok(PeerRun {
        seconds,
        written,
        left_drifted: left,
        calls: calls
            .iter()
            .map(|(op, c)| (op.name().to_owned(), c.calls))
            .collect(),
        calls_total: calls.values().map(|c| c.calls).sum(),
        throttled: calls.values().map(|c| c.throttled).sum(),
    })
}
