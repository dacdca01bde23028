//! Entering member accounts: AssumeRole into `MEMBER_ROLE_NAME` with the hub's own
//! credentials, one set of temporary credentials per account, cached until shortly before
//! they expire and shared by the clients of every Region of that account; and the
//! organisation's account list (`MEMBER_ACCOUNTS=organization`), cached too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_organizations::types::AccountStatus;

use super::call_error;
use krg_engine::error::{Api, CallError, ErrorKind};
use krg_engine::key::AccountId;
use krg_engine::ports::AccountDirectory;
use krg_engine::tenancy::{MemberRole, SESSION_NAME};

/// Credentials are renewed this long before they expire, so that no call starts with
/// credentials that expire while it is retried.
pub const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The organisation's account list is read again after this long (accounts join and leave).
pub const ORGANIZATION_TTL: Duration = Duration::from_secs(15 * 60);

/// How long the assumed credentials are asked for (the role's maximum session duration is at
/// least this).
const SESSION_SECONDS: i32 = 3600;

type Slot = Arc<tokio::sync::Mutex<Option<Credentials>>>;

/// AssumeRole into member accounts, with a credentials cache per account.
pub struct MemberAccess {
    sts: aws_sdk_sts::Client,
    role: MemberRole,
    partition: String,
    cache: Mutex<HashMap<AccountId, Slot>>,
    assumed: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for MemberAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberAccess")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl MemberAccess {
    /// Assumes `role` in member accounts of `partition` through `sts` (the hub's own
    /// credentials).
    pub fn new(sts: aws_sdk_sts::Client, role: MemberRole, partition: &str) -> Self {
        Self {
            sts,
            role,
            partition: partition.to_owned(),
            cache: Mutex::new(HashMap::new()),
            assumed: Default::default(),
        }
    }

    /// AssumeRole calls made so far.
    pub fn assume_role_calls(&self) -> u64 {
        self.assumed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Credentials for `account`: cached ones while they are good for [`RENEW_BEFORE`]
    /// more, else a fresh AssumeRole (one at a time per account). A refusal names the role
    /// and the account (`AccessDenied`, not retryable); throttling is retryable.
    pub async fn credentials(&self, account: &AccountId) -> Result<Credentials, CallError> {
        let slot: Slot = self
            .cache
            .lock()
            .expect("no panics while held")
            .entry(account.clone())
            .or_default()
            .clone();
        let mut held = slot.lock().await;
        if let Some(c) = held.as_ref()
            && c.expiry()
                .is_some_and(|e| e > SystemTime::now() + RENEW_BEFORE)
        {
            return Ok(c.clone());
        }
        let fresh = self.assume(account).await?;
        *held = Some(fresh.clone());
        Ok(fresh)
    }

    async fn assume(&self, account: &AccountId) -> Result<Credentials, CallError> {
        let role = self.role.arn_in(account, &self.partition);
        self.assumed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self
            .sts
            .assume_role()
            .role_arn(role.as_str())
            .role_session_name(SESSION_NAME)
            .set_external_id(self.role.external_id().map(str::to_owned))
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|e| {
                let mut err = call_error(Api::AssumeRole, &role, e);
                err.message = format!("account {account}: {}", err.message);
                tracing::error!(account = %account, role = %role, error = %err, "could not enter the account");
                err
            })?;
        let c = out.credentials().ok_or_else(|| {
            CallError::new(
                Api::AssumeRole,
                &role,
                ErrorKind::Other,
                "response has no Credentials",
            )
        })?;
        let expiry = SystemTime::try_from(*c.expiration())
            .map_err(|e| CallError::new(Api::AssumeRole, &role, ErrorKind::Other, e.to_string()))?;
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            Some(expiry),
            "kms-replica-guard-member",
        ))
    }
}

/// The credentials of one member account for an SDK client: always what
/// [`MemberAccess::credentials`] holds (the client factory,
/// [`crate::clients::AccountClients`], enters the account first, so a refusal surfaces there,
/// typed, rather than inside the client).
#[derive(Debug, Clone)]
pub struct AccountCredentials {
    access: Arc<MemberAccess>,
    account: AccountId,
}

impl AccountCredentials {
    /// The provider of `account`'s credentials.
    pub fn new(access: Arc<MemberAccess>, account: AccountId) -> Self {
        Self { access, account }
    }
}

impl ProvideCredentials for AccountCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.access
                .credentials(&self.account)
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

/// The organisation's ACTIVE accounts (Organizations ListAccounts, every page), read at most
/// once per [`ORGANIZATION_TTL`]: the engine's [`AccountDirectory`].
pub struct Organization {
    client: aws_sdk_organizations::Client,
    cache: tokio::sync::Mutex<Option<(SystemTime, Vec<AccountId>)>>,
}

impl Organization {
    /// The organisation as `client` (the hub's own credentials) sees it.
    pub fn new(client: aws_sdk_organizations::Client) -> Self {
        Self {
            client,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// The ACTIVE accounts.
    pub async fn accounts(&self) -> Result<Vec<AccountId>, CallError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, accounts)) = cache.as_ref()
            && at.elapsed().is_ok_and(|age| age < ORGANIZATION_TTL)
        {
            return Ok(accounts.clone());
        }
        let mut accounts = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_accounts()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| call_error(Api::ListAccounts, "the organisation", e))?;
            for a in page.accounts() {
                if a.status() != Some(&AccountStatus::Active) {
                    continue;
                }
                match a.id().map(str::parse::<AccountId>) {
                    Some(Ok(id)) => accounts.push(id),
                    _ => {
                        tracing::warn!(account = ?a.id(), "ListAccounts entry without a usable id; skipped")
                    }
                }
            }
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        accounts.sort();
        *cache = Some((SystemTime::now(), accounts.clone()));
        Ok(accounts)
    }
}

