//! `cargo xtask fuzz [TARGET...]`: fuzzes the event parser (`event`), the key policy
//! canonicaliser (`policy`) and the AWS Config rule invocation reader (`config_rule`) with
//! cargo-fuzz (libFuzzer), each for a bounded time. Fails when
//! a target crashes, and prints the input and the command that reproduces it.
//! `cargo xtask fuzz repro TARGET INPUT` runs one input through a target (a crash artifact,
//! a file under fuzz/regressions/, ...).
//!
//! Environment: `FUZZ_SECONDS` (time per target, default 60), `FUZZ_SANITIZER` (default
//! `none`, see [`DEFAULT_SANITIZER`]).
//!
//! Targets live in fuzz/fuzz_targets/ and depend on krg-policy and krg-engine only (never the
//! AWS SDK). The corpus each run grows is fuzz/corpus/TARGET, crashes land in
//! fuzz/artifacts/TARGET; inputs that once failed are kept in fuzz/regressions/TARGET and
//! replayed first on every run. Seeds are rebuilt on every run from the repository's own
//! files (events/, tests/hostile/, baselines/), never committed.
//!
//! Versions: the workspace's Cargo.lock is copied to fuzz/Cargo.lock before every build
//! (fuzz/Cargo.lock is git-ignored), so every crate shared with the product is fuzzed at the
//! product's exact version and the fuzz lock cannot go stale; fuzz/Cargo.toml pins the two
//! crates only the fuzz build has (libfuzzer-sys, arbitrary) exactly. cargo-fuzz itself is
//! installed, pinned, into .tools/.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::env;

/// Arguments of the task.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    repro: Option<Repro>,
    /// Targets to fuzz (default: every target).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    targets: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Repro {
    /// Run one input through a target.
    Repro {
        /// The fuzz target.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
        target: String,
        /// The input file.
        input: PathBuf,
    },
}

const CARGO_FUZZ_VERSION: &str = "0.13.2";
const TARGETS: [&str; 3] = ["event", "policy", "config_rule"];
const DEFAULT_SECONDS: u64 = 60;
/// Sanitizer: none, by measurement (BENCHMARKS.md, "Measurements behind decisions":
/// AddressSanitizer costs several times the executions). The crates have no unsafe code, so all
/// it could add is memory errors in dependencies' unsafe code; what these targets look for
/// (panics, failed invariants, integer overflow with -a, timeouts) is caught without it.
/// FUZZ_SANITIZER=address runs the slower, wider check.
const DEFAULT_SANITIZER: &str = "none";
/// Inputs up to 64 KiB: twice KMS's 32 KiB policy limit, so oversize policies are covered,
/// and more than any EventBridge event (256 KiB is the bus limit, CloudTrail KMS records are
/// a few KiB).
const MAX_LEN: u32 = 65536;
const RSS_LIMIT_MB: u32 = 2048;
/// Per-input time limit: a single input taking this long is reported like a crash.
const INPUT_TIMEOUT_S: u32 = 10;

/// Runs the task.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let root = env::root();
    let sanitizer = std::env::var("FUZZ_SANITIZER").unwrap_or_else(|_| DEFAULT_SANITIZER.into());
    let build_flags = vec![
        "--sanitizer".to_owned(),
        sanitizer,
        "--debug-assertions".to_owned(),
    ];
    install_cargo_fuzz(&root)?;
    sync_lock(&root)?;

    if let Some(Repro::Repro { target, input }) = args.repro {
        // cargo fuzz runs in the repository root; the input is named from here.
        let input = std::env::current_dir()?.join(input);
        let status = cargo_fuzz(&root)
            .arg("run")
            .args(&build_flags)
            .arg(&target)
            .arg(&input)
            .status()
            .context("starting cargo fuzz")?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed on {} ({status})",
                input.display()
            );
        }
        return Ok(());
    }

    let seconds: u64 = match std::env::var("FUZZ_SECONDS") {
        Ok(s) => s
            .parse()
            .with_context(|| format!("FUZZ_SECONDS={s} is not a number of seconds"))?,
        Err(_) => DEFAULT_SECONDS,
    };
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        args.targets
    };

    println!(
        "==> cargo fuzz build {} (stable toolchain, RUSTC_BOOTSTRAP=1)",
        build_flags.join(" ")
    );
    let start = Instant::now();
    for target in &targets {
        let status = cargo_fuzz(&root)
            .arg("build")
            .args(&build_flags)
            .arg(target)
            .status()
            .context("starting cargo fuzz")?;
        if !status.success() {
            bail!("cargo fuzz build {target} failed ({status})");
        }
    }
    println!("build: {} s", start.elapsed().as_secs());

    let mut failed = Vec::new();
    for target in &targets {
        if !run_target(&root, target, seconds, &build_flags)? {
            failed.push(target.as_str());
        }
    }
    if !failed.is_empty() {
        bail!("fuzzing found failures in: {}", failed.join(" "));
    }
    Ok(())
}

