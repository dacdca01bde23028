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

/// Where the backup to restore is, parsed once, by clap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupSource {
    /// `latest`: the newest backup of the key in the backup bucket (by S3's LastModified).
    Latest,
    /// `s3://BUCKET/KEY` of a backup.
    S3(String),
    /// A local backup file.
    File(std::path::PathBuf),
}

impl std::str::FromStr for BackupSource {
    type Err = String;

    fn from_str(given: &str) -> Result<Self, String> {
        match given {
            "" => Err("empty: use latest, s3://BUCKET/KEY or a backup file".to_owned()),
            "latest" => Ok(BackupSource::Latest),
            s3 if s3.starts_with("s3://") => krg_aws::split_s3_url(s3)
                .map(|_| BackupSource::S3(s3.to_owned()))
                .ok_or_else(|| format!("{s3:?} is not s3://BUCKET/KEY")),
            path => Ok(BackupSource::File(path.into())),
        }
    }
}

/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key ARN.
    key: KeyArn,
    /// `s3://BUCKET/KEY` of a backup, a local backup file, or `latest` (BACKUP_BUCKET; the
    /// newest by S3's LastModified).
    #[arg(long = "from", value_name = "BACKUP")]
    from: BackupSource,
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
    from: &BackupSource,
    key: &KeyArn,
    bucket: Option<&S3Backups>,
    sdk: &SdkConfig,
) -> Result<(Backup, String), CliError> {
    match from {
        // The newest by S3's LastModified: names and bodies can be chosen by whoever can
        // put an object in the bucket.
        BackupSource::Latest => bucket
            .ok_or(CliError::LatestNeedsBucket)?
            .latest(key)
            .await?
            .ok_or_else(|| CliError::NoBackup(key.clone())),
        BackupSource::S3(url) => {
            let reader = bucket
                .cloned()
                .unwrap_or_else(|| S3Backups::new(aws_sdk_s3::Client::new(sdk), "", ""));
            Ok((reader.load(url).await?, url.clone()))
        }
        BackupSource::File(path) => {
            let shown = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|source| CliError::ReadBackup {
                path: shown.clone(),
                source,
            })?;
            let backup = parse_backup(&bytes).map_err(|source| CliError::BadBackup {
                path: shown.clone(),
                source,
            })?;
            Ok((backup, shown))
        }
    }
}
