//! Contains matching: one named test per rule of what an extra statement may keep, and
//! property tests that contains matching without extras is exact matching and that merging
//! is idempotent.

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{Map, Value, json};

use super::super::{
    CanonicalPolicy, Containment, Extra, LockoutGuard, Origin, PolicyError, Severity, Trust,
    ValidationError, Verdict, assess, assess_parsed, compare, contain, contain_with, explain,
    guardrails, validate, validate_as, validate_merged,
};
use super::{parse, policy, same};

/// The key's account as the engine passes it.
const OWN: &str = "arn:aws:iam::111122223333:root";
const ROOT: &str = r#"{"Sid":"EnableRootAccess","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;
const GUARD: &str = r#"{"Sid":"AllowKmsReplicaGuard","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/kms-replica-guard-remediator"},"Action":["kms:DescribeKey","kms:GetKeyPolicy","kms:PutKeyPolicy"],"Resource":"*"}"#;
const USE: &str = r#"{"Sid":"Use","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}}"#;
const DR: &str = r#"{"Sid":"DrRestore","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/dr-restore"},"Action":["kms:Decrypt","kms:DescribeKey"],"Resource":"*"}"#;
const PUBLIC: &str = r#"{"Sid":"Open","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}"#;

/// The baseline of the named tests: root, remediator, one application.
fn baseline() -> String {
    policy(&format!("{ROOT},{GUARD},{USE}"))
}

/// A live policy of the given statements.
fn live(statements: &[&str]) -> String {
    policy(&statements.join(","))
}

/// Contains matching of a live policy of these statements against [`baseline`].
fn run(statements: &[&str]) -> Containment {
    contain(&live(statements), &baseline(), &Trust::own(OWN)).expect("the baseline parses")
}

/// The lockout guard of the named tests: the remediator role of GUARD.
fn guard() -> LockoutGuard {
    LockoutGuard {
        key_arn: "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
            .to_owned(),
        account_id: "111122223333".to_owned(),
        partition: "aws".to_owned(),
        remediator_role_arn: Some(
            "arn:aws:iam::111122223333:role/kms-replica-guard-remediator".to_owned(),
        ),
    }
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).expect("test JSON")
}

/// The statements of a merged document, as written.
fn merged_statements(c: &Containment) -> Vec<Value> {
    value(&c.merged)["Statement"]
        .as_array()
        .expect("merged has a Statement array")
        .clone()
}

#[test]
fn an_extra_same_account_dr_role_is_kept_and_satisfies_the_baseline() {
    let text = live(&[ROOT, GUARD, USE, DR]);
    let c = contain(&text, &baseline(), &Trust::own(OWN)).unwrap();
    assert!(c.satisfied(), "{c:#?}");
    assert!(c.missing.is_empty() && c.removed.is_empty() && c.elements.is_empty());
    assert_eq!(c.kept.len(), 1);
    let kept = &c.kept[0];
    assert_eq!(kept.sid.as_deref(), Some("DrRestore"));
    assert_eq!(kept.statement, value(DR));
    assert_eq!(kept.severity, Severity::Access);
    assert_eq!(
        kept.why,
        "grants access that is neither public, cross-account nor key administration: arn:aws:iam::111122223333:role/dr-restore gains kms:Decrypt, kms:DescribeKey (no condition)"
    );
    // Nothing to write: the live policy is what merging gives.
    assert_eq!(c.merged, text);
    // Exact matching would have removed it.
    assert!(matches!(
        compare(&text, &parse(&baseline())),
        Verdict::Drift(_)
    ));
}

#[test]
fn an_extra_public_decrypt_is_removed_while_an_allowed_extra_is_kept_in_merged() {
    let c = run(&[ROOT, GUARD, USE, PUBLIC, DR]);
    assert!(!c.satisfied());
    assert!(c.missing.is_empty());
    assert_eq!(c.removed.len(), 1);
    let removed = &c.removed[0];
    assert_eq!(removed.sid.as_deref(), Some("Open"));
    assert_eq!(removed.statement, value(PUBLIC));
    assert_eq!(removed.severity, Severity::Public);
    assert_eq!(
        removed.why,
        "grants public access: * gains kms:Decrypt (no condition); only the baseline may grant that: add the statement to the baseline if it is intended"
    );
    assert_eq!(c.kept.len(), 1);
    assert_eq!(c.kept[0].sid.as_deref(), Some("DrRestore"));
    // The baseline as written, then the kept extra; the public one is gone.
    assert_eq!(
        merged_statements(&c),
        [value(ROOT), value(GUARD), value(USE), value(DR)]
    );
    assert!(same(&c.merged, &live(&[ROOT, GUARD, USE, DR])));
    assert!(!c.merged.contains("\"Open\""));
}

#[test]
fn an_extra_foreign_account_principal_is_removed_as_cross_account() {
    let foreign = r#"{"Sid":"Partner","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"kms:Decrypt","Resource":"*"}"#;
    let c = run(&[ROOT, GUARD, USE, foreign]);
    assert!(!c.satisfied());
    assert!(c.kept.is_empty());
    assert_eq!(c.removed.len(), 1);
    assert_eq!(c.removed[0].severity, Severity::CrossAccount);
    assert_eq!(
        c.removed[0].why,
        "grants access to another account or an organisation: arn:aws:iam::999988887777:root gains kms:Decrypt (no condition); only the baseline may grant that: add the statement to the baseline if it is intended"
    );
    // Nothing kept: the document to write is the baseline text itself.
    assert_eq!(c.merged, baseline());
}

