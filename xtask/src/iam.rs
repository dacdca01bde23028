//! The function roles' own statements, declared once: what the remediator and the read-only
//! detector may do in the hub account whatever the stack's settings (the grants a setting adds,
//! the baseline's location, the member accounts, findings and Config answers, are the stacks'
//! own, each under its condition), the KMS writes the detector's roles deny, the backups
//! bucket's policy, who may publish to the alarm topic and use its key, and the member
//! accounts' roles (the writer's and the detector's). `cargo xtask docs`
//! writes them into `infra/contract.json` (key `iam`); the CDK app builds the role's inline
//! policy from there (infra/cdk/lib/constructs/remediator.ts), infra/tests/test_contract.py
//! checks the SAM template's, and infra/tests/test_permissions.py checks every action against
//! the calls the code makes.
//!
//! Resources and condition values are CloudFormation `Fn::Sub` text: `${AWS::Partition}`,
//! `${AWS::AccountId}`, `${Name}` (a resource's Ref or a stack parameter), `${Name.Arn}`, and
//! `${DriftBusArn}`: the drift bus, the stack's own or the Region's default bus (EVENT_BUS).

use kms_replica_guard::config::vars;
use serde::Serialize;

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses whatever else grants.
    Deny,
}

/// One statement.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    /// Its Sid, the same in both stacks.
    pub sid: &'static str,
    /// Allow or Deny.
    pub effect: Effect,
    /// Whom a resource policy's statement is about, as IAM writes it (`{"AWS": "*"}`: anyone,
    /// `{"Service": …}`); none in an identity policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<serde_json::Value>,
    /// The IAM actions.
    pub actions: &'static [&'static str],
    /// The resources (`Fn::Sub` text).
    pub resources: Vec<String>,
    /// `{operator: {key: value}}`, values in `Fn::Sub` text; none when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<serde_json::Value>,
}

fn statement(
    sid: &'static str,
    effect: Effect,
    actions: &'static [&'static str],
    resources: &[&str],
) -> Statement {
    Statement {
        sid,
        effect,
        principal: None,
        actions,
        resources: resources.iter().map(|r| (*r).to_owned()).collect(),
        condition: None,
    }
}

/// The multi-Region keys of the account, in every Region (`mrk-` ids only).
const MULTI_REGION_KEYS: &str = "arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/mrk-*";

/// Both functions read the account's multi-Region keys.
fn read_multi_region_keys() -> Statement {
    statement(
        "ReadMultiRegionKeys",
        Effect::Allow,
        &[
            "kms:DescribeKey",
            "kms:GetKeyPolicy",
            "kms:ListResourceTags",
        ],
        &[MULTI_REGION_KEYS],
    )
}

/// Both functions list the keys of a Region when they sweep it.
fn list_keys_for_sweep() -> Statement {
    statement("ListKeysForSweep", Effect::Allow, &["kms:ListKeys"], &["*"])
}

/// Both functions publish their metrics in the guard's namespace only.
fn publish_own_metrics() -> Statement {
    Statement {
        condition: Some(
            serde_json::json!({ "StringEquals": { "cloudwatch:namespace": "${MetricsNamespace}" } }),
        ),
        ..statement(
            "PublishOwnMetrics",
            Effect::Allow,
            &["cloudwatch:PutMetricData"],
            &["*"],
        )
    }
}

/// Each function writes to its own log group (`Fn::Sub` text of its ARN).
fn write_own_logs(group: &str) -> Statement {
    statement(
        "WriteOwnLogs",
        Effect::Allow,
        &["logs:CreateLogStream", "logs:PutLogEvents"],
        &[group],
    )
}

/// Lambda sends a failed asynchronous event of either function to the stack's one on-failure queue.
fn send_failed_events_to_queue() -> Statement {
    statement(
        "SendFailedEventsToQueue",
        Effect::Allow,
        &["sqs:SendMessage"],
        &["${DeadLetterQueue.Arn}"],
    )
}

