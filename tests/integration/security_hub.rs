//! Findings where security teams look, made by the detector function: Security Hub on moto's
//! server (read back with GetFindings), KMS and STS on LocalStack, the functions' calls
//! through the routed proxy; and the AWS Config rule, whose PutEvaluations the proxy records
//! and answers (LocalStack's Config, moto's, takes only `TestMode=true` and stores nothing).
//! Keys live in ap-northeast-3, which no other test uses.
//!
//! moto keeps the findings of callers it did not issue credentials to in one account, and
//! does not check `AwsAccountId` against the caller: the proxy holds BatchImportFindings to
//! AWS's rule and says which account each import was made as.

use aws_config::{Region as SdkRegion, SdkConfig};
use aws_sdk_kms::config::Credentials;
use aws_sdk_securityhub::types::AwsSecurityFinding;
use kms_replica_guard::config::Config;
use kms_replica_guard::lambda::InvocationError;
use kms_replica_guard::wiring::{Adapters, AwsDetector};
use krg_engine::findings::GENERATOR_ID;
use krg_engine::key::KeyArn;
use krg_engine::outcome::{DriftNote, Outcome, Report, Severity, Status};
use krg_policy::equivalent;
use krg_testkit::proxy::{Fault, FaultProxy};
use serde_json::{Value, json};

use crate::faults::through;
use crate::helpers::*;

const REGION: &str = "ap-northeast-3";
const MEMBER: &str = "222233334444";
const MEMBER_ROLE: &str = "kms-replica-guard-member";
const READ_ROLE: &str = "kms-replica-guard-detector";

/// A policy that lets everyone decrypt (a public drift).
fn public(account: &str) -> String {
    DEFAULT_STYLE_POLICY.replace(ACCOUNT, account).replace(
        r#"    }
  ]"#,
        r#"    },
    {"Sid": "Open", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"}
  ]"#,
    )
}

/// A proxy in front of LocalStack that sends Security Hub to moto's server, and the
/// function's Security Hub client pointed at it.
async fn routed() -> FaultProxy {
    let proxy = FaultProxy::start_routed(
        endpoint(),
        vec![("securityhub".to_owned(), moto_endpoint())],
    )
    .await;
    // SAFETY: each test runs in its own process (nextest); set before any client is built.
    unsafe { std::env::set_var("AWS_ENDPOINT_URL_SECURITYHUB", &proxy.endpoint) };
    proxy.strict_security_hub();
    proxy
}

/// The configuration of `vars_over` over the baseline, Security Hub on.
fn configured(
    vars_over: &[(&str, &str)],
) -> Result<Config, kms_replica_guard::config::ConfigError> {
    let mut all = vec![("BASELINE_SOURCE", BASELINE), ("SECURITY_HUB", "on")];
    all.extend_from_slice(vars_over);
    Config::from_lookup(vars(&all))
}

/// The detector function (`vars` over Security Hub on), its calls through `proxy`.
async fn detector(proxy: &FaultProxy, vars_over: &[(&str, &str)]) -> AwsDetector {
    let config = configured(vars_over);
    let sdk = through(proxy).await;
    Adapters::detector(&sdk, config)
}

async fn detect(detector: &AwsDetector, payload: Value) -> Result<Value, InvocationError> {
    detector.handle(payload).await
}

/// Security Hub on moto's server itself (never through a proxy) as `account` sees it in
/// [`REGION`], Security Hub enabled.
async fn hub_as(account: &str) -> aws_sdk_securityhub::Client {
    hub_in(account, REGION).await
}

/// The same in `region`.
async fn hub_in(account: &str, region: &str) -> aws_sdk_securityhub::Client {
    assert_moto_running();
    let conf = krg_aws::clients::sdk_defaults()
        .region(SdkRegion::new(region.to_owned()))
        .credentials_provider(Credentials::new(account, "test", None, None, "test"))
        .load()
        .await;
    let client = aws_sdk_securityhub::Client::from_conf(
        aws_sdk_securityhub::config::Builder::from(&conf)
            .endpoint_url(moto_endpoint_direct())
            .build(),
    );
    // Already enabled is fine: moto keeps one hub per account and Region.
    let _ = client.enable_security_hub().send().await;
    client
}

/// Every finding of the guard about `key` that `account` sees (all pages). Read on a thread
/// with a large stack: a debug build's GetFindings deserialiser (every ASFF resource type)
/// needs more than a test thread's 2 MiB.
async fn findings_of(account: &str, key: &KeyArn) -> Vec<AwsSecurityFinding> {
    let (account, key) = (account.to_owned(), key.clone());
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(read_findings(&account, &key))
        })
        .unwrap()
        .join()
        .unwrap()
}