#[test]
fn an_extra_granting_administration_to_a_same_account_role_is_removed_as_admin() {
    for action in [
        r#""kms:*""#,
        r#""kms:PutKeyPolicy""#,
        r#"["kms:Decrypt","kms:CreateGrant"]"#,
    ] {
        let ops = format!(
            r#"{{"Sid":"Ops","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:role/Ops"}},"Action":{action},"Resource":"*"}}"#
        );
        let c = run(&[ROOT, GUARD, USE, &ops]);
        assert!(!c.satisfied(), "{action}");
        assert!(c.kept.is_empty(), "{action}");
        assert_eq!(c.removed.len(), 1, "{action}");
        assert_eq!(c.removed[0].severity, Severity::Admin, "{action}");
        assert!(
            c.removed[0].why.starts_with(
                "grants key administration: arn:aws:iam::111122223333:role/Ops gains "
            ),
            "{}",
            c.removed[0].why
        );
        assert_eq!(c.merged, baseline());
    }
}

#[test]
fn an_extra_deny_of_what_the_baseline_allows_is_removed_as_contradicting() {
    let deny = r#"{"Sid":"NoDecrypt","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":"kms:Decrypt","Resource":"*"}"#;
    let c = run(&[ROOT, GUARD, USE, DR, deny]);
    assert!(!c.satisfied());
    assert_eq!(c.removed.len(), 1);
    assert_eq!(c.removed[0].sid.as_deref(), Some("NoDecrypt"));
    assert_eq!(c.removed[0].severity, Severity::Narrowing);
    assert_eq!(
        c.removed[0].why,
        "contradicts the baseline: arn:aws:iam::111122223333:role/App loses kms:Decrypt (no condition); only the baseline may restrict what it grants: change the baseline if the restriction is intended"
    );
    assert_eq!(c.kept.len(), 1);
    assert!(same(&c.merged, &live(&[ROOT, GUARD, USE, DR])));
}

#[test]
fn an_extra_deny_is_contradicting_even_for_a_principal_the_baseline_does_not_name() {
    // explain reports every unit of an added Deny as a loss unless a baseline Deny already
    // covers it; it does not ask whether the baseline grants it (the root statement
    // delegates to IAM, so it may). Contains matching removes such a Deny too: a Deny the
    // baseline lacks can only take away (the remediator's access included).
    let deny = r#"{"Sid":"NoLogs","Effect":"Deny","Principal":{"Service":"logs.amazonaws.com"},"Action":"kms:Decrypt","Resource":"*"}"#;
    let c = run(&[ROOT, GUARD, USE, deny]);
    assert_eq!(c.removed.len(), 1);
    assert_eq!(c.removed[0].severity, Severity::Narrowing);
    assert!(
        c.removed[0].why.starts_with(
            "contradicts the baseline: logs.amazonaws.com loses kms:Decrypt (no condition)"
        ),
        "{}",
        c.removed[0].why
    );
}

#[test]
fn an_extra_deny_a_baseline_deny_already_covers_is_kept_as_granting_nothing() {
    let wide = r#"{"Sid":"TlsOnly","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#;
    let narrow = r#"{"Sid":"TlsOnlyDecrypt","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":"kms:Decrypt","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#;
    let base = policy(&format!("{ROOT},{GUARD},{wide}"));
    let text = live(&[ROOT, GUARD, wide, narrow]);
    let c = contain(&text, &base, &Trust::own(OWN)).unwrap();
    assert!(c.satisfied(), "{c:#?}");
    assert_eq!(c.kept.len(), 1);
    assert_eq!(c.kept[0].severity, Severity::Cosmetic);
    assert_eq!(c.kept[0].why, "grants nothing the baseline does not");
}

