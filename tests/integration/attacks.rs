//! The guard turned against the keys it guards, one attack a test, against the emulator:
//! someone with *some* permissions in an account (tagging, one key's PutKeyPolicy, write
//! access to a baseline, the guard's own role) tries to steer the guard, make it amplify a
//! change, or silence it. Each test reproduces the attack and checks what the guard does
//! now (docs/src/threat-model.md).

use kms_replica_guard::config::Config;
use kms_replica_guard::lambda::InvocationError;
use krg_aws::remote::Remote;
use krg_policy::equivalent;
use serde_json::Value;

use crate::helpers::*;

const EXCLUDE_TAG: &str = "kms-replica-guard:exclude";
const BASELINE_TAG: &str = "kms-replica-guard:baseline";

/// The default-style policy plus a statement that gives everyone kms:Decrypt.
const OPEN_TO_ALL: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "OpenToAll", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}
  ]
}"#;

/// The outcomes of a handled event: from the response, or from the failure summary when
/// the invocation failed.
fn outcomes(result: &Result<Value, InvocationError>) -> Vec<Value> {
    match result {
        Ok(response) => response["outcomes"].as_array().cloned().unwrap_or_default(),
        Err(InvocationError::Keys { summary, .. }) => {
            let v: Value = serde_json::from_str(summary).expect("the summary is JSON");
            v["failed"].as_array().cloned().unwrap_or_default()
        }
        Err(e) => panic!("the invocation failed outside any key: {e}"),
    }
}

fn literal_baseline() -> String {
    BASELINE.replace('\n', " ")
}

/// The function in enforce mode, holding keys to the test baseline, with `extra` settings.
fn enforcing(sdk: &aws_config::SdkConfig, extra: &[(&str, &str)]) -> (TestApp, KmsCalls) {
    let baseline = literal_baseline();
    let mut vars = vec![
        ("REMEDIATION_MODE", "enforce"),
        ("BASELINE_SOURCE", baseline.as_str()),
    ];
    vars.extend_from_slice(extra);
    lambda(sdk, &vars)
}

#[tokio::test]
async fn an_excluded_key_opened_to_everyone_still_alarms_and_an_overlong_exemption_is_not_honoured()
{
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["eu-west-1"]).await;
    let replica = family.replica("eu-west-1");
    // The attacker tags the key out of the guard's reach, then opens it.
    tag(&sdk, replica, EXCLUDE_TAG, "until=9999-12-31").await;
    put_policy(&sdk, replica, OPEN_TO_ALL).await;

    let ns = namespace("excluded-opened");
    let (app, calls) = enforcing(&sdk, &[("METRICS_NAMESPACE", &ns)]);
    let event = event("put-key-policy-replica-arn.json", family.key_id());
    let result = handle(&app, event.clone()).await;
    let response = result.as_ref().expect("an exemption is not a failure");
    let o = &outcomes(&result)[0];
    assert_eq!(o["action"], "skipped", "{response:#}");
    assert_eq!(o["exposure"]["severity"], "public", "{o:#}");
    assert_eq!(calls.puts(), 0, "the exemption stops the write");
    assert_eq!(
        metric_sum_with(&sdk, &ns, "ExposureDrift", &[("Severity", "public")]).await,
        1.0,
        "the exemption never stops the alarm"
    );
    assert_eq!(response["notifications"]["published"], 1, "{response:#}");

    // An operator caps exemptions: one ending in 9999 is no longer honoured.
    let (app, calls) = enforcing(
        &sdk,
        &[("METRICS_NAMESPACE", &ns), ("EXEMPTION_MAX_DAYS", "30")],
    );
    let result = handle(&app, event).await;
    let o = &outcomes(&result)[0];
    assert_eq!(o["action"], "remediated", "{o:#}");
    assert!(
        o["exemption_ignored"]
            .as_str()
            .unwrap()
            .contains("EXEMPTION_MAX_DAYS=30"),
        "{o:#}"
    );
    assert_eq!(calls.puts(), 1);
    assert!(
        equivalent(
            &get_policy(&sdk, replica).await,
            &rendered_baseline(replica)
        )
        .unwrap()
    );
}

