//! Faults injected between the function's KMS client and the emulator (tests/integration/
//! proxy.rs). For each: either a verified fix, or a failed invocation whose retryable /
//! non-retryable type matches the cause — never a partial or wrong write, never a success
//! claimed without a write.

use std::time::Duration;

use aws_config::Region as SdkRegion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use kms_replica_guard::config::Config;
use kms_replica_guard::wiring::{Adapters, AwsApp};
use krg_policy::equivalent;
use krg_testkit::proxy::{Fault, FaultProxy};

use crate::helpers::*;

pub struct Case {
    pub response: Result<serde_json::Value, (String, String)>,
    pub proxy: FaultProxy,
    before: String,
    after: String,
    baseline: String,
    key_id: String,
}

/// SDK configuration whose calls go through `proxy`, with short retries and timeouts.
pub async fn through(proxy: &FaultProxy) -> aws_config::SdkConfig {
    krg_aws::clients::sdk_defaults()
        .region(SdkRegion::new("us-east-1"))
        .endpoint_url(&proxy.endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(800))
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .load()
        .await
}

/// A fresh drifted replica; the function's KMS calls go through a proxy with `faults`.
async fn run(faults: &[(&str, Fault, usize)], event_name: &str) -> Case {
    run_with(faults, event_name, None, &[]).await
}

/// Like [`run`], with the replica's policy set to `replica_policy` first (`None`: the
/// default-style policy it was created with) and `vars` over the enforcing configuration.
pub async fn run_with(
    faults: &[(&str, Fault, usize)],
    event_name: &str,
    replica_policy: Option<&str>,
    vars_over: &[(&str, &str)],
) -> Case {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2").clone();
    if let Some(policy) = replica_policy {
        put_policy(&sdk, &replica, policy).await;
    }
    let proxy = FaultProxy::start(endpoint()).await;
    for (op, fault, times) in faults {
        proxy.inject(op, fault.clone(), *times);
    }
    let through_proxy = through(&proxy).await;
    let mut settings = vec![
        ("REMEDIATION_MODE", "enforce"),
        ("BASELINE_SOURCE", BASELINE),
        ("CREATING_RETRY_BASE_MS", "50"),
    ];
    settings.extend_from_slice(vars_over);
    let config = Config::from_lookup(vars(&settings));
    let app = kms_through(&sdk, &through_proxy, config);
    let before = get_policy(&sdk, &replica).await;
    let response = app
        .handle(event(event_name, family.key_id()))
        .await
        .map_err(|e| (e.error_type().to_owned(), e.to_string()));
    let after = get_policy(&sdk, &replica).await;
    Case {
        response,
        proxy,
        before,
        after,
        baseline: rendered_baseline(&replica),
        key_id: family.key_id().to_owned(),
    }
}

impl Case {
    fn assert_verified_fix(&self, what: &str) {
        let response = self
            .response
            .as_ref()
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(
            response["outcomes"][0]["action"], "remediated",
            "{what}: {response:#}"
        );
        assert!(
            equivalent(&self.after, &self.baseline).unwrap(),
            "{what}: {}",
            self.after
        );
        assert_eq!(
            self.proxy.forwarded("PutKeyPolicy"),
            1,
            "{what}: exactly one real write"
        );
        assert_eq!(
            self.proxy.pending(),
            0,
            "{what}: every injected fault was hit"
        );
    }

    fn assert_failed_untouched(&self, what: &str, error_type: &str, words: &str) {
        let (kind, message) = self.response.as_ref().expect_err(what);
        assert_eq!(kind, error_type, "{what}: {message}");
        assert!(
            message.contains(words),
            "{what}: want {words:?} in {message}"
        );
        assert_eq!(self.after, self.before, "{what}: nothing written");
        assert_eq!(self.proxy.forwarded("PutKeyPolicy"), 0, "{what}");
    }
}

