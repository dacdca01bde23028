//! `cargo xtask serve`: the functions (`bootstrap` and `detector`, dev profile) under
//! `cargo lambda watch` on 127.0.0.1, with an environment file, until stopped. The runner the
//! demo and the end-to-end run use ([`crate::demo::kit::Watch`]), for other harnesses (the
//! alarms check in `infra/tests/`): they start it, wait for its port, POST invocations to
//! `/2015-03-31/functions/<binary>/invocations`, and stop it with SIGTERM or SIGINT, which
//! stops the watcher and the function with it.

use std::path::PathBuf;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

use crate::demo::kit::Watch;

#[derive(Debug, Parser)]
pub struct Args {
    /// The functions' environment (`NAME=value` lines, as `cargo lambda watch --env-file`).
    #[arg(long)]
    env_file: PathBuf,
    /// Port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Where the watcher's output and the functions' logs go.
    #[arg(long)]
    log: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let watch = Watch::start(&args.env_file, &args.log, args.port).await?;
    println!(
        "serving on 127.0.0.1:{} (log: {}); SIGTERM or SIGINT stops it",
        args.port,
        watch.log().display()
    );
    tokio::select! {
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
    // Dropping the watch stops the watcher's process group (the function is in it).
    drop(watch);
    Ok(())
}
