//! KMS adapter: DescribeKey, ListKeys, ListResourceTags, GetKeyPolicy, PutKeyPolicy on the
//! client of the key's own account and Region (a member account's on the member role,
//! [`crate::clients::AccountClients`]), each call paced by a client-side rate limit per
//! account, Region and operation (below the account's KMS quotas) and counted.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::types::MultiRegionKeyType;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::call_error;
use super::clients::AccountClients;
use krg_engine::decide::{KeyFacts, KeyState, MultiRegion, MultiRegionRole};
use krg_engine::error::{Api, CallError, ErrorKind};
use krg_engine::key::{AccountId, KeyArn, Place, Region};
use krg_engine::ports::{KeyDirectory, PolicyStore, Tags};

/// The only policy name KMS supports; the emulator needs it sent explicitly.
const POLICY_NAME: &str = "default";

/// ListKeys' page size: the largest KMS serves. A sweep lists every Region before its first
/// DescribeKey, one page after another; at the service default (100) a Region of 1,000 keys
/// cost ten sequential round trips (BENCHMARKS.md, "Organisation scale").
pub const LIST_KEYS_PAGE: i32 = 1000;

/// Client-side requests per second, per account and Region, for each KMS operation the tool
/// calls: the whole function's budget, shared by the execution environments that can run at
/// once (`instances`). KMS quotas are per account and Region while these limiters are per
/// process, so each environment paces at `limit / instances`. The defaults stay under the
/// default KMS quotas (DescribeKey 2000/s, GetKeyPolicy 1000/s, PutKeyPolicy 15/s, ListKeys
/// and ListResourceTags 100/s per account and Region) with a fifth left for everything else
/// in the account. Accounts with lower quotas lower these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// DescribeKey.
    pub describe_key: u32,
    /// GetKeyPolicy.
    pub get_key_policy: u32,
    /// PutKeyPolicy.
    pub put_key_policy: u32,
    /// ListKeys pages.
    pub list_keys: u32,
    /// ListResourceTags pages.
    pub list_resource_tags: u32,
    /// Execution environments that may call at once (the function's reserved concurrency;
    /// the stacks pass it as `RATE_INSTANCES`), at least 1.
    pub instances: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            describe_key: 1600,
            get_key_policy: 800,
            put_key_policy: 12,
            list_keys: 80,
            list_resource_tags: 80,
            instances: 1,
        }
    }
}

impl RateLimits {
    /// This process's share of one operation's budget: one request every `period`, with
    /// bursts of at most `burst` (the share of a second's requests, at least one), on a
    /// clock `dilation` times slower than the wall clock (1: the wall clock): each period
    /// that many times longer, the burst (a count of requests) the same.
    fn share_dilated(&self, limit: u32, dilation: u32) -> (Duration, NonZeroU32) {
        let instances = self.instances.max(1);
        let limit = limit.max(1);
        let period = Duration::from_secs_f64(
            f64::from(instances) * f64::from(dilation.max(1)) / f64::from(limit),
        );
        let burst = NonZeroU32::new((limit / instances).max(1)).expect("at least 1");
        (period, burst)
    }
}

/// The KMS operations the tool calls; each has its own quota, rate limiter and call count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// DescribeKey.
    DescribeKey,
    /// GetKeyPolicy.
    GetKeyPolicy,
    /// PutKeyPolicy.
    PutKeyPolicy,
    /// ListKeys (one call per page).
    ListKeys,
    /// ListResourceTags (one call per page).
    ListResourceTags,
}

impl Operation {
    /// Every operation, in the order of the pacing arrays.
    pub const ALL: [Operation; 5] = [
        Operation::DescribeKey,
        Operation::GetKeyPolicy,
        Operation::PutKeyPolicy,
        Operation::ListKeys,
        Operation::ListResourceTags,
    ];