#[tokio::test]
async fn throttling_a_few_times_is_retried_into_a_verified_fix() {
    run(
        &[
            ("GetKeyPolicy", Fault::Throttle, 2),
            ("PutKeyPolicy", Fault::Throttle, 2),
        ],
        "put-key-policy-replica-id.json",
    )
    .await
    .assert_verified_fix("throttled twice");
}

#[tokio::test]
async fn throttling_past_the_retries_fails_retryably_without_a_write() {
    run(
        &[("GetKeyPolicy", Fault::Throttle, 20)],
        "put-key-policy-replica-id.json",
    )
    .await
    .assert_failed_untouched("throttled", "Retryable.KeyFailure", "ThrottlingException");
}

#[tokio::test]
async fn server_errors_on_the_write_fail_retryably_and_write_nothing() {
    run(
        &[("PutKeyPolicy", Fault::ServerError, 20)],
        "put-key-policy-replica-id.json",
    )
    .await
    .assert_failed_untouched("500s", "Retryable.KeyFailure", "PutKeyPolicy");
}

#[tokio::test]
async fn responses_slower_than_the_client_timeout_fail_retryably() {
    run(
        &[("GetKeyPolicy", Fault::Slow(Duration::from_millis(1500)), 20)],
        "put-key-policy-replica-id.json",
    )
    .await
    .assert_failed_untouched("slow", "Retryable.KeyFailure", "timed out");
}

#[tokio::test]
async fn dropped_connections_are_retried_into_a_verified_fix() {
    run(
        &[
            ("DescribeKey", Fault::Drop, 2),
            ("GetKeyPolicy", Fault::Drop, 1),
        ],
        "put-key-policy-replica-id.json",
    )
    .await
    .assert_verified_fix("dropped connections");
}

#[tokio::test]
async fn a_fresh_key_not_found_is_waited_for_and_fixed_while_still_creating() {
    let case = run(
        &[
            ("DescribeKey", Fault::NotFound, 2),
            ("DescribeKey", Fault::Creating, 1),
        ],
        "replicate-key.json",
    )
    .await;
    case.assert_verified_fix("NotFound then Creating");
    assert_eq!(
        case.proxy.forwarded("DescribeKey"),
        1,
        "Creating is not waited for"
    );
}

#[tokio::test]
async fn a_key_still_creating_is_fixed_without_waiting() {
    // KMS lets a replica in the Creating state be managed, only not used for cryptography.
    let case = run(&[("DescribeKey", Fault::Creating, 1)], "replicate-key.json").await;
    case.assert_verified_fix("Creating");
    assert_eq!(
        case.proxy.forwarded("DescribeKey"),
        1,
        "one DescribeKey, no wait"
    );
}

#[tokio::test]
async fn access_denied_on_the_write_fails_non_retryably() {
    run(
        &[("PutKeyPolicy", Fault::AccessDenied, 1)],
        "put-key-policy-replica-id.json",
    )
    .await
    .assert_failed_untouched(
        "AccessDenied",
        "NonRetryable.KeyFailure",
        "AccessDeniedException",
    );
}

#[tokio::test]
async fn a_policy_kms_stores_differently_is_a_verification_failure_and_its_own_event_writes_nothing()
 {
    let rewritten = DEFAULT_STYLE_POLICY.replace("kms:*", "kms:Describe*");
    let case = run(
        &[
            ("GetKeyPolicy", Fault::Pass, 1),
            ("GetKeyPolicy", Fault::RewritePolicy(rewritten), 1),
        ],
        "put-key-policy-replica-id.json",
    )
    .await;
    let (kind, message) = case.response.as_ref().unwrap_err();
    assert_eq!(kind, "NonRetryable.KeyFailure", "{message}");
    assert!(message.contains("verification failed"), "{message}");
    assert_eq!(
        case.proxy.forwarded("PutKeyPolicy"),
        1,
        "one write, not a loop"
    );
    assert_eq!(case.proxy.pending(), 0, "the rewritten read was served");

    // The remediator's own PutKeyPolicy event that follows, recording the baseline it wrote,
    // is a no-op: no second write.
    let sdk = sdk().await;
    let (app, kms) = lambda(&sdk, &enforce_with_baseline_vars());
    let mut own = event("put-key-policy-by-remediator.json", &case.key_id);
    let key: krg_engine::key::KeyArn =
        format!("arn:aws:kms:us-west-2:{ACCOUNT}:key/{}", case.key_id)
            .parse()
            .unwrap();
    own["detail"]["requestParameters"]["policy"] = serde_json::json!(rendered_baseline(&key));
    assert_eq!(
        app.handle(own).await.unwrap()["outcomes"],
        serde_json::json!([])
    );
    assert_eq!(kms.puts(), 0);
}

