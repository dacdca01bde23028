//! Shared set-up for the tests against the local emulator: real SDK clients over HTTP to
//! `AWS_ENDPOINT_URL` (default http://127.0.0.1:4566), keys created per test so tests run in
//! parallel without seeing each other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::{Region as SdkRegion, SdkConfig};
use aws_sdk_kms::Client as KmsClient;
use kms_replica_guard::config::Config;
use kms_replica_guard::lambda::InvocationError;
use kms_replica_guard::wiring::{Adapters, AwsApp};
use krg_aws::kms::Kms;
use krg_engine::key::KeyArn;
use serde_json::Value;

/// The account LocalStack derives from a 12-digit access key id; the sample events use it.
pub const ACCOUNT: &str = "111122223333";
/// The key id the sample events name; replaced by each test's own key id.
pub const SAMPLE_KEY_ID: &str = "mrk-1234abcd12ab34cd56ef1234567890ab";
pub const REMEDIATOR: &str = "arn:aws:iam::111122223333:role/kms-replica-guard-remediator";

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// moto's server, the second emulator (Security Hub, CloudTrail):
/// `AWS_ENDPOINT_URL_SECURITYHUB`, else 127.0.0.1:`MOTO_PORT` (default 4570), as
/// `cargo xtask emulator start` runs it.
pub fn moto_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_SECURITYHUB")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let port = std::env::var("MOTO_PORT").unwrap_or_else(|_| "4570".to_owned());
            format!("http://127.0.0.1:{port}")
        })
}

/// Panics with instructions when moto's server does not answer: the Security Hub tests
/// never pass silently without it.
pub fn assert_moto_running() {
    let health = format!("{}/moto-api/proxy/passthrough", moto_endpoint_direct());
    let reachable = std::process::Command::new("curl")
        .args(["-fsS", "--max-time", "3", &health])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        reachable,
        "moto's server is not reachable at {health}. Start it with `cargo xtask emulator start` \
         (or `make emulator`), or set MOTO_PORT to the port of a running one."
    );
}

/// moto's server itself, whatever `AWS_ENDPOINT_URL_SECURITYHUB` says now (a test may point
/// that at a proxy).
pub fn moto_endpoint_direct() -> String {
    let port = std::env::var("MOTO_PORT").unwrap_or_else(|_| "4570".to_owned());
    format!("http://127.0.0.1:{port}")
}

/// SDK configuration for the emulator. Panics with instructions when it is not running:
/// these tests never pass silently without it.
pub async fn sdk() -> SdkConfig {
    let health = format!("{}/_localstack/health", endpoint());
    let reachable = std::process::Command::new("curl")
        .args(["-fsS", "--max-time", "3", &health])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        reachable,
        "the AWS emulator is not reachable at {health}. Start it with `cargo xtask emulator start` \
         (or `make emulator`), or point AWS_ENDPOINT_URL at a running one."
    );
    // SAFETY: set before any client reads them; every test sets the same values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCOUNT);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_ENDPOINT_URL", endpoint());
        std::env::set_var("AWS_ENDPOINT_URL_SECURITYHUB", moto_endpoint());
        std::env::set_var("AWS_ENDPOINT_URL_CLOUDTRAIL", moto_endpoint());
    }
    krg_aws::clients::sdk_defaults()
        .region(SdkRegion::new("us-east-1"))
        .endpoint_url(endpoint())
        .load()
        .await
}

pub fn kms_in(sdk: &SdkConfig, region: &str) -> KmsClient {
    KmsClient::from_conf(
        aws_sdk_kms::config::Builder::from(sdk)
            .region(SdkRegion::new(region.to_owned()))
            .build(),
    )
}

pub const DEFAULT_STYLE_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Id": "key-default-1",
  "Statement": [
    {
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
      "Action": "kms:*",
      "Resource": "*"
    }
  ]
}"#;

/// The baseline the tests enforce: root keeps full control (lockout check), the remediator
/// can manage the policy, and an application role may use the key.
pub const BASELINE: &str = r#"{
  "Version": "2012-10-17",
  "Id": "kms-replica-guard-baseline",
  "Statement": [
    {
      "Sid": "EnableRootAccess",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:{{Partition}}:iam::{{AccountId}}:root"},
      "Action": "kms:*",
      "Resource": "*"
    },
    {
      "Sid": "AllowRemediator",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:{{Partition}}:iam::{{AccountId}}:role/kms-replica-guard-remediator"},
      "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ListResourceTags"],
      "Resource": "*"
    },
    {
      "Sid": "AllowAppUse",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:{{Partition}}:iam::{{AccountId}}:role/app"},
      "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"],
      "Resource": "*",
      "Condition": {"StringEquals": {"kms:ViaService": "s3.{{Region}}.amazonaws.com"}}
    }
  ]
}"#;

