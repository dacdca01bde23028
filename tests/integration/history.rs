//! Forged history in the backup bucket: objects planted under the guard's prefix by anyone
//! who can put objects there. Write records, claims and backups are dated by S3's
//! `LastModified`; a name or body dated after S3 stored it is ignored, so none of these
//! stops a fix or picks what `restore --from latest` puts back.

use std::time::{Duration, SystemTime};

use krg_aws::backups::S3Backups;
use krg_engine::decide::drift_name;
use krg_engine::key::KeyArn;
use krg_engine::ports::Backup;
use krg_engine::ports::BackupStore;
use krg_policy::equivalent;
use serde_json::{Value, json};

use crate::helpers::*;

const REGION: &str = "us-west-2";
const PREFIX: &str = "kms-replica-guard/";

/// A drifted replica, a fresh bucket, and where the replica's objects go under the prefix.
async fn drifted_with_bucket(sdk: &aws_config::SdkConfig, name: &str) -> (Family, String) {
    let family = create_family(sdk, DEFAULT_STYLE_POLICY, &[REGION]).await;
    let bucket = bucket(sdk, name).await;
    (family, bucket)
}

/// `ACCOUNT/REGION/KEY_ID/` of a key, as the guard lays out its objects.
fn key_path(key: &KeyArn) -> String {
    format!("{}/{}/{}/", key.account(), key.region(), key.key_id())
}

/// Puts `body` at `object` in `bucket`, as someone other than the guard would.
/// The replica's PutKeyPolicy event is handled and heals it with one write, to the baseline.
async fn heals_with_one_write(
    sdk: &aws_config::SdkConfig,
    app: &TestApp,
    kms: &KmsCalls,
    family: &Family,
    replica: &KeyArn,
) {
    let response = handle(
        app,
        event("put-key-policy-replica-id.json", family.key_id()),
    )
    .await
    .unwrap();
    assert_eq!(
        response["outcomes"][0]["action"], "remediated",
        "{response:#}"
    );
    assert_eq!(kms.puts(), 1);
    assert!(equivalent(&get_policy(sdk, replica).await, &rendered_baseline(replica)).unwrap());
}

async fn plant(sdk: &aws_config::SdkConfig, bucket: &str, object: &str, body: &Value) {
    aws_sdk_s3::Client::new(sdk)
        .put_object()
        .bucket(bucket)
        .key(object)
        .body(body.to_string().into_bytes().into())
        .send()
        .await
        .expect("PutObject (planted)");
}

/// The function as a fresh Lambda instance builds it: enforcing, history in `bucket`.
fn instance(
    sdk: &aws_config::SdkConfig,
    bucket: &str,
    extra: &[(&str, &str)],
) -> (TestApp, KmsCalls) {
    let mut vars = vec![
        ("REMEDIATION_MODE", "enforce"),
        ("BASELINE_SOURCE", BASELINE),
        ("BACKUP_BUCKET", bucket),
    ];
    vars.extend_from_slice(extra);
    lambda(sdk, &vars)
}

