//! Event → what to reconcile.
//!
//! Reads only the fields a trigger needs from an EventBridge envelope (CloudTrail API call,
//! Scheduled Event) or a direct `{"sweep": {...}}` payload. The event only says *which* keys
//! to look at; every decision about them is taken later on live state.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::Deserialize;
use serde_json::Value;

use super::key::{AccountId, IdError, KeyArn, Place, Region, RoleArn};
use super::outcome::{DriftNews, NOTIFICATION_SOURCE};
use super::tenancy::Tenancy;

/// What an invocation has to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Reconcile these keys (and, depending on scope and live state, their relatives).
    Keys {
        /// Where the request came from, for logs.
        event: EventInfo,
        /// The keys named by the event.
        targets: Vec<Target>,
    },
    /// Sweep every multi-Region key in these accounts and Regions (`None`: the configured
    /// Regions, every account the function may enter).
    Sweep {
        /// Accounts asked for by a direct payload or a planned work item.
        accounts: Option<Vec<AccountId>>,
        /// Regions asked for by a direct payload or a planned work item.
        regions: Option<Vec<Region>>,
    },
    /// Nothing to do; the reason is logged.
    Ignore {
        /// Where the request came from, for logs.
        event: EventInfo,
        /// Why nothing is done.
        reason: String,
    },
}

/// One key named by an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The key the event is about.
    pub key: KeyArn,
    /// How far the reconcile reaches from that key.
    pub scope: Scope,
}

/// How far a reconcile reaches from the key named in the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The key itself: a replica is reconciled; a primary only fans out to its replicas
    /// when the baseline mirrors the primary.
    Key,
    /// Every replica related to the key, whatever it is now (the primary moved).
    AllRelated,
}

/// Identifying facts about the event, carried into logs and outcomes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventInfo {
    /// EventBridge event id, or CloudTrail eventID when the envelope has none.
    pub id: Option<String>,
    /// CloudTrail eventName, or the kind of request (`Scheduled Event`, `sweep`).
    pub name: String,
    /// Who made the call, from the CloudTrail record (CloudTrail events only).
    pub actor: Option<Actor>,
    /// The tags a TagResource or UntagResource call changed (tag events only).
    pub tags: Option<TagChange>,
    /// The call was made by the role that acts for the guard in the key's account; what
    /// it wrote decides whether the event is the guard's own fix or someone else using
    /// that role.
    pub own_role: Option<OwnRoleCall>,
}

impl EventInfo {
    /// An event known only by its name (a sweep, the CLI's `check`, a restore).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// The tags one TagResource or UntagResource call changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    /// TagResource: these keys set to these values.
    Set(Vec<(String, String)>),
    /// UntagResource: these keys removed.
    Removed(Vec<String>),
}

impl TagChange {
    /// Whether the call set or removed `tag`.
    pub fn touches(&self, tag: &str) -> bool {
        match self {
            TagChange::Set(tags) => tags.iter().any(|(k, _)| k == tag),
            TagChange::Removed(keys) => keys.iter().any(|k| k == tag),
        }
    }

    /// The value `tag` was set to (`None`: not set by this call, or removed).
    pub fn value_of(&self, tag: &str) -> Option<&str> {
        match self {
            TagChange::Set(tags) => tags.iter().find(|(k, _)| k == tag).map(|(_, v)| v.as_str()),
            TagChange::Removed(_) => None,
        }
    }
}

/// A call made under the role that acts for the guard in the key's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnRoleCall {
    /// The role (the session issuer).
    pub role: RoleArn,
    /// The policy a PutKeyPolicy wrote (`requestParameters.policy`), when the record has it.
    pub policy: Option<String>,
}

/// Who made a KMS call, as its CloudTrail record says: what an operator asks first about a
/// drift. Every field is as CloudTrail wrote it, or absent when the record had none.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    /// `userIdentity.arn`: the user, the root, or for a role the session
    /// (`arn:aws:sts::111122223333:assumed-role/Admin/alice`).
    pub arn: Option<String>,
    /// For an assumed-role session, the role (`userIdentity.sessionContext.sessionIssuer.arn`).
    pub role: Option<String>,
    /// `sourceIPAddress` (an address, or a service name such as `kms.amazonaws.com`).
    pub source_ip_address: Option<String>,
    /// `eventTime`.
    pub event_time: Option<String>,
    /// `eventID`, to find the record in CloudTrail.
    pub event_id: Option<String>,
}