/// The baseline rendered for one key, as the function would.
pub fn rendered_baseline(key: &KeyArn) -> String {
    BASELINE
        .replace("{{Partition}}", key.partition())
        .replace("{{AccountId}}", key.account().as_str())
        .replace("{{Region}}", key.region().as_str())
}

/// A multi-Region primary in us-east-1 with replicas in the given Regions (default policy).
pub struct Family {
    pub primary: KeyArn,
    pub replicas: Vec<KeyArn>,
}

impl Family {
    pub fn key_id(&self) -> &str {
        self.primary.key_id()
    }
    pub fn replica(&self, region: &str) -> &KeyArn {
        self.replicas
            .iter()
            .find(|k| k.region().as_str() == region)
            .expect("replica in that Region")
    }
}

pub async fn create_family(
    sdk: &SdkConfig,
    primary_policy: &str,
    replica_regions: &[&str],
) -> Family {
    let east = kms_in(sdk, "us-east-1");
    let created = east
        .create_key()
        .multi_region(true)
        .policy(primary_policy)
        .description("kms-replica-guard integration test")
        .send()
        .await
        .expect("CreateKey");
    let primary: KeyArn = created
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .parse()
        .unwrap();
    let mut replicas = Vec::new();
    for region in replica_regions {
        let out = east
            .replicate_key()
            .key_id(primary.key_id())
            .replica_region(*region)
            .send()
            .await
            .expect("ReplicateKey");
        replicas.push(
            out.replica_key_metadata()
                .unwrap()
                .arn()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    Family { primary, replicas }
}

pub async fn put_policy(sdk: &SdkConfig, key: &KeyArn, policy: &str) {
    kms_in(sdk, key.region().as_str())
        .put_key_policy()
        .key_id(key.as_str())
        .policy_name("default")
        .policy(policy)
        .send()
        .await
        .expect("PutKeyPolicy (test set-up)");
}

pub async fn get_policy(sdk: &SdkConfig, key: &KeyArn) -> String {
    kms_in(sdk, key.region().as_str())
        .get_key_policy()
        .key_id(key.as_str())
        .policy_name("default")
        .send()
        .await
        .expect("GetKeyPolicy")
        .policy
        .unwrap()
}

/// Tags `key` with `tag` = `value` (TagResource).
pub async fn tag(sdk: &SdkConfig, key: &KeyArn, tag: &str, value: &str) {
    kms_in(sdk, key.region().as_str())
        .tag_resource()
        .key_id(key.as_str())
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key(tag)
                .tag_value(value)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("TagResource");
}

/// A sample event from events/ rewritten to name this test's key.
pub fn event(name: &str, key_id: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text.replace(SAMPLE_KEY_ID, key_id)).unwrap()
}

/// A unique metrics namespace per test, so metric reads see only that test's data.
pub fn namespace(test: &str) -> String {
    format!("KmsReplicaGuardTest/{test}/{}", std::process::id())
}

/// The KMS adapter of a test's function: it counts the calls it makes.
#[derive(Clone)]
pub struct KmsCalls(pub Kms);

impl KmsCalls {
    /// PutKeyPolicy calls made.
    pub fn puts(&self) -> usize {
        self.0.call_counts()["PutKeyPolicy"] as usize
    }
}

pub type TestApp = AwsApp;

/// The function as Lambda runs it (built by the application's own wiring), with
/// configuration from `vars` (plus test defaults).
pub fn lambda(sdk: &SdkConfig, vars: &[(&str, &str)]) -> (TestApp, KmsCalls) {
    let mut all: Vec<(String, String)> = vec![
        ("AWS_REGION".into(), "us-east-1".into()),
        ("REMEDIATOR_ROLE_ARN".into(), REMEDIATOR.into()),
        ("CREATING_RETRY_BASE_MS".into(), "200".into()),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_lookup(|k| {
        all.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    });
    let adapters = Adapters::new(sdk, config.as_ref().ok());
    let kms = KmsCalls(adapters.kms.clone());
    (adapters.app(config), kms)
}

pub async fn handle(app: &TestApp, event: Value) -> Result<Value, InvocationError> {
    app.handle(event).await
}

/// Sum of a metric (no dimensions) in a namespace over the last minutes, polled briefly
/// because the emulator may need a moment.
pub async fn metric_sum(sdk: &SdkConfig, namespace: &str, metric: &str) -> f64 {
    metric_sum_with(sdk, namespace, metric, &[]).await
}

/// Like [`metric_sum`], for the series with exactly these dimensions.
pub async fn metric_sum_with(
    sdk: &SdkConfig,
    namespace: &str,
    metric: &str,
    dimensions: &[(&str, &str)],
) -> f64 {
    let cw = aws_sdk_cloudwatch::Client::new(sdk);
    let dimensions: Vec<aws_sdk_cloudwatch::types::Dimension> = dimensions
        .iter()
        .map(|(n, v)| {
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name(*n)
                .value(*v)
                .build()
        })
        .collect();
    let now = std::time::SystemTime::now();
    let mut sum = 0.0;
    for _ in 0..10 {
        let out = cw
            .get_metric_statistics()
            .namespace(namespace)
            .metric_name(metric)
            .set_dimensions((!dimensions.is_empty()).then(|| dimensions.clone()))
            .start_time((now - Duration::from_secs(600)).into())
            .end_time((now + Duration::from_secs(600)).into())
            .period(60)
            .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
            .send()
            .await
            .expect("GetMetricStatistics");
        sum = out.datapoints().iter().filter_map(|d| d.sum()).sum();
        if sum > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sum
}

/// A fresh S3 bucket in the emulator, versioned as the stacks deploy the backup bucket.
pub async fn bucket(sdk: &SdkConfig, name: &str) -> String {
    let bucket = format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let s3 = aws_sdk_s3::Client::new(sdk);
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("PutBucketVersioning");
    bucket
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Variables as the Lambda would see them, for `Config::load_from`.
pub fn vars(extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let mut all: Vec<(String, String)> = vec![
        ("AWS_REGION".into(), "us-east-1".into()),
        ("REMEDIATOR_ROLE_ARN".into(), REMEDIATOR.into()),
    ];
    all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    move |k: &str| {
        all.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    }
}

/// Runs the CLI binary against the emulator; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    cli_at(&endpoint(), &[], args)
}

/// Runs the CLI binary against `endpoint` (the emulator, or a proxy in front of it) with
/// `envs` over the test defaults; returns (exit code, stdout, stderr).
pub fn cli_at(endpoint: &str, envs: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kms-replica-guard"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCOUNT)
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("REMEDIATOR_ROLE_ARN", REMEDIATOR)
        .env_remove("BASELINE_SOURCE")
        .env_remove("BACKUP_BUCKET")
        .envs(envs.iter().copied())
        .output()
        .expect("the CLI binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An SQS queue on LocalStack with a rule on the default bus that routes the events matching
/// a pattern to it: how a stack routes the guard's notifications (to the detector, SNS, a
/// ticketing tool), observed from outside.
pub struct RoutedQueue {
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    name: String,
    url: String,
}

impl RoutedQueue {
    /// The queue and rule `name`, routing what `pattern` matches.
    pub async fn create(sdk: &SdkConfig, name: &str, pattern: Value) -> Self {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .unwrap();
        let events = aws_sdk_eventbridge::Client::new(sdk);
        events
            .put_rule()
            .name(name)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .expect("PutRule");
        events
            .put_targets()
            .rule(name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("PutTargets");
        Self {
            sqs,
            events,
            name: name.to_owned(),
            url,
        }
    }

    /// The one event routed (waiting up to ten seconds for it); the rule and the queue are
    /// removed.
    pub async fn receive_one(self) -> Value {
        let mut bodies = Vec::new();
        for _ in 0..10 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("ReceiveMessage");
            bodies.extend(
                out.messages()
                    .iter()
                    .filter_map(|m| m.body().map(str::to_owned)),
            );
            if !bodies.is_empty() {
                break;
            }
        }
        let _ = self
            .events
            .remove_targets()
            .rule(&self.name)
            .ids("queue")
            .send()
            .await;
        let _ = self.events.delete_rule().name(&self.name).send().await;
        let _ = self.sqs.delete_queue().queue_url(&self.url).send().await;
        assert_eq!(bodies.len(), 1, "one event routed: {bodies:?}");
        serde_json::from_str(&bodies[0]).unwrap()
    }
}
