//! `cargo xtask bench-scale` (`make bench-scale`): the guard at organisation scale, measured
//! on the KMS simulator of the test kit ([`krg_testkit::sim`]: latency, quotas per account and
//! Region, throttling, eventual consistency), with STS and SQS on the emulator. It drives the
//! real function (`App::handle`, the Lambda entry point) through the real SDK clients, their
//! endpoint the simulator's.
//!
//! 1. [`sweep`]: one account, 17 Regions, 10,000 replicas: wall time against the quota floor
//!    and calls against the call floor; then, on two of the Regions, the sequential peer
//!    ([`peer`]) and the guard side by side.
//! 2. [`org`]: the organisation sweep, planner → SQS → workers, 1,000 member accounts (and
//!    the hub's own) × 17 Regions.
//! 3. [`storm`]: 5,000 PutKeyPolicy events for 500 keys in a minute, through a model of
//!    Lambda's asynchronous invocation (retries, event age, concurrency, an on-failure queue).
//!
//! Time runs at real speed (the simulator's `time_scale` is 1) except in the one-account
//! sweeps, which are also run dilated (`--dilation`, all rates divided alike) because this
//! machine cannot serve their quota floor's call rate. The latency model is the simulator's
//! default ([`krg_testkit::sim::LatencyModel`]), an assumption it documents. The
//! figures go to stdout, `target/bench/bench-scale/report.json` and the section
//! `bench-scale` of BENCHMARKS.md.

mod org;
mod peer;
mod storm;
mod sweep;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{Credentials, SharedCredentialsProvider};
use kms_replica_guard::config::Config;
use kms_replica_guard::wiring::{Adapters, AwsApp};
use krg_aws::clients::{AccountClients, sdk_defaults};
use krg_aws::cloudwatch::CloudWatch;
use krg_aws::events::EventBus;
use krg_aws::kms::Kms;
use krg_aws::members::MemberAccess;
use krg_testkit::sim::{Count, Fleet, KmsSim, Op, Quotas};
use serde_json::{Value, json};

use crate::{env, report};

const NAME: &str = "bench-scale";

/// The 17 Regions of the organisation benchmarks (those open by default in 2026).
pub const REGIONS: [&str; 17] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
];

/// The hub's (the function's own) account and role.
pub const HUB: &str = env::ACCOUNT;
pub const HUB_ROLE: &str = "arn:aws:iam::111122223333:role/kms-replica-guard-remediator";

/// Arguments of `cargo xtask bench-scale`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Member accounts of the organisation sweep.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// The sweep queue's worker concurrency (SweepWorkerConcurrency, so RATE_INSTANCES).
    #[arg(long, default_value_t = 50)]
    workers: usize,
    /// Time dilation of the one-account sweeps (see `sweep::measured`): latencies times it,
    /// quotas and the guard's limits divided by it, the wall time divided by it.
    #[arg(long, default_value_t = 32)]
    dilation: u32,
    /// Regions of the side-by-side run with the sequential peer.
    #[arg(long, default_value_t = 2)]
    peer_regions: usize,
    /// Terraform's writes in the event storm.
    #[arg(long, default_value_t = 5000)]
    storm_events: usize,
    /// The function's reserved concurrency in the storm (0: none, as the stacks deploy).
    #[arg(long, default_value_t = 0)]
    storm_reserved: usize,
    /// Run only these parts (sweep, org, storm); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Do not run: write the BENCHMARKS.md section from the last report.
    #[arg(long)]
    render: bool,
    /// Do not run: fail if the BENCHMARKS.md section differs from the last report.
    #[arg(long, conflicts_with = "render")]
    check: bool,
    /// Run, but leave BENCHMARKS.md alone.
    #[arg(long)]
    no_write: bool,
}

