//! The operator CLI: the same engine as the Lambda, driven from a terminal or a script.
//! Dry-run unless `--apply`; exit codes scripts can rely on (see [`EXIT_CODES`]).
//!
//! Flags are parsed once, by clap, straight into the typed [`Options`] the Lambda reads
//! from its environment (each flag falls back to the same environment variable), and the
//! adapters come from [`crate::wiring`]. One module per subcommand: `check` (`check`,
//! `diff`), `sweep`, `validate` (`validate-baseline`), `restore`; `output` renders
//! outcomes for a terminal.

mod check;
mod output;
mod restore;
mod sweep;
mod validate;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use console::style;
use krg_aws::backups::BackupFormatError;
use krg_aws::clients::load_sdk_config;
use krg_aws::remote::Remote;
use krg_engine::Mode;
use krg_engine::error::CallError;
use krg_engine::key::{KeyArn, Region, RoleArn};
use krg_engine::outcome::{Action, Report};
use krg_engine::reconcile::BaselineForError;

use crate::config::{
    BaselineSource, Config, ConfigError, Options, RateOptions, env_var, parse_duration,
};
use crate::wiring::Adapters;

/// Documented exit codes.
pub const EXIT_CODES: &str = "Exit codes:
  0  in sync (or everything drifted was fixed; a restore is done or not needed; the baseline is valid)
  1  drift found and left in place (dry-run, or a key left alone by the flap guard)
  2  an error: a key failed, the baseline is invalid, a call failed, or bad arguments";

/// Check and heal the key policies of KMS multi-Region replica keys.
///
/// Reads the same configuration as the Lambda function (each flag below falls back to the
/// environment variable it names). Nothing is written unless `--apply` is given.
#[derive(Debug, Parser)]
#[command(name = "kms-replica-guard", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    config: ConfigArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
}

