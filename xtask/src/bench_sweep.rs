//! `cargo xtask bench-sweep` (`make bench-sweep`): a sweep of a seeded fleet, measured.
//!
//! 1. A fresh emulator on its own port (`--port`, default 4599; `cargo xtask emulator
//!    fresh`), stopped at the end.
//! 2. `cargo build --release --bin kms-replica-guard --example emulator_ceiling`.
//! 3. [`crate::seed`] in-process: `--primaries` (default 1000) multi-Region primaries in
//!    us-east-1, each with replicas in us-west-2 and eu-west-1 (40 % in sync, 30 %
//!    reformatted-equivalent, 25 % drifted, 5 % drifted and excluded), and 9 single-Region
//!    keys per primary.
//! 4. The release CLI sweeps the three Regions, first as a dry-run and then with `--apply`
//!    (`--baseline file:baselines/example.json sweep --regions ... --output json`), its peak
//!    RSS read by `/usr/bin/time -f %M`.
//! 5. The emulator's ceiling, measured the way the sweep calls it: the same SDK client and
//!    adapter, the same concurrency, no client-side rate limit
//!    (`examples/emulator_ceiling.rs`, `--ceiling-seconds` per operation).
//!
//! It fails unless each sweep found exactly the drifted replicas (the dry-run reports
//! `drift-detected`, `--apply` reports `remediated`, for exactly the manifest's
//! `expected.remediate`, and `skipped` for exactly `expected.skip_excluded`). The report
//! (replicas/s, KMS calls per replica by operation, the sweep's call rate as a fraction of
//! the ceiling, peak RSS) goes to stdout and `target/bench/bench-sweep/report.json`, with
//! the CLI's output, logs and the manifest beside it; then the task writes its section of
//! `BENCHMARKS.md` ([`crate::report`]). `--check` only re-renders that section from the last
//! report and fails if the document differs; `--render` writes it from there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, ensure};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{env, report, seed};

const NAME: &str = "bench-sweep";
const REGIONS: &str = "us-east-1,us-west-2,eu-west-1";
const OPERATIONS: [&str; 5] = [
    "DescribeKey",
    "GetKeyPolicy",
    "ListKeys",
    "ListResourceTags",
    "PutKeyPolicy",
];

/// `report.json`: what the task writes and `--check` renders. Fields in the order of the file.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    when: String,
    commit: String,
    command: String,
    loadavg_before: String,
    loadavg_after: String,
    primaries: usize,
    replicas: usize,
    single_region_keys: usize,
    seed: SeedFigures,
    /// Requests per second by operation, in the order of `emulator_ceiling`.
    emulator_ceiling_rps: InOrder<f64>,
    /// `examples/emulator_ceiling.rs`'s output, whole.
    emulator_ceiling: InOrder<Ceiling>,
    #[serde(rename = "dry-run")]
    dry_run: SweepFigures,
    apply: SweepFigures,
}

/// The seeding, from [`seed::seed`]'s summary, and its concurrency.
#[derive(Debug, Serialize, Deserialize)]
struct SeedFigures {
    elapsed_s: f64,
    /// `null` when no time was measured.
    calls_per_s: Option<f64>,
    workers: usize,
}

/// The figures [`SeedFigures`] takes from [`seed::seed`]'s summary.
#[derive(Deserialize)]
struct SeedTimes {
    elapsed_s: f64,
    calls_per_s: Option<f64>,
}

/// One operation of `examples/emulator_ceiling.rs`'s output.
#[derive(Debug, Serialize, Deserialize)]
struct Ceiling {
    requests: u64,
    errors: u64,
    seconds: f64,
    rps: f64,
    concurrency: usize,
}

