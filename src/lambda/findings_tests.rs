//! Security Hub findings and AWS Config answers of the handler, over the in-memory fake.

use std::collections::HashMap;

use serde_json::Value;

use super::App;
use crate::config::{Config, ConfigError};
use krg_engine::error::ErrorKind;
use krg_engine::fake::{FakeAws, arn};
use krg_engine::findings::{Compliance, ConfigCompliance, Label};

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;

/// The replica in us-west-2 grants everyone kms:Decrypt.
fn public_drift() -> FakeAws {
    let fake = FakeAws::family(POLICY, &["us-west-2", "eu-west-1"]);
    fake.with_key(&arn("us-west-2"), |k| {
        k.policy = POLICY.replace(
            r#"}]}"#,
            r#"},{"Sid":"Open","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#,
        )
    });
    fake
}

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<&str, &str> = vars.iter().copied().collect();
    Config::from_lookup(|k| map.get(k).map(|v| v.to_string()))
}

fn sample(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The Config change notification about the key in `region`.
fn config_change(region: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/events/config-rule-change.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_str(&text.replace("us-west-2", region)).unwrap()
}

const ENFORCE: &[(&str, &str)] = &[("REMEDIATION_MODE", "enforce"), ("SECURITY_HUB", "on")];

#[tokio::test]
async fn a_fixed_public_drift_posts_a_passed_finding_and_a_dry_run_one_a_critical_failed_one() {
    let fake = public_drift();
    let dry =
        App::new(config(&[("SECURITY_HUB", "on")]), &fake, &fake, &fake).with_findings(Some(&fake));
    let response = dry
        .handle(sample("put-key-policy-replica-id.json"))
        .await
        .unwrap();
    assert_eq!(response["findings"]["imported"], 1, "{response:#}");
    let f = fake.findings.lock().unwrap().pop().unwrap();
    assert_eq!(
        (f.compliance, f.label),
        (Compliance::Failed, Label::Critical)
    );
    assert_eq!(f.key_arn, arn("us-west-2"));
    assert!(f.title.contains("* gains kms:Decrypt"), "{}", f.title);
    assert!(
        f.fields["kms-replica-guard/actor"].contains("alice"),
        "{:?}",
        f.fields
    );

    let enforce = App::new(config(ENFORCE), &fake, &fake, &fake).with_findings(Some(&fake));
    enforce
        .handle(sample("put-key-policy-replica-id.json"))
        .await
        .unwrap();
    let healed = fake.findings.lock().unwrap().pop().unwrap();
    assert_eq!(healed.id, f.id, "the same finding, updated");
    assert_eq!(healed.compliance, Compliance::Passed);
}

#[tokio::test]
async fn a_security_hub_outage_leaves_the_fix_done_and_is_counted() {
    let fake = public_drift();
    fake.failures
        .lock()
        .unwrap()
        .insert("BatchImportFindings", vec![ErrorKind::Transient]);
    let app = App::new(config(ENFORCE), &fake, &fake, &fake).with_findings(Some(&fake));
    let response = app
        .handle(sample("put-key-policy-replica-id.json"))
        .await
        .expect("the invocation succeeds: the fix stands");
    assert_eq!(response["outcomes"][0]["action"], "remediated");
    assert_eq!(response["findings"]["not_imported"], 1, "{response:#}");
    assert_eq!(fake.count("PutKeyPolicy"), 1);
    let published = fake.published.lock().unwrap();
    let counted = published[0]
        .1
        .iter()
        .find(|d| d.metric.name() == "FindingsNotImported")
        .expect("counted");
    assert_eq!(counted.value, 1.0);
}

#[tokio::test]
async fn without_security_hub_on_no_finding_is_made() {
    let fake = public_drift();
    let app = App::new(config(&[]), &fake, &fake, &fake);
    let response = app
        .handle(sample("put-key-policy-replica-id.json"))
        .await
        .unwrap();
    assert!(response.get("findings").is_none());
    assert_eq!(fake.count("BatchImportFindings"), 0);
}

#[tokio::test]
async fn a_config_invocation_evaluates_a_drifted_replica_and_never_writes_even_in_enforce() {
    let fake = public_drift();
    let app = App::new(config(ENFORCE), &fake, &fake, &fake)
        .with_findings(Some(&fake))
        .with_evaluations(Some(&fake));
    let response = app.handle(config_change("us-west-2")).await.unwrap();
    assert_eq!(response["put"], 1, "{response:#}");
    assert_eq!(
        fake.count("PutKeyPolicy"),
        0,
        "a Config invocation never writes"
    );
    assert_eq!(fake.count("BatchImportFindings"), 0);
    let (account, region, token, e) = fake.evaluations.lock().unwrap().pop().unwrap();
    assert_eq!(
        (account.as_str(), region.as_str(), token.as_str()),
        ("111122223333", "us-west-2", "TESTMODE")
    );
    assert_eq!(e.compliance, ConfigCompliance::NonCompliant);
    assert!(
        e.annotation
            .as_deref()
            .unwrap()
            .starts_with("public: * gains kms:Decrypt")
    );
}

#[tokio::test]
async fn a_config_invocation_for_the_primary_is_not_applicable_and_a_scheduled_one_covers_every_replica()
 {
    let fake = public_drift();
    let app = App::new(config(&[]), &fake, &fake, &fake).with_evaluations(Some(&fake));
    app.handle(config_change("us-east-1")).await.unwrap();
    let (_, _, _, e) = fake.evaluations.lock().unwrap().pop().unwrap();
    assert_eq!(e.compliance, ConfigCompliance::NotApplicable);
    assert!(e.annotation.unwrap().contains("primary"));

    app.handle(sample("config-rule-scheduled.json"))
        .await
        .unwrap();
    let all = fake.evaluations.lock().unwrap().clone();
    let west: Vec<_> = all
        .iter()
        .filter(|(_, r, _, _)| r.as_str() == "us-west-2")
        .map(|(_, _, _, e)| e.compliance)
        .collect();
    assert_eq!(west, [ConfigCompliance::NonCompliant], "{all:?}");
    assert_eq!(fake.count("PutKeyPolicy"), 0);
}

#[tokio::test]
async fn an_evaluation_that_config_does_not_take_fails_the_invocation_and_is_counted() {
    let fake = public_drift();
    fake.failures
        .lock()
        .unwrap()
        .insert("PutEvaluations", vec![ErrorKind::AccessDenied]);
    let app = App::new(config(&[]), &fake, &fake, &fake).with_evaluations(Some(&fake));
    let e = app.handle(config_change("us-west-2")).await.unwrap_err();
    assert_eq!(e.error_type(), "NonRetryable.EvaluationFailure");
    let published = fake.published.lock().unwrap();
    assert!(
        published[0]
            .1
            .iter()
            .any(|d| d.metric.name() == "EvaluationsNotPut" && d.value == 1.0)
    );
}

#[tokio::test]
async fn a_config_invocation_from_an_account_the_function_may_not_enter_is_refused_without_a_call()
{
    let fake = public_drift();
    let app = App::new(
        config(&[
            ("AWS_REGION", "us-east-1"),
            (
                "REMEDIATOR_ROLE_ARN",
                "arn:aws:iam::111122223333:role/guard",
            ),
        ]),
        &fake,
        &fake,
        &fake,
    )
    .with_evaluations(Some(&fake));
    let text = serde_json::to_string(&config_change("us-west-2"))
        .unwrap()
        .replace("111122223333", "999988887777");
    let e = app
        .handle(serde_json::from_str(&text).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "NonRetryable.MalformedEvent", "{e}");
    assert!(e.to_string().contains("999988887777"), "{e}");
    assert!(fake.operations().is_empty(), "{:?}", fake.operations());
}