#[test]
fn a_missing_baseline_statement_is_listed_and_present_in_merged() {
    let c = run(&[ROOT, DR]);
    assert!(!c.satisfied());
    assert_eq!(c.missing, ["AllowKmsReplicaGuard", "Use"]);
    assert!(c.removed.is_empty());
    assert_eq!(c.kept.len(), 1);
    assert_eq!(
        merged_statements(&c),
        [value(ROOT), value(GUARD), value(USE), value(DR)]
    );
    // A baseline statement without a Sid is described by its effect, principal and actions.
    let anonymous = USE.replace(r#""Sid":"Use","#, "");
    let base = policy(&format!("{ROOT},{anonymous}"));
    let c = contain(&live(&[ROOT]), &base, &Trust::own(OWN)).unwrap();
    assert_eq!(
        c.missing,
        [
            r#"(no Sid) Allow {"AWS":["arn:aws:iam::111122223333:role/App"]}: kms:Decrypt, kms:Encrypt"#
        ]
    );
    assert_eq!(c.merged, base);
}

#[test]
fn everyone_limited_to_an_organisation_is_cross_account_not_public_and_removed() {
    // explain rates `*` under a positive aws:PrincipalOrgID condition cross-account (the
    // organisation's other accounts gain), not public; cross-account extras go.
    let org = r#"{"Sid":"Org","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-a1b2c3d4e5"}}}"#;
    let c = run(&[ROOT, GUARD, USE, org]);
    assert_eq!(c.removed.len(), 1);
    assert_eq!(c.removed[0].severity, Severity::CrossAccount);
    assert!(
        c.removed[0].why.starts_with(
            "grants access to another account or an organisation: * gains kms:Decrypt when aws:PrincipalOrgID = o-a1b2c3d4e5;"
        ),
        "{}",
        c.removed[0].why
    );
    // Limited to the key's own account instead, `*` is only access, and stays.
    let own = org.replace(
        r#""aws:PrincipalOrgID":"o-a1b2c3d4e5""#,
        r#""kms:CallerAccount":"111122223333""#,
    );
    let c = run(&[ROOT, GUARD, USE, &own]);
    assert!(c.satisfied(), "{c:#?}");
    assert_eq!(c.kept[0].severity, Severity::Access);
}

#[test]
fn a_changed_baseline_statement_under_its_sid_is_removed_and_the_baseline_version_restored() {
    let wider = USE.replace(
        r#"["kms:Decrypt","kms:Encrypt"]"#,
        r#"["kms:Decrypt","kms:Encrypt","kms:ReEncrypt*"]"#,
    );
    let c = run(&[ROOT, GUARD, &wider]);
    assert!(!c.satisfied());
    assert_eq!(c.missing, ["Use"]);
    assert!(c.kept.is_empty());
    assert_eq!(c.removed.len(), 1);
    let removed = &c.removed[0];
    assert_eq!(removed.sid.as_deref(), Some("Use"));
    // Alone it would be access; as a copy of a baseline statement it goes regardless.
    assert_eq!(removed.severity, Severity::Access);
    assert_eq!(
        removed.why,
        "changes baseline statement \"Use\", which the baseline's version replaces; give the statement a Sid of its own to keep it as an extra"
    );
    assert_eq!(c.merged, baseline());
}

#[test]
fn a_renamed_baseline_statement_is_missing_and_its_copy_kept_as_granting_nothing() {
    // As in exact matching, the Sid is part of the statement: the baseline's is restored.
    let renamed = USE.replace(r#""Sid":"Use""#, r#""Sid":"UseRenamed""#);
    let c = run(&[ROOT, GUARD, &renamed]);
    assert!(!c.satisfied());
    assert_eq!(c.missing, ["Use"]);
    assert_eq!(c.kept.len(), 1);
    assert_eq!(c.kept[0].severity, Severity::Cosmetic);
    assert_eq!(c.kept[0].why, "grants nothing the baseline does not");
    assert!(same(&c.merged, &live(&[ROOT, GUARD, USE, &renamed])));
}

#[test]
fn an_extra_naming_a_deleted_principal_is_removed_since_kms_refuses_to_write_it() {
    // KMS shows a deleted role by its unique id and refuses any policy that carries one:
    // keeping the statement would make the merged document unwritable.
    let deleted = r#"{"Sid":"OldRole","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/dr-restore","AROAEXAMPLEEXAMPLE1234"]},"Action":"kms:Decrypt","Resource":"*"}"#;
    let c = run(&[ROOT, GUARD, USE, deleted]);
    assert!(!c.satisfied());
    assert!(c.kept.is_empty());
    assert_eq!(c.removed.len(), 1);
    assert!(
        c.removed[0]
            .why
            .starts_with("names principal AROAEXAMPLEEXAMPLE1234, an IAM unique id"),
        "{}",
        c.removed[0].why
    );
    assert_eq!(c.merged, baseline());
}

#[test]
fn an_extra_the_baseline_already_covers_is_kept_as_granting_nothing() {
    let redundant = r#"{"Sid":"RootDecrypt","Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:Decrypt","Resource":"*"}"#;
    let c = run(&[ROOT, GUARD, USE, redundant]);
    assert!(c.satisfied());
    assert_eq!(c.kept.len(), 1);
    assert_eq!(c.kept[0].severity, Severity::Cosmetic);
    assert_eq!(c.kept[0].why, "grants nothing the baseline does not");
}

#[test]
fn duplicate_extras_are_listed_and_kept_once_as_first_written() {
    let recased = DR.replace("kms:Decrypt", "KMS:decrypt");
    let c = run(&[ROOT, DR, GUARD, &recased, PUBLIC, USE, PUBLIC, DR]);
    assert_eq!(c.kept.len(), 1);
    assert_eq!(c.kept[0].statement, value(DR));
    assert_eq!(c.removed.len(), 1);
    assert_eq!(
        merged_statements(&c),
        [value(ROOT), value(GUARD), value(USE), value(DR)]
    );
}

#[test]
fn merged_keeps_the_baseline_as_written_then_the_extras_in_canonical_order() {
    let audit = r#"{"Sid":"Audit","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/audit"},"Action":"kms:DescribeKey","Resource":"*"}"#;
    let anonymous = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/batch"},"Action":"kms:Encrypt","Resource":"*"}"#;
    // GUARD missing, so there is a document to write.
    let a = run(&[DR, ROOT, audit, USE, anonymous]);
    let b = run(&[anonymous, USE, audit, ROOT, DR]);
    assert!(!a.satisfied() && a.missing == ["AllowKmsReplicaGuard"]);
    assert_eq!(a, b);
    // No Sid sorts first, then by Sid.
    assert_eq!(
        merged_statements(&a),
        [
            value(ROOT),
            value(GUARD),
            value(USE),
            value(anonymous),
            value(audit),
            value(DR)
        ]
    );
    let sids: Vec<Option<&str>> = a.kept.iter().map(|e| e.sid.as_deref()).collect();
    assert_eq!(sids, [None, Some("Audit"), Some("DrRestore")]);
    // Pretty, with the baseline's element order.
    assert!(
        a.merged
            .starts_with("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [")
    );
}

#[test]
fn a_merged_document_is_one_statement_a_line_or_compact_when_that_is_over_the_limit() {
    let extras: Vec<String> = (0..180)
        .map(|i| {
            format!(
                r#"{{"Sid":"R{i}","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:role/r{i}"}},"Action":"kms:Decrypt","Resource":"*"}}"#
            )
        })
        .collect();
    let mut statements = vec![ROOT, GUARD];
    statements.extend(extras.iter().take(100).map(String::as_str));
    // One statement a line: the baseline's as written, the extras compact.
    let c = contain(&live(&statements), &baseline(), &Trust::own(OWN)).unwrap();
    let lines: Vec<&str> = c.merged.lines().collect();
    assert_eq!(lines.len(), 3 + 3 + 100 + 2, "{}", c.merged);
    assert_eq!(lines[3], format!("    {ROOT},"));
    assert_eq!(lines[6], format!("    {},", extras[0]));
    assert!(same(&c.merged, &format!("{}", value(&c.merged))));

    // A baseline statement carrying 25 KB of blanks, and many small extras: one a line,
    // or pretty, is over 32 KB; compact is not.
    statements.extend(extras.iter().skip(100).map(String::as_str));
    let padded_root = ROOT.replacen('{', &format!("{{{}", " ".repeat(25_000)), 1);
    let padded = policy(&format!("{padded_root},{GUARD},{USE}"));
    let c = contain(&live(&statements), &padded, &Trust::own(OWN)).unwrap();
    assert_eq!(c.kept.len(), 180);
    assert!(
        c.merged.len() <= crate::MAX_POLICY_BYTES,
        "{}",
        c.merged.len()
    );
    assert!(!c.merged.contains('\n'));
    assert!(same(&c.merged, &format!("{}", value(&c.merged))));
    let pretty = format!("{:#}", value(&c.merged));
    assert!(pretty.len() > crate::MAX_POLICY_BYTES, "{}", pretty.len());
}

#[test]
fn a_different_version_or_id_is_set_back_to_the_baseline() {
    let text = format!(
        r#"{{"Version":"2008-10-17","Id":"key-consolepolicy-3","Statement":[{ROOT},{GUARD},{USE}]}}"#
    );
    let c = contain(&text, &baseline(), &Trust::own(OWN)).unwrap();
    assert!(!c.satisfied());
    assert!(c.missing.is_empty() && c.kept.is_empty() && c.removed.is_empty());
    assert_eq!(
        c.elements,
        [
            r#"Version: "2008-10-17" in the live policy, "2012-10-17" in the baseline"#,
            r#"Id: "key-consolepolicy-3" in the live policy, none in the baseline"#,
        ]
    );
    assert_eq!(c.merged, baseline());
    // Exact matching agrees that this is drift.
    assert!(matches!(
        compare(&text, &parse(&baseline())),
        Verdict::Drift(_)
    ));
}

#[test]
fn an_unreadable_live_policy_is_replaced_by_the_baseline() {
    for text in [
        "nope".to_owned(),
        "[]".to_owned(),
        live(&[
            ROOT,
            r#"{"Effect":"Allow","Principal":"*","Action":5,"Resource":"*"}"#,
        ]),
    ] {
        let c = contain(&text, &baseline(), &Trust::own(OWN)).unwrap();
        assert!(!c.satisfied(), "{text}");
        let why = c.unreadable.as_deref().expect("unreadable");
        assert!(
            why.starts_with("live policy does not parse (")
                && why.ends_with("; the baseline replaces it"),
            "{why}"
        );
        assert_eq!(
            c.missing,
            ["AllowKmsReplicaGuard", "EnableRootAccess", "Use"]
        );
        assert!(c.kept.is_empty() && c.removed.is_empty());
        assert_eq!(c.merged, baseline());
    }
}

#[test]
fn an_unreadable_baseline_is_an_error() {
    assert!(matches!(
        contain(&live(&[ROOT]), "{", &Trust::own(OWN)),
        Err(PolicyError::NotJson { .. })
    ));
    let bad = policy(r#"{"Effect":"Allow","Principal":"*","Action":5,"Resource":"*"}"#);
    let e = contain(&live(&[ROOT]), &bad, &Trust::own(OWN)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Statement[0].Action must be a string or an array of strings, found the number 5"
    );
}

#[test]
fn the_outcome_serialises_with_snake_case_fields_and_kebab_case_severities() {
    let foreign = r#"{"Effect":"Allow","Principal":{"AWS":"999988887777"},"Action":"kms:Decrypt","Resource":"*"}"#;
    let c = run(&[ROOT, GUARD, USE, DR, foreign]);
    let json = serde_json::to_value(&c).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "merged",
            "missing",
            "kept",
            "removed",
            "elements",
            "unreadable"
        ]
    );
    assert_eq!(json["kept"][0]["sid"], "DrRestore");
    assert_eq!(json["kept"][0]["severity"], "access");
    assert_eq!(json["kept"][0]["statement"], value(DR));
    assert_eq!(json["removed"][0]["sid"], Value::Null);
    assert_eq!(json["removed"][0]["severity"], "cross-account");
    assert!(
        json["removed"][0]["why"]
            .as_str()
            .unwrap()
            .contains("999988887777")
    );
    assert_eq!(json["unreadable"], Value::Null);
}

#[test]
fn contain_with_a_parsed_baseline_answers_like_contain() {
    let base = baseline();
    let canonical = parse(&base);
    for statements in [
        &[ROOT, GUARD, USE][..],
        &[ROOT, GUARD, USE, DR, PUBLIC],
        &[ROOT, DR],
    ] {
        let text = live(statements);
        assert_eq!(
            contain_with(&text, &base, &canonical, &Trust::own(OWN)),
            contain(&text, &base, &Trust::own(OWN)).unwrap()
        );
    }
    assert_eq!(
        contain_with("nope", &base, &canonical, &Trust::own(OWN)),
        contain("nope", &base, &Trust::own(OWN)).unwrap()
    );
    // A text that is not the baseline's after all: the merged document is written from the
    // canonical form, still the baseline plus the kept extras.
    let c = contain_with(&live(&[ROOT, DR]), "not JSON", &canonical, &Trust::own(OWN));
    assert_eq!(c.kept.len(), 1);
    assert!(same(&c.merged, &live(&[ROOT, GUARD, USE, DR])));
}

/// A live policy and a baseline of `apps` application statements each (about 500 bytes a
/// statement), the live policy with `extras` more, every fifth of them (from the fifth)
/// public.
fn sized(apps: usize, extras: usize) -> (String, String) {
    let app = |i: usize, who: &str| {
        json!({"Sid": format!("{who}{i:03}"), "Effect": "Allow",
               "Principal": {"AWS": [format!("arn:aws:iam::111122223333:role/{who}-{i}"),
                                      format!("arn:aws:iam::111122223333:role/{who}-{i}-batch")]},
               "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
               "Resource": "*",
               "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com",
                                              "aws:PrincipalTag/team": format!("team-{i}")}}})
    };
    let mut base = vec![value(ROOT), value(GUARD)];
    base.extend((0..apps).map(|i| app(i, "App")));
    let mut live = base.clone();
    live.reverse();
    live.extend((0..extras).map(|i| {
        let mut s = app(i, "Extra");
        if i % 5 == 4 {
            s["Principal"] = json!("*");
            s.as_object_mut().expect("an object").remove("Condition");
        }
        s
    }));
    let doc = |s: Vec<Value>| format!("{:#}", json!({"Version": "2012-10-17", "Statement": s}));
    (doc(live), doc(base))
}

