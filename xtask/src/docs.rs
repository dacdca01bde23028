//! `cargo xtask docs [--check]`: the parts of the documents and of the stacks' inputs that the
//! code declares, written from the declarations (or, with `--check`, compared with them,
//! failing when they are stale, like `cargo fmt --check`):
//!
//! - the configuration table of the book (`docs/src/configuration.md`, between the
//!   `xtask:settings` markers), from the settings' declarations (`src/config/vars.rs`);
//! - the alarm table of the book (`docs/src/alarms.md`, between the `xtask:alarms` markers),
//!   from the alarms' declarations ([`crate::alarms`]);
//! - `infra/contract.json`, what the stacks must agree with: every setting with its
//!   variable, CLI flag, SAM parameter and CDK context key and the verdict of its parser on a
//!   set of probe values (so a SAM `AllowedPattern` or a CDK check that accepts what the
//!   function refuses is caught), the metric names, the tag keys, the default namespace,
//!   every alarm of the hub stack (declared in [`crate::alarms`]) and its dashboard (declared
//!   in [`crate::dashboard`]). The CDK app imports it and builds its alarms and dashboard from
//!   it; infra/tests checks the SAM template against it.

use std::path::Path;

use anyhow::{Context, bail};
use kms_replica_guard::config::vars::{Cli, EXTERNAL, Row, VARS};
use kms_replica_guard::config::{DEFAULT_EXCLUDE_TAG, DEFAULT_NAMESPACE};
use krg_engine::catalogue::DEFAULT_BASELINE_TAG;
use krg_engine::error::Api;
use krg_engine::outcome::Metric;
use serde_json::{Value, json};

use crate::env::root;
use crate::report;

/// Arguments of `cargo xtask docs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Compare instead of writing; fail when a generated part is stale.
    #[arg(long)]
    check: bool,
}

/// Values every setting's parser is asked about: the contract records which it accepts.
/// Numbers at the edges of the ranges, durations, switches, ids, lists, and junk.
pub const PROBES: &[&str] = &[
    "0",
    "1",
    "5",
    "20",
    "21",
    "64",
    "65",
    "1000",
    "1001",
    "10000",
    "10001",
    "100000",
    "100001",
    "3650",
    "3651",
    "-1",
    "1.5",
    "1h",
    "90m",
    "3600",
    "2d",
    "0s",
    "soon",
    "on",
    "off",
    "enforce",
    "dry-run",
    "exact",
    "contains",
    "primary",
    "organization",
    "111122223333",
    "111122223333,444455556666",
    "1111",
    "o-a1b2c3d4e5",
    "o-",
    "us-east-1",
    "us-east-1,eu-west-1",
    "moon",
    "AWS/Lambda",
    "kms-replica-guard:exclude",
];

/// `cargo xtask docs`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let root = root();
    report::update(
        &root.join("docs/src/configuration.md"),
        "settings",
        &settings_table(),
        args.check,
    )?;
    report::update(
        &root.join("docs/src/alarms.md"),
        "alarms",
        &crate::alarms::table(),
        args.check,
    )?;
    let contract = serde_json::to_string_pretty(&contract())? + "\n";
    let path = root.join("infra/contract.json");
    write_or_check(&path, &contract, args.check)
}

fn write_or_check(path: &Path, wanted: &str, check: bool) -> anyhow::Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current == wanted {
        println!("{}: up to date", path.display());
        return Ok(());
    }
    if check {
        bail!(
            "{} is stale: the declarations in the code changed; run `cargo xtask docs` and commit it",
            path.display()
        );
    }
    std::fs::write(path, wanted).with_context(|| format!("writing {}", path.display()))?;
    println!("{}: written", path.display());
    Ok(())
}

