//! `cargo xtask bench-coldstart` (`make bench-coldstart`): cold start and peak memory of the
//! release `bootstrap` beside a hello-world `lambda_runtime` binary built with the same
//! release profile (`examples/hello_lambda.rs`, `#[tokio::main]` as `lambda_runtime`'s own
//! examples write it: the reference of the init budget), both served by a local Runtime API
//! written here ([`api`]).
//!
//! It builds them (`cargo build --release --bin bootstrap --example hello_lambda --example
//! hello_lambda_current_thread`: host builds, x86_64 here; the deployed arm64 binary cannot
//! run on this machine), then runs two phases:
//!
//! 1. **Init only** (`--init-runs`, `COLDSTART_INIT_RUNS`, default 200 starts per binary, in
//!    random order): the hello world, the same hello world on tokio's current-thread runtime
//!    (`examples/hello_lambda_current_thread.rs`, the runtime the function uses: the
//!    like-for-like figure) and `bootstrap` are started against a bare listening socket that
//!    stands in for the Runtime API; the time is taken when the first bytes of the first poll
//!    arrive (checked to be `GET .../invocation/next`), then the process is killed. No HTTP
//!    server, no event and no emulator traffic in the measured path. **The init budget
//!    (bootstrap ≤ 1.3× hello, medians) is judged on this phase.**
//! 2. **Scenarios** (`--runs`, `COLDSTART_RUNS`, default 20 cold starts per binary, scenario
//!    and launch kind, after `--warmup` unrecorded ones), on a fresh emulator of its own
//!    (`--port`, `COLDSTART_PORT`, default 4581) seeded by [`crate::seed`] with 10
//!    multi-Region keys whose replicas in us-west-2 and eu-west-1 are in sync, and 20
//!    single-Region keys:
//!    - `in-sync`: `events/put-key-policy-replica-id.json` on an in-sync us-west-2 replica;
//!    - `drifted`: `events/put-key-policy-replica-arn.json` on a eu-west-1 replica that is
//!      drifted before every event (account root kept, a `Principal: *` grant added);
//!      enforce mode rewrites it;
//!    - `sweep`: `events/scheduled-sweep.json` with `SWEEP_REGIONS=us-west-2`.
//!
//! Per cold start the binary gets the Lambda environment (`AWS_LAMBDA_RUNTIME_API`,
//! `AWS_LAMBDA_FUNCTION_NAME`, `..._MEMORY_SIZE=128`, `..._VERSION`, `..._LOG_STREAM_NAME`,
//! `..._LOG_GROUP_NAME`) plus the function's own (enforce mode,
//! `BASELINE_SOURCE=file:baselines/example.json`, `--env NAME=VALUE` extra), is served the
//! same event `--events` times (default 2), and is SIGKILLed when its next poll arrives.
//! Binaries alternate run by run. **Every response is checked** (`in-sync` / `remediated` /
//! the sweep's summary; the hello world must echo the event); anything else, a
//! `POST .../error` included, stops the run with the response and the end of the log.
//!
//! | Figure | Measured as |
//! |---|---|
//! | init (init-only phase; judged) | just before the spawn → first bytes of `GET .../next` at a bare listener |
//! | init (scenarios; context) | just before the spawn → the Runtime API handling the first `GET .../next` |
//! | start → response 1 | just before the spawn → the first `POST .../response` |
//! | event 1, event 2 | event handed out → its response, for two events of one process |
//! | waiting on the emulator, own time | the function's `AWS_ENDPOINT_URL` is the proxy of `krg-testkit`, which timestamps each AWS call it forwards; own time = latency − time with a call in flight |
//! | served → first AWS call | what the first use of the SDK costs shows as event 1 − event 2 |
//! | peak RSS | `ru_maxrss` from `wait4` of a process that served one event |
//!
//! A child's `ru_maxrss` also counts the memory image it had before `exec`: spawned from
//! this process it would read as this process's size. The memory launches therefore start
//! the binary from `/bin/sh` (about 1 MiB before `exec`) with this process as child
//! subreaper, so the binary is re-parented here and `wait4` reads its own figure;
//! `/proc/PID/status` `VmHWM` at the idle poll is recorded as a cross-check. These launches
//! are not timed (the shell would count in init).
//!
//! Output: tables on stdout, `target/bench/bench-coldstart/result.json` (every sample,
//! binary sizes and hashes, the function's environment, load average) and the logs of the
//! last launches beside it; then the task writes its section of `BENCHMARKS.md`. Only a
//! full run (init-only phase and all three scenarios) does both; a partial one
//! (`--init-only`, `--init-runs 0`, fewer `--scenarios`) writes `result-partial.json`
//! instead and leaves the document alone. `--check` only re-renders the section from the
//! last full result and fails if the document differs; `--render` writes it from there;
//! `--check-budgets` makes the run fail when a budget is exceeded.

mod api;
mod launch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use sha2::Digest;

use crate::bench_sweep::InOrder;
use crate::{bench_sweep, report};
use crate::{env, seed};
use api::{Api, FUNCTION_NAME, Redrift};
use launch::{Launched, Mode};

const NAME: &str = "bench-coldstart";
const SAMPLE_KEY_ID: &str = "mrk-1234abcd12ab34cd56ef1234567890ab";
const RSS_BUDGET_KIB: f64 = 25.0 * 1024.0;
const INIT_RATIO_BUDGET: f64 = 1.3;
const SCENARIOS: [&str; 3] = ["in-sync", "drifted", "sweep"];
const BINARIES: [&str; 2] = ["hello", "bootstrap"];

/// Arguments of `cargo xtask bench-coldstart`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cold starts per binary, scenario and launch kind.
    #[arg(long, env = "COLDSTART_RUNS", default_value_t = 20)]
    runs: usize,
    /// Init-only starts per binary (0 skips the phase).
    #[arg(long, env = "COLDSTART_INIT_RUNS", default_value_t = 200)]
    init_runs: usize,
    /// Unrecorded cold starts per binary and scenario first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Events per timed process (>= 2 for the event-2 figure).
    #[arg(long, default_value_t = 2)]
    events: usize,
    /// Scenarios, comma-separated: in-sync, drifted, sweep.
    #[arg(long, value_delimiter = ',', default_value = "in-sync,drifted,sweep")]
    scenarios: Vec<String>,
    /// The Region the sweep scenario sweeps.
    #[arg(long, default_value = "us-west-2")]
    sweep_region: String,
    /// Port of the benchmark's own emulator.
    #[arg(long, env = "COLDSTART_PORT", default_value_t = 4581)]
    port: u16,
    /// Seconds per launch.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Only the init-only phase (no emulator, no events), e.g. to compare two builds.
    #[arg(long)]
    init_only: bool,
    /// Extra environment for both binaries (what-if runs), repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    extra_env: Vec<(String, String)>,
    /// Free text stored with the results (e.g. what the binaries were built from).
    #[arg(long, default_value = "")]
    label: String,
    /// Use the binaries as built (no cargo build first).
    #[arg(long)]
    no_build: bool,
    /// Fail (exit code 1) when a budget is exceeded.
    #[arg(long)]
    check_budgets: bool,
    /// Do not run: re-render the BENCHMARKS.md section from the last result and fail if the
    /// document differs.
    #[arg(long)]
    check: bool,
    /// Do not run: write the BENCHMARKS.md section from the last result (after a change of its
    /// format).
    #[arg(long, conflicts_with = "check")]
    render: bool,
    /// Run, but leave BENCHMARKS.md alone.
    #[arg(long)]
    no_write: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected NAME=VALUE".into())
}

