//! `check KEY` (reconcile one key in dry-run and print its outcome) and `diff KEY` (the
//! statement-level diff between its live policy and its baseline).

use console::style;
use krg_engine::key::KeyArn;

use super::output::{explanation, paint, print_report};
use super::{CliError, exit_code};
use crate::config::Config;
use crate::wiring::Adapters;

/// Arguments of `check` and `diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key ARN (a replica, or a primary to check all its replicas when mirroring).
    key: KeyArn,
}

/// `check`.
pub async fn check(
    args: Args,
    adapters: Adapters,
    config: &Config,
    json: bool,
) -> Result<u8, CliError> {
    let findings = adapters.security_hub(config);
    let report = adapters.engine(config).check(&args.key).await;
    print_report(&report, json, true);
    super::post_findings(findings, &report).await;
    Ok(exit_code(&report))
}

/// `diff`.
pub async fn diff(
    args: Args,
    adapters: Adapters,
    config: &Config,
    json: bool,
) -> Result<u8, CliError> {
    let report = adapters.engine(config).check(&args.key).await;
    if json {
        print_report(&report, true, true);
    } else {
        for o in &report.outcomes {
            match &o.diff {
                Some(d) => {
                    println!("{}", style(&o.key_arn).bold());
                    for line in explanation(o) {
                        println!("{line}");
                    }
                    println!("{}", paint(d));
                }
                None => println!(
                    "{} {}: {}",
                    style(&o.key_arn).bold(),
                    o.action().as_str(),
                    o.reason().as_deref().unwrap_or("no drift")
                ),
            }
        }
    }
    Ok(exit_code(&report))
}
