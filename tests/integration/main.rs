//! The function against the local AWS emulator over real HTTP, with the real SDK clients.
//! Needs the emulator (`make emulator`); fails loudly without it.

mod accounts;
mod attacks;
mod calls;
mod catalogue;
mod doctor;
mod faults;
mod fleet;
mod helpers;
mod history;
mod security_hub;
mod strict;
mod work_items;

use helpers::*;
use krg_policy::equivalent;

fn enforce_with_baseline() -> Vec<(&'static str, &'static str)> {
    vec![
        ("REMEDIATION_MODE", "enforce"),
        ("BASELINE_SOURCE", BASELINE),
    ]
}

#[tokio::test]
async fn a_replica_with_the_default_policy_is_fixed_and_the_auto_fix_metric_is_readable() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2", "eu-west-1"]).await;
    let ns = namespace("default-policy-fixed");
    let mut vars = enforce_with_baseline();
    vars.push(("METRICS_NAMESPACE", &ns));
    let (app, kms) = lambda(&sdk, &vars);

    let other_before = get_policy(&sdk, family.replica("eu-west-1")).await;

    let response = handle(&app, event("replicate-key.json", family.key_id()))
        .await
        .unwrap();

    let replica = family.replica("us-west-2");
    assert_eq!(
        response["outcomes"][0]["key_arn"],
        replica.as_str(),
        "{response:#}"
    );
    assert_eq!(
        response["outcomes"][0]["action"], "remediated",
        "{response:#}"
    );
    assert!(
        response["outcomes"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("AllowAppUse")
    );
    let live = get_policy(&sdk, replica).await;
    assert!(
        equivalent(&live, &rendered_baseline(replica)).unwrap(),
        "live policy:\n{live}"
    );
    assert!(
        live.contains("s3.us-west-2.amazonaws.com"),
        "rendered for the replica's Region"
    );
    assert_eq!(kms.puts(), 1);
    assert_eq!(
        get_policy(&sdk, family.replica("eu-west-1")).await,
        other_before,
        "the event named only the us-west-2 replica"
    );
    assert_eq!(metric_sum(&sdk, &ns, "AutoFixApplied").await, 1.0);
    assert_eq!(metric_sum(&sdk, &ns, "DriftDetected").await, 1.0);
}

#[tokio::test]
async fn a_semantically_equal_reformatted_policy_is_left_byte_for_byte_untouched() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    // Same meaning: other order, case, single values vs lists, account id vs root ARN.
    let reformatted = r#"{"Statement": [
        {"Resource": "*", "Condition": {"StringEquals": {"KMS:viaservice": ["s3.us-west-2.amazonaws.com"]}},
         "Action": ["kms:GenerateDataKey*", "KMS:encrypt", "kms:Decrypt", "kms:Decrypt"],
         "Principal": {"AWS": ["arn:aws:iam::111122223333:role/app"]}, "Effect": "allow", "Sid": "AllowAppUse"},
        {"Sid": "EnableRootAccess", "Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "kms:*", "Resource": ["*"]},
        {"Sid": "AllowRemediator", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/kms-replica-guard-remediator"},
         "Action": ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey", "kms:ListResourceTags"], "Resource": "*"}
    ], "Id": "kms-replica-guard-baseline", "Version": "2012-10-17"}"#;
    put_policy(&sdk, replica, reformatted).await;
    let before = get_policy(&sdk, replica).await;
    let (app, kms) = lambda(&sdk, &enforce_with_baseline());

    let response = handle(
        &app,
        event("put-key-policy-replica-id.json", family.key_id()),
    )
    .await
    .unwrap();

    assert_eq!(response["outcomes"][0]["action"], "in-sync", "{response:#}");
    assert_eq!(get_policy(&sdk, replica).await, before, "byte for byte");
    assert_eq!(kms.puts(), 0);
}

#[tokio::test]
async fn dry_run_changes_nothing_but_reports_drift() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let before = get_policy(&sdk, replica).await;
    let ns = namespace("dry-run");
    let (app, kms) = lambda(
        &sdk,
        &[("BASELINE_SOURCE", BASELINE), ("METRICS_NAMESPACE", &ns)],
    );

    let response = handle(
        &app,
        event("put-key-policy-replica-id.json", family.key_id()),
    )
    .await
    .unwrap();

    assert_eq!(
        response["outcomes"][0]["action"], "drift-detected",
        "{response:#}"
    );
    assert!(
        response["outcomes"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("AllowRemediator")
    );
    assert_eq!(get_policy(&sdk, replica).await, before);
    assert_eq!(kms.puts(), 0);
    assert_eq!(metric_sum(&sdk, &ns, "DriftDetected").await, 1.0);
}

