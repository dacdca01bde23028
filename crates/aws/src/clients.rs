//! The one place that builds SDK clients: the configuration is loaded once, every client
//! shares one HTTPS client (one connection pool, one root certificate store), and there is
//! one client per (account, Region), created on first use and reused (connections stay warm
//! across invocations).

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

/// Clients of one service per (account, Region), built on first use and reused: the one
/// place that makes a client for a place. The function's own credentials serve its home
/// account (and every account when there are no members); the member role's serve the
/// others, each account entered (AssumeRole) before its first client is handed out. KMS,
/// Security Hub and Config each hold one.
pub struct AccountClients<C> {
    sdk: SdkConfig,
    members: Option<(AccountId, Arc<MemberAccess>)>,
    make: Box<dyn Fn(&SdkConfig) -> C + Send + Sync>,
    cache: Mutex<HashMap<(Option<AccountId>, Region), C>>,
}

impl<C: Clone> AccountClients<C> {
    /// Clients made by `make` from `sdk` (its endpoint, retries and timeouts) with the Region,
    /// and in a member account the credentials, of each place; `members`: the home account
    /// and the way into the others. A test or a benchmark passes a `make` that hands out
    /// its own client, or an `sdk` pointed at an emulator.
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

    /// The member account whose role a call in `account` goes through: `None` for the home
    /// account, for any account when there are no members, and for a call that names no
    /// account (the function's own).
    pub fn member<'a>(&self, account: Option<&'a AccountId>) -> Option<&'a AccountId> {
        match (&self.members, account) {
            (Some((home, _)), Some(account)) if home != account => Some(account),
            _ => None,
        }
    }

    /// The client for `account` (`None`: the function's own) in `region`. A member account
    /// is entered first, so a refused AssumeRole is reported here, typed, naming the role
    /// and the account; accounts on the function's own credentials share one client per
    /// Region.
    pub async fn get(&self, account: Option<&AccountId>, region: &Region) -> Result<C, CallError> {
        let member = self.member(account);
        let access = match (&self.members, member) {
            (Some((_, access)), Some(account)) => {
                access.credentials(account).await?;
                Some(access.clone())
            }
            _ => None,
        };
        let mut cache = self.cache.lock().expect("no panics while held");
        let client = cache
            .entry((member.cloned(), region.clone()))
            .or_insert_with(|| {
                let mut conf = self
                    .sdk
                    .to_builder()
                    .region(aws_config::Region::new(region.as_str().to_owned()));
                if let (Some(access), Some(account)) = (access, member) {
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
    //! The factory with a `make` that hands out the configuration it was given, so each test
    //! reads the Region and the credentials a client would have; AssumeRole scripted with
    //! aws-smithy-mocks.
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::ProvideCredentials;
    use aws_sdk_sts::operation::assume_role::{AssumeRoleError, AssumeRoleOutput};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use krg_engine::error::ErrorKind;
    use krg_engine::tenancy::MemberRole;

    const HOME: &str = "111122223333";
    const MEMBER: &str = "222233334444";

    fn id(s: &str) -> AccountId {
        s.parse().unwrap()
    }

    fn region(s: &str) -> Region {
        s.parse().unwrap()
    }

    fn member_credentials() -> AssumeRoleOutput {
        crate::members::tests::assumed("ASIAMEMBER", Duration::from_secs(3600))
    }

    /// A factory whose home account is [`HOME`], its `make` counted; members entered through
    /// `sts`.
    fn factory(
        sts: &Rule,
        built: Arc<AtomicUsize>,
    ) -> (AccountClients<SdkConfig>, Arc<MemberAccess>) {
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [sts]);
        let role = MemberRole::new("kms-replica-guard-member", None).unwrap();
        let access = Arc::new(MemberAccess::new(sts, role, "aws"));
        let sdk = SdkConfig::builder()
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDHOME", "secret", None, None, "test",
            )))
            .build();
        let clients = AccountClients::new(&sdk, Some((id(HOME), access.clone())), move |c| {
            built.fetch_add(1, Ordering::SeqCst);
            c.clone()
        });
        (clients, access)
    }

    async fn key_id(conf: &SdkConfig) -> String {
        let provider = conf.credentials_provider().expect("credentials");
        provider
            .provide_credentials()
            .await
            .unwrap()
            .access_key_id()
            .to_owned()
    }

    #[tokio::test]
    async fn the_home_account_uses_the_functions_own_credentials_and_one_client_per_region() {
        let sts = mock!(aws_sdk_sts::Client::assume_role).then_output(member_credentials);
        let built = Arc::new(AtomicUsize::new(0));
        let (clients, access) = factory(&sts, built.clone());
        let east = region("us-east-1");
        let home = clients.get(Some(&id(HOME)), &east).await.unwrap();
        let own = clients.get(None, &east).await.unwrap();
        assert_eq!(
            built.load(Ordering::SeqCst),
            1,
            "the home account is the function's own"
        );
        assert_eq!(home.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert_eq!(key_id(&home).await, key_id(&own).await);
        assert_eq!(key_id(&home).await, "AKIDHOME");
        let west = clients.get(None, &region("us-west-2")).await.unwrap();
        assert_eq!(west.region().map(|r| r.as_ref()), Some("us-west-2"));
        assert_eq!(built.load(Ordering::SeqCst), 2, "one client per Region");
        assert_eq!(access.assume_role_calls(), 0, "no account entered");
    }

    #[tokio::test]
    async fn a_member_account_is_entered_first_and_gets_one_client_per_region_on_its_role() {
        let sts = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| {
                r.role_arn() == Some("arn:aws:iam::222233334444:role/kms-replica-guard-member")
            })
            .then_output(member_credentials);
        let built = Arc::new(AtomicUsize::new(0));
        let (clients, access) = factory(&sts, built.clone());
        let member = id(MEMBER);
        assert_eq!(clients.member(Some(&member)), Some(&member));
        assert_eq!(clients.member(Some(&id(HOME))), None);
        assert_eq!(clients.member(None), None);
        let east = clients
            .get(Some(&member), &region("us-east-1"))
            .await
            .unwrap();
        assert_eq!(
            access.assume_role_calls(),
            1,
            "entered before its first client"
        );
        assert_eq!(key_id(&east).await, "ASIAMEMBER");
        clients
            .get(Some(&member), &region("us-east-1"))
            .await
            .unwrap();
        let west = clients
            .get(Some(&member), &region("us-west-2"))
            .await
            .unwrap();
        assert_eq!(west.region().map(|r| r.as_ref()), Some("us-west-2"));
        assert_eq!(key_id(&west).await, "ASIAMEMBER");
        assert_eq!(
            built.load(Ordering::SeqCst),
            2,
            "one client per (account, Region)"
        );
        assert_eq!(
            access.assume_role_calls(),
            1,
            "credentials shared by the Regions"
        );
        assert_eq!(sts.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_refused_member_account_is_a_typed_error_and_no_client() {
        let sts = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
            AssumeRoleError::generic(
                aws_sdk_sts::error::ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("User is not authorized to perform: sts:AssumeRole")
                    .build(),
            )
        });
        let built = Arc::new(AtomicUsize::new(0));
        let (clients, _) = factory(&sts, built.clone());
        let e = clients
            .get(Some(&id(MEMBER)), &region("us-east-1"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDenied, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("arn:aws:iam::222233334444:role/kms-replica-guard-member")
                && text.contains("account 222233334444"),
            "{text}"
        );
        assert_eq!(built.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn without_members_every_account_uses_the_functions_own_credentials() {
        let built = Arc::new(AtomicUsize::new(0));
        let b = built.clone();
        let clients = AccountClients::new(&SdkConfig::builder().build(), None, move |c| {
            b.fetch_add(1, Ordering::SeqCst);
            c.clone()
        });
        let east = region("us-east-1");
        assert_eq!(clients.member(Some(&id(MEMBER))), None);
        clients.get(Some(&id(MEMBER)), &east).await.unwrap();
        clients.get(Some(&id(HOME)), &east).await.unwrap();
        clients.get(None, &east).await.unwrap();
        assert_eq!(built.load(Ordering::SeqCst), 1);
    }
}