/// A policy near the KMS size limit: a baseline of about 15 KB and as many extras again.
fn large() -> (String, String) {
    sized(30, 30)
}

#[test]
fn a_policy_near_the_size_limit_is_judged_statement_by_statement() {
    let (text, base) = large();
    assert!(
        text.len() > 30_000 && text.len() <= crate::MAX_POLICY_BYTES,
        "{}",
        text.len()
    );
    let c = contain(&text, &base, &Trust::own(OWN)).unwrap();
    assert_eq!(c.kept.len(), 24);
    assert_eq!(c.removed.len(), 6);
    assert!(c.removed.iter().all(|e| e.severity == Severity::Public));
    assert!(c.kept.iter().all(|e| e.severity == Severity::Access));
    assert!(c.missing.is_empty());
    assert_eq!(
        contain(&c.merged, &base, &Trust::own(OWN)).unwrap().kept,
        c.kept
    );
}

#[test]
fn the_merged_document_validates_as_a_whole_validation_would() {
    let anonymous = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/batch"},"Action":"kms:Encrypt","Resource":"*"}"#;
    let text = live(&[ROOT, GUARD, USE, DR, PUBLIC, anonymous]);
    let c = contain(&text, &baseline(), &Trust::own(OWN)).unwrap();
    assert_eq!(c.kept.len(), 2);
    let base = parse(&baseline());
    let v = validate_merged(&c, &base, &guard()).expect("valid");
    let whole = validate_as(&c.merged, &guard(), Origin::Mirrored).expect("valid");
    assert_eq!(v, whole);
    assert_eq!(v.policy, parse(&c.merged));
    // Statements without a Sid keep their place in the merged document: judged against
    // another account, every grant breaches, named by Sid or by that place.
    let elsewhere = Trust::own("444455556666");
    let breaches = guardrails(&v.policy, &elsewhere);
    assert_eq!(breaches, guardrails(&parse(&c.merged), &elsewhere));
    assert!(
        breaches
            .iter()
            .any(|b| b.sid.is_none() && b.position == Some(4)),
        "{breaches:#?}"
    );
}

