//! The engine on the in-memory fakes: every stage, its cost in calls, and its outcomes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::baseline::{Baseline, Template};
use crate::decide::{KeyState, MultiRegionRole, drift_name};
use crate::error::{CallError, ErrorKind};
use crate::fake::{FakeAws, FakeKey, MRK, arn};
use crate::key::{KeyArn, Place, Region};
use crate::outcome::{Action, Retry};
use crate::ports::{Claimed, PolicyStore, WriteClaim};
use crate::retry::Backoff;
use crate::settings::{FlapGuard, Mode, Settings};
use crate::tenancy::Tenancy;
use crate::trigger::{EventInfo, Scope, Target, Trigger};

const BASELINE: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::{{AccountId}}:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "App", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::{{AccountId}}:role/app"}, "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*"}
  ]
}"#;

fn rendered() -> String {
    BASELINE.replace("{{AccountId}}", "111122223333")
}

pub(super) const DEFAULT_POLICY: &str = r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;

pub(super) fn settings(mode: Mode, baseline: Baseline) -> Arc<Settings> {
    Arc::new(Settings {
        mode,
        baseline,
        baseline_match: Default::default(),
        mirror_rewrite: false,
        exclude_tag: Some("kms-replica-guard:exclude".into()),
        remediator: None,
        consistency: Backoff {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(1),
        },
        concurrency: 4,
        sweep_regions: vec!["us-west-2".parse().unwrap()],
        flap: FlapGuard::default(),
        trusted: Default::default(),
        exemption_max: None,
        tenancy: Tenancy::default(),
    })
}

fn own(regions: &[Region]) -> Vec<Place> {
    regions.iter().cloned().map(Place::own).collect()
}

fn template() -> Baseline {
    Baseline::Template(Template::new("literal", BASELINE).unwrap())
}

pub(super) fn event_on(region: &str, scope: Scope) -> Trigger {
    Trigger::Keys {
        event: EventInfo {
            id: Some("e-1".into()),
            ..EventInfo::named("PutKeyPolicy")
        },
        targets: vec![Target {
            key: arn(region),
            scope,
        }],
    }
}

async fn run(fake: &FakeAws, mode: Mode, baseline: Baseline, trigger: Trigger) -> Report {
    Reconciler::new(fake, fake, settings(mode, baseline))
        .run(&trigger)
        .await
}

/// An enforcing run of a replica-scoped event with the template baseline.
async fn enforce(fake: &FakeAws, region: &str) -> Report {
    run(
        fake,
        Mode::Enforce,
        template(),
        event_on(region, Scope::Key),
    )
    .await
}

fn only(report: &Report) -> &Outcome {
    assert_eq!(report.outcomes.len(), 1, "{report:#?}");
    &report.outcomes[0]
}

#[tokio::test]
async fn a_replica_with_the_default_policy_is_rewritten_and_verified_in_enforce_mode() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    let r = enforce(&fake, "us-west-2").await;
    let o = only(&r);
    assert_eq!(o.action(), Action::Remediated, "{o:#?}");
    assert!(o.diff.as_deref().unwrap().contains("App"), "{o:#?}");
    assert_eq!(fake.policy(&arn("us-west-2")), rendered());
    assert_eq!(
        fake.policy(&arn("eu-west-1")),
        DEFAULT_POLICY,
        "other replicas untouched"
    );
    assert_eq!(fake.count("PutKeyPolicy"), 1);
    assert_eq!(fake.count("GetKeyPolicy"), 2, "read, then verify");
}

#[tokio::test]
async fn dry_run_reports_drift_and_writes_nothing() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let r = run(
        &fake,
        Mode::DryRun,
        template(),
        event_on("us-west-2", Scope::Key),
    )
    .await;
    assert_eq!(only(&r).action(), Action::DriftDetected);
    assert!(only(&r).diff.is_some());
    assert_eq!(fake.count("PutKeyPolicy"), 0);
    assert_eq!(fake.policy(&arn("us-west-2")), DEFAULT_POLICY);
}

#[tokio::test]
async fn an_equivalent_but_reformatted_policy_is_in_sync_and_costs_two_calls() {
    let reformatted = r#"{"Statement":[{"Resource":"*","Action":["KMS:encrypt","kms:Decrypt","kms:Decrypt"],"Principal":{"AWS":["arn:aws:iam::111122223333:role/app"]},"Effect":"allow","Sid":"App"},{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":["*"]}],"Version":"2012-10-17"}"#;
    let fake = FakeAws::family(reformatted, &["us-west-2"]);
    let r = enforce(&fake, "us-west-2").await;
    assert_eq!(only(&r).action(), Action::InSync, "{r:#?}");
    assert_eq!(
        fake.policy(&arn("us-west-2")),
        reformatted,
        "left byte for byte"
    );
    assert_eq!(
        fake.calls.lock().unwrap().len(),
        2,
        "DescribeKey + GetKeyPolicy only"
    );
}

#[tokio::test]
async fn replaying_the_same_event_writes_once() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
    let trigger = event_on("us-west-2", Scope::Key);
    let mut actions = vec![];
    for _ in 0..20 {
        actions.push(only(&engine.run(&trigger).await).action());
    }
    assert_eq!(fake.count("PutKeyPolicy"), 1);
    assert_eq!(actions[0], Action::Remediated);
    assert!(actions[1..].iter().all(|a| *a == Action::InSync));
}

#[tokio::test]
async fn a_primary_is_never_written_and_is_skipped_when_not_mirrored() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let r = enforce(&fake, "us-east-1").await;
    assert_eq!(only(&r).action(), Action::Skipped);
    assert_eq!(fake.count("PutKeyPolicy"), 0);
}

#[tokio::test]
async fn a_primary_policy_change_is_mirrored_to_every_replica() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    let primary_policy = rendered().replace("role/app", "role/app-v2");
    fake.with_key(&arn("us-east-1"), |k| k.policy = primary_policy.clone());
    let r = run(
        &fake,
        Mode::Enforce,
        Baseline::Primary,
        event_on("us-east-1", Scope::Key),
    )
    .await;
    assert_eq!(r.count(Action::Remediated), 2, "{r:#?}");
    for region in ["us-west-2", "eu-west-1"] {
        assert!(fake.policy(&arn(region)).contains("role/app-v2"));
    }
    assert_eq!(
        fake.policy(&arn("us-east-1")),
        primary_policy,
        "the primary is the source, never written"
    );
    let primary_reads = fake
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(op, on)| *op == "GetKeyPolicy" && on.contains("us-east-1"))
        .count();
    assert_eq!(
        primary_reads, 1,
        "the primary's policy is read once per run"
    );
}

