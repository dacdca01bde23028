//! `cargo xtask e2e`: end to end. The function (dev profile, as `make test` builds it)
//! under `cargo lambda watch`, driven with the sample events from `events/` through the
//! watcher's invoke endpoint (see [`crate::demo`] for why not `cargo lambda invoke`),
//! against the running emulator. Each run uses a fresh random key id (`mrk-` + 32 hex
//! digits), so runs never see each other's keys, and its own metrics namespace.
//!
//! Every check prints `ok NAME` or `FAIL NAME: got [..], want [..]`; a failed check does not
//! stop the run. The last line is `e2e: N passed, M failed`, and the exit status is non-zero
//! if any check failed. Fails at once if the emulator is not running.
//!
//! Environment: `LOCALSTACK_PORT` / `AWS_ENDPOINT_URL` (the emulator), `E2E_WATCH_PORT`
//! (the function, default 9010).

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde_json::Value;

use crate::demo::kit::{self, Aws, Watch, WorkDir};
use crate::{emulator, env};

/// Arguments of the task.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port of the function under cargo lambda watch.
    #[arg(long, env = "E2E_WATCH_PORT", default_value_t = 9010)]
    watch_port: u16,
}

/// Runs the task.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let url = env::endpoint();
    if !emulator::healthy(&url).await {
        anyhow::bail!(
            "the emulator is not running at {url}; run `cargo xtask emulator start` (make emulator)"
        );
    }
    let checks = kit::interruptible(e2e(args)).await?;
    println!();
    println!("e2e: {} passed, {} failed", checks.passed, checks.failed);
    if checks.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

#[derive(Default)]
struct Checks {
    passed: usize,
    failed: usize,
}

impl Checks {
    fn check(&mut self, name: &str, actual: impl AsRef<str>, expected: impl AsRef<str>) {
        let (actual, expected) = (actual.as_ref(), expected.as_ref());
        if actual == expected {
            self.passed += 1;
            println!("  ok   {name}");
        } else {
            self.failed += 1;
            println!("  FAIL {name}: got [{actual}], want [{expected}]");
        }
    }
}