#[test]
fn a_kept_deny_that_locks_the_remediator_out_fails_validation_of_the_merged_document() {
    // Contains matching removes an added Deny as a contradiction unless the baseline has
    // one that covers it; whatever it keeps, the lockout check still judges it.
    let deny = r#"{"Sid":"HttpsOnlyPolicyChanges","Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}"#;
    let mut c = contain(
        &live(&[ROOT, GUARD, USE, DR]),
        &baseline(),
        &Trust::own(OWN),
    )
    .unwrap();
    c.kept.push(Extra {
        sid: Some("HttpsOnlyPolicyChanges".to_owned()),
        statement: value(deny),
        severity: Severity::Narrowing,
        why: String::new(),
    });
    c.merged = live(&[ROOT, GUARD, USE, DR, deny]);
    let errors = validate_merged(&c, &parse(&baseline()), &guard())
        .expect_err("a lockout")
        .0;
    assert!(
        matches!(
            errors.as_slice(),
            [ValidationError::LockoutDenied { index: 4, sid: Some(sid), conditional: true, .. }]
                if sid == "HttpsOnlyPolicyChanges"
        ),
        "{errors:?}"
    );
    let whole = validate_as(&c.merged, &guard(), Origin::Mirrored).expect_err("a lockout");
    assert_eq!(errors, whole.0);
}