#[tokio::test]
async fn a_moved_primary_reconciles_all_related_replicas() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    let r = run(
        &fake,
        Mode::DryRun,
        template(),
        event_on("us-east-1", Scope::AllRelated),
    )
    .await;
    assert_eq!(r.count(Action::DriftDetected), 2, "{r:#?}");
}

#[tokio::test]
async fn an_excluded_replica_is_skipped_with_its_drift_shown() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.with_key(&arn("us-west-2"), |k| {
        k.tags = [("kms-replica-guard:exclude".into(), String::new())].into()
    });
    let r = enforce(&fake, "us-west-2").await;
    let o = only(&r);
    assert_eq!(o.action(), Action::Skipped);
    assert!(o.reason().as_deref().unwrap().contains("excluded"));
    assert!(o.diff.is_some());
    assert_eq!(fake.count("PutKeyPolicy"), 0);
}

#[tokio::test]
async fn with_exclusion_by_tag_off_a_fix_costs_four_calls_and_tags_are_not_read() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.with_key(&arn("us-west-2"), |k| {
        k.tags = [("kms-replica-guard:exclude".into(), String::new())].into()
    });
    let mut s = (*settings(Mode::Enforce, template())).clone();
    s.exclude_tag = None;
    let r = Reconciler::new(&fake, &fake, Arc::new(s))
        .run(&event_on("us-west-2", Scope::Key))
        .await;
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
    let calls = fake.operations();
    assert_eq!(
        calls,
        [
            "DescribeKey",
            "GetKeyPolicy",
            "PutKeyPolicy",
            "GetKeyPolicy"
        ],
        "no ListResourceTags"
    );
}

#[tokio::test]
async fn keys_pending_deletion_are_skipped_with_the_reason() {
    for state in [
        KeyState::PendingDeletion,
        KeyState::PendingReplicaDeletion,
        KeyState::Unavailable,
    ] {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.with_key(&arn("us-west-2"), |k| k.facts.state = state.clone());
        let r = enforce(&fake, "us-west-2").await;
        assert_eq!(only(&r).action(), Action::Skipped, "{state:?}");
        assert!(
            only(&r).reason().as_deref().unwrap().contains("pending")
                || state == KeyState::Unavailable
        );
        assert_eq!(fake.count("GetKeyPolicy"), 0);
    }
}

#[tokio::test]
async fn a_fresh_replica_not_yet_visible_is_waited_for_then_fixed_while_still_creating() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.with_key(&arn("us-west-2"), |k| {
        k.invisible_for = 1;
        k.creating_for = 1;
    });
    let r = enforce(&fake, "us-west-2").await;
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
    assert_eq!(
        fake.count("DescribeKey"),
        2,
        "not found, then Creating: no wait"
    );
}

#[tokio::test]
async fn a_replica_still_creating_is_managed_without_waiting() {
    // KMS: "While the key state is Creating, you can manage key, but you cannot yet use it
    // in cryptographic operations."
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.with_key(&arn("us-west-2"), |k| k.creating_for = 99);
    let r = enforce(&fake, "us-west-2").await;
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
    assert_eq!(fake.count("DescribeKey"), 1, "one DescribeKey, no wait");
    assert_eq!(fake.count("PutKeyPolicy"), 1);
    assert_eq!(fake.policy(&arn("us-west-2")), rendered());
}

#[tokio::test]
async fn a_key_that_never_appears_fails_retryably() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.with_key(&arn("us-west-2"), |k| k.invisible_for = 99);
    let r = enforce(&fake, "us-west-2").await;
    let o = only(&r);
    assert_eq!(o.retry(), Some(Retry::Retryable));
    assert!(
        o.reason().as_deref().unwrap().contains("still not found"),
        "{o:#?}"
    );
}

#[tokio::test]
async fn an_invalid_rendered_baseline_writes_nothing() {
    let lockout = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:role/app"},"Action":"kms:Decrypt","Resource":"*"}]}"#;
    let baseline = Baseline::Template(Template::new("literal", lockout).unwrap());
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let r = run(
        &fake,
        Mode::Enforce,
        baseline,
        event_on("us-west-2", Scope::Key),
    )
    .await;
    let o = only(&r);
    assert_eq!(
        (o.action(), o.retry()),
        (Action::Failed, Some(Retry::NonRetryable))
    );
    assert!(
        o.reason().as_deref().unwrap().contains("lock out"),
        "{o:#?}"
    );
    assert_eq!(fake.count("PutKeyPolicy"), 0);
}

#[tokio::test]
async fn a_primary_policy_that_would_lock_out_the_remediator_is_not_mirrored() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.with_key(&arn("us-east-1"), |k| {
            k.policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/app"},"Action":"kms:*","Resource":"*"}]}"#.into()
        });
    let r = run(
        &fake,
        Mode::Enforce,
        Baseline::Primary,
        event_on("us-west-2", Scope::Key),
    )
    .await;
    assert_eq!(only(&r).action(), Action::Failed);
    assert_eq!(fake.count("PutKeyPolicy"), 0);
}

#[tokio::test]
async fn a_policy_kms_stores_differently_is_a_verification_failure_not_a_loop() {
    let mut fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.put_rewrite = Some(|p| p.replace("kms:Encrypt", "kms:ReEncrypt*"));
    let r = enforce(&fake, "us-west-2").await;
    let o = only(&r);
    assert_eq!(
        (o.action(), o.retry()),
        (Action::Failed, Some(Retry::NonRetryable))
    );
    assert!(
        o.reason()
            .as_deref()
            .unwrap()
            .contains("verification failed"),
        "{o:#?}"
    );
    assert_eq!(
        fake.count("PutKeyPolicy"),
        1,
        "one write, no retry loop inside the run"
    );
}

#[tokio::test]
async fn failures_carry_the_retry_class_of_their_cause() {
    for (op, kind, retry) in [
        ("GetKeyPolicy", ErrorKind::Throttled, Retry::Retryable),
        ("PutKeyPolicy", ErrorKind::Transient, Retry::Retryable),
        ("PutKeyPolicy", ErrorKind::AccessDenied, Retry::NonRetryable),
        ("DescribeKey", ErrorKind::AccessDenied, Retry::NonRetryable),
    ] {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        fake.fail(op, &[kind]);
        let r = enforce(&fake, "us-west-2").await;
        let o = only(&r);
        assert_eq!(
            (o.action(), o.retry()),
            (Action::Failed, Some(retry)),
            "{op} {kind:?}"
        );
        assert_eq!(
            fake.policy(&arn("us-west-2")),
            DEFAULT_POLICY,
            "{op} {kind:?}: nothing half-written"
        );
    }
}

