//! The operator CLI: the same engine as the Lambda, driven from a terminal or a script.
//! Dry-run unless `--apply`; exit codes scripts can rely on (see [`EXIT_CODES`]).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use console::style;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::aws::backups::{Backups, S3Backups, parse_backup};
use crate::aws::clients::{kms_clients, load_sdk_config};
use crate::aws::kms::Kms;
use crate::aws::remote::Remote;
use crate::config::Config;
use crate::core::key::{KeyArn, Region};
use crate::core::outcome::{Action, Outcome, Report};
use crate::core::policy::equivalent;
use crate::reconcile::{Progress, Reconciler};

/// Documented exit codes.
pub const EXIT_CODES: &str = "Exit codes:
  0  in sync (or everything drifted was fixed; a restore is done or not needed; the baseline is valid)
  1  drift found and left in place (dry-run, or a key left alone by the flap guard)
  2  an error: a key failed, the baseline is invalid, a call failed, or bad arguments";

/// Check and heal the key policies of KMS multi-Region replica keys.
///
/// Reads the same configuration as the Lambda function (environment variables; the flags
/// below override them). Nothing is written unless `--apply` is given.
#[derive(Debug, Parser)]
#[command(name = "kms-replica-guard", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Baseline: `primary`, `file:PATH`, `ssm:NAME`, `s3://BUCKET/KEY` or a JSON document.
    #[arg(long, env = "BASELINE_SOURCE", global = true)]
    baseline: Option<String>,
    /// The remediator's role ARN, which the lockout check keeps able to manage policies.
    #[arg(long, env = "REMEDIATOR_ROLE_ARN", global = true)]
    remediator_role: Option<String>,
    /// Keys carrying this tag key are left alone (`off`: no exclusion by tag).
    #[arg(long, env = "EXCLUDE_TAG", global = true)]
    exclude_tag: Option<String>,
    /// S3 bucket for backups of every policy before it is overwritten (and `restore latest`).
    #[arg(long, env = "BACKUP_BUCKET", global = true)]
    backup_bucket: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile one key in dry-run and print its outcome.
    Check {
        /// The key (a replica, or a primary to check all its replicas when mirroring).
        key: String,
    },
    /// Show the statement-level diff between a key's live policy and its baseline.
    Diff {
        /// The key.
        key: String,
    },
    /// Check every multi-Region replica in some Regions; fix them with --apply.
    Sweep {
        /// Regions to sweep, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        regions: Vec<String>,
        /// Rewrite drifted replicas (default: report only).
        #[arg(long)]
        apply: bool,
        /// Replicas checked at once per Region.
        #[arg(long, env = "CONCURRENCY")]
        concurrency: Option<usize>,
        /// ListKeys page size (the service default is 100).
        #[arg(long, hide = true)]
        page_size: Option<i32>,
    },
    /// Render and validate the baseline without touching any key.
    ValidateBaseline {
        /// Render it for this key (needed to check a `primary` baseline).
        #[arg(long)]
        key: Option<String>,
    },
    /// Put a backed-up policy back (dry-run unless --apply).
    Restore {
        /// The key.
        key: String,
        /// `s3://BUCKET/KEY` of a backup, a local backup file, or `latest` (BACKUP_BUCKET).
        #[arg(long = "from", value_name = "BACKUP")]
        from: String,
        /// Write it (default: show what would change).
        #[arg(long)]
        apply: bool,
    },
}

/// Runs the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match execute(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("{} {message}", style("error:").red().bold());
            ExitCode::from(2)
        }
    }
}