#[test]
fn a_kept_extra_ignored_by_kms_is_a_warning_and_an_oversized_merge_an_error() {
    let no_resource = r#"{"Sid":"NoResource","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/dr-restore"},"Action":"kms:Decrypt"}"#;
    let c = contain(
        &live(&[ROOT, GUARD, USE, no_resource]),
        &baseline(),
        &Trust::own(OWN),
    )
    .unwrap();
    let v = validate_merged(&c, &parse(&baseline()), &guard()).expect("a warning only");
    assert!(
        matches!(
            v.warnings.as_slice(),
            [ValidationError::MissingElement {
                index: 3,
                element: "Resource",
                ..
            }]
        ),
        "{:?}",
        v.warnings
    );
    // KMS's limit is inclusive.
    let mut exact = c.clone();
    let pad = crate::MAX_POLICY_BYTES - exact.merged.len();
    exact.merged = exact
        .merged
        .replacen('{', &format!("{{{}", " ".repeat(pad)), 1);
    assert_eq!(exact.merged.len(), crate::MAX_POLICY_BYTES);
    assert!(validate_merged(&exact, &parse(&baseline()), &guard()).is_ok());
    let mut big = c.clone();
    big.merged.push_str(&" ".repeat(32_768));
    big.merged.push('\u{100}');
    let errors = validate_merged(&big, &parse(&baseline()), &guard())
        .expect_err("too large")
        .0;
    assert!(
        matches!(
            errors.as_slice(),
            [
                ValidationError::TooLarge { .. },
                ValidationError::InvalidCharacter {
                    character: '\u{100}',
                    ..
                }
            ]
        ),
        "{errors:?}"
    );
}

#[test]
fn the_live_policy_is_parsed_once_for_the_assessment() {
    let text = live(&[ROOT, GUARD, USE, DR, PUBLIC]);
    let c = contain(&text, &baseline(), &Trust::own(OWN)).unwrap();
    assert_eq!(c.live.as_ref(), Some(&parse(&text)));
    let merged = validate_merged(&c, &parse(&baseline()), &guard()).unwrap();
    let trust = Trust::own(OWN);
    assert_eq!(
        assess_parsed(&text, c.live.as_ref(), &merged.policy, &trust),
        assess(&text, &merged.policy, &trust)
    );
    let (verdict, exposure) = assess_parsed(&text, c.live.as_ref(), &merged.policy, &trust);
    assert!(matches!(verdict, Verdict::Drift(_)));
    assert_eq!(exposure.expect("explained").severity, Severity::Public);
    // Unreadable: no canonical form, and the verdict says why.
    let c = contain("nope", &baseline(), &trust).unwrap();
    assert_eq!(c.live, None);
    let (verdict, exposure) = assess_parsed("nope", c.live.as_ref(), &merged.policy, &trust);
    assert!(matches!(verdict, Verdict::Drift(d) if d.contains("does not parse")));
    assert_eq!(exposure, None);
}

// ---------------------------------------------------------------------------------------
// Properties.

const PRINCIPALS: &[&str] = &[
    "arn:aws:iam::111122223333:root",
    "arn:aws:iam::111122223333:role/dr-restore",
    "arn:aws:iam::111122223333:role/App",
    "arn:aws:iam::999988887777:root",
    "*",
];
const ACTIONS: &[&str] = &[
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:DescribeKey",
    "kms:GenerateDataKey*",
    "kms:PutKeyPolicy",
    "kms:*",
];
/// (operator, key, value) of the one condition a statement may have.
const CONDITIONS: &[(&str, &str, &str)] = &[
    (
        "StringEquals",
        "kms:ViaService",
        "s3.eu-west-1.amazonaws.com",
    ),
    ("StringEquals", "aws:PrincipalOrgID", "o-a1b2c3d4e5"),
    ("StringEquals", "kms:CallerAccount", "111122223333"),
    ("Bool", "aws:SecureTransport", "false"),
];

