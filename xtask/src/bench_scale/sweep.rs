//! One account, 17 Regions, 10,000 replicas, swept by the function (`{"sweep": {}}`, inline:
//! no queue): wall time against the quota floor, calls against the call floor. Two fleets of
//! 10,000 replicas, each with 20 single-Region keys per Region (AWS managed and other keys
//! that ListKeys also returns), 2 % of replicas drifted, 30 % reformatted: DR pairs, 5,000
//! primaries spread over the 17 Regions each replicated to the next 2 (the usual use of
//! multi-Region keys: a primary and its disaster-recovery copies), and wide, 625 primaries
//! each replicated to all 16 other Regions.
//!
//! The call floor is what any tool must call to heal that account: ListKeys pages of 1,000
//! (the largest page), one DescribeKey per multi-Region key id (its configuration names every
//! copy; single-Region keys are told by their id), one GetKeyPolicy per replica, one
//! PutKeyPolicy per drifted replica. The quota floor is that floor's slowest operation per
//! Region ÷ its quota, Regions in parallel.

use std::collections::BTreeMap;
use std::time::Instant;

use krg_testkit::sim::{Kind, KmsSim, Op, Quotas, SimConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::peer::PeerRun;
use super::{HUB, HUB_ROLE, REGIONS, app, by_op, config, fleet, ops_line, quota_floor};
use crate::heap;
use crate::report::thousands;

/// One sweep's figures (seconds in real time: a dilated run's wall time divided back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRun {
    pub regions: usize,
    pub concurrency: usize,
    pub dilation: u32,
    pub primaries: usize,
    pub replicas_per_primary: usize,
    pub replicas: usize,
    /// Drifted replicas (the call floor's PutKeyPolicy).
    pub drifted: u64,
    pub remediated: u64,
    pub failed: u64,
    pub left_drifted: usize,
    pub seconds: f64,
    pub quota_floor_seconds: f64,
    /// The quota floor ÷ the wall time.
    pub of_quota_speed: f64,
    /// KMS calls by operation name, and the floor's.
    pub calls: BTreeMap<String, u64>,
    pub call_floor: BTreeMap<String, u64>,
    pub throttled: u64,
    pub heap_peak_bytes: usize,
    /// The sweep's error answer, if it failed (its figures are kept).
    pub error: Option<Value>,
}

/// The fleets' common shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetShape {
    pub single_region_per_region: usize,
    pub drift: f64,
    pub reformatted: f64,
}

/// The peer and the guard on the same Regions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideBySide {
    pub regions: Vec<String>,
    pub peer: PeerRun,
    pub guard: SweepRun,
    /// The peer's wall time ÷ the guard's.
    pub speedup: f64,
}

/// Everything this part measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepReport {
    pub fleet: FleetShape,
    pub real_time: SweepRun,
    pub default: SweepRun,
    pub wide: SweepRun,
    pub side_by_side: SideBySide,
}

/// Calls by operation name, from calls by operation.
fn by_name(m: &BTreeMap<Op, u64>) -> BTreeMap<String, u64> {
    m.iter().map(|(op, n)| (op.name().to_owned(), *n)).collect()
}

/// A fleet's shape: primaries, and replicas of each.
#[derive(Debug, Clone, Copy)]
struct Shape(usize, usize);

const DR_PAIRS: Shape = Shape(5000, 2);
const WIDE: Shape = Shape(625, 16);
const SINGLE_PER_REGION: usize = 20;
const DRIFT: f64 = 0.02;
const SEED: u64 = 27;