    /// The API operation, as a failed call names it.
    pub fn api(self) -> Api {
        match self {
            Operation::DescribeKey => Api::DescribeKey,
            Operation::GetKeyPolicy => Api::GetKeyPolicy,
            Operation::PutKeyPolicy => Api::PutKeyPolicy,
            Operation::ListKeys => Api::ListKeys,
            Operation::ListResourceTags => Api::ListResourceTags,
        }
    }

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::DescribeKey => "DescribeKey",
            Operation::GetKeyPolicy => "GetKeyPolicy",
            Operation::PutKeyPolicy => "PutKeyPolicy",
            Operation::ListKeys => "ListKeys",
            Operation::ListResourceTags => "ListResourceTags",
        }
    }

    fn limit(self, limits: &RateLimits) -> u32 {
        match self {
            Operation::DescribeKey => limits.describe_key,
            Operation::GetKeyPolicy => limits.get_key_policy,
            Operation::PutKeyPolicy => limits.put_key_policy,
            Operation::ListKeys => limits.list_keys,
            Operation::ListResourceTags => limits.list_resource_tags,
        }
    }
}

/// Whose quota a call spends: the function's own account (`None`) or a member account, in
/// a Region.
type QuotaKey = (Option<AccountId>, Region);

struct Pacing {
    limiters: [DefaultKeyedRateLimiter<QuotaKey>; 5],
    calls: [AtomicU64; 5],
}

impl Pacing {
    fn new(limits: RateLimits, dilation: u32) -> Self {
        let quota = |n: u32| {
            let (period, burst) = limits.share_dilated(n, dilation);
            Quota::with_period(period)
                .expect("a positive period")
                .allow_burst(burst)
        };
        Self {
            limiters: Operation::ALL
                .map(|op| DefaultKeyedRateLimiter::keyed(quota(op.limit(&limits)))),
            calls: Default::default(),
        }
    }

