//! A KMS simulator on 127.0.0.1, faithful to what matters for scale: the KMS JSON protocol
//! (awsJson1_1, `X-Amz-Target: TrentService.*`) for the operations the guard calls, any
//! number of accounts (the account of the SigV4 access key in `Credential=`, decoded as AWS
//! and the emulator encode it, so the emulator's STS AssumeRole credentials work) and Regions
//! (the `Credential=` scope), keys generated from a seed ([`fleet`]), a latency per operation
//! and a token bucket per (account, Region, operation) at the default quota ([`model`]),
//! answering `ThrottlingException` as KMS does beyond it, eventual consistency after
//! PutKeyPolicy, and counters of every call.
//!
//! STS and SQS are not simulated: the benchmarks use the emulator for them. The function's
//! metrics (CloudWatch PutMetricData) and notifications (EventBridge PutEvents) are taken
//! and counted with a latency ([`SINK_LATENCY`]), not kept: the emulator's CloudWatch, under
//! the load of an organisation sweep, took over a second a call, a third of the function's
//! time, which would have measured the emulator rather than the guard.

pub mod fleet;
pub mod model;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

pub use fleet::{Fleet, Kind, default_policy, reformat};
pub use model::{Latency, LatencyModel, Op, Quotas};

use fleet::{RegionKeys, arn, generate};
use model::{Bucket, Draws, hash};

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The keys of every account.
    pub fleet: Fleet,
    /// Latency per operation.
    pub latency: LatencyModel,
    /// Requests per second per account and Region, per operation.
    pub quotas: Quotas,
    /// A bucket holds this many seconds of its quota (the burst it admits at once).
    pub burst_seconds: f64,
    /// How long a written policy stays invisible to GetKeyPolicy.
    pub consistency: Duration,
    /// Time compression: latencies and the consistency delay are divided by it, quotas'
    /// refill rates multiplied, so every ratio (wall time to its quota floor) is unchanged.
    /// A bucket still holds `burst_seconds` of the real quota in calls: a burst is a number
    /// of requests, not a time, and compressing it would forbid what KMS admits at once.
    /// 1 = real time.
    pub time_scale: f64,
}

impl SimConfig {
    /// Real-time defaults (published quotas, the assumed latency model, no read lag).
    pub fn new(fleet: Fleet) -> Self {
        Self {
            fleet,
            latency: LatencyModel::default(),
            quotas: Quotas::default(),
            burst_seconds: 1.0,
            consistency: Duration::ZERO,
            time_scale: 1.0,
        }
    }
}

/// The calls of one (account, Region, operation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Requests received.
    pub calls: u64,
    /// Of which answered `ThrottlingException`.
    pub throttled: u64,
    /// The most requests admitted (not throttled) within one second of the clock.
    pub peak_per_second: u64,
}

#[derive(Debug)]
struct Meter {
    bucket: Bucket,
    count: Count,
    second: u64,
    in_second: u64,
}

/// One simulated key, as the benchmarks check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    /// The key's ARN.
    pub arn: String,
    /// Its Region.
    pub region: String,
    /// How its policy was generated.
    pub kind: Kind,
    /// A replica of a multi-Region key.
    pub replica: bool,
    /// The policy GetKeyPolicy shows now.
    pub policy: String,
}

struct State {
    config: SimConfig,
    start: Instant,
    accounts: Mutex<HashMap<String, HashMap<String, RegionKeys>>>,
    meters: Mutex<HashMap<(String, String, Op), Meter>>,
    writes: Mutex<Vec<Written>>,
    sunk: Mutex<BTreeMap<&'static str, u64>>,
    draws: Draws,
}

/// The latency of a taken PutMetricData or PutEvents: the reads' of the default model (an
/// assumption, like it).
pub const SINK_LATENCY: Latency = Latency {
    median: Duration::from_millis(20),
    p99: Duration::from_millis(60),
};

/// A PutKeyPolicy request the simulator accepted (the guard's writes, as CloudTrail would
/// record them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The key's ARN.
    pub arn: String,
    /// The policy written.
    pub policy: String,
}