/// The floor of calls to heal what `sim` holds for the hub in `regions`.
fn call_floor(sim: &KmsSim, regions: &[&str]) -> BTreeMap<(String, String, Op), u64> {
    let keys = sim.keys(HUB);
    let mut floor = BTreeMap::new();
    let mut ids = std::collections::BTreeSet::new();
    for region in regions {
        let here: Vec<_> = keys.iter().filter(|k| k.region == *region).collect();
        let mut add = |op: Op, n: u64| {
            *floor
                .entry((HUB.to_owned(), (*region).to_owned(), op))
                .or_insert(0) += n;
        };
        add(Op::ListKeys, (here.len() as u64).div_ceil(1000).max(1));
        add(
            Op::GetKeyPolicy,
            here.iter().filter(|k| k.replica).count() as u64,
        );
        add(
            Op::PutKeyPolicy,
            here.iter().filter(|k| k.kind == Kind::Drifted).count() as u64,
        );
        // One DescribeKey per key id, in the Region of the first copy met.
        let new_ids = here
            .iter()
            .filter(|k| k.arn.contains("key/mrk-"))
            .filter(|k| ids.insert(k.arn.rsplit('/').next().unwrap_or("").to_owned()))
            .count();
        add(Op::DescribeKey, new_ids as u64);
    }
    floor
}

/// One sweep of `regions` by the function with `concurrency`, time dilated `dilation` times:
/// its figures, in real-time seconds.
///
/// Dilation: the simulator's latencies are multiplied by it and its quotas' refill rates
/// divided (`time_scale` = 1 / dilation), and so are the guard's own limiters' (they run on
/// the same slower clock: `Kms::with_limits_dilated`); the wall time is divided by it again.
/// Bursts are counts of requests and stay as they are on both sides (KMS's second of quota,
/// the guard's share of its budget). Every rate is divided alike, so the ratio to the floor
/// holds; what it removes is this machine's own bound (a debug build of both the guard and
/// the simulator on 2 shared cores serves a few hundred to 1,500 calls/s, as loaded; the
/// quota floor of this sweep calls 17,000 a second). The guard runs as the CLI or one
/// inline sweep does: one process, `RATE_INSTANCES` 1.
async fn measured(
    shape: Shape,
    regions: &[&str],
    concurrency: Option<usize>,
    dilation: u32,
) -> anyhow::Result<SweepRun> {
    let sim = KmsSim::start(SimConfig {
        time_scale: 1.0 / f64::from(dilation),
        ..SimConfig::new(fleet(
            SEED,
            shape.0,
            shape.1,
            SINGLE_PER_REGION * REGIONS.len(),
            DRIFT,
        )?)
    })
    .await;
    let floor = call_floor(&sim, regions);
    let mut vars = vec![
        ("AWS_REGION", super::env::REGION.to_owned()),
        ("REMEDIATOR_ROLE_ARN", HUB_ROLE.to_owned()),
        ("REMEDIATION_MODE", "enforce".to_owned()),
        ("BASELINE_SOURCE", super::baseline()?),
        ("SWEEP_REGIONS", regions.join(",")),
    ];
    if let Some(c) = concurrency {
        vars.push(("CONCURRENCY", c.to_string()));
    }
    let config = config(&vars)?;
    let (app, _) = app(&sim, &config, &super::env::endpoint()).await;
    let heap_before = heap::now();
    heap::reset_peak();
    let started = Instant::now();
    // A sweep with failures answers an error (Lambda retries it): keep its figures anyway.
    let answer = match app.handle(json!({"sweep": {}})).await {
        Ok(v) => v,
        Err(e) => json!({"error": e.to_string()}),
    };
    let wall = started.elapsed().as_secs_f64() / f64::from(dilation);
    let heap_peak = heap::peak().saturating_sub(heap_before);
    let quotas = Quotas::default();
    let floor_s = quota_floor(&floor, &quotas);
    let counts = sim.counts();
    let calls = by_op(&counts);
    let floor_by_op: BTreeMap<Op, u64> =
        floor
            .iter()
            .fold(BTreeMap::new(), |mut m, ((_, _, op), n)| {
                *m.entry(*op).or_default() += n;
                m
            });
    let drifted = floor_by_op.get(&Op::PutKeyPolicy).copied().unwrap_or(0);
    let summary = &answer["summary"];
    let remediated = summary["remediated"].as_u64().unwrap_or(0);
    let failed = summary["failed"].as_u64().unwrap_or(0);
    // Every replica is now the baseline.
    let left = sim
        .keys(HUB)
        .iter()
        .filter(|k| k.replica && regions.contains(&k.region.as_str()))
        .filter(|k| {
            !krg_policy::equivalent(&k.policy, &sim.config().fleet.render(HUB, &k.region))
                .unwrap_or(false)
        })
        .count();
    let throttled: u64 = calls.values().map(|c| c.throttled).sum();
    Ok(SweepRun {
        regions: regions.len(),
        concurrency: config.settings.concurrency,
        dilation,
        primaries: shape.0,
        replicas_per_primary: shape.1,
        replicas: sim
            .keys(HUB)
            .iter()
            .filter(|k| k.replica && regions.contains(&k.region.as_str()))
            .count(),
        drifted,
        remediated,
        failed,
        left_drifted: left,
        seconds: wall,
        quota_floor_seconds: floor_s,
        of_quota_speed: floor_s / wall,
        calls: by_name(&calls.iter().map(|(op, c)| (*op, c.calls)).collect()),
        call_floor: by_name(&floor_by_op),
        throttled,
        heap_peak_bytes: heap_peak,
        error: answer.get("error").cloned(),
    })
}