#[tokio::test]
async fn the_remediators_own_event_and_a_failed_call_change_nothing() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let before = get_policy(&sdk, replica).await;
    let (app, kms) = lambda(&sdk, &enforce_with_baseline());

    for name in [
        "put-key-policy-by-remediator.json",
        "put-key-policy-error.json",
    ] {
        let mut event = event(name, family.key_id());
        // The guard's own fix records the baseline it wrote.
        event["detail"]["requestParameters"]["policy"] =
            serde_json::json!(rendered_baseline(replica));
        let response = handle(&app, event).await.unwrap();
        assert_eq!(
            response["outcomes"],
            serde_json::json!([]),
            "{name}: {response:#}"
        );
    }
    assert_eq!(get_policy(&sdk, replica).await, before);
    assert_eq!(kms.puts(), 0);
}

#[tokio::test]
async fn the_same_put_key_policy_event_replayed_twenty_times_gives_exactly_one_write() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let (app, kms) = lambda(&sdk, &enforce_with_baseline());
    let e = event("put-key-policy-iam-user.json", family.key_id());

    let mut actions = Vec::new();
    for _ in 0..20 {
        let response = handle(&app, e.clone()).await.unwrap();
        actions.push(
            response["outcomes"][0]["action"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    assert_eq!(kms.puts(), 1);
    assert_eq!(actions[0], "remediated");
    assert!(actions[1..].iter().all(|a| a == "in-sync"), "{actions:?}");
}

#[tokio::test]
async fn a_primary_and_a_single_region_key_are_never_touched() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let east = kms_in(&sdk, "us-east-1");
    let single = east.create_key().send().await.unwrap();
    let single_id = single.key_metadata().unwrap().key_id().to_owned();
    let primary_before = get_policy(&sdk, &family.primary).await;
    let (app, kms) = lambda(&sdk, &enforce_with_baseline());

    let primary_event = event("put-key-policy-primary.json", family.key_id());
    let response = handle(&app, primary_event).await.unwrap();
    assert_eq!(response["outcomes"][0]["action"], "skipped", "{response:#}");
    assert!(
        response["outcomes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("primary")
    );

    let single_event = serde_json::from_str(
        &serde_json::to_string(&event("put-key-policy-single-region.json", family.key_id()))
            .unwrap()
            .replace("1234abcd-12ab-34cd-56ef-1234567890ab", &single_id),
    )
    .unwrap();
    let response = handle(&app, single_event).await.unwrap();
    assert_eq!(response["outcomes"], serde_json::json!([]), "{response:#}");

    assert_eq!(get_policy(&sdk, &family.primary).await, primary_before);
    assert_eq!(kms.puts(), 0);
}

#[tokio::test]
async fn mirroring_the_primary_brings_every_replica_to_its_policy() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2", "eu-west-1"]).await;
    let primary_policy = rendered_baseline(&family.primary).replace(
        "\"Resource\": \"*\",\n      \"Condition\"",
        &format!("\"Resource\": \"{}\",\n      \"Condition\"", family.primary),
    );
    put_policy(&sdk, &family.primary, &primary_policy).await;
    let (app, kms) = lambda(
        &sdk,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", "primary"),
        ],
    );

    let response = handle(&app, event("put-key-policy-primary.json", family.key_id()))
        .await
        .unwrap();

    let outcomes = response["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2, "{response:#}");
    assert!(
        outcomes.iter().all(|o| o["action"] == "remediated"),
        "{response:#}"
    );
    for region in ["us-west-2", "eu-west-1"] {
        let replica = family.replica(region);
        let live = get_policy(&sdk, replica).await;
        assert!(
            live.contains(&format!("s3.{region}.amazonaws.com")),
            "{live}"
        );
        assert!(
            live.contains(replica.as_str()),
            "own ARN, not the primary's:\n{live}"
        );
    }
    assert_eq!(kms.puts(), 2);
}

#[tokio::test]
async fn an_invalid_baseline_writes_nothing() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let before = get_policy(&sdk, replica).await;
    let lockout = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:role/app"},"Action":"kms:Decrypt","Resource":"*"}]}"#;
    let (app, kms) = lambda(
        &sdk,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", lockout),
        ],
    );

    let err = handle(
        &app,
        event("put-key-policy-replica-id.json", family.key_id()),
    )
    .await
    .unwrap_err();

    assert_eq!(err.error_type(), "NonRetryable.ConfigurationError");
    assert!(err.to_string().contains("lock out"), "{err}");
    assert_eq!(get_policy(&sdk, replica).await, before);
    assert_eq!(kms.puts(), 0);

    // A primary whose policy would lock the remediator out is not mirrored either.
    let locked_primary = lockout.replace("{{AccountId}}", ACCOUNT);
    put_policy(&sdk, &family.primary, &locked_primary).await;
    let (app, kms) = lambda(
        &sdk,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", "primary"),
        ],
    );
    let err = handle(
        &app,
        event("put-key-policy-replica-id.json", family.key_id()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type(), "NonRetryable.KeyFailure");
    assert!(err.to_string().contains("lock out"), "{err}");
    assert_eq!(get_policy(&sdk, replica).await, before);
    assert_eq!(kms.puts(), 0);
}

