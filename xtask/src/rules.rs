//! The hub stack's EventBridge rules, declared once where the facts they rest on live: the
//! KMS calls the function acts on (`krg_engine::trigger::KMS_EVENT_NAMES`), the `source` and
//! `detail-type`s of the guard's own events (`krg_engine::outcome::DriftNews`) and the
//! exposure severities (`krg_policy::Severity`). `cargo xtask docs` writes them into
//! `infra/contract.json` (key `rules`); the CDK app builds its rule patterns and messages
//! from there (infra/cdk/lib/event-pattern.ts), and infra/tests/test_contract.py checks every
//! SAM template's rules against them.
//!
//! A notification rule reads the guard's own events on the drift bus (put there by this
//! account) and sends one readable paragraph to the alarm topic through an InputTransformer.
//! InputTransformer paths are scalar only (no array indexing); a path that is missing (`actor`
//! is null when a sweep found the drift) renders empty.

use krg_engine::outcome::{DriftNews, NOTIFICATION_SOURCE};
use krg_engine::trigger::KMS_EVENT_NAMES;
use krg_policy::Severity;
use serde::Serialize;

/// A readable message: the event's fields and the sentence they go into, ending with the
/// runbook page of what it reports.
#[derive(Debug, Clone, Copy)]
pub struct Message {
    /// `<placeholder>` → the event path it is read from.
    pub paths: &'static [(&'static str, &'static str)],
    /// The sentence, with `<placeholder>`s; the runbook is appended.
    pub text: &'static str,
    /// The runbook page (`docs/src/runbook/…`).
    pub runbook: &'static str,
}

impl Message {
    /// The InputTemplate: the sentence and its runbook as one JSON string.
    pub fn input_template(&self) -> String {
        format!("\"{} Runbook: {}\"", self.text, self.runbook)
    }
}

/// A notification rule on the guard's own events.
#[derive(Debug, Clone, Copy)]
pub struct Notification {
    /// The logical id in both stacks.
    pub logical_id: &'static str,
    /// The rule's name after `<stack>-` (fixed names: the guard change rule names them, and
    /// Ref of a rule on a custom bus is `BUS|NAME`, not the name CloudTrail records).
    pub name: &'static str,
    /// The rule's description.
    pub description: &'static str,
    /// The events it reads.
    pub news: &'static [DriftNews],
    /// Only drifts of these exposure severities (`detail.exposure.severity`); empty: any.
    pub exposure: &'static [Severity],
    /// What it sends to the alarm topic.
    pub message: Message,
}

/// The actor of the event that caused what is reported (null for a sweep: renders empty).
const ACTOR: [(&str, &str); 4] = [
    ("actor_arn", "$.detail.actor.arn"),
    ("actor_ip", "$.detail.actor.source_ip_address"),
    ("actor_time", "$.detail.actor.event_time"),
    ("actor_event_id", "$.detail.actor.event_id"),
];

/// The notification rules of the hub stack, in the order the stacks declare them.
pub const NOTIFICATIONS: [Notification; 3] = [
    Notification {
        logical_id: "ExposureNotificationRule",
        name: "exposure",
        description: "Public and cross-account replica key policy drifts found by kms-replica-guard, as a readable message to the alarm topic",
        news: &[
            DriftNews::Detected,
            DriftNews::Remediated,
            DriftNews::RemediationFailed,
        ],
        exposure: &[Severity::Public, Severity::CrossAccount],
        message: Message {
            paths: &[
                ("severity", "$.detail.exposure.severity"),
                ("key_arn", "$.detail.key_arn"),
                ("region", "$.detail.region"),
                ("account", "$.detail.account"),
                ("action", "$.detail.action"),
                ACTOR[0],
                ACTOR[1],
                ACTOR[2],
                ACTOR[3],
            ],
            text: "kms-replica-guard: <severity> drift on <key_arn> (<region>, account <account>): <action>. Caused by <actor_arn> from <actor_ip> at <actor_time> (CloudTrail event <actor_event_id>).",
            runbook: "docs/src/runbook/exposuredrift.md",
        },
    },
    Notification {
        logical_id: "WriteRefusedNotificationRule",
        name: "write-refused",
        description: "Key policy writes the kms-replica-guard guardrails refused, as a readable message to the alarm topic",
        news: &[DriftNews::WriteRefused],
        exposure: &[],
        message: Message {
            paths: &[
                ("key_arn", "$.detail.key_arn"),
                ("region", "$.detail.region"),
                ("account", "$.detail.account"),
                ("reason", "$.detail.reason"),
                ACTOR[0],
                ACTOR[1],
                ACTOR[2],
                ACTOR[3],
            ],
            text: "kms-replica-guard: write refused on <key_arn> (<region>, account <account>): <reason> Triggered by <actor_arn> from <actor_ip> at <actor_time> (CloudTrail event <actor_event_id>).",
            runbook: "docs/src/runbook/guardrailrefused.md",
        },
    },
    Notification {
        logical_id: "ExemptionNotificationRule",
        name: "exemption",
        description: "Exemptions (the exclude tag set on a key) seen by kms-replica-guard, as a readable message to the alarm topic",
        news: &[DriftNews::ExemptionGranted],
        exposure: &[],
        message: Message {
            paths: &[
                ("key_arn", "$.detail.key_arn"),
                ("tag", "$.detail.tag"),
                ("value", "$.detail.value"),
                ACTOR[0],
                ACTOR[1],
                ACTOR[2],
                ACTOR[3],
            ],
            text: "kms-replica-guard: exemption granted on <key_arn>: tag <tag>=<value> set by <actor_arn> from <actor_ip> at <actor_time> (CloudTrail event <actor_event_id>). The guard no longer fixes this key.",
            runbook: "docs/src/runbook/exemption-granted.md",
        },
    },
];