/// The remediator role's inline statements, in the order both stacks write them.
pub fn remediator() -> Vec<Statement> {
    use Effect::{Allow, Deny};
    let prefix = vars::var("BACKUP_PREFIX")
        .and_then(|v| v.default)
        .expect("BACKUP_PREFIX declares its default");
    let backups = format!("arn:${{AWS::Partition}}:s3:::${{BackupBucket}}/{prefix}*");
    let claims = format!("arn:${{AWS::Partition}}:s3:::${{BackupBucket}}/{prefix}claims/*");
    vec![
        read_multi_region_keys(),
        // Writes only replicas (kms:MultiRegionKeyType, a KMS key resource condition): a
        // primary is never written, only read as the mirror source.
        Statement {
            condition: Some(
                serde_json::json!({ "StringEquals": { "kms:MultiRegionKeyType": "REPLICA" } }),
            ),
            ..statement(
                "RewriteReplicaKeyPolicies",
                Allow,
                &["kms:PutKeyPolicy"],
                &[MULTI_REGION_KEYS],
            )
        },
        list_keys_for_sweep(),
        // The lockout check is KMS's as well as the guard's: never skipped.
        Statement {
            condition: Some(
                serde_json::json!({ "Bool": { "kms:BypassPolicyLockoutSafetyCheck": "true" } }),
            ),
            ..statement(
                "NeverBypassLockoutSafetyCheck",
                Deny,
                &["kms:PutKeyPolicy"],
                &["*"],
            )
        },
        publish_own_metrics(),
        write_own_logs("${LogGroup.Arn}"),
        send_failed_events_to_queue(),
        // The scheduled sweep plans one work item per (account, Region) and sends them to the
        // sweep queue; the same function consumes it through the SQS event source.
        statement(
            "FeedAndWorkSweepQueue",
            Allow,
            &[
                "sqs:SendMessage",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
            ],
            &["${SweepQueue.Arn}"],
        ),
        // Backups of the policies it overwrites (a failed backup blocks the write), read back
        // as the flap guard's write history: only under BACKUP_PREFIX.
        statement(
            "WriteAndReadPolicyBackups",
            Allow,
            &["s3:PutObject", "s3:GetObject"],
            &[&backups],
        ),
        // The whole (dedicated) bucket, without an s3:prefix condition: S3 answers a GetObject
        // of a missing object with 404 only to a caller that may list the bucket, and with 403
        // otherwise (a released write claim would read as denied).
        statement(
            "ListPolicyBackups",
            Allow,
            &["s3:ListBucket"],
            &["${BackupBucket.Arn}"],
        ),
        // The claim that lets one of several concurrent invocations write a fix is deleted
        // when its write is done; deleting is allowed under claims/ only.
        statement(
            "ReleaseWriteClaims",
            Allow,
            &["s3:DeleteObject"],
            &[&claims],
        ),
        // Every drift found is put on the drift bus; that bus only; a failed publish never
        // blocks a fix.
        statement(
            "PublishDriftEvents",
            Allow,
            &["events:PutEvents"],
            &["${DriftBusArn}"],
        ),
    ]
}

/// Every KMS action that changes a key (its policy, grants, tags, aliases, state, material or
/// Regions): what the detector's roles, here and in member accounts, deny whatever else is
/// attached to them.
pub const KMS_WRITES: [&str; 14] = [
    "kms:Cancel*",
    "kms:Create*",
    "kms:Delete*",
    "kms:Disable*",
    "kms:Enable*",
    "kms:Import*",
    "kms:Put*",
    "kms:Replicate*",
    "kms:Retire*",
    "kms:Revoke*",
    "kms:Schedule*",
    "kms:Tag*",
    "kms:Untag*",
    "kms:Update*",
];

/// The detector role's inline statements, in the order both stacks write them.
pub fn detector() -> Vec<Statement> {
    vec![
        read_multi_region_keys(),
        list_keys_for_sweep(),
        // Nothing here allows a KMS write; the Deny keeps it so whatever else is attached later.
        statement("NeverChangeKeys", Effect::Deny, &KMS_WRITES, &["*"]),
        // FindingsNotImported and EvaluationsNotPut, in the guard's namespace.
        publish_own_metrics(),
        write_own_logs("${DetectorLogGroup.Arn}"),
        send_failed_events_to_queue(),
    ]
}

/// The backups bucket's policy: TLS only, and the guard's memory (backups, write records,
/// claims under BACKUP_PREFIX) written by the guard alone and never erased, whatever IAM
/// grants anyone else.
pub fn backups_bucket() -> Vec<Statement> {
    use Effect::Deny;
    let prefix = vars::var("BACKUP_PREFIX")
        .and_then(|v| v.default)
        .expect("BACKUP_PREFIX declares its default");
    let memory = format!("${{BackupBucket.Arn}}/{prefix}*");
    let anyone = |s: Statement| Statement {
        principal: Some(serde_json::json!({ "AWS": "*" })),
        ..s
    };
    vec![
        anyone(Statement {
            condition: Some(serde_json::json!({ "Bool": { "aws:SecureTransport": "false" } })),
            ..statement(
                "DenyInsecureTransport",
                Deny,
                &["s3:*"],
                &["${BackupBucket.Arn}", "${BackupBucket.Arn}/*"],
            )
        }),
        // Backups, write records and claims are the guard's memory (flap guard, verification
        // failures, who is writing a fix): nobody else may plant or remove one. (S3 lifecycle
        // expiry is not a request and is not affected.)
        anyone(Statement {
            condition: Some(
                serde_json::json!({ "ArnNotEquals": { "aws:PrincipalArn": "${RemediatorRole.Arn}" } }),
            ),
            ..statement(
                "OnlyTheGuardWritesUnderItsPrefix",
                Deny,
                &["s3:DeleteObject", "s3:PutObject"],
                &[&memory],
            )
        }),
        // Versioning keeps every overwritten or deleted object as a noncurrent version until
        // the lifecycle expires it; no one, the guard included, deletes a version.
        anyone(statement(
            "NoOneDeletesHistory",
            Deny,
            &["s3:DeleteObjectVersion"],
            &[&memory],
        )),
    ]
}