/// An event that cannot be understood. Not retryable: the same bytes fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The payload is neither an EventBridge event nor a sweep request.
    #[error(
        "the payload is neither an EventBridge event (no `detail-type`) nor a sweep request (no `sweep`); send an EventBridge event from the KMS rule or {{\"sweep\": {{\"regions\": [\"us-east-1\"]}}}}"
    )]
    Unrecognised,
    /// A field has the wrong type or shape.
    #[error("malformed event: field `{field}`: {problem}")]
    Malformed {
        /// JSON path of the field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A field this trigger needs is missing.
    #[error("malformed {event_name} event: required field `{field}` is missing or not a string")]
    Missing {
        /// The CloudTrail eventName.
        event_name: String,
        /// JSON path of the field.
        field: &'static str,
    },
    /// A field is present but holds an invalid identifier.
    #[error("malformed event: field `{field}`: {source}")]
    BadId {
        /// JSON path of the field.
        field: &'static str,
        /// The identifier problem.
        source: IdError,
    },
}

/// The CloudTrail record in `detail`; only what triggers read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailDetail {
    event_source: Option<String>,
    event_name: String,
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    aws_region: Option<String>,
    error_code: Option<String>,
    recipient_account_id: Option<String>,
    user_identity: Option<UserIdentity>,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: Option<String>,
    event_time: Option<String>,
    #[serde(default)]
    request_parameters: Value,
    #[serde(default)]
    response_elements: Value,
    /// The record's own `resources` (`[{"ARN": ...}]`); read leniently, as a fallback.
    #[serde(default)]
    resources: Value,
}