    /// Waits for the operation's budget in the account and Region, then counts the call.
    async fn admit(&self, operation: Operation, quota: &QuotaKey) {
        let i = operation as usize;
        self.limiters[i].until_key_ready(quota).await;
        self.calls[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// KMS through per-account, per-Region SDK clients ([`AccountClients`]: in member accounts
/// on the member role).
#[derive(Clone)]
pub struct Kms {
    clients: Arc<AccountClients<Client>>,
    pacing: Arc<Pacing>,
    page_size: i32,
}

impl Kms {
    /// An adapter over these clients with the default rate limits.
    pub fn new(clients: AccountClients<Client>) -> Self {
        Self::with_limits(clients, RateLimits::default())
    }

    /// An adapter over these clients with these rate limits.
    pub fn with_limits(clients: AccountClients<Client>, limits: RateLimits) -> Self {
        Self::with_limits_dilated(clients, limits, 1)
    }

    /// These limits paced on a clock `dilation` times slower than the wall clock, for a KMS
    /// simulator that runs its own time that many times slower (benchmarks): each limiter's
    /// period is `dilation` times longer, its burst the same number of requests, so the
    /// guard's pace against the simulated quotas is the deployed one. (A budget divided
    /// through `RATE_INSTANCES` would also shrink the bursts, which a slower clock does not.)
    pub fn with_limits_dilated(
        clients: AccountClients<Client>,
        limits: RateLimits,
        dilation: u32,
    ) -> Self {
        Self {
            clients: Arc::new(clients),
            pacing: Arc::new(Pacing::new(limits, dilation)),
            page_size: LIST_KEYS_PAGE,
        }
    }

    /// Asks ListKeys for pages of at most `n` keys (default [`LIST_KEYS_PAGE`]).
    pub fn with_page_size(mut self, n: i32) -> Self {
        self.page_size = n;
        self
    }

    /// KMS calls made so far, by operation.
    pub fn call_counts(&self) -> BTreeMap<&'static str, u64> {
        Operation::ALL
            .iter()
            .zip(&self.pacing.calls)
            .map(|(op, n)| (op.name(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// The client for `region` of `account` (`None`: the function's own), once the call
    /// fits the operation's budget there.
    async fn client(
        &self,
        operation: Operation,
        account: Option<&AccountId>,
        region: &Region,
    ) -> Result<Client, CallError> {
        let quota = (self.clients.member(account).cloned(), region.clone());
        self.pacing.admit(operation, &quota).await;
        self.clients.get(account, region).await
    }
}

fn arn_of(operation: Api, key: &KeyArn, arn: Option<&str>) -> Result<KeyArn, CallError> {
    arn.ok_or("missing ARN")
        .and_then(|a| a.parse::<KeyArn>().map_err(|_| "malformed ARN"))
        .map_err(|why| {
            CallError::new(
                operation,
                key,
                ErrorKind::Other,
                format!("response has a {why}"),
            )
        })
}

impl KeyDirectory for Kms {
    async fn describe_key(&self, key: &KeyArn) -> Result<KeyFacts, CallError> {
        const OP: Operation = Operation::DescribeKey;
        let out = self
            .client(OP, Some(key.account()), key.region())
            .await?
            .describe_key()
            .key_id(key.as_str())
            .send()
            .await
            .map_err(|e| call_error(OP.api(), key, e))?;
        let meta = out.key_metadata().ok_or_else(|| {
            CallError::new(
                OP.api(),
                key,
                ErrorKind::Other,
                "response has no KeyMetadata",
            )
        })?;
        let state = meta
            .key_state()
            .map(|s| KeyState::parse(s.as_str()))
            .unwrap_or_else(|| KeyState::Other("unknown".into()));
        let multi_region = match meta.multi_region_configuration() {
            Some(mrc) if meta.multi_region() == Some(true) => {
                let role = match mrc.multi_region_key_type() {
                    Some(MultiRegionKeyType::Primary) => MultiRegionRole::Primary,
                    Some(MultiRegionKeyType::Replica) => MultiRegionRole::Replica,
                    other => {
                        return Err(CallError::new(
                            OP.api(),
                            key,
                            ErrorKind::Other,
                            format!("unknown MultiRegionKeyType {other:?}"),
                        ));
                    }
                };
                let primary = arn_of(OP.api(), key, mrc.primary_key().and_then(|p| p.arn()))?;
                let replicas = mrc
                    .replica_keys()
                    .iter()
                    .map(|r| arn_of(OP.api(), key, r.arn()))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(MultiRegion {
                    role,
                    primary,
                    replicas,
                })
            }
            _ => None,
        };
        Ok(KeyFacts {
            arn: key.clone(),
            state,
            multi_region,
        })
    }

    async fn tags(&self, key: &KeyArn) -> Result<Tags, CallError> {
        const OP: Operation = Operation::ListResourceTags;
        let mut tags = Tags::new();
        let mut marker = None;
        loop {
            let page = self
                .client(OP, Some(key.account()), key.region())
                .await?
                .list_resource_tags()
                .key_id(key.as_str())
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| call_error(OP.api(), key, e))?;
            tags.extend(
                page.tags()
                    .iter()
                    .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned())),
            );
            match page.next_marker {
                Some(m) if page.truncated => marker = Some(m),
                _ => return Ok(tags),
            }
        }
    }

    async fn list_multi_region_keys(&self, place: &Place) -> Result<Vec<KeyArn>, CallError> {
        const OP: Operation = Operation::ListKeys;
        let region = &place.region;
        let mut keys = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client(OP, place.account.as_ref(), region)
                .await?
                .list_keys()
                .limit(self.page_size)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| call_error(OP.api(), place, e))?;
            for entry in page.keys() {
                // Single-Region keys are dropped here: no further call is ever made for them.
                if !entry.key_id().is_some_and(|id| id.starts_with("mrk-")) {
                    continue;
                }
                match entry.key_arn().map(str::parse::<KeyArn>) {
                    Some(Ok(arn)) => keys.push(arn),
                    _ => {
                        tracing::warn!(region = %region, entry = ?entry, "ListKeys entry without a usable ARN; skipped")
                    }
                }
            }
            match page.next_marker {
                Some(m) if page.truncated => marker = Some(m),
                _ => return Ok(keys),
            }
        }
    }
}

impl PolicyStore for Kms {
    async fn get_policy(&self, key: &KeyArn) -> Result<String, CallError> {
        const OP: Operation = Operation::GetKeyPolicy;
        let out = self
            .client(OP, Some(key.account()), key.region())
            .await?
            .get_key_policy()
            .key_id(key.as_str())
            .policy_name(POLICY_NAME)
            .send()
            .await
            .map_err(|e| call_error(OP.api(), key, e))?;
        out.policy.ok_or_else(|| {
            CallError::new(OP.api(), key, ErrorKind::Other, "response has no Policy")
        })
    }

