//! The configuration read from variables, its sources and its start-up checks.

use super::*;
use krg_engine::catalogue::Choice;
use krg_engine::error::Api;
use krg_engine::{BaselineMatch, Mode};
use std::collections::HashMap;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

const ROLE: &str = "arn:aws:iam::111122223333:role/kms-replica-guard-remediator";

#[test]
fn defaults_are_dry_run_mirroring_the_primary() {
    let c = config(&[("AWS_REGION", "us-east-1")]).unwrap();
    assert_eq!(c.settings.mode, Mode::DryRun);
    assert_eq!(c.settings.baseline, Baseline::Primary);
    assert_eq!(c.metrics_namespace, "KmsReplicaGuard");
    assert_eq!(
        c.settings.exclude_tag.as_deref(),
        Some("kms-replica-guard:exclude")
    );
    assert_eq!(c.settings.sweep_regions, vec!["us-east-1".parse().unwrap()]);
}

#[test]
fn exclusion_by_tag_can_be_renamed_or_turned_off() {
    let renamed = config(&[("EXCLUDE_TAG", "team:hands-off")]).unwrap();
    assert_eq!(
        renamed.settings.exclude_tag.as_deref(),
        Some("team:hands-off")
    );
    let off = config(&[("EXCLUDE_TAG", "off")]).unwrap();
    assert_eq!(off.settings.exclude_tag, None);
}

#[test]
fn a_literal_baseline_is_validated_at_start_up() {
    let ok = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#;
    let c = config(&[("BASELINE_SOURCE", ok), ("REMEDIATOR_ROLE_ARN", ROLE)]).unwrap();
    assert!(matches!(c.settings.baseline, Baseline::Template(_)));

    let missing_action = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Resource":"*"}]}"#;
    let e = config(&[("BASELINE_SOURCE", missing_action)]).unwrap_err();
    assert_eq!(e.variable, "BASELINE_SOURCE");
    assert!(e.problem.contains("Action"), "{e}");
}

#[test]
fn a_baseline_that_locks_out_the_configured_role_is_refused_at_start_up() {
    let lockout = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:role/app"},"Action":"kms:*","Resource":"*"}]}"#;
    let e = config(&[("BASELINE_SOURCE", lockout), ("REMEDIATOR_ROLE_ARN", ROLE)]).unwrap_err();
    assert!(e.problem.contains("lock out"), "{e}");
}

#[test]
fn a_baseline_is_checked_for_a_key_in_the_roles_partition() {
    let root = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:{{Partition}}:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#;
    let china = "arn:aws-cn:iam::111122223333:role/kms-replica-guard-remediator";
    config(&[("BASELINE_SOURCE", root), ("REMEDIATOR_ROLE_ARN", china)]).unwrap();
    // A baseline that names the root of another partition grants the role nothing.
    let commercial = root.replace("arn:{{Partition}}", "arn:aws");
    let e = config(&[
        ("BASELINE_SOURCE", commercial.as_str()),
        ("REMEDIATOR_ROLE_ARN", china),
    ])
    .unwrap_err();
    assert!(e.problem.contains("lock out"), "{e}");
}

#[test]
fn a_baseline_naming_a_deleted_principal_or_a_lowercase_effect_is_refused_at_start_up() {
    let deleted = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"},{"Effect":"Allow","Principal":{"AWS":"AROA6QJX2M4TBCKL7WZNE"},"Action":"kms:Decrypt","Resource":"*"}]}"#;
    let e = config(&[("BASELINE_SOURCE", deleted)]).unwrap_err();
    assert!(e.problem.contains("AROA6QJX2M4TBCKL7WZNE"), "{e}");
    let lower = r#"{"Version":"2012-10-17","Statement":[{"Effect":"allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#;
    let e = config(&[("BASELINE_SOURCE", lower)]).unwrap_err();
    assert!(e.problem.contains("Effect"), "{e}");
}

#[test]
fn rate_limits_are_shared_by_the_reserved_concurrency() {
    let c = config(&[("RATE_INSTANCES", "5"), ("RATE_PUT_KEY_POLICY", "10")]).unwrap();
    assert_eq!(
        (c.rate_limits.instances, c.rate_limits.put_key_policy),
        (5, 10)
    );
    // 0 (unreserved concurrency) is no sharing.
    assert_eq!(
        config(&[("RATE_INSTANCES", "0")])
            .unwrap()
            .rate_limits
            .instances,
        1
    );
}

