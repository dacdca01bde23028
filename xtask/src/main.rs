//! `cargo xtask NAME`: every developer task of kms-replica-guard, in Rust, reusing the
//! project's own crates (the rust-analyzer convention). The Makefile's targets are one-line
//! calls of these; `cargo xtask --help` lists them.
//!
//! - [`env`]: the one set of emulator facts (endpoint, account, credentials).
//! - [`setup`]: the project venv with the pinned emulator and cargo-lambda.
//! - [`emulator`]: LocalStack on 127.0.0.1 (start, stop, fresh, status), and beside it
//!   [`moto`]'s server for Security Hub and CloudTrail.
//! - [`demo`]: the main job end to end on the emulator; [`e2e`]: the same, asserted.
//! - [`fuzz`]: cargo-fuzz on the event parser and the policy canonicaliser, bounded.
//! - [`seed`]: a fleet of keys on the emulator; [`bench_sweep`]: a sweep of it, measured.
//! - [`bench_scale`]: the guard at organisation scale on the KMS simulator of the test kit
//!   (one account's 10,000 replicas, 1,000 accounts through the work queue, an event storm).
//! - [`coldstart`]: cold start and peak RSS of the function against a hello world.
//! - [`docs`]: the configuration and alarm tables of the book and the stacks' contract, from
//!   the settings declared in the code, the hub stack's alarms and dashboard declared in
//!   [`alarms`] and [`dashboard`], its EventBridge rules in [`rules`], the stacks' outputs in
//!   [`outputs`], the functions' deployment facts in [`function`] and the remediator role's own
//!   statements in [`iam`].
//! - [`report`]: BENCHMARKS.md, the table of current figures and the sections the
//!   benchmarks write (figures in one place); `bench-report --check` keeps the table declared.
//! - [`heap`]: the task's heap, counted (a benchmark's memory by stage).

mod alarms;
mod bench_scale;
mod bench_sweep;
mod coldstart;
mod dashboard;
mod demo;
mod docs;
mod e2e;
mod emulator;
mod env;
mod function;
mod fuzz;
mod heap;
mod iam;
mod moto;
mod outputs;
mod report;
mod resources;
mod rules;
mod seed;
mod serve;
mod setup;

use clap::{Parser, Subcommand};

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

/// Developer tasks of kms-replica-guard.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Create .venv with the pinned emulator and cargo-lambda (idempotent).
    Setup(setup::Args),
    /// Start, stop or inspect the local emulator.
    Emulator(emulator::Args),
    /// Heal a default-policy and a hand-drifted replica on the emulator, showing each step.
    Demo(demo::Args),
    /// The function under cargo lambda watch, driven with the sample events, asserted.
    E2e(e2e::Args),
    /// The functions under cargo lambda watch with an environment file, until stopped.
    Serve(serve::Args),
    /// Fuzz the event parser and the policy canonicaliser for a bounded time.
    Fuzz(fuzz::Args),
    /// Create a fleet of multi-Region keys on the emulator.
    Seed(seed::Args),
    /// Seed a fresh emulator and measure a sweep of the fleet.
    BenchSweep(bench_sweep::Args),
    /// The guard at organisation scale on the KMS simulator: sweeps, the work queue, a storm.
    BenchScale(bench_scale::Args),
    /// Cold start and peak RSS of the function against a hello-world binary.
    BenchColdstart(coldstart::Args),
    /// The table of current figures in BENCHMARKS.md: check it, or write a row from a result.
    BenchReport(report::Args),
    /// The generated parts of the book and infra/contract.json: write them, or --check.
    Docs(docs::Args),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup(a) => setup::run(a).await,
        Task::Emulator(a) => emulator::run(a).await,
        Task::Demo(a) => demo::run(a).await,
        Task::E2e(a) => e2e::run(a).await,
        Task::Serve(a) => serve::run(a).await,
        Task::Fuzz(a) => fuzz::run(a).await,
        Task::Seed(a) => seed::run(a).await,
        Task::BenchSweep(a) => bench_sweep::run(a).await,
        Task::BenchScale(a) => bench_scale::run(a).await,
        Task::BenchColdstart(a) => coldstart::run(a).await,
        Task::BenchReport(a) => report::run(a),
        Task::Docs(a) => docs::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