/// One sweep ([`judge`]), and its rate against the emulator's ceiling.
#[derive(Debug, Serialize, Deserialize)]
struct SweepFigures {
    exit_code: i32,
    replicas_swept: u64,
    seconds: f64,
    replicas_per_s: f64,
    /// The CLI's summary, replicas by action, in its order.
    summary: InOrder<u64>,
    found_exactly_the_drifted: bool,
    peak_rss_mib: f64,
    /// The CLI's KMS calls by operation.
    kms_calls: BTreeMap<String, u64>,
    /// The operations called, per replica swept.
    kms_calls_per_replica: BTreeMap<String, f64>,
    kms_calls_per_s: f64,
    /// Set once the ceiling is measured, after both sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fraction_of_emulator_ceiling: Option<f64>,
}

/// What [`judge`] reads of the release CLI's `sweep --output json`.
#[derive(Deserialize)]
struct CliSweep {
    summary: Option<InOrder<u64>>,
    #[serde(default)]
    outcomes: Vec<CliOutcome>,
    kms_calls: Option<BTreeMap<String, u64>>,
    elapsed_seconds: Option<f64>,
    /// The output as printed, for the error that quotes it.
    #[serde(skip)]
    text: String,
}

#[derive(Deserialize)]
struct CliOutcome {
    key_arn: String,
    action: String,
}

/// What `cargo metadata` says that [`target_dir`] reads.
#[derive(Deserialize)]
struct Metadata {
    target_directory: Option<PathBuf>,
}

/// Arguments of `cargo xtask bench-sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Multi-Region primaries to seed (two replicas and nine single-Region keys each).
    #[arg(long, env = "BENCH_PRIMARIES", default_value_t = 1000)]
    primaries: usize,
    /// Port of the benchmark's own emulator.
    #[arg(long, env = "BENCH_PORT", default_value_t = 4599)]
    port: u16,
    /// Requests in flight when measuring the emulator's ceiling (the CLI's default concurrency).
    #[arg(long, default_value_t = 16)]
    ceiling_concurrency: usize,
    /// Seconds per operation when measuring the emulator's ceiling.
    #[arg(long, default_value_t = 10)]
    ceiling_seconds: u64,
    /// Do not run: re-render the BENCHMARKS.md section from the last report and fail if
    /// the document differs.
    #[arg(long)]
    check: bool,
    /// Do not run: write the BENCHMARKS.md section from the last report (after a change of its
    /// format).
    #[arg(long, conflicts_with = "check")]
    render: bool,
    /// Run, but leave BENCHMARKS.md alone.
    #[arg(long)]
    no_write: bool,
}

