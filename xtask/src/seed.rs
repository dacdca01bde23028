//! `cargo xtask seed`: a fleet of multi-Region keys on the local emulator, and a manifest of
//! what a sweep should find. Talks only to a loopback emulator (`--endpoint`, else
//! `AWS_ENDPOINT_URL`, else `http://127.0.0.1:$LOCALSTACK_PORT`); any other address is
//! refused. Credentials are the emulator's ([`crate::env`]).
//!
//! ```sh
//! cargo xtask emulator start      # LOCALSTACK_PORT=4588 for one of your own
//! cargo xtask seed --primaries 50  # default 1000
//! ```
//!
//! It creates, `--workers` at a time (default 16; one SDK client per Region, shared):
//!
//! - `--primaries` multi-Region primaries in `--primary-region`, key id
//!   `mrk-<sha256(tag:index)[:32]>` (LocalStack's `_custom_id_` tag), policy =
//!   `baselines/example.json` rendered for the key by the tool's own template renderer
//!   ([`krg_engine::baseline::Template`]);
//! - a replica of each in every `--replica-regions` Region, whose policy is set by kind
//!   (`--mix in_sync:reformatted:drifted:excluded`, default `0.4:0.3:0.25:0.05`, exact counts
//!   by largest remainder, shuffled by `--seed`):
//!   - `in_sync`: the baseline rendered for the replica, pretty JSON;
//!   - `reformatted`: the same policy written differently (statement and key order,
//!     one-element lists, re-cased actions such as `KMS:decrypt` and `Effect`, the root
//!     principal as the bare account id, compact JSON), checked with the tool's own
//!     [`krg_policy::equivalent`] to mean the same and to differ in text;
//!   - `drifted`: the KMS default policy, or for every third one the baseline plus an extra
//!     statement (checked not equivalent);
//!   - `excluded`: drifted and tagged `kms-replica-guard:exclude=true`;
//! - `--single-region-factor` (default 9) single-Region keys per primary, round-robin over
//!   all Regions, interleaved with the primaries.
//!
//! Progress goes to stderr; a JSON summary (counts per kind and Region, API calls by
//! operation, retries, elapsed seconds, calls/s) to stdout. The manifest (`--manifest`,
//! default `target/bench/seed/manifest.json`) holds the run tag, the Regions, every
//! replica's ARN, Region, primary and kind, and the `expected.remediate` / `leave_alone` /
//! `skip_excluded` ARN lists a sweep is checked against. `--tag` (default random) keeps
//! repeated runs apart; reusing a tag is refused. Seeded keys carry the tag
//! `kms-replica-guard-bench:run=<tag>` (primaries and single-Region keys).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, anyhow, bail, ensure};
use aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_kms::error::BoxError;
use aws_sdk_kms::types::Tag;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::env;
use crate::report;

/// The tag key that excludes a key from remediation (the tool's default `EXCLUDE_TAG`).
pub const EXCLUDE_TAG: &str = "kms-replica-guard:exclude";
/// The tag key that names the run a key was seeded by.
pub const RUN_TAG: &str = "kms-replica-guard-bench:run";
/// The baseline every seeded policy is rendered from, relative to the repository root.
pub const BASELINE: &str = "baselines/example.json";

/// Arguments of `cargo xtask seed`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Multi-Region primaries.
    #[arg(long, default_value_t = 1000)]
    pub primaries: usize,
    /// Regions of the replicas, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "us-west-2,eu-west-1")]
    pub replica_regions: Vec<String>,
    /// Region of the primaries.
    #[arg(long, default_value = env::REGION)]
    pub primary_region: String,
    /// Single-Region keys per primary, round-robin over all Regions.
    #[arg(long, default_value_t = 9)]
    pub single_region_factor: usize,
    /// Replica kinds in_sync:reformatted:drifted:excluded (fractions).
    #[arg(long, default_value = "0.4:0.3:0.25:0.05", value_parser = parse_mix)]
    pub mix: Mix,
    /// Seed of the shuffles (the plan is deterministic for a seed and a tag).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the manifest goes (default target/bench/seed/manifest.json).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Run tag used in key ids, 1-32 of [A-Za-z0-9_.-] (default random).
    #[arg(long)]
    pub tag: Option<String>,
    /// The emulator (default AWS_ENDPOINT_URL, else http://127.0.0.1:$LOCALSTACK_PORT); loopback only.
    #[arg(long)]
    pub endpoint: Option<String>,
}