/// The configuration table: one row per setting with a row of its own (with the settings
/// that join it), then the variables the runtime and the SDK read.
pub fn settings_table() -> String {
    let mut out = String::from(
        "## The function's environment\n\n| Variable | Default | Meaning |\n|---|---|---|\n",
    );
    for v in VARS {
        let Row::Own { default, doc } = v.row else {
            continue;
        };
        let names = std::iter::once(v.name)
            .chain(
                VARS.iter()
                    .filter(|w| w.row == Row::With(v.name))
                    .map(|w| w.name),
            )
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!("| {names} | {default} | {doc} |\n"));
    }
    for e in EXTERNAL {
        out.push_str(&format!("| {} | {} | {} |\n", e.names, e.default, e.doc));
    }
    out
}

/// The stacks' contract.
pub fn contract() -> Value {
    let settings: Vec<Value> = VARS
        .iter()
        .map(|v| {
            let (sam, cdk) = v.stack;
            let accepts: Vec<&str> = PROBES
                .iter()
                .copied()
                .filter(|p| (v.check)(p).is_ok())
                .collect();
            json!({
                "variable": v.name,
                "aliases": v.aliases,
                "cli_flag": match v.cli { Cli::Flag { long, .. } => Some(format!("--{long}")), Cli::No => None },
                "sam_parameter": (!sam.is_empty()).then_some(sam),
                "cdk_key": (!cdk.is_empty()).then_some(cdk),
                "default": v.default,
                "accepts": accepts,
            })
        })
        .collect();
    json!({
        "generated_by": "cargo xtask docs (from src/config/vars.rs, krg-engine, xtask/src/alarms.rs, dashboard.rs, rules.rs, outputs.rs, function.rs, iam.rs and resources.rs); do not edit",
        "probes": PROBES,
        "settings": settings,
        "metrics": Metric::ALL.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "operations": operations(),
        "metrics_namespace": DEFAULT_NAMESPACE,
        "tag_keys": {
            "exclude": DEFAULT_EXCLUDE_TAG,
            "baseline": DEFAULT_BASELINE_TAG,
        },
        "alarms": crate::alarms::contract(),
        "dashboard": crate::dashboard::contract(),
        "rules": crate::rules::contract(),
        "outputs": crate::outputs::contract(),
        "function": crate::function::contract(),
        "iam": crate::iam::contract(),
        "resources": crate::resources::contract(),
    })
}

/// Every AWS operation the code calls: its IAM action and who calls it, so that each role can
/// be checked to grant exactly what its callers need.
fn operations() -> Vec<Value> {
    Api::ALL
        .iter()
        .map(|op| {
            json!({
                "operation": op.as_str(),
                "iam_action": op.iam_action(),
                "callers": op.callers().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_in_the_table_once() {
        let table = settings_table();
        for v in VARS {
            assert!(
                table.contains(&format!("`{}`", v.name)),
                "{} is not documented",
                v.name
            );
            if let Row::With(lead) = v.row {
                let leader = VARS
                    .iter()
                    .find(|w| w.name == lead)
                    .expect("a declared row");
                assert!(
                    matches!(leader.row, Row::Own { .. }),
                    "{lead} has no row of its own"
                );
            }
        }
    }

    #[test]
    fn the_contract_records_each_parsers_verdicts() {
        let c = contract();
        let concurrency = c["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["variable"] == "CONCURRENCY")
            .unwrap();
        let accepts: Vec<&str> = concurrency["accepts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(accepts, ["1", "5", "20", "21", "64"]);
        assert!(
            c["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == "SweepCompleted")
        );
    }

    #[test]
    fn the_committed_documents_are_current() {
        let root = root();
        let page = std::fs::read_to_string(root.join("docs/src/configuration.md")).unwrap();
        assert_eq!(
            report::section(&page, "settings").unwrap(),
            settings_table().trim_matches('\n'),
            "run `cargo xtask docs`"
        );
        let page = std::fs::read_to_string(root.join("docs/src/alarms.md")).unwrap();
        assert_eq!(
            report::section(&page, "alarms").unwrap(),
            crate::alarms::table().trim_matches('\n'),
            "run `cargo xtask docs`"
        );
        let committed = std::fs::read_to_string(root.join("infra/contract.json")).unwrap();
        assert_eq!(
            committed,
            serde_json::to_string_pretty(&contract()).unwrap() + "\n",
            "run `cargo xtask docs`"
        );
    }
}
