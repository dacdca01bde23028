//! Baselines that fit a fleet, on the in-memory fakes: catalogue picks by tag, must-contain
//! matching, Region-aware mirroring and expiring exemptions.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::baseline::{Baseline, RewriteKind, Template};
use crate::catalogue::{Catalogue, Choice, DEFAULT_BASELINE_TAG};
use crate::fake::{FakeAws, arn};
use crate::outcome::{Action, Failure, Metric, Status};
use crate::settings::{BaselineMatch, Mode, Settings};
use crate::trigger::{Scope, Trigger};

use super::tests::DEFAULT_POLICY;

/// A baseline whose one non-root statement is `sid`, granting `role` kms:Decrypt.
fn baseline_text(sid: &str, role: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[
  {{"Sid":"Root","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{{{{AccountId}}}}:root"}},"Action":"kms:*","Resource":"*"}},
  {{"Sid":"{sid}","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{{{{AccountId}}}}:role/{role}"}},"Action":"kms:Decrypt","Resource":"*"}}
]}}"#
    )
}

fn rendered(sid: &str, role: &str) -> String {
    baseline_text(sid, role).replace("{{AccountId}}", "111122223333")
}

fn catalogue(default: Choice) -> Baseline {
    let mut templates = BTreeMap::new();
    for (name, sid, role) in [
        ("s3-data", "S3Data", "app"),
        ("logs", "Logs", "logs-reader"),
    ] {
        templates.insert(
            name.to_owned(),
            Template::new(
                format!("file:baselines/{name}.json"),
                baseline_text(sid, role),
            )
            .unwrap(),
        );
    }
    Baseline::Catalogue(
        Catalogue::new("dir:baselines", templates, DEFAULT_BASELINE_TAG, default).unwrap(),
    )
}

fn settings(mode: Mode, baseline: Baseline, matching: BaselineMatch) -> Arc<Settings> {
    let mut s = (*super::tests::settings(mode, baseline)).clone();
    s.baseline_match = matching;
    s.sweep_regions = vec!["us-west-2".parse().unwrap(), "eu-west-1".parse().unwrap()];
    Arc::new(s)
}

fn tag(fake: &FakeAws, region: &str, key: &str, value: &str) {
    fake.with_key(&arn(region), |k| {
        k.tags.insert(key.into(), value.into());
    });
}

/// A replica-scoped event on the replica in `region`.
fn on(region: &str) -> Trigger {
    super::tests::event_on(region, Scope::Key)
}

fn outcome_in<'r>(r: &'r Report, region: &str) -> &'r Outcome {
    r.outcomes
        .iter()
        .find(|o| o.region.as_str() == region)
        .unwrap_or_else(|| panic!("no outcome in {region}: {r:#?}"))
}

#[tokio::test]
async fn each_replica_converges_to_the_baseline_its_tag_or_its_primarys_tag_names() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    tag(&fake, "us-west-2", DEFAULT_BASELINE_TAG, "s3-data");
    tag(&fake, "us-east-1", DEFAULT_BASELINE_TAG, "logs");
    let s = settings(
        Mode::Enforce,
        catalogue(Choice::Primary),
        BaselineMatch::Exact,
    );
    let engine = Reconciler::new(&fake, &fake, s);
    let r = engine
        .run(&Trigger::Sweep {
            accounts: None,
            regions: None,
        })
        .await;
    let west = outcome_in(&r, "us-west-2");
    let eu = outcome_in(&r, "eu-west-1");
    assert_eq!(west.action(), Action::Remediated, "{west:#?}");
    assert_eq!(west.baseline.as_deref(), Some("s3-data"));
    assert_eq!(eu.action(), Action::Remediated, "{eu:#?}");
    assert_eq!(
        eu.baseline.as_deref(),
        Some("logs"),
        "inherited from the primary"
    );
    assert_eq!(fake.policy(&arn("us-west-2")), rendered("S3Data", "app"));
    assert_eq!(
        fake.policy(&arn("eu-west-1")),
        rendered("Logs", "logs-reader")
    );
    // One tags call per key: each replica, and the primary once for the replica without
    // a tag of its own (the exclude check reuses the replica's).
    assert_eq!(fake.count("ListResourceTags"), 3, "{:?}", fake.operations());
}