/// The detector's findings, in its account's own Security Hub product (Security Hub takes a
/// finding only from the account it names): with SECURITY_HUB on, and in member accounts.
pub fn import_findings() -> Statement {
    statement(
        "ImportFindings",
        Effect::Allow,
        &["securityhub:BatchImportFindings"],
        &[
            "arn:${AWS::Partition}:securityhub:*:${AWS::AccountId}:product/${AWS::AccountId}/default",
        ],
    )
}

/// The detector's answers to the AWS Config rule (PutEvaluations has no resource-level
/// permissions): with a Config rule, and in member accounts.
pub fn answer_config_rule() -> Statement {
    statement(
        "AnswerConfigRule",
        Effect::Allow,
        &["config:PutEvaluations"],
        &["*"],
    )
}

/// The member role's statements: exactly the remediator role's own KMS statements (backups,
/// metrics and logs stay in the hub).
pub fn member_writer() -> Vec<Statement> {
    remediator()
        .into_iter()
        .filter(|s| s.actions.iter().all(|a| a.starts_with("kms:")))
        .collect()
}

/// The member detector role's statements: the detector's KMS statements (reads, every write
/// denied), its findings and its Config answers in that account.
pub fn member_detector() -> Vec<Statement> {
    detector()
        .into_iter()
        .filter(|s| s.actions.iter().all(|a| a.starts_with("kms:")))
        .chain([import_findings(), answer_config_rule()])
        .collect()
}

/// A statement of a resource policy about a service principal.
fn for_service(service: &str, s: Statement) -> Statement {
    Statement {
        principal: Some(serde_json::json!({ "Service": service })),
        ..s
    }
}