/// The running simulator.
pub struct KmsSim {
    /// `http://127.0.0.1:PORT`, for the SDK's endpoint URL.
    pub endpoint: String,
    state: Arc<State>,
}

/// An account that a request without a recognisable access key is served as (the emulator's).
pub const DEFAULT_ACCOUNT: &str = "000000000000";

impl KmsSim {
    /// Starts the simulator on a free port of 127.0.0.1.
    pub async fn start(config: SimConfig) -> Self {
        let state = Arc::new(State {
            config,
            start: Instant::now(),
            accounts: Mutex::default(),
            meters: Mutex::default(),
            writes: Mutex::default(),
            sunk: Mutex::default(),
            draws: Draws::default(),
        });
        let (listener, endpoint) = crate::proxy::bind().await;
        let shared = state.clone();
        crate::proxy::serve(listener, move |req| handle(req, shared.clone()));
        Self { endpoint, state }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.state.config
    }

    /// Every (account, Region, operation) called so far.
    pub fn counts(&self) -> BTreeMap<(String, String, Op), Count> {
        self.state
            .meters
            .lock()
            .unwrap()
            .iter()
            .map(|(k, m)| (k.clone(), m.count))
            .collect()
    }

    /// Calls by operation, over every account and Region.
    pub fn totals(&self) -> BTreeMap<Op, Count> {
        let mut out: BTreeMap<Op, Count> = BTreeMap::new();
        for ((_, _, op), c) in self.counts() {
            let t = out.entry(op).or_default();
            t.calls += c.calls;
            t.throttled += c.throttled;
            t.peak_per_second = t.peak_per_second.max(c.peak_per_second);
        }
        out
    }

    /// Forgets every count (the buckets keep their tokens).
    pub fn reset_counts(&self) {
        for m in self.state.meters.lock().unwrap().values_mut() {
            m.count = Count::default();
            m.in_second = 0;
        }
    }

    /// Every key of `account`, with the policy GetKeyPolicy shows now.
    pub fn keys(&self, account: &str) -> Vec<KeyView> {
        let now = Instant::now();
        let mut accounts = self.state.accounts.lock().unwrap();
        let regions = self.state.account(&mut accounts, account);
        let mut out = Vec::new();
        for region in &self.state.config.fleet.regions {
            let Some(rk) = regions.get_mut(region) else {
                continue;
            };
            for id in &rk.order {
                let key = rk.keys.get_mut(id).expect("listed");
                settle(key, now);
                out.push(KeyView {
                    arn: key.arn(account),
                    region: region.clone(),
                    kind: key.kind,
                    replica: key.is_replica(),
                    policy: key.policy.clone(),
                });
            }
        }
        out
    }

