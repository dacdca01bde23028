//! The stacks' outputs, declared once: what an operator reads back from a deployment (the book's
//! commands query them by key). `cargo xtask docs` writes them into `infra/contract.json` (key
//! `outputs`); infra/tests/test_contract.py checks the SAM templates' and the synthesized CDK
//! stacks' outputs against them, and a test here that the book names no output that does not
//! exist. Each tool writes its own descriptions (they name its own parameters or context keys).

use serde::Serialize;

/// The stack an output belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// The hub (infra/sam/template.yaml, the CDK `Hub`).
    Hub,
    /// The member accounts' StackSet (infra/sam/member.yaml, the CDK `Member`).
    Member,
    /// A spoke Region (infra/sam/spoke.yaml, the CDK `Spoke-<region>`).
    Spoke,
}

/// What an output gives, by the logical id of the resource in the SAM template (the CDK
/// stacks use the same construct ids, with CDK's hash appended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// `Ref` of the resource (a name, a URL for a queue, an ARN for a topic).
    Ref(&'static str),
    /// Its `Arn` attribute.
    Arn(&'static str),
    /// Computed by the stack (an ARN it builds, a choice between resources).
    Computed,
}

/// One output.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Output {
    /// Its stack.
    pub stack: Stack,
    /// The output's key.
    pub name: &'static str,
    /// What it gives.
    pub value: Value,
    /// The SAM condition it exists under (the CDK app decides the same at synth time, or
    /// keeps the condition in a StackSet template).
    pub condition: Option<&'static str>,
}

const fn out(stack: Stack, name: &'static str, value: Value) -> Output {
    Output {
        stack,
        name,
        value,
        condition: None,
    }
}

const fn when(stack: Stack, name: &'static str, value: Value, condition: &'static str) -> Output {
    Output {
        stack,
        name,
        value,
        condition: Some(condition),
    }
}

use Stack::{Hub, Member, Spoke};
use Value::{Arn, Computed, Ref};

/// Every output of every stack.
pub const OUTPUTS: [Output; 24] = [
    out(Hub, "FunctionName", Ref("Function")),
    out(Hub, "FunctionArn", Arn("Function")),
    out(Hub, "RemediatorRoleArn", Arn("RemediatorRole")),
    out(Hub, "RemediatorRoleName", Ref("RemediatorRole")),
    when(
        Hub,
        "DetectorFunctionName",
        Ref("DetectorFunction"),
        "HasDetector",
    ),
    when(
        Hub,
        "DetectorFunctionArn",
        Arn("DetectorFunction"),
        "HasDetector",
    ),
    when(Hub, "DetectorRoleArn", Arn("DetectorRole"), "HasDetector"),
    when(Hub, "DetectorRoleName", Ref("DetectorRole"), "HasDetector"),
    // The stack's own drift bus, or `default` (DriftEventBus / driftEventBus).
    out(Hub, "DriftEventBusName", Computed),
    out(Hub, "BackupBucketName", Ref("BackupBucket")),
    out(Hub, "DeadLetterQueueUrl", Ref("DeadLetterQueue")),
    out(Hub, "DeadLetterQueueArn", Arn("DeadLetterQueue")),
    out(Hub, "AlarmTopicArn", Ref("AlarmTopic")),
    // This Region's default bus: the target of the spoke and member stacks.
    out(Hub, "HubEventBusArn", Computed),
    out(Hub, "SweepQueueUrl", Ref("SweepQueue")),
    out(Hub, "SweepDeadLetterQueueUrl", Ref("SweepDeadLetterQueue")),
    out(Hub, "DashboardName", Ref("Dashboard")),
    when(
        Member,
        "MemberRoleArn",
        Arn("MemberRole"),
        "CreateMemberRole",
    ),
    when(
        Member,
        "DetectorRoleArn",
        Arn("DetectorRole"),
        "CreateDetectorRole",
    ),
    when(
        Member,
        "ForwardRuleArn",
        Arn("ForwardKmsEvents"),
        "ForwardEvents",
    ),
    out(Member, "HubEventBusArn", Computed),
    out(Spoke, "ForwardRuleArn", Arn("ForwardKmsEvents")),
    when(
        Spoke,
        "GuardRoleChangesRuleArn",
        Arn("ForwardGuardRoleChanges"),
        "ForwardGuardRoleChanges",
    ),
    out(Spoke, "HubEventBusArn", Computed),
];

/// The outputs, as the contract carries them.
pub fn contract() -> serde_json::Value {
    serde_json::to_value(OUTPUTS).expect("the outputs serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn markdown(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                markdown(&path, found);
            } else if path.extension().and_then(|e| e.to_str()) == Some("md") {
                found.push(path);
            }
        }
    }

    #[test]
    fn the_book_queries_only_outputs_that_exist() {
        // `--query "Stacks[0].Outputs[?OutputKey=='X'].OutputValue"`: a renamed output would
        // leave the command printing nothing at 3 a.m.
        let root = crate::env::root();
        let mut pages = vec![root.join("README.md")];
        markdown(&root.join("docs/src"), &mut pages);
        let names: BTreeSet<&str> = OUTPUTS.iter().map(|o| o.name).collect();
        let mut queried = 0;
        for page in pages {
            let text = std::fs::read_to_string(&page).unwrap();
            for (i, _) in text.match_indices("OutputKey==") {
                let rest = &text[i + "OutputKey==".len()..];
                let quote = rest.chars().next().unwrap();
                let key = rest[1..].split(quote).next().unwrap();
                assert!(
                    names.contains(key),
                    "{} queries the output {key}, which no stack has",
                    page.display()
                );
                queried += 1;
            }
        }
        assert!(queried >= 5, "the book's commands read outputs by key");
    }

    #[test]
    fn each_output_is_declared_once_per_stack() {
        let mut seen = BTreeSet::new();
        for o in OUTPUTS {
            assert!(
                seen.insert((o.stack as u8, o.name)),
                "{:?} {} twice",
                o.stack,
                o.name
            );
        }
    }
}