/// `result.json` (`result-partial.json` after a partial run): what the task writes and
/// `--check` renders. Fields in the order of the file.
#[derive(Debug, Serialize, Deserialize)]
struct ColdstartResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init_only: Option<InitOnly>,
    /// By scenario, in the order they ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scenarios: Option<InOrder<ScenarioResult>>,
    info: Info,
    budgets: Vec<Budget>,
}

/// The run: when, what, on which binaries and in which environment.
#[derive(Debug, Serialize, Deserialize)]
struct Info {
    when: String,
    commit: String,
    command: String,
    host: Host,
    label: String,
    extra_env: BTreeMap<String, String>,
    /// By name: `bootstrap`, `hello`, `hello-current-thread`.
    binaries: BTreeMap<String, Binary>,
    loadavg_before: String,
    // The scenarios phase's, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runtime_api: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    emulator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    emulator_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warmup: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events_per_timed_process: Option<usize>,
    /// Without `AWS_SECRET_ACCESS_KEY`, `PATH` and `HOME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    function_env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    elapsed_s: Option<f64>,
    /// Set when the run ends.
    loadavg_after: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Host {
    arch: String,
    cpu: String,
    cpus: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Binary {
    path: PathBuf,
    bytes: usize,
    sha256: String,
}

/// The init-only phase. Ratios are of medians or minima, `null` in the file when not finite.
#[derive(Debug, Serialize, Deserialize)]
struct InitOnly {
    runs: usize,
    #[serde(deserialize_with = "nan_for_null")]
    ratio_median: f64,
    #[serde(deserialize_with = "nan_for_null")]
    ratio_min: f64,
    #[serde(deserialize_with = "nan_for_null")]
    ratio_median_current_thread: f64,
    #[serde(deserialize_with = "nan_for_null")]
    ratio_min_current_thread: f64,
    /// By binary, ms.
    summary: BTreeMap<String, Stats>,
    /// By binary, ms.
    samples: BTreeMap<String, Samples>,
}

/// One scenario.
#[derive(Debug, Serialize, Deserialize)]
struct ScenarioResult {
    what: String,
    event: String,
    expected: String,
    #[serde(deserialize_with = "nan_for_null")]
    init_ratio_median: f64,
    /// The AWS calls of bootstrap's first process, by event (`event1`, `event2`).
    calls_per_event: BTreeMap<String, Vec<String>>,
    /// By binary.
    summary: BTreeMap<String, MetricStats>,
    /// By binary.
    samples: BTreeMap<String, MetricSamples>,
}

impl ScenarioResult {
    /// The largest peak RSS of bootstrap, KiB (NaN without one).
    fn peak_rss_kib(&self) -> f64 {
        self.summary
            .get("bootstrap")
            .and_then(|s| s.ru_maxrss_kib.as_ref())
            .map_or(f64::NAN, |s| s.max)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Budget {
    scenario: String,
    budget: String,
    value: String,
    ok: bool,
}

/// A figure JSON wrote as `null` (it was not finite) reads as NaN.
fn nan_for_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Samples of one metric, in the order they were taken; one that was not finite is written
/// `null` and reads back as NaN.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Samples {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<Option<f64>>::deserialize(d)?;
        Ok(Self(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect()))
    }
}

/// Runs `cargo xtask bench-coldstart`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let out = report::out_dir(NAME);
    let result_path = out.join("result.json");
    if args.check || args.render {
        let text = std::fs::read_to_string(&result_path).with_context(|| {
            format!(
                "no result of an earlier run ({}): run `cargo xtask bench-coldstart` first",
                result_path.display()
            )
        })?;
        let r: ColdstartResult = serde_json::from_str(&text)?;
        return report::update(&report::benchmarks_md(), NAME, &section(&r), args.check);
    }
    for s in &args.scenarios {
        ensure!(
            SCENARIOS.contains(&s.as_str()),
            "--scenarios: unknown {s:?}"
        );
    }
    ensure!(
        args.runs >= 1 && args.events >= 1,
        "--runs and --events must be >= 1"
    );
    ensure!(
        !args.init_only || args.init_runs >= 1,
        "--init-only needs --init-runs >= 1"
    );
    ensure!(
        ![4566, 4577].contains(&args.port),
        "port {} is a shared emulator's; the benchmark starts (and wipes) its own",
        args.port
    );
    std::fs::create_dir_all(&out)?;

    if !args.no_build {
        println!(
            "==> cargo build --release --bin bootstrap --example hello_lambda --example hello_lambda_current_thread"
        );
        bench_sweep::cargo(&[
            "build",
            "--release",
            "--bin",
            "bootstrap",
            "--example",
            "hello_lambda",
            "--example",
            "hello_lambda_current_thread",
        ])?;
    }
    let target = bench_sweep::target_dir()?;
    let bins: BTreeMap<&str, PathBuf> = [
        ("hello", target.join("release/examples/hello_lambda")),
        (
            "hello-current-thread",
            target.join("release/examples/hello_lambda_current_thread"),
        ),
        ("bootstrap", target.join("release/bootstrap")),
    ]
    .into_iter()
    .collect();
    let mut info = Info {
        when: bench_sweep::utc_now(),
        commit: bench_sweep::git_commit(),
        command: command_line(&args),
        host: host(),
        label: args.label.clone(),
        extra_env: args.extra_env.iter().cloned().collect(),
        binaries: BTreeMap::new(),
        loadavg_before: bench_sweep::loadavg(),
        runtime_api: None,
        emulator: None,
        emulator_proxy: None,
        runs: None,
        warmup: None,
        events_per_timed_process: None,
        function_env: None,
        elapsed_s: None,
        loadavg_after: String::new(),
    };
    for (name, path) in &bins {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{} (build it, or drop --no-build)", path.display()))?;
        let sha: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!(
            "  {name:21} {:>10} B  {}",
            report::thousands(bytes.len() as u64),
            path.display()
        );
        info.binaries.insert(
            (*name).to_owned(),
            Binary {
                path: path.clone(),
                bytes: bytes.len(),
                sha256: sha,
            },
        );
    }
    let timeout = Duration::from_secs(args.timeout);
    let mut init_only = None;

    if args.init_runs > 0 {
        println!(
            "==> init only: {} starts per binary, in random order, against a bare listener",
            args.init_runs
        );
        let env = function_env(
            0,
            "http://127.0.0.1:9",
            &args,
            "KmsReplicaGuardColdStart/init-only",
        );
        let list: Vec<(String, PathBuf)> = bins
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let runs = args.init_runs;
        let samples =
            tokio::task::spawn_blocking(move || launch::measure_init(&list, &env, runs, timeout))
                .await??;
        let summary: BTreeMap<String, Stats> = bins
            .keys()
            .zip(&samples)
            .map(|(name, s)| ((*name).to_owned(), Stats::of(s)))
            .collect();
        let med = |n: &str| summary[n].median;
        let min = |n: &str| summary[n].min;
        let io = InitOnly {
            runs: args.init_runs,
            ratio_median: med("bootstrap") / med("hello"),
            ratio_min: min("bootstrap") / min("hello"),
            ratio_median_current_thread: med("bootstrap") / med("hello-current-thread"),
            ratio_min_current_thread: min("bootstrap") / min("hello-current-thread"),
            summary,
            samples: bins
                .keys()
                .zip(samples)
                .map(|(name, s)| ((*name).to_owned(), Samples(s)))
                .collect(),
        };
        print_init(&io);
        init_only = Some(io);
    }

    let scenarios = if args.init_only {
        None
    } else {
        Some(scenarios_phase(&args, &bins, &out, timeout, &mut info).await?)
    };
    info.loadavg_after = bench_sweep::loadavg();
    let mut result = ColdstartResult {
        init_only,
        scenarios,
        info,
        budgets: Vec::new(),
    };
    result.budgets = budgets(&result);
    print_budgets(&result.budgets);
    let full = args.init_runs > 0
        && !args.init_only
        && SCENARIOS
            .iter()
            .all(|s| args.scenarios.iter().any(|x| x == s));
    // A partial run keeps its own file: result.json stays the last full run, which the
    // BENCHMARKS.md section shows.
    let path = if full {
        result_path
    } else {
        out.join("result-partial.json")
    };
    std::fs::write(&path, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("\nJSON: {}", path.display());
    if !args.no_write {
        record_rows(&result)?;
        if full {
            report::update(&report::benchmarks_md(), NAME, &section(&result), false)?;
        } else {
            println!(
                "BENCHMARKS.md: not written (a partial run: init-only phase and all scenarios make the section)"
            );
        }
    }
    let over = result.budgets.iter().filter(|b| !b.ok).count();
    if args.check_budgets && over > 0 {
        bail!("{over} budget(s) exceeded");
    }
    Ok(())
}

fn command_line(args: &Args) -> String {
    let mut s = format!(
        "cargo xtask bench-coldstart --runs {} --init-runs {}",
        args.runs, args.init_runs
    );
    if args.init_only {
        s.push_str(" --init-only");
    }
    if args.scenarios.len() != SCENARIOS.len() {
        s.push_str(&format!(" --scenarios {}", args.scenarios.join(",")));
    }
    for (k, v) in &args.extra_env {
        s.push_str(&format!(" --env {k}={v}"));
    }
    s
}

fn host() -> Host {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    Host {
        arch: std::env::consts::ARCH.to_owned(),
        cpu,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
    }
}

/// The environment Lambda gives the function, plus the function's own configuration.
fn function_env(
    api_port: u16,
    endpoint: &str,
    args: &Args,
    namespace: &str,
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = bench_sweep::function_vars(endpoint)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let root = env::root();
    for (k, v) in [
        (
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        ),
        (
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
        ),
        ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{api_port}")),
        ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME.into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/22/[$LATEST]coldstartbench".into(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{FUNCTION_NAME}"),
        ),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("REMEDIATION_MODE", "enforce".into()),
        (
            "BASELINE_SOURCE",
            format!("file:{}", root.join(seed::BASELINE).display()),
        ),
        (
            "REMEDIATOR_ROLE_ARN",
            format!(
                "arn:aws:iam::{}:role/kms-replica-guard-remediator",
                env::ACCOUNT
            ),
        ),
        ("METRICS_NAMESPACE", namespace.into()),
        ("SWEEP_REGIONS", args.sweep_region.clone()),
    ] {
        env.insert(k.to_owned(), v);
    }
    for (k, v) in &args.extra_env {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

// ---------------------------------------------------------------------------- scenarios

/// What a scenario's responses must say.
enum Expect {
    /// Exactly one outcome: this key, this action.
    One { arn: String, action: &'static str },
    /// A sweep: this summary and nothing listed.
    Sweep { in_sync: usize },
}

impl Expect {
    fn describe(&self) -> String {
        match self {
            Expect::One { action, .. } => (*action).to_owned(),
            Expect::Sweep { in_sync } => format!("summary in-sync={in_sync}"),
        }
    }

    /// What is wrong with a response of bootstrap's, if anything. The response stays a
    /// `Value`: whatever it holds besides what is checked is quoted, as JSON, when it is wrong.
    fn problem(&self, resp: &Value) -> Option<String> {
        match self {
            Expect::One { arn, action } => {
                let outcomes = resp["outcomes"].as_array().cloned().unwrap_or_default();
                let got: Vec<(String, String)> = outcomes
                    .iter()
                    .map(|o| {
                        (
                            o["key_arn"].as_str().unwrap_or("").to_owned(),
                            o["action"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect();
                (got != [(arn.clone(), (*action).to_owned())]).then(|| {
                    let reasons: Vec<&Value> = outcomes.iter().map(|o| &o["reason"]).collect();
                    format!("want exactly [{arn} {action}], got {got:?}; reasons: {reasons:?}")
                })
            }
            Expect::Sweep { in_sync } => {
                let listed = |k: &str| resp[k].as_array().is_some_and(|a| !a.is_empty());
                let ok = !listed("outcomes")
                    && !listed("errors")
                    && resp["summary"] == json!({"in-sync": in_sync});
                (!ok).then(|| {
                    format!(
                        "want summary {{\"in-sync\": {in_sync}}} and nothing listed, got summary={} outcomes={} errors={}",
                        resp["summary"], resp["outcomes"], resp["errors"]
                    )
                })
            }
        }
    }
}

struct Scenario {
    name: &'static str,
    what: String,
    event_file: &'static str,
    event: Bytes,
    expect: Expect,
    redrift: Option<Arc<Redrift>>,
}

fn sample_event(file: &str, key_id: &str) -> anyhow::Result<Bytes> {
    let path = env::root().join("events").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Bytes::from(text.replace(SAMPLE_KEY_ID, key_id)))
}

/// Keeps the account root (the lockout check passes), adds a rogue grant.
fn drift_policy() -> String {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "EnableRootAccess", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{}:root", env::ACCOUNT)},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "ColdStartBenchDrift", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": "kms:Decrypt", "Resource": "*"}]})
    .to_string()
}

async fn build_scenarios(
    manifest: &seed::Manifest,
    names: &[String],
    sweep_region: &str,
    endpoint: &str,
) -> anyhow::Result<Vec<Scenario>> {
    let (in_sync_region, drift_region) = ("us-west-2", "eu-west-1");
    let in_region = |r: &'static str| manifest.replicas.iter().filter(move |x| x.region == r);
    let a = in_region(in_sync_region)
        .next()
        .ok_or_else(|| anyhow!("the manifest needs replicas in {in_sync_region}"))?;
    // The drifted replica belongs to another family when there is one.
    let b = in_region(drift_region)
        .find(|r| r.primary_arn != a.primary_arn)
        .or_else(|| in_region(drift_region).next())
        .ok_or_else(|| anyhow!("the manifest needs replicas in {drift_region}"))?;
    let key_id = |arn: &str| arn.rsplit('/').next().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    for name in SCENARIOS.iter().filter(|s| names.iter().any(|n| n == *s)) {
        out.push(match *name {
            "in-sync" => Scenario {
                name,
                what: format!("PutKeyPolicy event (bare key id) on an in-sync {in_sync_region} replica"),
                event_file: "put-key-policy-replica-id.json",
                event: sample_event("put-key-policy-replica-id.json", &key_id(&a.arn))?,
                expect: Expect::One { arn: a.arn.clone(), action: "in-sync" },
                redrift: None,
            },
            "drifted" => {
                let clients = seed::Clients::new(endpoint, &[drift_region.to_owned()], None).await;
                Scenario {
                    name,
                    what: format!(
                        "PutKeyPolicy event (key ARN) on a {drift_region} replica drifted before every event \
                         (root kept + a Principal * grant); enforce mode rewrites and verifies it"
                    ),
                    event_file: "put-key-policy-replica-arn.json",
                    event: sample_event("put-key-policy-replica-arn.json", &key_id(&b.arn))?,
                    expect: Expect::One { arn: b.arn.clone(), action: "remediated" },
                    redrift: Some(Arc::new(Redrift {
                        client: clients.get(drift_region).clone(),
                        arn: b.arn.clone(),
                        policy: drift_policy(),
                    })),
                }
            }
            _ => {
                let n = manifest.replicas.iter().filter(|r| r.region == sweep_region).count();
                let singles = manifest.single_region_keys.get(sweep_region).map_or(0, Vec::len);
                Scenario {
                    name,
                    what: format!("scheduled sweep of {sweep_region}: {n} in-sync replicas, {singles} single-Region keys"),
                    event_file: "scheduled-sweep.json",
                    event: sample_event("scheduled-sweep.json", SAMPLE_KEY_ID)?,
                    expect: Expect::Sweep { in_sync: n },
                    redrift: None,
                }
            }
        });
    }
    Ok(out)
}

/// Checks the responses of one process. They stay `Value`s: the hello world's is any event,
/// echoed, compared whole with the event sent; bootstrap's is judged by [`Expect::problem`].
fn verify(binary: &str, sc: &Scenario, responses: &[Bytes]) -> anyhow::Result<()> {
    let event: Value = serde_json::from_slice(&sc.event)?;
    for (i, body) in responses.iter().enumerate() {
        let Ok(resp) = serde_json::from_slice::<Value>(body) else {
            bail!(
                "{binary}: response {} is not JSON: {:?}",
                i + 1,
                String::from_utf8_lossy(&body[..body.len().min(500)])
            );
        };
        if binary == "hello" {
            ensure!(
                resp == event,
                "hello: response {} is not the event echoed back: {resp}",
                i + 1
            );
            continue;
        }
        if let Some(problem) = sc.expect.problem(&resp) {
            let text = resp.to_string();
            bail!(
                "bootstrap: response {} ({} expected): {problem}\nresponse: {}",
                i + 1,
                sc.expect.describe(),
                &text[..text.len().min(3000)]
            );
        }
    }
    Ok(())
}

/// The samples of one binary in one scenario, by metric; a metric nothing was recorded for
/// is left out. Fields in the order of the file (alphabetical).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct MetricSamples {
    #[serde(skip_serializing_if = "Samples::is_empty")]
    calls_during_init: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    event1_emulator_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    event1_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    event1_own_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    event1_to_first_call_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    event2_emulator_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    event2_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    event2_own_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    event2_to_first_call_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    first_response_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    init_ms: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    ru_maxrss_direct_kib: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    ru_maxrss_kib: Samples,
    #[serde(skip_serializing_if = "Samples::is_empty")]
    vm_hwm_kib: Samples,
}

/// The statistics of [`MetricSamples`], metric by metric, in the order of the file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct MetricStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    init_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_response_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calls_during_init: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event1_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event1_emulator_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event1_own_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event1_to_first_call_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event2_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event2_emulator_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event2_own_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event2_to_first_call_ms: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ru_maxrss_kib: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_hwm_kib: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ru_maxrss_direct_kib: Option<Stats>,
}

