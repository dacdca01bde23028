//! `restore KEY --from BACKUP [--apply]`: put a backed-up policy back — from `s3://...`, a
//! local backup file, or `latest` in the backup bucket (the newest by S3's `LastModified`)
//! — validated and verified like any write, dry-run unless `--apply`.

use aws_config::SdkConfig;
use console::style;
use krg_aws::backups::{S3Backups, parse_backup};
use krg_engine::key::KeyArn;
use krg_engine::outcome::{Action, Report};
use krg_engine::ports::Backup;
use krg_policy::equivalent;

use super::output::print_report;
use super::{CliError, exit_code};
use crate::config::Config;
use crate::wiring::Adapters;

/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key ARN.
    key: KeyArn,
    /// `s3://BUCKET/KEY` of a backup, a local backup file, or `latest` (BACKUP_BUCKET; the
    /// newest by S3's LastModified).
    #[arg(long = "from", value_name = "BACKUP")]
    from: String,
    /// Write it (default: show what would change).
    #[arg(long)]
    pub apply: bool,
}

/// `restore`.
pub async fn run(
    args: Args,
    adapters: Adapters,
    config: &Config,
    json: bool,
    sdk: &SdkConfig,
) -> Result<u8, CliError> {
    let key = args.key;
    let (backup, location) = find(&args.from, &key, adapters.bucket.as_ref(), sdk).await?;
    if backup.key != key {
        return Err(CliError::WrongKey {
            location,
            found: backup.key,
            key,
        });
    }
    let engine = adapters.engine(config);
    let outcome = engine.restore(&key, &backup.policy, &location).await;
    let report = Report {
        outcomes: vec![outcome],
        ..Report::default()
    };
    print_report(&report, json, true);
    let action = report.outcomes[0].action();
    if args.apply && action == Action::Remediated {
        let baseline = engine.baseline_for(&key).await;
        if !baseline.is_ok_and(|b| equivalent(&b, &backup.policy).unwrap_or(false)) {
            eprintln!(
                "{} the restored policy differs from the baseline: while the guard enforces it, the next event or sweep puts the baseline back. Tag the key with the exclude tag, or change the baseline.",
                style("note:").yellow().bold()
            );
        }
    }
    Ok(match action {
        Action::DriftDetected if !args.apply => 1,
        _ => exit_code(&report),
    })
}

/// The backup `from` names, and where it is.
async fn find(
    from: &str,
    key: &KeyArn,
    bucket: Option<&S3Backups>,
    sdk: &SdkConfig,
) -> Result<(Backup, String), CliError> {
    if from == "latest" {
        // The newest by S3's LastModified: names and bodies can be chosen by whoever can
        // put an object in the bucket.
        let store = bucket.ok_or(CliError::LatestNeedsBucket)?;
        store
            .latest(key)
            .await?
            .ok_or_else(|| CliError::NoBackup(key.clone()))
    } else if from.starts_with("s3://") {
        let reader = bucket
            .cloned()
            .unwrap_or_else(|| S3Backups::new(aws_sdk_s3::Client::new(sdk), "", ""));
        Ok((reader.load(from).await?, from.to_owned()))
    } else {
        let bytes = std::fs::read(from).map_err(|source| CliError::ReadBackup {
            path: from.to_owned(),
            source,
        })?;
        let backup = parse_backup(&bytes).map_err(|source| CliError::BadBackup {
            path: from.to_owned(),
            source,
        })?;
        Ok((backup, from.to_owned()))
    }
}