/// Runs `cargo xtask bench-scale`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let out = report::out_dir(NAME);
    let report_path = out.join("report.json");
    if args.check || args.render {
        let r: Value = serde_json::from_str(
            &std::fs::read_to_string(&report_path)
                .context("no report of an earlier run: run `cargo xtask bench-scale` first")?,
        )?;
        return report::update(&report::benchmarks_md(), NAME, &render(&r), args.check);
    }
    std::fs::create_dir_all(&out)?;
    crate::emulator::ensure_running().await?;
    let want = |part: &str| args.only.is_empty() || args.only.iter().any(|p| p == part);
    let started = std::time::Instant::now();
    let mut r = json!({
        "command": format!("cargo xtask bench-scale{}", if args.only.is_empty() { String::new() } else { format!(" --only {}", args.only.join(",")) }),
        "date": chrono_now(),
        "commit": commit(),
        "latency_model": latency_model(),
        "quotas": quotas_json(&Quotas::default()),
    });
    if want("sweep") {
        r["sweep"] =
            serde_json::to_value(sweep::run(args.peer_regions, args.dilation.max(1)).await?)?;
    }
    if want("org") {
        r["org"] = serde_json::to_value(org::run(args.accounts, args.workers).await?)?;
    }
    if want("storm") {
        r["storm"] =
            serde_json::to_value(storm::run(args.storm_events, args.storm_reserved).await?)?;
    }
    r["total_seconds"] = json!(started.elapsed().as_secs_f64());
    println!(
        "==> bench-scale done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    std::fs::write(&report_path, serde_json::to_string_pretty(&r)?)?;
    println!("report: {}", report_path.display());
    if !args.no_write && args.only.is_empty() {
        report::update(&report::benchmarks_md(), NAME, &render(&r), false)?;
    }
    Ok(())
}

fn chrono_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env::root())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    format!("{head}{}", if dirty { "+dirty" } else { "" })
}

