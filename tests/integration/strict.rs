//! The function against the emulator made as strict as real KMS (krg_testkit::strict): the
//! behaviours AWS documents, or users report, where LocalStack is kind. Each test switches
//! the strict layer on in its own proxy; KMS goes through it, S3 and CloudWatch do not.

use std::collections::{BTreeSet, HashMap};

use kms_replica_guard::config::Config;
use kms_replica_guard::wiring::{Adapters, AwsApp, AwsEngine};
use krg_engine::Quiet;
use krg_engine::key::Place;
use krg_engine::outcome::Action;
use krg_policy::equivalent;
use krg_testkit::strict::{INVALID_PRINCIPALS, LOCKOUT};
use krg_testkit::{FaultProxy, StrictKms};
use serde_json::Value;

use crate::faults::{kms_through, through};
use crate::helpers::*;

const APP: &str = "arn:aws:iam::111122223333:role/app";
/// The unique id KMS shows for the deleted `role/app`.
const APP_ID: &str = "AROA6QJX2M4TBCKL7WZNE";
/// PutKeyPolicy attempts while KMS refuses a principal (krg-engine's PRINCIPAL_ATTEMPTS).
const PRINCIPAL_ATTEMPTS: usize = 4;

async fn strict_proxy(config: StrictKms) -> FaultProxy {
    let proxy = FaultProxy::start(endpoint()).await;
    proxy.strict(config);
    proxy
}

/// The function, as the wiring builds it, with KMS through `proxy`.
async fn function(proxy: &FaultProxy, settings: &[(&str, &str)]) -> AwsApp {
    let sdk = sdk().await;
    let mut all = vec![("CREATING_RETRY_BASE_MS", "50")];
    all.extend_from_slice(settings);
    kms_through(&sdk, &through(proxy).await, Config::from_lookup(vars(&all)))
}

/// A fresh replica in us-west-2 with the default policy, and the enforcing function (with
/// `baseline`) invoked with its PutKeyPolicy event through a proxy as strict as `config`.
async fn heal_through(
    config: StrictKms,
    baseline: &str,
) -> (
    krg_engine::key::KeyArn,
    FaultProxy,
    Result<Value, kms_replica_guard::lambda::InvocationError>,
) {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let proxy = strict_proxy(config).await;
    let app = function(
        &proxy,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", baseline),
        ],
    )
    .await;
    let response = app
        .handle(event("put-key-policy-replica-id.json", family.key_id()))
        .await;
    (family.replica("us-west-2").clone(), proxy, response)
}

/// The engine, as the wiring builds it, with KMS through `proxy`.
async fn engine(proxy: &FaultProxy, settings: &[(&str, &str)]) -> AwsEngine {
    let config = Config::from_lookup(vars(settings)).unwrap();
    Adapters::new(&through(proxy).await, Some(&config)).engine(&config)
}

fn existing(principals: &[&str]) -> Option<BTreeSet<String>> {
    Some(principals.iter().map(|p| p.to_string()).collect())
}

fn outcome_for<'a>(response: &'a Value, key: &krg_engine::key::KeyArn) -> &'a Value {
    response["outcomes"]
        .as_array()
        .and_then(|os| os.iter().find(|o| o["key_arn"] == key.as_str()))
        .unwrap_or_else(|| panic!("no outcome for {key}: {response:#}"))
}

