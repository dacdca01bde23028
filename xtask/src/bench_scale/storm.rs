//! An event storm: a Terraform apply gone wrong writes 5,000 key policies on 500 replicas
//! (17 Regions of one account) within a minute, each write a drift and a CloudTrail
//! PutKeyPolicy event; the guard's own writes are events too. Events reach the function
//! through a model of Lambda's asynchronous invocation as the stacks configure it
//! (infra/sam/template.yaml): an internal queue; as many concurrent executions as the
//! reservation allows (none by default: the account's unreserved pool, 1,000 here); an
//! execution environment per concurrent invocation, reused, each with its own `App` (rate
//! limiters at RATE_INSTANCES = SweepWorkerConcurrency, 2, unreserved); on a function error
//! 2 retries (MaxRetryAttempts), one minute before the first and two before the second, as
//! Lambda documents; an event older than MaximumEventAgeInSeconds (3,600) or out of retries
//! goes to the on-failure queue (counted here). EventBridge delivers each event 1 s after
//! the call (an assumption: CloudTrail events usually arrive within seconds).
//!
//! The flap guard is raised (FLAP_MAX 1,000) so that this measures healing: with the default
//! (5 rewrites of a key in an hour) the guard would, by design, stop fighting Terraform for a
//! key it rewrote 5 times, and alarm.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kms_replica_guard::wiring::AwsApp;
use krg_testkit::sim::{KmsSim, Op, SimConfig, default_policy};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore, mpsc};

use super::{HUB, HUB_ROLE, REGIONS, app, config, fleet};
use crate::report::thousands;

/// The storm's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormRun {
    pub terraform_writes: usize,
    pub replicas: usize,
    pub regions: usize,
    pub reserved: usize,
    pub concurrency_limit: usize,
    pub rate_instances: usize,
    pub events: usize,
    pub own_events: usize,
    pub handled: usize,
    pub retried: usize,
    pub dead: usize,
    /// Events neither handled nor in the on-failure queue.
    pub lost: i64,
    pub guard_writes: u64,
    pub left_drifted: usize,
    pub throttled: u64,
    pub peak_concurrency: usize,
    pub environments: usize,
    pub last_terraform_write_s: f64,
    pub settled_s: f64,
    /// KMS calls by operation name.
    pub calls: BTreeMap<String, u64>,
    /// Failed invocations by the function's error type.
    pub error_types: BTreeMap<String, usize>,
    /// Metrics and notifications the simulator took, by operation.
    pub sunk: BTreeMap<String, u64>,
}

const KEYS_PRIMARIES: usize = 250;
const STORM_SECONDS: f64 = 60.0;
const DELIVERY: Duration = Duration::from_secs(1);
const MAX_RETRIES: u32 = 2;
const MAX_EVENT_AGE: Duration = Duration::from_secs(3600);
const UNRESERVED: usize = 1000;
const SWEEP_WORKER_CONCURRENCY: usize = 2;
const CONSISTENCY: Duration = Duration::from_millis(200);

/// Lambda's wait before retry `attempt` (1 or 2) of a failed asynchronous invocation.
fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(60 * u64::from(attempt))
}

struct Pending {
    event: Value,
    created: Instant,
    attempt: u32,
}

/// A CloudTrail PutKeyPolicy event of `who` writing `policy` on `arn`.
fn event(arn: &str, policy: &str, who: &str, n: usize) -> Value {
    let region = arn.split(':').nth(3).unwrap_or("us-east-1");
    let (role_arn, session) = (
        format!("arn:aws:iam::{HUB}:role/{who}"),
        format!("{who}-session"),
    );
    json!({
        "version": "0", "id": format!("storm-{n}"), "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.kms", "account": HUB, "time": "2026-12-07T12:00:00Z", "region": region,
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "AssumedRole", "principalId": format!("AROAEXAMPLE:{session}"),
                "arn": format!("arn:aws:sts::{HUB}:assumed-role/{who}/{session}"),
                "accountId": HUB,
                "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE",
                    "arn": role_arn, "accountId": HUB, "userName": who}}
            },
            "eventTime": "2026-12-07T12:00:00Z", "eventSource": "kms.amazonaws.com",
            "eventName": "PutKeyPolicy", "awsRegion": region,
            "requestParameters": {"keyId": arn, "policyName": "default", "policy": policy,
                "bypassPolicyLockoutSafetyCheck": false},
            "responseElements": null, "eventID": format!("00000000-0000-0000-0000-{n:012}"),
            "readOnly": false, "eventType": "AwsApiCall", "managementEvent": true,
            "recipientAccountId": HUB,
            "resources": [{"accountId": HUB, "type": "AWS::KMS::Key", "ARN": arn}]
        }
    })
}