/// Runs `cargo xtask bench-sweep`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let out = report::out_dir(NAME);
    let report_path = out.join("report.json");
    if args.check || args.render {
        let r: Report = read_json(&report_path)
            .context("no report of an earlier run: run `cargo xtask bench-sweep` first")?;
        return report::update(&report::benchmarks_md(), NAME, &section(&r), args.check);
    }
    std::fs::create_dir_all(&out)?;
    let endpoint = format!("http://127.0.0.1:{}", args.port);
    ensure!(
        ![4566, 4577].contains(&args.port),
        "port {} is the shared emulator's; the benchmark starts (and wipes) its own",
        args.port
    );

    println!("==> cargo build --release --bin kms-replica-guard --example emulator_ceiling");
    cargo(&[
        "build",
        "--release",
        "--quiet",
        "--bin",
        "kms-replica-guard",
        "--example",
        "emulator_ceiling",
    ])?;
    let target = target_dir()?;
    let cli = target.join("release/kms-replica-guard");
    let ceiling_bin = target.join("release/examples/emulator_ceiling");

    println!("==> fresh emulator on 127.0.0.1:{}", args.port);
    let _emulator = Emulator::fresh(args.port)?;
    let load_before = loadavg();

    let n_single = args.primaries * 9;
    println!(
        "==> seeding {} primaries (+ {} replicas and {n_single} single-Region keys)",
        args.primaries,
        args.primaries * 2
    );
    let mut seed_args = seed::Args::with_primaries(args.primaries);
    seed_args.endpoint = Some(endpoint.clone());
    seed_args.manifest = Some(out.join("manifest.json"));
    let (manifest, seeded) = seed::seed(&seed_args).await?;
    std::fs::write(
        out.join("seed.json"),
        serde_json::to_string_pretty(&seeded)?,
    )?;
    // The seeder's summary stays a `Value` (crate::seed); this reads its two timings.
    let times = SeedTimes::deserialize(&seeded).context("the seeder's summary")?;
    println!(
        "    {} s, {} calls/s",
        as_json(&times.elapsed_s),
        as_json(&times.calls_per_s)
    );

    let mut runs = Vec::with_capacity(2);
    let mut ok = true;
    for (name, extra, want) in [
        ("dry-run", None, "drift-detected"),
        ("apply", Some("--apply"), "remediated"),
    ] {
        println!(
            "==> sweep{}",
            extra.map_or(String::new(), |e| format!(" {e}"))
        );
        let (result, rss_kib, code) = sweep(&cli, &endpoint, &out, name, extra)?;
        println!("    exit code {code}, peak RSS {rss_kib} KiB");
        let r = judge(&manifest, &result, want, rss_kib, code)?;
        ok &= r.found_exactly_the_drifted;
        runs.push(r);
    }

    println!(
        "==> emulator ceiling: the same Rust SDK client, {} in flight, no rate limit ({} s per operation)",
        args.ceiling_concurrency, args.ceiling_seconds
    );
    let key = manifest
        .replicas
        .first()
        .map(|r| r.arn.clone())
        .ok_or_else(|| anyhow!("nothing was seeded"))?;
    let output = Command::new(&ceiling_bin)
        .args([
            key,
            args.ceiling_concurrency.to_string(),
            args.ceiling_seconds.to_string(),
        ])
        .envs(function_vars(&endpoint))
        .output()
        .with_context(|| format!("running {}", ceiling_bin.display()))?;
    ensure!(
        output.status.success(),
        "emulator_ceiling failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ceiling: InOrder<Ceiling> =
        serde_json::from_slice(&output.stdout).context("emulator_ceiling's output")?;
    let ceiling_rps: InOrder<f64> = ceiling.iter().map(|(op, c)| (op.clone(), c.rps)).collect();
    let get_key_policy_rps = *ceiling_rps
        .get("GetKeyPolicy")
        .ok_or_else(|| anyhow!("no GetKeyPolicy ceiling"))?;
    for r in &mut runs {
        r.fraction_of_emulator_ceiling = Some(round(r.kms_calls_per_s / get_key_policy_rps, 2));
    }
    let [dry_run, apply]: [SweepFigures; 2] = runs
        .try_into()
        .map_err(|_| anyhow!("two sweeps were run"))?;

    let report = Report {
        when: utc_now(),
        commit: git_commit(),
        command: format!("cargo xtask bench-sweep --primaries {}", args.primaries),
        loadavg_before: load_before,
        loadavg_after: loadavg(),
        primaries: manifest.primaries.len(),
        replicas: manifest.replicas.len(),
        single_region_keys: manifest.single_region_keys.values().map(Vec::len).sum(),
        seed: SeedFigures {
            elapsed_s: times.elapsed_s,
            calls_per_s: times.calls_per_s,
            workers: seed_args.workers,
        },
        emulator_ceiling_rps: ceiling_rps,
        emulator_ceiling: ceiling,
        dry_run,
        apply,
    };
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("report: {}", report_path.display());
    ensure!(
        ok,
        "the sweep did not find exactly the drifted replicas (see {})",
        report_path.display()
    );
    if !args.no_write {
        report::update(&report::benchmarks_md(), NAME, &section(&report), false)?;
        report::record("sweep", &figure(&report), &report.command)?;
    }
    Ok(())
}

/// The sweep's row of the figures table.
fn figure(r: &Report) -> String {
    let (d, a) = (&r.dry_run, &r.apply);
    format!(
        "dry-run {} s ({} replicas/s; {} KMS calls/s, {}× the emulator's GetKeyPolicy ceiling); apply {} s ({} replicas/s)",
        as_json(&d.seconds),
        as_json(&d.replicas_per_s),
        as_json(&d.kms_calls_per_s),
        as_json(&d.fraction_of_emulator_ceiling),
        as_json(&a.seconds),
        as_json(&a.replicas_per_s),
    )
}

