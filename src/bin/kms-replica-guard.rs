//! The operator CLI binary: parse arguments, set up logging, run.

use clap::Parser;
use kms_replica_guard::cli::{Cli, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kms_replica_guard::telemetry::init_cli();
    run(Cli::parse()).await
}
