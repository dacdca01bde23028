//! `doctor` against deployments built on the emulators, through the CLI binary: the function,
//! its event source mapping and its trails on moto's server (LocalStack community runs no
//! Lambda function without Docker and serves no CloudTrail); the rules, the alarms and STS on
//! LocalStack, AssumeRole refusals through the fault proxy. Each test builds its own
//! deployment (function, rules, namespace, Regions), so tests do not see each other.

use aws_config::{Region as SdkRegion, SdkConfig};
use krg_engine::baseline::Template;
use krg_testkit::proxy::{Fault, FaultProxy};
use serde_json::Value;

use super::helpers::*;

/// moto's server keeps everything in this account, whatever the access key.
const HUB_ACCOUNT: &str = "123456789012";
const MEMBERS: &str = "222233334444,333344445555";

/// The KMS triggers as the stacks route them (infra/sam/template.yaml, KmsApiCall).
const PATTERN: &str = r#"{"source":["aws.kms"],"detail-type":["AWS API Call via CloudTrail"],"detail":{"eventSource":["kms.amazonaws.com"],"eventName":["ReplicateKey","CreateKey","PutKeyPolicy","UpdatePrimaryRegion","TagResource","UntagResource"],"errorCode":[{"exists":false}]}}"#;

/// How a test's deployment is broken (everything `true`/`Ok` is a healthy deployment).
struct Shape {
    hub: &'static str,
    spoke: &'static str,
    vars: Vec<(&'static str, String)>,
    hub_trail_logging: bool,
    spoke_trail: bool,
    rule_enabled: bool,
    schedule: bool,
    forwarding: bool,
    mapping_enabled: bool,
    /// A sweep completed (SweepCompleted published) before the alarm was created.
    swept: bool,
    /// us-east-1 forwards the IAM changes of the guard's role to the hub.
    iam_forwarding: bool,
}

impl Shape {
    fn healthy(hub: &'static str, spoke: &'static str) -> Self {
        let baseline = BASELINE.to_owned();
        let digest = Template::new("inline", baseline.clone())
            .expect("the test baseline is a template")
            .sha256()
            .to_owned();
        Self {
            hub,
            spoke,
            vars: vec![
                ("REMEDIATION_MODE", "enforce".into()),
                ("BASELINE_SOURCE", baseline),
                ("BASELINE_SHA256", digest),
                (
                    "REMEDIATOR_ROLE_ARN",
                    format!("arn:aws:iam::{HUB_ACCOUNT}:role/kms-replica-guard-remediator"),
                ),
                ("SWEEP_REGIONS", format!("{hub},{spoke}")),
                ("MEMBER_ROLE_NAME", "kms-replica-guard-member".into()),
                ("MEMBER_ACCOUNTS", MEMBERS.into()),
            ],
            hub_trail_logging: true,
            spoke_trail: true,
            rule_enabled: true,
            schedule: true,
            forwarding: true,
            mapping_enabled: true,
            swept: true,
            iam_forwarding: true,
        }
    }

    fn set(&mut self, name: &'static str, value: Option<&str>) {
        self.vars.retain(|(n, _)| *n != name);
        if let Some(v) = value {
            self.vars.push((name, v.to_owned()));
        }
    }
}

fn moto_in(sdk: &SdkConfig, region: &str) -> SdkConfig {
    sdk.to_builder()
        .region(SdkRegion::new(region.to_owned()))
        .endpoint_url(moto_endpoint())
        .build()
}

fn localstack_in(sdk: &SdkConfig, region: &str) -> SdkConfig {
    sdk.to_builder()
        .region(SdkRegion::new(region.to_owned()))
        .build()
}

/// moto checks that a function's role exists; IAM's client is not otherwise needed by the
/// project, so the one CreateRole is a plain request.
fn create_role(name: &str) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-fsS",
            "-X",
            "POST",
            &format!("{}/", moto_endpoint()),
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            "--data-urlencode",
            "Action=CreateRole",
            "--data-urlencode",
            "Version=2010-05-08",
            "--data-urlencode",
            &format!("RoleName={name}"),
            "--data-urlencode",
            r#"AssumeRolePolicyDocument={"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        ])
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "CreateRole on moto: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("arn:aws:iam::{HUB_ACCOUNT}:role/{name}")
}