impl MetricStats {
    fn of(s: &MetricSamples) -> Self {
        let st = |v: &Samples| (!v.is_empty()).then(|| Stats::of(&v.0));
        Self {
            init_ms: st(&s.init_ms),
            first_response_ms: st(&s.first_response_ms),
            calls_during_init: st(&s.calls_during_init),
            event1_ms: st(&s.event1_ms),
            event1_emulator_ms: st(&s.event1_emulator_ms),
            event1_own_ms: st(&s.event1_own_ms),
            event1_to_first_call_ms: st(&s.event1_to_first_call_ms),
            event2_ms: st(&s.event2_ms),
            event2_emulator_ms: st(&s.event2_emulator_ms),
            event2_own_ms: st(&s.event2_own_ms),
            event2_to_first_call_ms: st(&s.event2_to_first_call_ms),
            ru_maxrss_kib: st(&s.ru_maxrss_kib),
            vm_hwm_kib: st(&s.vm_hwm_kib),
            ru_maxrss_direct_kib: st(&s.ru_maxrss_direct_kib),
        }
    }

    /// Event `k` (1 or 2): served → response, waiting on the emulator, own time, served →
    /// first AWS call.
    fn event(&self, k: usize) -> [Option<&Stats>; 4] {
        if k == 1 {
            [
                &self.event1_ms,
                &self.event1_emulator_ms,
                &self.event1_own_ms,
                &self.event1_to_first_call_ms,
            ]
        } else {
            [
                &self.event2_ms,
                &self.event2_emulator_ms,
                &self.event2_own_ms,
                &self.event2_to_first_call_ms,
            ]
        }
        .map(Option::as_ref)
    }
}