fn print(label: &str, v: &SweepRun) {
    println!(
        "    {label}: {} replicas in {} Regions (CONCURRENCY {}, time dilated {}x), {} drifted, {} remediated, {} failed, {} left drifted",
        v.replicas,
        v.regions,
        v.concurrency,
        v.dilation,
        v.drifted,
        v.remediated,
        v.failed,
        v.left_drifted
    );
    println!(
        "      wall {:.2} s, quota floor {:.2} s: {:.0} % of the quota-bound speed; {} throttles; heap peak {:.1} MiB",
        v.seconds,
        v.quota_floor_seconds,
        100.0 * v.of_quota_speed,
        v.throttled,
        v.heap_peak_bytes as f64 / 1_048_576.0
    );
    println!(
        "      calls {} vs floor {}",
        ops_line(&v.calls),
        ops_line(&v.call_floor)
    );
}

/// The one-account sweep at the default concurrency (in real time, and dilated `dilation`
/// times, both fleets), then the peer side by side.
pub async fn run(peer_regions: usize, dilation: u32) -> anyhow::Result<SweepReport> {
    println!(
        "==> one account, 17 Regions, 10,000 replicas (simulated KMS, real latency and quotas)"
    );
    let real_time = measured(DR_PAIRS, &REGIONS, None, 1).await?;
    print("DR pairs, default CONCURRENCY, real time", &real_time);
    let default = measured(DR_PAIRS, &REGIONS, None, dilation).await?;
    print("DR pairs, default CONCURRENCY", &default);
    let wide = measured(WIDE, &REGIONS, None, dilation).await?;
    print("wide, default CONCURRENCY", &wide);
    let subset: Vec<&str> = REGIONS.iter().take(peer_regions.max(1)).copied().collect();
    println!(
        "==> side by side on {} Regions ({}): the sequential peer, then the guard",
        subset.len(),
        subset.join(", ")
    );
    let peer = super::peer::run(
        &subset,
        super::fleet(
            SEED,
            DR_PAIRS.0,
            DR_PAIRS.1,
            SINGLE_PER_REGION * REGIONS.len(),
            DRIFT,
        )?,
    )
    .await?;
    println!(
        "    peer: {} calls in {:.1} s, {} written, {} left drifted",
        peer.calls_total, peer.seconds, peer.written, peer.left_drifted
    );
    let ours = measured(DR_PAIRS, &subset, None, 1).await?;
    print("guard on the same Regions", &ours);
    let speedup = peer.seconds / ours.seconds;
    println!("    speed-up of the guard over the sequential peer: {speedup:.1}x");
    Ok(SweepReport {
        fleet: FleetShape {
            single_region_per_region: SINGLE_PER_REGION,
            drift: DRIFT,
            reformatted: 0.3,
        },
        real_time,
        default,
        wide,
        side_by_side: SideBySide {
            regions: subset.iter().map(|r| (*r).to_owned()).collect(),
            peer,
            guard: ours,
            speedup,
        },
    })
}