#[tokio::test]
async fn a_sweep_finds_and_fixes_the_drifted_replicas_of_its_regions() {
    let sdk = sdk().await;
    // A Region no other test uses: an enforcing sweep fixes every drifted replica it sees.
    let drifted = create_family(&sdk, DEFAULT_STYLE_POLICY, &["ap-southeast-2"]).await;
    let in_sync = create_family(&sdk, DEFAULT_STYLE_POLICY, &["ap-southeast-2"]).await;
    put_policy(
        &sdk,
        in_sync.replica("ap-southeast-2"),
        &rendered_baseline(in_sync.replica("ap-southeast-2")),
    )
    .await;
    let (app, _kms) = lambda(&sdk, &enforce_with_baseline());

    let response = handle(
        &app,
        serde_json::json!({"sweep": {"regions": ["ap-southeast-2"]}}),
    )
    .await
    .unwrap();

    let outcome_of = |key: &str| {
        response["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["key_arn"] == key)
            .map(|o| o["action"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        outcome_of(drifted.replica("ap-southeast-2").as_str()).as_deref(),
        Some("remediated"),
        "{response:#}"
    );
    assert_eq!(
        outcome_of(in_sync.replica("ap-southeast-2").as_str()),
        None,
        "in-sync replicas are counted in the summary, not listed"
    );
    assert!(
        response["summary"]["in-sync"].as_u64().unwrap() >= 1,
        "{response:#}"
    );
    assert_eq!(
        outcome_of(drifted.primary.as_str()),
        None,
        "primaries are not managed"
    );
}

#[tokio::test]
async fn fifty_replays_write_once_and_ten_concurrent_invocations_converge() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let (app, kms) = lambda(&sdk, &enforce_with_baseline());
    let e = event("put-key-policy-replica-id.json", family.key_id());

    for _ in 0..50 {
        handle(&app, e.clone()).await.unwrap();
    }
    assert_eq!(
        kms.puts(),
        1,
        "the same event 50 times: exactly one PutKeyPolicy"
    );

    // One instance without a bucket: the write claim is in this process's memory. An
    // invocation that read the drift before the write but claims after its release may still
    // write it again, which is reported; faults::ten_concurrent_instances_on_one_drift_write_it_once
    // holds separate instances sharing S3 to exactly one write.
    put_policy(&sdk, replica, DEFAULT_STYLE_POLICY).await;
    let responses = futures::future::join_all((0..10).map(|_| handle(&app, e.clone()))).await;
    let remediated = responses
        .iter()
        .filter(|r| r.as_ref().unwrap()["outcomes"][0]["action"] == "remediated")
        .count();
    let live = get_policy(&sdk, replica).await;
    assert!(
        equivalent(&live, &rendered_baseline(replica)).unwrap(),
        "{live}"
    );
    let writes = kms.puts() - 1;
    println!(
        "10 concurrent invocations on one drifted key: {writes} PutKeyPolicy, {remediated} remediated outcomes"
    );
    assert!((1..=10).contains(&writes), "{writes}");
    assert_eq!(
        writes, remediated,
        "every write is reported as a remediation"
    );
}

#[tokio::test]
async fn a_drift_that_opens_the_key_is_explained_with_its_actor_in_the_outcome_metric_and_cli() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    // The baseline, plus someone's "temporary" grant to everyone.
    let mut live: serde_json::Value = serde_json::from_str(&rendered_baseline(replica)).unwrap();
    live["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "Sid": "TemporaryDebugAccess", "Effect": "Allow",
            "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"
        }));
    put_policy(&sdk, replica, &live.to_string()).await;
    let ns = namespace("exposure");
    let (app, kms) = lambda(
        &sdk,
        &[("BASELINE_SOURCE", BASELINE), ("METRICS_NAMESPACE", &ns)],
    );
    let ev = event("put-key-policy-replica-id.json", family.key_id());

    let response = handle(&app, ev.clone()).await.unwrap();

    let o = &response["outcomes"][0];
    assert_eq!(o["action"], "drift-detected", "{response:#}");
    assert_eq!(o["exposure"]["severity"], "public", "{o:#}");
    assert_eq!(
        o["exposure"]["gains"],
        serde_json::json!([{"principal": "*", "actions": ["kms:Decrypt"], "when": null}])
    );
    assert_eq!(o["exposure"]["losses"], serde_json::json!([]));
    let record = &ev["detail"];
    assert_eq!(o["actor"]["arn"], record["userIdentity"]["arn"]);
    assert_eq!(
        o["actor"]["role"],
        record["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"]
    );
    assert_eq!(o["actor"]["source_ip_address"], record["sourceIPAddress"]);
    assert_eq!(o["actor"]["event_time"], record["eventTime"]);
    assert_eq!(o["actor"]["event_id"], record["eventID"]);
    assert_eq!(kms.puts(), 0, "dry-run");
    // Counted by severity in dry-run, read back from CloudWatch.
    assert_eq!(
        metric_sum_with(&sdk, &ns, "ExposureDrift", &[("Severity", "public")]).await,
        1.0
    );

    // The operator CLI says it in a sentence above the statement diff.
    let (code, stdout, _) = cli(&[&format!("--baseline={BASELINE}"), "diff", replica.as_str()]);
    assert_eq!(code, 1, "{stdout}");
    let sentence = "us-west-2: * gains kms:Decrypt (no condition) — public";
    let at = stdout.find(sentence).unwrap_or_else(|| panic!("{stdout}"));
    let diff_at = stdout
        .find("- statement \"TemporaryDebugAccess\"")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(at < diff_at, "the sentence comes first: {stdout}");
}