/// An empty zip archive: moto stores the code and never runs it.
const EMPTY_ZIP: &[u8] = &[
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

async fn trail(sdk: &SdkConfig, region: &str, name: &str, logging: bool) {
    let moto = moto_in(sdk, region);
    let bucket = format!("{name}-logs");
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto)
            .force_path_style(true)
            .build(),
    )
    .create_bucket()
    .bucket(&bucket)
    .create_bucket_configuration(
        aws_sdk_s3::types::CreateBucketConfiguration::builder()
            .location_constraint(region.into())
            .build(),
    )
    .send()
    .await
    .expect("CreateBucket on moto");
    let ct = aws_sdk_cloudtrail::Client::new(&moto);
    ct.create_trail()
        .name(name)
        .s3_bucket_name(&bucket)
        .is_multi_region_trail(false)
        .send()
        .await
        .expect("CreateTrail on moto");
    // As AWS sets a new trail's selectors (moto leaves them empty): every management event.
    ct.put_event_selectors()
        .trail_name(name)
        .event_selectors(
            aws_sdk_cloudtrail::types::EventSelector::builder()
                .read_write_type(aws_sdk_cloudtrail::types::ReadWriteType::All)
                .include_management_events(true)
                .build(),
        )
        .send()
        .await
        .expect("PutEventSelectors");
    if logging {
        ct.start_logging()
            .name(name)
            .send()
            .await
            .expect("StartLogging");
    }
}

