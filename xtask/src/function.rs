//! The functions as every deployment runs them, declared once: the runtime, the architecture,
//! the binaries, the log format, the defaults of memory, timeout and log retention, and the
//! variables each function is deployed with.
//! `cargo xtask docs` writes them into `infra/contract.json` (key `function`); the CDK app
//! builds its functions from there, infra/tests/test_contract.py checks the SAM template, and a
//! test here checks cargo-lambda's deploy metadata in Cargo.toml (`cargo lambda deploy`).
//!
//! The architecture is the one the budgets are measured on (`make build`: the arm64 package).

use serde::Serialize;

/// The functions' deployment facts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Function {
    /// Lambda's OS-only runtime: the binary is the handler.
    pub runtime: &'static str,
    /// The instruction set the package is built for.
    pub architecture: &'static str,
    /// The handler name Lambda runs (`bootstrap` on an OS-only runtime).
    pub handler: &'static str,
    /// The remediator's binary (`src/bin/<name>.rs`).
    pub remediator_binary: &'static str,
    /// The detector's binary (`src/bin/<name>.rs`).
    pub detector_binary: &'static str,
    /// Lambda's log format: every line a JSON object, the fields the book documents.
    pub log_format: &'static str,
    /// The default memory, MB (the stacks' MemorySize / memorySize).
    pub memory_mb: u32,
    /// The default timeout, seconds (FunctionTimeout / functionTimeout): a sweep of many keys
    /// needs minutes.
    pub timeout_seconds: u32,
    /// The default retention of the log groups, days (LogRetentionDays / logRetentionDays):
    /// the logs hold every replaced policy.
    pub log_retention_days: u32,
    /// The default application log level (LogLevel / logLevel); Lambda's own lines at INFO.
    pub log_level: &'static str,
    /// Asynchronous invocations: the default retries after a failure (MaxRetryAttempts /
    /// maxRetryAttempts), then the event goes to the stack's on-failure queue.
    pub max_retry_attempts: u32,
    /// Asynchronous invocations: the default age after which an event is given up on
    /// (MaxEventAgeSeconds / maxEventAgeSeconds); the AsyncEventAge alarm fires at half of it.
    pub max_event_age_seconds: u32,
    /// The remediator's log group (`Fn::Sub` text): where the book sends an operator (Logs
    /// Insights) and the role's logs grant points.
    pub remediator_log_group: &'static str,
    /// The detector's log group (`Fn::Sub` text).
    pub detector_log_group: &'static str,
}

/// The functions' deployment facts.
pub const FUNCTION: Function = Function {
    runtime: "provided.al2023",
    architecture: "arm64",
    handler: "bootstrap",
    remediator_binary: "bootstrap",
    detector_binary: "detector",
    log_format: "JSON",
    memory_mb: 256,
    timeout_seconds: 300,
    log_retention_days: 365,
    log_level: "INFO",
    max_retry_attempts: 2,
    max_event_age_seconds: 3600,
    remediator_log_group: "/kms-replica-guard/${AWS::StackName}",
    detector_log_group: "/kms-replica-guard/${AWS::StackName}-detector",
};

/// The variables each function is deployed with, in the order the stacks write them: every
/// one a declared setting (`src/config/vars.rs`). The detector gets what is guarded and against
/// which baseline, never what writes or publishes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Environment {
    /// The remediator's.
    pub remediator: &'static [&'static str],
    /// The detector's.
    pub detector: &'static [&'static str],
    /// Set only when the stack is given a value (absent is the function's default: nobody
    /// else trusted, no exemption limit, no pinned digest, no scope).
    pub when_given: &'static [&'static str],
}

/// The guardrails, set only when given.
const GUARDRAILS: [&str; 5] = [
    "TRUSTED_ACCOUNTS",
    "TRUSTED_ORGS",
    "EXEMPTION_MAX_DAYS",
    "BASELINE_SHA256",
    "BASELINE_SCOPE",
];