    async fn put_policy(&self, key: &KeyArn, policy: &str) -> Result<(), CallError> {
        // BypassPolicyLockoutSafetyCheck is deliberately never set: KMS's own lockout check
        // stays on as a second guard behind ours.
        const OP: Operation = Operation::PutKeyPolicy;
        self.client(OP, Some(key.account()), key.region())
            .await?
            .put_key_policy()
            .key_id(key.as_str())
            .policy_name(POLICY_NAME)
            .policy(policy)
            .send()
            .await
            .map_err(|e| call_error(OP.api(), key, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The adapter against the real client types, with responses (and failures) scripted by
    //! aws-smithy-mocks: SDK retries on throttling, and the error classes the engine relies on.
    use super::*;
    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::operation::describe_key::{DescribeKeyError, DescribeKeyOutput};
    use aws_sdk_kms::operation::get_key_policy::{GetKeyPolicyError, GetKeyPolicyOutput};
    use aws_sdk_kms::operation::put_key_policy::{PutKeyPolicyError, PutKeyPolicyOutput};
    use aws_sdk_kms::types::{
        KeyMetadata, KeyState as SdkState, MultiRegionConfiguration, MultiRegionKey,
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use std::time::Duration;

    use krg_engine::baseline::{Baseline, Template};
    use krg_engine::outcome::Action;
    use krg_engine::retry::Backoff;
    use krg_engine::trigger::{EventInfo, Scope, Target, Trigger};
    use krg_engine::{Mode, Reconciler, Settings};

    const REPLICA: &str =
        "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    const PRIMARY: &str =
        "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;

    fn kms(rules: &[&Rule]) -> Kms {
        let client = mock_client!(aws_sdk_kms, RuleMode::Sequential, rules, |c| c
            .retry_config(
                aws_sdk_kms::config::retry::RetryConfig::standard()
                    .with_max_attempts(4)
                    .with_initial_backoff(Duration::from_millis(1))
            ));
        let sdk = aws_config::SdkConfig::builder().build();
        Kms::new(AccountClients::new(&sdk, None, move |_| client.clone()))
    }

    fn error_meta(code: &str) -> ErrorMetadata {
        ErrorMetadata::builder()
            .code(code)
            .message("scripted")
            .build()
    }

    fn throttled() -> GetKeyPolicyError {
        GetKeyPolicyError::generic(error_meta("ThrottlingException"))
    }

    fn key() -> KeyArn {
        REPLICA.parse().unwrap()
    }

    fn replica_metadata(state: SdkState) -> DescribeKeyOutput {
        let mrc = MultiRegionConfiguration::builder()
            .multi_region_key_type(MultiRegionKeyType::Replica)
            .primary_key(
                MultiRegionKey::builder()
                    .arn(PRIMARY)
                    .region("us-east-1")
                    .build(),
            )
            .replica_keys(
                MultiRegionKey::builder()
                    .arn(REPLICA)
                    .region("us-west-2")
                    .build(),
            )
            .build();
        DescribeKeyOutput::builder()
            .key_metadata(
                KeyMetadata::builder()
                    .key_id("mrk-1234abcd12ab34cd56ef1234567890ab")
                    .arn(REPLICA)
                    .key_state(state)
                    .multi_region(true)
                    .multi_region_configuration(mrc)
                    .build()
                    .unwrap(),
            )
            .build()
    }

    #[tokio::test]
    async fn throttling_is_retried_by_the_sdk_until_it_succeeds() {
        let rule = mock!(Client::get_key_policy)
            .sequence()
            .error(throttled)
            .times(2)
            .output(|| GetKeyPolicyOutput::builder().policy(POLICY).build())
            .build();
        let policy = kms(&[&rule]).get_policy(&key()).await.unwrap();
        assert_eq!(policy, POLICY);
        assert_eq!(rule.num_calls(), 3);
    }

    #[tokio::test]
    async fn throttling_past_the_retry_budget_is_a_retryable_throttled_error() {
        let rule = mock!(Client::get_key_policy)
            .sequence()
            .error(throttled)
            .times(10)
            .build();
        let err = kms(&[&rule]).get_policy(&key()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Throttled, "{err}");
        assert!(err.kind.is_retryable());
        assert_eq!(rule.num_calls(), 4, "max attempts");
        assert!(err.to_string().contains("GetKeyPolicy") && err.to_string().contains(REPLICA));
    }

    #[tokio::test]
    async fn not_found_access_denied_and_5xx_are_classified() {
        let not_found = mock!(Client::describe_key).then_error(|| {
            DescribeKeyError::NotFoundException(
                aws_sdk_kms::types::error::NotFoundException::builder()
                    .meta(error_meta("NotFoundException"))
                    .build(),
            )
        });
        let err = kms(&[&not_found]).describe_key(&key()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

        let denied = mock!(Client::put_key_policy)
            .then_error(|| PutKeyPolicyError::generic(error_meta("AccessDeniedException")));
        let err = kms(&[&denied])
            .put_policy(&key(), POLICY)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::AccessDenied);
        assert!(!err.kind.is_retryable());
        assert!(
            err.to_string().contains("grant the function's role"),
            "{err}"
        );

        let unavailable = mock!(Client::get_key_policy)
            .sequence()
            .http_status(503, None)
            .times(10)
            .build();
        let err = kms(&[&unavailable]).get_policy(&key()).await.unwrap_err();
        assert!(err.kind.is_retryable(), "{err:?}");
        assert_eq!(unavailable.num_calls(), 4, "5xx retried by the SDK");
    }

    #[tokio::test]
    async fn put_sends_the_default_policy_name_and_never_the_lockout_bypass() {
        let put = mock!(Client::put_key_policy)
            .match_requests(|r| {
                r.policy_name() == Some("default")
                    && r.bypass_policy_lockout_safety_check().is_none()
                    && r.policy() == Some(POLICY)
            })
            .then_output(|| PutKeyPolicyOutput::builder().build());
        kms(&[&put]).put_policy(&key(), POLICY).await.unwrap();
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_region_of_up_to_a_thousand_keys_is_listed_in_one_call() {
        let list = mock!(Client::list_keys)
            .match_requests(|r| r.limit() == Some(LIST_KEYS_PAGE) && r.marker().is_none())
            .then_output(|| {
                aws_sdk_kms::operation::list_keys::ListKeysOutput::builder()
                    .keys(
                        aws_sdk_kms::types::KeyListEntry::builder()
                            .key_id("mrk-1234abcd12ab34cd56ef1234567890ab")
                            .key_arn(REPLICA)
                            .build(),
                    )
                    .truncated(false)
                    .build()
            });
        let place = Place::new(None, "us-west-2".parse().unwrap());
        let keys = kms(&[&list]).list_multi_region_keys(&place).await.unwrap();
        assert_eq!(keys, vec![key()]);
        assert_eq!(list.num_calls(), 1);
    }

    #[tokio::test]
    async fn describe_maps_multi_region_metadata() {
        let rule = mock!(Client::describe_key).then_output(|| replica_metadata(SdkState::Enabled));
        let facts = kms(&[&rule]).describe_key(&key()).await.unwrap();
        let mr = facts.multi_region.unwrap();
        assert_eq!(mr.role, MultiRegionRole::Replica);
        assert_eq!(mr.primary.as_str(), PRIMARY);
        assert_eq!(mr.replicas, vec![key()]);
        assert_eq!(facts.state, KeyState::Enabled);
    }

    /// The whole engine over the real adapter: a replica that is not visible, then
    /// `Creating`, then ready, is fixed once it is ready.
    #[tokio::test]
    async fn the_engine_waits_through_not_found_then_fixes_the_replica_while_it_is_creating() {
        let describe = mock!(Client::describe_key)
            .sequence()
            .error(|| {
                DescribeKeyError::NotFoundException(
                    aws_sdk_kms::types::error::NotFoundException::builder()
                        .meta(error_meta("NotFoundException"))
                        .build(),
                )
            })
            .output(|| replica_metadata(SdkState::Creating))
            .build();
        let default_policy = POLICY.replace("\"Sid\":\"Root\"", "\"Sid\":\"Default\"");
        let get_live = mock!(Client::get_key_policy).then_output(move || {
            GetKeyPolicyOutput::builder()
                .policy(default_policy.clone())
                .build()
        });
        let put =
            mock!(Client::put_key_policy).then_output(|| PutKeyPolicyOutput::builder().build());
        let get_after = mock!(Client::get_key_policy)
            .then_output(|| GetKeyPolicyOutput::builder().policy(POLICY).build());
        let kms = kms(&[&describe, &get_live, &put, &get_after]);
        let settings = Arc::new(Settings {
            mode: Mode::Enforce,
            baseline: Baseline::Template(Template::new("literal", POLICY).unwrap()),
            baseline_match: Default::default(),
            mirror_rewrite: false,
            exclude_tag: Some("x".into()),
            remediator: None,
            consistency: Backoff {
                attempts: 5,
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            concurrency: 1,
            sweep_regions: vec![],
            flap: krg_engine::FlapGuard::default(),
            trusted: Default::default(),
            exemption_max: None,
            tenancy: Default::default(),
        });
        let tags = mock!(Client::list_resource_tags).then_output(|| {
            aws_sdk_kms::operation::list_resource_tags::ListResourceTagsOutput::builder().build()
        });
        let tag_client = self::kms(&[&tags]);
        // Tags come from a second client so the sequential rules above stay in call order.
        struct Split(Kms, Kms);
        impl KeyDirectory for Split {
            async fn describe_key(&self, k: &KeyArn) -> Result<KeyFacts, CallError> {
                self.0.describe_key(k).await
            }
            async fn tags(&self, k: &KeyArn) -> Result<Tags, CallError> {
                self.1.tags(k).await
            }
            async fn list_multi_region_keys(&self, p: &Place) -> Result<Vec<KeyArn>, CallError> {
                self.0.list_multi_region_keys(p).await
            }
        }
        let engine = Reconciler::new(Split(kms.clone(), tag_client), kms, settings);
        let report = engine
            .run(&Trigger::Keys {
                event: EventInfo::default(),
                targets: vec![Target {
                    key: key(),
                    scope: Scope::Key,
                }],
            })
            .await;
        assert_eq!(
            report.outcomes[0].action(),
            Action::Remediated,
            "{report:#?}"
        );
        assert_eq!(
            describe.num_calls(),
            2,
            "NotFound is waited for, Creating is not"
        );
        assert_eq!(put.num_calls(), 1);
        assert_eq!(tags.num_calls(), 1);
    }

    #[tokio::test]
    async fn kms_refusals_of_a_policy_are_told_apart_by_their_message() {
        let refused = |message: &'static str| {
            move || {
                PutKeyPolicyError::MalformedPolicyDocumentException(
                    aws_sdk_kms::types::error::MalformedPolicyDocumentException::builder()
                        .meta(
                            ErrorMetadata::builder()
                                .code("MalformedPolicyDocumentException")
                                .message(message)
                                .build(),
                        )
                        .build(),
                )
            }
        };
        for (message, kind) in [
            (
                "Policy contains a statement with one or more invalid principals.",
                ErrorKind::InvalidPrincipals,
            ),
            (
                "The new key policy will not allow you to update the key policy in the future.",
                ErrorKind::LockoutRefused,
            ),
            ("Policy contains invalid JSON", ErrorKind::Invalid),
        ] {
            let rule = mock!(Client::put_key_policy).then_error(refused(message));
            let e = kms(&[&rule]).put_policy(&key(), POLICY).await.unwrap_err();
            assert_eq!(e.kind, kind, "{message}: {e}");
            assert!(!e.kind.is_retryable(), "{message}");
        }
    }

    #[test]
    fn each_execution_environment_paces_at_its_share_of_the_budget() {
        let one = RateLimits::default();
        assert_eq!(
            one.share_dilated(12, 1),
            (
                Duration::from_secs_f64(1.0 / 12.0),
                NonZeroU32::new(12).unwrap()
            )
        );
        let five = RateLimits {
            instances: 5,
            ..RateLimits::default()
        };
        // 12 PutKeyPolicy/s for the function: 2.4/s each, one every 417 ms, bursts of 2.
        let (period, burst) = five.share_dilated(12, 1);
        assert_eq!(period.as_millis(), 416);
        assert_eq!(burst.get(), 2);
        // More environments than requests per second: less than one a second each.
        let (period, burst) = RateLimits {
            instances: 24,
            ..one
        }
        .share_dilated(12, 1);
        assert_eq!((period, burst.get()), (Duration::from_secs(2), 1));
        // On a clock 32 times slower: one every 32/12 s, still 12 at once.
        let (period, burst) = one.share_dilated(12, 32);
        assert_eq!(
            (period, burst.get()),
            (Duration::from_secs_f64(32.0 / 12.0), 12)
        );
    }
}