#[derive(Debug, Clone)]
struct Stmt {
    sid: Option<String>,
    allow: bool,
    principals: Vec<&'static str>,
    actions: Vec<&'static str>,
    condition: Option<(&'static str, &'static str, &'static str)>,
}

fn stmt() -> impl Strategy<Value = Stmt> {
    (
        prop_oneof![4 => Just(true), 1 => Just(false)],
        subsequence(PRINCIPALS, 1..=2),
        subsequence(ACTIONS, 1..=3),
        prop::option::of(select(CONDITIONS)),
    )
        .prop_map(|(allow, principals, actions, condition)| Stmt {
            sid: None,
            allow,
            principals,
            actions,
            condition,
        })
}

/// Baseline statements: Sids `B0`, `B1`, ... or none.
fn baseline_statements() -> impl Strategy<Value = Vec<Stmt>> {
    prop::collection::vec((stmt(), prop::bool::weighted(0.8)), 1..=5).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (mut s, named))| {
                s.sid = named.then(|| format!("B{i}"));
                s
            })
            .collect()
    })
}

/// Extra statements: no Sid, a Sid of their own, or the Sid of a baseline statement.
fn extra_statements() -> impl Strategy<Value = Vec<Stmt>> {
    prop::collection::vec((stmt(), 0..3u8), 0..=4).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (mut s, sid))| {
                s.sid = match sid {
                    0 => None,
                    1 => Some(format!("E{i}")),
                    _ => Some("B0".to_owned()),
                };
                s
            })
            .collect()
    })
}

