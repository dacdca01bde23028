//! The one place that builds SDK clients: the configuration is loaded once, every client
//! shares one HTTPS client (one connection pool, one root certificate store), and there is
//! one client per Region, created on first use and reused (connections stay warm across
//! invocations).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use aws_credential_types::provider::SharedCredentialsProvider;
use krg_engine::error::CallError;
use krg_engine::key::{AccountId, Region};

use crate::members::{AccountCredentials, MemberAccess};

/// The HTTPS client every SDK client shares: rustls with aws-lc (the SDK's own default,
/// with its post-quantum hybrid key exchange, X25519MLKEM768), the platform's root
/// certificates, HTTP/1.1 and HTTP/2 as the SDK's own client negotiates them.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https()
}

/// `aws_config::defaults` with [`https_client`]: the SDK crates are built without their own
/// default client, so every configuration (the function's, the CLI's, the tests') starts here.
pub fn sdk_defaults() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// Loads the shared SDK configuration (credentials, home Region, `AWS_ENDPOINT_URL`) with
/// bounded timeouts and standard retries (throttling and 5xx are retried with backoff).
///
/// Every client made from it shares one HTTPS client ([`https_client`]): one connection
/// pool, one root store loaded once.
pub async fn load_sdk_config() -> SdkConfig {
    loader().load().await
}

/// [`load_sdk_config`] in `region`: the Region chain (environment, profile, instance metadata)
/// is not consulted.
pub async fn load_sdk_config_in(region: &str) -> SdkConfig {
    loader()
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await
}

/// The Region of the shared config and credentials files (`AWS_PROFILE`), if they name one;
/// never instance metadata (a terminal tool has none, and probing it prints warnings).
pub async fn profile_region() -> Option<String> {
    use aws_config::meta::region::ProvideRegion;
    aws_config::profile::ProfileFileRegionProvider::new()
        .region()
        .await
        .map(|r| r.to_string())
}

fn loader() -> ConfigLoader {
    sdk_defaults()
        .retry_config(RetryConfig::standard().with_max_attempts(4))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
}

/// Clients of one service, one per Region, built on demand.
pub struct RegionalClients<C> {
    make: Box<dyn Fn(&Region) -> C + Send + Sync>,
    cache: Mutex<HashMap<Region, C>>,
}

impl<C: Clone> RegionalClients<C> {
    /// Clients made by `make` for each Region.
    pub fn new(make: impl Fn(&Region) -> C + Send + Sync + 'static) -> Self {
        Self {
            make: Box::new(make),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The client for a Region.
    pub fn get(&self, region: &Region) -> C {
        let mut cache = self.cache.lock().expect("no panics while held");
        cache
            .entry(region.clone())
            .or_insert_with(|| (self.make)(region))
            .clone()
    }
}

/// KMS clients per Region, from the shared configuration.
pub fn kms_clients(sdk: &SdkConfig) -> Arc<RegionalClients<aws_sdk_kms::Client>> {
    let sdk = sdk.clone();
    Arc::new(RegionalClients::new(move |region: &Region| {
        let conf = aws_sdk_kms::config::Builder::from(&sdk)
            .region(aws_sdk_kms::config::Region::new(region.as_str().to_owned()))
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    }))
}

/// Clients of one service per (account, Region), for the calls made in the key's own account
/// (Security Hub's BatchImportFindings, Config's PutEvaluations): the function's own
/// credentials in its home account (or in any account without members), the member role's
/// in the others.
pub struct AccountClients<C> {
    sdk: SdkConfig,
    members: Option<(AccountId, Arc<MemberAccess>)>,
    make: Box<dyn Fn(&SdkConfig) -> C + Send + Sync>,
    cache: Mutex<HashMap<(AccountId, Region), C>>,
}

impl<C: Clone> AccountClients<C> {
    /// Clients made by `make` from `sdk` with the Region (and credentials) of each place;
    /// `members`: the home account and the way into the others.
    pub fn new(
        sdk: &SdkConfig,
        members: Option<(AccountId, Arc<MemberAccess>)>,
        make: impl Fn(&SdkConfig) -> C + Send + Sync + 'static,
    ) -> Self {
        Self {
            sdk: sdk.clone(),
            members,
            make: Box::new(make),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `account` in `region`; a member account is entered first, so a
    /// refused AssumeRole is reported here, typed.
    pub async fn get(&self, account: &AccountId, region: &Region) -> Result<C, CallError> {
        let member = match &self.members {
            Some((home, access)) if home != account => {
                access.credentials(account).await?;
                Some(access.clone())
            }
            _ => None,
        };
        let mut cache = self.cache.lock().expect("no panics while held");
        let client = cache
            .entry((account.clone(), region.clone()))
            .or_insert_with(|| {
                let mut conf = self
                    .sdk
                    .to_builder()
                    .region(aws_config::Region::new(region.as_str().to_owned()));
                if let Some(access) = member {
                    conf = conf.credentials_provider(SharedCredentialsProvider::new(
                        AccountCredentials::new(access, account.clone()),
                    ));
                }
                (self.make)(&conf.build())
            });
        Ok(client.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_client_is_built_once_per_region() {
        let built = Arc::new(AtomicUsize::new(0));
        let b = built.clone();
        let clients = RegionalClients::new(move |r: &Region| {
            b.fetch_add(1, Ordering::SeqCst);
            r.as_str().to_owned()
        });
        let east: Region = "us-east-1".parse().unwrap();
        let west: Region = "us-west-2".parse().unwrap();
        assert_eq!(clients.get(&east), "us-east-1");
        assert_eq!(clients.get(&east), "us-east-1");
        assert_eq!(clients.get(&west), "us-west-2");
        assert_eq!(built.load(Ordering::SeqCst), 2);
    }
}