impl Args {
    /// The defaults of the command line, with `primaries` primaries.
    pub fn with_primaries(primaries: usize) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: Args,
        }
        let mut a = Wrap::parse_from(["seed"]).args;
        a.primaries = primaries;
        a
    }
}

/// The four replica fractions of `--mix`.
#[derive(Debug, Clone, Copy)]
pub struct Mix(pub [f64; 4]);

fn parse_mix(text: &str) -> Result<Mix, String> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 4 {
        return Err("--mix needs four fractions in_sync:reformatted:drifted:excluded".into());
    }
    let mut out = [0.0_f64; 4];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.trim().parse().map_err(|e| format!("--mix: {p:?}: {e}"))?;
    }
    if out.iter().any(|v| !v.is_finite() || *v < 0.0) || out.iter().sum::<f64>() <= 0.0 {
        return Err("--mix fractions must be >= 0 and not all zero".into());
    }
    Ok(Mix(out))
}

/// What a replica was seeded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    InSync,
    Reformatted,
    Drifted,
    Excluded,
}

const KINDS: [Kind; 4] = [
    Kind::InSync,
    Kind::Reformatted,
    Kind::Drifted,
    Kind::Excluded,
];

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::InSync => "in_sync",
            Kind::Reformatted => "reformatted",
            Kind::Drifted => "drifted",
            Kind::Excluded => "excluded",
        }
    }
}

/// The manifest: what was seeded and what a sweep should find.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub run_tag: String,
    pub seed: u64,
    pub endpoint: String,
    pub account: String,
    pub primary_region: String,
    pub replica_regions: Vec<String>,
    pub regions: Vec<String>,
    pub exclude_tag: String,
    pub baseline: String,
    /// False when some call failed: the fleet is not what the plan says.
    pub complete: bool,
    pub expected: Expected,
    pub replicas: Vec<Replica>,
    pub primaries: Vec<Primary>,
    pub single_region_keys: BTreeMap<String, Vec<String>>,
}

/// The replicas a sweep should rewrite, leave alone, and skip as excluded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expected {
    pub remediate: Vec<String>,
    pub leave_alone: Vec<String>,
    pub skip_excluded: Vec<String>,
}

/// One seeded replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replica {
    pub arn: String,
    pub region: String,
    pub kind: Kind,
    pub primary_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
}

/// One seeded primary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Primary {
    pub index: usize,
    pub arn: String,
}