#[tokio::test]
async fn an_unknown_baseline_name_fails_that_key_only_and_writes_nothing() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    tag(&fake, "us-west-2", DEFAULT_BASELINE_TAG, "s3-dta");
    let s = settings(
        Mode::Enforce,
        catalogue(Choice::Named("logs".into())),
        BaselineMatch::Exact,
    );
    let r = Reconciler::new(&fake, &fake, s)
        .run(&Trigger::Sweep {
            accounts: None,
            regions: None,
        })
        .await;
    let west = outcome_in(&r, "us-west-2");
    assert!(
        matches!(&west.status, Status::Failed(Failure::UnknownBaseline(e)) if e.name == "s3-dta"),
        "{west:#?}"
    );
    assert_eq!(west.retry(), Some(crate::outcome::Retry::NonRetryable));
    assert_eq!(
        fake.policy(&arn("us-west-2")),
        DEFAULT_POLICY,
        "nothing written"
    );
    let eu = outcome_in(&r, "eu-west-1");
    assert_eq!(eu.action(), Action::Remediated, "{eu:#?}");
    assert_eq!(eu.baseline.as_deref(), Some("logs"), "the default");
}

/// The live policy: the s3-data baseline plus `extra` statements.
fn with_extras(extra: &[&str]) -> String {
    let base = rendered("S3Data", "app");
    let close = base.rfind(']').unwrap();
    let mut live = base[..close].trim_end().to_owned();
    for e in extra {
        live.push_str(",\n  ");
        live.push_str(e);
    }
    live.push_str(&base[close..]);
    live
}

const DR_ROLE: &str = r#"{"Sid":"DrRestore","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/dr-restore"},"Action":["kms:Decrypt","kms:DescribeKey"],"Resource":"*"}"#;
const PUBLIC: &str =
    r#"{"Sid":"Anyone","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#;

#[tokio::test]
async fn in_contains_mode_a_harmless_extra_is_in_sync_and_a_public_one_is_removed_keeping_it() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2", "eu-west-1"]);
    fake.with_key(&arn("us-west-2"), |k| k.policy = with_extras(&[DR_ROLE]));
    fake.with_key(&arn("eu-west-1"), |k| {
        k.policy = with_extras(&[DR_ROLE, PUBLIC])
    });
    let s = settings(
        Mode::Enforce,
        catalogue(Choice::Named("s3-data".into())),
        BaselineMatch::Contains,
    );
    let engine = Reconciler::new(&fake, &fake, s);
    let west = engine.run(&on("us-west-2")).await;
    let west = &west.outcomes[0];
    assert_eq!(west.action(), Action::InSync, "{west:#?}");
    assert_eq!(west.extras.as_ref().unwrap().kept.len(), 1);

    let eu = engine.run(&on("eu-west-1")).await;
    let eu = &eu.outcomes[0];
    assert_eq!(eu.action(), Action::Remediated, "{eu:#?}");
    let extras = eu.extras.as_ref().unwrap();
    assert_eq!(extras.kept[0].sid.as_deref(), Some("DrRestore"));
    assert_eq!(extras.removed[0].sid.as_deref(), Some("Anyone"));
    assert_eq!(extras.removed[0].severity.as_str(), "public");
    let written = fake.policy(&arn("eu-west-1"));
    assert!(
        written.contains("DrRestore") && !written.contains("Anyone"),
        "{written}"
    );
    assert!(
        krg_policy::equivalent(&written, &with_extras(&[DR_ROLE])).unwrap(),
        "baseline ∪ kept extras: {written}"
    );
}

#[tokio::test]
async fn exact_mode_rewrites_the_same_harmless_extra() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    fake.with_key(&arn("us-west-2"), |k| k.policy = with_extras(&[DR_ROLE]));
    let s = settings(
        Mode::Enforce,
        catalogue(Choice::Named("s3-data".into())),
        BaselineMatch::Exact,
    );
    let r = Reconciler::new(&fake, &fake, s).run(&on("us-west-2")).await;
    assert_eq!(r.outcomes[0].action(), Action::Remediated);
    assert!(r.outcomes[0].extras.is_none());
    assert_eq!(fake.policy(&arn("us-west-2")), rendered("S3Data", "app"));
}

const LOGS_PRIMARY: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
  {"Sid":"Logs","Effect":"Allow","Principal":{"Service":"logs.us-east-1.amazonaws.com"},"Action":["kms:Encrypt*","kms:Decrypt*","kms:GenerateDataKey*","kms:Describe*"],"Resource":"*",
   "Condition":{"ArnLike":{"kms:EncryptionContext:aws:logs:arn":"arn:aws:logs:us-east-1:111122223333:log-group:*"}}}
]}"#;