/// The configuration flags, typed as the Lambda's [`Options`].
#[derive(Debug, Args)]
struct ConfigArgs {
    /// Baseline: `primary`, `file:PATH`, `ssm:NAME`, `s3://BUCKET/KEY` or a JSON document;
    /// or a catalogue of named baselines: `dir:PATH`, `ssm:/PATH/`, `s3://BUCKET/PREFIX/`.
    #[arg(long, env = "BASELINE_SOURCE", global = true)]
    baseline: Option<BaselineSource>,
    /// Catalogue: the tag a key names its baseline with.
    #[arg(long, env = "BASELINE_TAG", global = true)]
    baseline_tag: Option<String>,
    /// Catalogue: the baseline of keys without that tag (a name, or `primary`).
    #[arg(long, env = "BASELINE_DEFAULT", global = true)]
    baseline_default: Option<String>,
    /// `exact` (the policy is the baseline) or `contains` (the baseline's statements must be
    /// present; extra statements that grant nothing public, cross-account or administrative
    /// are kept).
    #[arg(long = "match", env = "BASELINE_MATCH", global = true)]
    baseline_match: Option<krg_engine::BaselineMatch>,
    /// Mirroring also rewrites ARNs of the key's own account and Region in conditions.
    #[arg(long, env = "MIRROR_REWRITE", value_parser = crate::config::parse_switch, global = true)]
    mirror_rewrite: Option<bool>,
    /// on: post each replica's finding to Security Hub in its own account and Region
    /// (FAILED while drifted, PASSED once in sync); off (the default): print only.
    #[arg(long, env = "SECURITY_HUB", value_parser = crate::config::parse_switch, global = true)]
    security_hub: Option<bool>,
    /// The remediator's role ARN, which the lockout check keeps able to manage policies.
    #[arg(long, env = "REMEDIATOR_ROLE_ARN", global = true)]
    remediator_role: Option<RoleArn>,
    /// Keys carrying this tag key are left alone (`off`: no exclusion by tag).
    #[arg(long, env = "EXCLUDE_TAG", global = true)]
    exclude_tag: Option<String>,
    /// S3 bucket for backups of every policy before it is overwritten (and `restore latest`).
    #[arg(long, env = "BACKUP_BUCKET", global = true)]
    backup_bucket: Option<String>,
    /// Key prefix of backups, write records and claims in the bucket.
    #[arg(long, env = "BACKUP_PREFIX", global = true, hide = true)]
    backup_prefix: Option<String>,
    /// The home Region (where a baseline is checked at start-up); else AWS_DEFAULT_REGION.
    #[arg(long, env = "AWS_REGION", global = true)]
    region: Option<Region>,
    /// Replicas checked at once (per Region in a sweep).
    #[arg(long, env = "CONCURRENCY", global = true)]
    concurrency: Option<u64>,
    /// The flap guard: writes of one key allowed within --flap-window.
    #[arg(long, env = "FLAP_MAX", global = true, hide = true)]
    flap_max: Option<u64>,
    /// The flap guard's window (3600, 90m, 1h, 2d).
    #[arg(long, env = "FLAP_WINDOW", value_parser = parse_duration, global = true, hide = true)]
    flap_window: Option<std::time::Duration>,
    /// Attempts while a fresh replica is still being created.
    #[arg(long, env = "CREATING_RETRY_ATTEMPTS", global = true, hide = true)]
    creating_retry_attempts: Option<u64>,
    /// First delay of those attempts, in milliseconds.
    #[arg(long, env = "CREATING_RETRY_BASE_MS", global = true, hide = true)]
    creating_retry_base_ms: Option<u64>,
    /// DescribeKey calls per second and Region.
    #[arg(long, env = "RATE_DESCRIBE_KEY", global = true, hide = true)]
    rate_describe_key: Option<u64>,
    /// GetKeyPolicy calls per second and Region.
    #[arg(long, env = "RATE_GET_KEY_POLICY", global = true, hide = true)]
    rate_get_key_policy: Option<u64>,
    /// PutKeyPolicy calls per second and Region.
    #[arg(long, env = "RATE_PUT_KEY_POLICY", global = true, hide = true)]
    rate_put_key_policy: Option<u64>,
    /// ListKeys pages per second and Region.
    #[arg(long, env = "RATE_LIST_KEYS", global = true, hide = true)]
    rate_list_keys: Option<u64>,
    /// ListResourceTags pages per second and Region.
    #[arg(long, env = "RATE_LIST_RESOURCE_TAGS", global = true, hide = true)]
    rate_list_resource_tags: Option<u64>,
    /// Processes sharing those budgets (the CLI alone: 1).
    #[arg(long, env = "RATE_INSTANCES", global = true, hide = true)]
    rate_instances: Option<u64>,
    /// Member accounts to work in: comma-separated 12-digit ids, or `organization` (every
    /// ACTIVE account Organizations lists). Needs --role-name.
    #[arg(long, env = "MEMBER_ACCOUNTS", global = true)]
    accounts: Option<krg_engine::tenancy::Members>,
    /// The role assumed in member accounts (the member stack's MemberRoleName).
    #[arg(long, env = "MEMBER_ROLE_NAME", global = true)]
    role_name: Option<String>,
    /// The external id the member role's trust policy asks for, if any.
    #[arg(
        long,
        env = "MEMBER_EXTERNAL_ID",
        global = true,
        hide_env_values = true
    )]
    external_id: Option<String>,
    /// Accounts besides the key's own that a written policy may grant (comma-separated).
    #[arg(long, env = "TRUSTED_ACCOUNTS", value_parser = crate::config::parse_accounts, global = true)]
    trusted_accounts: Option<std::collections::BTreeSet<krg_engine::key::AccountId>>,
    /// Organisations (o-...) a written policy may grant (comma-separated).
    #[arg(long, env = "TRUSTED_ORGS", value_parser = crate::config::parse_orgs, global = true)]
    trusted_orgs: Option<std::collections::BTreeSet<String>>,
    /// Exemptions without an end, or longer than this many days, are not honoured.
    #[arg(long, env = "EXEMPTION_MAX_DAYS", value_parser = crate::config::parse_days, global = true)]
    exemption_max_days: Option<u64>,
    /// The SHA-256 the baseline must have (64 hex digits), or NAME=HEX pairs for a catalogue.
    #[arg(long, env = "BASELINE_SHA256", value_parser = crate::config::parse_digests, global = true)]
    baseline_sha256: Option<crate::config::Digests>,
    /// Catalogue: the accounts whose keys may pick a baseline by tag (NAME=ACCOUNT|ACCOUNT,...).
    #[arg(long, env = "BASELINE_SCOPE", value_parser = crate::config::parse_scope, global = true)]
    baseline_scope: Option<
        std::collections::BTreeMap<String, std::collections::BTreeSet<krg_engine::key::AccountId>>,
    >,
}