/// The alarm topic's access policy: this stack's alarms and its notification rules may
/// publish, nothing else (the account's IAM principals keep what IAM grants them).
pub fn alarm_topic() -> Vec<Statement> {
    use Effect::Allow;
    let rules: Vec<String> = crate::rules::NOTIFICATIONS
        .iter()
        .map(|n| n.logical_id)
        .chain(["GuardChangeNotificationRule"])
        .map(|id| format!("${{{id}.Arn}}"))
        .collect();
    vec![
        for_service(
            "cloudwatch.amazonaws.com",
            Statement {
                condition: Some(serde_json::json!({
                    "StringEquals": { "aws:SourceAccount": "${AWS::AccountId}" },
                    // Every alarm of the stack is named `<stack>-…`.
                    "ArnLike": { "aws:SourceArn": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:${AWS::StackName}-*" },
                })),
                ..statement(
                    "CloudWatchAlarmsPublish",
                    Allow,
                    &["sns:Publish"],
                    &["${AlarmTopic}"],
                )
            },
        ),
        for_service(
            "events.amazonaws.com",
            Statement {
                condition: Some(serde_json::json!({ "ArnEquals": { "aws:SourceArn": rules } })),
                ..statement(
                    "EventBridgeRulesPublish",
                    Allow,
                    &["sns:Publish"],
                    &["${AlarmTopic}"],
                )
            },
        ),
    ]
}

/// The alarm topic key's statements for the services that publish to the topic (besides the
/// account's own administration of the key). No aws:SourceArn / aws:SourceAccount condition:
/// neither service sends them on this KMS request.
pub fn alarm_topic_key() -> Vec<Statement> {
    use Effect::Allow;
    const ENCRYPT: &[&str] = &["kms:Decrypt", "kms:GenerateDataKey*"];
    vec![
        for_service(
            "cloudwatch.amazonaws.com",
            statement("CloudWatchAlarmsPublish", Allow, ENCRYPT, &["*"]),
        ),
        for_service(
            "events.amazonaws.com",
            statement("EventBridgeRulesPublish", Allow, ENCRYPT, &["*"]),
        ),
    ]
}

/// The statements, as the contract carries them.
pub fn contract() -> serde_json::Value {
    serde_json::json!({
        "remediator": remediator(),
        "detector": detector(),
        "kms_writes": KMS_WRITES,
        "backups_bucket": backups_bucket(),
        "alarm_topic": alarm_topic(),
        "alarm_topic_key": alarm_topic_key(),
        "import_findings": [import_findings()],
        "answer_config_rule": [answer_config_rule()],
        "member_writer": member_writer(),
        "member_detector": member_detector(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use krg_engine::error::{Api, Caller};

    /// Every action `statements` allow is the IAM action of a call `caller` makes, or one of
    /// `by_lambda` (what the Lambda service itself does with the role).
    fn grants_only_what_is_called(caller: Caller, statements: &[Statement], by_lambda: &[&str]) {
        let called: Vec<&str> = Api::ALL
            .iter()
            .filter(|op| op.callers().contains(&caller))
            .filter_map(|op| op.iam_action())
            .collect();
        for s in statements.iter().filter(|s| s.effect == Effect::Allow) {
            for a in s.actions {
                assert!(
                    called.contains(a) || by_lambda.contains(a),
                    "{}: {a} is granted but never called",
                    s.sid
                );
            }
        }
    }

    #[test]
    fn every_allowed_action_is_one_the_remediator_calls_or_lambda_needs() {
        // Lambda itself uses the role for the logs and the queue's event source mapping.
        let by_lambda = [
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ChangeMessageVisibility",
        ];
        grants_only_what_is_called(Caller::Remediator, &remediator(), &by_lambda);
    }

    /// IAM's wildcard match of an action (case-insensitive, `*` any run).
    fn matches(pattern: &str, action: &str) -> bool {
        let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
        match p.split_once('*') {
            None => p == a,
            Some((head, tail)) => a.starts_with(head) && a[head.len()..].ends_with(tail),
        }
    }

    #[test]
    fn the_kms_writes_deny_every_write_and_no_read_the_detector_makes() {
        let denied = |a: &str| KMS_WRITES.iter().any(|p| matches(p, a));
        // Every KMS write the guard makes, and the others KMS has.
        for write in [
            "kms:PutKeyPolicy",
            "kms:CreateGrant",
            "kms:ReplicateKey",
            "kms:UpdatePrimaryRegion",
            "kms:TagResource",
            "kms:UntagResource",
            "kms:ScheduleKeyDeletion",
            "kms:DisableKey",
            "kms:ImportKeyMaterial",
            "kms:RetireGrant",
            "kms:RevokeGrant",
            "kms:EnableKeyRotation",
            "kms:CancelKeyDeletion",
            "kms:DeleteAlias",
            "kms:UpdateAlias",
            "kms:CreateAlias",
        ] {
            assert!(denied(write), "{write} is not denied");
        }
        // Every KMS call the detector makes stays allowed.
        for op in Api::ALL
            .iter()
            .filter(|op| op.callers().contains(&Caller::Detector))
        {
            if let Some(action) = op.iam_action().filter(|a| a.starts_with("kms:")) {
                assert!(!denied(action), "{action} would be denied to the detector");
            }
        }
        for s in detector().iter().filter(|s| s.effect == Effect::Allow) {
            for a in s.actions {
                assert!(!denied(a), "{}: {a} is both allowed and denied", s.sid);
            }
        }
    }

    #[test]
    fn every_action_the_detector_allows_is_one_it_calls_or_lambda_needs() {
        // Lambda writes its logs and sends a failed event to the on-failure queue.
        let by_lambda = [
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "sqs:SendMessage",
        ];
        grants_only_what_is_called(Caller::Detector, &detector(), &by_lambda);
    }

    #[test]
    fn the_member_roles_hold_the_kms_statements_of_their_hub_roles() {
        let sids = |v: Vec<Statement>| v.iter().map(|s| s.sid).collect::<Vec<_>>();
        assert_eq!(
            sids(member_writer()),
            [
                "ReadMultiRegionKeys",
                "RewriteReplicaKeyPolicies",
                "ListKeysForSweep",
                "NeverBypassLockoutSafetyCheck"
            ]
        );
        assert_eq!(
            sids(member_detector()),
            [
                "ReadMultiRegionKeys",
                "ListKeysForSweep",
                "NeverChangeKeys",
                "ImportFindings",
                "AnswerConfigRule"
            ]
        );
    }

    #[test]
    fn sids_are_unique_and_the_backups_live_under_the_declared_prefix() {
        for role in [remediator(), detector()] {
            let mut sids: Vec<&str> = role.iter().map(|s| s.sid).collect();
            sids.sort_unstable();
            sids.dedup();
            assert_eq!(sids.len(), role.len());
        }
        let remediator = remediator();
        let backups = remediator
            .iter()
            .find(|s| s.sid == "WriteAndReadPolicyBackups")
            .unwrap();
        assert_eq!(
            backups.resources,
            ["arn:${AWS::Partition}:s3:::${BackupBucket}/kms-replica-guard/*"]
        );
    }
}