    /// The PutMetricData and PutEvents requests taken, by operation.
    pub fn sunk(&self) -> BTreeMap<&'static str, u64> {
        self.state.sunk.lock().unwrap().clone()
    }

    /// The PutKeyPolicy requests accepted since the last take, oldest first.
    pub fn take_writes(&self) -> Vec<Written> {
        std::mem::take(&mut self.state.writes.lock().unwrap())
    }

    /// A PutKeyPolicy from outside the guard (a pipeline): it spends the same quota as the
    /// guard's calls, waiting for a token as an SDK client's retries would, but is not
    /// counted among the requests (nor its waits among the throttles).
    pub async fn put_policy_outside(&self, key_arn: &str, policy: &str) {
        let (account, region, id) = parse_arn(key_arn).expect("a key ARN");
        loop {
            match self.state.admit(&account, &region, Op::PutKeyPolicy, false) {
                Ok(()) => break,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
        let mut accounts = self.state.accounts.lock().unwrap();
        let regions = self.state.account(&mut accounts, &account);
        let key = regions
            .get_mut(&region)
            .and_then(|rk| rk.keys.get_mut(&id))
            .expect("a simulated key");
        let visible = Instant::now() + self.state.scaled(self.state.config.consistency);
        key.pending.push_back((visible, policy.to_owned()));
    }
}

/// Makes written policies whose time has come visible.
fn settle(key: &mut fleet::Key, now: Instant) {
    while key.pending.front().is_some_and(|(t, _)| *t <= now) {
        key.policy = key.pending.pop_front().expect("checked").1;
    }
}

fn parse_arn(s: &str) -> Option<(String, String, String)> {
    let mut parts = s.splitn(6, ':');
    let (_, _, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let id = resource.strip_prefix("key/")?;
    (service == "kms").then(|| (account.to_owned(), region.to_owned(), id.to_owned()))
}

impl State {
    fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(self.config.time_scale.max(f64::MIN_POSITIVE))
    }

    fn account<'a>(
        &self,
        accounts: &'a mut HashMap<String, HashMap<String, RegionKeys>>,
        account: &str,
    ) -> &'a mut HashMap<String, RegionKeys> {
        accounts
            .entry(account.to_owned())
            .or_insert_with(|| generate(&self.config.fleet, account))
    }

    /// Takes a token (counting the call, when `count`), or says how long until one is there.
    fn admit(&self, account: &str, region: &str, op: Op, count: bool) -> Result<(), Duration> {
        let quota = self.config.quotas.of(op);
        let rate = quota * self.config.time_scale;
        let capacity = (quota * self.config.burst_seconds).max(1.0);
        let now = Instant::now();
        let second = now.duration_since(self.start).as_secs();
        let mut meters = self.meters.lock().unwrap();
        let m = meters
            .entry((account.to_owned(), region.to_owned(), op))
            .or_insert_with(|| Meter {
                bucket: Bucket::full(capacity, now),
                count: Count::default(),
                second,
                in_second: 0,
            });
        m.count.calls += u64::from(count);
        if !rate.is_finite() || m.bucket.take(rate, capacity, now) {
            if m.second != second {
                m.second = second;
                m.in_second = 0;
            }
            m.in_second += 1;
            m.count.peak_per_second = m.count.peak_per_second.max(m.in_second);
            Ok(())
        } else {
            m.count.throttled += u64::from(count);
            Err(m.bucket.wait(rate))
        }
    }

    fn latency(&self, op: Op) -> Duration {
        let l = self.config.latency.of(op);
        self.scaled(l.sample(self.draws.next(), self.draws.next()))
    }
}

/// The account of an access key id: twelve digits are the account itself (the emulator's
/// convention); an AWS-style key (`AKIA`, `ASIA`, and the emulator's `LKIA`, `LSIA`) carries
/// it in its bits, decoded as AWS documents; anything else is [`DEFAULT_ACCOUNT`].
pub fn account_of_access_key(key: &str) -> String {
    if key.len() == 12 && key.bytes().all(|b| b.is_ascii_digit()) {
        return key.to_owned();
    }
    let prefixed = ["AKIA", "ASIA", "LKIA", "LSIA"]
        .iter()
        .any(|p| key.starts_with(p));
    if !prefixed || key.len() < 16 {
        return DEFAULT_ACCOUNT.to_owned();
    }
    // Base32 (RFC 4648) of the characters after the prefix; the account is bits 1..40 of the
    // first six bytes, shifted right by 7.
    let mut bits: u128 = 0;
    let mut n = 0;
    for c in key[4..].bytes().take(10) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return DEFAULT_ACCOUNT.to_owned(),
        };
        bits = (bits << 5) | u128::from(v);
        n += 5;
    }
    let first48 = (bits >> (n - 48)) as u64;
    format!("{:012}", (first48 & 0x7fff_ffff_ff80) >> 7)
}

/// The access key and Region of a SigV4 `Authorization` header.
fn credential(req: &hyper::http::request::Parts) -> Option<(String, String)> {
    let auth = req.headers.get("authorization")?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    let mut parts = scope.split('/');
    let key = parts.next()?.to_owned();
    let _date = parts.next()?;
    let region = parts.next()?.to_owned();
    Some((key, region))
}