#[tokio::test]
async fn an_exemption_whose_end_cannot_be_read_does_not_switch_the_guard_off() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["eu-west-1"]).await;
    let replica = family.replica("eu-west-1");
    tag(&sdk, replica, EXCLUDE_TAG, "until=31/12/2099").await;
    put_policy(&sdk, replica, OPEN_TO_ALL).await;
    let (app, calls) = enforcing(&sdk, &[]);
    let result = handle(
        &app,
        event("put-key-policy-replica-arn.json", family.key_id()),
    )
    .await;
    let o = &outcomes(&result)[0];
    assert_eq!(o["action"], "remediated", "{o:#}");
    assert!(
        o["exemption_ignored"]
            .as_str()
            .unwrap()
            .contains("until=31/12/2099"),
        "the warning names the value: {o:#}"
    );
    assert_eq!(calls.puts(), 1);
}

/// A catalogue directory of its own, with these baselines.
fn catalogue_dir(baselines: &[(&str, &str)]) -> String {
    let dir = std::env::temp_dir().join(format!(
        "krg-attacks-{}-{}",
        std::process::id(),
        baselines
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join("-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in baselines {
        std::fs::write(dir.join(format!("{name}.json")), text).unwrap();
    }
    dir.display().to_string()
}

/// The test baseline plus a grant to another account.
fn partner_share() -> String {
    BASELINE.replace(
        r#"    {
      "Sid": "AllowAppUse","#,
        r#"    {
      "Sid": "PartnerDecrypt",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
      "Action": "kms:Decrypt",
      "Resource": "*"
    },
    {
      "Sid": "AllowAppUse","#,
    )
}

#[tokio::test]
async fn a_tag_selecting_a_wider_baseline_outside_its_scope_is_refused_and_the_key_still_judged() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["eu-west-1"]).await;
    let replica = family.replica("eu-west-1");
    assert!(partner_share().contains("444455556666"));
    let dir = catalogue_dir(&[("default", BASELINE), ("partner-share", &partner_share())]);
    // The wide baseline is trusted, but only for the account that shares with the partner.
    tag(&sdk, replica, BASELINE_TAG, "partner-share").await;
    put_policy(&sdk, replica, OPEN_TO_ALL).await;
    let source = format!("dir:{dir}");
    let (app, calls) = lambda(
        &sdk,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", &source),
            ("TRUSTED_ACCOUNTS", "444455556666"),
            ("BASELINE_SCOPE", "partner-share=999988887777"),
        ],
    );
    let result = handle(
        &app,
        event("put-key-policy-replica-arn.json", family.key_id()),
    )
    .await;
    let Err(InvocationError::Keys { retry, .. }) = &result else {
        panic!("the key fails: {result:?}")
    };
    assert_eq!(*retry, krg_engine::outcome::Retry::NonRetryable);
    let o = &outcomes(&result)[0];
    assert!(
        o["reason"].as_str().unwrap().contains("BASELINE_SCOPE"),
        "{o:#}"
    );
    // Judged all the same, against the default baseline: the open statement shows.
    assert_eq!(o["exposure"]["severity"], "public", "{o:#}");
    assert_eq!(calls.puts(), 0, "nothing is written");
    assert!(
        get_policy(&sdk, replica).await.contains("OpenToAll"),
        "the key is untouched"
    );
}

