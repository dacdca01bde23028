//! The operator CLI: the same engine as the Lambda, driven from a terminal or a script.
//! Dry-run unless `--apply`; exit codes scripts can rely on (see [`EXIT_CODES`]).
//!
//! Flags are parsed once, by clap, straight into the typed [`Options`] the Lambda reads
//! from its environment (each flag falls back to the same environment variable), and the
//! adapters come from [`crate::wiring`]. One module per subcommand: `check` (`check`,
//! `diff`), `sweep`, `validate` (`validate-baseline`), `restore`, `doctor` (a deployment checked
//! from the outside); `output` renders
//! outcomes for a terminal.

mod check;
pub mod doctor;
mod output;
mod restore;
mod sweep;
mod validate;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use console::style;
use krg_aws::backups::BackupFormatError;
use krg_aws::clients::{load_sdk_config_in, profile_region};
use krg_aws::remote::Remote;
use krg_engine::Mode;
use krg_engine::error::CallError;
use krg_engine::key::{KeyArn, Region};
use krg_engine::outcome::{Action, Report};
use krg_engine::reconcile::BaselineForError;

use crate::config::vars::{Cli as VarCli, VARS};
use crate::config::{Config, ConfigError, Options, env_var};
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

/// The configuration flags: one per setting the CLI exposes ([`VARS`]), each falling back to
/// its variable and checked by the setting's own parser as it is parsed.
#[derive(Debug, Default)]
struct ConfigArgs {
    /// Each given flag (or its variable), by variable name.
    values: BTreeMap<&'static str, String>,
}