#[tokio::test]
async fn a_sweep_checks_every_replica_in_its_regions_and_only_them() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    let single: KeyArn =
        "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            .parse()
            .unwrap();
    let mut k = fake.keys.lock().unwrap()[&arn("us-west-2")].clone();
    k.facts.arn = single.clone();
    k.facts.multi_region = None;
    fake.keys.lock().unwrap().insert(single.clone(), k);
    let trigger = Trigger::Sweep {
        accounts: None,
        regions: Some(vec![
            "us-east-1".parse().unwrap(),
            "us-west-2".parse().unwrap(),
        ]),
    };
    let r = run(&fake, Mode::DryRun, template(), trigger).await;
    assert_eq!(only(&r).key_arn, arn("us-west-2"), "{r:#?}");
    assert_eq!(
        r.summary.as_ref().unwrap().get(&Action::DriftDetected),
        Some(&1)
    );
    assert_eq!(only(&r).action(), Action::DriftDetected);
    let described: Vec<String> = fake
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(op, _)| *op == "DescribeKey")
        .map(|(_, on)| on.clone())
        .collect();
    assert!(
        !described.contains(&single.to_string()),
        "no call for single-Region keys"
    );
}

#[tokio::test]
async fn a_region_that_cannot_be_listed_is_a_run_error() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.fail("ListKeys", &[ErrorKind::AccessDenied]);
    let r = run(
        &fake,
        Mode::DryRun,
        template(),
        Trigger::Sweep {
            accounts: None,
            regions: None,
        },
    )
    .await;
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.failure_class(), Some(Retry::NonRetryable));
}

fn with_backups(fake: &FakeAws, mode: Mode) -> Reconciler<&FakeAws, &FakeAws, &FakeAws> {
    Reconciler::with_backups(fake, fake, fake, settings(mode, template()))
}

#[tokio::test]
async fn a_sweep_describes_each_key_id_once_and_counts_in_sync_replicas_without_listing_them() {
    let fake = FakeAws::family(&rendered(), &["us-west-2", "eu-west-1"]);
    fake.with_key(&arn("eu-west-1"), |k| k.policy = DEFAULT_POLICY.into());
    let regions: Vec<Region> = ["us-east-1", "us-west-2", "eu-west-1"]
        .map(|r| r.parse().unwrap())
        .to_vec();
    let engine = Reconciler::new(&fake, &fake, settings(Mode::DryRun, template()));
    let r = engine.sweep(&own(&regions), &Quiet).await;
    assert_eq!(only(&r).key_arn, arn("eu-west-1"), "{r:#?}");
    let summary = r.summary.clone().unwrap();
    assert_eq!(summary.get(&Action::InSync), Some(&1));
    assert_eq!(summary.get(&Action::DriftDetected), Some(&1));
    assert_eq!(fake.count("ListKeys"), 3);
    assert_eq!(
        fake.count("DescribeKey"),
        2,
        "one per key id, plus the drifted replica's own state"
    );
    assert_eq!(fake.count("GetKeyPolicy"), 2, "one per replica");
    assert_eq!(
        fake.count("ListResourceTags"),
        1,
        "tags only for the drifted replica"
    );
}

#[tokio::test]
async fn the_previous_policy_is_backed_up_before_every_write() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let engine = with_backups(&fake, Mode::Enforce);
    let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
    let backups = fake.backups.lock().unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].policy, DEFAULT_POLICY);
    assert_eq!(backups[0].event_id.as_deref(), Some("e-1"));
    let calls = fake.operations();
    let backup_at = calls.iter().position(|op| *op == "PutObject").unwrap();
    let write_at = calls.iter().position(|op| *op == "PutKeyPolicy").unwrap();
    assert!(backup_at < write_at, "{calls:?}");
    assert!(only(&r).reason().as_deref().unwrap().contains("memory://1"));
}

#[tokio::test]
async fn a_failed_backup_blocks_the_write() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.fail("PutObject", &[ErrorKind::AccessDenied]);
    let r = with_backups(&fake, Mode::Enforce)
        .run(&event_on("us-west-2", Scope::Key))
        .await;
    failed_without_write(
        &fake,
        only(&r),
        Retry::NonRetryable,
        "could not be backed up",
    );
}

#[tokio::test]
async fn a_key_that_keeps_drifting_back_trips_the_flap_guard() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let engine = with_backups(&fake, Mode::Enforce);
    let trigger = event_on("us-west-2", Scope::Key);
    let mut actions = Vec::new();
    for _ in 0..8 {
        // Another automation puts its own policy back after every fix.
        fake.with_key(&arn("us-west-2"), |k| k.policy = DEFAULT_POLICY.into());
        let r = engine.run(&trigger).await;
        actions.push(only(&r).action());
        if only(&r).action() == Action::Skipped {
            assert!(only(&r).is_flap_suppressed(), "{r:#?}");
            assert!(
                r.metrics()
                    .iter()
                    .any(|d| d.metric.name() == "FlapSuppressed" && d.value == 1.0)
            );
        }
    }
    assert_eq!(
        fake.count("PutKeyPolicy"),
        5,
        "FLAP_MAX writes, then hands off: {actions:?}"
    );
    assert!(
        actions[5..].iter().all(|a| *a == Action::Skipped),
        "{actions:?}"
    );
}

#[tokio::test]
async fn without_backups_the_flap_guard_counts_writes_in_memory() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
    for _ in 0..7 {
        fake.with_key(&arn("us-west-2"), |k| k.policy = DEFAULT_POLICY.into());
        engine.run(&event_on("us-west-2", Scope::Key)).await;
    }
    assert_eq!(fake.count("PutKeyPolicy"), 5);
}

/// Delivers the same event three times (Lambda's async retries after function errors)
/// and returns the reasons of the failures.
async fn deliver_thrice<B: BackupStore>(engine: &Reconciler<&FakeAws, &FakeAws, B>) -> Vec<String> {
    let mut reasons = vec![];
    for _ in 0..3 {
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        let o = only(&r).clone();
        assert_eq!(
            (o.action(), o.retry()),
            (Action::Failed, Some(Retry::NonRetryable)),
            "{o:#?}"
        );
        assert!(o.diff.is_some(), "the diff shows what KMS stored");
        reasons.push(o.reason().unwrap());
    }
    reasons
}