fn record_timed(
    s: &mut MetricSamples,
    r: &Launched,
    calls_seen: &mut BTreeMap<String, Vec<String>>,
) {
    s.init_ms.push(r.init_ms);
    s.first_response_ms.push(r.first_response_ms);
    s.calls_during_init.push(r.calls_during_init as f64);
    s.ru_maxrss_direct_kib.push(r.ru_maxrss_kib as f64);
    for (k, e) in r.events.iter().take(2).enumerate() {
        let [lat, emu, own, first] = if k == 0 {
            [
                &mut s.event1_ms,
                &mut s.event1_emulator_ms,
                &mut s.event1_own_ms,
                &mut s.event1_to_first_call_ms,
            ]
        } else {
            [
                &mut s.event2_ms,
                &mut s.event2_emulator_ms,
                &mut s.event2_own_ms,
                &mut s.event2_to_first_call_ms,
            ]
        };
        lat.push(e.latency_ms);
        emu.push(e.emulator_ms);
        own.push(e.own_ms);
        if let Some(f) = e.to_first_call_ms {
            first.push(f);
        }
        calls_seen
            .entry(format!("event{}", k + 1))
            .or_insert_with(|| e.calls.clone());
    }
}

async fn scenarios_phase(
    args: &Args,
    bins: &BTreeMap<&str, PathBuf>,
    out: &Path,
    timeout: Duration,
    info: &mut Info,
) -> anyhow::Result<InOrder<ScenarioResult>> {
    let endpoint = format!("http://127.0.0.1:{}", args.port);
    println!("==> fresh emulator on {endpoint}");
    let _emulator = bench_sweep::Emulator::fresh(args.port)?;
    println!(
        "==> seeding 10 multi-Region keys (replicas in us-west-2 and eu-west-1, in sync) + 20 single-Region keys"
    );
    let mut sa = seed::Args::with_primaries(10);
    sa.single_region_factor = 2;
    sa.mix = seed::Mix([1.0, 0.0, 0.0, 0.0]);
    sa.endpoint = Some(endpoint.clone());
    sa.manifest = Some(out.join("manifest.json"));
    let (manifest, _) = seed::seed(&sa).await?;
    let scenarios =
        build_scenarios(&manifest, &args.scenarios, &args.sweep_region, &endpoint).await?;

    // After the emulator started: it is not to be re-parented here.
    launch::set_child_subreaper()?;
    let api = Api::start().await?;
    let proxy = krg_testkit::FaultProxy::start(endpoint.clone()).await;
    let env = function_env(
        api.port,
        &proxy.endpoint,
        args,
        &format!("KmsReplicaGuardColdStart/{}", manifest.run_tag),
    );
    info.runtime_api = Some(format!("127.0.0.1:{} (local, hyper)", api.port));
    info.emulator = Some(endpoint.clone());
    info.emulator_proxy = Some(format!(
        "the function's AWS_ENDPOINT_URL is the timestamping proxy of krg-testkit ({}) in front of {endpoint}",
        proxy.endpoint
    ));
    info.runs = Some(args.runs);
    info.warmup = Some(args.warmup);
    info.events_per_timed_process = Some(args.events);
    info.function_env = Some(
        env.iter()
            .filter(|(k, _)| !["AWS_SECRET_ACCESS_KEY", "PATH", "HOME"].contains(&k.as_str()))
            .cloned()
            .collect(),
    );

    let started = Instant::now();
    let mut results = InOrder::new();
    for sc in &scenarios {
        println!("==> {}: {}", sc.name, sc.what);
        let mut samples: BTreeMap<&str, MetricSamples> = BINARIES
            .iter()
            .map(|b| (*b, MetricSamples::default()))
            .collect();
        let mut calls_seen = BTreeMap::new();
        for i in 0..args.warmup + args.runs {
            let recorded = i >= args.warmup;
            let order: [&str; 2] = if i.is_multiple_of(2) {
                BINARIES
            } else {
                ["bootstrap", "hello"]
            };
            for b in order {
                for mode in [Mode::Timed, Mode::Memory] {
                    if let Some(r) = &sc.redrift {
                        r.apply().await.context("drifting the replica")?;
                    }
                    let n_events = if mode == Mode::Timed { args.events } else { 1 };
                    let log = out.join(format!(
                        "{}.{b}.{}.log",
                        sc.name,
                        if mode == Mode::Timed {
                            "timed"
                        } else {
                            "memory"
                        }
                    ));
                    let r = launch::launch(
                        &api,
                        &proxy,
                        &bins[b],
                        &env,
                        vec![sc.event.clone(); n_events],
                        mode,
                        &log,
                        timeout,
                        sc.redrift.clone(),
                    )
                    .await?;
                    verify(b, sc, &r.responses)?;
                    if !recorded {
                        continue;
                    }
                    let s = samples.get_mut(b).unwrap();
                    match mode {
                        Mode::Timed => {
                            let seen = if b == "bootstrap" {
                                &mut calls_seen
                            } else {
                                &mut BTreeMap::new()
                            };
                            record_timed(s, &r, seen);
                        }
                        Mode::Memory => {
                            s.ru_maxrss_kib.push(r.ru_maxrss_kib as f64);
                            if let Some(h) = r.vm_hwm_kib {
                                s.vm_hwm_kib.push(h as f64);
                            }
                        }
                    }
                }
            }
            let done = i + 1;
            if recorded
                && ((done - args.warmup).is_multiple_of(5) || done == args.warmup + args.runs)
            {
                println!(
                    "    {}/{} runs ({:.0} s)",
                    done - args.warmup,
                    args.runs,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        let summary: BTreeMap<String, MetricStats> = samples
            .iter()
            .map(|(b, s)| ((*b).to_owned(), MetricStats::of(s)))
            .collect();
        let med = |b: &str| summary[b].init_ms.as_ref().map_or(f64::NAN, |s| s.median);
        let r = ScenarioResult {
            what: sc.what.clone(),
            event: format!("events/{} (key id rewritten)", sc.event_file),
            expected: sc.expect.describe(),
            init_ratio_median: med("bootstrap") / med("hello"),
            calls_per_event: calls_seen,
            summary,
            samples: samples
                .into_iter()
                .map(|(b, s)| (b.to_owned(), s))
                .collect(),
        };
        print_scenario(sc.name, &r);
        results.insert(sc.name.to_owned(), r);
    }
    info.elapsed_s = Some((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    Ok(results)
}

// ---------------------------------------------------------------------------- statistics and output

/// Statistics of some samples; written as `{}` when none was finite.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Stats {
    n: usize,
    median: f64,
    p90: f64,
    min: f64,
    max: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            n: 0,
            median: f64::NAN,
            p90: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        }
    }
}

impl Serialize for Stats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.n == 0 {
            return serializer.serialize_struct("Stats", 0)?.end();
        }
        let mut s = serializer.serialize_struct("Stats", 5)?;
        s.serialize_field("n", &self.n)?;
        s.serialize_field("median", &self.median)?;
        s.serialize_field("p90", &self.p90)?;
        s.serialize_field("min", &self.min)?;
        s.serialize_field("max", &self.max)?;
        s.end()
    }
}

