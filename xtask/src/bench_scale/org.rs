//! The organisation sweep, planner → SQS → workers, at 1,000 member accounts (and the hub's
//! own) × 17 Regions: the function's planner (a scheduled event) fills a queue on the
//! emulator; a model of the SQS event source — `SweepWorkerConcurrency` pollers, batches of 5
//! (the stacks' BatchSize), `ReportBatchItemFailures` — hands each batch to one execution
//! environment of the function (its own `App`, rate limiters and credentials cache, as in
//! Lambda) and deletes what it did not report failed. KMS is the simulator; STS AssumeRole
//! into the member role is the emulator's (measured at 16 ms a call here, no bottleneck, and
//! its access keys carry the account as AWS's do).
//!
//! Keys per account: 10 multi-Region primaries (round-robin over the Regions), each with
//! replicas in the next 2 Regions (a primary and two DR copies: 20 replicas per account,
//! 20,020 in the organisation), and 34 single-Region keys (2 per Region, as AWS managed keys
//! are). A workload account holds tens of customer managed keys, a few of them multi-Region;
//! most (account, Region) items then hold no multi-Region key at all, which is what makes
//! an organisation sweep mostly ListKeys calls. 5 % of replicas drifted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use krg_testkit::sim::{Kind, KmsSim, LatencyModel, Op, Quotas, SimConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{HUB, HUB_ROLE, REGIONS, app, config, fleet, ops_line};
use crate::heap;
use crate::report::thousands;

/// Each member account's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrgFleet {
    pub primaries: usize,
    pub replicas_per_primary: usize,
    pub single_region: usize,
    pub drift: f64,
}

/// Calls to the emulator of one kind, and the time waited on them in all.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmulatorCalls {
    pub calls: u64,
    pub seconds: f64,
}

/// Where the workers' time went, summed over them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSeconds {
    pub receiving: f64,
    pub in_function: f64,
    pub deleting: f64,
}

/// The function's rate limits in the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct RateLimitsUsed {
    pub RATE_INSTANCES: u32,
    pub RATE_PUT_KEY_POLICY: u32,
    pub RATE_GET_KEY_POLICY: u32,
    pub RATE_DESCRIBE_KEY: u32,
    pub RATE_LIST_KEYS: u32,
    pub RATE_LIST_RESOURCE_TAGS: u32,
}

/// The organisation sweep's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrgRun {
    pub accounts: usize,
    pub regions: usize,
    pub workers: usize,
    pub batch_size: i32,
    pub fleet: OrgFleet,
    pub replicas: usize,
    pub drifted: usize,
    pub left_drifted: usize,
    pub planned: usize,
    pub plan_seconds: f64,
    pub plan_heap_bytes: usize,
    pub processed: usize,
    pub work_seconds: f64,
    pub floor_seconds: f64,
    /// The floor ÷ the workers' wall time.
    pub of_floor: f64,
    pub received: usize,
    pub received_more_than_once: usize,
    pub places_listed_once: usize,
    pub places_listed_more: usize,
    pub failed_batches: usize,
    pub dlq: u64,
    pub throttled: u64,
    pub assume_role_calls: u64,
    pub emulator_calls: BTreeMap<String, EmulatorCalls>,
    /// Metrics and notifications the simulator took, by operation.
    pub sunk: BTreeMap<String, u64>,
    pub worker_seconds: WorkerSeconds,
    /// KMS calls by operation name.
    pub calls: BTreeMap<String, u64>,
    /// The busiest second of any (account, Region), per operation, as a share of its quota.
    pub busiest_second_share: BTreeMap<String, f64>,
    pub rate_limits: RateLimitsUsed,
}

const PRIMARIES: usize = 10;
const REPLICAS: usize = 2;
const SINGLE: usize = 34;
const DRIFT: f64 = 0.05;
const SEED: u64 = 1000;
const BATCH: i32 = 5;
/// The work queue's visibility timeout here (the stacks: 1800 s): a failed item returns
/// within the run.
const VISIBILITY: i32 = 120;
/// The whole sweep must end within this.
const DEADLINE: Duration = Duration::from_secs(600);

