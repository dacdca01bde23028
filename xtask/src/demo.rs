//! `cargo xtask demo`: the main job end to end on the local emulator. A primary key with the
//! rendered baseline (`baselines/example.json`) in us-east-1, one replica with the default
//! policy (as ReplicateKey leaves it) in us-west-2 and one hand-drifted replica (a `*`
//! Decrypt statement) in eu-west-1; the function heals both from the sample CloudTrail
//! events, then the scheduled sweep finds everything in sync. Shown: the Sids before and
//! after, what the function answered to each event, the `AutoFixApplied` metric and the
//! function's per-key JSON log lines.
//!
//! The function runs in the dev profile (`cargo build --bin bootstrap`, then `cargo lambda
//! watch` without `--release`): the demo, the end-to-end test and `make test` share one
//! build of the dependencies, so a first run compiles them once.
//!
//! Invocations are POSTed to `cargo lambda watch`'s invoke endpoint
//! (`/2015-03-31/functions/bootstrap/invocations`) rather than run through `cargo lambda
//! invoke`: the body is exactly what the function answered (HTTP 200: its response; 500:
//! the runtime's error payload), with no client process per event and no dependence on
//! how `cargo lambda invoke` formats a response or an error.
//!
//! Each response is printed as the function returned it (its `outcomes`, the sweep's
//! `summary`, `metrics`, `errors`), except that outcomes for keys other than the demo key
//! (left in the emulator by tests) are counted in a note instead of listed.
//!
//! Environment: `LOCALSTACK_PORT` / `AWS_ENDPOINT_URL` (the emulator, started if needed),
//! `WATCH_PORT` (the function, default 9000).

pub(crate) mod kit;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde_json::{Value, json};

use crate::{emulator, env};
use kit::{Aws, PRIMARY_REGION, REPLICA_REGIONS, SAMPLE_KEY_ID, Watch, WorkDir};

/// Arguments of the task.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port of the function under cargo lambda watch.
    #[arg(long, env = "WATCH_PORT", default_value_t = 9000)]
    watch_port: u16,
}

const NAMESPACE: &str = "KmsReplicaGuardDemo";
/// The sample events sent, in order.
const EVENTS: [&str; 4] = [
    "replicate-key",
    "put-key-policy-replica-arn",
    "put-key-policy-by-remediator",
    "scheduled-sweep",
];

/// Runs the task.
pub async fn run(args: Args) -> anyhow::Result<()> {
    kit::interruptible(demo(args)).await
}

fn bold(text: &str) {
    println!("\n\x1b[1m{text}\x1b[0m");
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let root = env::root();
    let baseline = root.join("baselines/example.json");
    let work = WorkDir::new("demo")?;
    let start = SystemTime::now() - Duration::from_secs(60);

    bold("1. Emulator");
    emulator::ensure_running().await?;
    let aws = Aws::connect().await;

    bold("2. Keys: primary us-east-1 with the baseline; replicas us-west-2 and eu-west-1");
    let template = std::fs::read_to_string(&baseline)
        .with_context(|| format!("reading {}", baseline.display()))?;
    let primary = kit::render(&template, PRIMARY_REGION);
    aws.create_family(SAMPLE_KEY_ID, &primary, &REPLICA_REGIONS)
        .await?;
    aws.put_policy(PRIMARY_REGION, SAMPLE_KEY_ID, &primary)
        .await?;
    // us-west-2: the default policy ReplicateKey gives a replica created without one.
    aws.put_policy("us-west-2", SAMPLE_KEY_ID, &kit::default_policy())
        .await?;
    // eu-west-1: someone "temporarily" opened it up by hand.
    let mut drifted: Value = serde_json::from_str(&primary)?;
    drifted["Statement"]
        .as_array_mut()
        .context("the baseline has a Statement list")?
        .push(json!({"Sid": "TemporaryDebugAccess", "Effect": "Allow",
                     "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"}));
    let drifted = drifted.to_string().replace(PRIMARY_REGION, "eu-west-1");
    aws.put_policy("eu-west-1", SAMPLE_KEY_ID, &drifted).await?;
    println!("before:");
    print_sids(&aws).await?;

    bold(&format!(
        "3. The function: cargo lambda watch, dev profile (REMEDIATION_MODE=enforce, \
         BASELINE_SOURCE=file:baselines/example.json, METRICS_NAMESPACE={NAMESPACE})"
    ));
    let env_file = work.join("env");
    kit::function_env(&env_file, &baseline, NAMESPACE)?;
    let watch = Watch::start(&env_file, &work.join("watch.log"), args.watch_port).await?;
    println!("listening on 127.0.0.1:{}", args.watch_port);

    let mut drift_diff = None;
    let mut drift_outcome = Value::Null;
    for ev in EVENTS {
        bold(&format!(
            "4. POST events/{ev}.json to /2015-03-31/functions/bootstrap/invocations"
        ));
        let answer = watch
            .invoke_file(&root.join(format!("events/{ev}.json")))
            .await?;
        if !answer.ok {
            println!(
                "the function returned an error:\n{}",
                serde_json::to_string_pretty(&answer.body)?
            );
            println!(
                "last lines of the function's log:\n{}",
                emulator::tail(watch.log(), 30)
            );
            anyhow::bail!("the function failed on events/{ev}.json");
        }
        let (shown, others) = demo_key_only(answer.body);
        println!("{}", serde_json::to_string_pretty(&shown)?);
        if !others.is_empty() {
            let counts: Vec<String> = others.iter().map(|(a, n)| format!("{a} {n}")).collect();
            println!(
                "(outcomes for {} other key(s) in the emulator left out: {})",
                others.values().sum::<usize>(),
                counts.join(", ")
            );
        }
        if ev == "put-key-policy-replica-arn" {
            drift_diff = shown["outcomes"][0]["diff"].as_str().map(str::to_owned);
            drift_outcome = shown["outcomes"][0].clone();
        }
    }
    bold("   the drift reported for eu-west-1: what it meant, who caused it, the statement diff");
    for line in explained(&drift_outcome) {
        println!("{line}");
    }
    println!("{}", drift_diff.as_deref().unwrap_or("(none reported)"));

    bold("5. After");
    print_sids(&aws).await?;

    bold(&format!(
        "6. CloudWatch: {NAMESPACE} AutoFixApplied (Sum since the demo started)"
    ));
    let end = SystemTime::now() + Duration::from_secs(300);
    let sum = aws.auto_fix_applied(NAMESPACE, start, end).await?;
    println!("{}", json!({ "AutoFixApplied": sum }));

    bold("7. The function's per-key log lines (JSON)");
    for line in kit::key_log_lines(watch.log()).iter().take(4) {
        println!("{}", cut(line, 400));
    }
    drop(watch);
    drop(work);
    Ok(())
}

