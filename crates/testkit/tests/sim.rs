//! The KMS simulator's fidelity, through the real SDK client the guard uses: what the guard
//! relies on at scale (paging, the throttling answer, quota arithmetic per account and
//! Region, accounts from access keys, eventual consistency, the generated fleet).

use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::error::ProvideErrorMetadata;
use krg_testkit::sim::{
    Fleet, Kind, KmsSim, Latency, LatencyModel, Op, Quotas, SimConfig, account_of_access_key,
};

const BASELINE: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:{{Partition}}:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"},{"Sid":"S3","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:role/app"},"Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.{{Region}}.amazonaws.com"}}}]}"#;

fn fleet() -> Fleet {
    Fleet {
        seed: 27,
        regions: vec!["us-east-1".into(), "us-west-2".into(), "eu-west-1".into()],
        primaries: 30,
        replicas_per_primary: 2,
        single_region: 45,
        drift: 0.2,
        reformatted: 0.3,
        baseline: BASELINE.into(),
        accounts: None,
    }
}

fn quiet(fleet: Fleet) -> SimConfig {
    SimConfig {
        latency: LatencyModel::none(),
        ..SimConfig::new(fleet)
    }
}

/// A client as the guard makes one, no retries (the tests see each answer).
fn client(sim: &KmsSim, access_key: &str, region: &str) -> Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .http_client(krg_aws::clients::https_client())
        .endpoint_url(&sim.endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(access_key, "test", None, None, "sim"))
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

/// The id of the first key ListKeys answers.
async fn first_key(c: &Client) -> String {
    c.list_keys().send().await.unwrap().keys()[0]
        .key_id()
        .unwrap()
        .to_owned()
}

async fn list_all(c: &Client, limit: Option<i32>) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut marker) = (Vec::new(), 0, None);
    loop {
        let page = c
            .list_keys()
            .set_limit(limit)
            .set_marker(marker.take())
            .send()
            .await
            .unwrap();
        pages += 1;
        ids.extend(page.keys().iter().map(|k| k.key_id().unwrap().to_owned()));
        match page.next_marker {
            Some(m) if page.truncated => marker = Some(m),
            _ => {
                assert!(!page.truncated, "a last page is not truncated");
                return (ids, pages);
            }
        }
    }
}

#[tokio::test]
async fn list_keys_pages_by_limit_and_marker_and_refuses_a_forged_marker() {
    let sim = KmsSim::start(quiet(fleet())).await;
    let c = client(&sim, "111122223333", "us-west-2");
    // us-west-2 holds 10 primaries, 20 replicas and 15 single-Region keys.
    let (ids, pages) = list_all(&c, Some(7)).await;
    assert_eq!(ids.len(), 45);
    assert_eq!(pages, 7, "ceil(45 / 7)");
    let (default_page, pages) = list_all(&c, None).await;
    assert_eq!(
        (default_page.len(), pages),
        (45, 1),
        "100 a page by default"
    );
    assert_eq!(ids, default_page, "pages are a stable, gapless order");
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 45);

    let forged = c
        .list_keys()
        .marker("00000001deadbeef")
        .send()
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Some("InvalidMarkerException"));
    let too_big = c.list_keys().limit(1001).send().await.unwrap_err();
    assert_eq!(too_big.code(), Some("ValidationException"));
}

#[tokio::test]
async fn over_the_quota_kms_answers_its_throttling_exception_per_account_region_and_operation() {
    let quotas = Quotas(
        [(Op::PutKeyPolicy, 5.0), (Op::GetKeyPolicy, 50.0)]
            .into_iter()
            .collect(),
    );
    let sim = KmsSim::start(SimConfig {
        quotas,
        ..quiet(fleet())
    })
    .await;
    let a = client(&sim, "111122223333", "us-east-1");
    let key = first_key(&a).await;
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        outcomes.push(
            a.put_key_policy()
                .key_id(&key)
                .policy(BASELINE)
                .send()
                .await,
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "within the second"
    );
    let throttled: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(throttled.len(), 3, "a burst of 5, then throttled");
    let e = throttled[0];
    assert_eq!(e.code(), Some("ThrottlingException"));
    assert_eq!(e.message(), Some("Rate exceeded"));
    let raw = e.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let body: serde_json::Value = serde_json::from_slice(raw.body().bytes().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"__type": "ThrottlingException", "message": "Rate exceeded"})
    );

    // Another operation, another Region and another account each have their own bucket.
    a.get_key_policy().key_id(&key).send().await.unwrap();
    let west = client(&sim, "111122223333", "us-west-2");
    let west_key = first_key(&west).await;
    west.put_key_policy()
        .key_id(&west_key)
        .policy(BASELINE)
        .send()
        .await
        .unwrap();
    let other = client(&sim, "444455556666", "us-east-1");
    let other_key = first_key(&other).await;
    other
        .put_key_policy()
        .key_id(&other_key)
        .policy(BASELINE)
        .send()
        .await
        .unwrap();

    // The bucket refills at the quota: 0.2 s later, one more.
    tokio::time::sleep(Duration::from_millis(210)).await;
    a.put_key_policy()
        .key_id(&key)
        .policy(BASELINE)
        .send()
        .await
        .unwrap();

    let counts = sim.counts();
    let put = counts[&("111122223333".into(), "us-east-1".into(), Op::PutKeyPolicy)];
    assert_eq!((put.calls, put.throttled), (9, 3));
    // The burst of 5 and the refilled one: one or two clock seconds.
    assert!((5..=6).contains(&put.peak_per_second), "{put:?}");
    let other_put = counts[&("444455556666".into(), "us-east-1".into(), Op::PutKeyPolicy)];
    assert_eq!((other_put.calls, other_put.throttled), (1, 0));
    assert_eq!(sim.totals()[&Op::PutKeyPolicy].throttled, 3);
}

