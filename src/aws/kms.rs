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
