//! AWS Config custom rule invocations: a shape of their own, read strictly. The envelope
//! carries `invokingEvent` (a JSON document in a string), `resultToken`, `configRuleArn`,
//! `accountId`, `eventLeftScope` and optional `ruleParameters` (a JSON object in a string);
//! the invoking event is one of
//! - `ConfigurationItemChangeNotification` (`configurationItem`: the key as Config recorded
//!   it),
//! - `OversizedConfigurationItemChangeNotification` (`configurationItemSummary`: the same
//!   identifying fields, without the configuration),
//! - `ScheduledNotification` (the account; the Region is the rule's).
//!
//! Every identifying field must agree with the others (the key's ARN, its id, account and
//! Region, the rule's account and Region): a Config event that names one key in one place
//! and another elsewhere is refused, not guessed at. Only the ARN names the key; the
//! configuration Config recorded is never read (the guard decides on live state).

use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::key::{AccountId, KeyArn, Region};
use crate::trigger::EventError;

/// The most an `invokingEvent` string may hold (Lambda's own payload limit is 256 KB for an
/// asynchronous invocation and 6 MB for a synchronous one; Config sends the oversized
/// notification instead of an item past its own limits).
const MAX_INVOKING_EVENT: usize = 1024 * 1024;
/// The most a `resultToken` may hold.
const MAX_RESULT_TOKEN: usize = 64 * 1024;

/// What the rule asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One key changed (or, `gone`, was deleted or left the rule's scope).
    Key {
        /// The key.
        key: KeyArn,
        /// Deleted, not recorded any more, or out of the rule's scope: not applicable, and
        /// not looked up.
        gone: bool,
    },
    /// A periodic evaluation of every key in the account and Region.
    Scheduled,
}

/// One Config rule invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The evaluated account (the rule's).
    pub account: AccountId,
    /// The rule's Region.
    pub region: Region,
    /// The rule's name, for logs.
    pub rule: String,
    /// What PutEvaluations must carry back.
    pub result_token: String,
    /// The key, or every key.
    pub subject: Subject,
    /// The evaluations' ordering timestamp: when Config captured the item, else when it
    /// sent the notification.
    pub ordering: SystemTime,
}

/// Whether `payload` is shaped as a Config rule invocation (then [`parse`] decides whether
/// it is a good one).
pub fn is_config_invocation(payload: &Value) -> bool {
    payload.as_object().is_some_and(|o| {
        o.contains_key("invokingEvent")
            || o.contains_key("resultToken")
            || o.contains_key("configRuleArn")
    })
}

fn malformed(field: &str, problem: impl Into<String>) -> EventError {
    EventError::Malformed {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

fn string<'a>(o: &'a Map<String, Value>, field: &str, path: &str) -> Result<&'a str, EventError> {
    match o.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(malformed(path, "is empty")),
        Some(other) => Err(malformed(
            path,
            format!("invalid type: {}, expected a string", kind(other)),
        )),
        None => Err(malformed(path, "missing")),
    }
}

fn optional_string<'a>(
    o: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<&'a str>, EventError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => string(o, field, path).map(Some),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn time(s: &str, path: &str) -> Result<SystemTime, EventError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
        .map_err(|e| malformed(path, format!("{s:?} is not an RFC 3339 time: {e}")))
}

fn parse_account(s: &str, path: &str) -> Result<AccountId, EventError> {
    s.parse::<AccountId>()
        .map_err(|e| malformed(path, e.to_string()))
}

/// The rule's Region and account from its ARN (`arn:PARTITION:config:REGION:ACCOUNT:config-rule/ID`).
fn rule_place(arn: &str) -> Result<(Region, AccountId), EventError> {
    let path = "configRuleArn";
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, _partition, service, region, account_id, resource] = parts[..] else {
        return Err(malformed(
            path,
            "expected arn:PARTITION:config:REGION:ACCOUNT:config-rule/ID",
        ));
    };
    if prefix != "arn" || service != "config" || !resource.starts_with("config-rule/") {
        return Err(malformed(
            path,
            "expected arn:PARTITION:config:REGION:ACCOUNT:config-rule/ID",
        ));
    }
    let region = region
        .parse::<Region>()
        .map_err(|e| malformed(path, e.to_string()))?;
    Ok((region, parse_account(account_id, path)?))
}