fn enforce_with_baseline_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("REMEDIATION_MODE", "enforce"),
        ("BASELINE_SOURCE", BASELINE),
    ]
}

/// An App as a fresh Lambda instance would build it (so nothing is remembered in memory),
/// KMS through `proxy`, backups and write records in `bucket`.
async fn cold_instance(sdk: &aws_config::SdkConfig, proxy: &FaultProxy, bucket: &str) -> AwsApp {
    let config = Config::from_lookup(vars(&[
        ("REMEDIATION_MODE", "enforce"),
        ("BASELINE_SOURCE", BASELINE),
        ("BACKUP_BUCKET", bucket),
        ("FLAP_MAX", "3"),
    ]));
    kms_through(sdk, &through(proxy).await, config)
}

/// The function as the wiring builds it, with KMS through the proxy (`kms_sdk`) and the
/// bucket and CloudWatch straight to the emulator, so the proxy sees KMS calls only.
pub fn kms_through(
    sdk: &aws_config::SdkConfig,
    kms_sdk: &aws_config::SdkConfig,
    config: Result<Config, kms_replica_guard::config::ConfigError>,
) -> AwsApp {
    let mut adapters = Adapters::new(sdk, config.as_ref().ok());
    adapters.kms = Adapters::new(kms_sdk, config.as_ref().ok()).kms;
    adapters.app(config)
}

/// One delivery of the replica's PutKeyPolicy event to a fresh instance.
async fn deliver(
    sdk: &aws_config::SdkConfig,
    proxy: &FaultProxy,
    bucket: &str,
    key_id: &str,
) -> Result<serde_json::Value, kms_replica_guard::lambda::InvocationError> {
    cold_instance(sdk, proxy, bucket)
        .await
        .handle(event("put-key-policy-replica-id.json", key_id))
        .await
}

async fn objects_under(sdk: &aws_config::SdkConfig, bucket: &str, prefix: &str) -> Vec<String> {
    aws_sdk_s3::Client::new(sdk)
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_verification_failure_is_not_written_again_when_lambda_redelivers_the_event() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let bucket = bucket(&sdk, "krg-verify").await;
    let proxy = FaultProxy::start(endpoint()).await;
    // The first read is the live policy; every later one is what "KMS stored".
    let stored = DEFAULT_STYLE_POLICY.replace("kms:*", "kms:Describe*");
    proxy.inject("GetKeyPolicy", Fault::Pass, 1);
    proxy.inject("GetKeyPolicy", Fault::RewritePolicy(stored), 20);
    // Lambda runs a failed async event up to three times, on any free instance.
    for delivery in 0..3 {
        let err = deliver(&sdk, &proxy, &bucket, family.key_id())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "NonRetryable.KeyFailure", "{err}");
        let expected = if delivery == 0 {
            "verification failed:"
        } else {
            "verification failed earlier"
        };
        assert!(
            err.to_string().contains(expected),
            "delivery {delivery}: {err}"
        );
    }
    assert_eq!(
        proxy.forwarded("PutKeyPolicy"),
        1,
        "one write in three deliveries"
    );
    let records = objects_under(&sdk, &bucket, "kms-replica-guard/writes/").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].ends_with(".mismatch.json"), "{records:?}");
}