async fn objects_under(sdk: &aws_config::SdkConfig, bucket: &str, prefix: &str) -> Vec<String> {
    aws_sdk_s3::Client::new(sdk)
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("ListObjectsV2")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn five_write_records_dated_in_the_year_9999_do_not_make_a_key_flap() {
    let sdk = sdk().await;
    let (family, bucket) = drifted_with_bucket(&sdk, "krg-forged-writes").await;
    let replica = family.replica(REGION);
    let writes = format!("{PREFIX}writes/{}", key_path(replica));
    // Names are trusted as times by a reader that sorts them: these would be "in the flap
    // window" until the year 9999.
    for i in 0..5 {
        let record = json!({
            "key_arn": replica.as_str(), "written_at": format!("9999-12-31T23:59:5{i}Z"),
            "event_id": null, "event_name": "PutKeyPolicy", "backup": "s3://x/y.json",
            "written": "{}", "mismatch": null,
        });
        plant(
            &sdk,
            &bucket,
            &format!("{writes}99991231T23595{i}.000Z.ok.json"),
            &record,
        )
        .await;
    }
    let (app, kms) = instance(&sdk, &bucket, &[]);

    let response = handle(
        &app,
        event("put-key-policy-replica-id.json", family.key_id()),
    )
    .await
    .unwrap();

    assert_eq!(
        response["outcomes"][0]["action"], "remediated",
        "{response:#}"
    );
    assert_eq!(kms.puts(), 1);
    // Only the genuine write counts: with FLAP_MAX=2 the next drift is still fixed (one
    // write in the window), the one after is left alone (two).
    let mut reasons = Vec::new();
    for _ in 0..2 {
        put_policy(&sdk, replica, DEFAULT_STYLE_POLICY).await;
        let (app, _) = instance(&sdk, &bucket, &[("FLAP_MAX", "2")]);
        let response = handle(
            &app,
            event("put-key-policy-replica-id.json", family.key_id()),
        )
        .await
        .unwrap();
        reasons.push(
            response["outcomes"][0]["action"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(reasons, ["remediated", "skipped"], "the second is flapping");
}

#[tokio::test]
async fn a_mismatch_record_dated_in_the_year_9999_does_not_block_the_fix_as_verification_failed_earlier()
 {
    let sdk = sdk().await;
    let (family, bucket) = drifted_with_bucket(&sdk, "krg-forged-mismatch").await;
    let replica = family.replica(REGION);
    let live = get_policy(&sdk, replica).await;
    // "This very fix was written and KMS stored something else": the guard does not
    // write a fix again that failed its verification, so this would stop it for good.
    let record = json!({
        "key_arn": replica.as_str(), "written_at": "9999-12-31T23:59:59Z",
        "event_id": null, "event_name": "PutKeyPolicy", "backup": "s3://x/y.json",
        "written": rendered_baseline(replica), "mismatch": live,
    });
    let object = format!(
        "{PREFIX}writes/{}99991231T235959.000Z.mismatch.json",
        key_path(replica)
    );
    plant(&sdk, &bucket, &object, &record).await;
    let (app, kms) = instance(&sdk, &bucket, &[]);

    heals_with_one_write(&sdk, &app, &kms, &family, replica).await;
}

#[tokio::test]
async fn a_claim_dated_in_the_year_9999_does_not_hold_off_the_fix() {
    let sdk = sdk().await;
    let (family, bucket) = drifted_with_bucket(&sdk, "krg-forged-claim").await;
    let replica = family.replica(REGION);
    let live = get_policy(&sdk, replica).await;
    // Claims are named after the drift, which anyone who made the drift can compute.
    let drift = drift_name(&live, &rendered_baseline(replica));
    let claims = format!("{PREFIX}claims/{}", key_path(replica));
    let claim = json!({
        "key_arn": replica.as_str(), "drift": drift, "claimed_at": "9999-12-31T23:59:59Z",
        "event_id": "forged", "event_name": "PutKeyPolicy",
    });
    plant(&sdk, &bucket, &format!("{claims}{drift}.json"), &claim).await;
    let (app, kms) = instance(&sdk, &bucket, &[]);

    heals_with_one_write(&sdk, &app, &kms, &family, replica).await;
    assert!(
        objects_under(&sdk, &bucket, &claims).await.is_empty(),
        "the planted claim was taken over (so it was found under the drift's name) and released"
    );
}

#[tokio::test]
async fn restore_from_latest_takes_the_newest_backup_s3_stored_not_a_planted_one_that_sorts_last() {
    let sdk = sdk().await;
    let (family, bucket) = drifted_with_bucket(&sdk, "krg-forged-backup").await;
    let replica = family.replica(REGION);
    let store = S3Backups::new(aws_sdk_s3::Client::new(&sdk), &bucket, PREFIX);
    let backup = |policy: String, taken_at: SystemTime| Backup {
        key: replica.clone(),
        policy,
        reason: "drift".into(),
        event_id: None,
        event_name: "sweep".into(),
        taken_at,
    };
    let now = SystemTime::now();
    // Planted first, named (and dated) a minute ahead so it sorts after the genuine one:
    // within the clock skew, so only S3's date tells them apart.
    let planted_policy = rendered_baseline(replica).replace("role/app", "role/attacker");
    let planted = store
        .save(&backup(planted_policy, now + Duration::from_secs(60)))
        .await
        .unwrap();
    // LastModified has a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let genuine = store
        .save(&backup(rendered_baseline(replica), now))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // The newest of all, dated in the year 9999.
    let far = format!("{PREFIX}{}99991231T235959.000Z.json", key_path(replica));
    let far_body = json!({
        "key_arn": replica.as_str(), "taken_at": "9999-12-31T23:59:59Z", "reason": "drift",
        "event_id": null, "event_name": "sweep", "policy": DEFAULT_STYLE_POLICY,
    });
    plant(&sdk, &bucket, &far, &far_body).await;
    let envs = [("BACKUP_BUCKET", bucket.as_str())];
    let restore = |apply: bool| {
        let mut args = vec![
            "restore",
            replica.as_str(),
            "--from",
            "latest",
            "--baseline",
            BASELINE,
            "--output",
            "json",
        ];
        if apply {
            args.push("--apply");
        }
        cli_at(&endpoint(), &envs, &args)
    };

    let (code, out, err) = restore(false);

    assert_eq!(
        code, 1,
        "dry-run: the restore would change the policy\n{out}\n{err}"
    );
    assert!(out.contains(&genuine), "{genuine} restored:\n{out}");
    assert!(!out.contains(&planted), "{out}");
    assert!(
        err.contains("suspicious object in the backup bucket ignored") && err.contains(&far),
        "the far-future backup is reported:\n{err}"
    );
    let (code, out, err) = restore(true);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        equivalent(
            &get_policy(&sdk, replica).await,
            &rendered_baseline(replica)
        )
        .unwrap(),
        "the genuine backup's policy is back"
    );
}