/// Reads a Config rule invocation strictly.
pub fn parse(payload: &Value) -> Result<Invocation, EventError> {
    let o = payload
        .as_object()
        .ok_or_else(|| malformed("(payload)", "a Config invocation is a JSON object"))?;
    let result_token = string(o, "resultToken", "resultToken")?;
    if result_token.len() > MAX_RESULT_TOKEN || result_token.chars().any(char::is_control) {
        return Err(malformed(
            "resultToken",
            format!("must be at most {MAX_RESULT_TOKEN} bytes without control characters"),
        ));
    }
    let (region, rule_account) = rule_place(string(o, "configRuleArn", "configRuleArn")?)?;
    let account = parse_account(string(o, "accountId", "accountId")?, "accountId")?;
    if account != rule_account {
        return Err(malformed(
            "accountId",
            format!("{account} is not the account of configRuleArn ({rule_account})"),
        ));
    }
    let rule = optional_string(o, "configRuleName", "configRuleName")?
        .unwrap_or("(unnamed rule)")
        .to_owned();
    let left_scope = match o.get("eventLeftScope") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(malformed(
                "eventLeftScope",
                format!("invalid type: {}, expected a boolean", kind(other)),
            ));
        }
    };
    if let Some(params) = optional_string(o, "ruleParameters", "ruleParameters")? {
        // The guard takes no rule parameters: its configuration is the function's. Still,
        // what is there must be what Config sends (a JSON object in a string).
        match serde_json::from_str::<Value>(params) {
            Ok(Value::Object(_)) => {}
            _ => {
                return Err(malformed(
                    "ruleParameters",
                    "must be a JSON object in a string",
                ));
            }
        }
    }
    let invoking = string(o, "invokingEvent", "invokingEvent")?;
    if invoking.len() > MAX_INVOKING_EVENT {
        return Err(malformed(
            "invokingEvent",
            format!("longer than {MAX_INVOKING_EVENT} bytes"),
        ));
    }
    let event: Value = serde_json::from_str(invoking)
        .map_err(|e| malformed("invokingEvent", format!("not JSON: {e}")))?;
    let event = event
        .as_object()
        .ok_or_else(|| malformed("invokingEvent", "must be a JSON object in a string"))?;
    let message_type = string(event, "messageType", "invokingEvent.messageType")?;
    let notified = optional_string(
        event,
        "notificationCreationTime",
        "invokingEvent.notificationCreationTime",
    )?
    .map(|t| time(t, "invokingEvent.notificationCreationTime"))
    .transpose()?;
    let (item, item_path) = match message_type {
        "ScheduledNotification" => {
            let path = "invokingEvent.awsAccountId";
            let named = parse_account(string(event, "awsAccountId", path)?, path)?;
            if named != account {
                return Err(malformed(
                    path,
                    format!("{named} is not the rule's account {account}"),
                ));
            }
            return Ok(Invocation {
                account,
                region,
                rule,
                result_token: result_token.to_owned(),
                subject: Subject::Scheduled,
                ordering: notified.unwrap_or_else(SystemTime::now),
            });
        }
        "ConfigurationItemChangeNotification" => {
            ("configurationItem", "invokingEvent.configurationItem")
        }
        "OversizedConfigurationItemChangeNotification" => (
            "configurationItemSummary",
            "invokingEvent.configurationItemSummary",
        ),
        other => {
            return Err(malformed(
                "invokingEvent.messageType",
                format!(
                    "{other:?} is not a notification the rule answers (ConfigurationItemChangeNotification, OversizedConfigurationItemChangeNotification, ScheduledNotification)"
                ),
            ));
        }
    };
    let item = match event.get(item) {
        Some(Value::Object(item)) => item,
        Some(other) => {
            return Err(malformed(
                item_path,
                format!("invalid type: {}, expected an object", kind(other)),
            ));
        }
        None => return Err(malformed(item_path, "missing")),
    };
    let field = |name: &str| format!("{item_path}.{name}");
    let resource_type = string(item, "resourceType", &field("resourceType"))?;
    if resource_type != "AWS::KMS::Key" {
        return Err(malformed(
            &field("resourceType"),
            format!(
                "{resource_type:?}: the rule evaluates AWS::KMS::Key only (scope it to that type)"
            ),
        ));
    }
    let key = string(item, "ARN", &field("ARN"))?
        .parse::<KeyArn>()
        .map_err(|e| malformed(&field("ARN"), e.to_string()))?;
    let resource_id = string(item, "resourceId", &field("resourceId"))?;
    if resource_id != key.key_id() {
        return Err(malformed(
            &field("resourceId"),
            format!(
                "{resource_id:?} is not the key id of the ARN ({})",
                key.key_id()
            ),
        ));
    }
    let item_account = parse_account(
        string(item, "awsAccountId", &field("awsAccountId"))?,
        &field("awsAccountId"),
    )?;
    if &item_account != key.account() || item_account != account {
        return Err(malformed(
            &field("awsAccountId"),
            format!(
                "{item_account}: the key's account ({}) and the rule's ({account}) must be it",
                key.account()
            ),
        ));
    }
    let item_region = string(item, "awsRegion", &field("awsRegion"))?;
    if item_region != key.region().as_str() || item_region != region.as_str() {
        return Err(malformed(
            &field("awsRegion"),
            format!(
                "{item_region:?}: the key's Region ({}) and the rule's ({region}) must be it",
                key.region()
            ),
        ));
    }
    let status = string(
        item,
        "configurationItemStatus",
        &field("configurationItemStatus"),
    )?;
    let deleted = match status {
        "OK" | "ResourceDiscovered" => false,
        "ResourceDeleted" | "ResourceDeletedNotRecorded" | "ResourceNotRecorded" => true,
        other => {
            return Err(malformed(
                &field("configurationItemStatus"),
                format!("{other:?} is not a configuration item status"),
            ));
        }
    };
    let captured = optional_string(
        item,
        "configurationItemCaptureTime",
        &field("configurationItemCaptureTime"),
    )?
    .map(|t| time(t, &field("configurationItemCaptureTime")))
    .transpose()?;
    Ok(Invocation {
        account,
        region,
        rule,
        result_token: result_token.to_owned(),
        subject: Subject::Key {
            key,
            gone: deleted || left_scope,
        },
        ordering: captured.or(notified).unwrap_or_else(SystemTime::now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn a_change_notification_names_the_key_in_the_rules_account_and_region() {
        let inv = parse(&sample("config-rule-change.json")).unwrap();
        let Subject::Key { key, gone } = &inv.subject else {
            panic!("{inv:?}")
        };
        assert!(!gone);
        assert_eq!(key.region().as_str(), "us-west-2");
        assert_eq!(inv.region.as_str(), "us-west-2");
        assert_eq!(inv.account.as_str(), "111122223333");
        assert!(key.key_id().starts_with("mrk-"));
        assert_eq!(
            crate::outcome::rfc3339(inv.ordering),
            "2026-12-07T10:15:30+00:00"
        );
    }

    #[test]
    fn an_oversized_notification_reads_the_summary_and_a_scheduled_one_the_whole_account() {
        let inv = parse(&sample("config-rule-oversized.json")).unwrap();
        assert!(matches!(inv.subject, Subject::Key { gone: false, .. }));
        let inv = parse(&sample("config-rule-scheduled.json")).unwrap();
        assert_eq!(inv.subject, Subject::Scheduled);
        assert_eq!(inv.region.as_str(), "us-west-2");
    }

    #[test]
    fn a_deleted_key_or_one_out_of_scope_is_gone_and_not_looked_up() {
        let mut v = sample("config-rule-change.json");
        v["eventLeftScope"] = Value::Bool(true);
        assert!(matches!(
            parse(&v).unwrap().subject,
            Subject::Key { gone: true, .. }
        ));
        let mut v = sample("config-rule-change.json");
        let mut inner: Value = serde_json::from_str(v["invokingEvent"].as_str().unwrap()).unwrap();
        inner["configurationItem"]["configurationItemStatus"] = "ResourceDeleted".into();
        v["invokingEvent"] = inner.to_string().into();
        assert!(matches!(
            parse(&v).unwrap().subject,
            Subject::Key { gone: true, .. }
        ));
    }

    #[test]
    fn a_key_named_in_two_places_at_once_is_refused() {
        let mut v = sample("config-rule-change.json");
        let mut inner: Value = serde_json::from_str(v["invokingEvent"].as_str().unwrap()).unwrap();
        inner["configurationItem"]["awsRegion"] = "eu-west-1".into();
        v["invokingEvent"] = inner.to_string().into();
        let e = parse(&v).unwrap_err().to_string();
        assert!(
            e.contains("invokingEvent.configurationItem.awsRegion"),
            "{e}"
        );
        let mut v = sample("config-rule-change.json");
        v["accountId"] = "444455556666".into();
        let e = parse(&v).unwrap_err().to_string();
        assert!(e.contains("accountId"), "{e}");
    }
}