impl ConfigArgs {
    /// The options these flags give, in `mode` (the CLI writes only with `--apply`).
    fn into_options(self, mode: Mode, sweep_regions: Option<Vec<Region>>) -> Options {
        Options {
            mode: Some(mode),
            baseline: self.baseline,
            remediator: self.remediator_role,
            home: self
                .region
                .or_else(|| env_var("AWS_DEFAULT_REGION").and_then(|r| r.parse::<Region>().ok())),
            sweep_regions,
            metrics_namespace: None,
            exclude_tag: self.exclude_tag,
            backup_bucket: self.backup_bucket,
            backup_prefix: self.backup_prefix,
            concurrency: self.concurrency,
            creating_retry_attempts: self.creating_retry_attempts,
            creating_retry_base_ms: self.creating_retry_base_ms,
            flap_max: self.flap_max,
            flap_window: self.flap_window,
            rates: RateOptions {
                describe_key: self.rate_describe_key,
                get_key_policy: self.rate_get_key_policy,
                put_key_policy: self.rate_put_key_policy,
                list_keys: self.rate_list_keys,
                list_resource_tags: self.rate_list_resource_tags,
                instances: self.rate_instances,
            },
            member_role: self.role_name,
            member_external_id: self.external_id,
            member_accounts: self.accounts,
            // The CLI sweeps inline; planning onto a queue is the function's job.
            sweep_queue_url: None,
            // The CLI prints what it finds; notifying is the function's job.
            event_bus: Some(crate::config::EVENT_BUS_OFF.to_owned()),
            security_hub: self.security_hub,
            baseline_tag: self.baseline_tag,
            baseline_default: self.baseline_default,
            baseline_match: self.baseline_match,
            mirror_rewrite: self.mirror_rewrite,
            trusted_accounts: self.trusted_accounts,
            trusted_orgs: self.trusted_orgs,
            exemption_max_days: self.exemption_max_days,
            baseline_sha256: self.baseline_sha256,
            baseline_scope: self.baseline_scope,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile one key in dry-run and print its outcome.
    Check(check::Args),
    /// Show the statement-level diff between a key's live policy and its baseline.
    Diff(check::Args),
    /// Check every multi-Region replica in some Regions; fix them with --apply.
    Sweep(sweep::Args),
    /// Render and validate the baseline without touching any key.
    ValidateBaseline(validate::Args),
    /// Put a backed-up policy back (dry-run unless --apply).
    Restore(restore::Args),
}

/// Why a CLI command could not do its job (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No baseline could be rendered for the key.
    #[error(transparent)]
    Baseline(#[from] BaselineForError),
    /// An AWS call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// `restore --from latest` without a bucket.
    #[error("`--from latest` needs BACKUP_BUCKET (or --backup-bucket)")]
    LatestNeedsBucket,
    /// `restore --from latest` found no backup.
    #[error("no backup of {0} in the backup bucket")]
    NoBackup(KeyArn),
    /// A local backup file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadBackup {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A local backup file is not a backup.
    #[error("{path}: {source}")]
    BadBackup {
        /// The file.
        path: String,
        /// Why.
        source: BackupFormatError,
    },
    /// The backup belongs to another key.
    #[error("{location} is a backup of {found}, not of {key}")]
    WrongKey {
        /// Where the backup is.
        location: String,
        /// The key it is a backup of.
        found: KeyArn,
        /// The key named on the command line.
        key: KeyArn,
    },
}

/// Runs the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match execute(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{} {e}", style("error:").red().bold());
            ExitCode::from(2)
        }
    }
}

async fn execute(cli: Cli) -> Result<u8, CliError> {
    let (apply, sweep_regions) = match &cli.command {
        Command::Sweep(a) => (a.apply, Some(a.regions.clone())),
        Command::Restore(a) => (a.apply, None),
        _ => (false, None),
    };
    let mode = if apply { Mode::Enforce } else { Mode::DryRun };
    let options = cli.config.into_options(mode, sweep_regions);
    let sdk = load_sdk_config().await;
    let config = Config::resolve(options, &Remote::new(&sdk)).await?;
    let mut adapters = Adapters::new(&sdk, Some(&config));
    if let Command::Sweep(sweep::Args {
        page_size: Some(n), ..
    }) = &cli.command
    {
        adapters.kms = adapters.kms.with_page_size(*n);
    }
    let json = cli.output == Output::Json;
    match cli.command {
        Command::Check(args) => check::check(args, adapters, &config, json).await,
        Command::Diff(args) => check::diff(args, adapters, &config, json).await,
        Command::Sweep(args) => sweep::run(args, adapters, &config, json).await,
        Command::ValidateBaseline(args) => validate::run(args, adapters, &config, json).await,
        Command::Restore(args) => restore::run(args, adapters, &config, json, &sdk).await,
    }
}