#[tokio::test]
async fn a_verification_failure_is_not_written_again_when_lambda_redelivers_the_event() {
    let rewrite: fn(&str) -> String = |p| p.replace("kms:Encrypt", "kms:ReEncrypt*");
    // Durable history (backups kept), then in-process history (no backups).
    let mut durable = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    durable.put_rewrite = Some(rewrite);
    let reasons_durable = deliver_thrice(&with_backups(&durable, Mode::Enforce)).await;
    let mut memory = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    memory.put_rewrite = Some(rewrite);
    let engine = Reconciler::new(&memory, &memory, settings(Mode::Enforce, template()));
    let reasons_memory = deliver_thrice(&engine).await;
    for (fake, reasons) in [(&durable, reasons_durable), (&memory, reasons_memory)] {
        assert_eq!(fake.count("PutKeyPolicy"), 1, "{reasons:#?}");
        assert!(reasons[0].contains("verification failed:"), "{reasons:?}");
        for r in &reasons[1..] {
            assert!(r.contains("verification failed earlier"), "{r}");
            assert!(r.contains("not written again"), "{r}");
        }
    }
}

#[tokio::test]
async fn after_a_verification_failure_a_changed_baseline_or_policy_is_written_again() {
    let mut fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.put_rewrite = Some(|p| p.replace("kms:Encrypt", "kms:ReEncrypt*"));
    let engine = with_backups(&fake, Mode::Enforce);
    engine.run(&event_on("us-west-2", Scope::Key)).await;
    assert_eq!(fake.count("PutKeyPolicy"), 1);
    // Someone else rewrites the policy: it is no longer what KMS stored for our write,
    // so the baseline is written (and fails verification) once more.
    fake.keys
        .lock()
        .unwrap()
        .get_mut(&arn("us-west-2"))
        .unwrap()
        .policy = DEFAULT_POLICY.to_owned();
    let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
    assert!(
        only(&r)
            .reason()
            .as_deref()
            .unwrap()
            .starts_with("verification failed:")
    );
    assert_eq!(fake.count("PutKeyPolicy"), 2);
    // A fixed baseline (what KMS stores) is written and verified.
    let fixed = BASELINE.replace("kms:Encrypt", "kms:ReEncrypt*");
    let engine = Reconciler::with_backups(
        &fake,
        &fake,
        &fake,
        settings(
            Mode::Enforce,
            Baseline::Template(Template::new("literal", &fixed).unwrap()),
        ),
    );
    let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
    assert_eq!(only(&r).action(), Action::InSync, "{r:#?}");
}

#[tokio::test]
async fn failed_writes_are_not_counted_by_the_flap_guard() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.fail("PutKeyPolicy", &[ErrorKind::AccessDenied; 8]);
    let engine = with_backups(&fake, Mode::Enforce);
    for delivery in 0..8 {
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        let o = only(&r);
        assert_eq!(
            (o.action(), o.retry()),
            (Action::Failed, Some(Retry::NonRetryable)),
            "delivery {delivery}: a denied write stays a failure, never `flapping`: {o:#?}"
        );
    }
    assert_eq!(
        fake.backups.lock().unwrap().len(),
        8,
        "a backup before each attempt"
    );
    assert!(
        fake.writes.lock().unwrap().is_empty(),
        "no write went through"
    );
    let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
}

#[tokio::test]
async fn a_stale_read_right_after_the_write_is_read_again_then_verified() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    *fake.stale_reads.lock().unwrap() = 2;
    let r = enforce(&fake, "us-west-2").await;
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
    assert_eq!(
        fake.count("GetKeyPolicy"),
        4,
        "read, two stale re-reads, verify"
    );

    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    *fake.stale_reads.lock().unwrap() = 10;
    let r = enforce(&fake, "us-west-2").await;
    let o = only(&r);
    assert_eq!(
        (o.action(), o.retry()),
        (Action::Failed, Some(Retry::Retryable)),
        "{o:#?}"
    );
    assert!(
        o.reason()
            .as_deref()
            .unwrap()
            .contains("still returned the previous policy")
    );
    assert_eq!(fake.count("PutKeyPolicy"), 1);
    assert_eq!(
        fake.policy(&arn("us-west-2")),
        rendered(),
        "the write stands"
    );
}

/// Just after UpdatePrimaryRegion(us-east-1 -> us-west-2): both keys are Updating and
/// DescribeKey may show both as replicas (KMS developer guide).
fn primary_moving(fake: &FakeAws) {
    let all = vec![arn("us-east-1"), arn("us-west-2"), arn("eu-west-1")];
    for region in ["us-east-1", "us-west-2"] {
        fake.with_key(&arn(region), |k| {
            k.facts.state = KeyState::Updating;
            let mr = k.facts.multi_region.as_mut().unwrap();
            mr.role = MultiRegionRole::Replica;
            mr.replicas = all.clone();
        });
    }
    fake.with_key(&arn("eu-west-1"), |k| {
        k.facts.multi_region.as_mut().unwrap().replicas = all.clone();
    });
}

#[tokio::test]
async fn nothing_is_written_while_a_primary_region_change_is_updating_the_keys() {
    for baseline in [template(), Baseline::Primary] {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
        primary_moving(&fake);
        let moved = event_on("us-east-1", Scope::AllRelated);
        let r = run(&fake, Mode::Enforce, baseline, moved).await;
        let o = only(&r);
        assert_eq!(
            (o.action(), o.retry()),
            (Action::Failed, Some(Retry::Retryable)),
            "{o:#?}"
        );
        assert!(
            o.reason().as_deref().unwrap().contains("Updating"),
            "{o:#?}"
        );
        assert_eq!(fake.count("PutKeyPolicy"), 0);

        // A sweep in the middle of it writes nothing either, and says why for each copy.
        let regions: Vec<Region> = ["us-east-1", "us-west-2", "eu-west-1"]
            .map(|r| r.parse().unwrap())
            .to_vec();
        let r = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()))
            .sweep(&own(&regions), &Quiet)
            .await;
        assert_eq!(r.outcomes.len(), 3, "{r:#?}");
        assert!(
            r.outcomes
                .iter()
                .all(|o| o.retry() == Some(Retry::Retryable))
        );
        assert_eq!(fake.count("PutKeyPolicy"), 0);
    }
}

#[tokio::test]
async fn a_replica_whose_own_state_is_updating_is_not_written_by_a_fan_out() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    fake.with_key(&arn("us-west-2"), |k| k.facts.state = KeyState::Updating);
    let moved = event_on("us-east-1", Scope::AllRelated);
    let r = run(&fake, Mode::Enforce, template(), moved).await;
    let by_region = |region: &str| {
        r.outcomes
            .iter()
            .find(|o| o.region.as_str() == region)
            .unwrap()
    };
    assert_eq!(by_region("us-west-2").action(), Action::Failed, "{r:#?}");
    assert_eq!(
        by_region("eu-west-1").action(),
        Action::Remediated,
        "{r:#?}"
    );
    assert_eq!(fake.policy(&arn("us-west-2")), DEFAULT_POLICY);
}