impl CloudTrailDetail {
    fn actor(&self) -> Actor {
        let identity = self.user_identity.as_ref();
        Actor {
            arn: identity.and_then(|u| u.arn.clone()),
            role: identity
                .and_then(|u| u.session_context.as_ref())
                .and_then(|s| s.session_issuer.as_ref())
                .and_then(|i| i.arn.clone()),
            source_ip_address: self.source_ip_address.clone(),
            event_time: self.event_time.clone(),
            event_id: self.event_id.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity {
    arn: Option<String>,
    session_context: Option<SessionContext>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionContext {
    session_issuer: Option<SessionIssuer>,
}

#[derive(Debug, Deserialize)]
struct SessionIssuer {
    arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepRequest {
    #[serde(default)]
    regions: Option<Vec<String>>,
    /// One account (a planned work item).
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    accounts: Option<Vec<String>>,
}

/// The CloudTrail `eventName`s of the KMS calls the function acts on: each can change which
/// policy a multi-Region replica has (ReplicateKey, CreateKey, PutKeyPolicy,
/// UpdatePrimaryRegion) or which it should have (TagResource, UntagResource: an exemption
/// begins or ends, a key picks another baseline). Every other name is ignored. The stacks' KMS
/// rules match exactly these (infra/contract.json, `kms_event_names`), and `doctor` judges a
/// deployed rule and trail by them.
pub const KMS_EVENT_NAMES: [&str; 6] = [
    "ReplicateKey",
    "CreateKey",
    "PutKeyPolicy",
    "UpdatePrimaryRegion",
    "TagResource",
    "UntagResource",
];

const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";
const SCHEDULED_DETAIL_TYPE: &str = "Scheduled Event";

/// Reads the trigger out of an invocation payload of a single-account function.
/// `remediator` is the function's own role: events it caused are ignored, so a fix never
/// triggers another round.
pub fn parse(payload: &Value, remediator: Option<&RoleArn>) -> Result<Trigger, EventError> {
    parse_in(payload, &Tenancy::default(), remediator)
}

/// Reads the trigger out of an invocation payload. Events caused by the role that acts in
/// their account (`remediator` at home, the member role in a member account) are ignored.
pub fn parse_in(
    payload: &Value,
    tenancy: &Tenancy,
    remediator: Option<&RoleArn>,
) -> Result<Trigger, EventError> {
    let Some(obj) = payload.as_object() else {
        return Err(EventError::Unrecognised);
    };
    if let Some(sweep) = obj.get("sweep") {
        return parse_sweep(sweep);
    }
    if !obj.contains_key("detail-type") {
        return Err(EventError::Unrecognised);
    }
    let envelope: EventBridgeEvent<Value> = from_value(payload, "")?;
    let info = |name: &str| EventInfo {
        id: envelope.id.clone(),
        ..EventInfo::named(name)
    };
    match envelope.detail_type.as_str() {
        SCHEDULED_DETAIL_TYPE if envelope.source == "aws.events" => Ok(Trigger::Sweep {
            accounts: None,
            regions: None,
        }),
        CLOUDTRAIL_DETAIL_TYPE => {
            let detail: CloudTrailDetail = from_value(&envelope.detail, "detail.")?;
            let mut event = info(&detail.event_name);
            if event.id.is_none() {
                event.id = detail.event_id.clone();
            }
            event.actor = Some(detail.actor());
            parse_cloudtrail(&envelope, detail, event, &|issuer: &RoleArn| {
                tenancy.actor_in(issuer.account(), issuer.partition(), remediator)
            })
        }
        other => Ok(Trigger::Ignore {
            event: info(other),
            reason: format!(
                "detail-type {other:?} from {} is not a trigger",
                envelope.source
            ),
        }),
    }
}

/// One of the guard's own drift notifications (`source` `kms-replica-guard`, as the
/// remediator publishes them), read by the detector as "evaluate this key again": the key in
/// `resources`, and the actor the notification tells of, for the finding (a label: whether
/// the key drifted is read from KMS, never taken from the event). `None` when `payload` is
/// not one; a notification whose detail-type is not news is ignored.
pub fn parse_notification(payload: &Value) -> Option<Result<Trigger, EventError>> {
    let obj = payload.as_object()?;
    if obj.get("source").and_then(Value::as_str) != Some(NOTIFICATION_SOURCE)
        || !obj.contains_key("detail-type")
    {
        return None;
    }
    Some(notification(payload))
}

fn notification(payload: &Value) -> Result<Trigger, EventError> {
    let envelope: EventBridgeEvent<Value> = from_value(payload, "")?;
    let mut event = EventInfo {
        id: envelope.id.clone(),
        ..EventInfo::named(&envelope.detail_type)
    };
    if !DriftNews::ALL
        .iter()
        .any(|n| n.detail_type() == envelope.detail_type)
    {
        return Ok(Trigger::Ignore {
            reason: format!(
                "detail-type {:?} is not one of the guard's notifications",
                envelope.detail_type
            ),
            event,
        });
    }
    let key = match envelope.resources.as_deref().unwrap_or_default() {
        [key] => key.parse::<KeyArn>().map_err(|e| EventError::Malformed {
            field: "resources[0]".to_owned(),
            problem: e.to_string(),
        })?,
        other => {
            return Err(EventError::Malformed {
                field: "resources".to_owned(),
                problem: format!(
                    "a notification names exactly one key ARN; this one names {}",
                    other.len()
                ),
            });
        }
    };
    event.actor = match envelope.detail.get("actor") {
        None | Some(Value::Null) => None,
        Some(actor) => Some(from_value(actor, "detail.actor.")?),
    };
    Ok(Trigger::Keys {
        event,
        targets: vec![Target {
            key,
            scope: Scope::Key,
        }],
    })
}

fn parse_cloudtrail(
    envelope: &EventBridgeEvent<Value>,
    detail: CloudTrailDetail,
    mut event: EventInfo,
    actor_in_account_of: &dyn Fn(&RoleArn) -> Option<RoleArn>,
) -> Result<Trigger, EventError> {
    // The guard's own role is not trusted to have made the guard's fix: whoever can assume
    // it could write anything. The reconcile stage decides by what was written.
    event.own_role = detail
        .user_identity
        .as_ref()
        .and_then(|u| u.session_context.as_ref())
        .and_then(|s| s.session_issuer.as_ref())
        .and_then(|i| i.arn.as_deref())
        .and_then(|i| i.parse::<RoleArn>().ok())
        .filter(|i| actor_in_account_of(i).is_some_and(|me| me == *i))
        .map(|role| OwnRoleCall {
            role,
            policy: str_at(&detail.request_parameters, &["policy"]).map(str::to_owned),
        });

    let ignore = |reason: String| {
        Ok(Trigger::Ignore {
            event: event.clone(),
            reason,
        })
    };
    let from_kms = envelope.source == "aws.kms"
        && detail
            .event_source
            .as_deref()
            .unwrap_or("kms.amazonaws.com")
            == "kms.amazonaws.com";
    if !from_kms {
        return ignore(format!(
            "{} from {} is not a KMS event",
            detail.event_name, envelope.source
        ));
    }
    if let Some(code) = &detail.error_code {
        return ignore(format!(
            "{} failed with {code}; nothing changed",
            detail.event_name
        ));
    }
    let name = detail.event_name.as_str();
    let missing = |field| EventError::Missing {
        event_name: name.to_owned(),
        field,
    };
    let key_target = |key: KeyArn, scope| -> Result<Trigger, EventError> {
        if !key.is_multi_region() {
            return Ok(Trigger::Ignore {
                event: event.clone(),
                reason: format!("{key} is a single-Region key; only multi-Region keys are managed"),
            });
        }
        Ok(Trigger::Keys {
            event: event.clone(),
            targets: vec![Target { key, scope }],
        })
    };

    match name {
        "ReplicateKey" => {
            const F: &str = "detail.responseElements.replicaKeyMetadata.arn";
            let arn = str_at(&detail.response_elements, &["replicaKeyMetadata", "arn"])
                .ok_or_else(|| missing(F))?;
            key_target(parse_arn(arn, F)?, Scope::Key)
        }
        "CreateKey" => {
            // ReplicateKey also makes KMS log CreateKey requests in the replica Region, one of
            // them a dry run, whose shape AWS does not publish: without keyMetadata the key
            // is the record's resource, and without that there is nothing to go on (the
            // ReplicateKey event itself, and the sweep, cover the replica).
            const F: &str = "detail.responseElements.keyMetadata.arn";
            const R: &str = "detail.resources[].ARN";
            let (arn, field) = match str_at(&detail.response_elements, &["keyMetadata", "arn"]) {
                Some(arn) => (arn, F),
                None => match resource_arn(&detail.resources) {
                    Some(arn) => (arn, R),
                    None => {
                        return ignore(
                            "CreateKey record without responseElements.keyMetadata or resources (as KMS logs for a replica it is creating); nothing to reconcile from it, the ReplicateKey event and the sweep cover the replica".to_owned(),
                        );
                    }
                },
            };
            let key = parse_arn(arn, field)?;
            let multi = detail.response_elements["keyMetadata"]["multiRegion"].as_bool();
            if multi == Some(false) {
                return ignore(format!(
                    "{key} is a single-Region key; only multi-Region keys are managed"
                ));
            }
            key_target(key, Scope::Key)
        }
        "PutKeyPolicy" | "UpdatePrimaryRegion" | "TagResource" | "UntagResource" => {
            const F: &str = "detail.requestParameters.keyId";
            let id = str_at(&detail.request_parameters, &["keyId"]).ok_or_else(|| missing(F))?;
            let region = detail
                .aws_region
                .as_deref()
                .or(envelope.region.as_deref())
                .ok_or_else(|| missing("detail.awsRegion"))?;
            let region: Region = region.parse().map_err(|source| EventError::BadId {
                field: "detail.awsRegion",
                source,
            })?;
            let account = detail
                .recipient_account_id
                .as_deref()
                .or(envelope.account.as_deref())
                .ok_or_else(|| missing("detail.recipientAccountId"))?;
            let account: AccountId = account.parse().map_err(|source| EventError::BadId {
                field: "detail.recipientAccountId",
                source,
            })?;
            let key = KeyArn::from_id_or_arn(id, &region, &account)
                .map_err(|source| EventError::BadId { field: F, source })?;
            let scope = match name {
                "UpdatePrimaryRegion" => Scope::AllRelated,
                // A primary's baseline tag is inherited by its replicas.
                "TagResource" | "UntagResource" => Scope::AllRelated,
                _ => Scope::Key,
            };
            let tags = match name {
                "TagResource" | "UntagResource" => {
                    Some(tag_change(name, &detail.request_parameters)?)
                }
                _ => None,
            };
            let mut trigger = key_target(key, scope)?;
            if let Trigger::Keys { event, .. } = &mut trigger {
                event.tags = tags;
            }
            Ok(trigger)
        }
        other => ignore(format!("{other} is not a trigger")),
    }
}

/// The tags a TagResource (`requestParameters.tags[].tagKey/tagValue`) or UntagResource
/// (`requestParameters.tagKeys[]`) call changed.
fn tag_change(name: &str, params: &Value) -> Result<TagChange, EventError> {
    let missing = |field| EventError::Missing {
        event_name: name.to_owned(),
        field,
    };
    if name == "TagResource" {
        const F: &str = "detail.requestParameters.tags";
        let tags = params["tags"].as_array().ok_or_else(|| missing(F))?;
        tags.iter()
            .map(|t| match (t["tagKey"].as_str(), t["tagValue"].as_str()) {
                (Some(k), Some(v)) => Ok((k.to_owned(), v.to_owned())),
                _ => Err(missing("detail.requestParameters.tags[].tagKey/tagValue")),
            })
            .collect::<Result<_, _>>()
            .map(TagChange::Set)
    } else {
        const F: &str = "detail.requestParameters.tagKeys";
        let keys = params["tagKeys"].as_array().ok_or_else(|| missing(F))?;
        keys.iter()
            .map(|k| k.as_str().map(str::to_owned).ok_or_else(|| missing(F)))
            .collect::<Result<_, _>>()
            .map(TagChange::Removed)
    }
}

fn parse_sweep(sweep: &Value) -> Result<Trigger, EventError> {
    let req: SweepRequest = from_value(sweep, "sweep.")?;
    let regions = req
        .regions
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    r.parse().map_err(|source| EventError::BadId {
                        field: "sweep.regions",
                        source,
                    })
                })
                .collect::<Result<Vec<Region>, _>>()
        })
        .transpose()?;
    let accounts: Option<Vec<&String>> = match (&req.account, &req.accounts) {
        (None, None) => None,
        (one, many) => Some(one.iter().chain(many.iter().flatten()).collect()),
    };
    let accounts = accounts
        .map(|ids| {
            ids.into_iter()
                .map(|a| {
                    a.parse().map_err(|source| EventError::BadId {
                        field: "sweep.account",
                        source,
                    })
                })
                .collect::<Result<Vec<AccountId>, _>>()
        })
        .transpose()?;
    Ok(Trigger::Sweep { accounts, regions })
}

/// The payload of one planned sweep item: `{"sweep": {"account": ..., "regions": [...]}}`,
/// which [`parse`] reads back as a [`Trigger::Sweep`] of that place.
pub fn work_item(place: &Place) -> Value {
    let mut sweep = serde_json::Map::new();
    if let Some(account) = &place.account {
        sweep.insert("account".into(), Value::String(account.to_string()));
    }
    sweep.insert(
        "regions".into(),
        Value::Array(vec![Value::String(place.region.to_string())]),
    );
    serde_json::json!({ "sweep": sweep })
}

fn parse_arn(arn: &str, field: &'static str) -> Result<KeyArn, EventError> {
    arn.parse()
        .map_err(|source| EventError::BadId { field, source })
}

/// The first KMS key ARN among a CloudTrail record's `resources`.
fn resource_arn(resources: &Value) -> Option<&str> {
    resources
        .as_array()?
        .iter()
        .filter_map(|r| r.get("ARN").and_then(Value::as_str))
        .find(|arn| arn.starts_with("arn:") && arn.contains(":kms:"))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, p| v.get(p))?.as_str()
}

