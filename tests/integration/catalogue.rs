//! Baselines that fit a fleet, against the emulator: a catalogue in S3 and SSM picked per
//! key by tag, must-contain matching, Region-aware mirroring, expiring exemptions.

use kms_replica_guard::config::Config;
use kms_replica_guard::wiring::Adapters;
use krg_aws::remote::Remote;
use krg_engine::Quiet;
use krg_engine::key::{KeyArn, Place};
use krg_engine::outcome::{Action, Failure, Status};
use krg_policy::equivalent;
use serde_json::Value;

use crate::helpers::*;

/// A second baseline of the catalogue: the CloudWatch Logs service in the key's Region.
const LOGS: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "EnableRootAccess", "Effect": "Allow", "Principal": {"AWS": "arn:{{Partition}}:iam::{{AccountId}}:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "AllowLogs", "Effect": "Allow", "Principal": {"Service": "logs.{{Region}}.amazonaws.com"},
     "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"], "Resource": "*",
     "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": "arn:{{Partition}}:logs:{{Region}}:{{AccountId}}:log-group:*"}}}
  ]
}"#;

fn render(template: &str, key: &KeyArn) -> String {
    template
        .replace("{{Partition}}", key.partition())
        .replace("{{AccountId}}", key.account().as_str())
        .replace("{{Region}}", key.region().as_str())
}

const BASELINE_TAG: &str = "kms-replica-guard:baseline";
const EXCLUDE_TAG: &str = "kms-replica-guard:exclude";