#[tokio::test]
async fn a_mirrored_logs_key_policy_names_the_replicas_region_and_says_what_was_rewritten() {
    let fake = FakeAws::family(DEFAULT_POLICY, &["eu-west-1"]);
    fake.with_key(&arn("us-east-1"), |k| k.policy = LOGS_PRIMARY.into());
    let mut s = (*settings(Mode::Enforce, Baseline::Primary, BaselineMatch::Exact)).clone();
    s.mirror_rewrite = true;
    let r = Reconciler::new(&fake, &fake, Arc::new(s))
        .run(&on("eu-west-1"))
        .await;
    let o = &r.outcomes[0];
    assert_eq!(o.action(), Action::Remediated, "{o:#?}");
    assert_eq!(o.baseline.as_deref(), Some("primary"));
    let written = fake.policy(&arn("eu-west-1"));
    assert!(
        written.contains("logs.eu-west-1.amazonaws.com")
            && written.contains("arn:aws:logs:eu-west-1:111122223333:log-group:*")
            && !written.contains("us-east-1"),
        "{written}"
    );
    let kinds: Vec<RewriteKind> = o.rewrites.iter().map(|r| r.what).collect();
    assert!(
        kinds.contains(&RewriteKind::ServicePrincipal) && kinds.contains(&RewriteKind::OwnArn),
        "{:#?}",
        o.rewrites
    );
}

fn exempted(value: &str) -> FakeAws {
    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    tag(&fake, "us-west-2", "kms-replica-guard:exclude", value);
    fake
}

async fn enforce_template(fake: &FakeAws) -> Report {
    let t = Baseline::Template(Template::new("literal", baseline_text("S3Data", "app")).unwrap());
    Reconciler::new(fake, fake, settings(Mode::Enforce, t, BaselineMatch::Exact))
        .run(&on("us-west-2"))
        .await
}

#[tokio::test]
async fn an_exemption_in_the_future_skips_and_says_when_it_ends() {
    let fake = exempted("DR test until=2999-12-31");
    let r = enforce_template(&fake).await;
    let o = &r.outcomes[0];
    assert_eq!(o.action(), Action::Skipped, "{o:#?}");
    let reason = o.reason().unwrap();
    assert!(reason.contains("until 3000-01-01T00:00:00"), "{reason}");
    assert_eq!(fake.count("PutKeyPolicy"), 0);
}

#[tokio::test]
async fn an_exemption_in_the_past_reconciles_and_is_counted() {
    let fake = exempted("until=2026-01-31T12:00:00Z");
    let r = enforce_template(&fake).await;
    let o = &r.outcomes[0];
    assert_eq!(o.action(), Action::Remediated, "{o:#?}");
    assert_eq!(
        o.exemption_ended.as_deref(),
        Some("2026-01-31T12:00:00+00:00")
    );
    let json = serde_json::to_value(o).unwrap();
    assert_eq!(json["exemption_ended"], "2026-01-31T12:00:00+00:00");
    let counted: f64 = r
        .metrics()
        .iter()
        .filter(|d| d.metric == Metric::ExemptionExpired)
        .map(|d| d.value)
        .sum();
    assert_eq!(counted, 1.0);
}

#[tokio::test]
async fn a_garbled_exemption_does_not_exclude_and_says_why() {
    // Fail closed: an exemption nobody can read is no exemption.
    let fake = exempted("until=31/12/2026");
    let r = enforce_template(&fake).await;
    let o = &r.outcomes[0];
    assert_eq!(o.action(), Action::Remediated, "{o:#?}");
    let why = o.exemption_ignored.as_deref().unwrap();
    assert!(
        why.contains("31/12/2026") && why.contains("cannot be read"),
        "{why}"
    );
    let json = serde_json::to_value(o).unwrap();
    assert_eq!(json["exemption_ignored"], why);
    assert_eq!(fake.count("PutKeyPolicy"), 1);
}

#[tokio::test]
async fn a_catalogue_pick_costs_one_tags_call_more_and_the_primarys_tag_one_more_again() {
    let in_sync = |fake: &FakeAws, region: &str| {
        fake.with_key(&arn(region), |k| k.policy = rendered("S3Data", "app"));
    };
    let s = settings(
        Mode::Enforce,
        catalogue(Choice::Named("logs".into())),
        BaselineMatch::Exact,
    );

    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    in_sync(&fake, "us-west-2");
    tag(&fake, "us-west-2", DEFAULT_BASELINE_TAG, "s3-data");
    let r = Reconciler::new(&fake, &fake, s.clone())
        .run(&on("us-west-2"))
        .await;
    assert_eq!(r.outcomes[0].action(), Action::InSync, "{r:#?}");
    assert_eq!(
        fake.operations(),
        ["DescribeKey", "ListResourceTags", "GetKeyPolicy"],
        "the replica's tag names the baseline"
    );

    let fake = FakeAws::family(DEFAULT_POLICY, &["us-west-2"]);
    in_sync(&fake, "us-west-2");
    tag(&fake, "us-east-1", DEFAULT_BASELINE_TAG, "s3-data");
    let r = Reconciler::new(&fake, &fake, s).run(&on("us-west-2")).await;
    assert_eq!(r.outcomes[0].action(), Action::InSync, "{r:#?}");
    assert_eq!(
        fake.operations(),
        [
            "DescribeKey",
            "ListResourceTags",
            "ListResourceTags",
            "GetKeyPolicy"
        ],
        "the replica has no tag: its primary's is read"
    );
}