#[tokio::test]
async fn each_drift_is_published_on_the_default_bus_where_a_rule_routes_it() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    // A queue and a rule on the default bus that routes this key's notifications to it, as
    // a user routes them to SNS, Chatbot or a ticketing tool.
    let routed = RoutedQueue::create(
        &sdk,
        &format!("krg-notifications-{}", family.key_id().replace("mrk-", "")),
        serde_json::json!({
            "source": ["kms-replica-guard"],
            "detail-type": ["Replica Key Policy Drift Detected", "Replica Key Policy Remediated"],
            "resources": [replica.as_str()],
            "detail": {"exposure": {"severity": ["public", "cross-account"]}}
        }),
    )
    .await;
    let mut live: serde_json::Value = serde_json::from_str(&rendered_baseline(replica)).unwrap();
    live["Statement"].as_array_mut().unwrap().push(serde_json::json!({
        "Sid": "Partner", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "kms:Decrypt", "Resource": "*"
    }));
    put_policy(&sdk, replica, &live.to_string()).await;
    let (app, _) = lambda(&sdk, &enforce_with_baseline());

    let response = handle(
        &app,
        event("put-key-policy-replica-id.json", family.key_id()),
    )
    .await
    .unwrap();

    assert_eq!(
        response["outcomes"][0]["action"], "remediated",
        "{response:#}"
    );
    assert_eq!(response["notifications"]["published"], 1, "{response:#}");
    let event = routed.receive_one().await;
    assert_eq!(event["source"], "kms-replica-guard");
    assert_eq!(event["detail-type"], "Replica Key Policy Remediated");
    assert_eq!(event["resources"], serde_json::json!([replica.as_str()]));
    let outcome = &response["outcomes"][0];
    assert_eq!(event["detail"], *outcome, "the detail is the outcome");
    assert_eq!(event["detail"]["exposure"]["severity"], "cross-account");
    assert_eq!(
        event["detail"]["exposure"]["gains"],
        serde_json::json!([{"principal": "arn:aws:iam::444455556666:root", "actions": ["kms:Decrypt"], "when": null}])
    );
    assert_eq!(
        event["detail"]["actor"]["arn"],
        "arn:aws:sts::111122223333:assumed-role/Admin/alice"
    );
}

#[test]
fn the_cli_without_a_region_says_so_in_one_line_and_probes_nothing() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kms-replica-guard"))
        .args(["check", "arn:aws:kms:us-west-2:111122223333:key/mrk-1"])
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("AWS_ACCESS_KEY_ID", ACCOUNT)
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("the CLI binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: no Region: set AWS_REGION or --region (or a region in your AWS profile)"
    );
    assert!(out.stdout.is_empty());
}