/// The guard change rule's message (CloudTrail records of changes to the guard's own
/// resources, on the default bus): who did what to which of them.
pub const GUARD_CHANGE_MESSAGE: Message = Message {
    paths: &[
        ("event_name", "$.detail.eventName"),
        ("event_source", "$.detail.eventSource"),
        ("function", "$.detail.requestParameters.functionName"),
        ("mapping", "$.detail.requestParameters.uUID"),
        ("rule_name", "$.detail.requestParameters.name"),
        ("rule", "$.detail.requestParameters.rule"),
        ("alarm", "$.detail.requestParameters.alarmName"),
        ("role", "$.detail.requestParameters.roleName"),
        ("actor_arn", "$.detail.userIdentity.arn"),
        ("actor_ip", "$.detail.sourceIPAddress"),
        ("event_time", "$.detail.eventTime"),
        ("account", "$.account"),
        ("region", "$.detail.awsRegion"),
        ("event_id", "$.detail.eventID"),
    ],
    text: "kms-replica-guard: its own configuration changed: <event_name> (<event_source>) on <function><mapping><rule_name><rule><alarm><role> by <actor_arn> from <actor_ip> at <event_time> (account <account>, <region>, CloudTrail event <event_id>).",
    runbook: "docs/src/runbook/guard-configuration-changed.md",
};

/// The IAM calls that change what a guard role may do (the guard change rule's IAM branch,
/// and the us-east-1 spoke's forwarding rule).
pub const GUARD_ROLE_EVENT_NAMES: [&str; 5] = [
    "PutRolePolicy",
    "DeleteRolePolicy",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "UpdateAssumeRolePolicy",
];

#[derive(Serialize)]
struct MessageJson {
    input_paths_map: serde_json::Map<String, serde_json::Value>,
    input_template: String,
    runbook: &'static str,
}

impl From<&Message> for MessageJson {
    fn from(m: &Message) -> Self {
        MessageJson {
            input_paths_map: m
                .paths
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).into()))
                .collect(),
            input_template: m.input_template(),
            runbook: m.runbook,
        }
    }
}

#[derive(Serialize)]
struct NotificationJson {
    logical_id: &'static str,
    name: &'static str,
    description: &'static str,
    /// The EventPattern without `account` (each stack adds this account's).
    event_pattern: serde_json::Value,
    message: MessageJson,
}

#[derive(Serialize)]
struct Rules {
    kms_event_names: [&'static str; 6],
    guard_event_source: &'static str,
    notifications: Vec<NotificationJson>,
    guard_change_message: MessageJson,
    guard_role_event_names: [&'static str; 5],
}

/// The rules, as the contract carries them.
pub fn contract() -> serde_json::Value {
    let notifications = NOTIFICATIONS
        .iter()
        .map(|n| {
            let mut pattern = serde_json::json!({
                "source": [NOTIFICATION_SOURCE],
                "detail-type": n.news.iter().map(|d| d.detail_type()).collect::<Vec<_>>(),
            });
            if !n.exposure.is_empty() {
                pattern["detail"] = serde_json::json!({
                    "exposure": { "severity": n.exposure.iter().map(|s| s.as_str()).collect::<Vec<_>>() }
                });
            }
            NotificationJson {
                logical_id: n.logical_id,
                name: n.name,
                description: n.description,
                event_pattern: pattern,
                message: (&n.message).into(),
            }
        })
        .collect();
    serde_json::to_value(Rules {
        kms_event_names: KMS_EVENT_NAMES,
        guard_event_source: NOTIFICATION_SOURCE,
        notifications,
        guard_change_message: (&GUARD_CHANGE_MESSAGE).into(),
        guard_role_event_names: GUARD_ROLE_EVENT_NAMES,
    })
    .expect("the rules serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn messages() -> Vec<Message> {
        NOTIFICATIONS
            .iter()
            .map(|n| n.message)
            .chain([GUARD_CHANGE_MESSAGE])
            .collect()
    }

    #[test]
    fn every_placeholder_has_a_path_and_every_path_is_used() {
        for m in messages() {
            let used: BTreeSet<&str> = m
                .text
                .split('<')
                .skip(1)
                .map(|s| s.split_once('>').expect("a closed placeholder").0)
                .collect();
            let given: BTreeSet<&str> = m.paths.iter().map(|(k, _)| *k).collect();
            assert_eq!(used, given, "{}", m.runbook);
        }
    }

    #[test]
    fn paths_are_scalar_event_paths_and_runbooks_exist() {
        // InputTransformer cannot index arrays: `$.a.b`, never `$.a[0]`.
        let root = crate::env::root();
        for m in messages() {
            for (name, path) in m.paths {
                let rest = path
                    .strip_prefix("$.")
                    .expect("a path from the event's root");
                assert!(
                    rest.split('.').all(|part| !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')),
                    "{name}: {path}"
                );
            }
            assert!(
                root.join(m.runbook).is_file(),
                "{} does not exist",
                m.runbook
            );
            assert!(
                !m.text.contains('"'),
                "the sentence is inside a JSON string"
            );
        }
    }

    #[test]
    fn the_exposure_rule_reads_the_drifts_that_open_a_key() {
        let c = contract();
        let exposure = &c["notifications"][0];
        assert_eq!(exposure["logical_id"], "ExposureNotificationRule");
        assert_eq!(
            exposure["event_pattern"]["detail"]["exposure"]["severity"],
            serde_json::json!(["public", "cross-account"])
        );
        assert_eq!(
            exposure["event_pattern"]["detail-type"],
            serde_json::json!([
                "Replica Key Policy Drift Detected",
                "Replica Key Policy Remediated",
                "Replica Key Policy Remediation Failed"
            ])
        );
    }
}