/// Its part of the BENCHMARKS.md section.
pub fn render(v: &SweepReport) -> String {
    let n = |x: u64| thousands(x);
    let row = |label: &str, r: &SweepRun| {
        format!(
            "| {label} | {} × {} | {} | {} | {} | {}x | {} / {} | {:.2} | {:.2} | {:.0} % | {} | {} | {:.0} |\n",
            n(r.primaries as u64),
            r.replicas_per_primary,
            n(r.replicas as u64),
            r.regions,
            r.concurrency,
            r.dilation,
            r.remediated,
            r.drifted,
            r.seconds,
            r.quota_floor_seconds,
            100.0 * r.of_quota_speed,
            r.throttled,
            r.left_drifted,
            r.heap_peak_bytes as f64 / 1_048_576.0,
        )
    };
    let calls = |r: &SweepRun| {
        Op::ALL
            .iter()
            .map(|op| {
                format!(
                    "{} {} (floor {})",
                    op.name(),
                    n(r.calls.get(op.name()).copied().unwrap_or(0)),
                    n(r.call_floor.get(op.name()).copied().unwrap_or(0))
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let s = &v.side_by_side;
    let dilation = v.default.dilation;
    let mut out = format!(
        "**One account, 17 Regions, 10,000 replicas** (DR pairs: 5,000 primaries over the 17 \
         Regions, each replicated to the next 2; wide: 625 primaries, each replicated to the 16 \
         others; 20 single-Region keys per Region; 2 % of replicas drifted, 30 % \
         reformatted-equivalent), swept by the function in enforce mode. Time dilated \
         {dilation}x: latencies ×{dilation}, the refill of the simulator's quotas and of the \
         guard's own limiters ÷{dilation} (bursts, counts of requests, unchanged: KMS's second \
         of quota, the guard's 12 PutKeyPolicy of `RATE_INSTANCES` 1, one process as the CLI or \
         an inline sweep), wall time ÷{dilation}, so every ratio holds while this machine (a debug build of guard and simulator on 2 shared cores, against a \
         quota floor of 17,000 calls/s) is no longer the bound; the real-time row shows that \
         bound. Heap peak: the bench process's (guard and simulator) above its start, during \
         the sweep.\n\n\
         | sweep | primaries × replicas | replicas | Regions | CONCURRENCY | time dilated | remediated / drifted | seconds (real-time) | quota floor (s) | of quota-bound speed | throttles | left drifted | heap peak (MiB) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    out.push_str(&row(
        "default settings, real time (bound by this machine)",
        &v.real_time,
    ));
    out.push_str(&row("default settings", &v.default));
    out.push_str(&row("wide, default settings", &v.wide));
    out.push_str(&row("guard, side by side", &s.guard));
    out.push_str(&format!(
        "| sequential peer, side by side | {} × {} | {} | {} | 1 | 1x | {} / {} | {:.2} | {:.2} | {:.0} % | {} | {} | |\n",
        n(s.guard.primaries as u64),
        s.guard.replicas_per_primary,
        n(s.guard.replicas as u64),
        s.guard.regions,
        s.peer.written,
        s.guard.drifted,
        s.peer.seconds,
        s.guard.quota_floor_seconds,
        100.0 * s.guard.quota_floor_seconds / s.peer.seconds,
        s.peer.throttled,
        s.peer.left_drifted,
    ));
    out.push_str(&format!(
        "\nKMS calls, DR pairs, default settings: {}.\n\nSide by side on {} ({} replicas): the guard {:.1}x \
         faster than the sequential peer ({} calls, one at a time).\n",
        calls(&v.default),
        s.regions.join(", "),
        n(s.guard.replicas as u64),
        s.speedup,
        n(s.peer.calls_total),
    ));
    out
}
