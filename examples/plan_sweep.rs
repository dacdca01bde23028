//! The organisation sweep's two halves on the emulator, timed: the planner (a scheduled sweep
//! of ACCOUNTS member accounts x 17 Regions onto a real SQS queue) and one worker (one
//! planned item: a member account's Region holding KEYS drifted replicas, healed in enforce
//! mode through the member role). BENCHMARKS.md, "Organisation sweep", quotes it.
//!
//! AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=111122223333 AWS_SECRET_ACCESS_KEY=test \
//!   cargo run --example plan_sweep -- [ACCOUNTS] [KEYS]

use std::time::Instant;

use aws_sdk_kms::config::{Credentials, Region as SdkRegion};
use kms_replica_guard::config::Config;
use kms_replica_guard::wiring::Adapters;
use krg_aws::clients::load_sdk_config;
use serde_json::{Value, json};

const HUB_ROLE: &str = "arn:aws:iam::111122223333:role/kms-replica-guard-remediator";
const MEMBER: &str = "222200000000";
const REGIONS: &str = "us-east-1,us-east-2,us-west-1,us-west-2,ca-central-1,eu-west-1,eu-west-2,eu-west-3,eu-central-1,eu-north-1,ap-south-1,ap-northeast-1,ap-northeast-2,ap-northeast-3,ap-southeast-1,ap-southeast-2,sa-east-1";
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let accounts: u64 = args.next().map_or(1000, |a| a.parse().expect("a number"));
    let keys: usize = args.next().map_or(50, |k| k.parse().expect("a number"));
    let sdk = load_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .create_queue()
        .queue_name(format!("krg-plan-{}", std::process::id()))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .unwrap();
    let members: Vec<String> = (0..accounts)
        .map(|i| format!("{:012}", 222_200_000_000 + i))
        .collect();
    let members = members.join(",");
    let vars = [
        ("AWS_REGION", "us-east-1"),
        ("REMEDIATOR_ROLE_ARN", HUB_ROLE),
        ("REMEDIATION_MODE", "enforce"),
        ("BASELINE_SOURCE", POLICY),
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
        ("MEMBER_ACCOUNTS", members.as_str()),
        ("SWEEP_REGIONS", REGIONS),
        ("SWEEP_QUEUE_URL", queue.as_str()),
    ];
    let config = Config::from_lookup(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    });
    let app = Adapters::new(&sdk, config.as_ref().ok()).app(config);

    let scheduled = json!({"version": "0", "id": "plan", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "111122223333", "time": "2026-12-02T00:00:00Z",
        "region": "us-east-1", "resources": [], "detail": {}});
    let started = Instant::now();
    let planned = app.handle(scheduled).await.expect("planned");
    let plan_s = started.elapsed().as_secs_f64();
    let items = planned["planned"].as_u64().unwrap();
    println!(
        "planner: {items} items ({} accounts x 17 Regions) onto SQS in {plan_s:.2} s ({:.0} items/s)",
        planned["accounts"],
        items as f64 / plan_s
    );

    // One worker item: KEYS drifted replicas in the member account's eu-west-1.
    let member_sdk = sdk
        .to_builder()
        .credentials_provider(aws_sdk_kms::config::SharedCredentialsProvider::new(
            Credentials::new(MEMBER, "test", None, None, "plan_sweep"),
        ))
        .build();
    let east = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&member_sdk)
            .region(SdkRegion::new("us-east-1"))
            .build(),
    );
    let region = format!("eu-west-{}", 1 + std::process::id() % 3);
    for _ in 0..keys {
        let k = east
            .create_key()
            .multi_region(true)
            .send()
            .await
            .expect("CreateKey");
        east.replicate_key()
            .key_id(k.key_metadata().unwrap().key_id())
            .replica_region(&region)
            .send()
            .await
            .expect("ReplicateKey");
    }
    let body = json!({"sweep": {"account": MEMBER, "regions": [region]}}).to_string();
    let batch = json!({"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": body,
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:q",
        "awsRegion": "us-east-1"}]});
    let started = Instant::now();
    let answer: Value = app.handle(batch).await.expect("worked");
    let work_s = started.elapsed().as_secs_f64();
    assert_eq!(answer, json!({"batchItemFailures": []}), "{answer}");
    println!(
        "worker: one item ({MEMBER}/{region}, {keys} drifted replicas healed, AssumeRole included) in {work_s:.2} s"
    );
}