impl AccountDirectory for Organization {
    async fn organization_accounts(&self) -> Result<Vec<AccountId>, CallError> {
        self.accounts().await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! AssumeRole and ListAccounts against the real client types, answers scripted with
    //! aws-smithy-mocks (the emulator has no Organizations).
    use super::*;
    use aws_sdk_organizations::operation::list_accounts::ListAccountsOutput;
    use aws_sdk_organizations::types::Account;
    use aws_sdk_sts::error::ErrorMetadata;
    use aws_sdk_sts::operation::assume_role::{AssumeRoleError, AssumeRoleOutput};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn id(s: &str) -> AccountId {
        s.parse().unwrap()
    }

    fn role() -> MemberRole {
        MemberRole::new("kms-replica-guard-member", Some("ext-1".into())).unwrap()
    }

    /// An AssumeRole answer with credentials under `access_key_id`, expiring in `expires_in`
    /// (also the factory's tests' member credentials, `crate::clients`).
    pub(crate) fn assumed(access_key_id: &str, expires_in: Duration) -> AssumeRoleOutput {
        let expiry = aws_sdk_sts::primitives::DateTime::from(SystemTime::now() + expires_in);
        AssumeRoleOutput::builder()
            .credentials(
                aws_sdk_sts::types::Credentials::builder()
                    .access_key_id(access_key_id)
                    .secret_access_key("secret")
                    .session_token("token")
                    .expiration(expiry)
                    .build()
                    .unwrap(),
            )
            .build()
    }

    #[tokio::test]
    async fn credentials_are_cached_per_account_until_shortly_before_they_expire() {
        let good = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| {
                r.role_session_name() == Some(SESSION_NAME)
                    && r.external_id() == Some("ext-1")
                    && r.role_arn()
                        .is_some_and(|a| a.ends_with(":role/kms-replica-guard-member"))
            })
            .then_output(|| assumed("ASIA", Duration::from_secs(3600)));
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&good]);
        let access = MemberAccess::new(sts, role(), "aws");
        access.credentials(&id("222233334444")).await.unwrap();
        access.credentials(&id("222233334444")).await.unwrap();
        assert_eq!(access.assume_role_calls(), 1, "cached for the account");
        access.credentials(&id("333344445555")).await.unwrap();
        assert_eq!(access.assume_role_calls(), 2, "one AssumeRole per account");
        assert_eq!(good.num_calls(), 2);
    }

    #[tokio::test]
    async fn credentials_about_to_expire_are_renewed() {
        let short = mock!(aws_sdk_sts::Client::assume_role)
            .then_output(|| assumed("ASIA", Duration::from_secs(60)));
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&short]);
        let access = MemberAccess::new(sts, role(), "aws");
        access.credentials(&id("222233334444")).await.unwrap();
        access.credentials(&id("222233334444")).await.unwrap();
        assert_eq!(short.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_refused_assume_role_names_the_role_and_account_and_is_not_retryable() {
        let denied = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
            AssumeRoleError::generic(
                ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("User is not authorized to perform: sts:AssumeRole")
                    .build(),
            )
        });
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&denied]);
        let access = MemberAccess::new(sts, role(), "aws");
        let e = access.credentials(&id("222233334444")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDenied, "{e}");
        assert!(!e.kind.is_retryable());
        let text = e.to_string();
        assert!(
            text.contains("arn:aws:iam::222233334444:role/kms-replica-guard-member")
                && text.contains("account 222233334444"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_throttled_assume_role_is_retryable() {
        let throttled = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
            AssumeRoleError::generic(
                ErrorMetadata::builder()
                    .code("Throttling")
                    .message("Rate exceeded")
                    .build(),
            )
        });
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&throttled], |c| c
            .retry_config(
                aws_sdk_sts::config::retry::RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(1))
            ));
        let access = MemberAccess::new(sts, role(), "aws");
        let e = access.credentials(&id("222233334444")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Throttled, "{e}");
        assert!(e.kind.is_retryable());
    }

    fn account(id: &str, status: AccountStatus) -> Account {
        Account::builder().id(id).status(status).build()
    }

    #[tokio::test]
    async fn the_organisation_lists_its_active_accounts_over_every_page_and_is_cached() {
        let first = mock!(aws_sdk_organizations::Client::list_accounts)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                ListAccountsOutput::builder()
                    .accounts(account("222233334444", AccountStatus::Active))
                    .accounts(account("999988887777", AccountStatus::Suspended))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(aws_sdk_organizations::Client::list_accounts)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                ListAccountsOutput::builder()
                    .accounts(account("111122223333", AccountStatus::Active))
                    .accounts(account("555566667777", AccountStatus::PendingClosure))
                    .build()
            });
        let client = mock_client!(aws_sdk_organizations, RuleMode::MatchAny, [&first, &second]);
        let org = Organization::new(client);
        let listed = org.accounts().await.unwrap();
        assert_eq!(listed, vec![id("111122223333"), id("222233334444")]);
        org.accounts().await.unwrap();
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1), "read once");
    }

    #[tokio::test]
    async fn an_organisation_that_cannot_be_listed_is_an_access_error() {
        let denied = mock!(aws_sdk_organizations::Client::list_accounts).then_error(|| {
            aws_sdk_organizations::operation::list_accounts::ListAccountsError::generic(
                aws_sdk_organizations::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("You don't have permissions to access this resource.")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_organizations, RuleMode::MatchAny, [&denied]);
        let e = Organization::new(client).accounts().await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDenied);
        assert_eq!(e.operation, Api::ListAccounts);
    }
}