#[test]
fn out_of_range_numbers_are_refused_naming_the_range_not_clamped() {
    for (var, bad, range) in [
        ("CONCURRENCY", "0", "from 1 to 64"),
        ("CONCURRENCY", "65", "from 1 to 64"),
        ("CREATING_RETRY_ATTEMPTS", "21", "from 1 to 20"),
        ("RATE_PUT_KEY_POLICY", "0", "from 1 to 100000"),
        ("RATE_INSTANCES", "10001", "from 0 to 10000"),
        ("FLAP_MAX", "0", "from 1 to 1000"),
    ] {
        let e = config(&[(var, bad)]).unwrap_err();
        assert_eq!(e.variable, var);
        assert!(e.problem.contains(range), "{var}={bad}: {e}");
    }
    assert_eq!(
        config(&[("CONCURRENCY", "64")])
            .unwrap()
            .settings
            .concurrency,
        64
    );
}

#[test]
fn a_bad_region_is_reported_under_the_variable_it_was_read_from() {
    let e = config(&[("AWS_DEFAULT_REGION", "moon")]);
    let e = e.unwrap_err();
    assert_eq!(e.variable, "AWS_DEFAULT_REGION", "{e}");
    assert!(e.problem.contains("moon"), "{e}");
    let e = config(&[("AWS_REGION", "mars")]).unwrap_err();
    assert_eq!(e.variable, "AWS_REGION", "{e}");
}

#[test]
fn flap_window_accepts_seconds_and_units() {
    for (v, secs) in [
        ("3600", 3600),
        ("90m", 5400),
        ("1h", 3600),
        ("2d", 172_800),
        ("30s", 30),
    ] {
        let c = config(&[("FLAP_WINDOW", v)]).unwrap();
        assert_eq!(c.settings.flap.window.as_secs(), secs, "{v}");
    }
    assert!(config(&[("FLAP_WINDOW", "0")]).is_err());
}

/// Start-up reads that all fail the same way.
struct Failing(ErrorKind);

impl RemoteText for Failing {
    async fn caller_account(&self) -> Result<AccountId, CallError> {
        Err(CallError::new(
            Api::GetCallerIdentity,
            "creds",
            self.0,
            "no",
        ))
    }
    async fn ssm_parameter(&self, name: &str) -> Result<String, CallError> {
        Err(CallError::new(Api::GetParameter, name, self.0, "no"))
    }
    async fn s3_object(&self, bucket: &str, _: &str) -> Result<String, CallError> {
        Err(CallError::new(Api::GetObject, bucket, self.0, "no"))
    }
    async fn ssm_parameters(&self, path: &str) -> Result<Vec<(String, String)>, CallError> {
        Err(CallError::new(Api::GetParametersByPath, path, self.0, "no"))
    }
    async fn s3_objects(&self, bucket: &str, _: &str) -> Result<Vec<(String, String)>, CallError> {
        Err(CallError::new(Api::ListObjectsV2, bucket, self.0, "no"))
    }
}

#[tokio::test]
async fn a_start_up_read_that_may_pass_is_transient_and_a_missing_baseline_is_final() {
    let load = |kind: ErrorKind, source: &'static str| async move {
        let map: HashMap<String, String> = [("BASELINE_SOURCE", source)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Config::load_from(|k| map.get(k).cloned(), &Failing(kind))
            .await
            .unwrap_err()
    };
    for kind in [ErrorKind::Throttled, ErrorKind::AccessDenied] {
        for source in ["ssm:/kms-replica-guard/baseline", "s3://b/baselines/"] {
            let e = load(kind, source).await;
            assert!(e.transient, "{kind:?} {source}: {e}");
            assert_eq!(e.variable, "BASELINE_SOURCE");
        }
    }
    let e = load(ErrorKind::NotFound, "ssm:/kms-replica-guard/baseline").await;
    assert!(!e.transient, "{e}");
}

#[test]
fn remote_baseline_sources_are_recognised() {
    assert_eq!(
        RemoteBaseline::parse("ssm:/a/b"),
        Some(Ok(RemoteBaseline::Ssm("/a/b".into())))
    );
    assert_eq!(
        RemoteBaseline::parse("s3://bucket/dir/b.json"),
        Some(Ok(RemoteBaseline::S3 {
            bucket: "bucket".into(),
            key: "dir/b.json".into()
        }))
    );
    assert!(matches!(RemoteBaseline::parse("s3://bucket"), Some(Err(_))));
    assert!(matches!(RemoteBaseline::parse("ssm:"), Some(Err(_))));
    assert_eq!(RemoteBaseline::parse("primary"), None);
}

