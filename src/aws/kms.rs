//! KMS adapter: DescribeKey, ListKeys, ListResourceTags, GetKeyPolicy, PutKeyPolicy on the
//! client of the key's own Region.

use std::sync::Arc;

use aws_sdk_kms::Client;
use aws_sdk_kms::types::MultiRegionKeyType;

use super::call_error;
use super::clients::RegionalClients;
use crate::core::decide::{KeyFacts, KeyState, MultiRegion, MultiRegionRole};
use crate::core::key::{KeyArn, Region};
use crate::reconcile::ports::{CallError, ErrorKind, KeyDirectory, PolicyStore};

/// The only policy name KMS supports; the emulator needs it sent explicitly.
const POLICY_NAME: &str = "default";

/// KMS through per-Region SDK clients.
#[derive(Clone)]
pub struct Kms {
    clients: Arc<RegionalClients<Client>>,
}

impl Kms {
    /// An adapter over these clients.
    pub fn new(clients: Arc<RegionalClients<Client>>) -> Self {
        Self { clients }
    }

    fn client(&self, region: &Region) -> Client {
        self.clients.get(region)
    }
}

fn arn_of(operation: &'static str, key: &KeyArn, arn: Option<&str>) -> Result<KeyArn, CallError> {
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
        const OP: &str = "DescribeKey";
        let out = self
            .client(key.region())
            .describe_key()
            .key_id(key.as_str())
            .send()
            .await
            .map_err(|e| call_error(OP, key, e))?;
        let meta = out.key_metadata().ok_or_else(|| {
            CallError::new(OP, key, ErrorKind::Other, "response has no KeyMetadata")
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
                            OP,
                            key,
                            ErrorKind::Other,
                            format!("unknown MultiRegionKeyType {other:?}"),
                        ));
                    }
                };
                let primary = arn_of(OP, key, mrc.primary_key().and_then(|p| p.arn()))?;
                let replicas = mrc
                    .replica_keys()
                    .iter()
                    .map(|r| arn_of(OP, key, r.arn()))
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

    async fn tag_keys(&self, key: &KeyArn) -> Result<Vec<String>, CallError> {
        let mut pages = self
            .client(key.region())
            .list_resource_tags()
            .key_id(key.as_str())
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| call_error("ListResourceTags", key, e))?;
            keys.extend(page.tags().iter().map(|t| t.tag_key().to_owned()));
        }
        Ok(keys)
    }

    async fn list_keys(&self, region: &Region) -> Result<Vec<KeyArn>, CallError> {
        const OP: &str = "ListKeys";
        let mut pages = self.client(region).list_keys().into_paginator().send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| call_error(OP, region, e))?;
            for entry in page.keys() {
                match entry.key_arn().map(str::parse::<KeyArn>) {
                    Some(Ok(arn)) => keys.push(arn),
                    _ => {
                        tracing::warn!(region = %region, entry = ?entry, "ListKeys entry without a usable ARN; skipped")
                    }
                }
            }
        }
        Ok(keys)
    }
}

impl PolicyStore for Kms {
    async fn get_policy(&self, key: &KeyArn) -> Result<String, CallError> {
        const OP: &str = "GetKeyPolicy";
        let out = self
            .client(key.region())
            .get_key_policy()
            .key_id(key.as_str())
            .policy_name(POLICY_NAME)
            .send()
            .await
            .map_err(|e| call_error(OP, key, e))?;
        out.policy
            .ok_or_else(|| CallError::new(OP, key, ErrorKind::Other, "response has no Policy"))
    }

    async fn put_policy(&self, key: &KeyArn, policy: &str) -> Result<(), CallError> {
        // BypassPolicyLockoutSafetyCheck is deliberately never set: KMS's own lockout check
        // stays on as a second guard behind ours.
        self.client(key.region())
            .put_key_policy()
            .key_id(key.as_str())
            .policy_name(POLICY_NAME)
            .policy(policy)
            .send()
            .await
            .map_err(|e| call_error("PutKeyPolicy", key, e))?;
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

    use crate::core::baseline::{Baseline, Template};
    use crate::core::outcome::Action;
    use crate::core::trigger::{EventInfo, Scope, Target, Trigger};
    use crate::reconcile::{Mode, Reconciler, Settings};
    use crate::retry::Backoff;

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
        Kms::new(Arc::new(RegionalClients::new(move |_: &Region| {
            client.clone()
        })))
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
    async fn the_engine_waits_through_not_found_and_creating_then_fixes() {
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
            .output(|| replica_metadata(SdkState::Enabled))
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
            exclude_tag: "x".into(),
            remediator: None,
            consistency: Backoff {
                attempts: 5,
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            concurrency: 1,
            sweep_regions: vec![],
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
            async fn tag_keys(&self, k: &KeyArn) -> Result<Vec<String>, CallError> {
                self.1.tag_keys(k).await
            }
            async fn list_keys(&self, r: &Region) -> Result<Vec<KeyArn>, CallError> {
                self.0.list_keys(r).await
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
        assert_eq!(report.outcomes[0].action, Action::Remediated, "{report:#?}");
        assert_eq!(describe.num_calls(), 3);
        assert_eq!(put.num_calls(), 1);
        assert_eq!(tags.num_calls(), 1);
    }
}