/// One sweep of the three Regions by the release CLI: its JSON output, peak RSS (KiB) and
/// exit code.
fn sweep(
    cli: &Path,
    endpoint: &str,
    out: &Path,
    name: &str,
    extra: Option<&str>,
) -> anyhow::Result<(CliSweep, u64, i32)> {
    let (json_path, log_path, rss_path) = (
        out.join(format!("{name}.json")),
        out.join(format!("{name}.log")),
        out.join(format!("{name}.rss-kb")),
    );
    // /usr/bin/time forks the CLI itself, so ru_maxrss is the CLI's own (a child started
    // from this process would also count this process's image before exec).
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_path)
        .arg(cli)
        .args([
            "--baseline",
            &format!("file:{}", seed::BASELINE),
            "sweep",
            "--regions",
            REGIONS,
            "--output",
            "json",
        ])
        .args(extra)
        .current_dir(env::root())
        .envs(function_vars(endpoint))
        .stdout(std::fs::File::create(&json_path)?)
        .stderr(std::fs::File::create(&log_path)?);
    let status = cmd.status().context("running /usr/bin/time (GNU time)")?;
    let code = status.code().unwrap_or(-1);
    let no_json = || {
        format!(
            "the sweep (exit code {code}) printed no JSON; its log: {}",
            log_path.display()
        )
    };
    let text = std::fs::read_to_string(&json_path)
        .with_context(|| format!("reading {}", json_path.display()))
        .with_context(no_json)?;
    let mut result: CliSweep = parse_json(&text, &json_path).with_context(no_json)?;
    result.text = text;
    let rss = std::fs::read_to_string(&rss_path)?
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no peak RSS in {}", rss_path.display()))?;
    Ok((result, rss, code))
}

/// The figures of one sweep, and whether it found exactly what the manifest says.
fn judge(
    manifest: &seed::Manifest,
    r: &CliSweep,
    want_action: &str,
    rss_kib: u64,
    code: i32,
) -> anyhow::Result<SweepFigures> {
    let summary = r.summary.as_ref().ok_or_else(|| {
        // The document as it was quoted when it was read as a `serde_json::Value`: compact.
        let compact = serde_json::from_str::<serde_json::Value>(&r.text)
            .map_or_else(|_| r.text.clone(), |v| v.to_string());
        anyhow!("the sweep's JSON has no summary: {compact}")
    })?;
    let swept: u64 = summary.iter().map(|(_, n)| n).sum();
    let arns = |action: &str| {
        let mut v: Vec<String> = r
            .outcomes
            .iter()
            .filter(|o| o.action == action)
            .map(|o| o.key_arn.clone())
            .collect();
        v.sort();
        v
    };
    let found = arns(want_action);
    let skipped = arns("skipped");
    let exact = found == manifest.expected.remediate && skipped == manifest.expected.skip_excluded;
    if !exact {
        eprintln!(
            "    expected {} {want_action} and {} skipped, found {} and {}",
            manifest.expected.remediate.len(),
            manifest.expected.skip_excluded.len(),
            found.len(),
            skipped.len()
        );
    }
    let calls = r
        .kms_calls
        .as_ref()
        .ok_or_else(|| anyhow!("the sweep's JSON has no kms_calls"))?;
    let total: u64 = calls.values().sum();
    let secs = r
        .elapsed_seconds
        .ok_or_else(|| anyhow!("the sweep's JSON has no elapsed_seconds"))?;
    ensure!(swept > 0 && secs > 0.0, "the sweep swept nothing");
    let per_replica = calls
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(op, n)| (op.clone(), round(*n as f64 / swept as f64, 3)))
        .collect();
    Ok(SweepFigures {
        exit_code: code,
        replicas_swept: swept,
        seconds: round(secs, 2),
        replicas_per_s: round(swept as f64 / secs, 1),
        summary: summary.clone(),
        found_exactly_the_drifted: exact,
        peak_rss_mib: round(rss_kib as f64 / 1024.0, 1),
        kms_calls: calls.clone(),
        kms_calls_per_replica: per_replica,
        kms_calls_per_s: round(total as f64 / secs, 1),
        fraction_of_emulator_ceiling: None,
    })
}