#[tokio::test]
async fn a_tag_selecting_a_baseline_that_breaks_the_guardrails_is_refused_and_reported() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["eu-west-1"]).await;
    let replica = family.replica("eu-west-1");
    // Someone planted an entry that shares the key with another account, untrusted.
    let dir = catalogue_dir(&[("default", BASELINE), ("wide", &partner_share())]);
    tag(&sdk, replica, BASELINE_TAG, "wide").await;
    let source = format!("dir:{dir}");
    let ns = namespace("tag-wide");
    let (app, calls) = lambda(
        &sdk,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", &source),
            ("METRICS_NAMESPACE", &ns),
        ],
    );
    let result = handle(
        &app,
        event("put-key-policy-replica-arn.json", family.key_id()),
    )
    .await;
    let o = &outcomes(&result)[0];
    assert_eq!(o["action"], "failed", "{o:#}");
    let reason = o["reason"].as_str().unwrap();
    assert!(
        reason.contains("PartnerDecrypt") && reason.contains("cross-account"),
        "the refusal names the statement and its exposure: {reason}"
    );
    assert_eq!(calls.puts(), 0);
    assert_eq!(
        metric_sum_with(
            &sdk,
            &ns,
            "GuardrailRefused",
            &[("Severity", "cross-account")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_public_primary_is_not_mirrored_to_its_replicas_in_enforce_or_dry_run() {
    let sdk = sdk().await;
    let family = create_family(&sdk, OPEN_TO_ALL, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let before = get_policy(&sdk, replica).await;
    for mode in ["enforce", "dry-run"] {
        let ns = namespace(&format!("public-primary-{mode}"));
        let (app, calls) = lambda(
            &sdk,
            &[
                ("REMEDIATION_MODE", mode),
                ("BASELINE_SOURCE", "primary"),
                ("METRICS_NAMESPACE", &ns),
            ],
        );
        let result = handle(&app, event("put-key-policy-primary.json", family.key_id())).await;
        let o = outcomes(&result)
            .into_iter()
            .find(|o| o["key_arn"] == replica.as_str())
            .expect("the replica's outcome");
        assert_eq!(o["action"], "failed", "{mode}: {o:#}");
        assert!(
            o["reason"].as_str().unwrap().contains("OpenToAll"),
            "{mode}: {o:#}"
        );
        assert_eq!(calls.puts(), 0, "{mode}: 0 PutKeyPolicy");
        assert_eq!(
            metric_sum_with(&sdk, &ns, "GuardrailRefused", &[("Severity", "public")]).await,
            1.0,
            "{mode}"
        );
    }
    assert_eq!(get_policy(&sdk, replica).await, before);
}

#[tokio::test]
async fn a_baseline_changed_behind_its_digest_is_refused_at_start_up() {
    let sdk = sdk().await;
    let bucket = bucket(&sdk, "krg-digest").await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let put = |body: String| {
        s3.put_object()
            .bucket(&bucket)
            .key("baseline.json")
            .body(body.into_bytes().into())
            .send()
    };
    put(BASELINE.to_owned()).await.unwrap();
    let pinned = krg_engine::baseline::sha256_hex(BASELINE.as_bytes());
    let source = format!("s3://{bucket}/baseline.json");
    let load = |digest: String| {
        let source = source.clone();
        let sdk = sdk.clone();
        async move {
            Config::load_from(
                vars(&[("BASELINE_SOURCE", &source), ("BASELINE_SHA256", &digest)]),
                &Remote::new(&sdk),
            )
            .await
        }
    };
    load(pinned.clone())
        .await
        .expect("the pinned baseline loads");
    // Whoever can write the object widens it.
    put(partner_share()).await.unwrap();
    let e = load(pinned.clone()).await.unwrap_err();
    let text = e.to_string();
    let actual = krg_engine::baseline::sha256_hex(partner_share().as_bytes());
    assert_eq!(e.variable, "BASELINE_SHA256");
    assert!(
        text.contains(&source) && text.contains(&pinned) && text.contains(&actual),
        "names the source and both digests: {text}"
    );
}

#[tokio::test]
async fn a_policy_written_under_the_guards_role_that_differs_from_the_baseline_is_healed() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    put_policy(&sdk, replica, OPEN_TO_ALL).await;
    let (app, calls) = enforcing(&sdk, &[]);
    // Someone who can assume the guard's role writes an open policy under it.
    let mut forged = event("put-key-policy-by-remediator.json", family.key_id());
    forged["detail"]["requestParameters"]["policy"] = Value::String(OPEN_TO_ALL.to_owned());
    let result = handle(&app, forged).await;
    let o = &outcomes(&result)[0];
    assert_eq!(o["action"], "remediated", "{o:#}");
    assert_eq!(o["exposure"]["severity"], "public");
    assert_eq!(calls.puts(), 1);

    // The guard's own fix, as CloudTrail records it, is in sync by construction: no call.
    let mut own = event("put-key-policy-by-remediator.json", family.key_id());
    own["detail"]["requestParameters"]["policy"] = Value::String(rendered_baseline(replica));
    let (app, calls) = enforcing(&sdk, &[]);
    let response = handle(&app, own).await.unwrap();
    assert!(outcomes(&Ok(response)).is_empty());
    assert_eq!(
        calls.0.call_counts().values().sum::<u64>(),
        0,
        "decided on CPU alone"
    );
}

#[tokio::test]
async fn a_tag_change_is_news_naming_its_actor_and_other_tags_cost_nothing() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    tag(
        &sdk,
        replica,
        EXCLUDE_TAG,
        "until=2027-01-31 ticket OPS-4711",
    )
    .await;
    let ns = namespace("tag-news");
    let (app, _) = enforcing(&sdk, &[("METRICS_NAMESPACE", &ns)]);
    let response = handle(&app, event("tag-resource-exclude.json", family.key_id()))
        .await
        .unwrap();
    let news = &response["tag_changes"][0];
    assert_eq!(news["change"], "exemption-granted", "{response:#}");
    assert_eq!(
        news["actor"]["arn"],
        "arn:aws:sts::111122223333:assumed-role/Admin/alice"
    );
    assert_eq!(metric_sum(&sdk, &ns, "ExemptionGranted").await, 1.0);

    let (app, calls) = enforcing(&sdk, &[]);
    let response = handle(&app, event("tag-resource-other-tag.json", family.key_id()))
        .await
        .unwrap();
    assert!(outcomes(&Ok(response)).is_empty());
    assert_eq!(calls.0.call_counts().values().sum::<u64>(), 0);
}

#[tokio::test]
async fn an_unpinned_service_principal_is_not_kept_in_contains_mode() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["eu-west-1"]).await;
    let replica = family.replica("eu-west-1");
    // Any account's log group could make CloudWatch Logs use this key (confused deputy).
    let with_deputy = rendered_baseline(replica).replace(
        r#"    {
      "Sid": "AllowAppUse","#,
        r#"    {
      "Sid": "LogsAnyAccount",
      "Effect": "Allow",
      "Principal": {"Service": "logs.amazonaws.com"},
      "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"],
      "Resource": "*"
    },
    {
      "Sid": "AllowAppUse","#,
    );
    assert!(with_deputy.contains("LogsAnyAccount"));
    put_policy(&sdk, replica, &with_deputy).await;
    let (app, calls) = enforcing(&sdk, &[("BASELINE_MATCH", "contains")]);
    let result = handle(
        &app,
        event("put-key-policy-replica-arn.json", family.key_id()),
    )
    .await;
    let o = &outcomes(&result)[0];
    assert_eq!(o["action"], "remediated", "{o:#}");
    assert_eq!(
        o["extras"]["removed"][0]["severity"], "cross-account",
        "{o:#}"
    );
    assert_eq!(calls.puts(), 1);
    assert!(!get_policy(&sdk, replica).await.contains("LogsAnyAccount"));
}

#[tokio::test]
async fn a_write_that_grants_administration_is_judged_and_reported() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let ns = namespace("write-exposure");
    let (app, _) = enforcing(&sdk, &[("METRICS_NAMESPACE", &ns)]);
    let response = handle(
        &app,
        event("put-key-policy-replica-id.json", family.key_id()),
    )
    .await
    .unwrap();
    let o = &outcomes(&Ok(response.clone()))[0];
    assert_eq!(o["action"], "remediated", "{o:#}");
    // The baseline gives the guard's role kms:PutKeyPolicy, which the default policy did
    // not name: "this fix gave role X key administration".
    let write = &o["write_exposure"];
    assert_eq!(write["severity"], "admin", "{o:#}");
    assert!(
        write["gains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["principal"] == REMEDIATOR),
        "{write:#}"
    );
    assert_eq!(
        metric_sum_with(&sdk, &ns, "WriteExposure", &[("Severity", "admin")]).await,
        1.0
    );
    // Remediated, and the write's own news.
    assert_eq!(response["notifications"]["published"], 2, "{response:#}");
    assert!(
        equivalent(
            &get_policy(&sdk, replica).await,
            &rendered_baseline(replica)
        )
        .unwrap()
    );
}