async fn read_findings(account: &str, key: &KeyArn) -> Vec<AwsSecurityFinding> {
    let client = hub_in(account, key.region().as_str()).await;
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .get_findings()
            .set_next_token(token.take())
            .max_results(100)
            .send()
            .await
            .expect("GetFindings");
        out.extend(page.findings().iter().cloned());
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    out.into_iter()
        .filter(|f| {
            f.generator_id() == Some(GENERATOR_ID)
                && f.resources().iter().any(|r| r.id() == Some(key.as_str()))
        })
        .collect()
}

/// A key family of the member account with its [`REGION`] replica opened to everyone.
async fn public_drift_in_member() -> (Family, KeyArn) {
    sdk().await;
    let member_sdk: SdkConfig = krg_aws::clients::sdk_defaults()
        .region(SdkRegion::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new(MEMBER, "test", None, None, "test"))
        .load()
        .await;
    let family = create_family(
        &member_sdk,
        &DEFAULT_STYLE_POLICY.replace(ACCOUNT, MEMBER),
        &[REGION],
    )
    .await;
    let replica = family.replica(REGION).clone();
    put_policy(&member_sdk, &replica, &public(MEMBER)).await;
    (family, replica)
}

/// A finding's state as an analyst reads it: (severity label, compliance status, record state).
fn state(f: &AwsSecurityFinding) -> (&str, &str, &str) {
    (
        f.severity()
            .and_then(|s| s.label())
            .map_or("", |l| l.as_str()),
        f.compliance()
            .and_then(|c| c.status())
            .map_or("", |s| s.as_str()),
        f.record_state().map_or("", |s| s.as_str()),
    )
}

/// The sample PutKeyPolicy event for `key_id`'s replica in [`REGION`].
fn put_key_policy(key_id: &str) -> Value {
    let text = event("put-key-policy-replica-id.json", key_id).to_string();
    serde_json::from_str(&text.replace("us-west-2", REGION)).unwrap()
}

#[tokio::test]
async fn a_public_drift_is_one_critical_failed_finding_updated_in_place_and_passed_once_healed() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &[REGION]).await;
    let replica = family.replica(REGION).clone();
    put_policy(&sdk, &replica, &public(ACCOUNT)).await;
    let proxy = routed().await;
    hub_as(ACCOUNT).await;

    let detector = detector(&proxy, &[("REMEDIATION_MODE", "enforce")]).await;
    for _ in 0..2 {
        let response = detect(&detector, put_key_policy(family.key_id()))
            .await
            .expect("evaluated");
        assert_eq!(response["findings"]["imported"], 1, "{response:#}");
    }
    let found = findings_of(ACCOUNT, &replica).await;
    assert_eq!(found.len(), 1, "a re-run updates the finding: {found:#?}");
    let f = &found[0];
    assert_eq!(f.aws_account_id(), Some(ACCOUNT));
    assert_eq!(f.schema_version(), Some("2018-10-08"));
    assert_eq!(
        f.product_arn(),
        Some(format!("arn:aws:securityhub:{REGION}:{ACCOUNT}:product/{ACCOUNT}/default").as_str())
    );
    assert_eq!(state(f), ("CRITICAL", "FAILED", "ACTIVE"));
    let title = f.title().unwrap();
    assert!(
        title.starts_with(&format!(
            "{REGION} replica of {}: * gains kms:Decrypt",
            family.key_id()
        )),
        "{title}"
    );
    let resource = &f.resources()[0];
    assert_eq!(resource.r#type(), Some("AwsKmsKey"));
    assert_eq!(resource.region(), Some(REGION));
    let details = resource.details().and_then(|d| d.aws_kms_key()).unwrap();
    assert_eq!(details.key_id(), Some(family.key_id()));
    assert_eq!(details.key_manager(), Some("CUSTOMER"));
    let fields = f.product_fields().unwrap();
    assert!(
        fields["kms-replica-guard/actor"].contains("alice"),
        "{fields:?}"
    );
    assert!(fields.contains_key("kms-replica-guard/diff"));

    assert_eq!(
        proxy.forwarded("PutKeyPolicy"),
        0,
        "the detector never writes"
    );

    // The remediator heals and publishes; the notification, as EventBridge routes it, makes
    // the detector read the key again.
    let routed = RoutedQueue::create(
        &sdk,
        &format!("krg-detector-{}", family.key_id().replace("mrk-", "")),
        json!({
            "source": ["kms-replica-guard"],
            "detail-type": ["Replica Key Policy Remediated"],
            "resources": [replica.as_str()],
        }),
    )
    .await;
    let config = configured(&[("REMEDIATION_MODE", "enforce"), ("SECURITY_HUB", "off")]);
    let remediator = Adapters::new(&through(&proxy).await, config.as_ref().ok()).app(config);
    let response = remediator
        .handle(put_key_policy(family.key_id()))
        .await
        .expect("healed");
    assert_eq!(
        response["outcomes"][0]["action"], "remediated",
        "{response:#}"
    );
    assert!(response.get("findings").is_none(), "{response:#}");
    let delivered = routed.receive_one().await;
    assert_eq!(delivered["detail-type"], "Replica Key Policy Remediated");
    let response = detect(&detector, delivered).await.expect("evaluated");
    assert_eq!(response["findings"]["imported"], 1, "{response:#}");
    let found = findings_of(ACCOUNT, &replica).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(state(&found[0]).1, "PASSED");
    assert_eq!(state(&found[0]).2, "ARCHIVED");
    assert_eq!(proxy.security_hub_refused(), 0);
}