/// A fresh multi-Region key id: `mrk-` and 16 random bytes in hex.
fn fresh_key_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!(
        "mrk-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// The actions of the response's outcomes for this key ARN, comma-separated.
fn action_of(response: &Value, arn: &str) -> String {
    outcomes(response)
        .filter(|o| o["key_arn"].as_str() == Some(arn))
        .map(|o| o["action"].as_str().unwrap_or("?").to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

fn outcomes(response: &Value) -> impl Iterator<Item = &Value> {
    response["outcomes"].as_array().into_iter().flatten()
}

fn remediated(response: &Value) -> usize {
    outcomes(response)
        .filter(|o| o["action"] == "remediated")
        .count()
}

async fn e2e(args: Args) -> anyhow::Result<Checks> {
    let root = env::root();
    let work = WorkDir::new("e2e")?;
    let key_id = fresh_key_id()?;
    let namespace = format!("KmsReplicaGuardE2E/{key_id}");
    let arn = |region: &str| kit::key_arn(region, &key_id);
    let mut c = Checks::default();

    // The sample events, rewritten to name this run's fresh key.
    for entry in std::fs::read_dir(root.join("events"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            let name = path.file_name().context("a file name")?;
            std::fs::write(
                work.join(&name.to_string_lossy()),
                text.replace(kit::SAMPLE_KEY_ID, &key_id),
            )?;
        }
    }
    let event = |name: &str| work.join(&format!("{name}.json"));
    // The guard's own fix as CloudTrail records it: the record carries what it wrote, the
    // baseline rendered for the us-west-2 replica.
    {
        let template = krg_engine::baseline::Template::new(
            "baselines/example.json",
            std::fs::read_to_string(root.join("baselines/example.json"))?,
        )?;
        let replica: krg_engine::key::KeyArn = arn("us-west-2").parse()?;
        let written = template.render(krg_engine::baseline::RenderContext {
            key: &replica,
            primary_region: &"us-east-1".parse()?,
        });
        let path = event("put-key-policy-by-remediator");
        let mut own: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        own["detail"]["requestParameters"]["policy"] = Value::String(written);
        std::fs::write(&path, own.to_string())?;
    }

    println!("==> keys: {key_id} (primary us-east-1, replicas us-west-2, eu-west-1)");
    let aws = Aws::connect().await;
    aws.create_family(&key_id, &kit::default_policy(), &kit::REPLICA_REGIONS)
        .await?;

    let env_file = work.join("env");
    kit::function_env(&env_file, &root.join("baselines/example.json"), &namespace)?;
    // The detector imports findings (the remediator ignores the setting, and says so).
    let mut vars = std::fs::read_to_string(&env_file)?;
    vars.push_str("SECURITY_HUB=on\n");
    std::fs::write(&env_file, vars)?;
    println!("==> cargo lambda watch (dev profile)");
    let watch = Watch::start(&env_file, &work.join("watch.log"), args.watch_port).await?;

    // Every response (or error payload), for the metric check at the end.
    let mut answers: Vec<Value> = Vec::new();
    let invoke = async |file: &Path, answers: &mut Vec<Value>| -> anyhow::Result<Value> {
        let answer = watch.invoke_file(file).await?;
        if !answer.ok {
            println!(
                "       (the invocation failed: {})",
                cut(&answer.body.to_string(), 600)
            );
        }
        answers.push(answer.body.clone());
        Ok(answer.body)
    };

    println!("==> ReplicateKey: the new us-west-2 replica gets the baseline");
    let r1 = invoke(&event("replicate-key"), &mut answers).await?;
    c.check(
        "replicate-key remediates the replica",
        action_of(&r1, &arn("us-west-2")),
        "remediated",
    );

    println!("==> PutKeyPolicy by hand on eu-west-1 (key id as ARN): healed");
    aws.put_policy(
        "eu-west-1",
        &key_id,
        &format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Root","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{0}:root"}},"Action":"kms:*","Resource":"*"}},{{"Sid":"Oops","Effect":"Allow","Principal":{{"AWS":"*"}},"Action":"kms:Decrypt","Resource":"*"}}]}}"#,
            env::ACCOUNT
        ),
    )
    .await?;
    let r2 = invoke(&event("put-key-policy-replica-arn"), &mut answers).await?;
    c.check(
        "put-key-policy on eu-west-1 remediates",
        action_of(&r2, &arn("eu-west-1")),
        "remediated",
    );
    c.check(
        "the diff names the rogue statement",
        r2["outcomes"][0]["diff"]
            .as_str()
            .is_some_and(|d| d.contains("Oops"))
            .to_string(),
        "true",
    );
    c.check(
        "the drift is explained: * gained kms:Decrypt, public",
        r2["outcomes"][0]["exposure"]["severity"].to_string(),
        "\"public\"",
    );
    c.check(
        "the outcome names who made the call",
        r2["outcomes"][0]["actor"]["arn"].to_string(),
        "\"arn:aws:sts::111122223333:assumed-role/Admin/alice\"",
    );
    // The function's JSON log line for that fix carries the same explanation and actor.
    let line = kit::key_log_lines(watch.log())
        .into_iter()
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .find(|l| l["key_arn"] == arn("eu-west-1").as_str() && l["action"] == "remediated");
    let logged = |field: &str| {
        line.as_ref()
            .and_then(|l| l[field].as_str())
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .unwrap_or(Value::Null)
    };
    c.check(
        "the log line carries the outcome's exposure",
        logged("exposure").to_string(),
        r2["outcomes"][0]["exposure"].to_string(),
    );
    c.check(
        "the log line carries the outcome's actor",
        logged("actor").to_string(),
        r2["outcomes"][0]["actor"].to_string(),
    );
    let live = aws.get_policy("eu-west-1", &key_id).await?;
    c.check(
        "eu-west-1 no longer grants kms:Decrypt to *",
        live.lines()
            .filter(|l| l.contains("\"Oops\""))
            .count()
            .to_string(),
        "0",
    );

    println!("==> replays and no-ops");
    let r3 = invoke(&event("put-key-policy-replica-arn"), &mut answers).await?;
    c.check(
        "a replayed event finds the key in sync",
        action_of(&r3, &arn("eu-west-1")),
        "in-sync",
    );
    for ev in [
        "put-key-policy-by-remediator",
        "put-key-policy-error",
        "read-only-describe-key",
        "unrelated-service",
        "create-key-single-region",
    ] {
        let r = invoke(&event(ev), &mut answers).await?;
        c.check(&format!("{ev} is a no-op"), r["outcomes"].to_string(), "[]");
    }
    let r4 = invoke(&event("put-key-policy-primary"), &mut answers).await?;
    c.check(
        "a primary's event leaves it alone (file baseline)",
        action_of(&r4, &arn("us-east-1")),
        "skipped",
    );

    println!("==> scheduled sweep over us-west-2 and eu-west-1");
    let r5 = invoke(&event("scheduled-sweep"), &mut answers).await?;
    // In-sync replicas are counted in the summary, not listed (the response stays small).
    c.check(
        "sweep: nothing listed for this run's in-sync replicas",
        action_of(&r5, &arn("us-west-2")) + &action_of(&r5, &arn("eu-west-1")),
        "",
    );
    c.check(
        "sweep: in-sync replicas counted",
        r5["summary"]["in-sync"]
            .as_u64()
            .is_some_and(|n| n >= 2)
            .to_string(),
        "true",
    );

    println!("==> a malformed event fails the invocation with a non-retryable type");
    let bad = work.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"detail-type": "AWS API Call via CloudTrail", "source": "aws.kms", "detail": {"eventName": 7}}"#,
    )?;
    let answer = watch.invoke_file(&bad).await?;
    if answer.ok {
        c.check("malformed event fails", "succeeded", "failed");
    } else {
        let text = match &answer.body {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        c.check(
            "malformed event names the field",
            text.lines()
                .filter(|l| l.contains("detail.eventName"))
                .count()
                .to_string(),
            "1",
        );
    }

    println!("==> the detector reads the remediator's news again: a PASSED Security Hub finding");
    // The notification of the us-west-2 heal above, as the drift bus's rule delivers it.
    let news = std::fs::read(event("drift-notification-remediated"))?;
    let answer = watch.invoke_function("detector", news).await?;
    c.check(
        "the detector answers the notification",
        answer.ok.to_string(),
        "true",
    );
    c.check(
        "the replica it names is read again and found in sync",
        action_of(&answer.body, &arn("us-west-2")),
        "in-sync",
    );
    c.check(
        "its finding is imported (Security Hub on moto)",
        answer.body["findings"].to_string(),
        r#"{"imported":1}"#,
    );

    println!("==> the auto-fix metric in CloudWatch");
    let now = SystemTime::now();
    let sum = aws
        .auto_fix_applied(
            &namespace,
            now - Duration::from_secs(600),
            now + Duration::from_secs(600),
        )
        .await?;
    // The sweep also fixes drifted replicas other runs left in those Regions: the metric must
    // equal every remediation this run reported, whichever keys they were.
    let reported: usize = answers.iter().map(remediated).sum();
    c.check(
        "AutoFixApplied equals the remediations reported",
        format!("{sum:.1}"),
        format!("{reported}.0"),
    );
    c.check(
        "this run's two replicas were among them",
        (remediated(&r1) + remediated(&r2)).to_string(),
        "2",
    );

    if c.failed > 0 {
        println!(
            "\nlast lines of the function's log ({}):\n{}",
            watch.log().display(),
            emulator::tail(watch.log(), 40)
        );
    }
    drop(watch);
    drop(work);
    Ok(c)
}

/// At most `n` characters of `text`.
fn cut(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}