/// The BENCHMARKS.md section of a report.
fn section(r: &Report) -> String {
    let n = |v: usize| report::thousands(v as u64);
    let mut s = String::new();
    s.push_str(&format!(
        "Last run: `{}`, {} (commit {}; load average before {}, after {}). {} primaries, {} \
         replicas, {} single-Region keys, seeded in {} s ({} calls/s, {} in flight).\n\n",
        r.command,
        r.when,
        r.commit,
        r.loadavg_before,
        r.loadavg_after,
        n(r.primaries),
        n(r.replicas),
        n(r.single_region_keys),
        as_json(&r.seed.elapsed_s),
        as_json(&r.seed.calls_per_s),
        r.seed.workers,
    ));
    s.push_str(
        "| sweep | replicas | seconds | replicas/s | KMS calls/s | of the ceiling | peak RSS | found exactly the drifted |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    let runs = [(&r.dry_run, "dry-run"), (&r.apply, "`--apply`")];
    for (x, label) in runs {
        s.push_str(&format!(
            "| {label} | {} | {} | {} | {} | {} | {} MiB | {} |\n",
            report::thousands(x.replicas_swept),
            as_json(&x.seconds),
            as_json(&x.replicas_per_s),
            as_json(&x.kms_calls_per_s),
            as_json(&x.fraction_of_emulator_ceiling),
            as_json(&x.peak_rss_mib),
            if x.found_exactly_the_drifted {
                "yes"
            } else {
                "**no**"
            },
        ));
    }
    let (get_key_policy, describe_key) = (
        r.emulator_ceiling.get("GetKeyPolicy"),
        r.emulator_ceiling.get("DescribeKey"),
    );
    s.push_str(&format!(
        "\nEmulator ceiling (`examples/emulator_ceiling.rs`, {} in flight, {} s per operation): \
         GetKeyPolicy {} req/s, DescribeKey {} req/s.\n\n",
        as_json(&get_key_policy.map(|c| c.concurrency)),
        get_key_policy.map_or(0.0, |c| c.seconds.round()),
        as_json(&get_key_policy.map(|c| c.rps)),
        as_json(&describe_key.map(|c| c.rps)),
    ));
    s.push_str("KMS calls per replica, by operation:\n\n| | ");
    s.push_str(&OPERATIONS.join(" | "));
    s.push_str(" |\n|---|");
    s.push_str(&"---|".repeat(OPERATIONS.len()));
    s.push('\n');
    for (x, label) in runs {
        let cells: Vec<String> = OPERATIONS
            .iter()
            .map(|op| {
                x.kms_calls_per_replica
                    .get(*op)
                    .map_or("0".to_owned(), as_json)
            })
            .collect();
        s.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    s
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_json(&text, path)
}

fn parse_json<T: DeserializeOwned>(text: &str, path: &Path) -> anyhow::Result<T> {
    serde_json::from_str(text).with_context(|| format!("parsing {}", path.display()))
}

// ---------------------------------------------------------------------------- shared by the benches

/// The emulator variables for a child process, pointed at `endpoint`.
pub fn function_vars(endpoint: &str) -> Vec<(&'static str, String)> {
    env::emulator_vars()
        .into_iter()
        .map(|(k, v)| {
            if k == "AWS_ENDPOINT_URL" {
                (k, endpoint.to_owned())
            } else {
                (k, v)
            }
        })
        .collect()
}

/// `cargo ARGS` in the repository root; fails if cargo does.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(env::root())
        .status()
        .context("running cargo")?;
    ensure!(status.success(), "cargo {} failed", args.join(" "));
    Ok(())
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or the workspace's `target/`).
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env::root())
        .output()
        .context("running cargo metadata")?;
    ensure!(out.status.success(), "cargo metadata failed");
    let m: Metadata = serde_json::from_slice(&out.stdout)?;
    m.target_directory
        .ok_or_else(|| anyhow!("cargo metadata: no target_directory"))
}