/// Imports the report's findings when `SECURITY_HUB` is on, and says so on stderr (stdout
/// stays the report); a failure is told and counted in nothing else: it never changes the
/// exit code, which is about the keys.
pub async fn post_findings(findings: Option<krg_aws::securityhub::SecurityHub>, report: &Report) {
    let Some(sink) = findings else { return };
    match crate::lambda::import_findings(&sink, report).await {
        None => {}
        Some((v, 0)) => eprintln!("Security Hub: {} finding(s) imported", v["imported"]),
        Some((v, n)) => eprintln!(
            "{} Security Hub: {n} finding(s) not imported: {}",
            style("warning:").yellow().bold(),
            v["error"].as_str().unwrap_or("")
        ),
    }
}

/// 0 in sync, 1 drift left in place, 2 a failure.
pub fn exit_code(report: &Report) -> u8 {
    if report.failure_class().is_some() {
        2
    } else if report
        .outcomes
        .iter()
        .any(|o| o.action() == Action::DriftDetected || o.is_flap_suppressed())
    {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use krg_engine::outcome::{Failure, Outcome, Skip, Status};
    use std::time::Duration;

    const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/mrk-1";

    fn key() -> KeyArn {
        KEY.parse().unwrap()
    }

    fn report(statuses: Vec<Status>) -> Report {
        Report {
            outcomes: statuses
                .into_iter()
                .map(|s| Outcome::new(&key(), s))
                .collect(),
            ..Report::default()
        }
    }

    #[test]
    fn exit_codes_say_in_sync_drift_or_error() {
        use krg_engine::outcome::{DriftNote, Remediation, WriteCause};
        let remediated = Status::Remediated(Remediation {
            cause: WriteCause::Drift {
                baseline: "b".into(),
            },
            backup: "-".into(),
        });
        let failed = Status::Failed(Failure::StaleAfterWrite { attempts: 1 });
        let drift = || Status::DriftDetected(DriftNote::DryRun);
        assert_eq!(
            exit_code(&report(vec![
                Status::InSync(None),
                remediated,
                Status::Skipped(Skip::PendingDeletion)
            ])),
            0
        );
        assert_eq!(exit_code(&report(vec![Status::InSync(None), drift()])), 1);
        assert_eq!(exit_code(&report(vec![drift(), failed])), 2);
        let flapping = report(vec![Status::Skipped(Skip::Flapping {
            writes: 5,
            window: Duration::from_secs(3600),
        })]);
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
        assert!(matches!(cli.command, Command::Sweep(ref a) if a.regions.len() == 2 && a.apply));
        assert_eq!(cli.output, Output::Json);
        let cli =
            Cli::try_parse_from(["kms-replica-guard", "restore", KEY, "--from", "latest"]).unwrap();
        assert!(matches!(cli.command, Command::Restore(ref a) if !a.apply));
        assert!(
            Cli::try_parse_from(["kms-replica-guard", "sweep"]).is_err(),
            "--regions is required"
        );
    }

    #[test]
    fn flags_are_typed_where_they_are_parsed() {
        let bad_key = Cli::try_parse_from(["kms-replica-guard", "check", "arn:x"]).unwrap_err();
        assert!(bad_key.to_string().contains("arn:x"), "{bad_key}");
        let bad_region =
            Cli::try_parse_from(["kms-replica-guard", "sweep", "--regions", "moon"]).unwrap_err();
        assert!(bad_region.to_string().contains("moon"), "{bad_region}");
        let bad_baseline =
            Cli::try_parse_from(["kms-replica-guard", "--baseline", "mirror", "check", KEY])
                .unwrap_err();
        assert!(
            bad_baseline.to_string().contains("not a baseline source"),
            "{bad_baseline}"
        );
        let cli = Cli::try_parse_from([
            "kms-replica-guard",
            "sweep",
            "--regions",
            "us-west-2",
            "--baseline",
            "primary",
            "--concurrency",
            "3",
        ])
        .unwrap();
        let Command::Sweep(sweep) = &cli.command else {
            unreachable!()
        };
        let options = cli
            .config
            .into_options(Mode::DryRun, Some(sweep.regions.clone()));
        assert_eq!(options.baseline, Some(BaselineSource::Primary));
        assert_eq!(options.concurrency, Some(3));
        assert_eq!(options.mode, Some(Mode::DryRun));
        assert_eq!(options.sweep_regions.unwrap()[0].as_str(), "us-west-2");
    }
}