/// What starts a rule.
#[derive(Clone, Copy)]
enum Rule<'a> {
    Pattern(&'a str),
    Schedule(&'a str),
}

/// A rule of `region`'s default bus on LocalStack with one target.
async fn rule(
    sdk: &SdkConfig,
    region: &str,
    name: &str,
    on: Rule<'_>,
    enabled: bool,
    target: &str,
) {
    use aws_sdk_eventbridge::types::{RuleState, Target};
    let events = aws_sdk_eventbridge::Client::new(&localstack_in(sdk, region));
    let put = events.put_rule().name(name).state(if enabled {
        RuleState::Enabled
    } else {
        RuleState::Disabled
    });
    let put = match on {
        Rule::Pattern(p) => put.event_pattern(p),
        Rule::Schedule(s) => put.schedule_expression(s),
    };
    put.send().await.expect("PutRule");
    events
        .put_targets()
        .rule(name)
        .targets(Target::builder().id("t").arn(target).build().unwrap())
        .send()
        .await
        .expect("PutTargets");
}

/// Builds the deployment `shape` describes; returns the function's name.
async fn deploy(test: &str, shape: &Shape) -> String {
    let sdk = sdk().await;
    let run = format!("{test}-{}", std::process::id());
    let moto = moto_in(&sdk, shape.hub);
    let role = create_role(&run);
    let sqs = aws_sdk_sqs::Client::new(&moto);
    let queue = sqs
        .create_queue()
        .queue_name(&run)
        .send()
        .await
        .expect("CreateQueue on moto")
        .queue_url
        .unwrap();
    let mut vars = shape.vars.clone();
    vars.push(("SWEEP_QUEUE_URL", queue.clone()));
    vars.push(("METRICS_NAMESPACE", namespace(test)));
    let lambda = aws_sdk_lambda::Client::new(&moto);
    let function = lambda
        .create_function()
        .function_name(&run)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(EMPTY_ZIP.into())
                .build(),
        )
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .set_variables(Some(
                    vars.iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect(),
                ))
                .build(),
        )
        .send()
        .await
        .expect("CreateFunction on moto");
    let arn = function.function_arn.unwrap();
    let mapping = lambda
        .create_event_source_mapping()
        .function_name(&run)
        .event_source_arn(format!("arn:aws:sqs:{}:{HUB_ACCOUNT}:{run}", shape.hub))
        .send()
        .await
        .expect("CreateEventSourceMapping on moto");
    if !shape.mapping_enabled {
        lambda
            .update_event_source_mapping()
            .uuid(mapping.uuid.unwrap())
            .enabled(false)
            .send()
            .await
            .expect("UpdateEventSourceMapping");
    }

    trail(
        &sdk,
        shape.hub,
        &format!("{run}-hub"),
        shape.hub_trail_logging,
    )
    .await;
    if shape.spoke_trail {
        trail(&sdk, shape.spoke, &format!("{run}-spoke"), true).await;
    }

    let hub_bus = format!(
        "arn:aws:events:{}:{HUB_ACCOUNT}:event-bus/default",
        shape.hub
    );
    let kms = Rule::Pattern(PATTERN);
    rule(
        &sdk,
        shape.hub,
        &format!("{run}-kms"),
        kms,
        shape.rule_enabled,
        &arn,
    )
    .await;
    if shape.schedule {
        let every = Rule::Schedule("rate(6 hours)");
        rule(&sdk, shape.hub, &format!("{run}-sweep"), every, true, &arn).await;
    }
    if shape.forwarding {
        rule(
            &sdk,
            shape.spoke,
            &format!("{run}-forward"),
            kms,
            true,
            &hub_bus,
        )
        .await;
    }
    if shape.iam_forwarding {
        let iam = Rule::Pattern(
            r#"{"source":["aws.iam"],"detail-type":["AWS API Call via CloudTrail"],"detail":{"eventSource":["iam.amazonaws.com"]}}"#,
        );
        rule(
            &sdk,
            "us-east-1",
            &format!("{run}-iam"),
            iam,
            true,
            &hub_bus,
        )
        .await;
    }

    let cw = aws_sdk_cloudwatch::Client::new(&localstack_in(&sdk, shape.hub));
    let alarm = format!("{run}-SweepCompleted-heartbeat");
    if shape.swept {
        // One sweep in each of the two periods the alarm looks at.
        let now = std::time::SystemTime::now();
        for ago in [20, 80] {
            cw.put_metric_data()
                .namespace(namespace(test))
                .metric_data(
                    aws_sdk_cloudwatch::types::MetricDatum::builder()
                        .metric_name("SweepCompleted")
                        .value(1.0)
                        .timestamp((now - std::time::Duration::from_secs(ago)).into())
                        .build(),
                )
                .send()
                .await
                .expect("PutMetricData");
        }
    }
    cw.put_metric_alarm()
        .alarm_name(&alarm)
        .namespace(namespace(test))
        .metric_name("SweepCompleted")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(2)
        .threshold(1.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::LessThanThreshold)
        .treat_missing_data("breaching")
        .alarm_actions(format!("arn:aws:sns:{}:{HUB_ACCOUNT}:alarms", shape.hub))
        .send()
        .await
        .expect("PutMetricAlarm");
    // LocalStack evaluates a new alarm shortly after it is created, as CloudWatch does: wait
    // for its verdict on the data above (OK after a sweep, ALARM without one).
    let want = if shape.swept { "OK" } else { "ALARM" };
    let mut state = String::new();
    for _ in 0..60 {
        state = cw
            .describe_alarms()
            .alarm_names(&alarm)
            .send()
            .await
            .expect("DescribeAlarms")
            .metric_alarms
            .unwrap_or_default()
            .first()
            .and_then(|a| a.state_value.as_ref())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if state != "INSUFFICIENT_DATA" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(state, want, "the emulator's evaluation of {alarm}");
    run
}