async fn execute(cli: Cli) -> Result<u8, String> {
    let apply = matches!(
        cli.command,
        Command::Sweep { apply: true, .. } | Command::Restore { apply: true, .. }
    );
    let mut vars: HashMap<&str, String> = HashMap::new();
    vars.insert(
        "REMEDIATION_MODE",
        if apply { "enforce" } else { "dry-run" }.into(),
    );
    for (name, value) in [
        ("BASELINE_SOURCE", &cli.baseline),
        ("REMEDIATOR_ROLE_ARN", &cli.remediator_role),
        ("EXCLUDE_TAG", &cli.exclude_tag),
        ("BACKUP_BUCKET", &cli.backup_bucket),
    ] {
        if let Some(v) = value {
            vars.insert(name, v.clone());
        }
    }
    if let Command::Sweep {
        regions,
        concurrency,
        ..
    } = &cli.command
    {
        vars.insert("SWEEP_REGIONS", regions.join(","));
        if let Some(c) = concurrency {
            vars.insert("CONCURRENCY", c.to_string());
        }
    }
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .or_else(|| std::env::var(k).ok().filter(|v| !v.is_empty()))
    };

    let sdk = load_sdk_config().await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let remote = Remote::new(&sdk);
    let config = Config::load_from(get, &remote)
        .await
        .map_err(|e| e.to_string())?;
    let mut kms = Kms::with_limits(kms_clients(&sdk), config.rate_limits);
    if let Command::Sweep {
        page_size: Some(n), ..
    } = &cli.command
    {
        kms = kms.with_page_size(*n);
    }
    let store = config
        .backup_bucket
        .as_ref()
        .map(|b| S3Backups::new(s3.clone(), b, &config.backup_prefix));
    let backups = store.clone().map_or_else(Backups::default, Backups::S3);
    let engine =
        Reconciler::with_backups(kms.clone(), kms.clone(), backups, config.settings.clone());
    let json = cli.output == Output::Json;

    match cli.command {
        Command::Check { key } => {
            let report = engine.check(&parse_key(&key)?).await;
            print_report(&report, json, true);
            Ok(exit_code(&report))
        }
        Command::Diff { key } => {
            let report = engine.check(&parse_key(&key)?).await;
            if json {
                print_report(&report, true, true);
            } else {
                for o in &report.outcomes {
                    match &o.diff {
                        Some(d) => println!("{}\n{}", style(&o.key_arn).bold(), paint(d)),
                        None => println!(
                            "{} {}: {}",
                            style(&o.key_arn).bold(),
                            o.action.as_str(),
                            o.reason.as_deref().unwrap_or("no drift")
                        ),
                    }
                }
            }
            Ok(exit_code(&report))
        }
        Command::Sweep { regions, .. } => {
            let regions = regions
                .iter()
                .map(|r| r.trim().parse::<Region>().map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let started = Instant::now();
            let bar = Bar::new(json);
            let report = engine.sweep(&regions, &bar).await;
            bar.0.finish_and_clear();
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
                println!(
                    "\nswept {total} replicas in {} Region(s) in {elapsed:.1} s: {summary}",
                    regions.len()
                );
                let calls = calls
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(op, n)| format!("{op} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                println!("KMS calls: {calls}");
                for e in &report.errors {
                    eprintln!("{} {}", style("error:").red().bold(), e.message);
                }
            }
            Ok(exit_code(&report))
        }
        Command::ValidateBaseline { key } => {
            let origin = engine.settings().baseline.describe();
            match key {
                None => {
                    let what = if engine.settings().baseline.mirrors_primary() {
                        "mirrors each key's primary; pass --key KEY_ARN to render and check it for a key".to_owned()
                    } else {
                        format!("{origin} is valid (rendered for a sample key; nothing was called)")
                    };
                    if json {
                        println!(
                            "{}",
                            json!({"baseline": origin, "valid": true, "detail": what})
                        );
                    } else {
                        println!("baseline {what}");
                    }
                    Ok(0)
                }
                Some(key) => {
                    let key = parse_key(&key)?;
                    match engine.baseline_for(&key).await {
                        Ok(policy) if json => {
                            println!(
                                "{}",
                                json!({"key_arn": key, "baseline": origin, "valid": true, "policy": policy})
                            );
                            Ok(0)
                        }
                        Ok(policy) => {
                            println!("{policy}");
                            eprintln!("baseline {origin} rendered for {key}: valid");
                            Ok(0)
                        }
                        Err(reason) => Err(reason),
                    }
                }
            }
        }
        Command::Restore { key, from, apply } => {
            let key = parse_key(&key)?;
            let (backup, location) = if from == "latest" {
                let store = store
                    .as_ref()
                    .ok_or("`--from latest` needs BACKUP_BUCKET (or --backup-bucket)")?;
                let latest = store
                    .list(&key)
                    .await
                    .map_err(|e| e.to_string())?
                    .pop()
                    .ok_or_else(|| format!("no backup of {key} in the backup bucket"))?;
                (
                    store.load(&latest).await.map_err(|e| e.to_string())?,
                    latest,
                )
            } else if from.starts_with("s3://") {
                let reader = store
                    .clone()
                    .unwrap_or_else(|| S3Backups::new(s3.clone(), "", ""));
                (
                    reader.load(&from).await.map_err(|e| e.to_string())?,
                    from.clone(),
                )
            } else {
                let bytes = std::fs::read(&from).map_err(|e| format!("cannot read {from}: {e}"))?;
                (
                    parse_backup(&bytes).map_err(|e| format!("{from}: {e}"))?,
                    from.clone(),
                )
            };
            if backup.key != key {
                return Err(format!(
                    "{location} is a backup of {}, not of {key}",
                    backup.key
                ));
            }
            let outcome = engine.restore(&key, &backup.policy, &location).await;
            let report = Report {
                outcomes: vec![outcome],
                ..Report::default()
            };
            print_report(&report, json, true);
            if apply && report.outcomes[0].action == Action::Remediated {
                let baseline = engine.baseline_for(&key).await;
                if !baseline.is_ok_and(|b| equivalent(&b, &backup.policy).unwrap_or(false)) {
                    eprintln!(
                        "{} the restored policy differs from the baseline: while the guard enforces it, the next event or sweep puts the baseline back. Tag the key with the exclude tag, or change the baseline.",
                        style("note:").yellow().bold()
                    );
                }
            }
            Ok(match report.outcomes[0].action {
                Action::DriftDetected if !apply => 1,
                _ => exit_code(&report),
            })
        }
    }
}

