//! The sweep queue takes only the planner's work items: a forged body on a real queue is
//! refused into `batchItemFailures` (so it ends in the DLQ) and runs nothing, while a
//! genuine item in the same batch is swept.

use kms_replica_guard::config::Config;
use kms_replica_guard::wiring::Adapters;
use krg_engine::key::Place;
use krg_engine::trigger::work_item;
use krg_policy::equivalent;
use krg_testkit::proxy::FaultProxy;
use serde_json::{Value, json};

use crate::faults::through;
use crate::helpers::*;

/// A Region no other test uses: the genuine item sweeps every key of the account there.
const REGION: &str = "eu-west-3";

/// The batch the event-source mapping would hand the function for these messages.
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

#[tokio::test]
async fn a_forged_empty_sweep_on_the_queue_is_refused_while_a_genuine_item_beside_it_is_swept() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &[REGION]).await;
    let replica = family.replica(REGION);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = format!(
        "krg-work-items-{}",
        family.key_id().trim_start_matches("mrk-")
    );
    let queue = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .unwrap();
    let queue_arn = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}");
    let genuine = work_item(&Place::new(
        Some(ACCOUNT.parse().unwrap()),
        REGION.parse().unwrap(),
    ));
    // What anyone who may send to the queue could send: `{"sweep": {}}` is what the general
    // event parser reads as "every account of the organisation, every Region, inline".
    for body in [json!({"sweep": {}}), genuine] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body.to_string())
            .send()
            .await
            .expect("SendMessage");
    }
    let mut messages = Vec::new();
    for _ in 0..5 {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        messages.extend(out.messages().iter().cloned());
        if messages.len() == 2 {
            break;
        }
    }
    assert_eq!(messages.len(), 2, "{messages:?}");
    let forged_id = messages
        .iter()
        .find(|m| m.body() == Some(r#"{"sweep":{}}"#))
        .and_then(|m| m.message_id())
        .expect("the forged message")
        .to_owned();

    // A hub with a member account and two sweep Regions: the forged body would have
    // entered the member account and listed keys in four places.
    let proxy = FaultProxy::start(endpoint()).await;
    let config = Config::from_lookup(vars(&[
        ("REMEDIATION_MODE", "enforce"),
        ("BASELINE_SOURCE", BASELINE),
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
        ("MEMBER_ACCOUNTS", "222233334444"),
        ("SWEEP_REGIONS", &format!("{REGION},eu-south-1")),
        ("SWEEP_QUEUE_URL", &queue),
    ]));
    let app = Adapters::new(&through(&proxy).await, config.as_ref().ok()).app(config);

    let answer = handle(&app, sqs_event(&messages, &queue_arn))
        .await
        .unwrap();

    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": forged_id}]}),
        "only the forged message is refused"
    );
    assert_eq!(
        proxy.forwarded("AssumeRole"),
        0,
        "no member account entered"
    );
    assert_eq!(
        proxy.forwarded("ListKeys"),
        1,
        "one Region of one account listed: the genuine item's"
    );
    assert!(
        equivalent(
            &get_policy(&sdk, replica).await,
            &rendered_baseline(replica)
        )
        .unwrap(),
        "the genuine item swept its place"
    );
    sqs.delete_queue().queue_url(&queue).send().await.ok();
}