/// Runs `cargo xtask seed`: seeds, writes the manifest, prints the summary.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let (_, summary) = seed(&args).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// Seeds the fleet `args` describes; returns the manifest (also written to its file) and
/// the summary. Fails, after writing an incomplete manifest, if any call failed.
pub async fn seed(args: &Args) -> anyhow::Result<(Manifest, Value)> {
    ensure!(args.workers >= 1, "--workers must be >= 1");
    let replica_regions: Vec<String> = args
        .replica_regions
        .iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    let mut distinct = replica_regions.clone();
    distinct.sort();
    distinct.dedup();
    ensure!(
        distinct.len() == replica_regions.len() && !replica_regions.contains(&args.primary_region),
        "replica Regions must be distinct and differ from the primary Region"
    );
    let tag = args.tag.clone().unwrap_or_else(|| {
        let mut rng = Rng::from_entropy();
        format!("{:06x}", rng.next() & 0xff_ffff)
    });
    ensure!(
        (1..=32).contains(&tag.len())
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
        "--tag: 1-32 characters from [A-Za-z0-9_.-]"
    );
    let endpoint = loopback_endpoint(&args.endpoint.clone().unwrap_or_else(env::endpoint)).await?;
    let manifest_path = args
        .manifest
        .clone()
        .unwrap_or_else(|| report::out_dir("seed").join("manifest.json"));
    let account = env::ACCOUNT.to_owned();
    let regions: Vec<String> = std::iter::once(args.primary_region.clone())
        .chain(replica_regions.iter().cloned())
        .collect();

    let attempts = Arc::new(AtomicU64::new(0));
    let clients = Clients::new(&endpoint, &regions, Some(attempts.clone())).await;
    let home = clients.get(&args.primary_region);

    // Preflight: the emulator answers, and this run tag is new.
    match home.describe_key().key_id(key_id_for(&tag, 0)).send().await {
        Ok(_) if args.primaries > 0 => {
            bail!("keys for run tag {tag:?} already exist; pick another --tag")
        }
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) => {}
        Err(e) => {
            return Err(anyhow!(aws_sdk_kms::Error::from(e))).with_context(|| {
                format!("the emulator at {endpoint} does not answer DescribeKey")
            });
        }
    }
    let preflight_attempts = attempts.swap(0, Ordering::Relaxed);

    // ---- the plan, up front (deterministic for a given --seed and --tag)
    let plan = plan(args, &tag, &account, &replica_regions)?;
    let n_rep = args.primaries * replica_regions.len();
    let n_single = args.primaries * args.single_region_factor;
    let n_excluded = plan
        .iter()
        .flat_map(|p| &p.replicas)
        .filter(|r| r.kind == Kind::Excluded)
        .count();
    let planned = args.primaries + 2 * n_rep + n_excluded + n_single;
    eprintln!(
        "seeding run {tag:?} on {endpoint}: {} primaries in {}, {n_rep} replicas in {}, \
         {n_single} single-Region keys; {planned} calls, {} workers",
        args.primaries,
        args.primary_region,
        replica_regions.join(","),
        args.workers
    );

    let calls = Calls::new(planned);
    let primaries = Mutex::new(Vec::new());
    let replicas = Mutex::new(Vec::new());
    let singles: Mutex<BTreeMap<String, Vec<String>>> =
        Mutex::new(regions.iter().map(|r| (r.clone(), Vec::new())).collect());
    // The cheap single-Region keys interleaved with the primaries, so every phase mixes
    // operations.
    let mut tasks = Vec::with_capacity(args.primaries + n_single);
    let mut plan_iter = plan.iter();
    let mut next_single = 0;
    loop {
        let p = plan_iter.next();
        if let Some(p) = p {
            tasks.push(Task::Primary(p));
        }
        for _ in 0..args.single_region_factor.max(1) {
            if next_single < n_single {
                tasks.push(Task::Single(next_single));
                next_single += 1;
            }
        }
        if p.is_none() && next_single >= n_single {
            break;
        }
    }

    let started = Instant::now();
    let errors: Vec<String> = futures::stream::iter(tasks)
        .map(|task| {
            let (clients, calls, tag) = (&clients, &calls, &tag);
            let (primaries, replicas, singles, regions) =
                (&primaries, &replicas, &singles, &regions);
            async move {
                match task {
                    Task::Primary(p) => {
                        let (primary, done) =
                            seed_primary(clients, calls, &args.primary_region, tag, p).await?;
                        primaries.lock().unwrap().push(primary);
                        replicas.lock().unwrap().extend(done);
                    }
                    Task::Single(n) => {
                        let region = &regions[n % regions.len()];
                        let out = calls
                            .call(
                                "CreateKey",
                                clients
                                    .get(region)
                                    .create_key()
                                    .description(format!("bench {tag} single-Region {n}"))
                                    .tags(tag_of(RUN_TAG, tag))
                                    .send(),
                            )
                            .await?;
                        let arn = out
                            .key_metadata()
                            .and_then(|m| m.arn())
                            .ok_or_else(|| anyhow!("CreateKey answered no ARN"))?
                            .to_owned();
                        singles.lock().unwrap().get_mut(region).unwrap().push(arn);
                    }
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.workers)
        .filter_map(|r| std::future::ready(r.err().map(|e| format!("{e:#}"))))
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();

    let mut primaries = primaries.into_inner().unwrap();
    primaries.sort_by_key(|p| p.index);
    let mut replicas = replicas.into_inner().unwrap();
    replicas.sort_by(|a, b| (&a.primary_arn, &a.region).cmp(&(&b.primary_arn, &b.region)));
    let mut singles = singles.into_inner().unwrap();
    singles.values_mut().for_each(|v| v.sort());
    let arns = |kinds: &[Kind]| {
        let mut v: Vec<String> = replicas
            .iter()
            .filter(|r| kinds.contains(&r.kind))
            .map(|r| r.arn.clone())
            .collect();
        v.sort();
        v
    };
    let manifest = Manifest {
        run_tag: tag.clone(),
        seed: args.seed,
        endpoint: endpoint.clone(),
        account,
        primary_region: args.primary_region.clone(),
        replica_regions: replica_regions.clone(),
        regions: regions.clone(),
        exclude_tag: EXCLUDE_TAG.to_owned(),
        baseline: BASELINE.to_owned(),
        complete: errors.is_empty(),
        expected: Expected {
            remediate: arns(&[Kind::Drifted]),
            leave_alone: arns(&[Kind::InSync, Kind::Reformatted]),
            skip_excluded: arns(&[Kind::Excluded]),
        },
        replicas,
        primaries,
        single_region_keys: singles,
    };
    if let Some(dir) = manifest_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest)? + "\n",
    )
    .with_context(|| format!("writing {}", manifest_path.display()))?;

    let mut by_kind = Map::new();
    for k in KINDS {
        let per_region: Map<String, Value> = replica_regions
            .iter()
            .map(|r| {
                let n = manifest
                    .replicas
                    .iter()
                    .filter(|x| x.kind == k && &x.region == r)
                    .count();
                (r.clone(), json!(n))
            })
            .collect();
        by_kind.insert(k.as_str().to_owned(), Value::Object(per_region));
    }
    let by_op = calls.by_op.lock().unwrap().clone();
    let total: u64 = by_op.values().sum();
    let mut api_calls: Map<String, Value> = by_op
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    api_calls.insert("total".into(), json!(total));
    let summary = json!({
        "run_tag": tag,
        "primaries": Map::from_iter([(args.primary_region.clone(), json!(manifest.primaries.len()))]),
        "replicas": by_kind,
        "single_region_keys": manifest.single_region_keys.iter().map(|(r, v)| (r.clone(), json!(v.len()))).collect::<Map<_, _>>(),
        "api_calls": api_calls,
        "preflight_calls": {"DescribeKey": preflight_attempts},
        "retries": attempts.load(Ordering::Relaxed).saturating_sub(total),
        "errors": errors.len(),
        "elapsed_s": round2(elapsed),
        "calls_per_s": if elapsed > 0.0 { json!((total as f64 / elapsed * 10.0).round() / 10.0) } else { Value::Null },
        "workers": args.workers,
        "manifest": manifest_path.display().to_string(),
    });
    if let Some(first) = errors.first() {
        eprintln!("{}", serde_json::to_string_pretty(&summary)?);
        bail!("{} task(s) failed, e.g. {first}", errors.len());
    }
    Ok((manifest, summary))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

enum Task<'a> {
    Primary(&'a PlannedPrimary),
    Single(usize),
}

struct PlannedPrimary {
    index: usize,
    key_id: String,
    policy: String,
    replicas: Vec<PlannedReplica>,
}

struct PlannedReplica {
    region: String,
    kind: Kind,
    drift: Option<&'static str>,
    policy: String,
}

/// The policies of every key, decided before any call.
fn plan(
    args: &Args,
    tag: &str,
    account: &str,
    replica_regions: &[String],
) -> anyhow::Result<Vec<PlannedPrimary>> {
    use krg_engine::baseline::{RenderContext, Template};
    use krg_engine::key::{AccountId, KeyArn, Region as KeyRegion};
    let path = env::root().join(BASELINE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let template = Template::new(format!("file:{BASELINE}"), text).map_err(|e| anyhow!("{e}"))?;
    let account_id: AccountId = account.parse().map_err(|e| anyhow!("{e}"))?;
    let primary_region: KeyRegion = args.primary_region.parse().map_err(|e| anyhow!("{e}"))?;
    let render = |region: &str, key_id: &str| -> anyhow::Result<String> {
        let region: KeyRegion = region.parse().map_err(|e| anyhow!("{e}"))?;
        let key = KeyArn::new(&region, &account_id, key_id).map_err(|e| anyhow!("{e}"))?;
        Ok(template.render(RenderContext {
            key: &key,
            primary_region: &primary_region,
        }))
    };

    let mut rng = Rng::new(args.seed);
    let n_rep = args.primaries * replica_regions.len();
    let mut kinds: Vec<Kind> = KINDS
        .iter()
        .zip(apportion(n_rep, &args.mix.0))
        .flat_map(|(k, n)| std::iter::repeat_n(*k, n))
        .collect();
    rng.shuffle(&mut kinds);
    let mut drift_seen = [0usize; 4];
    let mut out = Vec::with_capacity(args.primaries);
    for i in 0..args.primaries {
        let key_id = key_id_for(tag, i);
        let mut replicas = Vec::new();
        for (j, region) in replica_regions.iter().enumerate() {
            let kind = kinds[i * replica_regions.len() + j];
            let rendered = render(region, &key_id)?;
            let (drift, policy) = match kind {
                Kind::InSync => (None, rendered.clone()),
                Kind::Reformatted => {
                    let mut r = Rng::new(fnv1a(&format!("{}:{tag}:{i}:{region}", args.seed)));
                    let policy = reformat(&rendered, &mut r)?;
                    ensure!(policy != rendered, "reformat left the text unchanged");
                    ensure!(
                        krg_policy::equivalent(&policy, &rendered)?,
                        "reformat changed the meaning of the policy:\n{policy}"
                    );
                    (None, policy)
                }
                Kind::Drifted | Kind::Excluded => {
                    let seen = &mut drift_seen[kind as usize];
                    *seen += 1;
                    let (drift, policy) = if seen.is_multiple_of(3) {
                        ("extra_statement", with_extra_statement(&rendered, account)?)
                    } else {
                        ("default_policy", default_policy(account))
                    };
                    ensure!(
                        !krg_policy::equivalent(&policy, &rendered)?,
                        "a drifted policy is equivalent to the baseline"
                    );
                    (Some(drift), policy)
                }
            };
            replicas.push(PlannedReplica {
                region: region.clone(),
                kind,
                drift,
                policy,
            });
        }
        out.push(PlannedPrimary {
            index: i,
            policy: render(&args.primary_region, &key_id)?,
            key_id,
            replicas,
        });
    }
    Ok(out)
}

async fn seed_primary(
    clients: &Clients,
    calls: &Calls,
    primary_region: &str,
    tag: &str,
    p: &PlannedPrimary,
) -> anyhow::Result<(Primary, Vec<Replica>)> {
    let home = clients.get(primary_region);
    let created = calls
        .call(
            "CreateKey",
            home.create_key()
                .multi_region(true)
                .policy(&p.policy)
                .description(format!("bench {tag} primary {}", p.index))
                .tags(tag_of("_custom_id_", &p.key_id))
                .tags(tag_of(RUN_TAG, tag))
                .send(),
        )
        .await?;
    let meta = created
        .key_metadata()
        .ok_or_else(|| anyhow!("CreateKey answered no metadata"))?;
    ensure!(
        meta.key_id() == p.key_id,
        "the emulator ignored _custom_id_: asked {}, got {}",
        p.key_id,
        meta.key_id()
    );
    let primary_arn = meta.arn().unwrap_or_default().to_owned();
    let mut done = Vec::new();
    for r in &p.replicas {
        let rep = calls
            .call(
                "ReplicateKey",
                home.replicate_key()
                    .key_id(&p.key_id)
                    .replica_region(&r.region)
                    .send(),
            )
            .await?;
        let arn = rep
            .replica_key_metadata()
            .and_then(|m| m.arn())
            .ok_or_else(|| anyhow!("ReplicateKey answered no ARN"))?
            .to_owned();
        let there = clients.get(&r.region);
        calls
            .call(
                "PutKeyPolicy",
                there
                    .put_key_policy()
                    .key_id(&arn)
                    .policy_name("default")
                    .policy(&r.policy)
                    .send(),
            )
            .await?;
        if r.kind == Kind::Excluded {
            calls
                .call(
                    "TagResource",
                    there
                        .tag_resource()
                        .key_id(&arn)
                        .tags(tag_of(EXCLUDE_TAG, "true"))
                        .send(),
                )
                .await?;
        }
        done.push(Replica {
            arn,
            region: r.region.clone(),
            kind: r.kind,
            primary_arn: primary_arn.clone(),
            drift: r.drift.map(str::to_owned),
        });
    }
    Ok((
        Primary {
            index: p.index,
            arn: primary_arn,
        },
        done,
    ))
}

fn tag_of(key: &str, value: &str) -> Tag {
    Tag::builder()
        .tag_key(key)
        .tag_value(value)
        .build()
        .expect("key and value are set")
}

// ---------------------------------------------------------------------------- clients

/// One KMS client per Region, all pointed at the emulator with its credentials.
pub struct Clients(BTreeMap<String, aws_sdk_kms::Client>);

impl Clients {
    /// Clients for `regions` at `endpoint`; `attempts`, if given, counts every attempt
    /// (retries included).
    pub async fn new(endpoint: &str, regions: &[String], attempts: Option<Arc<AtomicU64>>) -> Self {
        let sdk = krg_aws::clients::sdk_defaults()
            .endpoint_url(endpoint)
            .region(Region::new(env::REGION))
            .credentials_provider(Credentials::new(
                env::ACCOUNT,
                env::SECRET_ACCESS_KEY,
                None,
                None,
                "emulator",
            ))
            .load()
            .await;
        let clients = regions
            .iter()
            .map(|r| {
                let mut b = aws_sdk_kms::config::Builder::from(&sdk).region(Region::new(r.clone()));
                if let Some(a) = &attempts {
                    b = b.interceptor(CountAttempts(a.clone()));
                }
                (r.clone(), aws_sdk_kms::Client::from_conf(b.build()))
            })
            .collect();
        Self(clients)
    }

    /// The client of a Region given to [`Clients::new`].
    pub fn get(&self, region: &str) -> &aws_sdk_kms::Client {
        &self.0[region]
    }
}

#[derive(Debug)]
struct CountAttempts(Arc<AtomicU64>);

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "CountAttempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Counts API calls by operation and prints progress on stderr about every 10 %.
struct Calls {
    by_op: Mutex<BTreeMap<&'static str, u64>>,
    done: AtomicU64,
    planned: u64,
    next_report: Mutex<u64>,
    start: Instant,
}

impl Calls {
    fn new(planned: usize) -> Self {
        Self {
            by_op: Mutex::default(),
            done: AtomicU64::new(0),
            planned: planned.max(1) as u64,
            next_report: Mutex::new(1),
            start: Instant::now(),
        }
    }

    async fn call<T, E>(
        &self,
        op: &'static str,
        f: impl Future<
            Output = Result<
                T,
                aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
            >,
        >,
    ) -> anyhow::Result<T>
    where
        aws_sdk_kms::Error:
            From<aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>>,
    {
        let result = f.await;
        *self.by_op.lock().unwrap().entry(op).or_default() += 1;
        let out = result
            .map_err(aws_sdk_kms::Error::from)
            .with_context(|| format!("kms:{op}"))?;
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let mut next = self.next_report.lock().unwrap();
        if done * 10 >= *next * self.planned {
            let el = self.start.elapsed().as_secs_f64();
            eprintln!(
                "  {done}/{} calls ({}%) {el:.1}s {:.0} calls/s",
                self.planned,
                100 * done / self.planned,
                done as f64 / el.max(1e-6)
            );
            while done * 10 >= *next * self.planned {
                *next += 1;
            }
        }
        Ok(out)
    }
}

/// `url` if its host resolves to loopback addresses only; the benches never talk to
/// anything else.
pub async fn loopback_endpoint(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| anyhow!("{url}: expected an http:// or https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| anyhow!("{url}: bad IPv6 host"))?;
            (h.to_owned(), p.strip_prefix(':').unwrap_or("80").to_owned())
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.to_owned()),
            None => (authority.to_owned(), "80".to_owned()),
        },
    };
    let port: u16 = port.parse().with_context(|| format!("{url}: bad port"))?;
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve emulator host {host:?} from {url}"))?
        .map(|a| a.ip())
        .collect();
    ensure!(
        !addrs.is_empty() && addrs.iter().all(IpAddr::is_loopback),
        "{url} is not a loopback address; the bench tasks only talk to a local emulator \
         (start one with `cargo xtask emulator start`)"
    );
    Ok(url.trim_end_matches('/').to_owned())
}