fn from_value<T: serde::de::DeserializeOwned>(v: &Value, prefix: &str) -> Result<T, EventError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        EventError::Malformed {
            field: if path == "." {
                prefix.trim_end_matches('.').to_owned()
            } else {
                format!("{prefix}{path}")
            },
            problem: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACCOUNT: &str = "111122223333";
    const MRK: &str = "mrk-1234abcd12ab34cd56ef1234567890ab";

    fn remediator() -> RoleArn {
        "arn:aws:iam::111122223333:role/kms-replica-guard-remediator"
            .parse()
            .unwrap()
    }

    fn sample(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn parse_sample(name: &str) -> Trigger {
        parse(&sample(name), Some(&remediator())).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn mrk(region: &str) -> KeyArn {
        format!("arn:aws:kms:{region}:{ACCOUNT}:key/{MRK}")
            .parse()
            .unwrap()
    }

    fn targets(t: &Trigger) -> Vec<(String, Scope)> {
        match t {
            Trigger::Keys { targets, .. } => targets
                .iter()
                .map(|t| (t.key.to_string(), t.scope))
                .collect(),
            other => panic!("expected keys, got {other:?}"),
        }
    }

    fn own_role(t: &Trigger) -> Option<OwnRoleCall> {
        match t {
            Trigger::Keys { event, .. } => event.own_role.clone(),
            other => panic!("expected keys, got {other:?}"),
        }
    }

    fn tags(t: &Trigger) -> Option<TagChange> {
        match t {
            Trigger::Keys { event, .. } => event.tags.clone(),
            other => panic!("expected keys, got {other:?}"),
        }
    }

    fn ignored_because(t: &Trigger) -> &str {
        match t {
            Trigger::Ignore { reason, .. } => reason,
            other => panic!("expected a no-op, got {other:?}"),
        }
    }

    /// Every sample event has an expectation here, so a new file cannot go untested.
    #[test]
    fn every_sample_event_parses_to_its_documented_trigger() {
        let dir = format!("{}/../../events", env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            // AWS Config rule invocations are read by the function's own parser
            // (config_rule.rs), never as triggers.
            if !name.ends_with(".json")
                || name == "sqs-sweep-work-items.json"
                || name.starts_with("config-rule-")
            {
                continue;
            }
            seen += 1;
            let t = parse_sample(&name);
            let key = |r: &str| vec![(mrk(r).to_string(), Scope::Key)];
            match name.as_str() {
                "replicate-key.json"
                | "put-key-policy-replica-id.json"
                | "put-key-policy-iam-user.json" => {
                    assert_eq!(targets(&t), key("us-west-2"), "{name}")
                }
                "create-key-replica.json"
                | "create-key-replica-without-metadata.json"
                | "put-key-policy-replica-arn.json" => {
                    assert_eq!(targets(&t), key("eu-west-1"), "{name}")
                }
                "create-key-multi-region.json" | "put-key-policy-primary.json" => {
                    assert_eq!(targets(&t), key("us-east-1"), "{name}")
                }
                "update-primary-region.json" => assert_eq!(
                    targets(&t),
                    vec![(mrk("us-east-1").to_string(), Scope::AllRelated)]
                ),
                // The second record, logged in the new primary's Region by KMS itself.
                "update-primary-region-new-primary.json" => assert_eq!(
                    targets(&t),
                    vec![(mrk("us-west-2").to_string(), Scope::AllRelated)]
                ),
                "synchronize-multi-region-key.json" => {
                    assert!(ignored_because(&t).contains("not a trigger"), "{name}")
                }
                "create-key-single-region.json" | "put-key-policy-single-region.json" => {
                    assert!(ignored_because(&t).contains("single-Region"), "{name}")
                }
                "put-key-policy-by-remediator.json" => {
                    assert_eq!(targets(&t), key("us-west-2"), "{name}");
                    let own = own_role(&t).expect("made under the guard's role");
                    assert_eq!(own.role, remediator());
                    assert!(own.policy.unwrap().contains("kms-replica-guard-remediator"));
                }
                "tag-resource-exclude.json"
                | "untag-resource-baseline.json"
                | "tag-resource-other-tag.json" => {
                    assert_eq!(
                        targets(&t),
                        vec![(mrk("us-west-2").to_string(), Scope::AllRelated)],
                        "{name}"
                    );
                    assert!(tags(&t).is_some(), "{name}");
                }
                "put-key-policy-error.json" => {
                    assert!(ignored_because(&t).contains("MalformedPolicyDocumentException"))
                }
                "read-only-describe-key.json" => {
                    assert!(ignored_because(&t).contains("DescribeKey is not a trigger"))
                }
                "unrelated-service.json" => {
                    assert!(ignored_because(&t).contains("not a KMS event"))
                }
                "drift-notification-remediated.json" => {
                    // The remediator's own news is not a trigger for the remediator; the
                    // detector reads it as "evaluate this key again".
                    assert!(ignored_because(&t).contains("is not a trigger"), "{name}");
                    let path = format!("{dir}/{name}");
                    let payload =
                        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
                    let again = parse_notification(&payload)
                        .expect("a notification")
                        .unwrap();
                    assert_eq!(targets(&again), key("us-west-2"), "{name}");
                    let Trigger::Keys { event, .. } = again else {
                        panic!("a notification names keys")
                    };
                    assert_eq!(event.name, "Replica Key Policy Remediated");
                    let actor = event.actor.expect("the actor the notification tells of");
                    assert_eq!(
                        actor.arn.as_deref(),
                        Some("arn:aws:sts::111122223333:assumed-role/Admin/alice")
                    );
                }
                "scheduled-sweep.json" => assert_eq!(
                    t,
                    Trigger::Sweep {
                        accounts: None,
                        regions: None
                    }
                ),
                "manual-sweep.json" => assert_eq!(
                    t,
                    Trigger::Sweep {
                        accounts: None,
                        regions: Some(
                            ["us-east-1", "us-west-2", "eu-west-1"]
                                .map(|r| r.parse().unwrap())
                                .to_vec()
                        )
                    }
                ),
                "put-key-policy-member-account.json" => assert_eq!(
                    targets(&t),
                    vec![(
                        mrk("us-west-2")
                            .to_string()
                            .replace("111122223333", "444455556666"),
                        Scope::Key
                    )],
                    "the member's key"
                ),
                other => panic!("events/{other} has no expectation in this test; add one"),
            }
        }
        // sqs-sweep-work-items.json is an SQS batch, read by the handler (src/lambda/batch.rs).
        assert_eq!(seen, 24, "sample events found in {dir}");
    }

    #[test]
    fn a_planned_work_item_reads_back_as_the_sweep_of_its_place() {
        let place = Place::new(
            Some("222233334444".parse().unwrap()),
            "eu-west-1".parse().unwrap(),
        );
        let item = work_item(&place);
        assert_eq!(
            item,
            json!({"sweep": {"account": "222233334444", "regions": ["eu-west-1"]}})
        );
        assert_eq!(
            parse(&item, None).unwrap(),
            Trigger::Sweep {
                accounts: Some(vec![place.account.clone().unwrap()]),
                regions: Some(vec![place.region.clone()]),
            }
        );
        let bad = json!({"sweep": {"account": "2222", "regions": ["eu-west-1"]}});
        assert!(
            parse(&bad, None)
                .unwrap_err()
                .to_string()
                .contains("sweep.account")
        );
    }

    #[test]
    fn the_actor_of_a_cloudtrail_event_is_read_from_its_record() {
        let Trigger::Keys { event, .. } =
            parse(&sample("put-key-policy-primary.json"), None).unwrap()
        else {
            panic!("a key trigger");
        };
        assert_eq!(
            event.actor,
            Some(Actor {
                arn: Some("arn:aws:sts::111122223333:assumed-role/Admin/alice".into()),
                role: Some("arn:aws:iam::111122223333:role/Admin".into()),
                source_ip_address: Some("203.0.113.24".into()),
                event_time: Some("2026-11-06T10:44:19Z".into()),
                event_id: Some("5a3c8e1f-6d2b-4f97-a0e4-9b7d1c5f3a26".into()),
            })
        );
        // An IAM user has no session issuer: the user's ARN alone.
        let Trigger::Keys { event, .. } =
            parse(&sample("put-key-policy-iam-user.json"), None).unwrap()
        else {
            panic!("a key trigger");
        };
        let actor = event.actor.unwrap();
        assert!(actor.arn.unwrap().contains(":user/"));
        assert_eq!(actor.role, None);
        assert_eq!(actor.source_ip_address.as_deref(), Some("198.51.100.77"));
        // A sweep has no actor.
        let Trigger::Sweep { .. } = parse(&sample("scheduled-sweep.json"), None).unwrap() else {
            panic!("a sweep");
        };
    }

    #[test]
    fn the_member_roles_own_event_in_a_member_account_is_marked_as_the_guards_role() {
        use crate::tenancy::{Fleet, MemberRole, Tenancy};
        let tenancy = Tenancy {
            home: Some("999999999999".parse().unwrap()),
            fleet: Some(Fleet {
                role: MemberRole::new("kms-replica-guard-remediator", None).unwrap(),
                members: "111122223333".parse().unwrap(),
            }),
        };
        let hub: RoleArn = "arn:aws:iam::999999999999:role/hub".parse().unwrap();
        // The sample's session issuer is role/kms-replica-guard-remediator in 111122223333:
        // here the member role, so the hub caused it.
        let t = parse_in(
            &sample("put-key-policy-by-remediator.json"),
            &tenancy,
            Some(&hub),
        )
        .unwrap();
        let own = own_role(&t).expect("the member role's call");
        assert_eq!(
            own.role.to_string(),
            "arn:aws:iam::111122223333:role/kms-replica-guard-remediator"
        );
        let other = Tenancy {
            fleet: Some(Fleet {
                role: MemberRole::new("another-role", None).unwrap(),
                members: "111122223333".parse().unwrap(),
            }),
            ..tenancy
        };
        let t = parse_in(
            &sample("put-key-policy-by-remediator.json"),
            &other,
            Some(&hub),
        )
        .unwrap();
        assert_eq!(own_role(&t), None, "{t:?}");
    }

    #[test]
    fn a_create_key_record_with_neither_metadata_nor_resources_is_a_no_op_not_an_error() {
        let mut e = sample("create-key-replica-without-metadata.json");
        e["detail"]["resources"] = Value::Null;
        let t = parse(&e, None).unwrap();
        assert!(ignored_because(&t).contains("without responseElements.keyMetadata or resources"));
        e["detail"]["resources"] = serde_json::json!([{"ARN": "not-an-arn"}, {"ARN": 7}]);
        assert!(matches!(parse(&e, None).unwrap(), Trigger::Ignore { .. }));
    }

    #[test]
    fn the_event_id_and_name_are_kept_for_logs() {
        let Trigger::Keys { event, .. } = parse_sample("replicate-key.json") else {
            panic!()
        };
        assert_eq!(event.name, "ReplicateKey");
        assert_eq!(
            event.id.as_deref(),
            sample("replicate-key.json")["id"].as_str()
        );
    }

    #[test]
    fn without_a_configured_role_the_remediators_own_event_is_reconciled_like_any_other() {
        let t = parse(&sample("put-key-policy-by-remediator.json"), None).unwrap();
        assert_eq!(
            targets(&t),
            vec![(mrk("us-west-2").to_string(), Scope::Key)]
        );
        assert_eq!(own_role(&t), None);
    }

    #[test]
    fn a_put_key_policy_under_the_guards_role_is_a_target_not_a_no_op() {
        // Whoever can assume the role must not write unseen: the record is reconciled, and
        // what it wrote travels with it.
        let mut e = sample("put-key-policy-by-remediator.json");
        let t = parse(&e, Some(&remediator())).unwrap();
        assert_eq!(
            targets(&t),
            vec![(mrk("us-west-2").to_string(), Scope::Key)]
        );
        e["detail"]["requestParameters"]
            .as_object_mut()
            .unwrap()
            .remove("policy");
        let t = parse(&e, Some(&remediator())).unwrap();
        let own = own_role(&t).unwrap();
        assert_eq!(own.policy, None, "a record without the policy says so");
    }

    #[test]
    fn tag_events_carry_what_they_changed() {
        let t = parse_sample("tag-resource-exclude.json");
        let change = tags(&t).unwrap();
        assert!(change.touches("kms-replica-guard:exclude"));
        assert_eq!(
            change.value_of("kms-replica-guard:exclude"),
            Some("until=2027-01-31 ticket OPS-4711")
        );
        assert!(!change.touches("team"));
        let t = parse_sample("untag-resource-baseline.json");
        let change = tags(&t).unwrap();
        assert_eq!(
            change,
            TagChange::Removed(vec!["kms-replica-guard:baseline".into()])
        );
        assert!(change.touches("kms-replica-guard:baseline"));
        assert_eq!(change.value_of("kms-replica-guard:baseline"), None);
        let Trigger::Keys { event, .. } = t else {
            panic!()
        };
        assert_eq!(
            event.actor.unwrap().arn.as_deref(),
            Some("arn:aws:sts::111122223333:assumed-role/Admin/alice")
        );
    }

    #[test]
    fn a_tag_event_without_its_tags_is_an_error_naming_the_field() {
        let mut e = sample("tag-resource-exclude.json");
        e["detail"]["requestParameters"]["tags"] = json!("kms-replica-guard:exclude");
        let err = parse(&e, None).unwrap_err().to_string();
        assert!(err.contains("detail.requestParameters.tags"), "{err}");
        let mut e = sample("untag-resource-baseline.json");
        e["detail"]["requestParameters"]["tagKeys"] = json!([7]);
        let err = parse(&e, None).unwrap_err().to_string();
        assert!(err.contains("detail.requestParameters.tagKeys"), "{err}");
    }

    #[test]
    fn another_roles_event_is_not_mistaken_for_the_remediators() {
        let other: RoleArn = "arn:aws:iam::111122223333:role/kms-replica-guard-remediator-2"
            .parse()
            .unwrap();
        let t = parse(&sample("put-key-policy-by-remediator.json"), Some(&other)).unwrap();
        assert!(matches!(t, Trigger::Keys { .. }));
        assert_eq!(own_role(&t), None);
    }

    #[test]
    fn a_missing_key_id_is_an_error_naming_the_field() {
        let mut e = sample("put-key-policy-replica-id.json");
        e["detail"]["requestParameters"]
            .as_object_mut()
            .unwrap()
            .remove("keyId");
        let err = parse(&e, None).unwrap_err();
        assert!(
            err.to_string().contains("detail.requestParameters.keyId"),
            "{err}"
        );
    }

    #[test]
    fn a_wrongly_typed_field_is_an_error_naming_its_path() {
        let mut e = sample("put-key-policy-replica-id.json");
        e["detail"]["eventName"] = json!(42);
        let err = parse(&e, None).unwrap_err();
        assert!(err.to_string().contains("detail.eventName"), "{err}");
        let mut e = sample("replicate-key.json");
        e["detail-type"] = json!(["x"]);
        let err = parse(&e, None).unwrap_err();
        assert!(err.to_string().contains("detail-type"), "{err}");
    }

    #[test]
    fn a_missing_replica_arn_is_an_error_naming_the_field() {
        let mut e = sample("replicate-key.json");
        e["detail"]["responseElements"] = Value::Null;
        let err = parse(&e, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("detail.responseElements.replicaKeyMetadata.arn"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_arn_is_an_error_naming_the_field() {
        let mut e = sample("replicate-key.json");
        e["detail"]["responseElements"]["replicaKeyMetadata"]["arn"] = json!("arn:aws:kms:nowhere");
        let err = parse(&e, None).unwrap_err();
        assert!(err.to_string().contains("replicaKeyMetadata.arn"), "{err}");
    }

    #[test]
    fn payloads_that_are_not_events_are_rejected_with_what_to_send() {
        for bad in [json!(null), json!([]), json!("x"), json!({"hello": 1})] {
            let err = parse(&bad, None).unwrap_err();
            assert_eq!(err, EventError::Unrecognised);
            assert!(err.to_string().contains("sweep"));
        }
        let err = parse(&json!({"sweep": {"regions": ["mars-1"]}}), None).unwrap_err();
        assert!(err.to_string().contains("sweep.regions"), "{err}");
        let err = parse(&json!({"sweep": {"region": ["us-east-1"]}}), None).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn an_event_with_an_alias_as_key_id_is_rejected_not_guessed() {
        let mut e = sample("put-key-policy-replica-id.json");
        e["detail"]["requestParameters"]["keyId"] = json!("alias/app");
        let err = parse(&e, None).unwrap_err();
        assert!(err.to_string().contains("alias"), "{err}");
    }

    #[test]
    fn other_event_bridge_events_are_no_ops() {
        let e = json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}});
        assert!(ignored_because(&parse(&e, None).unwrap()).contains("not a trigger"));
    }

    #[test]
    fn the_kms_event_names_are_the_calls_the_router_acts_on() {
        // Each sample of a KMS call names one eventName; the router acts on it exactly when
        // KMS_EVENT_NAMES lists it ("is not a trigger" for every other name).
        let dir = format!("{}/../../events", env!("CARGO_MANIFEST_DIR"));
        let mut seen = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let event: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let Some(name) = event["detail"]["eventName"].as_str() else {
                continue;
            };
            if event["source"] != "aws.kms" || event["detail"]["errorCode"].is_string() {
                continue;
            }
            let unrouted = match parse(&event, None) {
                Ok(Trigger::Ignore { reason, .. }) => reason.ends_with("is not a trigger"),
                _ => false,
            };
            assert_eq!(
                !unrouted,
                KMS_EVENT_NAMES.contains(&name),
                "{}: {name}",
                path.display()
            );
            seen.insert(name.to_owned());
        }
        for name in KMS_EVENT_NAMES {
            assert!(seen.contains(name), "no sample event of {name} in events/");
        }
        assert!(
            seen.len() > KMS_EVENT_NAMES.len(),
            "a sample of a KMS call the router ignores"
        );
    }
}