/// The outcome's `exposure` as sentences and its `actor`, as an operator reads them.
fn explained(outcome: &Value) -> Vec<String> {
    let region = outcome["region"].as_str().unwrap_or("?");
    let exposure = &outcome["exposure"];
    let mut lines = Vec::new();
    for (list, verb) in [("gains", "gains"), ("losses", "loses")] {
        for a in exposure[list].as_array().into_iter().flatten() {
            let actions: Vec<&str> = a["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let when = a["when"]
                .as_str()
                .map_or("(no condition)".to_owned(), |w| format!("when {w}"));
            lines.push(format!(
                "{region}: {} {verb} {} {when}",
                a["principal"].as_str().unwrap_or("?"),
                actions.join(", ")
            ));
        }
    }
    lines.push(format!(
        "severity: {}",
        exposure["severity"].as_str().unwrap_or("(not explained)")
    ));
    let actor = &outcome["actor"];
    lines.push(format!(
        "caused by: {} (role {}) from {} at {}, CloudTrail event {}",
        actor["arn"].as_str().unwrap_or("?"),
        actor["role"].as_str().unwrap_or("-"),
        actor["source_ip_address"].as_str().unwrap_or("?"),
        actor["event_time"].as_str().unwrap_or("?"),
        actor["event_id"].as_str().unwrap_or("?"),
    ));
    lines
}

async fn print_sids(aws: &Aws) -> anyhow::Result<()> {
    for r in [PRIMARY_REGION, REPLICA_REGIONS[0], REPLICA_REGIONS[1]] {
        println!("  {r:<10} {}", aws.sids(r, SAMPLE_KEY_ID).await?);
    }
    Ok(())
}

/// The response with `outcomes` narrowed to the demo key, and the actions of the outcomes
/// left out, counted.
fn demo_key_only(mut response: Value) -> (Value, BTreeMap<String, usize>) {
    let mut others = BTreeMap::new();
    if let Some(outcomes) = response.get_mut("outcomes").and_then(Value::as_array_mut) {
        let suffix = format!("/{SAMPLE_KEY_ID}");
        outcomes.retain(|o| {
            let mine = o["key_arn"].as_str().is_some_and(|a| a.ends_with(&suffix));
            if !mine {
                let action = o["action"].as_str().unwrap_or("?").to_owned();
                *others.entry(action).or_default() += 1;
            }
            mine
        });
    }
    (response, others)
}

/// At most `n` characters of `line`.
fn cut(line: &str, n: usize) -> &str {
    match line.char_indices().nth(n) {
        Some((at, _)) => &line[..at],
        None => line,
    }
}