#[tokio::test]
async fn a_sweep_describes_the_next_copy_when_one_cannot_be_described() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    fake.fail("DescribeKey", &[ErrorKind::AccessDenied]);
    let regions: Vec<Region> = ["us-west-2", "eu-west-1", "us-east-1"]
        .map(|r| r.parse().unwrap())
        .to_vec();
    let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
    let r = engine.sweep(&own(&regions), &Quiet).await;
    let failed: Vec<_> = r.failures().map(|o| o.key_arn.clone()).collect();
    assert_eq!(failed.len(), 1, "{r:#?}");
    let remediated: Vec<_> = r
        .outcomes
        .iter()
        .filter(|o| o.action() == Action::Remediated)
        .map(|o| o.key_arn.clone())
        .collect();
    assert_eq!(remediated.len(), 1, "the sibling is still fixed: {r:#?}");
    assert_ne!(failed[0], remediated[0]);
    assert_eq!(fake.policy(&remediated[0]), rendered());
    assert_eq!(r.failure_class(), Some(Retry::NonRetryable));
}

/// `o` failed as `retry` with a reason containing `says`, and the us-west-2 replica was
/// not written.
fn failed_without_write(fake: &FakeAws, o: &Outcome, retry: Retry, says: &str) {
    assert_eq!(
        (o.action(), o.retry()),
        (Action::Failed, Some(retry)),
        "{o:#?}"
    );
    assert!(o.reason().as_deref().unwrap().contains(says), "{o:#?}");
    assert_eq!(fake.count("PutKeyPolicy"), 0);
    assert_eq!(fake.policy(&arn("us-west-2")), DEFAULT_POLICY);
}

/// One enforcing event on the us-west-2 replica, through a store that keeps claims.
async fn claimed_run(fake: &FakeAws) -> Outcome {
    let r = with_backups(fake, Mode::Enforce)
        .run(&event_on("us-west-2", Scope::Key))
        .await;
    only(&r).clone()
}

#[tokio::test]
async fn a_fix_claimed_by_a_concurrent_invocation_is_waited_for_and_not_written_again() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.foreign_claims.lock().unwrap().push(SystemTime::now());
    // The holder's write lands right after this invocation read the drifted policy.
    fake.with_key(&arn("us-west-2"), |k| k.policy = rendered());
    fake.written_concurrently(&arn("us-west-2"), DEFAULT_POLICY);
    let o = claimed_run(&fake).await;
    assert_eq!(o.action(), Action::InSync, "{o:#?}");
    let reason = o.reason().unwrap();
    assert!(
        reason.contains("written by a concurrent invocation"),
        "{reason}"
    );
    assert!(reason.contains("event CreateKey other"), "{reason}");
    assert!(o.diff.is_some(), "the drift it found is still shown");
    assert_eq!(fake.count("PutKeyPolicy"), 0);
    assert!(fake.backups.lock().unwrap().is_empty(), "no backup either");
    assert_eq!(
        fake.count("DeleteObject"),
        0,
        "another invocation's claim is left to it"
    );
}

#[tokio::test]
async fn a_claimed_fix_that_never_lands_fails_retryably_and_writes_nothing() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.foreign_claims.lock().unwrap().push(SystemTime::now());
    let o = claimed_run(&fake).await;
    failed_without_write(
        &fake,
        &o,
        Retry::Retryable,
        "had not landed after 3 re-reads",
    );
}

#[tokio::test]
async fn an_abandoned_claim_is_taken_over_and_the_fix_written_once() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let long_ago = SystemTime::now() - CLAIM_TTL - Duration::from_secs(1);
    fake.foreign_claims.lock().unwrap().push(long_ago);
    let o = claimed_run(&fake).await;
    assert_eq!(o.action(), Action::Remediated, "{o:#?}");
    assert_eq!(fake.count("PutKeyPolicy"), 1);
    assert_eq!(fake.policy(&arn("us-west-2")), rendered());
    assert_eq!(
        fake.count("DeleteObject"),
        2,
        "the abandoned claim, then this invocation's own"
    );
    assert!(fake.claims.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_claim_is_released_whatever_the_write_did_so_the_next_event_can_write() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.fail("PutKeyPolicy", &[ErrorKind::AccessDenied]);
    let denied = claimed_run(&fake).await;
    assert_eq!(denied.action(), Action::Failed, "{denied:#?}");
    assert!(
        fake.claims.lock().unwrap().is_empty(),
        "released after a denied write"
    );
    let fixed = claimed_run(&fake).await;
    assert_eq!(fixed.action(), Action::Remediated, "{fixed:#?}");
    assert!(
        fake.claims.lock().unwrap().is_empty(),
        "released after a verified write"
    );
    let calls = fake.operations();
    let claimed = calls
        .iter()
        .rposition(|op| *op == "PutObject If-None-Match")
        .unwrap();
    let backup = calls.iter().rposition(|op| *op == "PutObject").unwrap();
    assert!(
        claimed < backup,
        "claimed before the backup and the write: {calls:?}"
    );
}

#[tokio::test]
async fn a_claim_that_cannot_be_taken_writes_nothing() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.fail("PutObject If-None-Match", &[ErrorKind::AccessDenied]);
    let o = claimed_run(&fake).await;
    failed_without_write(&fake, &o, Retry::NonRetryable, "could not be claimed");
    assert!(fake.backups.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_a_bucket_claims_are_kept_in_memory_and_released() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
    let key = arn("us-west-2");
    let held = WriteClaim {
        key: key.clone(),
        drift: drift_name(DEFAULT_POLICY, &rendered()),
        at: SystemTime::now(),
        event_id: Some("other".into()),
        event_name: "CreateKey".into(),
    };
    assert_eq!(engine.claim(&held).await, Ok(Claimed::Won));
    let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
    assert_eq!(
        only(&r).action(),
        Action::Failed,
        "held in this process: {r:#?}"
    );
    assert_eq!(fake.count("PutKeyPolicy"), 0);
    engine.backups.release(&held).await.unwrap();
    let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
    assert!(engine.backups.holds_no_claims());
    assert_eq!(
        fake.count("PutObject If-None-Match"),
        0,
        "the store is not asked"
    );
}

