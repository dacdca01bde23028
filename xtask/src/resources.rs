//! What the hub stack is made of, declared once: its resources by type, at the defaults and what
//! each optional part adds, and the backups bucket's own settings (the audit trail: how it is
//! kept, who can read it). `cargo xtask docs` writes them into `infra/contract.json` (key
//! `resources`); infra/tests/test_contract.py checks the SAM hub (its conditions evaluated at the
//! parameters' values) and the synthesized CDK hub, and the CDK app's jest test its hub at each
//! setting, against them.
//!
//! Alarms are counted from their own declarations (xtask/src/alarms.rs, by the condition each exists
//! under). IAM policies are not counted: a role's grants are compared statement by statement with
//! the contract's `iam`, and the two tools attach them differently (SAM's conditional grants are
//! policies of their own, CDK writes them into the role).

use serde::Serialize;
use serde_json::{Value, json};

use crate::alarms::{ALARMS, Exists};

/// How many resources of each type a hub has (alarms aside).
pub type Inventory = &'static [(&'static str, u32)];

/// The hub's resources by type at the defaults (dry-run, no detector, no organisation, no e-mail),
/// alarms aside.
pub const HUB_AT_DEFAULTS: Inventory = &[
    // The remediator, its on-failure configuration, the KMS rule's and the schedule's invokes.
    ("AWS::Lambda::Function", 1),
    ("AWS::Lambda::EventInvokeConfig", 1),
    ("AWS::Lambda::Permission", 2),
    ("AWS::Lambda::EventSourceMapping", 1),
    ("AWS::IAM::Role", 1),
    ("AWS::Logs::LogGroup", 1),
    // The on-failure queue, the sweep work queue and its dead-letter queue; the work queue's policy.
    ("AWS::SQS::Queue", 3),
    ("AWS::SQS::QueuePolicy", 1),
    ("AWS::S3::Bucket", 1),
    ("AWS::S3::BucketPolicy", 1),
    // The KMS rule, the schedule, the exposure, write-refused, exemption and guard-change rules.
    ("AWS::Events::Rule", 6),
    ("AWS::Events::EventBus", 1),
    ("AWS::SNS::Topic", 1),
    ("AWS::SNS::TopicPolicy", 1),
    ("AWS::KMS::Key", 1),
    ("AWS::CloudWatch::Dashboard", 1),
];

/// What the detector adds (Security Hub on and an AWS Config rule in the account), alarms aside: its
/// function, role, log group and on-failure configuration, its notification and sweep rules, the
/// Config rule and three invoke permissions.
pub const DETECTOR_ADDS: Inventory = &[
    ("AWS::Lambda::Function", 1),
    ("AWS::Lambda::EventInvokeConfig", 1),
    ("AWS::Lambda::Permission", 3),
    ("AWS::IAM::Role", 1),
    ("AWS::Logs::LogGroup", 1),
    ("AWS::Events::Rule", 2),
    ("AWS::Config::ConfigRule", 1),
];

/// The SAM conditions the detector's parts exist under (Security Hub on; a Config rule).
const DETECTOR_CONDITIONS: [&str; 2] = ["SecurityHubOn", "HasConfigRule"];
/// The SAM condition of what enforce mode adds.
const ENFORCING: &str = "Enforcing";

/// The backups bucket: every policy the guard overwrites, saved before the write, and the flap
/// guard's write history. Its properties as CloudFormation takes them (`${BackupRetentionDays}` is
/// the stack's retention setting, in days).
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// The bucket's properties.
    pub properties: Value,
    /// Kept, with its bucket policy, when the stack is deleted or the bucket replaced
    /// (DeletionPolicy and UpdateReplacePolicy `Retain`).
    pub retained: bool,
}

/// The backups bucket: SSE-S3, versioned (an overwritten or deleted backup stays as a noncurrent
/// version), private, ACL-free, and kept for the retention setting, its noncurrent versions too.
pub fn backups_bucket() -> Bucket {
    Bucket {
        properties: json!({
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    { "ServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" } }
                ]
            },
            "VersioningConfiguration": { "Status": "Enabled" },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": true,
                "BlockPublicPolicy": true,
                "IgnorePublicAcls": true,
                "RestrictPublicBuckets": true
            },
            "OwnershipControls": { "Rules": [{ "ObjectOwnership": "BucketOwnerEnforced" }] },
            "LifecycleConfiguration": {
                "Rules": [{
                    "Id": "ExpireBackups",
                    "Status": "Enabled",
                    "ExpirationInDays": "${BackupRetentionDays}",
                    "NoncurrentVersionExpiration": { "NoncurrentDays": "${BackupRetentionDays}" }
                }]
            }
        }),
        retained: true,
    }
}

/// The declared alarms that exist under one of these SAM conditions (none: always).
fn alarms_under(conditions: &[&str]) -> u32 {
    let n = ALARMS
        .iter()
        .filter(|a| match a.exists {
            Exists::Always => conditions.is_empty(),
            Exists::When { sam_condition, .. } => conditions.contains(&sam_condition),
        })
        .count();
    u32::try_from(n).expect("a few alarms")
}

fn inventory(list: Inventory, alarms: u32) -> Value {
    let mut out: serde_json::Map<String, Value> = list
        .iter()
        .map(|(t, n)| ((*t).to_owned(), json!(n)))
        .collect();
    if alarms > 0 {
        out.insert("AWS::CloudWatch::Alarm".to_owned(), json!(alarms));
    }
    Value::Object(out)
}

/// The `resources` section of infra/contract.json.
pub fn contract() -> Value {
    json!({
        "hub_at_defaults": inventory(HUB_AT_DEFAULTS, alarms_under(&[])),
        "detector_adds": inventory(DETECTOR_ADDS, alarms_under(&DETECTOR_CONDITIONS)),
        "enforce_adds": inventory(&[], alarms_under(&[ENFORCING])),
        "backups_bucket": backups_bucket(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_type_is_listed_twice_and_neither_alarms_nor_iam_policies_are_counted_by_hand() {
        for list in [HUB_AT_DEFAULTS, DETECTOR_ADDS] {
            let mut types: Vec<&str> = list.iter().map(|(t, _)| *t).collect();
            types.sort_unstable();
            types.dedup();
            assert_eq!(types.len(), list.len(), "{list:?}");
            assert!(list.iter().all(|(t, n)| *n > 0
                && *t != "AWS::IAM::Policy"
                && *t != "AWS::CloudWatch::Alarm"));
        }
    }

    #[test]
    fn every_declared_alarm_is_counted_once() {
        let counted =
            alarms_under(&[]) + alarms_under(&DETECTOR_CONDITIONS) + alarms_under(&[ENFORCING]);
        assert_eq!(counted as usize, ALARMS.len());
        let c = contract();
        assert_eq!(c["enforce_adds"], json!({"AWS::CloudWatch::Alarm": 1}));
        assert!(
            c["hub_at_defaults"]["AWS::CloudWatch::Alarm"]
                .as_u64()
                .unwrap()
                > 10
        );
    }
}