#[tokio::test]
async fn a_member_accounts_finding_is_imported_with_that_accounts_credentials() {
    let (family, replica) = public_drift_in_member().await;
    let proxy = routed().await;
    hub_as(MEMBER).await;

    // The rule is real: the hub's own credentials may not import the member's finding.
    let mut sneaky = Report::default();
    sneaky.outcomes.push(
        Outcome::new(&replica, Status::DriftDetected(DriftNote::DryRun))
            .with_drift("d".into(), None),
    );
    let doc = krg_aws::securityhub::asff(&sneaky.findings(std::time::SystemTime::now())[0]);
    let as_hub = krg_aws::clients::sdk_defaults()
        .region(SdkRegion::new(REGION))
        .endpoint_url(&proxy.endpoint)
        .credentials_provider(Credentials::new(ACCOUNT, "test", None, None, "test"))
        .load()
        .await;
    let refused = aws_sdk_securityhub::Client::new(&as_hub)
        .batch_import_findings()
        .findings(doc)
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(proxy.security_hub_refused(), 1);

    let text = event("put-key-policy-member-account.json", family.key_id())
        .to_string()
        .replace("444455556666", MEMBER)
        .replace("us-west-2", REGION);
    // The detector enters the member account through the read-only role; the writer role
    // stays the one the lockout check is about.
    proxy.keep_bodies("AssumeRole");
    let app = detector(
        &proxy,
        &[
            ("MEMBER_ROLE_NAME", MEMBER_ROLE),
            ("MEMBER_READ_ROLE_NAME", READ_ROLE),
            ("MEMBER_ACCOUNTS", MEMBER),
        ],
    )
    .await;
    let response = detect(&app, serde_json::from_str(&text).unwrap())
        .await
        .expect("evaluated");
    assert_eq!(response["findings"]["imported"], 1, "{response:#}");
    assert_eq!(proxy.security_hub_refused(), 1, "no further refusal");
    assert_eq!(
        proxy.security_hub_callers(),
        [MEMBER],
        "imported as the member account, through the member role"
    );
    let found = findings_of(MEMBER, &replica).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].aws_account_id(), Some(MEMBER));
    let assumed = proxy.bodies("AssumeRole");
    assert!(!assumed.is_empty());
    for body in &assumed {
        let form = body.as_str().unwrap_or_default();
        assert!(
            form.contains(&format!(
                "RoleArn=arn%3Aaws%3Aiam%3A%3A{MEMBER}%3Arole%2F{READ_ROLE}"
            )),
            "only the read-only role is assumed: {form}"
        );
    }
}