#[tokio::test]
async fn the_account_is_the_access_keys_and_each_account_has_its_own_keys() {
    // The emulator's STS hands out LSIA keys that carry the account as AWS's ASIA keys do.
    assert_eq!(
        account_of_access_key("LSIATHPBG5YCZ6XSASES"),
        "222200000005"
    );
    assert_eq!(account_of_access_key("123456789012"), "123456789012");
    assert_eq!(account_of_access_key("test"), "000000000000");

    let sim = KmsSim::start(quiet(fleet())).await;
    let a = client(&sim, "111122223333", "eu-west-1");
    let b = client(&sim, "LSIATHPBG5YCZ6XSASES", "eu-west-1");
    let a_keys = a.list_keys().send().await.unwrap();
    let b_keys = b.list_keys().send().await.unwrap();
    assert!(
        a_keys.keys()[0]
            .key_arn()
            .unwrap()
            .contains(":111122223333:key/")
    );
    assert!(
        b_keys.keys()[0]
            .key_arn()
            .unwrap()
            .contains(":222200000005:key/")
    );
    assert_ne!(a_keys.keys()[0].key_id(), b_keys.keys()[0].key_id());
    // A key of the other account is not found with this account's credentials.
    let foreign = b_keys.keys()[0].key_arn().unwrap();
    let e = a.describe_key().key_id(foreign).send().await.unwrap_err();
    assert_eq!(e.code(), Some("NotFoundException"));
}

#[tokio::test]
async fn describe_key_tells_replicas_from_primaries_and_lists_every_copy() {
    let sim = KmsSim::start(quiet(fleet())).await;
    let views = sim.keys("111122223333");
    assert_eq!(views.len(), 30 * 3 + 45);
    assert_eq!(views.iter().filter(|v| v.replica).count(), 60);
    let replica = views.iter().find(|v| v.replica).unwrap();
    let c = client(&sim, "111122223333", &replica.region);
    let meta = c
        .describe_key()
        .key_id(&replica.arn)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let mrc = meta.multi_region_configuration().unwrap();
    assert_eq!(mrc.multi_region_key_type().unwrap().as_str(), "REPLICA");
    assert_eq!(mrc.replica_keys().len(), 2);
    assert!(
        mrc.replica_keys()
            .iter()
            .any(|r| r.arn() == Some(&replica.arn))
    );
    assert_ne!(
        mrc.primary_key().unwrap().region(),
        Some(replica.region.as_str())
    );
    let single = views.iter().find(|v| !v.arn.contains("mrk-")).unwrap();
    let c = client(&sim, "111122223333", &single.region);
    let meta = c.describe_key().key_id(&single.arn).send().await.unwrap();
    assert_eq!(meta.key_metadata().unwrap().multi_region(), Some(false));
}

#[tokio::test]
async fn the_fleet_is_the_seeds_drift_and_reformatting_rates_and_reformatted_reads_differ() {
    let sim = KmsSim::start(quiet(fleet())).await;
    let again = KmsSim::start(quiet(fleet())).await;
    let views = sim.keys("111122223333");
    assert_eq!(views, again.keys("111122223333"), "same seed, same fleet");
    let replicas: Vec<_> = views.iter().filter(|v| v.replica).collect();
    let count = |k: Kind| replicas.iter().filter(|v| v.kind == k).count();
    // 60 replicas at 20 % drift and 30 % reformatted, drawn per replica.
    assert!(
        (6..=20).contains(&count(Kind::Drifted)),
        "{}",
        count(Kind::Drifted)
    );
    assert!((10..=28).contains(&count(Kind::Reformatted)));
    let reformatted = replicas
        .iter()
        .find(|v| v.kind == Kind::Reformatted)
        .unwrap();
    let in_sync = replicas
        .iter()
        .find(|v| v.kind == Kind::InSync && v.region == reformatted.region)
        .unwrap();
    assert_ne!(reformatted.policy, in_sync.policy);
    assert!(reformatted.policy.contains("\"Version\" : \"2012-10-17\""));
    assert!(
        in_sync
            .policy
            .contains(&format!("s3.{}.amazonaws.com", in_sync.region))
    );
}