/// A number (or `null`) as JSON writes it, `1.0` included: how the report's figures read
/// in the section and the figures table.
pub fn as_json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A JSON object kept in the order it was written (a `BTreeMap` would sort it): the CLI's
/// summary is in the order of the engine's actions, the emulator ceiling in the order it was
/// measured.
pub type InOrder<V> = indexmap::IndexMap<String, V>;

/// A fresh emulator of the benchmark's own on `port`, stopped when dropped. Started and
/// stopped by `cargo xtask emulator fresh|stop` (this very binary) with `LOCALSTACK_PORT`.
pub struct Emulator(u16);

fn emulator_task(action: &str, port: u16) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe().context("locating the xtask binary")?);
    cmd.args(["emulator", action])
        .env("LOCALSTACK_PORT", port.to_string())
        .env_remove("AWS_ENDPOINT_URL")
        .current_dir(env::root());
    Ok(cmd)
}

impl Emulator {
    /// Stops any emulator this project runs on `port`, forgets its state, starts one.
    pub fn fresh(port: u16) -> anyhow::Result<Self> {
        let status = emulator_task("fresh", port)?
            .status()
            .context("running cargo xtask emulator fresh")?;
        ensure!(
            status.success(),
            "the emulator did not start on port {port}"
        );
        Ok(Self(port))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Ok(mut cmd) = emulator_task("stop", self.0) {
            let _ = cmd.stdout(std::process::Stdio::null()).status();
        }
    }
}