#[tokio::test]
async fn a_sweep_reads_reserialised_reordered_policies_and_reports_exactly_the_drifted() {
    let sdk = sdk().await;
    let region = "ap-south-1";
    let in_sync = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    let drifted = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    let replica = in_sync.replica(region);
    put_policy(&sdk, replica, &rendered_baseline(replica)).await;
    let proxy = strict_proxy(StrictKms {
        reserialise: true,
        ..StrictKms::default()
    })
    .await;
    // What the function reads really is KMS's style, reordered.
    let shown = get_policy(&through(&proxy).await, replica).await;
    assert!(shown.contains("\"Sid\" : \"AllowAppUse\""), "{shown}");
    assert!(
        shown.find("AllowAppUse").unwrap() < shown.find("EnableRootAccess").unwrap(),
        "statements in another order: {shown}"
    );

    let engine = engine(&proxy, &[("BASELINE_SOURCE", BASELINE)]).await;
    let report = engine
        .sweep(&[Place::own(region.parse().unwrap())], &Quiet)
        .await;
    let response = serde_json::to_value(&report).unwrap();
    assert!(
        !response["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["key_arn"] == replica.as_str()),
        "the in-sync replica is only counted: {response:#}"
    );
    assert_eq!(
        outcome_for(&response, drifted.replica(region))["action"],
        "drift-detected"
    );
    assert!(report.summary.unwrap()[&Action::InSync] >= 1);
}

#[tokio::test]
async fn a_write_is_verified_despite_stale_reads_and_never_called_a_verification_failure() {
    // How many reads verification takes, measured: one read before the write, then the stale
    // ones, then the first that shows the write.
    for stale in 0..=3 {
        let (replica, proxy, response) = heal_through(
            StrictKms {
                reserialise: true,
                stale_reads: stale,
                ..StrictKms::default()
            },
            BASELINE,
        )
        .await;
        let response = response.unwrap_or_else(|e| panic!("{stale} stale reads: {e}"));
        let replica = &replica;
        assert_eq!(
            outcome_for(&response, replica)["action"],
            "remediated",
            "{stale} stale reads: {response:#}"
        );
        assert_eq!(proxy.forwarded("PutKeyPolicy"), 1, "{stale} stale reads");
        assert_eq!(
            proxy.forwarded("GetKeyPolicy"),
            stale + 2,
            "{stale} stale reads: the read, the stale re-reads, one verifying read"
        );
        assert!(
            equivalent(
                &get_policy(&sdk().await, replica).await,
                &rendered_baseline(replica)
            )
            .unwrap()
        );
    }
}

// Multi-thread: the CLI runs as a blocking child process while this runtime serves the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_naming_a_principal_that_does_not_exist_fails_bounded_with_exit_code_2() {
    let sdk = sdk().await;
    let region = "eu-north-1";
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    let replica = family.replica(region);
    let proxy = strict_proxy(StrictKms {
        existing: existing(&[REMEDIATOR]),
        ..StrictKms::default()
    })
    .await;
    let (code, stdout, stderr) = cli_at(
        &proxy.endpoint,
        &[("CREATING_RETRY_BASE_MS", "50"), ("EXCLUDE_TAG", "off")],
        &[
            "--baseline",
            BASELINE,
            "--output",
            "json",
            "sweep",
            "--regions",
            region,
            "--apply",
        ],
    );
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let response: Value = serde_json::from_str(&stdout).unwrap();
    let ours = outcome_for(&response, replica);
    assert_eq!(ours["action"], "failed", "{ours:#}");
    assert_eq!(ours["retry"], "non-retryable", "{ours:#}");
    let reason = ours["reason"].as_str().unwrap();
    assert!(reason.contains(APP), "names the principals: {reason}");
    assert!(reason.contains("create the missing principal"), "{reason}");
    let failed = response["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["action"] == "failed")
        .count();
    assert_eq!(
        proxy.refused(INVALID_PRINCIPALS),
        PRINCIPAL_ATTEMPTS * failed,
        "a bounded number of attempts per replica"
    );
    assert_eq!(proxy.forwarded("PutKeyPolicy"), 0, "nothing written");
    assert_eq!(get_policy(&sdk, replica).await, DEFAULT_STYLE_POLICY);
}

#[tokio::test]
async fn a_principal_that_becomes_visible_after_two_refusals_is_written_once() {
    let (replica, proxy, response) = heal_through(
        StrictKms {
            existing: existing(&[REMEDIATOR]),
            appearing: HashMap::from([(APP.to_owned(), 2)]),
            ..StrictKms::default()
        },
        BASELINE,
    )
    .await;
    let response = response.unwrap();
    let replica = &replica;
    assert_eq!(outcome_for(&response, replica)["action"], "remediated");
    assert_eq!(proxy.refused(INVALID_PRINCIPALS), 2);
    assert_eq!(proxy.forwarded("PutKeyPolicy"), 1, "written once");
}

#[tokio::test]
async fn mirroring_a_primary_that_shows_a_deleted_principal_is_refused_before_any_write() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2", "eu-west-1"]).await;
    put_policy(&sdk, &family.primary, &rendered_baseline(&family.primary)).await;
    let proxy = strict_proxy(StrictKms {
        reserialise: true,
        deleted: HashMap::from([(APP.to_owned(), APP_ID.to_owned())]),
        ..StrictKms::default()
    })
    .await;
    let app = function(
        &proxy,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", "primary"),
        ],
    )
    .await;
    let err = app
        .handle(event("put-key-policy-primary.json", family.key_id()))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "NonRetryable.KeyFailure", "{err}");
    let text = err.to_string();
    assert!(text.contains(APP_ID), "names the id: {text}");
    assert!(text.contains("fix the primary"), "{text}");
    assert_eq!(
        proxy.forwarded("PutKeyPolicy"),
        0,
        "refused before any write"
    );
    assert_eq!(proxy.refused(INVALID_PRINCIPALS), 0, "not even tried");
}

