//! The one place that assembles the application from its configuration: the AWS adapters
//! (KMS with the configured rate limits, in member accounts through the member role;
//! Organizations for `MEMBER_ACCOUNTS=organization`; S3 backups when `BACKUP_BUCKET` is set;
//! CloudWatch and the EventBridge bus of `EVENT_BUS` in the home Region; the sweep's work
//! queue when `SWEEP_QUEUE_URL` is set) behind the engine, and for the detector (and the
//! CLI) Security Hub when `SECURITY_HUB=on` and AWS Config, in each key's own account. The
//! remediator's wiring never names the Security Hub or Config clients, so its binary does not
//! carry them. The Lambda functions, the CLI and the integration tests all build through here,
//! over whichever SDK configuration they are given (AWS, the emulator, the fault proxy).

use aws_config::SdkConfig;
use krg_aws::backups::{Backups, S3Backups};
use krg_aws::clients::{AccountClients, load_sdk_config};
use krg_aws::cloudwatch::CloudWatch;
use krg_aws::configservice::ConfigService;
use krg_aws::events::EventBus;
use krg_aws::kms::Kms;
use krg_aws::members::{MemberAccess, Organization};
use krg_aws::queue::Sqs;
use krg_aws::remote::Remote;
use krg_aws::securityhub::SecurityHub;
use krg_engine::Reconciler;
use krg_engine::key::AccountId;
use krg_engine::tenancy::Members;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::config::{Config, ConfigError};
use crate::lambda::detector::{Detector, DetectorPorts};
use crate::lambda::{App, InvocationError, PortSet, Ports};

/// The remediator's ports in Lambda: the AWS adapters.
pub struct AwsPorts;

impl Ports for AwsPorts {
    type Keys = Kms;
    type Policies = Kms;
    type Accounts = Option<Organization>;
    type Backups = Backups;
    type Metrics = CloudWatch;
    type Queue = Sqs;
    type Notifier = EventBus;
}

/// The function as it runs in Lambda: its ports are the AWS adapters.
pub type AwsApp = App<AwsPorts>;

/// The detector's ports in Lambda: the AWS adapters.
pub struct AwsDetectorPorts;

impl DetectorPorts for AwsDetectorPorts {
    type Keys = Kms;
    type Policies = Kms;
    type Accounts = Option<Organization>;
    type Metrics = CloudWatch;
    type Findings = SecurityHub;
    type Evaluations = ConfigService;
}

/// The detector function as it runs in Lambda.
pub type AwsDetector = Detector<AwsDetectorPorts>;

/// The engine over the AWS adapters.
pub type AwsEngine = Reconciler<Kms, Kms, Backups, Option<Organization>>;

/// The AWS adapters of one configuration.
pub struct Adapters {
    /// KMS, paced by the configured rate limits (it counts its calls).
    pub kms: Kms,
    /// Organizations, when the members are the organisation's accounts
    /// (`MEMBER_ACCOUNTS=organization`).
    pub organization: Option<Organization>,
    /// The backup store: S3 when `BACKUP_BUCKET` is set, else the in-process ledger.
    pub backups: Backups,
    /// The S3 store itself, for listing and loading backups (`restore`).
    pub bucket: Option<S3Backups>,
    /// CloudWatch in the home Region.
    pub metrics: CloudWatch,
    /// The sweep's work queue (`SWEEP_QUEUE_URL`).
    pub queue: Option<Sqs>,
    /// Where drifts are published (`EVENT_BUS`), in the home Region.
    pub notifier: Option<EventBus>,
    /// The SDK configuration, for the clients made on demand.
    sdk: SdkConfig,
    /// The way into member accounts, when there are members.
    access: Option<(AccountId, Arc<MemberAccess>)>,
    /// Which role `access` assumes.
    entry: Entry,
}

impl Adapters {
    /// The adapters for `config` over `sdk`; without a configuration, the defaults (an
    /// invalid configuration still gets a function that reports it on every invocation).
    /// Member accounts are entered through the member role, which writes.
    pub fn new(sdk: &SdkConfig, config: Option<&Config>) -> Self {
        Self::entering(sdk, config, Entry::Writer)
    }

    /// The same, member accounts entered through the read-only role (`MEMBER_READ_ROLE_NAME`,
    /// else the member role): the detector's.
    pub fn reading(sdk: &SdkConfig, config: Option<&Config>) -> Self {
        Self::entering(sdk, config, Entry::Reader)
    }