/// `doctor --output json` through `endpoint` (LocalStack, or a proxy in front of it).
fn doctor(endpoint: &str, hub: &str, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["doctor", "--output", "json"];
    all.extend_from_slice(args);
    let moto = moto_endpoint();
    let (code, out, err) = cli_at(
        endpoint,
        &[
            ("AWS_REGION", hub),
            ("AWS_ENDPOINT_URL_LAMBDA", &moto),
            ("AWS_ENDPOINT_URL_CLOUDTRAIL", &moto),
        ],
        &all,
    );
    let report: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("doctor's JSON ({e}): {out}\nstderr: {err}"));
    (code, report, err)
}

/// The checks of `report` named `check`, as (target, status).
fn verdicts(report: &Value, check: &str) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == check)
        .map(|c| {
            (
                c["target"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn statuses(report: &Value, check: &str) -> Vec<String> {
    verdicts(report, check)
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

#[tokio::test]
async fn a_healthy_deployment_passes_every_check() {
    let shape = Shape::healthy("eu-north-1", "eu-south-1");
    let function = deploy("doctor-healthy", &shape).await;
    let (code, report, err) = doctor(&endpoint(), shape.hub, &["--function", &function]);
    assert_eq!(code, 0, "{report:#}\n{err}");
    assert_eq!(report["ok"], true);
    for check in [
        "function",
        "mode",
        "baseline",
        "baseline-render",
        "member-role",
        "trail",
        "rule",
        "schedule",
        "queue-mapping",
        "forwarding",
        "iam-forwarding",
        "heartbeat",
    ] {
        let found = statuses(&report, check);
        assert!(
            !found.is_empty() && found.iter().all(|s| s == "pass"),
            "{check}: {found:?}\n{report:#}"
        );
    }
    assert_eq!(
        verdicts(&report, "trail"),
        [
            ("eu-north-1".to_owned(), "pass".to_owned()),
            ("eu-south-1".to_owned(), "pass".to_owned())
        ]
    );
    let render = &report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "baseline-render")
        .unwrap()["detail"];
    assert_eq!(render, "renders and validates in 3 of 3 accounts");

    // The same checklist for a terminal: one ✓ line per check, exit 0.
    let moto = moto_endpoint();
    let (code, text, _) = cli_at(
        &endpoint(),
        &[
            ("AWS_REGION", shape.hub),
            ("AWS_ENDPOINT_URL_LAMBDA", &moto),
            ("AWS_ENDPOINT_URL_CLOUDTRAIL", &moto),
        ],
        &["doctor", "--function", &function],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("✓ heartbeat"), "{text}");
    assert!(!text.contains('✗'), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}

// Multi-threaded: the CLI runs as a child process the test waits for, while the proxy in
// this process answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_deployment_fails_each_check_with_its_fix() {
    let mut shape = Shape::healthy("ap-south-1", "ap-south-2");
    // Every write in 333344445555 would lock the member role out: its only grant there is
    // to 222233334444's member role (trusted, so the guardrails let it be).
    let baseline = r#"{"Version":"2012-10-17","Statement":[
      {"Sid":"Remediator","Effect":"Allow","Principal":{"AWS":"arn:{{Partition}}:iam::{{AccountId}}:role/kms-replica-guard-remediator"},"Action":"kms:*","Resource":"*"},
      {"Sid":"FirstMember","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222233334444:role/kms-replica-guard-member"},"Action":"kms:*","Resource":"*"}]}"#;
    shape.set("BASELINE_SOURCE", Some(baseline));
    shape.set("BASELINE_SHA256", None);
    shape.set("TRUSTED_ACCOUNTS", Some(MEMBERS));
    shape.set("REMEDIATION_MODE", Some("dry-run"));
    shape.hub_trail_logging = false;
    shape.spoke_trail = false;
    shape.rule_enabled = false;
    shape.schedule = false;
    shape.forwarding = false;
    shape.mapping_enabled = false;
    shape.swept = false;
    shape.iam_forwarding = false;
    let function = deploy("doctor-broken", &shape).await;
    let proxy = FaultProxy::start(endpoint()).await;
    proxy.inject("AssumeRole", Fault::AccessDenied, 1);
    let (code, report, err) = doctor(&proxy.endpoint, shape.hub, &["--function", &function]);
    assert_eq!(code, 2, "{report:#}\n{err}");
    assert_eq!(report["ok"], false);
    assert_eq!(statuses(&report, "function"), ["pass"]);
    assert_eq!(statuses(&report, "mode"), ["warn"]);
    assert_eq!(statuses(&report, "baseline"), ["warn"], "not pinned");
    assert_eq!(
        verdicts(&report, "baseline-render"),
        [
            ("accounts".to_owned(), "pass".to_owned()),
            ("333344445555".to_owned(), "fail".to_owned())
        ]
    );
    let members = statuses(&report, "member-role");
    assert_eq!(members, ["pass", "fail"], "one of two refused");
    assert_eq!(
        proxy.forwarded("AssumeRole"),
        1,
        "the other one was assumed"
    );
    assert_eq!(
        verdicts(&report, "trail"),
        [
            ("ap-south-1".to_owned(), "fail".to_owned()),
            ("ap-south-2".to_owned(), "fail".to_owned())
        ]
    );
    for check in [
        "rule",
        "schedule",
        "queue-mapping",
        "forwarding",
        "heartbeat",
    ] {
        assert_eq!(statuses(&report, check), ["fail"], "{check}\n{report:#}");
    }
    assert_eq!(
        statuses(&report, "iam-forwarding"),
        ["warn"],
        "a hub outside us-east-1"
    );
    // Every failure says what to do.
    for c in report["checks"].as_array().unwrap() {
        if c["status"] == "fail" || c["status"] == "warn" {
            assert!(
                c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                "no fix for {c}"
            );
        }
    }
    let detail = |check: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check && c["status"] == "fail")
            .map(|c| format!("{} {}", c["detail"], c["fix"]))
            .unwrap()
    };
    assert!(
        detail("trail").contains("logging off"),
        "{}",
        detail("trail")
    );
    assert!(detail("rule").contains("DISABLED") && detail("rule").contains("enable-rule"));
    assert!(detail("baseline-render").contains("kms-replica-guard-member"));
    assert!(detail("heartbeat").contains("ALARM"));
    assert!(detail("forwarding").contains("spoke.yaml"));
}