fn latency_model() -> Value {
    let m = krg_testkit::sim::LatencyModel::default();
    Op::ALL
        .iter()
        .map(|op| {
            let l = m.of(*op);
            (
                op.name().to_owned(),
                json!(format!(
                    "{} ms median, {} ms p99",
                    l.median.as_millis(),
                    l.p99.as_millis()
                )),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn quotas_json(q: &Quotas) -> Value {
    Op::ALL
        .iter()
        .map(|op| (op.name().to_owned(), json!(q.of(*op))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The baseline every benchmark converges on: the repository's example.
pub fn baseline() -> anyhow::Result<String> {
    std::fs::read_to_string(env::root().join("baselines/example.json"))
        .context("reading baselines/example.json")
}

/// A fleet over the 17 Regions.
pub fn fleet(
    seed: u64,
    primaries: usize,
    replicas_per_primary: usize,
    single_region: usize,
    drift: f64,
) -> anyhow::Result<Fleet> {
    Ok(Fleet {
        seed,
        regions: REGIONS.iter().map(|r| (*r).to_owned()).collect(),
        primaries,
        replicas_per_primary,
        single_region,
        drift,
        reformatted: 0.3,
        baseline: baseline()?,
        accounts: None,
    })
}

/// SDK configuration for `endpoint` with the function's retry and timeout settings
/// (`krg_aws::clients::load_sdk_config`), signed as `access_key`.
pub async fn sdk(endpoint: &str, access_key: &str) -> SdkConfig {
    sdk_stretched(endpoint, access_key, 1.0).await
}

/// [`sdk`] with its timeouts `stretch` times longer: for a simulator whose time is dilated,
/// so that a call times out when it would in real time (at 32x, the 10 s attempt timeout
/// cut PutKeyPolicy calls of 312 ms real time, retried outside the guard's pacing).
pub async fn sdk_stretched(endpoint: &str, access_key: &str, stretch: f64) -> SdkConfig {
    let secs = |s: f64| Duration::from_secs_f64(s * stretch.max(1.0));
    sdk_defaults()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(env::REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            access_key,
            env::SECRET_ACCESS_KEY,
            None,
            None,
            "bench-scale",
        )))
        .retry_config(RetryConfig::standard().with_max_attempts(4))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(secs(3.0))
                .operation_attempt_timeout(secs(10.0))
                .operation_timeout(secs(30.0))
                .build(),
        )
        .load()
        .await
}

/// The function's configuration from these variables (as Lambda's environment).
pub fn config(vars: &[(&str, String)]) -> anyhow::Result<Config> {
    Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// One execution environment of the function: KMS (and member accounts' KMS), CloudWatch and
/// EventBridge on the simulator (the last two taken and counted), STS and SQS on the emulator
/// (at `emulator`). Also returns its AssumeRole counter.
pub async fn app(
    sim: &KmsSim,
    config: &Config,
    emulator: &str,
) -> (AwsApp, Option<Arc<MemberAccess>>) {
    let emulator = sdk(emulator, HUB).await;
    let dilation = 1.0 / sim.config().time_scale;
    let on_sim = sdk_stretched(&sim.endpoint, HUB, dilation).await;
    let mut adapters = Adapters::new(&emulator, Some(config));
    let settings = &config.settings;
    let access = match (&settings.tenancy.fleet, &settings.tenancy.home) {
        (Some(fleet), Some(home)) => Some((
            home.clone(),
            Arc::new(MemberAccess::new(
                aws_sdk_sts::Client::new(&emulator),
                fleet.role.clone(),
                "aws",
            )),
        )),
        _ => None,
    };
    // The guard's limiters run on the simulator's clock.
    adapters.kms = Kms::with_limits_dilated(
        AccountClients::new(&on_sim, access.clone(), aws_sdk_kms::Client::new),
        config.rate_limits,
        dilation.round() as u32,
    );
    adapters.metrics = CloudWatch::new(aws_sdk_cloudwatch::Client::new(&on_sim));
    adapters.notifier = config
        .event_bus
        .as_ref()
        .map(|bus| EventBus::new(aws_sdk_eventbridge::Client::new(&on_sim), bus));
    (adapters.app(Ok(config.clone())), access.map(|(_, a)| a))
}

/// The quota floor of some calls: per Region the slowest operation's calls ÷ its quota,
/// Regions (and accounts) in parallel, so the largest.
pub fn quota_floor(calls: &BTreeMap<(String, String, Op), u64>, quotas: &Quotas) -> f64 {
    calls
        .iter()
        .map(|((_, _, op), n)| *n as f64 / quotas.of(*op))
        .fold(0.0, f64::max)
}

/// Calls by operation.
pub fn by_op(counts: &BTreeMap<(String, String, Op), Count>) -> BTreeMap<Op, Count> {
    let mut out: BTreeMap<Op, Count> = BTreeMap::new();
    for ((_, _, op), c) in counts {
        let t = out.entry(*op).or_default();
        t.calls += c.calls;
        t.throttled += c.throttled;
        t.peak_per_second = t.peak_per_second.max(c.peak_per_second);
    }
    out
}

/// `{"DescribeKey":n,...}`: calls by operation name, in the operations' order.
pub fn ops_line(m: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = Op::ALL
        .iter()
        .filter_map(|op| m.get(op.name()).map(|n| format!("\"{}\":{n}", op.name())))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The BENCHMARKS.md section of a report.
fn render(r: &Value) -> String {
    let mut s = format!(
        "Last run: `{}`, {} (commit {}), {:.0} s in all. Latency model (assumed, see \
         `crates/testkit/src/sim/model.rs`): {}. Quotas per account and Region (KMS defaults): {}.\n",
        r["command"].as_str().unwrap_or(""),
        r["date"].as_str().unwrap_or(""),
        r["commit"].as_str().unwrap_or(""),
        f(&r["total_seconds"]),
        r["latency_model"]
            .as_object()
            .map(|m| m
                .iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        r["quotas"]
            .as_object()
            .map(|m| m
                .iter()
                .map(|(k, v)| format!("{k} {}/s", v))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
    );
    if !r["sweep"].is_null() {
        s.push('\n');
        match serde_json::from_value::<sweep::SweepReport>(r["sweep"].clone()) {
            Ok(report) => s.push_str(&sweep::render(&report)),
            Err(e) => s.push_str(&format!(
                "The recorded one-account sweep cannot be read ({e}): run `cargo xtask bench-scale` again.\n"
            )),
        }
    }
    if !r["org"].is_null() {
        s.push('\n');
        match serde_json::from_value::<org::OrgRun>(r["org"].clone()) {
            Ok(report) => s.push_str(&org::render(&report)),
            Err(e) => s.push_str(&format!(
                "The recorded organisation sweep cannot be read ({e}): run `cargo xtask bench-scale` again.\n"
            )),
        }
    }
    if !r["storm"].is_null() {
        s.push('\n');
        match serde_json::from_value::<storm::StormRun>(r["storm"].clone()) {
            Ok(report) => s.push_str(&storm::render(&report)),
            Err(e) => s.push_str(&format!(
                "The recorded event storm cannot be read ({e}): run `cargo xtask bench-scale` again.\n"
            )),
        }
    }
    s
}
