//! Sweeps, backups and restore, the flap guard, SSM/S3 baselines and the CLI, against the
//! emulator. Each sweep test uses a Region no other test uses: an enforcing sweep fixes
//! every drifted replica it sees.

use kms_replica_guard::config::Config;
use kms_replica_guard::wiring::{Adapters, on_aws};
use krg_aws::remote::Remote;
use krg_engine::Quiet;
use krg_engine::key::Place;
use krg_engine::outcome::Action;
use krg_policy::equivalent;

use crate::helpers::*;

fn remote(sdk: &aws_config::SdkConfig) -> Remote {
    Remote::new(sdk)
}

const REFORMATTED: &str = r#"{"Statement": [
    {"Resource": "*", "Condition": {"StringEquals": {"KMS:viaservice": ["s3.REGION.amazonaws.com"]}},
     "Action": ["kms:GenerateDataKey*", "KMS:encrypt", "kms:Decrypt"],
     "Principal": {"AWS": ["arn:aws:iam::111122223333:role/app"]}, "Effect": "allow", "Sid": "AllowAppUse"},
    {"Sid": "EnableRootAccess", "Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "kms:*", "Resource": ["*"]},
    {"Sid": "AllowRemediator", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/kms-replica-guard-remediator"},
     "Action": ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey", "kms:ListResourceTags"], "Resource": "*"}
], "Id": "kms-replica-guard-baseline", "Version": "2012-10-17"}"#;

#[tokio::test]
async fn a_sweep_fixes_exactly_the_drifted_replicas_backs_each_up_and_restore_brings_one_back() {
    let sdk = sdk().await;
    let region = "ap-northeast-1";
    let in_sync = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    let reformatted = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    let excluded = create_family(&sdk, DEFAULT_STYLE_POLICY, &[region]).await;
    let drifted: Vec<Family> = futures_join(&sdk, region, 3).await;
    put_policy(
        &sdk,
        in_sync.replica(region),
        &rendered_baseline(in_sync.replica(region)),
    )
    .await;
    put_policy(
        &sdk,
        reformatted.replica(region),
        &REFORMATTED.replace("REGION", region),
    )
    .await;
    kms_in(&sdk, region)
        .tag_resource()
        .key_id(excluded.replica(region).as_str())
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("kms-replica-guard:exclude")
                .tag_value("true")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let reformatted_before = get_policy(&sdk, reformatted.replica(region)).await;
    let bucket = bucket(&sdk, "krg-backups").await;
    let config = Config::load_from(
        vars(&[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", BASELINE),
            ("BACKUP_BUCKET", &bucket),
        ]),
        &remote(&sdk),
    )
    .await
    .unwrap();
    let mut adapters = Adapters::new(&sdk, Some(&config));
    adapters.kms = adapters.kms.with_page_size(2);
    let kms = adapters.kms.clone();
    let store = adapters.bucket.clone().expect("BACKUP_BUCKET is set");
    let engine = adapters.engine(&config);

    let report = engine
        .sweep(&[Place::own(region.parse().unwrap())], &Quiet)
        .await;

    let action_of = |f: &Family| {
        report
            .outcomes
            .iter()
            .find(|o| &o.key_arn == f.replica(region))
            .map(|o| o.action())
    };
    for f in &drifted {
        assert_eq!(action_of(f), Some(Action::Remediated), "{report:#?}");
        let live = get_policy(&sdk, f.replica(region)).await;
        assert!(equivalent(&live, &rendered_baseline(f.replica(region))).unwrap());
        let backups = store.list(f.replica(region)).await.unwrap();
        assert_eq!(backups.len(), 1, "one backup per write");
        assert_eq!(
            store.load(&backups[0]).await.unwrap().policy,
            DEFAULT_STYLE_POLICY
        );
    }
    assert_eq!(action_of(&excluded), Some(Action::Skipped));
    assert_eq!(
        action_of(&in_sync),
        None,
        "in-sync replicas are only counted"
    );
    assert_eq!(action_of(&reformatted), None);
    assert_eq!(
        get_policy(&sdk, reformatted.replica(region)).await,
        reformatted_before
    );
    // Replicas that earlier runs against the same emulator left in this Region count too.
    let summary = report.summary.clone().unwrap();
    assert!(
        summary.get(&Action::Remediated).copied().unwrap_or(0) >= 3,
        "{summary:?}"
    );
    assert!(
        summary.get(&Action::InSync).copied().unwrap_or(0) >= 2,
        "{summary:?}"
    );
    let calls = kms.call_counts();
    assert!(calls["ListKeys"] > 1, "paged with page size 2: {calls:?}");
    assert_eq!(calls["PutKeyPolicy"] as usize, summary[&Action::Remediated]);

    // Restore the first drifted replica's previous policy from its backup.
    let key = drifted[0].replica(region);
    let backup = store.list(key).await.unwrap().pop().unwrap();
    let outcome = engine.restore(key, DEFAULT_STYLE_POLICY, &backup).await;
    assert_eq!(outcome.action(), Action::Remediated, "{outcome:#?}");
    assert!(equivalent(&get_policy(&sdk, key).await, DEFAULT_STYLE_POLICY).unwrap());
    assert_eq!(
        store.list(key).await.unwrap().len(),
        2,
        "the restore backed up what it replaced"
    );
}

async fn futures_join(sdk: &aws_config::SdkConfig, region: &str, n: usize) -> Vec<Family> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(create_family(sdk, DEFAULT_STYLE_POLICY, &[region]).await);
    }
    out
}

