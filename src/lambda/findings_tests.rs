//! Security Hub findings and AWS Config answers of the detector, over the in-memory fake.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::App;
use super::detector::Detector;
use super::fakes::{Fakes, fakes};
use crate::config::{Config, ConfigError};
use krg_engine::error::ErrorKind;
use krg_engine::fake::FakeAws as Fake;
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

type FakeDetector<'a> = Detector<Fakes<'a>>;

/// The detector over `fake`, Security Hub on (`findings`) or off.
fn detector<'a>(fake: &'a Fake, vars: &[(&str, &str)], findings: bool) -> FakeDetector<'a> {
    Detector::new(
        config(vars),
        fake,
        fake,
        fake,
        fake,
        findings.then_some(fake),
        fake,
    )
}

/// Each notification of the remediator's response as EventBridge delivers it to the
/// detector's rule.
fn delivered(app: &App<Fakes<'_>>, response: &Value) -> Vec<Value> {
    let _ = app;
    response["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["action"] == "remediated")
        .map(|o| {
            json!({
                "version": "0",
                "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
                "detail-type": "Replica Key Policy Remediated",
                "source": "kms-replica-guard",
                "account": "111122223333",
                "time": "2026-12-07T10:00:00Z",
                "region": "us-east-1",
                "resources": [o["key_arn"]],
                "detail": o,
            })
        })
        .collect()
}

#[tokio::test]
async fn a_public_drift_is_a_critical_failed_finding_and_the_remediators_heal_turns_it_passed() {
    let fake = public_drift();
    let detector = detector(&fake, ENFORCE, true);
    let response = detector
        .handle(sample("put-key-policy-replica-id.json"))
        .await
        .unwrap();
    assert_eq!(response["findings"]["imported"], 1, "{response:#}");
    assert_eq!(fake.count("PutKeyPolicy"), 0, "the detector never writes");
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

    // The remediator heals and tells; the detector reads the key again.
    let remediator = App::new(config(ENFORCE), fakes(&fake));
    let fixed = remediator
        .handle(sample("put-key-policy-replica-id.json"))
        .await
        .unwrap();
    assert!(
        fixed.get("findings").is_none(),
        "the remediator imports none"
    );
    assert_eq!(fake.count("BatchImportFindings"), 1);
    let news = delivered(&remediator, &fixed);
    assert_eq!(news.len(), 1, "{fixed:#}");
    let response = detector.handle(news[0].clone()).await.unwrap();
    assert_eq!(response["findings"]["imported"], 1, "{response:#}");
    let healed = fake.findings.lock().unwrap().pop().unwrap();
    assert_eq!(healed.id, f.id, "the same finding, updated");
    assert_eq!(healed.compliance, Compliance::Passed);
}

#[tokio::test]
async fn a_forged_notification_is_not_believed_the_key_is_read_again() {
    let fake = public_drift();
    let detector = detector(&fake, &[("SECURITY_HUB", "on")], true);
    // "Remediated", says the event; the replica is still public.
    let forged = json!({
        "version": "0", "id": "forged", "detail-type": "Replica Key Policy Remediated",
        "source": "kms-replica-guard", "account": "111122223333", "time": "2026-12-07T10:00:00Z",
        "region": "us-east-1", "resources": [arn("us-west-2").as_str()],
        "detail": {"action": "remediated", "actor": {"arn": "arn:aws:iam::111122223333:user/nobody"}},
    });
    detector.handle(forged).await.unwrap();
    let f = fake.findings.lock().unwrap().pop().unwrap();
    assert_eq!(
        (f.compliance, f.label),
        (Compliance::Failed, Label::Critical)
    );
    assert_eq!(fake.count("GetKeyPolicy"), 2, "{:?}", fake.operations());

    for (bad, field) in [
        (json!([]), "resources"),
        (
            json!([
                "arn:aws:kms:us-west-2:111122223333:key/x",
                "arn:aws:kms:us-west-2:111122223333:key/y"
            ]),
            "resources",
        ),
        (json!(["arn:aws:s3:::bucket"]), "resources[0]"),
    ] {
        let e = detector
            .handle(json!({
                "version": "0", "id": "x", "detail-type": "Replica Key Policy Drift Detected",
                "source": "kms-replica-guard", "account": "111122223333",
                "time": "2026-12-07T10:00:00Z", "region": "us-east-1", "resources": bad, "detail": {},
            }))
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), "NonRetryable.MalformedEvent", "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
    assert_eq!(fake.count("PutKeyPolicy"), 0);
}

#[tokio::test]
async fn the_detector_publishes_none_of_the_remediators_metrics() {
    let fake = public_drift();
    let detector = detector(&fake, ENFORCE, true);
    detector
        .handle(sample("put-key-policy-replica-id.json"))
        .await
        .unwrap();
    assert!(
        fake.published.lock().unwrap().is_empty(),
        "no DriftDetected, no EnforceMode from a dry-run that is not the guard's: {:?}",
        fake.published.lock().unwrap()
    );
}

#[tokio::test]
async fn a_security_hub_outage_is_counted_and_retried_when_it_may_pass() {
    let fake = public_drift();
    fake.failures
        .lock()
        .unwrap()
        .insert("BatchImportFindings", vec![ErrorKind::Transient]);
    let detector = detector(&fake, ENFORCE, true);
    let e = detector
        .handle(sample("put-key-policy-replica-id.json"))
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "Retryable.FindingsNotImported", "{e}");
    assert_eq!(fake.count("PutKeyPolicy"), 0);
    let counted: Vec<_> = fake.published.lock().unwrap()[0]
        .1
        .iter()
        .map(|d| (d.metric.name(), d.value))
        .collect();
    assert_eq!(counted, [("FindingsNotImported", 1.0)]);

    // Security Hub not enabled there: counted, and a retry cannot help.
    fake.failures
        .lock()
        .unwrap()
        .insert("BatchImportFindings", vec![ErrorKind::AccessDenied]);
    let response = detector
        .handle(sample("put-key-policy-replica-id.json"))
        .await
        .expect("a refusal that cannot pass is not retried");
    assert_eq!(response["findings"]["not_imported"], 1, "{response:#}");
    assert_eq!(fake.published.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn without_security_hub_on_no_finding_is_made() {
    let fake = public_drift();
    let app = detector(&fake, &[], false);
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
    let app = detector(&fake, ENFORCE, true);
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
    let app = detector(&fake, &[], false);
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
    let app = detector(&fake, &[], false);
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
    let app = detector(
        &fake,
        &[
            ("AWS_REGION", "us-east-1"),
            (
                "REMEDIATOR_ROLE_ARN",
                "arn:aws:iam::111122223333:role/guard",
            ),
        ],
        false,
    );
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

#[tokio::test]
async fn a_config_invocation_that_reaches_the_remediator_is_refused_by_name_without_a_call() {
    let fake = public_drift();
    let app = App::new(config(ENFORCE), fakes(&fake));
    let e = app.handle(config_change("us-west-2")).await.unwrap_err();
    assert_eq!(e.error_type(), "NonRetryable.Misrouted");
    assert!(e.to_string().contains("detector function"), "{e}");
    assert!(fake.operations().is_empty(), "{:?}", fake.operations());
}

#[tokio::test]
async fn the_sample_notification_is_evaluated_by_the_detector_and_ignored_by_the_remediator() {
    let fake = public_drift();
    let notification = sample("drift-notification-remediated.json");
    let remediator = App::new(config(ENFORCE), fakes(&fake));
    let response = remediator.handle(notification.clone()).await.unwrap();
    assert!(fake.operations().is_empty(), "{response:#}");

    let detector = detector(&fake, &[("SECURITY_HUB", "on")], true);
    let response = detector.handle(notification).await.unwrap();
    assert_eq!(response["findings"]["imported"], 1, "{response:#}");
    let f = fake.findings.lock().unwrap().pop().unwrap();
    assert_eq!(f.key_arn, arn("us-west-2"));
    assert_eq!(
        f.compliance,
        Compliance::Failed,
        "still public, whatever the event says"
    );
    assert!(
        f.fields["kms-replica-guard/actor"].contains("alice"),
        "{:?}",
        f.fields
    );
}