#[tokio::test]
async fn a_written_policy_shows_only_after_the_consistency_delay() {
    let sim = KmsSim::start(SimConfig {
        consistency: Duration::from_millis(300),
        ..quiet(fleet())
    })
    .await;
    let c = client(&sim, "111122223333", "us-east-1");
    let key = first_key(&c).await;
    let before = c.get_key_policy().key_id(&key).send().await.unwrap().policy;
    let written = r#"{"Version":"2012-10-17","Statement":[]}"#;
    c.put_key_policy()
        .key_id(&key)
        .policy(written)
        .send()
        .await
        .unwrap();
    let soon = c.get_key_policy().key_id(&key).send().await.unwrap().policy;
    assert_eq!(soon, before, "still the old policy");
    tokio::time::sleep(Duration::from_millis(320)).await;
    let later = c.get_key_policy().key_id(&key).send().await.unwrap().policy;
    assert_eq!(later.as_deref(), Some(written));

    let bad = c
        .put_key_policy()
        .key_id(&key)
        .policy("{not json")
        .send()
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("MalformedPolicyDocumentException"));
}

#[tokio::test]
async fn latency_is_paid_per_call_and_time_compression_divides_it() {
    let slow = LatencyModel(
        Op::ALL
            .into_iter()
            .map(|op| (op, Latency::fixed(Duration::from_millis(40))))
            .collect(),
    );
    let sim = KmsSim::start(SimConfig {
        latency: slow.clone(),
        ..SimConfig::new(fleet())
    })
    .await;
    let c = client(&sim, "111122223333", "us-east-1");
    c.list_keys().send().await.unwrap();
    let t = Instant::now();
    c.list_keys().send().await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(40),
        "{:?}",
        t.elapsed()
    );

    let fast = KmsSim::start(SimConfig {
        latency: slow,
        time_scale: 4.0,
        ..SimConfig::new(fleet())
    })
    .await;
    let c = client(&fast, "111122223333", "us-east-1");
    c.list_keys().send().await.unwrap();
    let t = Instant::now();
    c.list_keys().send().await.unwrap();
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(10) && e < Duration::from_millis(35),
        "{e:?}"
    );
}

#[tokio::test]
async fn time_dilation_slows_the_refill_but_the_burst_stays_the_quotas_calls() {
    // 5 writes a second on a clock 4 times slower (as the benchmarks dilate time): the bucket
    // still admits 5 at once (a burst is a count of requests, not 5 / 4), then refills at
    // 1.25 a second of this clock.
    let quotas = Quotas([(Op::PutKeyPolicy, 5.0)].into_iter().collect());
    let sim = KmsSim::start(SimConfig {
        quotas,
        time_scale: 0.25,
        ..quiet(fleet())
    })
    .await;
    let c = client(&sim, "111122223333", "us-east-1");
    let key = first_key(&c).await;
    let put = || c.put_key_policy().key_id(&key).policy(BASELINE).send();
    let started = Instant::now();
    let mut refused = 0;
    for _ in 0..7 {
        refused += usize::from(put().await.is_err());
    }
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "within one refill"
    );
    assert_eq!(refused, 2, "a burst of 5 calls");
    // One token comes back every 800 ms of this clock (0.2 s of simulated time).
    tokio::time::sleep(Duration::from_millis(850)).await;
    put().await.unwrap();
    let e = put().await.unwrap_err();
    assert_eq!(e.code(), Some("ThrottlingException"));
}

#[tokio::test]
async fn a_pipelines_writes_spend_the_quota_uncounted_and_the_guards_are_logged() {
    let quotas = Quotas([(Op::PutKeyPolicy, 4.0)].into_iter().collect());
    let sim = KmsSim::start(SimConfig {
        quotas,
        ..quiet(fleet())
    })
    .await;
    let replica = sim
        .keys("111122223333")
        .into_iter()
        .find(|k| k.replica)
        .unwrap();
    // The pipeline spends the whole burst (4 tokens)...
    for _ in 0..4 {
        sim.put_policy_outside(&replica.arn, BASELINE).await;
    }
    // ...so the guard's next write in that account and Region is throttled.
    let c = client(&sim, "111122223333", &replica.region);
    let e = c
        .put_key_policy()
        .key_id(&replica.arn)
        .policy(BASELINE)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ThrottlingException"));
    let put = sim.totals()[&Op::PutKeyPolicy];
    assert_eq!(
        (put.calls, put.throttled),
        (1, 1),
        "only the guard's call counted"
    );
    assert!(
        sim.take_writes().is_empty(),
        "a refused write is not logged"
    );
    tokio::time::sleep(Duration::from_millis(260)).await;
    c.put_key_policy()
        .key_id(&replica.arn)
        .policy(BASELINE)
        .send()
        .await
        .unwrap();
    let logged = sim.take_writes();
    assert_eq!(logged.len(), 1);
    assert_eq!(
        (logged[0].arn.as_str(), logged[0].policy.as_str()),
        (replica.arn.as_str(), BASELINE)
    );
    assert!(sim.take_writes().is_empty(), "taken once");
}