#[tokio::test]
async fn keys_converge_to_the_catalogue_baseline_their_tag_names_and_an_unknown_name_fails_only_its_key()
 {
    let sdk = sdk().await;
    // A Region of its own: an enforcing sweep fixes every drifted replica it sees.
    let region = "eu-central-1";
    let bucket = bucket(&sdk, "krg-catalogue").await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    for (key, body) in [
        ("baselines/app.json", BASELINE),
        ("baselines/logs.json", LOGS),
        ("baselines/README.md", "not a baseline"),
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let tagged = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    let inherits = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    let untagged = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    let unknown = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    tag(&sdk, tagged.replica(region), BASELINE_TAG, "logs").await;
    tag(&sdk, &inherits.primary, BASELINE_TAG, "logs").await;
    tag(&sdk, unknown.replica(region), BASELINE_TAG, "lgos").await;

    let source = format!("s3://{bucket}/baselines/");
    let config = Config::load_from(
        vars(&[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", &source),
            ("BASELINE_DEFAULT", "app"),
        ]),
        &Remote::new(&sdk),
    )
    .await
    .expect("the catalogue loads");
    let engine = Adapters::new(&sdk, Some(&config)).engine(&config);
    let report = engine
        .sweep(&[Place::own(region.parse().unwrap())], &Quiet)
        .await;
    let outcome = |f: &Family| {
        report
            .outcomes
            .iter()
            .find(|o| &o.key_arn == f.replica(region))
            .unwrap_or_else(|| panic!("{report:#?}"))
            .clone()
    };

    for (family, name, template) in [(&tagged, "logs", LOGS), (&inherits, "logs", LOGS)] {
        let o = outcome(family);
        assert_eq!(o.action(), Action::Remediated, "{o:#?}");
        assert_eq!(o.baseline.as_deref(), Some(name));
        let live = get_policy(&sdk, family.replica(region)).await;
        assert!(
            equivalent(&live, &render(template, family.replica(region))).unwrap(),
            "{live}"
        );
        assert!(
            live.contains(&format!("logs.{region}.amazonaws.com")),
            "{live}"
        );
    }
    let o = outcome(&untagged);
    assert_eq!(o.action(), Action::Remediated, "{o:#?}");
    assert_eq!(o.baseline.as_deref(), Some("app"), "BASELINE_DEFAULT");
    assert!(
        equivalent(
            &get_policy(&sdk, untagged.replica(region)).await,
            &rendered_baseline(untagged.replica(region))
        )
        .unwrap()
    );

    let o = outcome(&unknown);
    let Status::Failed(Failure::UnknownBaseline(e)) = &o.status else {
        panic!("{o:#?}");
    };
    assert_eq!(e.name, "lgos");
    let reason = o.reason().unwrap();
    assert!(
        reason.contains("app, logs, primary") && reason.contains(&source),
        "{reason}"
    );
    assert_eq!(
        get_policy(&sdk, unknown.replica(region)).await,
        DEFAULT_STYLE_POLICY,
        "nothing written"
    );
}

#[tokio::test]
async fn a_catalogue_with_a_broken_baseline_is_refused_at_start_up_naming_it() {
    let sdk = sdk().await;
    let path = format!("/kms-replica-guard/test/catalogue-{}/", std::process::id());
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let broken = BASELINE.replace("{{Region}}", "{{Regoin}}");
    let lockout = DEFAULT_STYLE_POLICY.replace("kms:*", "kms:Decrypt");
    for (name, value) in [
        ("app", BASELINE),
        ("broken", broken.as_str()),
        ("locks-out", lockout.as_str()),
    ] {
        ssm.put_parameter()
            .name(format!("{path}{name}"))
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .unwrap();
    }
    let source = format!("ssm:{path}");
    let e = Config::load_from(
        vars(&[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", &source),
            ("BASELINE_DEFAULT", "app"),
        ]),
        &Remote::new(&sdk),
    )
    .await
    .expect_err("a broken baseline");
    assert_eq!(e.variable, "BASELINE_SOURCE");
    let text = e.to_string();
    assert!(
        text.contains("2 invalid baseline(s)")
            && text.contains(&format!("ssm:{path}broken"))
            && text.contains("Regoin")
            && text.contains(&format!("ssm:{path}locks-out"))
            && !text.contains(&format!("ssm:{path}app")),
        "every problem, each naming its parameter: {text}"
    );
}

/// The rendered test baseline with `extra` statements after its own.
fn baseline_plus(key: &KeyArn, extra: &[&str]) -> String {
    let mut doc: Value = serde_json::from_str(&rendered_baseline(key)).unwrap();
    let list = doc["Statement"].as_array_mut().unwrap();
    for e in extra {
        list.push(serde_json::from_str(e).unwrap());
    }
    serde_json::to_string_pretty(&doc).unwrap()
}

const DR_ROLE: &str = r#"{"Sid": "DrRestore", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/dr-restore"}, "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}"#;
const ANYONE: &str = r#"{"Sid": "Anyone", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"}"#;
const PARTNER: &str = r#"{"Sid": "Partner", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"}, "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*"}"#;

#[tokio::test]
async fn in_contains_mode_a_dr_role_is_kept_and_a_public_or_foreign_grant_is_removed() {
    let sdk = sdk().await;
    let kept = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let rewritten = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let kept_key = kept.replica("us-west-2");
    let rewritten_key = rewritten.replica("us-west-2");
    put_policy(&sdk, kept_key, &baseline_plus(kept_key, &[DR_ROLE])).await;
    put_policy(
        &sdk,
        rewritten_key,
        &baseline_plus(rewritten_key, &[DR_ROLE, ANYONE, PARTNER]),
    )
    .await;
    let (app, kms) = lambda(
        &sdk,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", BASELINE),
            ("BASELINE_MATCH", "contains"),
        ],
    );

    let response = handle(&app, event("put-key-policy-replica-id.json", kept.key_id()))
        .await
        .unwrap();
    let o = &response["outcomes"][0];
    assert_eq!(o["action"], "in-sync", "{response:#}");
    assert_eq!(o["extras"]["kept"][0]["sid"], "DrRestore", "{response:#}");
    assert_eq!(kms.puts(), 0);

    let response = handle(
        &app,
        event("put-key-policy-replica-id.json", rewritten.key_id()),
    )
    .await
    .unwrap();
    let o = &response["outcomes"][0];
    assert_eq!(o["action"], "remediated", "{response:#}");
    assert_eq!(o["extras"]["kept"].as_array().unwrap().len(), 1);
    assert_eq!(o["extras"]["kept"][0]["sid"], "DrRestore");
    let removed: Vec<(String, String)> = o["extras"]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["sid"].as_str().unwrap().to_owned(),
                e["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        removed.contains(&("Anyone".into(), "public".into()))
            && removed.contains(&("Partner".into(), "cross-account".into())),
        "{removed:?}"
    );
    assert!(
        o["extras"]["removed"][0]["why"].as_str().unwrap().len() > 10,
        "{response:#}"
    );
    let live = get_policy(&sdk, rewritten_key).await;
    assert!(
        equivalent(&live, &baseline_plus(rewritten_key, &[DR_ROLE])).unwrap(),
        "baseline ∪ the kept extra: {live}"
    );
    assert_eq!(kms.puts(), 1);
}