#[derive(Default)]
struct Tally {
    created: AtomicUsize,
    handled: AtomicUsize,
    retried: AtomicUsize,
    dead: AtomicUsize,
    outstanding: AtomicUsize,
    running: AtomicUsize,
    peak_running: AtomicUsize,
    errors: AtomicUsize,
    own_events: AtomicUsize,
    /// Failed invocations by the function's error type.
    error_types: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
}

pub async fn run(writes: usize, reserved: usize) -> anyhow::Result<StormRun> {
    println!(
        "==> event storm: {writes} PutKeyPolicy events on 500 replicas in {STORM_SECONDS:.0} s, reserved concurrency {reserved}"
    );
    let mut fleet = fleet(500, KEYS_PRIMARIES, 2, 0, 0.0)?;
    fleet.reformatted = 0.0;
    let sim = Arc::new(
        KmsSim::start(SimConfig {
            consistency: CONSISTENCY,
            ..SimConfig::new(fleet)
        })
        .await,
    );
    let replicas: Vec<String> = sim
        .keys(HUB)
        .into_iter()
        .filter(|k| k.replica)
        .map(|k| k.arn)
        .collect();
    let instances = if reserved > 0 {
        reserved
    } else {
        SWEEP_WORKER_CONCURRENCY
    };
    let config = config(&[
        ("AWS_REGION", super::env::REGION.to_owned()),
        ("REMEDIATOR_ROLE_ARN", HUB_ROLE.to_owned()),
        ("REMEDIATION_MODE", "enforce".to_owned()),
        ("BASELINE_SOURCE", super::baseline()?),
        ("SWEEP_REGIONS", REGIONS.join(",")),
        ("RATE_INSTANCES", instances.to_string()),
        ("FLAP_MAX", "1000".to_owned()),
    ])?;
    let concurrency = if reserved > 0 { reserved } else { UNRESERVED };

    let tally = Arc::new(Tally::default());
    let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
    // EventBridge: an event reaches the function's queue DELIVERY after the call.
    let deliver = {
        let (tx, tally) = (tx.clone(), tally.clone());
        move |event: Value| {
            tally.created.fetch_add(1, Ordering::SeqCst);
            tally.outstanding.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(DELIVERY).await;
                let _ = tx.send(Pending {
                    event,
                    created: Instant::now(),
                    attempt: 0,
                });
            });
        }
    };

    // Terraform: `writes` drifting writes spread over the minute, paced by the quota as any
    // SDK client is.
    let started = Instant::now();
    let terraform_done = Arc::new(AtomicUsize::new(0));
    let last_write = Arc::new(AtomicU64::new(0));
    for i in 0..writes {
        let arn = replicas[(i.wrapping_mul(7919) + 13) % replicas.len()].clone();
        let at = started + Duration::from_secs_f64(STORM_SECONDS * i as f64 / writes as f64);
        let policy = if i % 2 == 0 {
            default_policy(HUB)
        } else {
            sim.config()
                .fleet
                .render(HUB, arn.split(':').nth(3).unwrap_or(""))
                .replacen(
                    "\"Statement\": [",
                    &format!("\"Statement\": [{{\"Sid\":\"TerraformAdmin\",\"Effect\":\"Allow\",\"Principal\":{{\"AWS\":\"arn:aws:iam::{HUB}:role/terraform\"}},\"Action\":\"kms:*\",\"Resource\":\"*\"}},"),
                    1,
                )
        };
        let (sim, deliver, done, last) = (
            sim.clone(),
            deliver.clone(),
            terraform_done.clone(),
            last_write.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            sim.put_policy_outside(&arn, &policy).await;
            last.fetch_max(started.elapsed().as_millis() as u64, Ordering::SeqCst);
            deliver(event(&arn, &policy, "terraform", i));
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    // The guard's own writes are CloudTrail events too.
    let own = {
        let (sim, deliver, tally) = (sim.clone(), deliver.clone(), tally.clone());
        tokio::spawn(async move {
            let mut n = 1_000_000;
            loop {
                for w in sim.take_writes() {
                    tally.own_events.fetch_add(1, Ordering::SeqCst);
                    deliver(event(&w.arn, &w.policy, "kms-replica-guard-remediator", n));
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Lambda's asynchronous invocation.
    let slots = Arc::new(Semaphore::new(concurrency));
    let pool: Arc<Mutex<Vec<Arc<AwsApp>>>> = Arc::default();
    let environments = Arc::new(AtomicUsize::new(0));
    let dispatcher = {
        let (sim, config, tally, tx, pool, environments) = (
            sim.clone(),
            config.clone(),
            tally.clone(),
            tx.clone(),
            pool.clone(),
            environments.clone(),
        );
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if p.created.elapsed() > MAX_EVENT_AGE {
                    tally.dead.fetch_add(1, Ordering::SeqCst);
                    tally.outstanding.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let permit = slots.clone().acquire_owned().await.expect("open");
                let env = match pool.lock().await.pop() {
                    Some(e) => e,
                    None => {
                        environments.fetch_add(1, Ordering::SeqCst);
                        Arc::new(app(&sim, &config, &super::env::endpoint()).await.0)
                    }
                };
                let (tally, tx, pool) = (tally.clone(), tx.clone(), pool.clone());
                tokio::spawn(async move {
                    let now = tally.running.fetch_add(1, Ordering::SeqCst) + 1;
                    tally.peak_running.fetch_max(now, Ordering::SeqCst);
                    let result = env.handle(p.event.clone()).await;
                    tally.running.fetch_sub(1, Ordering::SeqCst);
                    pool.lock().await.push(env);
                    drop(permit);
                    match result {
                        Ok(_) => {
                            tally.handled.fetch_add(1, Ordering::SeqCst);
                            tally.outstanding.fetch_sub(1, Ordering::SeqCst);
                        }
                        Err(e) if p.attempt < MAX_RETRIES => {
                            tally.errors.fetch_add(1, Ordering::SeqCst);
                            *tally
                                .error_types
                                .lock()
                                .unwrap()
                                .entry(e.error_type().to_owned())
                                .or_default() += 1;
                            tally.retried.fetch_add(1, Ordering::SeqCst);
                            let attempt = p.attempt + 1;
                            tokio::spawn(async move {
                                tokio::time::sleep(retry_delay(attempt)).await;
                                let _ = tx.send(Pending { attempt, ..p });
                            });
                        }
                        Err(e) => {
                            tally.errors.fetch_add(1, Ordering::SeqCst);
                            *tally
                                .error_types
                                .lock()
                                .unwrap()
                                .entry(e.error_type().to_owned())
                                .or_default() += 1;
                            tally.dead.fetch_add(1, Ordering::SeqCst);
                            tally.outstanding.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        })
    };

    // Until Terraform is done and every event is handled or dead (and no write is unannounced).
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if terraform_done.load(Ordering::SeqCst) == writes
            && tally.outstanding.load(Ordering::SeqCst) == 0
        {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if tally.outstanding.load(Ordering::SeqCst) == 0 {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            println!("    the storm did not settle within 600 s");
            break;
        }
    }
    let total_s = started.elapsed().as_secs_f64();
    own.abort();
    dispatcher.abort();
    let last_write_s = last_write.load(Ordering::SeqCst) as f64 / 1000.0;
    // Settle the last writes' visibility before checking.
    tokio::time::sleep(CONSISTENCY).await;
    let fleet = &sim.config().fleet;
    let left = sim
        .keys(HUB)
        .into_iter()
        .filter(|k| k.replica)
        .filter(|k| {
            !krg_policy::equivalent(&k.policy, &fleet.render(HUB, &k.region)).unwrap_or(false)
        })
        .count();
    let totals = sim.totals();
    let guard_puts = totals
        .get(&Op::PutKeyPolicy)
        .map_or(0, |c| c.calls - c.throttled);
    let throttled: u64 = totals.values().map(|c| c.throttled).sum();
    let created = tally.created.load(Ordering::SeqCst);
    let handled = tally.handled.load(Ordering::SeqCst);
    let dead = tally.dead.load(Ordering::SeqCst);
    let v = StormRun {
        terraform_writes: writes,
        replicas: replicas.len(),
        regions: REGIONS.len(),
        reserved,
        concurrency_limit: concurrency,
        rate_instances: instances,
        events: created,
        own_events: tally.own_events.load(Ordering::SeqCst),
        handled,
        retried: tally.retried.load(Ordering::SeqCst),
        dead,
        lost: created as i64 - handled as i64 - dead as i64,
        guard_writes: guard_puts,
        left_drifted: left,
        throttled,
        peak_concurrency: tally.peak_running.load(Ordering::SeqCst),
        environments: environments.load(Ordering::SeqCst),
        last_terraform_write_s: last_write_s,
        settled_s: total_s,
        calls: totals
            .iter()
            .map(|(op, c)| (op.name().to_owned(), c.calls))
            .collect(),
        error_types: tally.error_types.lock().unwrap().clone(),
        sunk: sim
            .sunk()
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
    };
    println!(
        "    {created} events ({} the guard's own): {handled} handled, {} retried, {dead} to the on-failure queue, {} lost",
        v.own_events, v.retried, v.lost
    );
    println!(
        "    guard writes {guard_puts} for {writes} drifting writes; {left} left drifted; {throttled} throttles answered (absorbed by the SDK's backoff unless an invocation failed)"
    );
    println!(
        "    last Terraform write at {last_write_s:.1} s, all settled at {total_s:.1} s; peak {} concurrent, {} environments; failed invocations by type {}",
        v.peak_concurrency,
        v.environments,
        json!(v.error_types)
    );
    Ok(v)
}

/// Its part of the BENCHMARKS.md section.
pub fn render(v: &StormRun) -> String {
    let n = |x: usize| thousands(x as u64);
    format!(
        "**Event storm**: Terraform writes {} key policies on {} replicas ({} Regions, one account) \
         within 60 s; each write is a PutKeyPolicy event, and so is each of the guard's own writes. \
         Lambda's asynchronous invocation modelled as the stacks deploy it: reserved concurrency {} \
         (limit {} concurrent), RATE_INSTANCES {}, 2 retries (1 and 2 minutes later), event age 3,600 s, \
         on-failure queue; EventBridge delivery 1 s; reads lag a write by 200 ms.\n\n\
         | figure | measured | goal |\n|---|---|---|\n\
         | events (of which the guard's own) | {} ({}) | |\n\
         | handled / retried / on-failure queue / lost | {} / {} / {} / {} | lost 0 |\n\
         | guard's writes, for the drifting writes | {} for {} | ≤ drifts |\n\
         | replicas left drifted | {} | 0 |\n\
         | ThrottlingException answers (each retried by the SDK) | {} | absorbed |\n\
         | last drifting write → every event settled | {:.1} s → {:.1} s | |\n\
         | peak concurrent invocations / environments | {} / {} | |\n\
         | failed invocations (retried by Lambda), by error type | {} | |\n",
        n(v.terraform_writes),
        v.replicas,
        v.regions,
        v.reserved,
        n(v.concurrency_limit),
        v.rate_instances,
        n(v.events),
        n(v.own_events),
        n(v.handled),
        n(v.retried),
        v.dead,
        v.lost,
        thousands(v.guard_writes),
        n(v.terraform_writes),
        v.left_drifted,
        thousands(v.throttled),
        v.last_terraform_write_s,
        v.settled_s,
        v.peak_concurrency,
        v.environments,
        json!(v.error_types),
    )
}