/// xorshift64*, for the choices a rewrite makes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }

    fn recase(&mut self, s: &str) -> String {
        s.chars()
            .map(|c| {
                if self.chance() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }
}

/// A statement as JSON; with an `Rng`, rewritten in ways that keep its meaning (re-cased
/// Effect and actions, lists reordered, the own account root as a bare id).
fn render(s: &Stmt, rng: Option<&mut Rng>) -> Value {
    let mut out = Map::new();
    if let Some(sid) = &s.sid {
        out.insert("Sid".into(), json!(sid));
    }
    let effect = if s.allow { "Allow" } else { "Deny" };
    let mut principals: Vec<String> = s.principals.iter().map(|p| (*p).to_owned()).collect();
    let mut actions: Vec<String> = s.actions.iter().map(|a| (*a).to_owned()).collect();
    let effect = match rng {
        Some(r) => {
            r.shuffle(&mut principals);
            r.shuffle(&mut actions);
            for p in &mut principals {
                if p == "arn:aws:iam::111122223333:root" && r.chance() {
                    *p = "111122223333".to_owned();
                }
            }
            for a in &mut actions {
                *a = r.recase(a);
            }
            r.recase(effect)
        }
        None => effect.to_owned(),
    };
    out.insert("Effect".into(), json!(effect));
    out.insert("Principal".into(), json!({ "AWS": principals }));
    out.insert("Action".into(), json!(actions));
    out.insert("Resource".into(), json!("*"));
    if let Some((op, key, v)) = s.condition {
        out.insert("Condition".into(), json!({ op: { key: v } }));
    }
    Value::Object(out)
}

fn document(version: Option<&str>, statements: Vec<Value>) -> String {
    let mut doc = Map::new();
    if let Some(v) = version {
        doc.insert("Version".into(), json!(v));
    }
    doc.insert("Statement".into(), Value::Array(statements));
    Value::Object(doc).to_string()
}

/// The baseline text, and a live text of the picked baseline statements (rewritten) and
/// the extras, shuffled.
fn texts(
    base: &[Stmt],
    pick: &[bool],
    extras: &[Stmt],
    version: Option<&str>,
    seed: u64,
) -> (String, String) {
    let rng = &mut Rng(seed | 1);
    let baseline = document(
        Some("2012-10-17"),
        base.iter().map(|s| render(s, None)).collect(),
    );
    let mut statements: Vec<Value> = base
        .iter()
        .zip(pick.iter().chain(std::iter::repeat(&true)))
        .filter(|(_, keep)| **keep)
        .map(|(s, _)| render(s, Some(rng)))
        .chain(extras.iter().map(|s| render(s, None)))
        .collect();
    rng.shuffle(&mut statements);
    (document(version, statements), baseline)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn contains_matching_without_extras_is_exact_matching(
        base in baseline_statements(),
        pick in prop::collection::vec(prop::bool::weighted(0.7), 5),
        version in select(&[Some("2012-10-17"), Some("2012-10-17"), Some("2008-10-17"), None][..]),
        seed in any::<u64>(),
    ) {
        let (live, baseline) = texts(&base, &pick, &[], version, seed);
        let c = contain(&live, &baseline, &Trust::own(OWN)).expect("the baseline parses");
        prop_assert!(c.kept.is_empty() && c.removed.is_empty(), "{:#?}", c);
        let exact = compare(&live, &parse(&baseline)) == Verdict::InSync;
        prop_assert_eq!(c.satisfied(), exact, "{}\n{:#?}", live, c);
        prop_assert!(same(&c.merged, &baseline));
        // Nothing to write, or the baseline text itself.
        let expected = if exact { &live } else { &baseline };
        prop_assert_eq!(&c.merged, expected);
    }

    #[test]
    fn merging_is_idempotent(
        base in baseline_statements(),
        pick in prop::collection::vec(any::<bool>(), 5),
        extras in extra_statements(),
        seed in any::<u64>(),
    ) {
        let (live, baseline) = texts(&base, &pick, &extras, Some("2012-10-17"), seed);
        let first = contain(&live, &baseline, &Trust::own(OWN)).expect("the baseline parses");
        let again = contain(&first.merged, &baseline, &Trust::own(OWN)).expect("the baseline parses");
        prop_assert!(again.satisfied(), "{}\n{:#?}\n{:#?}", live, first, again);
        prop_assert!(same(&again.merged, &first.merged));
        prop_assert_eq!(&again.kept, &first.kept);
        // And the first write already restored every baseline statement.
        let merged = parse(&first.merged);
        let base_policy = parse(&baseline);
        prop_assert!(merged.statements.is_superset(&base_policy.statements));
    }

    #[test]
    fn the_merged_policy_never_grants_more_than_access_beyond_the_baseline(
        base in baseline_statements(),
        pick in prop::collection::vec(any::<bool>(), 5),
        extras in extra_statements(),
        seed in any::<u64>(),
    ) {
        let (live, baseline) = texts(&base, &pick, &extras, Some("2012-10-17"), seed);
        let c = contain(&live, &baseline, &Trust::own(OWN)).expect("the baseline parses");
        let base_policy: CanonicalPolicy = parse(&baseline);
        let e = explain(&base_policy, &parse(&c.merged), &Trust::own(OWN));
        prop_assert!(e.losses.is_empty(), "{:#?}\n{:#?}", c, e);
        prop_assert!(e.severity <= Severity::Access, "{:#?}\n{:#?}", c, e);
        let base_sid = |sid: &Option<String>| {
            base.iter().any(|s| s.sid.is_some() && &s.sid == sid)
        };
        for kept in &c.kept {
            prop_assert!(kept.severity <= Severity::Access, "{:#?}", kept);
            prop_assert!(!base_sid(&kept.sid), "{:#?}", kept);
        }
        for removed in &c.removed {
            let reason = removed.severity >= Severity::Admin
                || removed.severity == Severity::Narrowing
                || base_sid(&removed.sid);
            prop_assert!(reason, "{:#?}", removed);
        }
        // Each judgement is the one the full explanation gives: the extra against the
        // whole baseline.
        for extra in c.kept.iter().chain(&c.removed) {
            let one = CanonicalPolicy::from_value(&json!({ "Statement": [extra.statement] }))
                .expect("a live statement parses");
            let mut with = base_policy.clone();
            with.statements.extend(one.statements);
            let full = explain(&base_policy, &with, &Trust::own(OWN));
            prop_assert_eq!(full.severity, extra.severity, "{:#?}", extra);
            let keep = full.severity <= Severity::Access
                && full.losses.is_empty()
                && !base_sid(&extra.sid);
            prop_assert_eq!(keep, c.kept.contains(extra), "{:#?}\n{:#?}", extra, full);
        }
        // Every distinct extra is judged exactly once.
        let live_policy = parse(&live);
        let distinct = live_policy.statements.difference(&base_policy.statements).count();
        prop_assert_eq!(c.kept.len() + c.removed.len(), distinct);
    }

    #[test]
    fn validating_the_kept_extras_is_validating_the_merged_document(
        base in baseline_statements(),
        pick in prop::collection::vec(any::<bool>(), 5),
        extras in extra_statements(),
        seed in any::<u64>(),
    ) {
        let (live, baseline) = texts(&base, &pick, &extras, Some("2012-10-17"), seed);
        let root = r#"{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}"#;
        let mut with_root = value(&baseline);
        with_root["Statement"].as_array_mut().expect("an array").push(value(root));
        let baseline = with_root.to_string();
        // Only a baseline that passes validation is ever merged.
        let guard = guard();
        let Ok(base_policy) = validate(&baseline, &guard) else {
            return Ok(());
        };
        let c = contain(&live, &baseline, &Trust::own(OWN)).expect("the baseline parses");
        let whole = validate_as(&c.merged, &guard, Origin::Mirrored);
        match validate_merged(&c, &base_policy, &guard) {
            Ok(v) => {
                let whole = whole.expect("valid as a whole too");
                prop_assert_eq!(&v.policy, &whole.policy);
                prop_assert_eq!(v.warnings.len(), whole.warnings.len());
            }
            Err(e) => {
                let whole = whole.expect_err("invalid as a whole too");
                prop_assert_eq!(e.0.len(), whole.0.len(), "{}\n{}", e, whole);
            }
        }
    }
}