#[tokio::test]
async fn a_fix_with_a_bucket_makes_five_store_calls_around_the_write() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    assert_eq!(claimed_run(&fake).await.action(), Action::Remediated);
    let calls = fake.operations();
    let kms = [
        "DescribeKey",
        "GetKeyPolicy",
        "ListResourceTags",
        "PutKeyPolicy",
    ];
    let store: Vec<&str> = calls
        .iter()
        .copied()
        .filter(|op| !kms.contains(op))
        .collect();
    assert_eq!(
        store,
        [
            "ListObjectsV2",           // write history (flap guard, earlier mismatch)
            "PutObject If-None-Match", // the claim
            "PutObject",               // the backup
            "PutObject",               // the write record
            "DeleteObject",            // the claim released
        ],
        "{calls:?}"
    );
    let write = calls.iter().position(|op| *op == "PutKeyPolicy").unwrap();
    assert_eq!(
        calls[write - 1],
        "PutObject",
        "backed up just before: {calls:?}"
    );
}

/// The rendered baseline with one more principal in the App statement.
fn with_app_principal(principal: &str) -> String {
    rendered().replace(
        r#""AWS": "arn:aws:iam::111122223333:role/app"}"#,
        &format!(r#""AWS": ["arn:aws:iam::111122223333:role/app", "{principal}"]}}"#),
    )
}

#[tokio::test]
async fn a_primary_that_shows_a_deleted_principal_is_not_mirrored_and_names_it() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    let shown = with_app_principal("AROA6QJX2M4TBCKL7WZNE");
    assert_ne!(shown, rendered(), "the test policy names the unique id");
    fake.with_key(&arn("us-east-1"), |k| k.policy = shown);
    let r = run(
        &fake,
        Mode::Enforce,
        Baseline::Primary,
        event_on("us-east-1", Scope::Key),
    )
    .await;
    assert_eq!(r.count(Action::Failed), 2, "{r:#?}");
    for o in &r.outcomes {
        assert_eq!(o.retry(), Some(Retry::NonRetryable), "{o:#?}");
        let reason = o.reason().unwrap();
        assert!(reason.contains("AROA6QJX2M4TBCKL7WZNE"), "{reason}");
        assert!(reason.contains("fix the primary"), "{reason}");
    }
    assert_eq!(fake.count("PutKeyPolicy"), 0, "refused before any write");
    // Dry-run reports it the same way: failed, not drift-detected.
    let r = run(
        &fake,
        Mode::DryRun,
        Baseline::Primary,
        event_on("us-west-2", Scope::Key),
    )
    .await;
    assert_eq!(only(&r).action(), Action::Failed, "{r:#?}");
}

#[tokio::test]
async fn a_mirrored_statement_kms_accepts_but_ignores_is_written_as_the_primary_has_it() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let inert = rendered().replace("\"Action\": [\"kms:Decrypt\", \"kms:Encrypt\"], ", "");
    assert!(
        !inert.contains("kms:Decrypt"),
        "the App statement lost its Action"
    );
    fake.with_key(&arn("us-east-1"), |k| k.policy = inert.clone());
    let r = run(
        &fake,
        Mode::Enforce,
        Baseline::Primary,
        event_on("us-west-2", Scope::Key),
    )
    .await;
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
    assert!(krg_policy::equivalent(&fake.policy(&arn("us-west-2")), &inert).unwrap());
    // The same document as a configured baseline is refused.
    let strict = Baseline::Template(Template::new("literal", inert).unwrap());
    let r = run(
        &fake,
        Mode::Enforce,
        strict,
        event_on("us-west-2", Scope::Key),
    )
    .await;
    assert_eq!(only(&r).action(), Action::Failed, "{r:#?}");
    assert!(only(&r).reason().unwrap().contains("Action"));
}

#[tokio::test]
async fn a_backup_that_names_a_deleted_principal_is_not_restored() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
    let o = engine
        .restore(
            &arn("us-west-2"),
            &with_app_principal("AIDA6QJX2M4TF6L3NWUZQ"),
            "s3://b/backup.json",
        )
        .await;
    assert_eq!(o.retry(), Some(Retry::NonRetryable), "{o:#?}");
    let reason = o.reason().unwrap();
    assert!(reason.contains("AIDA6QJX2M4TF6L3NWUZQ"), "{reason}");
    assert!(reason.contains("s3://b/backup.json"), "{reason}");
    assert_eq!(fake.count("PutKeyPolicy"), 0);
}

#[tokio::test]
async fn a_principal_that_becomes_visible_after_two_refusals_is_written_once() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.fail(
        "PutKeyPolicy",
        &[ErrorKind::InvalidPrincipals, ErrorKind::InvalidPrincipals],
    );
    let r = enforce(&fake, "us-west-2").await;
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
    assert_eq!(fake.count("PutKeyPolicy"), 3, "two refused, one accepted");
    assert_eq!(fake.policy(&arn("us-west-2")), rendered());
}

#[tokio::test]
async fn a_principal_that_does_not_exist_fails_bounded_and_names_the_principals() {
    use super::verify::PRINCIPAL_ATTEMPTS;
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.fail("PutKeyPolicy", &[ErrorKind::InvalidPrincipals; 10]);
    let engine = Reconciler::new(&fake, &fake, settings(Mode::Enforce, template()));
    let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
    let o = only(&r);
    assert_eq!(
        (o.action(), o.retry()),
        (Action::Failed, Some(Retry::NonRetryable)),
        "{o:#?}"
    );
    let reason = o.reason().unwrap();
    assert!(
        reason.contains("arn:aws:iam::111122223333:role/app"),
        "{reason}"
    );
    assert!(reason.contains("create the missing principal"), "{reason}");
    assert_eq!(fake.count("PutKeyPolicy") as u32, PRINCIPAL_ATTEMPTS);
    assert_eq!(
        fake.policy(&arn("us-west-2")),
        DEFAULT_POLICY,
        "nothing written"
    );
    // Redelivered: the same bounded attempts, never a flap-guard trip (refusals are not writes).
    for _ in 0..6 {
        fake.fail("PutKeyPolicy", &[ErrorKind::InvalidPrincipals; 10]);
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(only(&r).action(), Action::Failed, "{r:#?}");
        assert!(!only(&r).is_flap_suppressed());
    }
}