#[tokio::test]
async fn a_hundred_and_fifty_findings_are_imported_in_two_calls() {
    sdk().await;
    let proxy = routed().await;
    hub_as(ACCOUNT).await;
    let conf = through(&proxy).await;
    let sink = krg_aws::securityhub::SecurityHub::new(krg_aws::clients::AccountClients::new(
        &conf,
        None,
        aws_sdk_securityhub::Client::new,
    ));
    let run = std::process::id();
    let mut report = Report::default();
    for i in 0..150 {
        let key: KeyArn = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-{run:08x}{i:024x}")
            .parse()
            .unwrap();
        let exposure = krg_engine::outcome::Exposure {
            severity: Severity::Access,
            gains: vec![krg_engine::outcome::Access {
                principal: format!("arn:aws:iam::{ACCOUNT}:role/app"),
                actions: vec!["kms:Decrypt".into()],
                when: None,
            }],
            losses: Vec::new(),
        };
        report.outcomes.push(
            Outcome::new(&key, Status::DriftDetected(DriftNote::DryRun))
                .with_drift("d".into(), Some(exposure)),
        );
    }
    let (answer, not_imported) =
        kms_replica_guard::lambda::detector::import_findings(&sink, &report)
            .await
            .unwrap();
    assert!(not_imported.is_none(), "{answer:?}");
    assert_eq!(answer.imported, 150);
    assert_eq!(proxy.forwarded("BatchImportFindings"), 2);
    let last = &report.outcomes[149].key_arn;
    let found = findings_of(ACCOUNT, last).await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0]
            .severity()
            .and_then(|s| s.label())
            .map(|l| l.as_str()),
        Some("MEDIUM")
    );
}

#[tokio::test]
async fn a_security_hub_outage_is_counted_and_fails_the_detector_retryably_while_the_fix_stands() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &[REGION]).await;
    let replica = family.replica(REGION).clone();
    put_policy(&sdk, &replica, &public(ACCOUNT)).await;
    let proxy = routed().await;
    proxy.inject("BatchImportFindings", Fault::ServerError, 10);
    let ns = namespace("security-hub-outage");
    let config = configured(&[("REMEDIATION_MODE", "enforce"), ("METRICS_NAMESPACE", &ns)]);
    let remediator = Adapters::new(&through(&proxy).await, config.as_ref().ok()).app(config);
    let detector = detector(&proxy, &[("METRICS_NAMESPACE", &ns)]).await;

    let drifted = detect(&detector, put_key_policy(family.key_id()))
        .await
        .unwrap_err();
    assert_eq!(
        drifted.error_type(),
        "Retryable.FindingsNotImported",
        "{drifted}"
    );
    let response = remediator
        .handle(put_key_policy(family.key_id()))
        .await
        .expect("the remediator never waits on Security Hub");
    assert_eq!(
        response["outcomes"][0]["action"], "remediated",
        "{response:#}"
    );
    assert!(
        equivalent(
            &get_policy(&sdk, &replica).await,
            &rendered_baseline(&replica)
        )
        .unwrap(),
        "healed whatever Security Hub said"
    );
    assert_eq!(metric_sum(&sdk, &ns, "FindingsNotImported").await, 1.0);
}