#[test]
fn a_baseline_file_is_read_and_a_missing_one_is_named() {
    let dir = std::env::temp_dir().join(format!("krg-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("baseline.json");
    std::fs::write(
        &path,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#,
    )
    .unwrap();
    let source = format!("file:{}", path.display());
    assert!(config(&[("BASELINE_SOURCE", &source)]).is_ok());
    let e = config(&[("BASELINE_SOURCE", "file:/nonexistent/b.json")]).unwrap_err();
    assert!(e.problem.contains("/nonexistent/b.json"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_values_name_the_variable_and_the_fix() {
    let cases = [
        ("REMEDIATION_MODE", "fix-it", "enforce"),
        (
            "REMEDIATOR_ROLE_ARN",
            "arn:aws:iam::111122223333:user/bob",
            "execution role",
        ),
        ("SWEEP_REGIONS", "us-east-1,moon", "comma-separated"),
        ("BASELINE_SOURCE", "ssm:/kms/baseline", "Config::load"),
        ("FLAP_WINDOW", "an hour", "duration"),
        ("BASELINE_SOURCE", "mirror", "primary"),
        (
            "BASELINE_SOURCE",
            r#"{"a": "{{Nope}}"}"#,
            "unknown placeholder",
        ),
        ("METRICS_NAMESPACE", "AWS/KMS", "AWS/"),
        ("CONCURRENCY", "many", "whole number"),
    ];
    for (var, value, hint) in cases {
        let e = config(&[(var, value)]).unwrap_err();
        assert_eq!(e.variable, var, "{e}");
        assert!(e.to_string().contains(hint), "{var}={value}: {e}");
    }
}

const HUB_ROLE: &str = "arn:aws:iam::999999999999:role/hub";

#[test]
fn the_detectors_read_role_needs_the_member_role_and_leaves_it_the_lockout_checks_subject() {
    let e = config(&[("MEMBER_READ_ROLE_NAME", "kms-replica-guard-detector")]).unwrap_err();
    assert_eq!(e.variable, "MEMBER_READ_ROLE_NAME", "{e}");
    assert!(e.problem.contains("MEMBER_ROLE_NAME"), "{e}");
    let c = config(&[
        ("REMEDIATOR_ROLE_ARN", HUB_ROLE),
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
        ("MEMBER_READ_ROLE_NAME", "kms-replica-guard-detector"),
        ("MEMBER_ACCOUNTS", "222233334444"),
        ("MEMBER_EXTERNAL_ID", "ext-42"),
    ])
    .unwrap();
    let reader = c.member_read_role.expect("the read role");
    let account: AccountId = "222233334444".parse().unwrap();
    assert_eq!(
        reader.arn_in(&account, "aws").as_str(),
        "arn:aws:iam::222233334444:role/kms-replica-guard-detector"
    );
    assert_eq!(reader.external_id(), Some("ext-42"));
    let writer = c.settings.tenancy.member_role().unwrap();
    assert_eq!(
        writer.arn_in(&account, "aws").as_str(),
        "arn:aws:iam::222233334444:role/kms-replica-guard-member"
    );
}

#[test]
fn member_accounts_need_both_the_role_and_the_list_and_say_what_to_set() {
    let e = config(&[("MEMBER_ROLE_NAME", "kms-replica-guard-member")]).unwrap_err();
    assert_eq!(e.variable, "MEMBER_ACCOUNTS", "{e}");
    assert!(e.problem.contains("organization"), "{e}");
    let e = config(&[("MEMBER_ACCOUNTS", "222233334444")]).unwrap_err();
    assert_eq!(e.variable, "MEMBER_ROLE_NAME", "{e}");
    let e = config(&[
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
        ("MEMBER_ACCOUNTS", "222233334444"),
    ])
    .unwrap_err();
    assert_eq!(e.variable, "REMEDIATOR_ROLE_ARN", "{e}");
    let e = config(&[
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
        ("MEMBER_ACCOUNTS", "2222,3333"),
    ])
    .unwrap_err();
    assert_eq!(e.variable, "MEMBER_ACCOUNTS", "{e}");
    assert!(e.problem.contains("12 digits"), "{e}");
}

#[test]
fn drifts_go_to_the_default_bus_unless_event_bus_says_otherwise() {
    assert_eq!(config(&[]).unwrap().event_bus.as_deref(), Some("default"));
    assert_eq!(config(&[("EVENT_BUS", "off")]).unwrap().event_bus, None);
    let arn = "arn:aws:events:us-east-1:111122223333:event-bus/security";
    assert_eq!(
        config(&[("EVENT_BUS", arn)]).unwrap().event_bus.as_deref(),
        Some(arn)
    );
    let e = config(&[("EVENT_BUS", "no spaces please")]).unwrap_err();
    assert_eq!(e.variable, "EVENT_BUS", "{e}");
    assert!(e.problem.contains("off"), "{e}");
}

#[test]
fn a_hub_with_members_knows_its_own_account_and_the_member_role() {
    let c = config(&[
        ("REMEDIATOR_ROLE_ARN", HUB_ROLE),
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
        ("MEMBER_EXTERNAL_ID", "ext-42"),
        ("MEMBER_ACCOUNTS", "organization"),
        (
            "SWEEP_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/999999999999/work",
        ),
    ])
    .unwrap();
    let t = &c.settings.tenancy;
    assert_eq!(t.home.as_ref().unwrap().as_str(), "999999999999");
    assert!(t.needs_organization());
    assert_eq!(t.member_role().unwrap().external_id(), Some("ext-42"));
    assert!(c.sweep_queue_url.is_some());
}

#[test]
fn a_baseline_that_locks_the_member_role_out_is_refused_at_start_up() {
    // Allows the hub's role only: fine at home, a lockout in every member account.
    let hub_only = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{HUB_ROLE}"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    let e = config(&[
        ("REMEDIATOR_ROLE_ARN", HUB_ROLE),
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
        ("MEMBER_ACCOUNTS", "222233334444"),
        ("BASELINE_SOURCE", &hub_only),
    ])
    .unwrap_err();
    assert_eq!(e.variable, "BASELINE_SOURCE");
    assert!(
        e.problem
            .contains("arn:aws:iam::222233334444:role/kms-replica-guard-member"),
        "{e}"
    );
    let root = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::{{AccountId}}:root"},"Action":"kms:*","Resource":"*"}]}"#;
    config(&[
        ("REMEDIATOR_ROLE_ARN", HUB_ROLE),
        ("MEMBER_ROLE_NAME", "kms-replica-guard-member"),
        ("MEMBER_ACCOUNTS", "222233334444"),
        ("BASELINE_SOURCE", root),
    ])
    .unwrap();
}

/// The catalogue this repository ships (`baselines/`), as `dir:` reads it.
fn shipped() -> String {
    format!("dir:{}/baselines", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_shipped_catalogue_loads_with_its_two_baselines() {
    let source = shipped();
    let c = config(&[
        ("BASELINE_SOURCE", &source),
        ("BASELINE_DEFAULT", "example"),
        ("BASELINE_MATCH", "contains"),
        ("REMEDIATOR_ROLE_ARN", ROLE),
    ])
    .unwrap();
    let Baseline::Catalogue(cat) = &c.settings.baseline else {
        panic!("{:?}", c.settings.baseline);
    };
    let names: Vec<&str> = cat.templates().map(|(n, _)| n).collect();
    assert_eq!(names, ["example", "logs"]);
    assert_eq!(cat.tag(), "kms-replica-guard:baseline");
    assert_eq!(cat.default(), &Choice::Named("example".into()));
    assert_eq!(c.settings.baseline_match, BaselineMatch::Contains);
}

#[test]
fn a_catalogue_directory_with_broken_files_is_refused_naming_each() {
    let dir = std::env::temp_dir().join(format!("krg-catalogue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(format!(
        "{}/baselines/example.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    std::fs::write(dir.join("good.json"), &good).unwrap();
    std::fs::write(
        dir.join("typo.json"),
        good.replace("{{Region}}", "{{Regon}}"),
    )
    .unwrap();
    std::fs::write(dir.join("not-json.json"), "{").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a baseline").unwrap();
    let source = format!("dir:{}", dir.display());
    let e = config(&[
        ("BASELINE_SOURCE", &source),
        ("BASELINE_DEFAULT", "good"),
        ("REMEDIATOR_ROLE_ARN", ROLE),
    ])
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("2 invalid baseline(s)")
            && text.contains("typo.json")
            && text.contains("Regon")
            && text.contains("not-json.json")
            && !text.contains("good.json")
            && !text.contains("notes.txt"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_catalogue_needs_a_default_and_its_settings_need_a_catalogue() {
    let source = shipped();
    let e = config(&[("BASELINE_SOURCE", &source)]).unwrap_err();
    assert_eq!(e.variable, "BASELINE_DEFAULT");
    assert!(e.problem.contains("example, logs"), "{e}");
    let e = config(&[("BASELINE_SOURCE", &source), ("BASELINE_DEFAULT", "nope")]).unwrap_err();
    assert_eq!(e.variable, "BASELINE_DEFAULT");
    let c = config(&[
        ("BASELINE_SOURCE", &source),
        ("BASELINE_DEFAULT", "primary"),
    ])
    .unwrap();
    assert!(
        matches!(&c.settings.baseline, Baseline::Catalogue(cat) if cat.default() == &Choice::Primary)
    );
    for var in ["BASELINE_TAG", "BASELINE_DEFAULT"] {
        let e = config(&[("BASELINE_SOURCE", "primary"), (var, "x")]).unwrap_err();
        assert_eq!(e.variable, var);
        assert!(e.problem.contains("catalogue"), "{e}");
    }
    let e = config(&[("BASELINE_MATCH", "superset")]).unwrap_err();
    assert!(
        e.problem.contains("exact") && e.problem.contains("contains"),
        "{e}"
    );
    let e = config(&[("MIRROR_REWRITE", "maybe")]).unwrap_err();
    assert_eq!(e.variable, "MIRROR_REWRITE");
}

#[test]
fn catalogue_sources_are_told_from_single_baselines_by_the_trailing_slash() {
    assert_eq!(
        RemoteBaseline::parse("ssm:/krg/baselines/"),
        Some(Ok(RemoteBaseline::SsmPath("/krg/baselines/".into())))
    );
    assert!(matches!(RemoteBaseline::parse("ssm:krg/"), Some(Err(_))));
    assert_eq!(
        RemoteBaseline::parse("s3://bucket/baselines/"),
        Some(Ok(RemoteBaseline::S3Prefix {
            bucket: "bucket".into(),
            prefix: "baselines/".into()
        }))
    );
    assert_eq!(
        "dir:baselines".parse::<BaselineSource>(),
        Ok(BaselineSource::Dir("baselines".into()))
    );
}

#[test]
fn each_declared_default_behaves_as_the_variable_unset() {
    // The contract hands these defaults to the stacks (a stack's default must be the function's):
    // a declared default that is not the real one would deploy something else than documented.
    // BASELINE_TAG applies to a catalogue only: it is compared with the shipped one.
    let source = shipped();
    let plain = vec![("AWS_REGION", "us-east-1"), ("REMEDIATOR_ROLE_ARN", ROLE)];
    let mut catalogue = plain.clone();
    catalogue.extend([
        ("BASELINE_SOURCE", source.as_str()),
        ("BASELINE_DEFAULT", "example"),
    ]);
    let mut declared = 0;
    for v in vars::VARS {
        let Some(default) = v.default else { continue };
        let base = if v.name == "BASELINE_TAG" {
            &catalogue
        } else {
            &plain
        };
        let unset = format!("{:?}", config(base).unwrap());
        let mut with = base.clone();
        with.push((v.name, default));
        let set = config(&with).unwrap_or_else(|e| panic!("{}={default}: {e}", v.name));
        assert_eq!(
            format!("{set:?}"),
            unset,
            "{}={default} is not its default",
            v.name
        );
        declared += 1;
    }
    assert!(declared >= 20, "{declared} defaults declared");
    // The comparison sees a value that is not the default.
    let unset = format!("{:?}", config(&plain).unwrap());
    let mut other = plain.clone();
    other.push(("FLAP_MAX", "6"));
    assert_ne!(format!("{:?}", config(&other).unwrap()), unset);
}

#[test]
fn the_configuration_table_shows_each_declared_default() {
    // The table's Default column is prose (settings that go together share a row): it must at
    // least name each declared default, so that the two cannot drift apart.
    for v in vars::VARS {
        let Some(default) = v.default else { continue };
        let row = match v.row {
            vars::Row::Own { default, .. } => default,
            vars::Row::With(other) => match vars::var(other).expect("a declared setting").row {
                vars::Row::Own { default, .. } => default,
                vars::Row::With(_) => panic!("{other} shares another's row"),
            },
        };
        assert!(
            row.contains(&format!("`{default}`")),
            "{}: the table says {row:?}, the default is {default}",
            v.name
        );
    }
}
