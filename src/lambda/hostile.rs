//! The hostile-input corpus in tests/hostile/: every malformed event and every bad baseline
//! gets a clear error naming what is wrong, and nothing is ever written.

use std::path::PathBuf;

use serde_json::Value;

use super::App;
use super::fakes::fakes;
use crate::config::Config;
use krg_engine::fake::{FakeAws, arn};

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hostile")
        .join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn family() -> FakeAws {
    FakeAws::family(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#,
        &["us-west-2"],
    )
}

/// What each hostile event must produce: the words its error (or no-op reason) contains.
fn expectation(name: &str) -> &'static str {
    match name {
        "truncated.json" => "EOF while parsing",
        "not-json.txt" => "expected value",
        "invalid-utf8.json" => "invalid unicode",
        "deeply-nested.json" => "recursion limit exceeded",
        "key-id-is-a-number.json" => "detail.requestParameters.keyId",
        "detail-is-a-string.json" => "field `detail`: invalid type: string",
        "region-is-a-list.json" => "detail.awsRegion",
        "region-with-control-characters.json" => "detail.awsRegion",
        "key-id-path-traversal.json" => "detail.requestParameters.keyId",
        "unknown-event-name.json" => "DeleteEverything is not a trigger",
        "sweep-regions-not-a-list.json" => "sweep.regions",
        "sweep-unknown-field.json" => "unknown field `apply`",
        other => panic!("tests/hostile/events/{other} has no expectation; add one"),
    }
}

#[tokio::test]
async fn every_hostile_event_is_rejected_with_a_clear_error_and_writes_nothing() {
    let fake = family();
    let config = Config::from_lookup(|k| (k == "REMEDIATION_MODE").then(|| "enforce".to_owned()));
    let app = App::new(config, fakes(&fake));
    let files = corpus("events");
    assert!(files.len() >= 12, "corpus found: {}", files.len());
    for (name, bytes) in files {
        let want = expectation(&name);
        // The Lambda runtime parses the payload as JSON before the handler sees it.
        let payload: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                assert!(e.to_string().contains(want), "{name}: {e}");
                continue;
            }
        };
        match app.handle(payload).await {
            Err(e) => {
                assert!(e.error_type().starts_with("NonRetryable"), "{name}: {e}");
                assert!(e.to_string().contains(want), "{name}: {e}");
            }
            Ok(response) => {
                assert_eq!(response["outcomes"], serde_json::json!([]), "{name}");
                assert_eq!(name, "unknown-event-name.json", "{name} must be rejected");
            }
        }
    }
    assert_eq!(fake.count("PutKeyPolicy"), 0);
}

/// What each hostile AWS Config invocation's error must name.
fn config_expectation(name: &str) -> &'static str {
    match name {
        "invoking-event-is-an-object.json" => "field `invokingEvent`: invalid type: object",
        "invoking-event-truncated.json" => "field `invokingEvent`: not JSON",
        "no-result-token.json" => "field `resultToken`: missing",
        "result-token-with-control-characters.json" => "field `resultToken`",
        "rule-arn-not-a-config-rule.json" => "field `configRuleArn`",
        "account-is-not-the-rules.json" => "field `accountId`",
        "left-scope-is-a-string.json" => "field `eventLeftScope`: invalid type: string",
        "rule-parameters-not-an-object.json" => "field `ruleParameters`",
        "message-type-unknown.json" => "ConfigurationSnapshotDeliveryCompleted",
        "resource-type-not-a-key.json" => "AWS::S3::Bucket",
        "arn-is-an-alias.json" => "configurationItem.ARN",
        "resource-id-is-another-key.json" => "configurationItem.resourceId",
        "key-in-another-account.json" => "configurationItem.awsAccountId",
        "key-in-another-region.json" => "configurationItem.awsRegion",
        "item-status-unknown.json" => "configurationItem.configurationItemStatus",
        "capture-time-not-a-time.json" => "configurationItem.configurationItemCaptureTime",
        "configuration-item-is-a-list.json" => "invalid type: array",
        "scheduled-for-another-account.json" => "invokingEvent.awsAccountId",
        other => panic!("tests/hostile/config/{other} has no expectation; add one"),
    }
}

#[tokio::test]
async fn every_hostile_config_invocation_is_refused_by_name_and_nothing_is_called() {
    let fake = family();
    let config = Config::from_lookup(|k| (k == "REMEDIATION_MODE").then(|| "enforce".to_owned()));
    let app: super::detector::Detector<super::fakes::Fakes> =
        super::detector::Detector::new(config, &fake, &fake, &fake, &fake, None, &fake);
    let files = corpus("config");
    assert!(files.len() >= 18, "corpus found: {}", files.len());
    for (name, bytes) in files {
        let want = config_expectation(&name);
        let payload: Value = serde_json::from_slice(&bytes).unwrap();
        let e = app
            .handle(payload)
            .await
            .expect_err(&format!("{name} must be refused"));
        assert_eq!(e.error_type(), "NonRetryable.MalformedEvent", "{name}: {e}");
        assert!(e.to_string().contains(want), "{name}: {e}");
    }
    assert!(fake.operations().is_empty(), "{:?}", fake.operations());
}

#[tokio::test]
async fn a_huge_event_is_handled_without_trouble() {
    let fake = family();
    let app = App::new(Config::from_lookup(|_| None), fakes(&fake));
    let path = format!(
        "{}/events/put-key-policy-replica-id.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["detail"]["requestParameters"]["policy"] = Value::String("x".repeat(8 << 20));
    let response = app.handle(event).await.unwrap();
    assert_eq!(
        response["outcomes"][0]["key_arn"],
        arn("us-west-2").as_str()
    );
}

fn baseline_expectation(name: &str) -> &'static str {
    match name {
        "line-separator.json" => "U+2028",
        "emoji.json" => "U+1F510",
        "outside-latin-1.json" => "U+0100",
        "control-character.json" => "U+0007",
        "lockout.json" => "lock out",
        "lockout-by-deny.json" => "lock",
        "statement-without-action.json" => "Action",
        "bad-effect.json" => "Effect",
        "truncated.json" => "JSON",
        "unknown-placeholder.json" => "{{AccountID}}",
        "oversize.json" => "over the KMS limit",
        other => panic!("tests/hostile/baselines/{other} has no expectation; add one"),
    }
}

#[tokio::test]
async fn every_hostile_baseline_is_refused_at_start_up_and_nothing_is_called() {
    let fake = family();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/baselines");
    for (name, _) in corpus("baselines") {
        let source = format!("file:{}", dir.join(&name).display());
        let config = Config::from_lookup(|k| match k {
            "BASELINE_SOURCE" => Some(source.clone()),
            "REMEDIATION_MODE" => Some("enforce".into()),
            "REMEDIATOR_ROLE_ARN" => {
                Some("arn:aws:iam::111122223333:role/kms-replica-guard-remediator".into())
            }
            _ => None,
        });
        let err = config.as_ref().expect_err(&name);
        assert_eq!(err.variable, "BASELINE_SOURCE", "{name}: {err}");
        let want = baseline_expectation(&name);
        assert!(
            err.to_string().contains(want),
            "{name}: want {want:?} in {err}"
        );
        let app = App::new(config, fakes(&fake));
        let path = format!("{}/events/replicate-key.json", env!("CARGO_MANIFEST_DIR"));
        let event = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let e = app.handle(event).await.unwrap_err();
        assert_eq!(e.error_type(), "NonRetryable.ConfigurationError", "{name}");
    }
    assert_eq!(
        fake.calls.lock().unwrap().len(),
        0,
        "no AWS call with a bad baseline"
    );
}