#[tokio::test]
async fn restoring_a_backup_that_carries_a_deleted_principal_is_refused_naming_it() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    put_policy(&sdk, replica, &rendered_baseline(replica)).await;
    let proxy = strict_proxy(StrictKms {
        deleted: HashMap::from([(APP.to_owned(), APP_ID.to_owned())]),
        ..StrictKms::default()
    })
    .await;
    // A backup taken after role/app was deleted holds the policy as KMS shows it.
    let backed_up = get_policy(&through(&proxy).await, replica).await;
    assert!(backed_up.contains(APP_ID), "{backed_up}");
    put_policy(&sdk, replica, DEFAULT_STYLE_POLICY).await;
    let engine = engine(
        &proxy,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", BASELINE),
        ],
    )
    .await;
    let o = engine
        .restore(replica, &backed_up, "s3://b/backup.json")
        .await;
    assert_eq!(o.action(), Action::Failed, "{o:#?}");
    let reason = o.reason().unwrap();
    assert!(
        reason.contains(APP_ID) && reason.contains("s3://b/backup.json"),
        "{reason}"
    );
    assert_eq!(proxy.forwarded("PutKeyPolicy"), 0);
}

#[tokio::test]
async fn kms_lockout_answer_is_a_non_retryable_failure_naming_the_baseline() {
    // REMEDIATOR_ROLE_ARN names a role the baseline keeps in, but the function really runs as
    // another one: our check passes, KMS's own refuses.
    let without_root: Value = {
        let mut v: Value = serde_json::from_str(BASELINE).unwrap();
        v["Statement"]
            .as_array_mut()
            .unwrap()
            .retain(|s| s["Sid"] != "EnableRootAccess");
        v
    };
    let (replica, proxy, response) = heal_through(
        StrictKms {
            caller: Some("arn:aws:iam::111122223333:role/the-real-function-role".into()),
            ..StrictKms::default()
        },
        &without_root.to_string(),
    )
    .await;
    let err = response.unwrap_err();
    assert_eq!(err.error_type(), "NonRetryable.KeyFailure", "{err}");
    let text = err.to_string();
    assert!(text.contains("lockout safety check"), "{text}");
    assert!(
        text.contains("literal BASELINE_SOURCE"),
        "names the baseline: {text}"
    );
    assert_eq!(proxy.refused(LOCKOUT), 1, "never retried");
    assert_eq!(
        get_policy(&sdk().await, &replica).await,
        DEFAULT_STYLE_POLICY
    );
}
