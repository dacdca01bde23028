//! A hub and member accounts on the emulator: three accounts (a 12-digit access key selects
//! the account; STS AssumeRole into another account returns credentials that see only that
//! account's keys). The hub is 111122223333, the member 222233334444, and 333344445555 is an
//! account the hub must leave alone. The function's calls go through the fault proxy, which
//! counts AssumeRole and can refuse it as STS does.

use std::time::Duration;

use aws_config::{Region as SdkRegion, SdkConfig};
use aws_sdk_kms::config::Credentials;
use kms_replica_guard::config::Config;
use kms_replica_guard::wiring::{Adapters, AwsApp};
use krg_policy::equivalent;
use krg_testkit::proxy::{Fault, FaultProxy};
use serde_json::{Value, json};

use crate::faults::through;
use crate::helpers::*;

const MEMBER: &str = "222233334444";
const OUTSIDER: &str = "333344445555";
const MEMBER_ROLE: &str = "kms-replica-guard-member";

/// The emulator as another account sees it.
async fn sdk_as(account: &str) -> SdkConfig {
    sdk().await;
    krg_aws::clients::sdk_defaults()
        .region(SdkRegion::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new(account, "test", None, None, "test"))
        .load()
        .await
}

/// The hub function (enforcing `BASELINE`) with `vars`, its calls through `proxy`.
async fn hub(proxy: &FaultProxy, vars_over: &[(&str, &str)]) -> AwsApp {
    let mut all = vec![
        ("REMEDIATION_MODE", "enforce"),
        ("BASELINE_SOURCE", BASELINE),
        ("MEMBER_ROLE_NAME", MEMBER_ROLE),
        ("MEMBER_ACCOUNTS", MEMBER),
    ];
    all.extend_from_slice(vars_over);
    let config = Config::from_lookup(vars(&all));
    let sdk = through(proxy).await;
    Adapters::new(&sdk, config.as_ref().ok()).app(config)
}

/// The sample member-account event, for `account`'s copy of `key_id`.
fn member_event(account: &str, key_id: &str) -> Value {
    let text = event("put-key-policy-member-account.json", key_id).to_string();
    serde_json::from_str(&text.replace("444455556666", account)).unwrap()
}

/// A drifted (default-policy) replica in us-west-2 of each of these accounts.
async fn families(accounts: &[&str]) -> Vec<(SdkConfig, Family)> {
    families_in(accounts, "us-west-2").await
}

/// A drifted (default-policy) replica in `region` of each of these accounts.
async fn families_in(accounts: &[&str], region: &str) -> Vec<(SdkConfig, Family)> {
    let mut out = Vec::new();
    for account in accounts {
        let sdk = sdk_as(account).await;
        let policy = DEFAULT_STYLE_POLICY.replace(ACCOUNT, account);
        let family = create_family(&sdk, &policy, &[region]).await;
        out.push((sdk, family));
    }
    out
}