impl Stats {
    fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Self::default();
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let p90 = v[(0.9 * n as f64).ceil() as usize - 1]; // nearest rank
        Self {
            n,
            median,
            p90,
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// Some statistics with figures in them (not absent, not `{}`).
fn figures(st: Option<&Stats>) -> Option<&Stats> {
    st.filter(|s| s.n > 0)
}

/// The median of some statistics, NaN without one.
fn median(st: Option<&Stats>) -> f64 {
    figures(st).map_or(f64::NAN, |s| s.median)
}

/// The maximum of some statistics in KiB, as a whole number with separators.
fn kib(st: Option<&Stats>) -> String {
    figures(st).map_or("?".to_owned(), |s| report::thousands(s.max.round() as u64))
}

fn row(label: &str, st: Option<&Stats>, scale: f64, unit: &str) -> String {
    let Some(st) = figures(st) else {
        return format!("    {label:<40} {:>8}", "-");
    };
    let cells: Vec<String> = [st.median, st.p90, st.min, st.max]
        .iter()
        .map(|v| format!("{:8.2}", v / scale))
        .collect();
    format!("    {label:<40} {}  {unit}", cells.join(" "))
}

fn print_init(io: &InitOnly) {
    println!(
        "\nInit only (start -> first poll at a bare listener), {} starts per binary, random order:",
        io.runs
    );
    println!(
        "    {:<40} {:>8} {:>8} {:>8} {:>8}",
        "", "median", "p90", "min", "max"
    );
    for (k, st) in &io.summary {
        println!("{}", row(k, Some(st), 1.0, "ms"));
    }
    println!(
        "  ratio bootstrap/hello: {:.2}x (medians), {:.2}x (minima)",
        io.ratio_median, io.ratio_min
    );
    println!(
        "  like for like, bootstrap/hello-current-thread: {:.2}x (medians), {:.2}x (minima)",
        io.ratio_median_current_thread, io.ratio_min_current_thread
    );
}

fn print_scenario(name: &str, r: &ScenarioResult) {
    println!("\n[{name}] {}", r.what);
    for (ev, ops) in &r.calls_per_event {
        println!(
            "  bootstrap AWS calls, {ev}: {}",
            if ops.is_empty() {
                "none".into()
            } else {
                ops.join(", ")
            }
        );
    }
    println!(
        "    {:<40} {:>8} {:>8} {:>8} {:>8}",
        "", "median", "p90", "min", "max"
    );
    let none = MetricStats::default();
    for b in BINARIES {
        let s = r.summary.get(b).unwrap_or(&none);
        println!("  {b}");
        println!(
            "{}",
            row("init: start -> first poll", s.init_ms.as_ref(), 1.0, "ms")
        );
        println!(
            "{}",
            row(
                "start -> response 1",
                s.first_response_ms.as_ref(),
                1.0,
                "ms"
            )
        );
        for k in 1..=2 {
            let [latency, emulator, own, first_call] = s.event(k);
            if latency.is_none() {
                continue;
            }
            println!(
                "{}",
                row(
                    &format!("event {k}: served -> response"),
                    latency,
                    1.0,
                    "ms"
                )
            );
            if b == "bootstrap" {
                println!("{}", row("  waiting on the emulator", emulator, 1.0, "ms"));
                println!("{}", row("  own time (latency - waiting)", own, 1.0, "ms"));
                println!(
                    "{}",
                    row("  served -> first AWS call", first_call, 1.0, "ms")
                );
            }
        }
        println!(
            "{}",
            row(
                "peak RSS, 1 event: ru_maxrss (wait4)",
                s.ru_maxrss_kib.as_ref(),
                1024.0,
                "MiB"
            )
        );
        println!(
            "{}",
            row(
                "  cross-check: VmHWM (/proc) at poll 2",
                s.vm_hwm_kib.as_ref(),
                1024.0,
                "MiB"
            )
        );
    }
    println!(
        "  init ratio bootstrap/hello (context): {:.2}x (medians)",
        r.init_ratio_median
    );
}

/// The init and peak RSS rows of the figures table, from whichever phases ran.
fn record_rows(result: &ColdstartResult) -> anyhow::Result<()> {
    let command = &result.info.command;
    if let Some(io) = &result.init_only {
        let med = |b: &str| median(io.summary.get(b));
        report::record(
            "init",
            &format!(
                "{:.2}× ({:.2} ms / {:.2} ms)",
                io.ratio_median,
                med("bootstrap"),
                med("hello")
            ),
            command,
        )?;
    }
    let peak = result
        .scenarios
        .iter()
        .flat_map(InOrder::iter)
        .map(|(name, r)| (name, r.peak_rss_kib()))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((scenario, kib)) = peak {
        report::record(
            "rss",
            &format!(
                "{} KiB ({scenario} scenario)",
                report::thousands(kib.round() as u64)
            ),
            command,
        )?;
    }
    Ok(())
}

fn budgets(result: &ColdstartResult) -> Vec<Budget> {
    let mut out = Vec::new();
    if let Some(io) = &result.init_only {
        let ratio = io.ratio_median;
        out.push(Budget {
            scenario: "init".into(),
            budget: format!("init <= {INIT_RATIO_BUDGET}x hello-world (init-only phase, medians)"),
            value: format!("{ratio:.3}x"),
            ok: ratio <= INIT_RATIO_BUDGET,
        });
    }
    for (name, r) in result.scenarios.iter().flat_map(InOrder::iter) {
        let rss = r.peak_rss_kib();
        out.push(Budget {
            scenario: name.to_owned(),
            budget: "peak RSS for one event <= 25 MiB (max over runs)".into(),
            value: format!("{rss:.0} KiB"),
            ok: rss <= RSS_BUDGET_KIB,
        });
    }
    out
}

fn print_budgets(budgets: &[Budget]) {
    println!("\nBudgets:");
    for b in budgets {
        println!(
            "  {} {:<8} {}: {}",
            if b.ok { "ok  " } else { "OVER" },
            b.scenario,
            b.budget,
            b.value
        );
    }
}

/// The BENCHMARKS.md section of a result.
fn section(r: &ColdstartResult) -> String {
    let info = &r.info;
    let mut s = format!(
        "Last run: `{}`, {} (commit {}; host {}, {} CPUs; load average before {}, after {}).\n",
        info.command,
        info.when,
        info.commit,
        info.host.arch,
        info.host.cpus,
        info.loadavg_before,
        info.loadavg_after,
    );
    let size = |b: &str| {
        info.binaries
            .get(b)
            .map_or("?".into(), |x| report::thousands(x.bytes as u64))
    };
    s.push_str(&format!(
        "Binaries (host build): bootstrap {} B, hello {} B, hello current-thread {} B.\n",
        size("bootstrap"),
        size("hello"),
        size("hello-current-thread")
    ));
    if let Some(io) = &r.init_only {
        s.push_str(&format!(
            "\nInit only, {} starts per binary (ms):\n\n| binary | median | p90 | min | max |\n|---|---|---|---|---|\n",
            io.runs
        ));
        let none = Stats::default();
        for b in ["hello", "hello-current-thread", "bootstrap"] {
            let st = io.summary.get(b).unwrap_or(&none);
            s.push_str(&format!(
                "| {b} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                st.median, st.p90, st.min, st.max
            ));
        }
        let ratio = io.ratio_median;
        s.push_str(&format!(
            "\n**bootstrap / hello: {ratio:.3}×** (medians; budget ≤ {INIT_RATIO_BUDGET}×: {}); like for like \
             (bootstrap / hello current-thread): {:.3}×.\n",
            if ratio <= INIT_RATIO_BUDGET { "met" } else { "**exceeded**" },
            io.ratio_median_current_thread
        ));
    }
    if let Some(sc) = &r.scenarios {
        s.push_str(&format!(
            "\nScenarios, {} cold starts per binary and scenario, medians (ms; own = latency − time waiting on the emulator):\n\n",
            bench_sweep::as_json(&info.runs)
        ));
        s.push_str(
            "| scenario | start → response 1 | event 1 | event 1 own | event 2 | event 2 own | served → first AWS call (event 1 / 2) | init, hello / bootstrap (context) | peak RSS, bootstrap (max) | hello RSS |\n",
        );
        s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        let none = MetricStats::default();
        for (name, x) in sc.iter() {
            let b = x.summary.get("bootstrap").unwrap_or(&none);
            let h = x.summary.get("hello").unwrap_or(&none);
            let m = |st: &Option<Stats>| median(st.as_ref());
            s.push_str(&format!(
                "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} KiB | {} KiB |\n",
                m(&b.first_response_ms),
                m(&b.event1_ms),
                m(&b.event1_own_ms),
                m(&b.event2_ms),
                m(&b.event2_own_ms),
                m(&b.event1_to_first_call_ms),
                m(&b.event2_to_first_call_ms),
                m(&h.init_ms),
                m(&b.init_ms),
                kib(b.ru_maxrss_kib.as_ref()),
                kib(h.ru_maxrss_kib.as_ref()),
            ));
        }
    }
    let over = r.budgets.iter().filter(|b| !b.ok).count();
    s.push_str(&format!(
        "\nBudgets (init ≤ {INIT_RATIO_BUDGET}× hello; peak RSS ≤ 25 MiB): {}.\n",
        if over == 0 {
            "all met".to_owned()
        } else {
            format!("**{over} exceeded**")
        }
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full result as the task writes it (compact), cut down: one scenario, two samples
    /// per binary, two variables of the environment, and a budget marked exceeded. Its
    /// figures are ones serde_json reads back exactly: without its `float_roundtrip` feature
    /// it may read a 17-digit decimal one ulp off (into a `Value` as into a struct), so a
    /// recorded result.json can come back with some last digits changed.
    const SAMPLE: &str = concat!(
        r#"{"init_only":{"runs":200,"ratio_median":1.251367196066296,"ratio_min":1.251831904130435,"#,
        r#""ratio_median_current_thread":1.5936796936045343,"ratio_min_current_thread":1.5704331970"#,
        r#"24216,"summary":{"bootstrap":{"n":200,"median":1.283909,"p90":1.367368,"min":1.228151,"m"#,
        r#"ax":1.920293},"hello":{"n":200,"median":1.026005,"p90":1.096905,"min":0.981083,"max":3.8"#,
        r#"78932},"hello-current-thread":{"n":200,"median":0.8056255,"p90":0.8481650000000001,"min""#,
        r#":0.782046,"max":1.0043369999999998}},"samples":{"bootstrap":[1.920293,1.444123],"hello":"#,
        r#"[1.178097,1.134871],"hello-current-thread":[0.991608,0.867513]}},"scenarios":{"in-sync":"#,
        r#"{"what":"PutKeyPolicy event (bare key id) on an in-sync us-west-2 replica","event":"even"#,
        r#"ts/put-key-policy-replica-id.json (key id rewritten)","expected":"in-sync","init_ratio_m"#,
        r#"edian":1.2549088075734618,"calls_per_event":{"event1":["kms:DescribeKey","kms:GetKeyPoli"#,
        r#"cy","cloudwatch:PutMetricData"],"event2":[]},"summary":{"bootstrap":{"init_ms":{"n":20,""#,
        r#"median":1.7627635,"p90":1.834546,"min":1.642228,"max":1.972411},"first_response_ms":{"n""#,
        r#":20,"median":21.8701115,"p90":23.340344,"min":19.836421,"max":23.722351999999997},"calls"#,
        r#"_during_init":{"n":20,"median":0.0,"p90":0.0,"min":0.0,"max":0.0},"event1_ms":{"n":20,"m"#,
        r#"edian":20.095396,"p90":21.540991,"min":17.980313000000002,"max":21.994707},"event1_emula"#,
        r#"tor_ms":{"n":20,"median":14.3655195,"p90":15.567606,"min":12.450288,"max":16.07775599999"#,
        r#"9997},"event1_own_ms":{"n":20,"median":5.7403785,"p90":5.919104999999998,"min":5.5300250"#,
        r#"00000002,"max":6.293391},"event1_to_first_call_ms":{"n":20,"median":4.3296244999999995,""#,
        r#"p90":4.477664,"min":4.194353,"max":4.572486},"event2_ms":{"n":20,"median":15.8213145,"p9"#,
        r#"0":17.545575,"min":14.618662,"max":39.019027},"event2_emulator_ms":{"n":20,"median":13.9"#,
        r#"32836,"p90":15.723378,"min":12.716127,"max":36.622744999999995},"event2_own_ms":{"n":20,"#,
        r#""median":1.8973070000000003,"p90":1.9708759999999987,"min":1.6977009999999968,"max":2.39"#,
        r#"62820000000065},"event2_to_first_call_ms":{"n":20,"median":0.4132005,"p90":0.440246,"min"#,
        r#"":0.369621,"max":0.48317},"ru_maxrss_kib":{"n":20,"median":9546.0,"p90":9612.0,"min":936"#,
        r#"8.0,"max":9764.0},"vm_hwm_kib":{"n":20,"median":9696.0,"p90":9752.0,"min":9512.0,"max":9"#,
        r#"844.0},"ru_maxrss_direct_kib":{"n":20,"median":32604.0,"p90":32604.0,"min":32604.0,"max""#,
        r#":32604.0}},"hello":{"init_ms":{"n":20,"median":1.4046944999999995,"p90":1.587908,"min":1"#,
        r#".192768,"max":1.641438},"first_response_ms":{"n":20,"median":1.711436,"p90":1.905441,"mi"#,
        r#"n":1.479516,"max":1.95833},"calls_during_init":{"n":20,"median":0.0,"p90":0.0,"min":0.0,"#,
        r#""max":0.0},"event1_ms":{"n":20,"median":0.2846885,"p90":0.300478,"min":0.253067,"max":0."#,
        r#"319697},"event1_emulator_ms":{"n":20,"median":0.0,"p90":0.0,"min":0.0,"max":0.0},"event1"#,
        r#"_own_ms":{"n":20,"median":0.2846885,"p90":0.300478,"min":0.253067,"max":0.319697},"event"#,
        r#"2_ms":{"n":20,"median":0.1980105,"p90":0.231154,"min":0.165166,"max":0.23405},"event2_em"#,
        r#"ulator_ms":{"n":20,"median":0.0,"p90":0.0,"min":0.0,"max":0.0},"event2_own_ms":{"n":20,""#,
        r#"median":0.1980105,"p90":0.231154,"min":0.165166,"max":0.23405},"ru_maxrss_kib":{"n":20,""#,
        r#"median":3180.0,"p90":3284.0,"min":3056.0,"max":3308.0},"vm_hwm_kib":{"n":20,"median":336"#,
        r#"8.0,"p90":3456.0,"min":3168.0,"max":3488.0},"ru_maxrss_direct_kib":{"n":20,"median":3260"#,
        r#"4.0,"p90":32604.0,"min":32604.0,"max":32604.0}}},"samples":{"bootstrap":{"calls_during_i"#,
        r#"nit":[0.0],"event1_emulator_ms":[12.450288],"event1_ms":[17.980313000000002],"event1_own"#,
        r#"_ms":[5.530025000000002],"event1_to_first_call_ms":[4.227342],"event2_emulator_ms":[13.1"#,
        r#"0101],"event2_ms":[15.033671],"event2_own_ms":[1.9326609999999995],"event2_to_first_call"#,
        r#"_ms":[0.392515],"first_response_ms":[19.836421],"init_ms":[1.833194],"ru_maxrss_direct_k"#,
        r#"ib":[32604.0],"ru_maxrss_kib":[9596.0],"vm_hwm_kib":[9744.0]},"hello":{"calls_during_ini"#,
        r#"t":[0.0],"event1_emulator_ms":[0.0],"event1_ms":[0.290633],"event1_own_ms":[0.290633],"e"#,
        r#"vent2_emulator_ms":[0.0],"event2_ms":[0.21458],"event2_own_ms":[0.21458],"first_response"#,
        r#"_ms":[1.95833],"init_ms":[1.641438],"ru_maxrss_direct_kib":[32604.0],"ru_maxrss_kib":[30"#,
        r#"56.0],"vm_hwm_kib":[3188.0]}}}},"info":{"when":"2026-12-07 18:29 UTC","commit":"ed25d64f"#,
        r#"2b8f+dirty","command":"cargo xtask bench-coldstart --runs 20 --init-runs 200","host":{"a"#,
        r#"rch":"x86_64","cpu":"AMD EPYC","cpus":2},"label":"","extra_env":{"RUST_LOG":"info"},"bin"#,
        r#"aries":{"bootstrap":{"path":"/root/.cache/kms-replica-guard/target/release/bootstrap","b"#,
        r#"ytes":9580800,"sha256":"1c2ac729a75ef1a78abaddd156b98867e4cd19106f9bd8f2c1defbe8f69e8093"#,
        r#""},"hello":{"path":"/root/.cache/kms-replica-guard/target/release/examples/hello_lambda""#,
        r#","bytes":1065000,"sha256":"d8218b3ec89622acc4ff0fbc158de39b2e2ba565fac6c7d56a6dd8ee3be07"#,
        r#"d4a"},"hello-current-thread":{"path":"/root/.cache/kms-replica-guard/target/release/exam"#,
        r#"ples/hello_lambda_current_thread","bytes":1038080,"sha256":"84f10d31958863f6b724773d5ed6"#,
        r#"efdadfc73b2214409860e9755fc7b39c9d89"}},"loadavg_before":"1.46 2.43 2.45","runtime_api":"#,
        r#""127.0.0.1:42265 (local, hyper)","emulator":"http://127.0.0.1:4581","emulator_proxy":"th"#,
        r#"e function's AWS_ENDPOINT_URL is the timestamping proxy of krg-testkit (http://127.0.0.1"#,
        r#":43879) in front of http://127.0.0.1:4581","runs":20,"warmup":1,"events_per_timed_proces"#,
        r#"s":2,"function_env":{"AWS_LAMBDA_FUNCTION_NAME":"kms-replica-guard","REMEDIATION_MODE":""#,
        r#"enforce"},"elapsed_s":7.1,"loadavg_after":"1.20 2.31 2.41"},"budgets":[{"scenario":"init"#,
        r#"","budget":"init <= 1.3x hello-world (init-only phase, medians)","value":"1.251x","ok":t"#,
        r#"rue},{"scenario":"in-sync","budget":"peak RSS for one event <= 25 MiB (max over runs)",""#,
        r#"value":"9764 KiB","ok":false}]}"#,
    );

    /// What the section of `SAMPLE` was before the results were typed.
    const SECTION: &str = concat!(
        "Last run: `cargo xtask bench-coldstart --runs 20 --init-runs 200`, 2026-12-07 18:29 UTC (commit ed25d64f2b8f+dirty; host x86_64, 2 CPUs; load average before 1.46 2.43 2.45, after 1.20 2.31 2.41).\n",
        "Binaries (host build): bootstrap 9,580,800 B, hello 1,065,000 B, hello current-thread 1,038,080 B.\n",
        "\n",
        "Init only, 200 starts per binary (ms):\n",
        "\n",
        "| binary | median | p90 | min | max |\n",
        "|---|---|---|---|---|\n",
        "| hello | 1.03 | 1.10 | 0.98 | 3.88 |\n",
        "| hello-current-thread | 0.81 | 0.85 | 0.78 | 1.00 |\n",
        "| bootstrap | 1.28 | 1.37 | 1.23 | 1.92 |\n",
        "\n",
        "**bootstrap / hello: 1.251×** (medians; budget ≤ 1.3×: met); like for like (bootstrap / hello current-thread): 1.594×.\n",
        "\n",
        "Scenarios, 20 cold starts per binary and scenario, medians (ms; own = latency − time waiting on the emulator):\n",
        "\n",
        "| scenario | start → response 1 | event 1 | event 1 own | event 2 | event 2 own | served → first AWS call (event 1 / 2) | init, hello / bootstrap (context) | peak RSS, bootstrap (max) | hello RSS |\n",
        "|---|---|---|---|---|---|---|---|---|---|\n",
        "| in-sync | 21.87 | 20.10 | 5.74 | 15.82 | 1.90 | 4.33 / 0.41 | 1.40 / 1.76 | 9,764 KiB | 3,308 KiB |\n",
        "\n",
        "Budgets (init ≤ 1.3× hello; peak RSS ≤ 25 MiB): **1 exceeded**.\n",
    );

    #[test]
    fn the_section_of_a_result_is_unchanged() {
        let r: ColdstartResult = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(section(&r), SECTION);
    }

    #[test]
    fn a_result_reads_and_writes_back_the_same() {
        let r: ColdstartResult = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), SAMPLE);
        // As the task writes it, and as it wrote it from a `serde_json::Value`.
        let v: Value = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(
            serde_json::to_string_pretty(&r).unwrap(),
            serde_json::to_string_pretty(&v).unwrap()
        );
    }

    #[test]
    fn statistics_use_the_nearest_rank() {
        let s = Stats::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(
            (s.n, s.median, s.p90, s.min, s.max),
            (5, 3.0, 5.0, 1.0, 5.0)
        );
        let s = Stats::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.median, 2.5);
        assert_eq!(s.p90, 4.0);
        assert_eq!(serde_json::to_string(&Stats::of(&[])).unwrap(), "{}");
    }

    #[test]
    fn responses_are_checked() {
        let one = Expect::One {
            arn: "arn:k".into(),
            action: "in-sync",
        };
        assert!(
            one.problem(&json!({"outcomes": [{"key_arn": "arn:k", "action": "in-sync"}]}))
                .is_none()
        );
        assert!(
            one.problem(&json!({"outcomes": [{"key_arn": "arn:k", "action": "remediated"}]}))
                .is_some()
        );
        assert!(one.problem(&json!({"outcomes": []})).is_some());
        let sweep = Expect::Sweep { in_sync: 10 };
        assert!(
            sweep
                .problem(&json!({"summary": {"in-sync": 10}, "outcomes": [], "errors": []}))
                .is_none()
        );
        assert!(sweep.problem(&json!({"summary": {"in-sync": 9}})).is_some());
    }
}