#[tokio::test]
async fn a_config_rule_invocation_evaluates_without_writing_and_answers_with_its_token() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &[REGION]).await;
    let replica = family.replica(REGION).clone();
    put_policy(&sdk, &replica, &public(ACCOUNT)).await;
    let proxy = FaultProxy::start(endpoint()).await;
    proxy.keep_bodies("PutEvaluations");
    proxy.inject(
        "PutEvaluations",
        Fault::Respond(r#"{"FailedEvaluations":[]}"#.into()),
        2,
    );
    // Enforce configured: a Config invocation still never writes.
    let app = detector(
        &proxy,
        &[("REMEDIATION_MODE", "enforce"), ("SECURITY_HUB", "off")],
    )
    .await;
    let invocation = |key: &KeyArn, token: &str| -> Value {
        let text = std::fs::read_to_string(format!(
            "{}/events/config-rule-change.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .replace(SAMPLE_KEY_ID, key.key_id())
        .replace("us-west-2", key.region().as_str())
        .replace("TESTMODE", token);
        serde_json::from_str(&text).unwrap()
    };
    let token = "eyJyZXN1bHRUb2tlbiI6ICJhIHJlYWwgb25lIn0=";
    detect(&app, invocation(&replica, token))
        .await
        .expect("answered");
    detect(&app, invocation(&family.primary, token))
        .await
        .expect("answered");
    assert_eq!(
        proxy.forwarded("PutKeyPolicy"),
        0,
        "a Config invocation never writes"
    );
    assert!(
        !equivalent(
            &get_policy(&sdk, &replica).await,
            &rendered_baseline(&replica)
        )
        .unwrap(),
        "still drifted"
    );
    let sent = proxy.bodies("PutEvaluations");
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let replica_answer = &sent[0];
    assert_eq!(replica_answer["ResultToken"], token);
    assert!(replica_answer.get("TestMode").is_none(), "{replica_answer}");
    let e = &replica_answer["Evaluations"][0];
    assert_eq!(e["ComplianceResourceType"], "AWS::KMS::Key");
    assert_eq!(e["ComplianceResourceId"], family.key_id());
    assert_eq!(e["ComplianceType"], "NON_COMPLIANT");
    let annotation = e["Annotation"].as_str().unwrap();
    assert!(
        annotation.starts_with("public: * gains kms:Decrypt"),
        "{annotation}"
    );
    assert!(annotation.chars().count() <= 256);
    assert!(e["OrderingTimestamp"].is_number(), "{e}");
    assert_eq!(
        sent[1]["Evaluations"][0]["ComplianceType"],
        "NOT_APPLICABLE"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_clis_check_and_sweep_post_findings_and_a_key_fixed_by_hand_is_passed() {
    // A Region of its own: the sweep below imports a finding for every replica there.
    const CLI_REGION: &str = "ap-southeast-3";
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &[CLI_REGION]).await;
    let replica = family.replica(CLI_REGION).clone();
    put_policy(&sdk, &replica, &public(ACCOUNT)).await;
    hub_in(ACCOUNT, CLI_REGION).await;
    let moto = moto_endpoint_direct();
    let envs = [
        ("BASELINE_SOURCE", BASELINE),
        ("SECURITY_HUB", "on"),
        ("AWS_ENDPOINT_URL_SECURITYHUB", moto.as_str()),
    ];

    let (code, _, err) = cli_at(&endpoint(), &envs, &["check", replica.as_str()]);
    assert_eq!(code, 1, "a drift left in place: {err}");
    assert!(err.contains("Security Hub: 1 finding(s) imported"), "{err}");
    let found = findings_of(ACCOUNT, &replica).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(state(&found[0]), ("CRITICAL", "FAILED", "ACTIVE"));
    assert!(
        equivalent(&get_policy(&sdk, &replica).await, &public(ACCOUNT)).unwrap(),
        "check never writes"
    );

    // Fixed by hand; an operator's sweep refreshes the fleet's findings.
    put_policy(&sdk, &replica, &rendered_baseline(&replica)).await;
    let (_, out, err) = cli_at(&endpoint(), &envs, &["sweep", "--regions", CLI_REGION]);
    assert!(err.contains("finding(s) imported"), "{err}\n{out}");
    let found = findings_of(ACCOUNT, &replica).await;
    assert_eq!(found.len(), 1, "the same finding, updated: {found:#?}");
    assert_eq!(state(&found[0]), ("INFORMATIONAL", "PASSED", "ARCHIVED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_imports_a_member_accounts_finding_through_the_read_only_role() {
    let (_, replica) = public_drift_in_member().await;
    let proxy = routed().await;
    proxy.keep_bodies("AssumeRole");
    hub_as(MEMBER).await;

    // KMS through the writer member role (the CLI may --apply); the finding through the
    // read-only role, which holds securityhub:BatchImportFindings in the member stack.
    let envs = [
        ("BASELINE_SOURCE", BASELINE),
        ("SECURITY_HUB", "on"),
        ("MEMBER_ROLE_NAME", MEMBER_ROLE),
        ("MEMBER_READ_ROLE_NAME", READ_ROLE),
        ("MEMBER_ACCOUNTS", MEMBER),
        ("AWS_ENDPOINT_URL_SECURITYHUB", proxy.endpoint.as_str()),
    ];
    let (code, _, err) = cli_at(&proxy.endpoint, &envs, &["check", replica.as_str()]);
    assert_eq!(code, 1, "a drift left in place: {err}");
    assert!(err.contains("Security Hub: 1 finding(s) imported"), "{err}");
    assert_eq!(proxy.security_hub_refused(), 0);
    assert_eq!(proxy.security_hub_callers(), [MEMBER]);
    let roles: Vec<String> = proxy
        .bodies("AssumeRole")
        .iter()
        .filter_map(|b| b.as_str().map(str::to_owned))
        .collect();
    let assumed = |role: &str| {
        roles.iter().any(|f| {
            f.contains(&format!(
                "RoleArn=arn%3Aaws%3Aiam%3A%3A{MEMBER}%3Arole%2F{role}"
            ))
        })
    };
    assert!(assumed(MEMBER_ROLE) && assumed(READ_ROLE), "{roles:?}");
    let found = findings_of(MEMBER, &replica).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(state(&found[0]), ("CRITICAL", "FAILED", "ACTIVE"));
}