/// The functions' environments.
pub const ENVIRONMENT: Environment = Environment {
    remediator: &[
        "REMEDIATION_MODE",
        "BASELINE_SOURCE",
        "BASELINE_TAG",
        "BASELINE_DEFAULT",
        "BASELINE_MATCH",
        "MIRROR_REWRITE",
        "METRICS_NAMESPACE",
        "EXCLUDE_TAG",
        GUARDRAILS[0],
        GUARDRAILS[1],
        GUARDRAILS[2],
        GUARDRAILS[3],
        GUARDRAILS[4],
        "REMEDIATOR_ROLE_ARN",
        "SWEEP_REGIONS",
        "BACKUP_BUCKET",
        "BACKUP_PREFIX",
        "FLAP_MAX",
        "FLAP_WINDOW",
        "RATE_GET_KEY_POLICY",
        "RATE_PUT_KEY_POLICY",
        "RATE_DESCRIBE_KEY",
        "RATE_INSTANCES",
        "MEMBER_ROLE_NAME",
        "MEMBER_EXTERNAL_ID",
        "MEMBER_ACCOUNTS",
        "SWEEP_QUEUE_URL",
        "EVENT_BUS",
    ],
    detector: &[
        "BASELINE_SOURCE",
        "BASELINE_TAG",
        "BASELINE_DEFAULT",
        "BASELINE_MATCH",
        "MIRROR_REWRITE",
        "METRICS_NAMESPACE",
        "EXCLUDE_TAG",
        GUARDRAILS[0],
        GUARDRAILS[1],
        GUARDRAILS[2],
        GUARDRAILS[3],
        GUARDRAILS[4],
        // The lockout check judges a baseline for the role that writes it.
        "REMEDIATOR_ROLE_ARN",
        "SWEEP_REGIONS",
        "RATE_GET_KEY_POLICY",
        "RATE_DESCRIBE_KEY",
        "RATE_INSTANCES",
        // The writer's member role (the lockout check's), and the read-only one it assumes.
        "MEMBER_ROLE_NAME",
        "MEMBER_READ_ROLE_NAME",
        "MEMBER_EXTERNAL_ID",
        "MEMBER_ACCOUNTS",
        "SECURITY_HUB",
    ],
    when_given: &GUARDRAILS,
};

/// The facts, as the contract carries them.
pub fn contract() -> serde_json::Value {
    let mut facts = serde_json::to_value(FUNCTION).expect("the function facts serialise");
    facts["environment"] = serde_json::to_value(ENVIRONMENT).expect("the environments serialise");
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_replica_guard::config::vars;

    #[test]
    fn every_variable_deployed_is_a_declared_setting() {
        for name in ENVIRONMENT.remediator.iter().chain(ENVIRONMENT.detector) {
            assert!(vars::var(name).is_some(), "{name} is not a setting");
        }
        // The detector never gets what writes or publishes.
        for name in [
            "REMEDIATION_MODE",
            "BACKUP_BUCKET",
            "RATE_PUT_KEY_POLICY",
            "EVENT_BUS",
            "SWEEP_QUEUE_URL",
        ] {
            assert!(!ENVIRONMENT.detector.contains(&name), "{name}");
        }
        for name in ENVIRONMENT.when_given {
            assert!(ENVIRONMENT.remediator.contains(name) && ENVIRONMENT.detector.contains(name));
        }
    }

    #[test]
    fn the_binaries_exist() {
        let root = crate::env::root();
        for bin in [FUNCTION.remediator_binary, FUNCTION.detector_binary] {
            assert!(root.join(format!("src/bin/{bin}.rs")).is_file(), "{bin}");
        }
    }

    #[test]
    fn cargo_lambdas_deploy_metadata_is_the_contracts() {
        // `cargo lambda deploy` reads [package.metadata.lambda.deploy]: the same memory, timeout
        // and log retention as the stacks, and an environment of declared settings at their
        // declared defaults.
        let out = std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(crate::env::root())
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let package = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "kms-replica-guard")
            .expect("the function's package");
        let deploy = &package["metadata"]["lambda"]["deploy"];
        assert_eq!(deploy["memory"], FUNCTION.memory_mb);
        assert_eq!(deploy["timeout"], FUNCTION.timeout_seconds);
        assert_eq!(deploy["log_retention"], FUNCTION.log_retention_days);
        let env = deploy["env"].as_object().expect("an environment");
        assert!(!env.is_empty());
        for (name, value) in env {
            let var = vars::var(name).unwrap_or_else(|| panic!("{name} is not a setting"));
            assert_eq!(
                Some(value.as_str().unwrap()),
                var.default,
                "{name}: cargo lambda deploy would set another value than the default"
            );
        }
    }
}