// ---------------------------------------------------------------------------- policies

/// `mrk-` and the first 32 hex digits of sha256("TAG:INDEX").
pub fn key_id_for(tag: &str, index: usize) -> String {
    let digest = sha2::Sha256::digest(format!("{tag}:{index}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("mrk-{hex}")
}

/// Exact counts summing to `total`, by largest remainder.
fn apportion(total: usize, fractions: &[f64]) -> Vec<usize> {
    let sum: f64 = fractions.iter().sum();
    let raw: Vec<f64> = fractions.iter().map(|f| total as f64 * f / sum).collect();
    let mut counts: Vec<usize> = raw.iter().map(|r| r.floor() as usize).collect();
    let mut order: Vec<usize> = (0..raw.len()).collect();
    order.sort_by(|&a, &b| {
        (raw[b] - counts[b] as f64)
            .partial_cmp(&(raw[a] - counts[a] as f64))
            .unwrap()
            .then(a.cmp(&b))
    });
    let missing = total - counts.iter().sum::<usize>();
    for &i in order.iter().take(missing) {
        counts[i] += 1;
    }
    counts
}

/// The policy KMS gives a key created without one.
pub fn default_policy(account: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
            "Action": "kms:*",
            "Resource": "*",
        }],
    })
    .to_string()
}