/// An item's floor: the larger of its quota floor and its dependent calls' median latencies.
fn item_floor(keys: &[&krg_testkit::sim::KeyView], quotas: &Quotas, latency: &LatencyModel) -> f64 {
    let replicas = keys.iter().filter(|k| k.replica).count() as f64;
    let drifted = keys.iter().filter(|k| k.kind == Kind::Drifted).count() as f64;
    let median = |op: Op| latency.of(op).median.as_secs_f64();
    let quota = (replicas / quotas.of(Op::GetKeyPolicy)).max(drifted / quotas.of(Op::PutKeyPolicy));
    let mut path = median(Op::ListKeys);
    if replicas > 0.0 {
        path += median(Op::DescribeKey) + median(Op::GetKeyPolicy);
    }
    if drifted > 0.0 {
        path += median(Op::PutKeyPolicy);
    }
    quota.max(path)
}

pub async fn run(accounts: usize, workers: usize) -> anyhow::Result<OrgRun> {
    println!(
        "==> organisation sweep: {accounts} member accounts + the hub x 17 Regions, {workers} workers"
    );
    let sim = Arc::new(
        KmsSim::start(SimConfig::new(fleet(
            SEED, PRIMARIES, REPLICAS, SINGLE, DRIFT,
        )?))
        .await,
    );
    // The emulator's calls go through the test kit's proxy, which times them.
    let proxy = krg_testkit::FaultProxy::start(super::env::endpoint()).await;
    proxy.record_calls();
    let emulator = super::sdk(&proxy.endpoint, HUB).await;
    let sqs = aws_sdk_sqs::Client::new(&emulator);
    let tag = std::process::id();
    let dlq = sqs
        .create_queue()
        .queue_name(format!("krg-scale-dlq-{tag}"))
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = format!("arn:aws:sqs:us-east-1:{HUB}:krg-scale-dlq-{tag}");
    let queue = sqs
        .create_queue()
        .queue_name(format!("krg-scale-{tag}"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            VISIBILITY.to_string(),
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string(),
        )
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    let members: Vec<String> = (0..accounts)
        .map(|i| format!("{:012}", 222_200_000_000u64 + i as u64))
        .collect();
    let config = config(&[
        ("AWS_REGION", super::env::REGION.to_owned()),
        ("REMEDIATOR_ROLE_ARN", HUB_ROLE.to_owned()),
        ("REMEDIATION_MODE", "enforce".to_owned()),
        ("BASELINE_SOURCE", super::baseline()?),
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member".to_owned()),
        ("MEMBER_ACCOUNTS", members.join(",")),
        ("SWEEP_REGIONS", REGIONS.join(",")),
        ("SWEEP_QUEUE_URL", queue.clone()),
        // No reservation (the stacks' default): the workers share the budgets.
        ("RATE_INSTANCES", workers.to_string()),
    ])?;

    // The planner: one scheduled invocation.
    let (planner, _) = app(&sim, &config, &proxy.endpoint).await;
    let scheduled = json!({"version": "0", "id": "plan", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": HUB, "time": "2026-12-07T00:00:00Z",
        "region": "us-east-1", "resources": [], "detail": {}});
    let heap_before = heap::now();
    heap::reset_peak();
    let started = Instant::now();
    let planned = planner
        .handle(scheduled)
        .await
        .map_err(|e| anyhow::anyhow!("planning failed: {e}"))?;
    let plan_s = started.elapsed().as_secs_f64();
    let plan_heap = heap::peak().saturating_sub(heap_before);
    drop(planner);
    let items = planned["planned"].as_u64().unwrap_or(0) as usize;
    println!(
        "    planner: {items} items in {plan_s:.1} s, heap peak {:.1} MiB above its start",
        plan_heap as f64 / 1_048_576.0
    );

    // The workers.
    let done = Arc::new(AtomicUsize::new(0));
    let failed_batches = Arc::new(AtomicUsize::new(0));
    let received: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let assumed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Milliseconds spent by all workers receiving, in the function, and deleting.
    let spent: Arc<[AtomicU64; 3]> = Arc::default();
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (sim, config, sqs, queue, emulator) = (
            sim.clone(),
            config.clone(),
            sqs.clone(),
            queue.clone(),
            proxy.endpoint.clone(),
        );
        let (done, failed_batches, received, assumed, stop, spent) = (
            done.clone(),
            failed_batches.clone(),
            received.clone(),
            assumed.clone(),
            stop.clone(),
            spent.clone(),
        );
        handles.push(tokio::spawn(async move {
            let (app, access) = app(&sim, &config, &emulator).await;
            let add = |i: usize, since: Instant| {
                spent[i].fetch_add(since.elapsed().as_millis() as u64, Ordering::Relaxed);
            };
            while !stop.load(Ordering::Relaxed) && done.load(Ordering::Relaxed) < items {
                let t = Instant::now();
                let out = sqs
                    .receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(BATCH)
                    .wait_time_seconds(1)
                    .send()
                    .await;
                add(0, t);
                let Ok(out) = out else {
                    continue;
                };
                let messages = out.messages();
                if messages.is_empty() {
                    continue;
                }
                let records: Vec<Value> = messages
                    .iter()
                    .map(|m| {
                        json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                            "body": m.body(), "eventSource": "aws:sqs",
                            "eventSourceARN": format!("arn:aws:sqs:us-east-1:{HUB}:krg-scale"),
                            "awsRegion": "us-east-1"})
                    })
                    .collect();
                {
                    let mut r = received.lock().unwrap();
                    for m in messages {
                        *r.entry(m.body().unwrap_or_default().to_owned())
                            .or_default() += 1;
                    }
                }
                let t = Instant::now();
                let answer = app.handle(json!({ "Records": records })).await;
                add(1, t);
                let failed: Vec<String> = match &answer {
                    Ok(a) => a["batchItemFailures"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                        .collect(),
                    Err(_) => messages
                        .iter()
                        .filter_map(|m| m.message_id().map(str::to_owned))
                        .collect(),
                };
                if !failed.is_empty() {
                    failed_batches.fetch_add(1, Ordering::Relaxed);
                }
                let entries: Vec<DeleteMessageBatchRequestEntry> = messages
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
                    .filter_map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                            .ok()
                    })
                    .collect();
                let n = entries.len();
                let t = Instant::now();
                let deleted = n > 0
                    && sqs
                        .delete_message_batch()
                        .queue_url(&queue)
                        .set_entries(Some(entries))
                        .send()
                        .await
                        .is_ok();
                add(2, t);
                if deleted {
                    done.fetch_add(n, Ordering::Relaxed);
                }
            }
            if let Some(a) = access {
                assumed.fetch_add(a.assume_role_calls(), Ordering::Relaxed);
            }
        }));
    }
    let watchdog = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DEADLINE).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    for h in handles {
        h.await?;
    }
    watchdog.abort();
    let work_s = started.elapsed().as_secs_f64();
    let processed = done.load(Ordering::Relaxed);
    let mut emulator_calls: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for c in proxy.take_calls() {
        let e = emulator_calls.entry(c.call).or_default();
        e.0 += 1;
        e.1 += c.answered.duration_since(c.received).as_secs_f64();
    }
    println!("    emulator calls (count, seconds waited in all): {emulator_calls:?}");
    println!(
        "    metrics and notifications taken by the simulator: {:?}",
        sim.sunk()
    );

    // Exactly once, from two sides: the queue's receipts and the simulator's ListKeys calls.
    let received = received.lock().unwrap().clone();
    let twice = received.values().filter(|n| **n > 1).count();
    let counts = sim.counts();
    let mut listed: BTreeMap<(String, String), u64> = BTreeMap::new();
    for ((account, region, op), c) in &counts {
        if *op == Op::ListKeys {
            *listed.entry((account.clone(), region.clone())).or_default() += c.calls;
        }
    }
    let places_listed_once = listed.values().filter(|n| **n == 1).count();
    let places_listed_more = listed.values().filter(|n| **n > 1).count();

    // Quotas: throttles and the busiest second of every (account, Region, operation).
    let quotas = Quotas::default();
    let throttled: u64 = counts.values().map(|c| c.throttled).sum();
    let mut busiest: BTreeMap<Op, f64> = BTreeMap::new();
    for ((_, _, op), c) in &counts {
        let share = c.peak_per_second as f64 / quotas.of(*op);
        let b = busiest.entry(*op).or_default();
        *b = b.max(share);
    }
    let by_op = super::by_op(&counts);

    // The floor with this many workers.
    let latency = LatencyModel::default();
    let mut all_accounts = members.clone();
    all_accounts.push(HUB.to_owned());
    let mut floors = Vec::new();
    let mut replicas = 0usize;
    let mut drifted = 0usize;
    for account in &all_accounts {
        let keys = sim.keys(account);
        replicas += keys.iter().filter(|k| k.replica).count();
        for region in REGIONS {
            let here: Vec<_> = keys.iter().filter(|k| k.region == region).collect();
            drifted += here.iter().filter(|k| k.kind == Kind::Drifted).count();
            floors.push(item_floor(&here, &quotas, &latency));
        }
    }
    let floor_s = (floors.iter().sum::<f64>() / workers as f64)
        .max(floors.iter().copied().fold(0.0, f64::max));
    let left = all_accounts
        .iter()
        .flat_map(|a| {
            let fleet = &sim.config().fleet;
            sim.keys(a)
                .into_iter()
                .filter(|k| k.replica)
                .filter(|k| {
                    !krg_policy::equivalent(&k.policy, &fleet.render(a, &k.region)).unwrap_or(false)
                })
                .map(|k| k.arn)
                .collect::<Vec<_>>()
        })
        .count();
    let dlq_depth = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                })
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let _ = sqs.delete_queue().queue_url(&queue).send().await;
    let _ = sqs.delete_queue().queue_url(&dlq).send().await;

    println!(
        "    workers: {processed}/{items} items in {work_s:.1} s; floor with {workers} workers {floor_s:.1} s ({:.0} %)",
        100.0 * floor_s / work_s
    );
    println!(
        "    exactly once: {} bodies received, {twice} more than once; {places_listed_once} places listed once, {places_listed_more} more; {} batches reported failures; DLQ {dlq_depth}",
        received.len(),
        failed_batches.load(Ordering::Relaxed)
    );
    println!(
        "    replicas {replicas}, drifted {drifted}, left drifted {left}; throttles {throttled}; AssumeRole {}",
        assumed.load(Ordering::Relaxed)
    );
    println!("    busiest second per operation, as a share of the quota: {busiest:?}");
    let spent_s: Vec<f64> = spent
        .iter()
        .map(|ms| ms.load(Ordering::Relaxed) as f64 / 1000.0)
        .collect();
    println!(
        "    worker time: receiving {:.0} s, in the function {:.0} s, deleting {:.0} s (all workers)",
        spent_s[0], spent_s[1], spent_s[2]
    );
    let limits = config.rate_limits;
    Ok(OrgRun {
        accounts: all_accounts.len(),
        regions: REGIONS.len(),
        workers,
        batch_size: BATCH,
        fleet: OrgFleet {
            primaries: PRIMARIES,
            replicas_per_primary: REPLICAS,
            single_region: SINGLE,
            drift: DRIFT,
        },
        replicas,
        drifted,
        left_drifted: left,
        planned: items,
        plan_seconds: plan_s,
        plan_heap_bytes: plan_heap,
        processed,
        work_seconds: work_s,
        floor_seconds: floor_s,
        of_floor: floor_s / work_s,
        received: received.len(),
        received_more_than_once: twice,
        places_listed_once,
        places_listed_more,
        failed_batches: failed_batches.load(Ordering::Relaxed),
        dlq: dlq_depth,
        throttled,
        assume_role_calls: assumed.load(Ordering::Relaxed),
        emulator_calls: emulator_calls
            .iter()
            .map(|(k, (calls, seconds))| {
                (
                    k.clone(),
                    EmulatorCalls {
                        calls: *calls,
                        seconds: *seconds,
                    },
                )
            })
            .collect(),
        sunk: sim
            .sunk()
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
        worker_seconds: WorkerSeconds {
            receiving: spent_s[0],
            in_function: spent_s[1],
            deleting: spent_s[2],
        },
        calls: by_op
            .iter()
            .map(|(op, c)| (op.name().to_owned(), c.calls))
            .collect(),
        busiest_second_share: busiest
            .iter()
            .map(|(op, s)| (op.name().to_owned(), *s))
            .collect(),
        rate_limits: RateLimitsUsed {
            RATE_INSTANCES: limits.instances,
            RATE_PUT_KEY_POLICY: limits.put_key_policy,
            RATE_GET_KEY_POLICY: limits.get_key_policy,
            RATE_DESCRIBE_KEY: limits.describe_key,
            RATE_LIST_KEYS: limits.list_keys,
            RATE_LIST_RESOURCE_TAGS: limits.list_resource_tags,
        },
    })
}

