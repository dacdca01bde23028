//! `sweep --regions R,R [--accounts A,B|organization --role-name NAME] [--apply]`: every
//! multi-Region replica in some Regions of the function's own account, or of the member
//! accounts given, with a progress bar, a table of what was not in sync, the summary (per
//! account when there are several) and the KMS calls made.

use std::time::Instant;

use console::style;
use krg_engine::key::Region;
use krg_engine::tenancy::Members;
use serde_json::json;

use super::output::{Bar, print_table};
use super::{CliError, exit_code};
use crate::config::Config;
use crate::wiring::Adapters;

/// Arguments of `sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Regions to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub regions: Vec<Region>,
    /// Rewrite drifted replicas (default: report only).
    #[arg(long)]
    pub apply: bool,
    /// ListKeys page size (default 1000, the largest KMS serves).
    #[arg(long, hide = true)]
    pub page_size: Option<i32>,
}

/// `sweep`.
pub async fn run(
    args: Args,
    adapters: Adapters,
    config: &Config,
    json: bool,
) -> Result<u8, CliError> {
    let kms = adapters.kms.clone();
    let findings = adapters.security_hub(config);
    let engine = adapters.engine(config);
    let started = Instant::now();
    let bar = Bar::new(json);
    let tenancy = &engine.settings().tenancy;
    let listed: Option<Vec<_>> = match tenancy.fleet.as_ref().map(|f| &f.members) {
        Some(Members::Listed(ids)) => Some(ids.iter().cloned().collect()),
        _ => None,
    };
    let (places, refused) = engine
        .places(listed.as_deref(), Some(&args.regions))
        .await?;
    let mut report = engine.sweep(&places, &bar).await;
    report.accounts_refused = refused;
    bar.finish();
    super::post_findings(findings, &report).await;
    let elapsed = started.elapsed().as_secs_f64();
    let calls = kms.call_counts();
    if json {
        let mut v = serde_json::to_value(&report).expect("a report serialises");
        v["kms_calls"] = json!(calls);
        v["elapsed_seconds"] = json!(elapsed);
        println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
    } else {
        print_table(&report);
        let summary = report
            .summary
            .iter()
            .flatten()
            .map(|(a, n)| format!("{} {n}", a.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let total: usize = report.summary.iter().flatten().map(|(_, n)| n).sum();
        let accounts: std::collections::BTreeSet<_> = places.iter().map(|p| &p.account).collect();
        for (account, counts) in &report.summary_by_account {
            let line = counts
                .iter()
                .map(|(a, n)| format!("{} {n}", a.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            println!("  account {account}: {line}");
        }
        for r in &report.accounts_refused {
            eprintln!(
                "{} account {}: {}",
                style("skipped:").yellow().bold(),
                r.account,
                r.why
            );
        }
        println!(
            "\nswept {total} replicas in {} account(s) x {} Region(s) in {elapsed:.1} s: {summary}",
            accounts.len(),
            args.regions.len()
        );
        let calls = calls
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!("KMS calls: {calls}");
        for e in &report.errors {
            eprintln!("{} {}", style("error:").red().bold(), e.0);
        }
    }
    Ok(exit_code(&report))
}