impl clap::FromArgMatches for ConfigArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let values = VARS
            .iter()
            .filter(|v| matches!(v.cli, VarCli::Flag { .. }))
            .filter_map(|v| {
                matches
                    .get_one::<String>(v.name)
                    .map(|value| (v.name, value.clone()))
            })
            .collect();
        Ok(Self { values })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for ConfigArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.args(VARS.iter().filter_map(|v| {
            match v.cli {
                VarCli::Flag { long, hidden, help } => Some(
                    clap::Arg::new(v.name)
                        .long(long)
                        .env(v.name)
                        .hide_env_values(true)
                        .help(help)
                        .hide(hidden)
                        .global(true)
                        .value_parser(move |given: &str| {
                            (v.check)(given).map(|()| given.to_owned())
                        }),
                ),
                VarCli::No => None,
            }
        }))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl ConfigArgs {
    /// A variable as the CLI reads it: its flag (or the variable itself, through clap), or,
    /// for an alias of a flag's variable (`AWS_DEFAULT_REGION`), the environment. Settings
    /// the CLI does not expose are never read from the environment.
    fn lookup(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned().or_else(|| {
            VARS.iter()
                .any(|v| matches!(v.cli, VarCli::Flag { .. }) && v.aliases.contains(&name))
                .then(|| env_var(name))
                .flatten()
        })
    }

    /// The options these flags give, in `mode` (the CLI writes only with `--apply`).
    fn into_options(
        self,
        mode: Mode,
        sweep_regions: Option<Vec<Region>>,
    ) -> Result<Options, ConfigError> {
        let mut options = Options::from_lookup(|name| self.lookup(name))?;
        options.mode = Some(mode);
        options.sweep_regions = sweep_regions;
        // The CLI prints what it finds; notifying is the function's job.
        options.event_bus = Some(crate::config::EVENT_BUS_OFF.to_owned());
        Ok(options)
    }

    /// `--region` (or `AWS_REGION`, else `AWS_DEFAULT_REGION`).
    fn home(&self) -> Result<Option<Region>, ConfigError> {
        Ok(Options::from_lookup(|name| match name {
            "AWS_REGION" | "AWS_DEFAULT_REGION" => self.lookup(name),
            _ => None,
        })?
        .home)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Keys(KeyCommand),
    /// Check a deployment: trails, rules, the function's settings and baseline, member roles,
    /// the heartbeat alarm (read-only; exit 2 when something is wrong).
    Doctor(doctor::Args),
}

/// The commands that work on keys with the configuration the flags give.
#[derive(Debug, Subcommand)]
enum KeyCommand {
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
    /// `doctor` could not start.
    #[error("{0}")]
    Doctor(String),
    /// No Region anywhere the CLI looks.
    #[error("no Region: set AWS_REGION or --region (or a region in your AWS profile)")]
    NoRegion,
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
    let json = cli.output == Output::Json;
    // The Region: --region / AWS_REGION / AWS_DEFAULT_REGION, the profile's, or (doctor) the
    // function ARN's; never instance metadata, which a terminal does not have.
    let home = cli.config.home()?;
    let region = match &home {
        Some(r) => Some(r.to_string()),
        None => match profile_region().await {
            Some(r) => Some(r),
            None => match &cli.command {
                Command::Doctor(args) => args.function_region(),
                Command::Keys(_) => None,
            },
        },
    };
    let Some(region) = region else {
        return Err(CliError::NoRegion);
    };
    let sdk = load_sdk_config_in(&region).await;
    match cli.command {
        Command::Keys(command) => on_keys(command, cli.config, &sdk, json).await,
        // The deployment's own settings are read from the function, not from these flags.
        Command::Doctor(args) => doctor::run(args, &sdk, home, json).await,
    }
}

async fn on_keys(
    command: KeyCommand,
    flags: ConfigArgs,
    sdk: &aws_config::SdkConfig,
    json: bool,
) -> Result<u8, CliError> {
    let (apply, sweep_regions) = match &command {
        KeyCommand::Sweep(a) => (a.apply, Some(a.regions.clone())),
        KeyCommand::Restore(a) => (a.apply, None),
        _ => (false, None),
    };
    let mode = if apply { Mode::Enforce } else { Mode::DryRun };
    let options = flags.into_options(mode, sweep_regions)?;
    let config = Config::resolve(options, &Remote::new(sdk)).await?;
    let mut adapters = Adapters::new(sdk, Some(&config));
    if let KeyCommand::Sweep(sweep::Args {
        page_size: Some(n), ..
    }) = &command
    {
        adapters.kms = adapters.kms.with_page_size(*n);
    }
    match command {
        KeyCommand::Check(args) => check::check(args, adapters, &config, json).await,
        KeyCommand::Diff(args) => check::diff(args, adapters, &config, json).await,
        KeyCommand::Sweep(args) => sweep::run(args, adapters, &config, json).await,
        KeyCommand::ValidateBaseline(args) => validate::run(args, adapters, &config, json).await,
        KeyCommand::Restore(args) => restore::run(args, adapters, &config, json, sdk).await,
    }
}

/// Imports the report's findings when `SECURITY_HUB` is on, and says so on stderr (stdout
/// stays the report); a failure is told and counted in nothing else: it never changes the
/// exit code, which is about the keys.
pub async fn post_findings(findings: Option<krg_aws::securityhub::SecurityHub>, report: &Report) {
    let Some(sink) = findings else { return };
    match crate::lambda::detector::import_findings(&sink, report).await {
        None => {}
        Some((v, None)) => eprintln!("Security Hub: {} finding(s) imported", v.imported),
        Some((_, Some(missed))) => eprintln!(
            "{} Security Hub: {} finding(s) not imported: {}",
            style("warning:").yellow().bold(),
            missed.count,
            missed.error
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
        assert!(
            matches!(cli.command, Command::Keys(KeyCommand::Sweep(ref a)) if a.regions.len() == 2 && a.apply)
        );
        assert_eq!(cli.output, Output::Json);
        let cli =
            Cli::try_parse_from(["kms-replica-guard", "restore", KEY, "--from", "latest"]).unwrap();
        assert!(matches!(cli.command, Command::Keys(KeyCommand::Restore(ref a)) if !a.apply));
        let bad_from =
            Cli::try_parse_from(["kms-replica-guard", "restore", KEY, "--from", "s3://bucket"])
                .unwrap_err();
        assert!(
            bad_from.to_string().contains("s3://BUCKET/KEY"),
            "{bad_from}"
        );
        assert!(
            Cli::try_parse_from(["kms-replica-guard", "sweep"]).is_err(),
            "--regions is required"
        );
        let cli = Cli::try_parse_from([
            "kms-replica-guard",
            "doctor",
            "--function",
            "guard",
            "--skip",
            "members,trail",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Doctor(_)));
        let bad_skip = Cli::try_parse_from([
            "kms-replica-guard",
            "doctor",
            "--function",
            "g",
            "--skip",
            "dns",
        ])
        .unwrap_err();
        assert!(bad_skip.to_string().contains("dns"), "{bad_skip}");
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
        let Command::Keys(KeyCommand::Sweep(sweep)) = &cli.command else {
            unreachable!()
        };
        let options = cli
            .config
            .into_options(Mode::DryRun, Some(sweep.regions.clone()))
            .unwrap();
        assert_eq!(
            options.baseline,
            Some(crate::config::BaselineSource::Primary)
        );
        assert_eq!(options.concurrency, Some(3));
        assert_eq!(options.mode, Some(Mode::DryRun));
        assert_eq!(options.sweep_regions.unwrap()[0].as_str(), "us-west-2");
    }
}