#[tokio::test]
async fn denied_writes_stay_failures_and_never_trip_the_flap_guard() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2").clone();
    let bucket = bucket(&sdk, "krg-denied").await;
    let before = get_policy(&sdk, &replica).await;
    let proxy = FaultProxy::start(endpoint()).await;
    proxy.inject("PutKeyPolicy", Fault::AccessDenied, 5);
    // More deliveries than FLAP_MAX (3): every one is still the denied write, reported.
    for delivery in 0..5 {
        let err = deliver(&sdk, &proxy, &bucket, family.key_id())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "NonRetryable.KeyFailure", "{err}");
        assert!(
            err.to_string().contains("AccessDenied"),
            "delivery {delivery}: {err}"
        );
        assert!(
            !err.to_string().contains("flapping"),
            "delivery {delivery}: {err}"
        );
    }
    assert_eq!(get_policy(&sdk, &replica).await, before, "nothing written");
    let backups = objects_under(&sdk, &bucket, &format!("kms-replica-guard/{ACCOUNT}/")).await;
    assert_eq!(
        backups.len(),
        5,
        "a backup before every attempt: {backups:?}"
    );
    assert!(
        objects_under(&sdk, &bucket, "kms-replica-guard/writes/")
            .await
            .is_empty()
    );
    // Once the write is allowed, it goes through.
    let response = deliver(&sdk, &proxy, &bucket, family.key_id())
        .await
        .unwrap();
    assert_eq!(
        response["outcomes"][0]["action"], "remediated",
        "{response:#}"
    );
}

#[tokio::test]
async fn ten_concurrent_instances_on_one_drift_write_it_once() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2").clone();
    let bucket = bucket(&sdk, "krg-claims").await;
    let proxy = FaultProxy::start(endpoint()).await;
    // The winner's write is slow, so the others find its claim rather than its result.
    proxy.inject("PutKeyPolicy", Fault::Slow(Duration::from_millis(300)), 1);
    // Ten instances (as Lambda runs concurrent invocations), sharing only the bucket.
    let responses =
        futures::future::join_all((0..10).map(|_| deliver(&sdk, &proxy, &bucket, family.key_id())))
            .await;
    let outcomes: Vec<serde_json::Value> = responses
        .into_iter()
        .map(|r| r.expect("every invocation succeeds")["outcomes"][0].clone())
        .collect();
    let action = |o: &serde_json::Value| o["action"].as_str().unwrap().to_owned();
    let remediated = outcomes
        .iter()
        .filter(|o| action(o) == "remediated")
        .count();
    let waited = outcomes
        .iter()
        .filter(|o| {
            o["reason"]
                .as_str()
                .is_some_and(|r| r.contains("written by a concurrent invocation"))
        })
        .count();
    println!(
        "10 concurrent instances on one drift: {} PutKeyPolicy, {remediated} remediated, {waited} waited for the claim holder's write",
        proxy.forwarded("PutKeyPolicy")
    );
    assert_eq!(proxy.forwarded("PutKeyPolicy"), 1, "{outcomes:#?}");
    assert_eq!(remediated, 1, "{outcomes:#?}");
    assert!(
        outcomes
            .iter()
            .all(|o| ["remediated", "in-sync"].contains(&action(o).as_str())),
        "{outcomes:#?}"
    );
    assert!(waited >= 1, "the others found the claim: {outcomes:#?}");
    let live = get_policy(&sdk, &replica).await;
    assert!(
        equivalent(&live, &rendered_baseline(&replica)).unwrap(),
        "{live}"
    );
    assert!(
        objects_under(&sdk, &bucket, "kms-replica-guard/claims/")
            .await
            .is_empty(),
        "the claim is released"
    );
    assert_eq!(
        objects_under(&sdk, &bucket, "kms-replica-guard/writes/")
            .await
            .len(),
        1
    );
    // The same drift again later (the same policy put back) is claimed anew and fixed.
    put_policy(&sdk, &replica, DEFAULT_STYLE_POLICY).await;
    let again = deliver(&sdk, &proxy, &bucket, family.key_id())
        .await
        .unwrap();
    assert_eq!(again["outcomes"][0]["action"], "remediated", "{again:#}");
    assert_eq!(proxy.forwarded("PutKeyPolicy"), 2);
}