/// `cargo fuzz` on the stable toolchain with `RUSTC_BOOTSTRAP=1` (cargo-fuzz passes
/// nightly-only flags: -Zsanitizer, sanitizer coverage), from .tools/bin, with its own
/// target dir (fuzz/target): its builds use other flags than the workspace's, so they must
/// never share the workspace's target dir.
fn cargo_fuzz(root: &Path) -> Command {
    let mut cmd = cargo(root);
    cmd.arg("fuzz");
    cmd
}

fn cargo(root: &Path) -> Command {
    let mut dirs = vec![root.join(".tools/bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env(
            "PATH",
            std::env::join_paths(dirs).expect("PATH entries join"),
        )
        .env("RUSTUP_TOOLCHAIN", "stable")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

fn install_cargo_fuzz(root: &Path) -> anyhow::Result<()> {
    let have = Command::new(root.join(".tools/bin/cargo-fuzz"))
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if have != format!("cargo-fuzz {CARGO_FUZZ_VERSION}") {
        println!(
            "==> cargo install --locked --version {CARGO_FUZZ_VERSION} --root .tools cargo-fuzz"
        );
        let status = cargo(root)
            .args([
                "install",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
                "--root",
            ])
            .arg(root.join(".tools"))
            .arg("cargo-fuzz")
            .status()
            .context("starting cargo install")?;
        if !status.success() {
            bail!("cargo install cargo-fuzz {CARGO_FUZZ_VERSION} failed ({status})");
        }
    }
    Ok(())
}

/// The workspace's lock file becomes the fuzz workspace's: cargo keeps every version in it
/// that the fuzz crate shares, drops the rest and adds the fuzz-only crates (pinned in
/// fuzz/Cargo.toml).
fn sync_lock(root: &Path) -> anyhow::Result<()> {
    let (from, to) = (root.join("Cargo.lock"), root.join("fuzz/Cargo.lock"));
    fs::copy(&from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// fuzz/target/seeds/TARGET, rebuilt from the repository's own files.
fn seed_dir(root: &Path, target: &str) -> anyhow::Result<PathBuf> {
    let dir = root.join("fuzz/target/seeds").join(target);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    let files_in = |sub: &str, json_only: bool| -> anyhow::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(root.join(sub))
            .with_context(|| format!("reading {sub}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && (!json_only || p.extension().is_some_and(|e| e == "json")))
            .collect();
        files.sort();
        Ok(files)
    };
    let name_of = |p: &Path| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    match target {
        "event" => {
            for f in files_in("events", true)?
                .into_iter()
                .chain(files_in("tests/hostile/events", false)?)
            {
                fs::copy(&f, dir.join(name_of(&f)))?;
            }
        }
        "policy" => {
            let mut rendered = Vec::new();
            for f in files_in("baselines", true)?
                .into_iter()
                .chain(files_in("tests/hostile/baselines", true)?)
            {
                let parent = f.parent().map(name_of).unwrap_or_default();
                let name = format!("{parent}-{}", name_of(&f));
                let bytes = fs::read(&f)?;
                fs::write(dir.join(&name), &bytes)?;
                // The same template rendered, as the policy a key actually carries.
                let text = String::from_utf8_lossy(&bytes)
                    .replace("{{Partition}}", "aws")
                    .replace("{{AccountId}}", env::ACCOUNT)
                    .replace("{{Region}}", "us-west-2");
                let rendered_name = format!("rendered-{name}");
                fs::write(dir.join(&rendered_name), text.as_bytes())?;
                rendered.push((rendered_name, text));
            }
            // Pairs (NUL-separated) for the live-versus-desired comparison.
            let example = rendered
                .iter()
                .find(|(n, _)| n == "rendered-baselines-example.json")
                .map(|(_, t)| t.clone())
                .context("baselines/example.json is a seed")?;
            for (name, text) in &rendered {
                fs::write(
                    dir.join(format!("pair-{name}")),
                    format!("{example}\0{text}"),
                )?;
            }
        }
        "config_rule" => {
            for f in files_in("events", true)?
                .into_iter()
                .filter(|f| name_of(f).starts_with("config-rule-"))
                .chain(files_in("tests/hostile/config", false)?)
            {
                fs::copy(&f, dir.join(name_of(&f)))?;
            }
        }
        other => bail!("no seeds for unknown target {other}"),
    }
    Ok(dir)
}

/// Fuzzes one target for `seconds`; prints its summary line. `false` if it failed.
fn run_target(root: &Path, target: &str, seconds: u64, flags: &[String]) -> anyhow::Result<bool> {
    let seeds = seed_dir(root, target)?;
    let corpus = root.join("fuzz/corpus").join(target);
    fs::create_dir_all(&corpus)?;
    fs::create_dir_all(root.join("fuzz/artifacts").join(target))?;
    let regressions = root.join("fuzz/regressions").join(target);
    let log_path = root.join(format!("fuzz/target/fuzz-{target}.log"));
    let log = fs::File::create(&log_path)?;
    println!(
        "==> cargo fuzz run {} {target} ({seconds} s)",
        flags.join(" ")
    );
    let start = Instant::now();
    let mut cmd = cargo_fuzz(root);
    cmd.arg("run")
        .args(flags)
        .arg(target)
        .arg(&corpus)
        .arg(&seeds);
    if regressions.is_dir() {
        cmd.arg(&regressions);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={MAX_LEN}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(format!("-dict={}", root.join("fuzz/json.dict").display()))
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(log);
    let status = cmd.status().context("starting cargo fuzz")?;
    let elapsed = start.elapsed().as_secs();
    let text = String::from_utf8_lossy(&fs::read(&log_path)?).into_owned();
    if status.success() {
        println!("{}", summary(target, &text, elapsed, "ok"));
        return Ok(true);
    }
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("{}", lines[lines.len().saturating_sub(60)..].join("\n"));
    println!("{}", summary(target, &text, elapsed, "FAILED"));
    let artifact = lines
        .iter()
        .rev()
        .filter_map(|l| l.split("Test unit written to ").nth(1))
        .find_map(|rest| rest.split_whitespace().next());
    let log_rel = log_path.strip_prefix(root).unwrap_or(&log_path).display();
    match artifact {
        Some(a) => {
            let a = a.strip_prefix("./").unwrap_or(a);
            let root_prefix = format!("{}/", root.display());
            let a = a.strip_prefix(root_prefix.as_str()).unwrap_or(a);
            let flags = flags.join(" ");
            eprintln!("error: fuzz target {target} failed; input: {a} (full log: {log_rel})");
            eprintln!("reproduce: cargo xtask fuzz repro {target} {a}");
            eprintln!(
                "       or: RUSTUP_TOOLCHAIN=stable RUSTC_BOOTSTRAP=1 PATH=\"$PWD/.tools/bin:$PATH\" \
                 cargo fuzz run {flags} {target} {a}"
            );
            eprintln!(
                "minimise:  RUSTUP_TOOLCHAIN=stable RUSTC_BOOTSTRAP=1 PATH=\"$PWD/.tools/bin:$PATH\" \
                 cargo fuzz tmin {flags} {target} {a}"
            );
        }
        None => eprintln!(
            "error: fuzz target {target} failed ({status}) without writing an input; see {log_rel}"
        ),
    }
    Ok(false)
}

/// `fuzz TARGET STATUS: RUNS runs in S s, E exec/s, cov C, ft F, corpus N, peak rss M MB`,
/// from libFuzzer's status lines and final stats.
fn summary(target: &str, log: &str, seconds: u64, status: &str) -> String {
    let (mut cov, mut ft, mut corp) = ("", "", "");
    let (mut runs, mut eps, mut rss) = ("", "", "");
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with('#')
            && line[1..].starts_with(|c: char| c.is_ascii_digit())
            && line.contains(" cov: ")
        {
            for pair in words.windows(2) {
                match pair[0] {
                    "cov:" => cov = pair[1],
                    "ft:" => ft = pair[1],
                    "corp:" => corp = pair[1],
                    _ => {}
                }
            }
        }
        let stat = |name: &str| {
            line.strip_prefix(name)
                .and_then(|rest| rest.split_whitespace().next())
        };
        if let Some(v) = stat("stat::number_of_executed_units:") {
            runs = v;
        }
        if let Some(v) = stat("stat::average_exec_per_sec:") {
            eps = v;
        }
        if let Some(v) = stat("stat::peak_rss_mb:") {
            rss = v;
        }
    }
    format!(
        "fuzz {target:<7} {status}: {runs} runs in {seconds} s, {eps} exec/s, cov {cov}, ft {ft}, \
         corpus {corp}, peak rss {rss} MB"
    )
}