/// The short commit of the work tree, `+dirty` with uncommitted changes.
pub fn git_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env::root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{commit}+dirty")
    } else {
        commit
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Now, UTC, to the minute.
pub fn utc_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as the task writes it (compact): the figures of the run in BENCHMARKS.md, but
    /// for the seeding's rate (`null`: no time measured) and the apply's verdict.
    const SAMPLE: &str = concat!(
        r#"{"when":"2026-12-02 06:39 UTC","commit":"80d913de1bc9+dirty","command":"cargo xtask benc"#,
        r#"h-sweep --primaries 1000","loadavg_before":"0.93 2.40 2.31","loadavg_after":"3.56 3.07 2"#,
        r#".58","primaries":1000,"replicas":2000,"single_region_keys":9000,"seed":{"elapsed_s":52.4"#,
        r#"7,"calls_per_s":null,"workers":16},"emulator_ceiling_rps":{"GetKeyPolicy":211.2,"Describ"#,
        r#"eKey":177.7},"emulator_ceiling":{"GetKeyPolicy":{"requests":2113,"errors":0,"seconds":10"#,
        r#".004370651,"rps":211.2,"concurrency":16},"DescribeKey":{"requests":1778,"errors":0,"seco"#,
        r#"nds":10.002581238,"rps":177.7,"concurrency":16}},"dry-run":{"exit_code":2,"replicas_swep"#,
        r#"t":2000,"seconds":16.62,"replicas_per_s":120.3,"summary":{"in-sync":1400,"drift-detected"#,
        r#"":500,"skipped":100},"found_exactly_the_drifted":true,"peak_rss_mib":13.9,"kms_calls":{""#,
        r#"DescribeKey":1600,"GetKeyPolicy":2000,"ListKeys":120,"ListResourceTags":600,"PutKeyPolic"#,
        r#"y":0},"kms_calls_per_replica":{"DescribeKey":0.8,"GetKeyPolicy":1.0,"ListKeys":0.06,"Lis"#,
        r#"tResourceTags":0.3},"kms_calls_per_s":259.9,"fraction_of_emulator_ceiling":1.23},"apply""#,
        r#":{"exit_code":0,"replicas_swept":2000,"seconds":24.02,"replicas_per_s":83.3,"summary":{""#,
        r#"remediated":500,"in-sync":1400,"skipped":100},"found_exactly_the_drifted":false,"peak_rs"#,
        r#"s_mib":15.4,"kms_calls":{"DescribeKey":1600,"GetKeyPolicy":2500,"ListKeys":120,"ListReso"#,
        r#"urceTags":600,"PutKeyPolicy":500},"kms_calls_per_replica":{"DescribeKey":0.8,"GetKeyPoli"#,
        r#"cy":1.25,"ListKeys":0.06,"ListResourceTags":0.3,"PutKeyPolicy":0.25},"kms_calls_per_s":2"#,
        r#"21.5,"fraction_of_emulator_ceiling":1.05}}"#,
    );

    /// What the section of `SAMPLE` was before the report was typed.
    const SECTION: &str = concat!(
        "Last run: `cargo xtask bench-sweep --primaries 1000`, 2026-12-02 06:39 UTC (commit 80d913de1bc9+dirty; load average before 0.93 2.40 2.31, after 3.56 3.07 2.58). 1,000 primaries, 2,000 replicas, 9,000 single-Region keys, seeded in 52.47 s (null calls/s, 16 in flight).\n",
        "\n",
        "| sweep | replicas | seconds | replicas/s | KMS calls/s | of the ceiling | peak RSS | found exactly the drifted |\n",
        "|---|---|---|---|---|---|---|---|\n",
        "| dry-run | 2,000 | 16.62 | 120.3 | 259.9 | 1.23 | 13.9 MiB | yes |\n",
        "| `--apply` | 2,000 | 24.02 | 83.3 | 221.5 | 1.05 | 15.4 MiB | **no** |\n",
        "\n",
        "Emulator ceiling (`examples/emulator_ceiling.rs`, 16 in flight, 10 s per operation): GetKeyPolicy 211.2 req/s, DescribeKey 177.7 req/s.\n",
        "\n",
        "KMS calls per replica, by operation:\n",
        "\n",
        "| | DescribeKey | GetKeyPolicy | ListKeys | ListResourceTags | PutKeyPolicy |\n",
        "|---|---|---|---|---|---|\n",
        "| dry-run | 0.8 | 1.0 | 0.06 | 0.3 | 0 |\n",
        "| `--apply` | 0.8 | 1.25 | 0.06 | 0.3 | 0.25 |\n",
    );

    #[test]
    fn the_section_of_a_full_report_is_unchanged() {
        let r: Report = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(section(&r), SECTION);
    }

    #[test]
    fn a_report_reads_and_writes_back_the_same() {
        let r: Report = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), SAMPLE);
        // As the task writes it, and as it wrote it from a `serde_json::Value`.
        let v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(
            serde_json::to_string_pretty(&r).unwrap(),
            serde_json::to_string_pretty(&v).unwrap()
        );
        assert_eq!(
            r.apply.summary.keys().collect::<Vec<_>>(),
            ["remediated", "in-sync", "skipped"]
        );
    }

    #[test]
    fn the_section_renders_a_report() {
        let mut r: Report = serde_json::from_str(SAMPLE).unwrap();
        // Whole numbers read as JSON writes them.
        r.dry_run.kms_calls_per_s = 388.0;
        r.emulator_ceiling[0].rps = 240.0;
        let s = section(&r);
        assert!(
            s.contains("| dry-run | 2,000 | 16.62 | 120.3 | 388.0 | 1.23 | 13.9 MiB | yes |"),
            "{s}"
        );
        assert!(
            s.contains("| dry-run | 0.8 | 1.0 | 0.06 | 0.3 | 0 |"),
            "{s}"
        );
        assert!(s.contains("GetKeyPolicy 240.0 req/s"), "{s}");
        assert!(figure(&r).contains("; 388.0 KMS calls/s, 1.23×"));
    }
}