fn parse_key(key: &str) -> Result<KeyArn, String> {
    key.parse::<KeyArn>()
        .map_err(|e| format!("{e}; pass the full key ARN"))
}

/// 0 in sync, 1 drift left in place, 2 a failure.
pub fn exit_code(report: &Report) -> u8 {
    if report.failure_class().is_some() {
        2
    } else if report
        .outcomes
        .iter()
        .any(|o| o.action == Action::DriftDetected || o.is_flap_suppressed())
    {
        1
    } else {
        0
    }
}

fn print_report(report: &Report, json: bool, with_diff: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("a report serialises")
        );
        return;
    }
    for o in &report.outcomes {
        println!(
            "{:<16} {}  {}",
            paint_action(o),
            o.key_arn,
            o.reason.as_deref().unwrap_or("")
        );
        if let (true, Some(d)) = (with_diff, &o.diff) {
            println!("{}", paint(d));
        }
    }
    for e in &report.errors {
        eprintln!("{} {}", style("error:").red().bold(), e.message);
    }
}

fn print_table(report: &Report) {
    if report.outcomes.is_empty() {
        return;
    }
    println!("{:<16} {:<16} {:<40} REASON", "ACTION", "REGION", "KEY ID");
    for o in &report.outcomes {
        let mut reason = o.reason.clone().unwrap_or_default().replace('\n', " ");
        if reason.chars().count() > 100 {
            reason = reason.chars().take(99).collect::<String>() + "…";
        }
        println!(
            "{:<16} {:<16} {:<40} {reason}",
            paint_action(o),
            o.region.as_str(),
            o.key_arn.key_id()
        );
    }
}

fn paint_action(o: &Outcome) -> String {
    let text = format!("{:<16}", o.action.as_str());
    match o.action {
        Action::Remediated | Action::InSync => style(text).green().to_string(),
        Action::DriftDetected => style(text).yellow().to_string(),
        Action::Skipped => style(text).dim().to_string(),
        Action::Failed => style(text).red().bold().to_string(),
    }
}

/// Colours a statement-level diff: `+` baseline only, `-` live only, `~` changed.
fn paint(diff: &str) -> String {
    diff.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with('+') {
                style(l).green().to_string()
            } else if t.starts_with('-') {
                style(l).red().to_string()
            } else if t.starts_with('~') || t.starts_with("@@") {
                style(l).cyan().to_string()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A progress bar on stderr (hidden when stderr is not a terminal or output is JSON).
struct Bar(ProgressBar);

impl Bar {
    fn new(json: bool) -> Self {
        let bar = if json || !console::Term::stderr().is_term() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} key copies  {msg}",
            )
            .expect("a valid template"),
        );
        Self(bar)
    }
}

impl Progress for Bar {
    fn planned(&self, copies: usize) {
        self.0.set_length(copies as u64);
    }
    fn advanced(&self, outcome: Option<&Outcome>) {
        self.0.inc(1);
        if let Some(o) = outcome.filter(|o| o.action != Action::InSync) {
            self.0
                .set_message(format!("{} {}", o.action.as_str(), o.key_arn.key_id()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::outcome::Retry;

    fn key() -> KeyArn {
        "arn:aws:kms:us-west-2:111122223333:key/mrk-1"
            .parse()
            .unwrap()
    }

    fn report(actions: &[Action]) -> Report {
        Report {
            outcomes: actions
                .iter()
                .map(|a| match a {
                    Action::Failed => Outcome::failed(&key(), "x".into(), Retry::Retryable),
                    a => Outcome::new(&key(), *a, None),
                })
                .collect(),
            ..Report::default()
        }
    }

    #[test]
    fn exit_codes_say_in_sync_drift_or_error() {
        assert_eq!(
            exit_code(&report(&[
                Action::InSync,
                Action::Remediated,
                Action::Skipped
            ])),
            0
        );
        assert_eq!(
            exit_code(&report(&[Action::InSync, Action::DriftDetected])),
            1
        );
        assert_eq!(
            exit_code(&report(&[Action::DriftDetected, Action::Failed])),
            2
        );
        let flapping = Report {
            outcomes: vec![Outcome::new(
                &key(),
                Action::Skipped,
                "flapping: 5 writes".to_owned(),
            )],
            ..Report::default()
        };
        assert_eq!(exit_code(&flapping), 1);
    }

    #[test]
    fn the_cli_parses_its_documented_commands() {
        let cli = Cli::try_parse_from([
            "kms-replica-guard",
            "sweep",
            "--regions",
            "us-east-1,eu-west-1",
            "--apply",
            "--output",
            "json",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Sweep { ref regions, apply: true, .. } if regions.len() == 2)
        );
        assert_eq!(cli.output, Output::Json);
        let cli =
            Cli::try_parse_from(["kms-replica-guard", "restore", "arn:x", "--from", "latest"])
                .unwrap();
        assert!(matches!(cli.command, Command::Restore { apply: false, .. }));
        assert!(
            Cli::try_parse_from(["kms-replica-guard", "sweep"]).is_err(),
            "--regions is required"
        );
    }
}