    fn entering(sdk: &SdkConfig, config: Option<&Config>, entry: Entry) -> Self {
        let limits = config.map(|c| c.rate_limits).unwrap_or_default();
        let bucket = config.and_then(|c| {
            c.backup_bucket.as_ref().map(|bucket| {
                S3Backups::new(aws_sdk_s3::Client::new(sdk), bucket, &c.backup_prefix)
            })
        });
        let access = config.and_then(|c| member_access(sdk, c, entry));
        let kms = Kms::with_limits(
            AccountClients::new(sdk, access.clone(), aws_sdk_kms::Client::new),
            limits,
        );
        Self {
            kms,
            organization: config
                .filter(|_| access.is_some())
                .and_then(|c| organization(sdk, c)),
            backups: bucket.clone().map_or_else(Backups::default, Backups::S3),
            bucket,
            metrics: CloudWatch::new(aws_sdk_cloudwatch::Client::new(sdk)),
            queue: config.and_then(|c| {
                c.sweep_queue_url
                    .as_ref()
                    .map(|url| Sqs::new(aws_sdk_sqs::Client::new(sdk), url))
            }),
            notifier: config.and_then(|c| {
                c.event_bus
                    .as_ref()
                    .map(|bus| EventBus::new(aws_sdk_eventbridge::Client::new(sdk), bus))
            }),
            sdk: sdk.clone(),
            access,
            entry,
        }
    }

    /// Security Hub in each key's own account and Region, when `config` has
    /// `SECURITY_HUB=on` (the detector, the CLI). Member accounts are entered through the
    /// read-only role (`MEMBER_READ_ROLE_NAME`), which holds the findings grant in the member
    /// stack, even when these adapters write through the member role (the CLI).
    pub fn security_hub(&self, config: &Config) -> Option<SecurityHub> {
        config.security_hub.then(|| {
            let access = match self.entry {
                Entry::Reader => self.access.clone(),
                Entry::Writer => member_access(&self.sdk, config, Entry::Reader),
            };
            SecurityHub::new(AccountClients::new(
                &self.sdk,
                access,
                aws_sdk_securityhub::Client::new,
            ))
        })
    }

    /// AWS Config in the evaluated account and the rule's Region (the detector).
    pub fn config_service(&self) -> ConfigService {
        ConfigService::new(AccountClients::new(
            &self.sdk,
            self.access.clone(),
            aws_sdk_config::Client::new,
        ))
    }

    /// The detector function for `config` over `sdk`: KMS reads, Security Hub when `config`
    /// has it on, AWS Config, CloudWatch for its failure counts; member accounts entered
    /// through the read-only role.
    pub fn detector(sdk: &SdkConfig, config: Result<Config, ConfigError>) -> AwsDetector {
        let adapters = Self::reading(sdk, config.as_ref().ok());
        adapters.into_detector(config)
    }

    fn into_detector(self, config: Result<Config, ConfigError>) -> AwsDetector {
        let findings = config.as_ref().ok().and_then(|c| self.security_hub(c));
        let evaluations = self.config_service();
        Detector::new(
            config,
            self.kms.clone(),
            self.kms,
            self.organization,
            self.metrics,
            findings,
            evaluations,
        )
    }

    /// The engine over these adapters (the CLI; keep a clone of `kms` to read its call
    /// counts, of `bucket` to list backups).
    pub fn engine(self, config: &Config) -> AwsEngine {
        Reconciler::with_backups(
            self.kms.clone(),
            self.kms,
            self.backups,
            config.settings.clone(),
        )
        .with_accounts(self.organization)
    }

    /// The Lambda function over these adapters.
    pub fn app(self, config: Result<Config, ConfigError>) -> AwsApp {
        App::new(
            config,
            PortSet {
                keys: self.kms.clone(),
                policies: self.kms,
                accounts: self.organization,
                backups: self.backups,
                metrics: self.metrics,
                queue: self.queue,
                notifier: self.notifier,
            },
        )
    }
}

/// Which role enters member accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// The member role (`MEMBER_ROLE_NAME`), which may write key policies: the remediator, and
    /// the CLI.
    Writer,
    /// The read-only role (`MEMBER_READ_ROLE_NAME`, else the member role): the detector.
    Reader,
}

/// The way into member accounts, when the configuration has members: the home account, and
/// AssumeRole with the function's own credentials (one credentials cache, shared by the
/// clients of KMS, Security Hub and Config).
fn member_access(
    sdk: &SdkConfig,
    config: &Config,
    entry: Entry,
) -> Option<(AccountId, Arc<MemberAccess>)> {
    let settings = &config.settings;
    let fleet = settings.tenancy.fleet.as_ref()?;
    let role = match (entry, &config.member_read_role) {
        (Entry::Reader, Some(reader)) => reader.clone(),
        _ => fleet.role.clone(),
    };
    let home = settings.tenancy.home.clone()?;
    let partition = settings
        .remediator
        .as_ref()
        .map(|r| r.partition().to_owned())
        .or_else(|| {
            sdk.region()
                .and_then(|r| r.as_ref().parse::<krg_engine::key::Region>().ok())
                .map(|r| r.partition().to_owned())
        })
        .unwrap_or_else(|| "aws".to_owned());
    let access = MemberAccess::new(aws_sdk_sts::Client::new(sdk), role, &partition);
    Some((home, Arc::new(access)))
}

