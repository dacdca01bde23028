//! KMS calls per event, counted on the wire by the proxy (krg-testkit):
//! DescribeKey + GetKeyPolicy when in sync; + PutKeyPolicy + the verifying GetKeyPolicy
//! with a fix; + ListResourceTags before a write while exclusion by tag is on (the
//! default); + the primary's GetKeyPolicy when mirroring it. A regression here costs KMS
//! quota in every account the function runs in.

use std::collections::BTreeMap;

use crate::faults::{Case, run_with};
use crate::helpers::*;

const EVENT: &str = "put-key-policy-replica-id.json";

fn calls(case: &Case, expected_action: &str) -> BTreeMap<String, usize> {
    let response = case
        .response
        .as_ref()
        .unwrap_or_else(|e| panic!("the invocation failed: {e:?}"));
    assert_eq!(
        response["outcomes"][0]["action"], expected_action,
        "{response:#}"
    );
    case.proxy.forwarded_all()
}

fn expect(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(op, n)| (op.to_string(), *n)).collect()
}

/// `event_name` handled with the us-west-2 replica already holding the baseline. Its key id
/// is not known before the family exists, and the baseline does not use it.
async fn on_an_in_sync_replica(event_name: &str) -> Case {
    let in_us_west_2 = format!("arn:aws:kms:us-west-2:{ACCOUNT}:key/{SAMPLE_KEY_ID}")
        .parse()
        .unwrap();
    let baseline_for_the_replica = rendered_baseline(&in_us_west_2);
    run_with(&[], event_name, Some(&baseline_for_the_replica), &[]).await
}

#[tokio::test]
async fn an_event_on_an_in_sync_replica_costs_two_kms_calls() {
    let case = on_an_in_sync_replica(EVENT).await;
    assert_eq!(
        calls(&case, "in-sync"),
        expect(&[("DescribeKey", 1), ("GetKeyPolicy", 1)])
    );
}

#[tokio::test]
async fn a_fix_costs_four_kms_calls_with_exclusion_by_tag_off() {
    let case = run_with(&[], EVENT, None, &[("EXCLUDE_TAG", "off")]).await;
    assert_eq!(
        calls(&case, "remediated"),
        expect(&[("DescribeKey", 1), ("GetKeyPolicy", 2), ("PutKeyPolicy", 1)])
    );
}

#[tokio::test]
async fn a_fix_costs_five_kms_calls_when_the_exclude_tag_is_checked() {
    let case = run_with(&[], EVENT, None, &[]).await;
    assert_eq!(
        calls(&case, "remediated"),
        expect(&[
            ("DescribeKey", 1),
            ("GetKeyPolicy", 2),
            ("ListResourceTags", 1),
            ("PutKeyPolicy", 1)
        ])
    );
}

#[tokio::test]
async fn mirroring_the_primary_adds_one_read_of_its_policy() {
    let case = run_with(
        &[],
        EVENT,
        Some(DEFAULT_STYLE_POLICY),
        &[("BASELINE_SOURCE", "primary")],
    )
    .await;
    assert_eq!(
        calls(&case, "in-sync"),
        expect(&[("DescribeKey", 1), ("GetKeyPolicy", 2)])
    );
}

#[tokio::test]
async fn a_change_of_the_exclude_tag_costs_what_an_event_on_its_replicas_costs() {
    // TagResource reaches every replica related to the key: one DescribeKey lists them, one
    // GetKeyPolicy each (here one replica, in sync).
    let case = on_an_in_sync_replica("tag-resource-exclude.json").await;
    assert_eq!(
        calls(&case, "in-sync"),
        expect(&[("DescribeKey", 1), ("GetKeyPolicy", 1)])
    );
    let response = case.response.as_ref().unwrap();
    assert_eq!(response["tag_changes"][0]["change"], "exemption-granted");
}

#[tokio::test]
async fn a_put_key_policy_under_the_guards_role_that_wrote_something_else_costs_an_ordinary_event()
{
    // The sample record's policy is not the baseline: someone else used the role.
    let case = on_an_in_sync_replica("put-key-policy-by-remediator.json").await;
    assert_eq!(
        calls(&case, "in-sync"),
        expect(&[("DescribeKey", 1), ("GetKeyPolicy", 1)])
    );
}
