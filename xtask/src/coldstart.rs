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
use serde_json::{Map, Value, json};
use sha2::Digest;

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
        let r: Value = serde_json::from_str(&text)?;
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
    let mut info = json!({
        "when": bench_sweep::utc_now(),
        "commit": bench_sweep::git_commit(),
        "command": command_line(&args),
        "host": host(),
        "label": args.label,
        "extra_env": args.extra_env.iter().cloned().collect::<BTreeMap<_, _>>(),
        "binaries": {},
        "loadavg_before": bench_sweep::loadavg(),
    });
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
        info["binaries"][*name] = json!({"path": path, "bytes": bytes.len(), "sha256": sha});
    }
    let timeout = Duration::from_secs(args.timeout);
    let mut result = json!({});

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
        let mut summary = Map::new();
        let mut all = Map::new();
        for ((name, _), s) in bins.iter().zip(&samples) {
            summary.insert((*name).to_owned(), Stats::of(s).to_json());
            all.insert((*name).to_owned(), json!(s));
        }
        let med = |n: &str| summary[n]["median"].as_f64().unwrap_or(f64::NAN);
        let min = |n: &str| summary[n]["min"].as_f64().unwrap_or(f64::NAN);
        result["init_only"] = json!({
            "runs": args.init_runs,
            "ratio_median": med("bootstrap") / med("hello"),
            "ratio_min": min("bootstrap") / min("hello"),
            "ratio_median_current_thread": med("bootstrap") / med("hello-current-thread"),
            "ratio_min_current_thread": min("bootstrap") / min("hello-current-thread"),
            "summary": summary,
            "samples": all,
        });
        print_init(&result["init_only"]);
    }

    if !args.init_only {
        let scenarios = scenarios_phase(&args, &bins, &out, timeout, &mut info).await?;
        result["scenarios"] = scenarios;
    }
    info["loadavg_after"] = json!(bench_sweep::loadavg());
    result["info"] = info;
    result["budgets"] = budgets(&result);
    print_budgets(&result["budgets"]);
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
    let over: Vec<&Value> = result["budgets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["ok"] != json!(true))
        .collect();
    if args.check_budgets && !over.is_empty() {
        bail!("{} budget(s) exceeded", over.len());
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

fn host() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    json!({
        "arch": std::env::consts::ARCH,
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
    })
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

const METRICS: [&str; 14] = [
    "init_ms",
    "first_response_ms",
    "calls_during_init",
    "event1_ms",
    "event1_emulator_ms",
    "event1_own_ms",
    "event1_to_first_call_ms",
    "event2_ms",
    "event2_emulator_ms",
    "event2_own_ms",
    "event2_to_first_call_ms",
    "ru_maxrss_kib",
    "vm_hwm_kib",
    "ru_maxrss_direct_kib",
];

type Samples = BTreeMap<&'static str, Vec<f64>>;

fn record_timed(s: &mut Samples, r: &Launched, calls_seen: &mut Map<String, Value>) {
    let mut put = |k: &'static str, v: f64| s.entry(k).or_default().push(v);
    put("init_ms", r.init_ms);
    put("first_response_ms", r.first_response_ms);
    put("calls_during_init", r.calls_during_init as f64);
    put("ru_maxrss_direct_kib", r.ru_maxrss_kib as f64);
    for (k, e) in r.events.iter().take(2).enumerate() {
        let [lat, emu, own, first] = if k == 0 {
            [
                "event1_ms",
                "event1_emulator_ms",
                "event1_own_ms",
                "event1_to_first_call_ms",
            ]
        } else {
            [
                "event2_ms",
                "event2_emulator_ms",
                "event2_own_ms",
                "event2_to_first_call_ms",
            ]
        };
        put(lat, e.latency_ms);
        put(emu, e.emulator_ms);
        put(own, e.own_ms);
        if let Some(f) = e.to_first_call_ms {
            put(first, f);
        }
        calls_seen
            .entry(format!("event{}", k + 1))
            .or_insert_with(|| json!(e.calls));
    }
}

async fn scenarios_phase(
    args: &Args,
    bins: &BTreeMap<&str, PathBuf>,
    out: &Path,
    timeout: Duration,
    info: &mut Value,
) -> anyhow::Result<Value> {
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
    info["runtime_api"] = json!(format!("127.0.0.1:{} (local, hyper)", api.port));
    info["emulator"] = json!(endpoint);
    info["emulator_proxy"] = json!(format!(
        "the function's AWS_ENDPOINT_URL is the timestamping proxy of krg-testkit ({}) in front of {endpoint}",
        proxy.endpoint
    ));
    info["runs"] = json!(args.runs);
    info["warmup"] = json!(args.warmup);
    info["events_per_timed_process"] = json!(args.events);
    info["function_env"] = Value::Object(
        env.iter()
            .filter(|(k, _)| !["AWS_SECRET_ACCESS_KEY", "PATH", "HOME"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect(),
    );

    let started = Instant::now();
    let mut results = Map::new();
    for sc in &scenarios {
        println!("==> {}: {}", sc.name, sc.what);
        let mut samples: BTreeMap<&str, Samples> =
            BINARIES.iter().map(|b| (*b, Samples::new())).collect();
        let mut calls_seen = Map::new();
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
                                &mut Map::new()
                            };
                            record_timed(s, &r, seen);
                        }
                        Mode::Memory => {
                            s.entry("ru_maxrss_kib")
                                .or_default()
                                .push(r.ru_maxrss_kib as f64);
                            if let Some(h) = r.vm_hwm_kib {
                                s.entry("vm_hwm_kib").or_default().push(h as f64);
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
        let summary: Map<String, Value> = samples
            .iter()
            .map(|(b, s)| {
                let m: Map<String, Value> = METRICS
                    .iter()
                    .filter_map(|k| s.get(k).map(|v| ((*k).to_owned(), Stats::of(v).to_json())))
                    .collect();
                ((*b).to_owned(), Value::Object(m))
            })
            .collect();
        let med = |b: &str| summary[b]["init_ms"]["median"].as_f64().unwrap_or(f64::NAN);
        let r = json!({
            "what": sc.what,
            "event": format!("events/{} (key id rewritten)", sc.event_file),
            "expected": sc.expect.describe(),
            "init_ratio_median": med("bootstrap") / med("hello"),
            "calls_per_event": calls_seen,
            "summary": summary,
            "samples": samples,
        });
        print_scenario(sc.name, &r);
        results.insert(sc.name.to_owned(), r);
    }
    info["elapsed_s"] = json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    Ok(Value::Object(results))
}

// ---------------------------------------------------------------------------- statistics and output

struct Stats {
    n: usize,
    median: f64,
    p90: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Self {
                n,
                median: f64::NAN,
                p90: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
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

    fn to_json(&self) -> Value {
        if self.n == 0 {
            return json!({});
        }
        json!({"n": self.n, "median": self.median, "p90": self.p90, "min": self.min, "max": self.max})
    }
}

fn kib(v: &Value) -> String {
    v.as_f64()
        .map_or("?".to_owned(), |k| report::thousands(k.round() as u64))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn row(label: &str, st: &Value, scale: f64, unit: &str) -> String {
    if st.get("median").is_none() {
        return format!("    {label:<40} {:>8}", "-");
    }
    let cells: Vec<String> = ["median", "p90", "min", "max"]
        .iter()
        .map(|k| format!("{:8.2}", f(&st[*k]) / scale))
        .collect();
    format!("    {label:<40} {}  {unit}", cells.join(" "))
}

fn print_init(io: &Value) {
    println!(
        "\nInit only (start -> first poll at a bare listener), {} starts per binary, random order:",
        io["runs"]
    );
    println!(
        "    {:<40} {:>8} {:>8} {:>8} {:>8}",
        "", "median", "p90", "min", "max"
    );
    for (k, st) in io["summary"].as_object().into_iter().flatten() {
        println!("{}", row(k, st, 1.0, "ms"));
    }
    println!(
        "  ratio bootstrap/hello: {:.2}x (medians), {:.2}x (minima)",
        f(&io["ratio_median"]),
        f(&io["ratio_min"])
    );
    println!(
        "  like for like, bootstrap/hello-current-thread: {:.2}x (medians), {:.2}x (minima)",
        f(&io["ratio_median_current_thread"]),
        f(&io["ratio_min_current_thread"])
    );
}

fn print_scenario(name: &str, r: &Value) {
    println!("\n[{name}] {}", r["what"].as_str().unwrap_or(""));
    for (ev, ops) in r["calls_per_event"].as_object().into_iter().flatten() {
        let ops: Vec<&str> = ops
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
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
    for b in BINARIES {
        let s = &r["summary"][b];
        println!("  {b}");
        println!(
            "{}",
            row("init: start -> first poll", &s["init_ms"], 1.0, "ms")
        );
        println!(
            "{}",
            row("start -> response 1", &s["first_response_ms"], 1.0, "ms")
        );
        for k in 1..=2 {
            if s.get(format!("event{k}_ms")).is_none() {
                continue;
            }
            println!(
                "{}",
                row(
                    &format!("event {k}: served -> response"),
                    &s[format!("event{k}_ms")],
                    1.0,
                    "ms"
                )
            );
            if b == "bootstrap" {
                println!(
                    "{}",
                    row(
                        "  waiting on the emulator",
                        &s[format!("event{k}_emulator_ms")],
                        1.0,
                        "ms"
                    )
                );
                println!(
                    "{}",
                    row(
                        "  own time (latency - waiting)",
                        &s[format!("event{k}_own_ms")],
                        1.0,
                        "ms"
                    )
                );
                println!(
                    "{}",
                    row(
                        "  served -> first AWS call",
                        &s[format!("event{k}_to_first_call_ms")],
                        1.0,
                        "ms"
                    )
                );
            }
        }
        println!(
            "{}",
            row(
                "peak RSS, 1 event: ru_maxrss (wait4)",
                &s["ru_maxrss_kib"],
                1024.0,
                "MiB"
            )
        );
        println!(
            "{}",
            row(
                "  cross-check: VmHWM (/proc) at poll 2",
                &s["vm_hwm_kib"],
                1024.0,
                "MiB"
            )
        );
    }
    println!(
        "  init ratio bootstrap/hello (context): {:.2}x (medians)",
        f(&r["init_ratio_median"])
    );
}

/// The init and peak RSS rows of the figures table, from whichever phases ran.
fn record_rows(result: &Value) -> anyhow::Result<()> {
    let command = result["info"]["command"].as_str().unwrap_or(NAME);
    if let Some(io) = result.get("init_only") {
        let median = |b: &str| f(&io["summary"][b]["median"]);
        report::record(
            "init",
            &format!(
                "{:.2}× ({:.2} ms / {:.2} ms)",
                f(&io["ratio_median"]),
                median("bootstrap"),
                median("hello")
            ),
            command,
        )?;
    }
    let peak = result["scenarios"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, r)| (name, f(&r["summary"]["bootstrap"]["ru_maxrss_kib"]["max"])))
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

fn budgets(result: &Value) -> Value {
    let mut out = Vec::new();
    if let Some(io) = result.get("init_only") {
        let ratio = f(&io["ratio_median"]);
        out.push(json!({
            "scenario": "init",
            "budget": format!("init <= {INIT_RATIO_BUDGET}x hello-world (init-only phase, medians)"),
            "value": format!("{ratio:.3}x"),
            "ok": ratio <= INIT_RATIO_BUDGET,
        }));
    }
    for (name, r) in result["scenarios"].as_object().into_iter().flatten() {
        let rss = f(&r["summary"]["bootstrap"]["ru_maxrss_kib"]["max"]);
        out.push(json!({
            "scenario": name,
            "budget": "peak RSS for one event <= 25 MiB (max over runs)",
            "value": format!("{rss:.0} KiB"),
            "ok": rss <= RSS_BUDGET_KIB,
        }));
    }
    Value::Array(out)
}

fn print_budgets(b: &Value) {
    println!("\nBudgets:");
    for v in b.as_array().into_iter().flatten() {
        println!(
            "  {} {:<8} {}: {}",
            if v["ok"] == json!(true) {
                "ok  "
            } else {
                "OVER"
            },
            v["scenario"].as_str().unwrap_or(""),
            v["budget"].as_str().unwrap_or(""),
            v["value"].as_str().unwrap_or("")
        );
    }
}

/// The BENCHMARKS.md section of a result.
fn section(r: &Value) -> String {
    let info = &r["info"];
    let mut s = format!(
        "Last run: `{}`, {} (commit {}; host {}, {} CPUs; load average before {}, after {}).\n",
        info["command"].as_str().unwrap_or("?"),
        info["when"].as_str().unwrap_or("?"),
        info["commit"].as_str().unwrap_or("?"),
        info["host"]["arch"].as_str().unwrap_or("?"),
        info["host"]["cpus"],
        info["loadavg_before"].as_str().unwrap_or("?"),
        info["loadavg_after"].as_str().unwrap_or("?"),
    );
    let size = |b: &str| {
        info["binaries"][b]["bytes"]
            .as_u64()
            .map_or("?".into(), report::thousands)
    };
    s.push_str(&format!(
        "Binaries (host build): bootstrap {} B, hello {} B, hello current-thread {} B.\n",
        size("bootstrap"),
        size("hello"),
        size("hello-current-thread")
    ));
    if let Some(io) = r.get("init_only") {
        s.push_str(&format!(
            "\nInit only, {} starts per binary (ms):\n\n| binary | median | p90 | min | max |\n|---|---|---|---|---|\n",
            io["runs"]
        ));
        for b in ["hello", "hello-current-thread", "bootstrap"] {
            let st = &io["summary"][b];
            s.push_str(&format!(
                "| {b} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                f(&st["median"]),
                f(&st["p90"]),
                f(&st["min"]),
                f(&st["max"])
            ));
        }
        let ratio = f(&io["ratio_median"]);
        s.push_str(&format!(
            "\n**bootstrap / hello: {ratio:.3}×** (medians; budget ≤ {INIT_RATIO_BUDGET}×: {}); like for like \
             (bootstrap / hello current-thread): {:.3}×.\n",
            if ratio <= INIT_RATIO_BUDGET { "met" } else { "**exceeded**" },
            f(&io["ratio_median_current_thread"])
        ));
    }
    if let Some(sc) = r["scenarios"].as_object() {
        s.push_str(&format!(
            "\nScenarios, {} cold starts per binary and scenario, medians (ms; own = latency − time waiting on the emulator):\n\n",
            info["runs"]
        ));
        s.push_str(
            "| scenario | start → response 1 | event 1 | event 1 own | event 2 | event 2 own | served → first AWS call (event 1 / 2) | init, hello / bootstrap (context) | peak RSS, bootstrap (max) | hello RSS |\n",
        );
        s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for (name, x) in sc {
            let b = &x["summary"]["bootstrap"];
            let h = &x["summary"]["hello"];
            let m = |v: &Value, k: &str| f(&v[k]["median"]);
            s.push_str(&format!(
                "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} KiB | {} KiB |\n",
                m(b, "first_response_ms"),
                m(b, "event1_ms"),
                m(b, "event1_own_ms"),
                m(b, "event2_ms"),
                m(b, "event2_own_ms"),
                m(b, "event1_to_first_call_ms"),
                m(b, "event2_to_first_call_ms"),
                m(h, "init_ms"),
                m(b, "init_ms"),
                kib(&b["ru_maxrss_kib"]["max"]),
                kib(&h["ru_maxrss_kib"]["max"]),
            ));
        }
    }
    let over = r["budgets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["ok"] != json!(true))
        .count();
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
    /// per binary, two variables of the environment, and a budget marked exceeded.
    const SAMPLE: &str = concat!(
        r#"{"init_only":{"runs":200,"ratio_median":1.251367196066296,"ratio_min":1.2518319041304353"#,
        r#","ratio_median_current_thread":1.5936796936045345,"ratio_min_current_thread":1.570433197"#,
        r#"024216,"summary":{"bootstrap":{"n":200,"median":1.283909,"p90":1.3673680000000001,"min":"#,
        r#"1.228151,"max":1.920293},"hello":{"n":200,"median":1.026005,"p90":1.096905,"min":0.98108"#,
        r#"3,"max":3.878932},"hello-current-thread":{"n":200,"median":0.8056255,"p90":0.84816500000"#,
        r#"00001,"min":0.782046,"max":1.0043369999999998}},"samples":{"bootstrap":[1.920293,1.44412"#,
        r#"3],"hello":[1.178097,1.134871],"hello-current-thread":[0.9916079999999999,0.867513]}},"s"#,
        r#"cenarios":{"in-sync":{"what":"PutKeyPolicy event (bare key id) on an in-sync us-west-2 r"#,
        r#"eplica","event":"events/put-key-policy-replica-id.json (key id rewritten)","expected":"i"#,
        r#"n-sync","init_ratio_median":1.2549088075734618,"calls_per_event":{"event1":["kms:Describ"#,
        r#"eKey","kms:GetKeyPolicy","cloudwatch:PutMetricData"],"event2":[]},"summary":{"bootstrap""#,
        r#":{"init_ms":{"n":20,"median":1.7627635,"p90":1.834546,"min":1.642228,"max":1.972411},"fi"#,
        r#"rst_response_ms":{"n":20,"median":21.8701115,"p90":23.340343999999998,"min":19.836421,"m"#,
        r#"ax":23.722351999999997},"calls_during_init":{"n":20,"median":0.0,"p90":0.0,"min":0.0,"ma"#,
        r#"x":0.0},"event1_ms":{"n":20,"median":20.095396,"p90":21.540990999999998,"min":17.9803130"#,
        r#"00000002,"max":21.994707},"event1_emulator_ms":{"n":20,"median":14.365519500000001,"p90""#,
        r#":15.567606,"min":12.450288,"max":16.077755999999997},"event1_own_ms":{"n":20,"median":5."#,
        r#"7403785,"p90":5.919104999999998,"min":5.530025000000002,"max":6.293391},"event1_to_first"#,
        r#"_call_ms":{"n":20,"median":4.3296244999999995,"p90":4.477664,"min":4.1943529999999996,"m"#,
        r#"ax":4.572486},"event2_ms":{"n":20,"median":15.8213145,"p90":17.545575,"min":14.618661999"#,
        r#"999999,"max":39.019027},"event2_emulator_ms":{"n":20,"median":13.932836,"p90":15.723378,"#,
        r#""min":12.716127,"max":36.622744999999995},"event2_own_ms":{"n":20,"median":1.89730700000"#,
        r#"00005,"p90":1.9708759999999987,"min":1.6977009999999968,"max":2.3962820000000065},"event"#,
        r#"2_to_first_call_ms":{"n":20,"median":0.41320049999999997,"p90":0.44024599999999997,"min""#,
        r#":0.369621,"max":0.48317},"ru_maxrss_kib":{"n":20,"median":9546.0,"p90":9612.0,"min":9368"#,
        r#".0,"max":9764.0},"vm_hwm_kib":{"n":20,"median":9696.0,"p90":9752.0,"min":9512.0,"max":98"#,
        r#"44.0},"ru_maxrss_direct_kib":{"n":20,"median":32604.0,"p90":32604.0,"min":32604.0,"max":"#,
        r#"32604.0}},"hello":{"init_ms":{"n":20,"median":1.4046944999999997,"p90":1.587908,"min":1."#,
        r#"192768,"max":1.641438},"first_response_ms":{"n":20,"median":1.711436,"p90":1.905441,"min"#,
        r#"":1.479516,"max":1.95833},"calls_during_init":{"n":20,"median":0.0,"p90":0.0,"min":0.0,""#,
        r#"max":0.0},"event1_ms":{"n":20,"median":0.2846885,"p90":0.300478,"min":0.253067,"max":0.3"#,
        r#"19697},"event1_emulator_ms":{"n":20,"median":0.0,"p90":0.0,"min":0.0,"max":0.0},"event1_"#,
        r#"own_ms":{"n":20,"median":0.2846885,"p90":0.300478,"min":0.253067,"max":0.319697},"event2"#,
        r#"_ms":{"n":20,"median":0.1980105,"p90":0.231154,"min":0.165166,"max":0.23405},"event2_emu"#,
        r#"lator_ms":{"n":20,"median":0.0,"p90":0.0,"min":0.0,"max":0.0},"event2_own_ms":{"n":20,"m"#,
        r#"edian":0.1980105,"p90":0.231154,"min":0.165166,"max":0.23405},"ru_maxrss_kib":{"n":20,"m"#,
        r#"edian":3180.0,"p90":3284.0,"min":3056.0,"max":3308.0},"vm_hwm_kib":{"n":20,"median":3368"#,
        r#".0,"p90":3456.0,"min":3168.0,"max":3488.0},"ru_maxrss_direct_kib":{"n":20,"median":32604"#,
        r#".0,"p90":32604.0,"min":32604.0,"max":32604.0}}},"samples":{"bootstrap":{"calls_during_in"#,
        r#"it":[0.0],"event1_emulator_ms":[12.450288],"event1_ms":[17.980313000000002],"event1_own_"#,
        r#"ms":[5.530025000000002],"event1_to_first_call_ms":[4.227342],"event2_emulator_ms":[13.10"#,
        r#"101],"event2_ms":[15.033671],"event2_own_ms":[1.9326609999999995],"event2_to_first_call_"#,
        r#"ms":[0.392515],"first_response_ms":[19.836421],"init_ms":[1.833194],"ru_maxrss_direct_ki"#,
        r#"b":[32604.0],"ru_maxrss_kib":[9596.0],"vm_hwm_kib":[9744.0]},"hello":{"calls_during_init"#,
        r#"":[0.0],"event1_emulator_ms":[0.0],"event1_ms":[0.290633],"event1_own_ms":[0.290633],"ev"#,
        r#"ent2_emulator_ms":[0.0],"event2_ms":[0.21458],"event2_own_ms":[0.21458],"first_response_"#,
        r#"ms":[1.95833],"init_ms":[1.641438],"ru_maxrss_direct_kib":[32604.0],"ru_maxrss_kib":[305"#,
        r#"6.0],"vm_hwm_kib":[3188.0]}}}},"info":{"when":"2026-12-07 18:29 UTC","commit":"ed25d64f2"#,
        r#"b8f+dirty","command":"cargo xtask bench-coldstart --runs 20 --init-runs 200","host":{"ar"#,
        r#"ch":"x86_64","cpu":"AMD EPYC","cpus":2},"label":"","extra_env":{"RUST_LOG":"info"},"bina"#,
        r#"ries":{"bootstrap":{"path":"/root/.cache/kms-replica-guard/target/release/bootstrap","by"#,
        r#"tes":9580800,"sha256":"1c2ac729a75ef1a78abaddd156b98867e4cd19106f9bd8f2c1defbe8f69e8093""#,
        r#"},"hello":{"path":"/root/.cache/kms-replica-guard/target/release/examples/hello_lambda","#,
        r#""bytes":1065000,"sha256":"d8218b3ec89622acc4ff0fbc158de39b2e2ba565fac6c7d56a6dd8ee3be07d"#,
        r#"4a"},"hello-current-thread":{"path":"/root/.cache/kms-replica-guard/target/release/examp"#,
        r#"les/hello_lambda_current_thread","bytes":1038080,"sha256":"84f10d31958863f6b724773d5ed6e"#,
        r#"fdadfc73b2214409860e9755fc7b39c9d89"}},"loadavg_before":"1.46 2.43 2.45","runtime_api":""#,
        r#"127.0.0.1:42265 (local, hyper)","emulator":"http://127.0.0.1:4581","emulator_proxy":"the"#,
        r#" function's AWS_ENDPOINT_URL is the timestamping proxy of krg-testkit (http://127.0.0.1:"#,
        r#"43879) in front of http://127.0.0.1:4581","runs":20,"warmup":1,"events_per_timed_process"#,
        r#"":2,"function_env":{"AWS_LAMBDA_FUNCTION_NAME":"kms-replica-guard","REMEDIATION_MODE":"e"#,
        r#"nforce"},"elapsed_s":7.1,"loadavg_after":"1.20 2.31 2.41"},"budgets":[{"scenario":"init""#,
        r#","budget":"init <= 1.3x hello-world (init-only phase, medians)","value":"1.251x","ok":tr"#,
        r#"ue},{"scenario":"in-sync","budget":"peak RSS for one event <= 25 MiB (max over runs)","v"#,
        r#"alue":"9764 KiB","ok":false}]}"#,
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
        let r: Value = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(section(&r), SECTION);
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
        assert_eq!(Stats::of(&[]).to_json(), json!({}));
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