#[tokio::test]
async fn a_refusal_by_kms_lockout_check_is_a_configuration_failure() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.fail("PutKeyPolicy", &[ErrorKind::LockoutRefused]);
    let r = enforce(&fake, "us-west-2").await;
    let o = only(&r);
    assert_eq!(
        (o.action(), o.retry()),
        (Action::Failed, Some(Retry::NonRetryable)),
        "{o:#?}"
    );
    let reason = o.reason().unwrap();
    assert!(reason.contains("lockout safety check"), "{reason}");
    assert!(
        reason.contains("drift from literal"),
        "names the baseline: {reason}"
    );
    assert_eq!(fake.count("PutKeyPolicy"), 1, "never retried");
}

mod member_accounts {
    //! Member accounts: the fake's keys live in account 111122223333, here a member of a hub
    //! whose own account is 999999999999.
    use super::*;
    use crate::outcome::{Metric, Skip};
    use crate::tenancy::{Fleet, MemberRole};

    const MEMBER_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Member","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:role/kms-replica-guard-member"},"Action":"kms:*","Resource":"*"}]}"#;

    fn hub(members: &str, baseline: Baseline) -> Arc<Settings> {
        let mut s = (*settings(Mode::Enforce, baseline)).clone();
        s.remediator = Some("arn:aws:iam::999999999999:role/hub".parse().unwrap());
        s.tenancy = Tenancy {
            home: Some("999999999999".parse().unwrap()),
            fleet: Some(Fleet {
                role: MemberRole::new("kms-replica-guard-member", None).unwrap(),
                members: members.parse().unwrap(),
            }),
        };
        Arc::new(s)
    }

    fn member_only() -> Baseline {
        Baseline::Template(Template::new("literal", MEMBER_ONLY).unwrap())
    }

    #[tokio::test]
    async fn a_member_accounts_replica_is_healed_with_the_member_role_kept_in_the_policy() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let engine = Reconciler::new(&fake, &fake, hub("111122223333", member_only()));
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
        assert!(
            fake.policy(&arn("us-west-2"))
                .contains("role/kms-replica-guard-member")
        );
    }

    #[tokio::test]
    async fn at_home_the_lockout_check_wants_the_hubs_own_role_not_the_member_role() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let mut s = (*hub("222222222222", member_only())).clone();
        s.tenancy.home = Some(ACCOUNT_OF_FAKE.parse().unwrap());
        s.remediator = Some(
            format!("arn:aws:iam::{ACCOUNT_OF_FAKE}:role/hub")
                .parse()
                .unwrap(),
        );
        let engine = Reconciler::new(&fake, &fake, Arc::new(s));
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(only(&r).action(), Action::Failed, "{r:#?}");
        assert!(only(&r).reason().unwrap().contains("lock"), "{r:#?}");
        assert_eq!(fake.count("PutKeyPolicy"), 0);
    }

    const ACCOUNT_OF_FAKE: &str = crate::fake::ACCOUNT;

    #[tokio::test]
    async fn an_event_from_an_account_outside_the_allow_list_calls_nothing() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let engine = Reconciler::new(&fake, &fake, hub("222222222222", template()));
        let r = engine.run(&event_on("us-west-2", Scope::Key)).await;
        assert_eq!(
            only(&r).status,
            crate::outcome::Status::Skipped(Skip::AccountNotAllowed(
                crate::tenancy::NotAllowed::NotListed
            ))
        );
        assert!(fake.operations().is_empty(), "{:?}", fake.operations());
        let m = r.metrics();
        assert!(
            m.iter()
                .any(|d| d.metric == Metric::AccountNotAllowed && d.value == 1.0),
            "{m:?}"
        );
        assert_eq!(
            r.failure_class(),
            None,
            "a refused account is a no-op, not a failure"
        );
    }

    #[tokio::test]
    async fn an_organisation_sweep_covers_every_listed_account_and_lists_it_once() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        *fake.organization.lock().unwrap() = vec![
            ACCOUNT_OF_FAKE.parse().unwrap(),
            "222222222222".parse().unwrap(),
        ];
        let engine =
            Reconciler::new(&fake, &fake, hub("organization", template())).with_accounts(&fake);
        let (places, refused) = engine.places(None, None).await.unwrap();
        let shown: Vec<String> = places.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "111122223333/us-west-2",
                "222222222222/us-west-2",
                "999999999999/us-west-2"
            ]
        );
        assert!(refused.is_empty());
        let asked = ["333333333333".parse().unwrap()];
        let (places, refused) = engine.places(Some(&asked), None).await.unwrap();
        assert!(places.is_empty());
        assert_eq!(refused.len(), 1);
        let r = engine
            .run(&Trigger::Sweep {
                accounts: None,
                regions: None,
            })
            .await;
        assert_eq!(only(&r).key_arn, arn("us-west-2"), "{r:#?}");
        assert_eq!(only(&r).action(), Action::Remediated);
        assert_eq!(r.summary_by_account.len(), 1, "{r:#?}");
        assert_eq!(fake.count("ListKeys"), 3);
    }

    #[tokio::test]
    async fn an_organisation_sweep_without_an_account_directory_is_an_invalid_setup() {
        let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
        let engine = Reconciler::new(&fake, &fake, hub("organization", template()));
        let e = engine.places(None, None).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
        assert_eq!(e.operation, crate::error::Api::ListAccounts);
        assert!(
            e.to_string().contains("MEMBER_ACCOUNTS=organization"),
            "{e}"
        );
        assert_eq!(
            fake.count("ListAccounts"),
            0,
            "the fake's own list is not asked"
        );
    }
}