/// Organizations with the function's own credentials, when the configuration's members are
/// the organisation's accounts (`MEMBER_ACCOUNTS=organization`); read only by an
/// application that enters member accounts.
fn organization(sdk: &SdkConfig, config: &Config) -> Option<Organization> {
    config
        .settings
        .tenancy
        .fleet
        .as_ref()
        .is_some_and(|f| matches!(f.members, Members::Organization))
        .then(|| Organization::new(aws_sdk_organizations::Client::new(sdk)))
}

/// The function as Lambda runs it, from the process environment: the SDK configuration,
/// the function's configuration (an `ssm:` or `s3://` baseline is read here; a problem is
/// kept and returned by every invocation) and the AWS adapters.
///
/// A configuration that could not be read for a reason that may pass is an `Err`: the
/// caller fails that invocation (retryably) and tries again on the next, rather than
/// keeping the error for the execution environment's life. A final configuration error is
/// kept in the app, which answers every invocation with it.
pub async fn from_environment() -> Result<AwsApp, ConfigError> {
    let sdk = load_sdk_config().await;
    let config = configuration(&sdk).await?;
    if config.as_ref().is_ok_and(|c| c.security_hub) {
        tracing::warn!(
            "SECURITY_HUB=on is read by the detector function and the CLI; this function imports no findings"
        );
    }
    Ok(on_aws(&sdk, config))
}

/// The detector as Lambda runs it, from the process environment (as [`from_environment`]).
pub async fn detector_from_environment() -> Result<AwsDetector, ConfigError> {
    let sdk = load_sdk_config().await;
    let config = configuration(&sdk).await?;
    Ok(Adapters::detector(&sdk, config))
}

/// The function's configuration: `Err` when it could not be read for a reason that may
/// pass, `Ok(Err)` when it is invalid (kept and answered by every invocation).
async fn configuration(sdk: &SdkConfig) -> Result<Result<Config, ConfigError>, ConfigError> {
    match Config::load(&Remote::new(sdk)).await {
        Err(e) if e.transient => {
            tracing::error!(error = %e, "the configuration could not be read; this invocation fails and the next one reads it again");
            Err(e)
        }
        config => Ok(config),
    }
}

/// The app an execution environment keeps, made by `load` on the first event that gets one:
/// a transient failure to make it fails that event and leaves the cell empty.
pub async fn kept<A, F, Fut>(cell: &OnceCell<A>, load: F) -> Result<&A, InvocationError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<A, ConfigError>>,
{
    cell.get_or_try_init(load)
        .await
        .map_err(InvocationError::Config)
}

/// The function wired to AWS (or the emulator, or a proxy) from its configuration.
pub fn on_aws(sdk: &SdkConfig, config: Result<Config, ConfigError>) -> AwsApp {
    Adapters::new(sdk, config.as_ref().ok()).app(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn failure(transient: bool) -> ConfigError {
        ConfigError {
            variable: "BASELINE_SOURCE",
            problem: "cannot read the baseline".into(),
            transient,
        }
    }

    #[tokio::test]
    async fn a_transient_start_up_failure_fails_that_invocation_and_the_next_one_reads_again() {
        let cell: OnceCell<Result<&str, ConfigError>> = OnceCell::new();
        let loads = AtomicUsize::new(0);
        let load = |transient: bool| {
            loads.fetch_add(1, Ordering::SeqCst);
            async move {
                if transient {
                    Err(failure(true))
                } else {
                    Ok(Ok("the app"))
                }
            }
        };
        let first = kept(&cell, || load(true)).await.unwrap_err();
        assert_eq!(first.error_type(), "Retryable.ConfigurationUnavailable");
        assert!(cell.get().is_none(), "nothing kept");
        let second = kept(&cell, || load(false)).await.unwrap();
        assert_eq!(second, &Ok("the app"));
        let third = kept(&cell, || load(true)).await.unwrap();
        assert_eq!(third, &Ok("the app"), "kept for the environment's life");
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_final_configuration_error_is_kept_and_answered_every_time() {
        let cell: OnceCell<Result<&str, ConfigError>> = OnceCell::new();
        let loads = AtomicUsize::new(0);
        for _ in 0..3 {
            let app = kept(&cell, || {
                loads.fetch_add(1, Ordering::SeqCst);
                async { Ok(Err(failure(false))) }
            })
            .await
            .unwrap();
            let e = app.clone().unwrap_err();
            assert_eq!(
                InvocationError::Config(e).error_type(),
                "NonRetryable.ConfigurationError"
            );
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