type Answer = Result<Value, (&'static str, String)>;

fn respond(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a response")
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    if let Some((name, answer)) = sink(&parts, &body) {
        *state.sunk.lock().unwrap().entry(name).or_default() += 1;
        let l = SINK_LATENCY.sample(state.draws.next(), state.draws.next());
        tokio::time::sleep(state.scaled(l)).await;
        return Ok(answer);
    }
    let op = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("TrentService."))
        .map(|name| Op::parse(name).ok_or(name.to_owned()));
    let op = match op {
        Some(Ok(op)) => op,
        Some(Err(name)) => {
            return Ok(respond(
                400,
                json!({"__type": "UnknownOperationException", "message": format!("{name} is not simulated")}),
            ));
        }
        None => {
            return Ok(respond(
                400,
                json!({"__type": "UnknownOperationException", "message": "not a KMS request (X-Amz-Target TrentService.*)"}),
            ));
        }
    };
    let Some((key, region)) = credential(&parts) else {
        return Ok(respond(
            400,
            json!({"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"}),
        ));
    };
    let account = account_of_access_key(&key);
    let admitted = state.admit(&account, &region, op, true);
    tokio::time::sleep(state.latency(op)).await;
    if admitted.is_err() {
        return Ok(respond(
            400,
            json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
        ));
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(match serve(&state, op, &account, &region, &request) {
        Ok(v) => respond(200, v),
        Err((code, message)) => respond(400, json!({"__type": code, "message": message})),
    })
}

/// The answer to a CloudWatch PutMetricData (rpc-v2-cbor: an empty map) or an EventBridge
/// PutEvents (every entry accepted), if the request is one.
fn sink(
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Option<(&'static str, Response<Full<Bytes>>)> {
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if target == "AWSEvents.PutEvents" {
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let n = request["Entries"].as_array().map_or(0, Vec::len);
        let entries: Vec<Value> = (0..n)
            .map(|i| json!({"EventId": format!("sim-{i}")}))
            .collect();
        return Some((
            "PutEvents",
            respond(200, json!({"FailedEntryCount": 0, "Entries": entries})),
        ));
    }
    if parts.uri.path().ends_with("/operation/PutMetricData") {
        let answer = Response::builder()
            .status(200)
            .header("content-type", "application/cbor")
            .header("smithy-protocol", "rpc-v2-cbor")
            .body(Full::new(Bytes::from_static(&[0xA0])))
            .expect("a response");
        return Some(("PutMetricData", answer));
    }
    None
}

/// Default and largest page of ListKeys and ListResourceTags.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn limit(request: &Value) -> Result<usize, (&'static str, String)> {
    match request.get("Limit") {
        None | Some(Value::Null) => Ok(PAGE),
        Some(v) => match v.as_u64() {
            Some(n @ 1..=1000) => Ok(n as usize),
            _ => Err((
                "ValidationException",
                format!(
                    "1 validation error detected: Value '{v}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {MAX_PAGE}"
                ),
            )),
        },
    }
}

/// An opaque marker for position `at` of a listing: the position and a check of it, so a
/// marker from elsewhere is refused as KMS refuses one.
fn marker(seed: u64, account: &str, region: &str, at: usize) -> String {
    format!(
        "{at:08x}{:016x}",
        hash(seed, &[account, region, "marker"], at as u64)
    )
}

fn from_marker(
    seed: u64,
    account: &str,
    region: &str,
    request: &Value,
) -> Result<usize, (&'static str, String)> {
    let Some(m) = request.get("Marker").and_then(Value::as_str) else {
        return Ok(0);
    };
    let bad = || ("InvalidMarkerException", "Invalid marker".to_owned());
    let at = m
        .get(..8)
        .and_then(|h| usize::from_str_radix(h, 16).ok())
        .ok_or_else(bad)?;
    (marker(seed, account, region, at) == m)
        .then_some(at)
        .ok_or_else(bad)
}

fn serve(state: &State, op: Op, account: &str, region: &str, request: &Value) -> Answer {
    let seed = state.config.fleet.seed;
    let mut accounts = state.accounts.lock().unwrap();
    let regions = state.account(&mut accounts, account);
    let Some(rk) = regions.get_mut(region) else {
        // A Region the fleet does not use: no keys.
        return match op {
            Op::ListKeys => Ok(json!({"Keys": [], "Truncated": false})),
            _ => Err(not_found(request)),
        };
    };
    if op == Op::ListKeys {
        let n = limit(request)?;
        let from = from_marker(seed, account, region, request)?;
        let end = (from + n).min(rk.order.len());
        let keys: Vec<Value> = rk.order[from.min(end)..end]
            .iter()
            .map(|id| json!({"KeyId": id, "KeyArn": arn(account, region, id)}))
            .collect();
        let mut out = json!({"Keys": keys, "Truncated": end < rk.order.len()});
        if end < rk.order.len() {
            out["NextMarker"] = Value::String(marker(seed, account, region, end));
        }
        return Ok(out);
    }
    let key_id = request
        .get("KeyId")
        .and_then(Value::as_str)
        .ok_or(("ValidationException", "KeyId is required".to_owned()))?;
    let id = match parse_arn(key_id) {
        Some((a, r, id)) if a == account && r == region => id,
        Some(_) => return Err(not_found(request)),
        None => key_id.to_owned(),
    };
    let Some(key) = rk.keys.get_mut(&id) else {
        return Err(not_found(request));
    };
    settle(key, Instant::now());
    match op {
        Op::DescribeKey => {
            let mut meta = json!({
                "AWSAccountId": account, "KeyId": key.id, "Arn": key.arn(account),
                "CreationDate": key.created, "Enabled": true, "Description": "",
                "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled", "Origin": "AWS_KMS",
                "KeyManager": "CUSTOMER", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
                "KeySpec": "SYMMETRIC_DEFAULT", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
                "MultiRegion": key.multi.is_some(),
            });
            if let Some((primary, replicas)) = &key.multi {
                let copy = |r: &String| json!({"Arn": arn(account, r, &key.id), "Region": r});
                meta["MultiRegionConfiguration"] = json!({
                    "MultiRegionKeyType": if *primary == key.region { "PRIMARY" } else { "REPLICA" },
                    "PrimaryKey": copy(primary),
                    "ReplicaKeys": replicas.iter().map(copy).collect::<Vec<_>>(),
                });
            }
            Ok(json!({"KeyMetadata": meta}))
        }
        Op::GetKeyPolicy => {
            policy_name(request)?;
            Ok(json!({"Policy": key.policy, "PolicyName": "default"}))
        }
        Op::PutKeyPolicy => {
            policy_name(request)?;
            let policy = request
                .get("Policy")
                .and_then(Value::as_str)
                .ok_or(("ValidationException", "Policy is required".to_owned()))?;
            if policy.len() > 32_768 {
                return Err((
                    "ValidationException",
                    "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to 32768".to_owned(),
                ));
            }
            if serde_json::from_str::<Value>(policy).is_err() {
                return Err((
                    "MalformedPolicyDocumentException",
                    "The new key policy contains invalid JSON.".to_owned(),
                ));
            }
            let visible = Instant::now() + state.scaled(state.config.consistency);
            key.pending.push_back((visible, policy.to_owned()));
            state.writes.lock().unwrap().push(Written {
                arn: key.arn(account),
                policy: policy.to_owned(),
            });
            Ok(json!({}))
        }
        Op::ListResourceTags => Ok(json!({"Tags": [], "Truncated": false})),
        Op::ListKeys => unreachable!("answered above"),
    }
}

fn policy_name(request: &Value) -> Result<(), (&'static str, String)> {
    match request.get("PolicyName").and_then(Value::as_str) {
        None | Some("default") => Ok(()),
        Some(other) => Err((
            "NotFoundException",
            format!("No such policy exists: {other}"),
        )),
    }
}

fn not_found(request: &Value) -> (&'static str, String) {
    let id = request.get("KeyId").and_then(Value::as_str).unwrap_or("");
    ("NotFoundException", format!("Key '{id}' does not exist"))
}