fn with_extra_statement(rendered: &str, account: &str) -> anyhow::Result<String> {
    let mut doc: Value = serde_json::from_str(rendered)?;
    doc["Statement"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("the baseline's Statement is not a list"))?
        .push(json!({
            "Sid": "BenchOutOfBandGrant",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account}:role/someone-else")},
            "Action": ["kms:Decrypt", "kms:ReEncrypt*"],
            "Resource": "*",
        }));
    Ok(serde_json::to_string_pretty(&doc)?)
}

fn listify(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

/// The entries of `m` in another order (when there are two or more).
fn shuffled(m: Map<String, Value>, rng: &mut Rng) -> Map<String, Value> {
    let mut items: Vec<(String, Value)> = m.into_iter().collect();
    let order = rng.permutation(items.len());
    let mut slots: Vec<Option<(String, Value)>> = items.drain(..).map(Some).collect();
    order.iter().map(|&i| slots[i].take().unwrap()).collect()
}

fn recase_action(action: &str, rng: &mut Rng) -> String {
    let (prefix, name) = action.split_once(':').unwrap_or((action, ""));
    let swapcase: String = name
        .chars()
        .map(|c| {
            if c.is_uppercase() {
                c.to_lowercase().next().unwrap()
            } else {
                c.to_uppercase().next().unwrap()
            }
        })
        .collect();
    let mut capital = prefix.to_lowercase();
    if let Some(first) = capital.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    match rng.below(3) {
        0 => format!("{}:{}", prefix.to_uppercase(), name.to_lowercase()), // KMS:decrypt
        1 => format!("{capital}:{}", name.to_uppercase()),                 // Kms:DECRYPT
        _ => format!("{}:{swapcase}", prefix.to_uppercase()),              // KMS:dECRYPT
    }
}

/// `arn:aws...:iam::ACCOUNT:root` as the bare account id; anything else unchanged.
fn bare_root(v: Value) -> Value {
    if let Value::String(s) = &v
        && let Some(rest) = s.strip_prefix("arn:aws")
        && let Some((partition_tail, tail)) = rest.split_once(":iam::")
        && partition_tail
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
        && let Some(account) = tail.strip_suffix(":root")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
    {
        return Value::String(account.to_owned());
    }
    v
}

/// The same policy under the tool's equivalence rules, written very differently.
fn reformat(rendered: &str, rng: &mut Rng) -> anyhow::Result<String> {
    let Value::Object(mut doc) = serde_json::from_str(rendered)? else {
        bail!("the baseline is not a JSON object");
    };
    let statements = listify(doc.get("Statement").unwrap_or(&Value::Null));
    let mut out = Vec::new();
    for st in statements {
        let Value::Object(mut st) = st else {
            bail!("a statement is not an object");
        };
        for field in ["Action", "NotAction"] {
            if let Some(v) = st.get_mut(field) {
                *v = Value::Array(
                    listify(v)
                        .iter()
                        .map(|a| match a {
                            Value::String(s) => Value::String(recase_action(s, rng)),
                            other => other.clone(),
                        })
                        .collect(),
                );
            }
        }
        for field in ["Resource", "NotResource"] {
            if let Some(v) = st.get_mut(field) {
                *v = Value::Array(listify(v));
            }
        }
        if let Some(Value::Object(principal)) = st.get("Principal").cloned() {
            let p: Map<String, Value> = principal
                .into_iter()
                .map(|(t, ids)| {
                    (
                        t,
                        Value::Array(listify(&ids).into_iter().map(bare_root).collect()),
                    )
                })
                .collect();
            st.insert("Principal".into(), Value::Object(shuffled(p, rng)));
        }
        if let Some(Value::Object(condition)) = st.get("Condition").cloned() {
            let mut c = Map::new();
            for (op, keys) in condition {
                let keys = match keys {
                    Value::Object(keys) => {
                        let k: Map<String, Value> = keys
                            .into_iter()
                            .map(|(k, v)| (k, Value::Array(listify(&v))))
                            .collect();
                        Value::Object(shuffled(k, rng))
                    }
                    other => other,
                };
                c.insert(op, keys);
            }
            st.insert("Condition".into(), Value::Object(shuffled(c, rng)));
        }
        if let Some(Value::String(effect)) = st.get("Effect").cloned() {
            let e = if rng.below(2) == 0 {
                effect.to_lowercase()
            } else {
                effect.to_uppercase()
            };
            st.insert("Effect".into(), Value::String(e));
        }
        out.push(Value::Object(shuffled(st, rng)));
    }
    let order = rng.permutation(out.len());
    let out: Vec<Value> = order.iter().map(|&i| out[i].clone()).collect();
    doc.insert("Statement".into(), Value::Array(out));
    Ok(Value::Object(shuffled(doc, rng)).to_string())
}

// ---------------------------------------------------------------------------- randomness

/// FNV-1a of a string: a stable seed from text.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: small, seedable, good enough for shuffles and ids (not for secrets).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from the clock and the process id.
    pub fn from_entropy() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(t ^ (u64::from(std::process::id()) << 32))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n >= 1`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }

    /// A permutation of `0..n` other than the identity (for `n >= 2`).
    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        if n < 2 {
            return order;
        }
        while order.iter().enumerate().all(|(i, &x)| i == x) {
            self.shuffle(&mut order);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> String {
        let text = std::fs::read_to_string(env::root().join(BASELINE)).unwrap();
        text.replace("{{Partition}}", "aws")
            .replace("{{AccountId}}", env::ACCOUNT)
            .replace("{{Region}}", "us-west-2")
    }

    #[test]
    fn reformatted_policies_mean_the_same_and_read_differently() {
        let rendered = baseline();
        for seed in 0..200 {
            let policy = reformat(&rendered, &mut Rng::new(seed)).unwrap();
            assert_ne!(policy, rendered);
            assert!(
                krg_policy::equivalent(&policy, &rendered).unwrap(),
                "{policy}"
            );
        }
    }

    #[test]
    fn drifted_policies_do_not() {
        let rendered = baseline();
        let extra = with_extra_statement(&rendered, env::ACCOUNT).unwrap();
        assert!(!krg_policy::equivalent(&extra, &rendered).unwrap());
        assert!(!krg_policy::equivalent(&default_policy(env::ACCOUNT), &rendered).unwrap());
    }

    #[test]
    fn counts_are_apportioned_exactly() {
        assert_eq!(
            apportion(2000, &[0.4, 0.3, 0.25, 0.05]),
            [800, 600, 500, 100]
        );
        assert_eq!(apportion(6, &[0.4, 0.3, 0.25, 0.05]), [2, 2, 2, 0]);
        assert_eq!(apportion(20, &[1.0, 0.0, 0.0, 0.0]), [20, 0, 0, 0]);
        let c = apportion(7, &[1.0, 1.0, 1.0, 1.0]);
        assert_eq!(c.iter().sum::<usize>(), 7);
    }

    #[test]
    fn key_ids_look_like_multi_region_ids() {
        let id = key_id_for("abc", 0);
        assert_eq!(id.len(), 36);
        assert!(id.starts_with("mrk-"));
        assert_eq!(id, key_id_for("abc", 0));
        assert_ne!(id, key_id_for("abc", 1));
    }

    #[test]
    fn mixes_parse() {
        assert!(parse_mix("0.4:0.3:0.25:0.05").is_ok());
        assert!(parse_mix("1:0:0:0").is_ok());
        assert!(parse_mix("1:0:0").is_err());
        assert!(parse_mix("0:0:0:0").is_err());
        assert!(parse_mix("-1:1:0:0").is_err());
    }

    #[tokio::test]
    async fn only_loopback_endpoints_are_accepted() {
        assert!(loopback_endpoint("http://127.0.0.1:4566").await.is_ok());
        assert!(loopback_endpoint("http://[::1]:4566/").await.is_ok());
        assert!(loopback_endpoint("http://10.1.2.3:4566").await.is_err());
        assert!(loopback_endpoint("ftp://127.0.0.1").await.is_err());
    }
}