#[tokio::test]
async fn a_configuration_the_function_refuses_and_a_missing_function_are_reported_not_crashed() {
    let mut shape = Shape::healthy("ca-west-1", "us-west-1");
    shape.set("FLAP_WINDOW", Some("soon"));
    let function = deploy("doctor-config", &shape).await;
    let (code, report, _) = doctor(&endpoint(), shape.hub, &["--function", &function]);
    assert_eq!(code, 2);
    let config = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "configuration")
        .expect("a configuration check");
    assert_eq!(config["status"], "fail");
    assert!(
        config["detail"].as_str().unwrap().contains("FLAP_WINDOW"),
        "{config}"
    );

    let (code, report, _) = doctor(&endpoint(), shape.hub, &["--function", "no-such-function"]);
    assert_eq!(code, 2);
    assert_eq!(statuses(&report, "function"), ["fail"]);
    assert_eq!(report["checks"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_parts_are_listed_and_not_called() {
    let shape = Shape::healthy("il-central-1", "me-south-1");
    let function = deploy("doctor-skip", &shape).await;
    let proxy = FaultProxy::start(endpoint()).await;
    let (code, report, err) = doctor(
        &proxy.endpoint,
        shape.hub,
        &["--function", &function, "--skip", "members,rules"],
    );
    assert_eq!(code, 0, "{report:#}\n{err}");
    assert_eq!(statuses(&report, "member-role"), ["skip"]);
    assert_eq!(statuses(&report, "rule"), ["skip"]);
    assert_eq!(proxy.forwarded("AssumeRole"), 0);
    assert_eq!(proxy.forwarded("ListRuleNamesByTarget"), 0);
    assert_eq!(statuses(&report, "heartbeat"), ["pass"]);
}