#[tokio::test]
async fn a_member_accounts_event_heals_its_replica_through_the_member_role_and_nothing_else() {
    let fams = families(&[ACCOUNT, MEMBER, OUTSIDER]).await;
    let (member_sdk, member) = &fams[1];
    // Each account lists only its own keys (the emulator does not refuse a cross-account
    // DescribeKey by ARN as KMS would; listing is what it scopes per account).
    let listed = kms_in(&sdk().await, "us-west-2")
        .list_keys()
        .limit(1000)
        .send()
        .await
        .expect("ListKeys");
    assert!(
        !listed
            .keys()
            .iter()
            .any(|k| k.key_id() == Some(member.key_id())),
        "the hub's own credentials do not list the member's key"
    );
    let proxy = FaultProxy::start(endpoint()).await;
    let app = hub(&proxy, &[]).await;
    let response = handle(&app, member_event(MEMBER, member.key_id()))
        .await
        .expect("healed");
    let o = &response["outcomes"][0];
    assert_eq!(o["action"], "remediated", "{response:#}");
    assert_eq!(o["account"], MEMBER);
    let replica = member.replica("us-west-2");
    assert!(
        equivalent(
            &get_policy(member_sdk, replica).await,
            &rendered_baseline(replica)
        )
        .unwrap(),
        "the member's replica converged on the baseline rendered for the member account"
    );
    assert_eq!(
        proxy.forwarded("AssumeRole"),
        1,
        "one AssumeRole for the account"
    );
    for (sdk, other) in [&fams[0], &fams[2]] {
        let policy = get_policy(sdk, other.replica("us-west-2")).await;
        assert!(
            !equivalent(&policy, &rendered_baseline(other.replica("us-west-2"))).unwrap(),
            "{} was left alone",
            other.primary.account()
        );
    }
    // The member role's own write, as the member account's CloudTrail records it, is the
    // function's own event: what it wrote is what the guard writes there, so a no-op.
    let mut own = member_event(MEMBER, member.key_id());
    own["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] =
        json!(format!("arn:aws:iam::{MEMBER}:role/{MEMBER_ROLE}"));
    own["detail"]["requestParameters"]["policy"] = json!(rendered_baseline(replica));
    let response = handle(&app, own).await.unwrap();
    assert_eq!(response["outcomes"], json!([]), "{response:#}");
    // A second event in the same account reuses the cached credentials.
    handle(&app, member_event(MEMBER, member.key_id()))
        .await
        .unwrap();
    assert_eq!(
        proxy.forwarded("AssumeRole"),
        1,
        "credentials cached per account"
    );
}

#[tokio::test]
async fn an_account_outside_member_accounts_causes_no_assume_role_and_no_call() {
    let fams = families(&[OUTSIDER]).await;
    let (outsider_sdk, outsider) = &fams[0];
    let proxy = FaultProxy::start(endpoint()).await;
    let ns = namespace("outsider");
    let app = hub(&proxy, &[("METRICS_NAMESPACE", &ns)]).await;
    let response = handle(&app, member_event(OUTSIDER, outsider.key_id()))
        .await
        .expect("a no-op, not a failure");
    let o = &response["outcomes"][0];
    assert_eq!(o["action"], "skipped", "{response:#}");
    assert!(
        o["reason"].as_str().unwrap().contains("MEMBER_ACCOUNTS"),
        "{o}"
    );
    assert_eq!(proxy.forwarded("AssumeRole"), 0);
    let kms_calls: usize = ["DescribeKey", "GetKeyPolicy", "PutKeyPolicy", "ListKeys"]
        .iter()
        .map(|op| proxy.forwarded(op))
        .sum();
    assert_eq!(kms_calls, 0, "no KMS call for the outsider");
    assert_eq!(
        get_policy(outsider_sdk, outsider.replica("us-west-2")).await,
        DEFAULT_STYLE_POLICY.replace(ACCOUNT, OUTSIDER)
    );
    assert_eq!(
        metric_sum(&sdk().await, &ns, "AccountNotAllowed").await,
        1.0
    );
}

#[tokio::test]
async fn a_refused_assume_role_is_a_non_retryable_failure_naming_the_role_and_account() {
    let fams = families(&[MEMBER]).await;
    let (member_sdk, member) = &fams[0];
    let proxy = FaultProxy::start(endpoint()).await;
    proxy.inject("AssumeRole", Fault::AccessDenied, 1);
    let ns = namespace("refused-assume-role");
    let app = hub(&proxy, &[("METRICS_NAMESPACE", &ns)]).await;
    let e = handle(&app, member_event(MEMBER, member.key_id()))
        .await
        .expect_err("the account could not be entered");
    assert_eq!(e.error_type(), "NonRetryable.KeyFailure", "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("arn:aws:iam::{MEMBER}:role/{MEMBER_ROLE}"))
            && text.contains(&format!("account {MEMBER}"))
            && text.contains("member stack"),
        "{text}"
    );
    assert_eq!(
        get_policy(member_sdk, member.replica("us-west-2")).await,
        DEFAULT_STYLE_POLICY.replace(ACCOUNT, MEMBER),
        "nothing written"
    );
    // One AccountNotEntered per PutMetricData that reached CloudWatch: exactly one unless
    // the SDK retried a put whose answer was lost (PutMetricData is not idempotent).
    let puts = proxy.forwarded("PutMetricData");
    assert!(puts >= 1, "the metric was published");
    assert_eq!(
        metric_sum(&sdk().await, &ns, "AccountNotEntered").await,
        puts as f64
    );

    // Throttled: retryable (the SDK's own retries are used up first).
    proxy.inject("AssumeRole", Fault::Throttle, 4);
    let e = handle(&app, member_event(MEMBER, member.key_id()))
        .await
        .expect_err("throttled");
    assert_eq!(e.error_type(), "Retryable.KeyFailure", "{e}");
}

/// The messages on `queue`, as the event-source mapping would hand them to the function.
async fn receive(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    for _ in 0..5 {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        if out.messages().is_empty() && !all.is_empty() {
            break;
        }
        all.extend(out.messages().iter().cloned());
    }
    all
}

fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    json!({"Records": messages.iter().map(|m| json!({
        "messageId": m.message_id().unwrap(),
        "receiptHandle": m.receipt_handle().unwrap(),
        "body": m.body().unwrap(),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": m.md5_of_body().unwrap_or_default(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    })).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_of_three_accounts_goes_through_a_real_queue_and_a_failed_item_is_retried_alone() {
    // Regions no other test, nor the alarms harness (ca-central-1), uses: the sweep reaches
    // every key of the hub account there.
    const REGION: &str = "me-central-1";
    let fams = families_in(&[ACCOUNT, MEMBER, "444455556666"], REGION).await;
    let sdk = sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = format!("krg-sweep-{}", std::process::id());
    let queue = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .unwrap();
    let queue_arn = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}");
    let proxy = FaultProxy::start(endpoint()).await;
    let members = format!("{MEMBER},444455556666");
    let app = hub(
        &proxy,
        &[
            ("MEMBER_ACCOUNTS", &members),
            ("SWEEP_REGIONS", "me-central-1,sa-east-1"),
            ("SWEEP_QUEUE_URL", &queue),
        ],
    )
    .await;

    // The schedule plans: 3 accounts x 2 Regions, nothing else.
    let planned = handle(&app, event("scheduled-sweep.json", "unused"))
        .await
        .expect("planned");
    assert_eq!(planned["planned"], 6, "{planned:#}");
    assert_eq!(
        proxy.forwarded("ListKeys") + proxy.forwarded("AssumeRole"),
        0
    );
    let messages = receive(&sqs, &queue).await;
    let mut places: Vec<String> = messages
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            format!(
                "{}/{}",
                v["sweep"]["account"].as_str().unwrap(),
                v["sweep"]["regions"][0].as_str().unwrap()
            )
        })
        .collect();
    places.sort();
    places.dedup();
    assert_eq!(
        places.len(),
        6,
        "one item per account and Region: {places:?}"
    );

    // The first item's ListKeys fails past the SDK's retries: that item alone is reported.
    proxy.inject("ListKeys", Fault::AccessDenied, 1);
    let answer = handle(&app, sqs_event(&messages, &queue_arn))
        .await
        .unwrap();
    let failures = answer["batchItemFailures"].as_array().unwrap().clone();
    assert_eq!(
        failures,
        vec![json!({"itemIdentifier": messages[0].message_id().unwrap()})],
        "{answer:#}"
    );
    // What the event-source mapping does with the answer: delete the others.
    for m in &messages[1..] {
        sqs.delete_message()
            .queue_url(&queue)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .expect("DeleteMessage");
    }
    let failed: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    for (sdk, family) in &fams {
        let replica = family.replica(REGION);
        let healed =
            equivalent(&get_policy(sdk, replica).await, &rendered_baseline(replica)).unwrap();
        let failed_here = failed["sweep"]["account"] == replica.account().as_str()
            && failed["sweep"]["regions"][0] == REGION;
        assert_eq!(healed, !failed_here, "{replica}: failed item {failed}");
    }
    assert_eq!(
        proxy.forwarded("AssumeRole"),
        2,
        "each member account entered once"
    );

    // SQS redelivers the failed item alone after its visibility timeout; now it succeeds.
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    let again = receive(&sqs, &queue).await;
    assert_eq!(
        again.iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(),
        vec![messages[0].body().unwrap()],
        "only the failed item comes back"
    );
    let answer = handle(&app, sqs_event(&again, &queue_arn)).await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    for (sdk, family) in &fams {
        let replica = family.replica(REGION);
        assert!(
            equivalent(&get_policy(sdk, replica).await, &rendered_baseline(replica)).unwrap(),
            "{replica} healed"
        );
    }
}

#[tokio::test]
async fn the_cli_sweeps_several_member_accounts() {
    const REGION: &str = "ap-northeast-2";
    const SECOND: &str = "555566667777";
    let fams = families_in(&[MEMBER, SECOND], REGION).await;
    let accounts = format!("{MEMBER},{SECOND}");
    let (code, out, err) = cli(&[
        "sweep",
        "--regions",
        REGION,
        "--accounts",
        &accounts,
        "--role-name",
        MEMBER_ROLE,
        "--baseline",
        BASELINE,
        "--apply",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    for account in [MEMBER, SECOND] {
        assert!(
            report["summary_by_account"][account]["remediated"].as_u64() >= Some(1),
            "{account}: {report:#}"
        );
    }
    for (sdk, family) in &fams {
        let replica = family.replica(REGION);
        assert!(
            equivalent(&get_policy(sdk, replica).await, &rendered_baseline(replica)).unwrap(),
            "{replica} healed by the CLI"
        );
    }
    let (code, _, err) = cli(&["sweep", "--regions", REGION, "--role-name", MEMBER_ROLE]);
    assert_eq!(code, 2);
    assert!(err.contains("MEMBER_ACCOUNTS"), "{err}");
}