#[tokio::test]
async fn a_failed_backup_blocks_the_write() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let before = get_policy(&sdk, replica).await;
    let config = Config::load_from(
        vars(&[
            ("REMEDIATION_MODE", "enforce"),
            ("BASELINE_SOURCE", BASELINE),
            ("BACKUP_BUCKET", "no-such-bucket-krg"),
        ]),
        &remote(&sdk),
    )
    .await;
    let app = on_aws(&sdk, config);

    let err = app
        .handle(event("put-key-policy-replica-id.json", family.key_id()))
        .await
        .unwrap_err();

    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
    assert_eq!(get_policy(&sdk, replica).await, before, "nothing written");
}

#[tokio::test]
async fn a_writer_that_re_drifts_a_key_in_a_loop_trips_the_flap_guard_across_cold_starts() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let bucket = bucket(&sdk, "krg-flap").await;
    let ns = namespace("flap");
    let mut actions = Vec::new();
    for _ in 0..5 {
        // The other automation puts its policy back; every invocation is a cold start.
        put_policy(&sdk, replica, DEFAULT_STYLE_POLICY).await;
        let config = Config::load_from(
            vars(&[
                ("REMEDIATION_MODE", "enforce"),
                ("BASELINE_SOURCE", BASELINE),
                ("BACKUP_BUCKET", &bucket),
                ("FLAP_MAX", "3"),
                ("FLAP_WINDOW", "1h"),
                ("METRICS_NAMESPACE", &ns),
            ]),
            &remote(&sdk),
        )
        .await;
        let app = on_aws(&sdk, config);
        let response = app
            .handle(event("put-key-policy-iam-user.json", family.key_id()))
            .await
            .unwrap();
        actions.push(
            response["outcomes"][0]["reason"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        actions[..3]
            .iter()
            .filter(|a| a.starts_with("policy rewritten"))
            .count(),
        3,
        "{actions:?}"
    );
    assert_eq!(&actions[3..], ["flapping", "flapping"], "{actions:?}");
    assert_eq!(
        get_policy(&sdk, replica).await,
        DEFAULT_STYLE_POLICY,
        "left alone"
    );
    assert_eq!(metric_sum(&sdk, &ns, "FlapSuppressed").await, 2.0);
}

#[tokio::test]
async fn ssm_and_s3_baselines_work_and_a_missing_one_is_a_clear_error_with_no_write() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2");
    let name = format!("/kms-replica-guard/test/{}", family.key_id());
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&name)
        .value(BASELINE)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let bucket = bucket(&sdk, "krg-baseline").await;
    aws_sdk_s3::Client::new(&sdk)
        .put_object()
        .bucket(&bucket)
        .key("baseline.json")
        .body(BASELINE.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();

    for source in [
        format!("ssm:{name}"),
        format!("s3://{bucket}/baseline.json"),
    ] {
        let config = Config::load_from(vars(&[("BASELINE_SOURCE", &source)]), &remote(&sdk))
            .await
            .unwrap();
        let engine = Adapters::new(&sdk, Some(&config)).engine(&config);
        let policy = engine.baseline_for(replica).await.unwrap();
        assert!(
            equivalent(&policy, &rendered_baseline(replica)).unwrap(),
            "{source}"
        );
    }

    let before = get_policy(&sdk, replica).await;
    for missing in [
        format!("ssm:{name}/nope"),
        format!("s3://{bucket}/nope.json"),
    ] {
        let config = Config::load_from(
            vars(&[
                ("REMEDIATION_MODE", "enforce"),
                ("BASELINE_SOURCE", &missing),
            ]),
            &remote(&sdk),
        )
        .await;
        let e = config.as_ref().unwrap_err();
        assert!(e.to_string().contains("cannot read the baseline"), "{e}");
        assert!(e.to_string().contains(&missing), "{e}");
        let app = on_aws(&sdk, config);
        let err = app
            .handle(event("put-key-policy-replica-id.json", family.key_id()))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "NonRetryable.ConfigurationError");
    }
    assert_eq!(get_policy(&sdk, replica).await, before, "nothing written");
}

#[tokio::test]
async fn the_cli_exit_codes_and_json_output_tell_in_sync_drift_and_error_apart() {
    let sdk = sdk().await;
    let family = create_family(&sdk, DEFAULT_STYLE_POLICY, &["us-west-2"]).await;
    let replica = family.replica("us-west-2").to_string();
    let baseline = format!("--baseline={BASELINE}");

    let (code, stdout, _) = cli(&[&baseline, "check", &replica, "--output", "json"]);
    assert_eq!(code, 1, "drift found: {stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["outcomes"][0]["action"], "drift-detected");

    let (code, stdout, _) = cli(&[&baseline, "diff", &replica]);
    assert_eq!(code, 1);
    assert!(stdout.contains("+ statement \"AllowAppUse\""), "{stdout}");

    put_policy(
        &sdk,
        family.replica("us-west-2"),
        &rendered_baseline(family.replica("us-west-2")),
    )
    .await;
    let (code, stdout, _) = cli(&[&baseline, "check", &replica]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("in-sync"), "{stdout}");

    let (code, _, stderr) = cli(&[
        &baseline,
        "check",
        "arn:aws:kms:us-west-2:111122223333:alias/x",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("key ARN"), "{stderr}");

    let (code, _, stderr) = cli(&["--baseline={\"Version\": 1}", "validate-baseline"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("BASELINE_SOURCE"), "{stderr}");

    let (code, stdout, stderr) = cli(&[
        &baseline,
        "validate-baseline",
        "--key",
        &replica,
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["valid"],
        true
    );

    let (code, stdout, stderr) = cli(&[
        &baseline,
        "sweep",
        "--regions",
        "sa-east-1",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["kms_calls"]["ListKeys"].as_u64().unwrap() >= 1, "{v:#}");
    assert!(v["summary"].is_object(), "{v:#}");
}