#[tokio::test]
async fn a_drift_is_explained_with_its_actor_and_counted_by_severity_even_in_dry_run() {
    // Someone opened the replica to everyone; the baseline does not have that statement.
    let opened = rendered().replace(
        r#"{"Sid": "App","#,
        r#"{"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"},
    {"Sid": "App","#,
    );
    let fake = FakeAws::family(&opened, &["us-west-2"]);
    let actor = crate::trigger::Actor {
        arn: Some("arn:aws:sts::111122223333:assumed-role/Admin/alice".into()),
        role: Some("arn:aws:iam::111122223333:role/Admin".into()),
        source_ip_address: Some("198.51.100.7".into()),
        event_time: Some("2026-12-02T10:00:00Z".into()),
        event_id: Some("c0ffee00-0000-4000-8000-000000000001".into()),
    };
    let mut trigger = event_on("us-west-2", Scope::Key);
    if let Trigger::Keys { event, .. } = &mut trigger {
        event.actor = Some(actor.clone());
    }
    let r = run(&fake, Mode::DryRun, template(), trigger).await;
    let o = only(&r);
    assert_eq!(o.action(), Action::DriftDetected, "{o:#?}");
    let exposure = o.exposure.as_ref().expect("a drift is explained");
    assert_eq!(exposure.severity, crate::outcome::Severity::Public);
    assert_eq!(
        exposure.sentences(),
        ["* gains kms:Decrypt (no condition) — public"]
    );
    assert!(exposure.losses.is_empty(), "{exposure:#?}");
    assert_eq!(o.actor.as_ref(), Some(&actor));
    let v = serde_json::to_value(o).unwrap();
    assert_eq!(v["exposure"]["severity"], "public");
    assert_eq!(v["exposure"]["gains"][0]["principal"], "*");
    assert_eq!(v["exposure"]["gains"][0]["actions"][0], "kms:Decrypt");
    assert_eq!(v["actor"]["role"], "arn:aws:iam::111122223333:role/Admin");
    let exposure_data: Vec<_> = r
        .metrics()
        .into_iter()
        .filter(|d| d.metric == crate::outcome::Metric::ExposureDrift)
        .collect();
    assert_eq!(exposure_data.len(), 1, "{exposure_data:#?}");
    assert_eq!(exposure_data[0].dimensions(), [("Severity", "public")]);
    assert_eq!(exposure_data[0].value, 1.0);
    assert_eq!(fake.count("PutKeyPolicy"), 0, "dry-run writes nothing");
}

#[tokio::test]
async fn an_in_sync_replica_has_no_explanation_and_no_exposure_metric() {
    let fake = FakeAws::family(&rendered(), &["us-west-2"]);
    let r = enforce(&fake, "us-west-2").await;
    let o = only(&r);
    assert_eq!(o.action(), Action::InSync, "{o:#?}");
    assert!(o.exposure.is_none() && o.actor.is_none(), "{o:#?}");
    assert!(
        r.metrics()
            .iter()
            .all(|d| d.metric != crate::outcome::Metric::ExposureDrift)
    );
}

/// A policy store whose writes wait until `other` has been read.
struct WriteAfterRead<'a> {
    fake: &'a FakeAws,
    other: KeyArn,
    read: tokio::sync::Notify,
}

impl PolicyStore for WriteAfterRead<'_> {
    async fn get_policy(&self, key: &KeyArn) -> Result<String, CallError> {
        if *key == self.other {
            self.read.notify_one();
        }
        self.fake.get_policy(key).await
    }

    async fn put_policy(&self, key: &KeyArn, policy: &str) -> Result<(), CallError> {
        self.read.notified().await;
        self.fake.put_policy(key, policy).await
    }
}

/// A second key id beside the fake's family, its copies in the same Regions, each holding
/// `policy`: its replica in `region`.
fn second_key_id(fake: &FakeAws, policy: &str, region: &str) -> KeyArn {
    let other = |k: &KeyArn| -> KeyArn {
        k.as_str()
            .replace(MRK, "mrk-ffffffffffffffffffffffffffffffff")
            .parse()
            .unwrap()
    };
    let mut keys = fake.keys.lock().unwrap();
    let copies: Vec<FakeKey> = keys.values().cloned().collect();
    for mut k in copies {
        k.facts.arn = other(&k.facts.arn);
        if let Some(mr) = k.facts.multi_region.as_mut() {
            mr.primary = other(&mr.primary);
            mr.replicas = mr.replicas.iter().map(other).collect();
        }
        k.policy = policy.to_owned();
        keys.insert(k.facts.arn.clone(), k);
    }
    other(&arn(region))
}

#[tokio::test]
async fn a_drifted_replica_gives_its_region_slot_back_while_its_write_waits() {
    // One slot per Region: the drifted replica's write waits for the next key's read in the
    // same Region, which needs that slot. Held through the write, the sweep never ends.
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    let in_sync = second_key_id(&fake, &rendered(), "us-west-2");
    let store = WriteAfterRead {
        fake: &fake,
        other: in_sync,
        read: tokio::sync::Notify::new(),
    };
    let settings = Arc::new(Settings {
        concurrency: 1,
        ..(*settings(Mode::Enforce, template())).clone()
    });
    let regions: Vec<Region> = ["us-west-2", "us-east-1"]
        .map(|r| r.parse().unwrap())
        .to_vec();
    let engine = Reconciler::new(&fake, &store, settings);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        engine.sweep(&own(&regions), &Quiet),
    )
    .await
    .expect("the sweep ends");
    assert_eq!(only(&r).action(), Action::Remediated, "{r:#?}");
    assert_eq!(r.summary.unwrap().get(&Action::InSync), Some(&1));
    assert_eq!(fake.policy(&arn("us-west-2")), rendered());
}

#[tokio::test]
async fn a_sweep_spreads_its_describes_over_the_regions_of_each_key() {
    // 60 key ids, each a primary in us-east-1 with replicas in us-west-2 and eu-west-1.
    // Describing each through its first swept Region's copy would put all 60 DescribeKey
    // calls on us-east-1's slots while the others wait on nothing.
    let fake = FakeAws::family(&rendered(), &["us-west-2", "eu-west-1"]);
    {
        let mut keys = fake.keys.lock().unwrap();
        let family: Vec<FakeKey> = keys.values().cloned().collect();
        keys.clear();
        for i in 0..60 {
            let id = |k: &KeyArn| -> KeyArn {
                k.as_str()
                    .replace(MRK, &format!("mrk-{i:032x}"))
                    .parse()
                    .unwrap()
            };
            for k in &family {
                let mut k = k.clone();
                k.facts.arn = id(&k.facts.arn);
                if let Some(mr) = k.facts.multi_region.as_mut() {
                    mr.primary = id(&mr.primary);
                    mr.replicas = mr.replicas.iter().map(id).collect();
                }
                keys.insert(k.facts.arn.clone(), k);
            }
        }
    }
    let regions: Vec<Region> = ["us-east-1", "us-west-2", "eu-west-1"]
        .map(|r| r.parse().unwrap())
        .to_vec();
    let engine = Reconciler::new(&fake, &fake, settings(Mode::DryRun, template()));
    let r = engine.sweep(&own(&regions), &Quiet).await;
    assert_eq!(r.summary.unwrap().get(&Action::InSync), Some(&120));
    let mut by_region: BTreeMap<String, usize> = BTreeMap::new();
    for (op, arn) in fake.calls.lock().unwrap().iter() {
        if *op == "DescribeKey" {
            *by_region
                .entry(arn.split(':').nth(3).unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(by_region.values().sum::<usize>(), 60, "one per key id");
    for region in ["us-east-1", "us-west-2", "eu-west-1"] {
        let n = by_region.get(region).copied().unwrap_or(0);
        assert!(
            (10..=30).contains(&n),
            "{region}: {n} of 60 ({by_region:?})"
        );
    }
}