const LOGS_PRIMARY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "EnableRootAccess", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "AllowLogs", "Effect": "Allow", "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
     "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"], "Resource": "*",
     "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:us-east-1:111122223333:log-group:*"}}},
    {"Sid": "PartnerLogs", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"}, "Action": "kms:Decrypt", "Resource": "*",
     "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:logs:us-east-1:999988887777:log-group:*"}}}
  ]
}"#;

#[tokio::test]
async fn a_mirrored_logs_key_policy_gets_the_replicas_region() {
    let sdk = sdk().await;
    let family = create_family(&sdk, LOGS_PRIMARY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let (app, _) = lambda(
        &sdk,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", "primary"),
            ("MIRROR_REWRITE", "on"),
            // The partner whose log groups may use the key (else the guardrails refuse it).
            ("TRUSTED_ACCOUNTS", "999988887777"),
        ],
    );
    let response = handle(
        &app,
        event("put-key-policy-replica-id.json", family.key_id()),
    )
    .await
    .unwrap();
    let o = response["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["region"] == "us-west-2")
        .unwrap_or_else(|| panic!("{response:#}"));
    assert_eq!(o["action"], "remediated", "{response:#}");
    let live = get_policy(&sdk, replica).await;
    assert!(
        live.contains("logs.us-west-2.amazonaws.com")
            && live.contains("arn:aws:logs:us-west-2:111122223333:log-group:*"),
        "{live}"
    );
    assert!(
        live.contains("arn:aws:logs:us-east-1:999988887777:log-group:*"),
        "another account's ARN is never rewritten: {live}"
    );
    let rewrites: Vec<&str> = o["rewrites"]
        .as_array()
        .unwrap_or_else(|| panic!("{o:#}"))
        .iter()
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    assert!(
        rewrites.contains(&"service-principal") && rewrites.contains(&"own-arn"),
        "{o:#}"
    );
}

#[tokio::test]
async fn an_exemption_skips_until_it_ends_then_reconciles_and_a_garbled_one_excludes_nothing() {
    let sdk = sdk().await;
    let ns = namespace("exemptions");
    let (app, kms) = lambda(
        &sdk,
        &[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", BASELINE),
            ("METRICS_NAMESPACE", &ns),
        ],
    );
    let outcome = async |value: &str| {
        let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
        tag(&sdk, family.replica("us-west-2"), EXCLUDE_TAG, value).await;
        let response = handle(
            &app,
            event("put-key-policy-replica-id.json", family.key_id()),
        )
        .await
        .unwrap();
        response["outcomes"][0].clone()
    };

    let future = outcome("DR drill until=2999-12-31").await;
    assert_eq!(future["action"], "skipped", "{future:#}");
    assert!(
        future["reason"]
            .as_str()
            .unwrap()
            .contains("until 3000-01-01T00:00:00"),
        "{future:#}"
    );
    assert_eq!(kms.puts(), 0);

    let past = outcome("until=2026-01-31T12:00:00Z").await;
    assert_eq!(past["action"], "remediated", "{past:#}");
    assert_eq!(past["exemption_ended"], "2026-01-31T12:00:00+00:00");
    assert_eq!(kms.puts(), 1);
    assert_eq!(metric_sum(&sdk, &ns, "ExemptionExpired").await, 1.0);

    // Fail closed: an exemption nobody can read excludes nothing.
    let garbled = outcome("until=31/12/2026").await;
    assert_eq!(garbled["action"], "remediated", "{garbled:#}");
    let why = garbled["exemption_ignored"].as_str().unwrap();
    assert!(
        why.contains("31/12/2026") && why.contains("cannot be read"),
        "{why}"
    );
    assert_eq!(kms.puts(), 2, "the garbled one is written too");
}