/// Its part of the BENCHMARKS.md section.
pub fn render(v: &OrgRun) -> String {
    let n = |x: usize| thousands(x as u64);
    let busiest = Op::ALL
        .iter()
        .filter_map(|op| {
            v.busiest_second_share
                .get(op.name())
                .map(|s| format!("{} {:.0} %", op.name(), 100.0 * s))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let r = &v.rate_limits;
    let assume_role_seconds = v
        .emulator_calls
        .get("AssumeRole")
        .map_or(0.0, |c| c.seconds);
    format!(
        "**Organisation sweep**, planner → SQS (the emulator) → workers: {} accounts (1,000 members and \
         the hub) × {} Regions; per account 10 multi-Region primaries each with 2 replicas and 34 \
         single-Region keys ({} replicas, {} drifted); {} workers (SweepWorkerConcurrency), batches \
         of {}, no reservation so RATE_INSTANCES = {}.\n\n\
         | figure | measured | floor | ratio |\n|---|---|---|---|\n\
         | planner: items onto SQS | {} in {:.1} s, heap peak {:.1} MiB | | |\n\
         | workers: all items processed | {} in {:.1} s | {:.1} s | {:.0} % |\n\
         | items received more than once / places listed more than once | {} / {} | 0 | |\n\
         | replicas left drifted | {} | 0 | |\n\
         | throttles (every account, Region, operation) | {} | 0 | |\n\
         | items in the work queue's DLQ | {} | 0 | |\n\
         | AssumeRole calls (emulator) | {} | | |\n\n\
         Where the workers' time went, summed over the {}: receiving {:.0} s, in the function {:.0} s \
         (of which waiting on the emulator's AssumeRole {:.0} s), deleting {:.0} s.\n\n\
         The floor: per item the larger of its quota floor and its dependent calls' median latencies \
         (ListKeys, then DescribeKey and GetKeyPolicy, then PutKeyPolicy), summed and divided by the \
         workers (or the slowest item, if larger). KMS calls: {}.\n\n\
         RATE_INSTANCES arithmetic: each environment paces PutKeyPolicy at {}/{} per account and \
         Region, so the {} together stay under {}/s (quota 15/s), GetKeyPolicy {}/{} (quota 1,000/s), \
         DescribeKey {}/{} (quota 2,000/s). Read from the simulator's counters, the busiest second \
         of any (account, Region) per operation, as a share of its quota: {}.\n",
        n(v.accounts),
        v.regions,
        n(v.replicas),
        n(v.drifted),
        v.workers,
        v.batch_size,
        r.RATE_INSTANCES,
        n(v.planned),
        v.plan_seconds,
        v.plan_heap_bytes as f64 / 1_048_576.0,
        n(v.processed),
        v.work_seconds,
        v.floor_seconds,
        100.0 * v.of_floor,
        v.received_more_than_once,
        v.places_listed_more,
        v.left_drifted,
        v.throttled,
        v.dlq,
        thousands(v.assume_role_calls),
        v.workers,
        v.worker_seconds.receiving,
        v.worker_seconds.in_function,
        assume_role_seconds,
        v.worker_seconds.deleting,
        ops_line(&v.calls),
        r.RATE_PUT_KEY_POLICY,
        r.RATE_INSTANCES,
        r.RATE_INSTANCES,
        r.RATE_PUT_KEY_POLICY,
        r.RATE_GET_KEY_POLICY,
        r.RATE_INSTANCES,
        r.RATE_DESCRIBE_KEY,
        r.RATE_INSTANCES,
        busiest,
    )
}
