//! The access explanation: one named test per rule of gains, losses, conditions and
//! severity.

use super::super::{Access, Exposure, Severity, Trust, explain};
use super::{parse, policy};

const OWN: &str = "111122223333";
const ROOT: &str = r#"{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;
const USE: &str = r#"{"Sid":"Use","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}}"#;

/// The explanation from a baseline of the given statements to a live policy of others.
fn ex(from: &str, to: &str) -> Exposure {
    explain(&parse(&policy(from)), &parse(&policy(to)), &Trust::own(OWN))
}

/// The baseline (ROOT, USE) against the baseline plus one statement.
fn added(statement: &str) -> Exposure {
    ex(
        &format!("{ROOT},{USE}"),
        &format!("{ROOT},{USE},{statement}"),
    )
}

fn access(principal: &str, actions: &[&str], when: Option<&str>) -> Access {
    Access {
        principal: principal.to_owned(),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        when: when.map(str::to_owned),
    }
}

#[test]
fn everyone_as_a_bare_star_gaining_decrypt_is_public() {
    let e = added(r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#);
    assert_eq!(e.severity, Severity::Public);
    assert_eq!(e.gains, [access("*", &["kms:Decrypt"], None)]);
    assert!(e.losses.is_empty());
    assert!(!e.is_empty(), "a gain alone is a change of access");
    assert_eq!(
        e.sentences(),
        ["* gains kms:Decrypt (no condition) — public"]
    );
}

#[test]
fn everyone_as_aws_star_gaining_decrypt_is_public() {
    let e = added(
        r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}"#,
    );
    assert_eq!(e.severity, Severity::Public);
    assert_eq!(e.gains, [access("*", &["kms:Decrypt"], None)]);
}

#[test]
fn everyone_limited_to_an_organisation_is_cross_account_not_public() {
    let e = added(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-a1b2c3d4e5"}}}"#,
    );
    assert_eq!(e.severity, Severity::CrossAccount);
    assert_eq!(
        e.gains[0].when.as_deref(),
        Some("aws:PrincipalOrgID = o-a1b2c3d4e5")
    );
}

#[test]
fn everyone_with_only_a_via_service_condition_is_public() {
    let e = added(
        r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"},"Bool":{"aws:SecureTransport":"true"}}}"#,
    );
    assert_eq!(e.severity, Severity::Public);
}

#[test]
fn everyone_with_an_if_exists_caller_account_condition_is_public() {
    let e = added(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEqualsIfExists":{"kms:CallerAccount":"111122223333"}}}"#,
    );
    assert_eq!(e.severity, Severity::Public);
}

#[test]
fn everyone_with_a_wildcard_or_negated_account_condition_is_public() {
    for condition in [
        r#"{"StringLike":{"aws:PrincipalAccount":"*"}}"#,
        r#"{"StringNotEquals":{"aws:PrincipalAccount":"999999999999"}}"#,
        r#"{"ForAllValues:StringEquals":{"aws:PrincipalOrgID":"o-a1b2c3d4e5"}}"#,
    ] {
        let e = added(&format!(
            r#"{{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{condition}}}"#
        ));
        assert_eq!(e.severity, Severity::Public, "{condition}");
    }
}

#[test]
fn everyone_limited_to_the_own_account_is_only_access() {
    let e = added(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"}}}"#,
    );
    assert_eq!(e.severity, Severity::Access);
    let e = added(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"444455556666"}}}"#,
    );
    assert_eq!(e.severity, Severity::CrossAccount);
}

#[test]
fn a_foreign_account_root_or_role_is_cross_account() {
    for principal in [
        r#""444455556666""#,
        r#""arn:aws:iam::444455556666:root""#,
        r#""arn:aws:iam::444455556666:role/Reader""#,
    ] {
        let e = added(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":{principal}}},"Action":"kms:Decrypt","Resource":"*"}}"#
        ));
        assert_eq!(e.severity, Severity::CrossAccount, "{principal}");
    }
    let e = added(
        r#"{"Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"kms:Decrypt","Resource":"*"}"#,
    );
    assert_eq!(
        e.gains,
        [access(
            "arn:aws:iam::444455556666:root",
            &["kms:Decrypt"],
            None
        )]
    );
}

#[test]
fn an_own_account_role_gaining_every_kms_action_is_admin() {
    let e = added(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/Ops"},"Action":"kms:*","Resource":"*"}"#,
    );
    assert_eq!(e.severity, Severity::Admin);
    assert_eq!(
        e.gains,
        [access(
            "arn:aws:iam::111122223333:role/Ops",
            &["kms:*"],
            None
        )]
    );
    for action in [
        "*",
        "kms:Put*",
        "kms:Create*",
        "kms:ScheduleKeyDeletion",
        "kms:*KeyPolicy",
        "kms:*Key*",
    ] {
        let e = added(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:role/Ops"}},"Action":"{action}","Resource":"*"}}"#
        ));
        assert_eq!(e.severity, Severity::Admin, "{action}");
    }
}

#[test]
fn every_action_but_some_is_admin_unless_it_excludes_administration() {
    let but = |excluded: &str| {
        added(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:role/Ops"}},"NotAction":{excluded},"Resource":"*"}}"#
        ))
        .severity
    };
    assert_eq!(but(r#""kms:Decrypt""#), Severity::Admin);
    assert_eq!(but(r#""kms:*""#), Severity::Access);
    // Usage patterns only: access.
    for action in ["kms:*crypt", "kms:GenerateDataKey*"] {
        let e = added(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:role/Ops"}},"Action":"{action}","Resource":"*"}}"#
        ));
        assert_eq!(e.severity, Severity::Access, "{action}");
    }
}

#[test]
fn an_own_account_role_gaining_decrypt_is_access() {
    let e = added(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/Other"},"Action":"kms:Decrypt","Resource":"*"}"#,
    );
    assert_eq!(e.severity, Severity::Access);
}

#[test]
fn a_removed_statement_is_narrowing() {
    let e = ex(&format!("{ROOT},{USE}"), ROOT);
    assert_eq!(e.severity, Severity::Narrowing);
    assert!(e.gains.is_empty());
    assert!(!e.is_empty(), "a loss alone is a change of access");
    assert_eq!(
        e.losses,
        [access(
            "arn:aws:iam::111122223333:role/App",
            &["kms:Decrypt", "kms:Encrypt"],
            Some("kms:ViaService = s3.eu-west-1.amazonaws.com"),
        )]
    );
    assert_eq!(
        e.sentences(),
        [
            "arn:aws:iam::111122223333:role/App loses kms:Decrypt, kms:Encrypt when kms:ViaService = s3.eu-west-1.amazonaws.com — narrowing"
        ]
    );
}

#[test]
fn a_sid_rename_is_cosmetic() {
    let e = ex(
        &format!("{ROOT},{USE}"),
        &format!("{ROOT},{}", USE.replace("\"Use\"", "\"Renamed\"")),
    );
    assert_eq!(e.severity, Severity::Cosmetic);
    assert!(e.is_empty());
    assert!(e.sentences().is_empty());
}

#[test]
fn an_id_is_cosmetic() {
    let from = parse(&policy(ROOT));
    let to = parse(&format!(
        r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{ROOT}]}}"#
    ));
    assert_ne!(from, to);
    let e = explain(&from, &to, &Trust::own(OWN));
    assert_eq!(e.severity, Severity::Cosmetic);
    assert!(e.is_empty());
}

#[test]
fn a_statement_split_into_two_is_cosmetic() {
    let split = format!(
        "{},{}",
        USE.replace(r#"["kms:Decrypt","kms:Encrypt"]"#, r#""kms:Decrypt""#),
        USE.replace(r#"["kms:Decrypt","kms:Encrypt"]"#, r#""kms:Encrypt""#)
            .replace("\"Use\"", "\"Use2\"")
    );
    let e = ex(&format!("{ROOT},{USE}"), &format!("{ROOT},{split}"));
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(e.severity, Severity::Cosmetic);
    // And merged back.
    let e = ex(&format!("{ROOT},{split}"), &format!("{ROOT},{USE}"));
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn an_added_deny_is_a_loss_and_a_removed_deny_a_gain() {
    let deny = r#"{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":"kms:Decrypt","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#;
    let e = ex(&format!("{ROOT},{USE}"), &format!("{ROOT},{USE},{deny}"));
    assert_eq!(e.severity, Severity::Narrowing);
    assert!(e.gains.is_empty());
    assert_eq!(
        e.losses,
        [access(
            "arn:aws:iam::111122223333:role/App",
            &["kms:Decrypt"],
            Some("aws:SecureTransport = false"),
        )]
    );
    let e = ex(&format!("{ROOT},{USE},{deny}"), &format!("{ROOT},{USE}"));
    assert!(e.losses.is_empty());
    assert_eq!(e.gains.len(), 1);
    assert_eq!(e.severity, Severity::Access);
}

#[test]
fn a_removed_deny_of_administration_is_admin() {
    let deny = r#"{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":"kms:ScheduleKeyDeletion","Resource":"*"}"#;
    let e = ex(&format!("{ROOT},{deny}"), ROOT);
    assert_eq!(e.severity, Severity::Admin);
    assert_eq!(
        e.gains[0].sentence(true),
        "arn:aws:iam::111122223333:role/App gains kms:ScheduleKeyDeletion (no condition)"
    );
}

#[test]
fn an_allow_a_deny_in_the_live_policy_cancels_is_not_a_gain() {
    let allow = r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}}"#;
    let deny = r#"{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}"#;
    let e = ex(
        &format!("{ROOT},{USE},{deny}"),
        &format!("{ROOT},{USE},{deny},{allow}"),
    );
    assert!(e.is_empty(), "{e:?}");
    // A Deny under a condition the Allow does not imply does not cancel it.
    let partial = r#"{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#;
    let e = ex(
        &format!("{ROOT},{USE},{partial}"),
        &format!("{ROOT},{USE},{partial},{allow}"),
    );
    assert_eq!(e.severity, Severity::Public);
}

#[test]
fn an_account_id_and_its_root_arn_are_no_change() {
    let bare = ROOT.replace("arn:aws:iam::111122223333:root", "111122223333");
    let e = ex(ROOT, &bare);
    assert!(e.is_empty());
    let e = ex(&bare, ROOT);
    assert!(e.is_empty());
}

#[test]
fn every_kms_action_in_the_baseline_covers_decrypt_in_the_live_policy() {
    let decrypt = ROOT.replace("kms:*", "kms:Decrypt");
    let e = ex(ROOT, &format!("{ROOT},{decrypt}"));
    assert!(e.is_empty(), "{e:?}");
    // Also a wider pattern over a narrower one, and `*` over everything.
    let get = ROOT.replace("kms:*", "kms:Get*");
    let get_key = ROOT.replace("kms:*", "kms:GetKey*");
    assert!(ex(&get, &get_key).gains.is_empty());
    assert_eq!(ex(&get_key, &get).gains[0].actions, ["kms:Get*"]);
    assert!(ex(&ROOT.replace("kms:*", "*"), ROOT).gains.is_empty());
    // The reverse is a loss of everything but Decrypt, shown as the pattern it was.
    let e = ex(ROOT, &decrypt);
    assert_eq!(e.severity, Severity::Narrowing);
    assert_eq!(e.losses[0].actions, ["kms:*"]);
}

#[test]
fn a_grant_to_everyone_both_policies_have_covers_what_a_role_gains_under_it() {
    // The shared statement names no principal of the changed one, only everyone.
    for everyone in [r#"{"AWS":"*"}"#, r#""*""#] {
        let anyone = format!(
            r#"{{"Sid":"AnyoneInAccount","Effect":"Allow","Principal":{everyone},"Action":"kms:*","Resource":"*","Condition":{{"StringEquals":{{"kms:CallerAccount":"111122223333"}}}}}}"#
        );
        let app = r#"{"Sid":"App","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"}}}"#;
        let e = ex(
            &format!("{ROOT},{anyone}"),
            &format!("{ROOT},{anyone},{app}"),
        );
        assert!(e.is_empty(), "{everyone}: {e:?}");
        // Without it, the role's grant is a gain.
        assert!(!ex(ROOT, &format!("{ROOT},{app}")).is_empty());
    }
}

#[test]
fn coverage_is_judged_per_principal_action_and_resource() {
    const KEY1: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1";
    const KEY2: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-2";
    let a = "arn:aws:iam::111122223333:role/A";
    let b = "arn:aws:iam::111122223333:role/B";
    let both = format!(
        r#"{{"Sid":"Both","Effect":"Allow","Principal":{{"AWS":["{a}","{b}"]}},"Action":["kms:Decrypt","kms:Encrypt"],"Resource":["{KEY1}","{KEY2}"]}}"#
    );
    let b_encrypts = |resource: &str| {
        format!(
            r#"{{"Sid":"BEncrypts","Effect":"Allow","Principal":{{"AWS":"{b}"}},"Action":"kms:Encrypt","Resource":"{resource}"}}"#
        )
    };
    // B may already encrypt with every key: of the new grant, that alone is not gained.
    let every = b_encrypts("*");
    let e = ex(
        &format!("{ROOT},{every}"),
        &format!("{ROOT},{every},{both}"),
    );
    assert_eq!(
        e.gains,
        [
            access(a, &["kms:Decrypt", "kms:Encrypt"], None),
            access(b, &["kms:Decrypt"], None),
        ]
    );
    // With one key only, B still gains encryption with the other.
    let one = b_encrypts(KEY2);
    let e = ex(&format!("{ROOT},{one}"), &format!("{ROOT},{one},{both}"));
    assert_eq!(
        e.gains,
        [
            access(a, &["kms:Decrypt", "kms:Encrypt"], None),
            access(b, &["kms:Decrypt", "kms:Encrypt"], None),
        ]
    );
}

#[test]
fn a_not_principal_grant_covers_everyone_it_does_not_exclude() {
    let all_but_blocked = r#"{"Sid":"AllButBlocked","Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:role/Blocked"},"Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"}}}"#;
    let to = |principal: &str| {
        format!(
            r#"{all_but_blocked},{{"Sid":"New","Effect":"Allow","Principal":{principal},"Action":"kms:Decrypt","Resource":"*","Condition":{{"StringEquals":{{"kms:CallerAccount":"111122223333"}}}}}}"#
        )
    };
    // Another role is covered; the excluded role, and everyone, are not.
    assert!(
        ex(
            all_but_blocked,
            &to(r#"{"AWS":"arn:aws:iam::111122223333:role/App"}"#)
        )
        .is_empty()
    );
    let e = ex(
        all_but_blocked,
        &to(r#"{"AWS":"arn:aws:iam::111122223333:role/Blocked"}"#),
    );
    assert_eq!(
        e.gains[0].principal,
        "arn:aws:iam::111122223333:role/Blocked"
    );
    let e = ex(all_but_blocked, &to(r#"{"AWS":"*"}"#));
    assert_eq!(e.gains[0].principal, "*");
    // Excluding everyone covers nobody.
    let nobody = all_but_blocked.replace(
        r#"{"AWS":"arn:aws:iam::111122223333:role/Blocked"}"#,
        r#""*""#,
    );
    let e = ex(
        &nobody,
        &to(r#"{"AWS":"arn:aws:iam::111122223333:role/App"}"#),
    );
    assert_eq!(e.gains[0].principal, "arn:aws:iam::111122223333:role/App");
}

#[test]
fn every_action_covers_every_action_but_some() {
    let every = ROOT.replace(r#""Action":"kms:*""#, r#""Action":"*""#);
    let all_but = ROOT.replace(r#""Action":"kms:*""#, r#""NotAction":"kms:Decrypt""#);
    assert!(ex(&every, &all_but).gains.is_empty());
    assert!(
        ex(
            &every.replace(r#""*","Resource""#, r#""**","Resource""#),
            &all_but
        )
        .gains
        .is_empty()
    );
    // A pattern short of everything does not.
    assert!(!ex(ROOT, &all_but).gains.is_empty());
}

/// The explanation from App gaining Decrypt under `baseline` to it under `live` (each a
/// Condition block, JSON).
fn app_under(baseline: &str, live: &str) -> Exposure {
    let app = |condition: &str| {
        format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:role/App"}},"Action":"kms:Decrypt","Resource":"*","Condition":{condition}}}"#
        )
    };
    ex(
        &format!("{ROOT},{}", app(baseline)),
        &format!("{ROOT},{}", app(live)),
    )
}

#[test]
fn a_condition_covers_the_same_condition_and_those_it_implies() {
    let covered = [
        // The same IfExists condition.
        (
            r#"{"StringEqualsIfExists":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
            r#"{"StringEqualsIfExists":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
        ),
        // A wider pattern over a narrower one.
        (
            r#"{"StringLike":{"kms:ViaService":"s3.*"}}"#,
            r#"{"StringLike":{"kms:ViaService":"s3.eu-*"}}"#,
        ),
        // A pattern over an exact value it matches.
        (
            r#"{"StringLike":{"kms:ViaService":"s3.*"}}"#,
            r#"{"StringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
        ),
        (
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::logs-*"}}"#,
            r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:s3:::logs-eu"}}"#,
        ),
        (
            r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:s3:::logs-*"}}"#,
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::logs-eu"}}"#,
        ),
        // A negated condition over one that excludes more.
        (
            r#"{"StringNotEquals":{"kms:ViaService":"ec2.eu-west-1.amazonaws.com"}}"#,
            r#"{"StringNotEquals":{"kms:ViaService":["ec2.eu-west-1.amazonaws.com","rds.eu-west-1.amazonaws.com"]}}"#,
        ),
    ];
    for (baseline, live) in covered {
        let e = app_under(baseline, live);
        assert!(e.gains.is_empty(), "{baseline} should cover {live}: {e:?}");
    }
    let not_covered = [
        // IfExists also holds without the key: wider than the plain form.
        (
            r#"{"StringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
            r#"{"StringEqualsIfExists":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
        ),
        // StringEquals compares literally: its `*` is no wildcard.
        (
            r#"{"StringEquals":{"kms:ViaService":"s3.*"}}"#,
            r#"{"StringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
        ),
        (
            r#"{"StringLike":{"kms:ViaService":"s3.eu-*"}}"#,
            r#"{"StringLike":{"kms:ViaService":"s3.*"}}"#,
        ),
        // Different operators on the same values imply nothing.
        (
            r#"{"NumericGreaterThan":{"aws:MultiFactorAuthAge":"3600"}}"#,
            r#"{"NumericLessThan":{"aws:MultiFactorAuthAge":"3600"}}"#,
        ),
        (
            r#"{"StringNotLike":{"kms:ViaService":"ec2.*"}}"#,
            r#"{"StringNotEquals":{"kms:ViaService":"ec2.*"}}"#,
        ),
        // A negated condition over one that excludes less.
        (
            r#"{"StringNotEquals":{"kms:ViaService":["ec2.eu-west-1.amazonaws.com","rds.eu-west-1.amazonaws.com"]}}"#,
            r#"{"StringNotEquals":{"kms:ViaService":"ec2.eu-west-1.amazonaws.com"}}"#,
        ),
        // A set qualifier changes the meaning.
        (
            r#"{"StringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
            r#"{"ForAllValues:StringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
        ),
    ];
    for (baseline, live) in not_covered {
        let e = app_under(baseline, live);
        assert_eq!(
            e.gains.len(),
            1,
            "{baseline} should not cover {live}: {e:?}"
        );
    }
}

#[test]
fn a_wider_condition_in_the_baseline_covers_a_stricter_live_one() {
    let wide = USE.replace(
        r#""s3.eu-west-1.amazonaws.com""#,
        r#"["s3.eu-west-1.amazonaws.com","ec2.eu-west-1.amazonaws.com"]"#,
    );
    assert!(ex(&wide, USE).gains.is_empty());
    let e = ex(USE, &wide);
    assert_eq!(e.severity, Severity::Access);
    assert_eq!(
        e.gains[0].when.as_deref(),
        Some("kms:ViaService in [ec2.eu-west-1.amazonaws.com, s3.eu-west-1.amazonaws.com]")
    );
    // Unconditional covers conditional; a negated operator covers a larger exclusion.
    let unconditional = r#"{"Sid":"Use","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*"}"#;
    assert!(ex(unconditional, USE).gains.is_empty());
    let not = |v: &str| {
        USE.replace("StringEquals", "StringNotEquals")
            .replace(r#""s3.eu-west-1.amazonaws.com""#, v)
    };
    assert!(ex(&not(r#""a""#), &not(r#"["a","b"]"#)).gains.is_empty());
    assert!(!ex(&not(r#"["a","b"]"#), &not(r#""a""#)).gains.is_empty());
}

#[test]
fn actions_are_shown_as_written_with_wildcards_kept() {
    let e = added(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/Other"},"Action":["kms:GenerateDataKey*","KMS:ReEncrypt*","kms:Decrypt","kms:decrypt"],"Resource":"*"}"#,
    );
    assert_eq!(
        e.gains,
        [access(
            "arn:aws:iam::111122223333:role/Other",
            &["kms:Decrypt", "kms:GenerateDataKey*", "KMS:ReEncrypt*"],
            None
        )]
    );
}

#[test]
fn conditions_are_rendered_compactly_with_keys_as_written() {
    let e = added(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/Other"},"Action":"kms:Decrypt","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"StringLike":{"kms:EncryptionContext:app":"app-*"},"Bool":{"aws:SecureTransport":false}}}"#,
    );
    assert_eq!(
        e.gains[0].when.as_deref(),
        Some(
            "aws:SecureTransport = false and aws:SourceIp IpAddress 10.0.0.0/8 and kms:EncryptionContext:app like app-*"
        )
    );
}

#[test]
fn not_action_and_not_principal_are_shown_as_exceptions() {
    let e = added(
        r#"{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:role/App"},"NotAction":"kms:Decrypt","Resource":"*"}"#,
    );
    assert_eq!(e.severity, Severity::Public);
    assert_eq!(
        e.gains[0].sentence(true),
        "everyone except arn:aws:iam::111122223333:role/App gains every action except kms:Decrypt (no condition)"
    );
    // A NotAction that excludes Decrypt does not cover Decrypt; one that excludes
    // something else does.
    let not_encrypt = ROOT.replace(r#""Action":"kms:*""#, r#""NotAction":"kms:Encrypt""#);
    let decrypt = ROOT.replace("kms:*", "kms:Decrypt");
    assert!(ex(&not_encrypt, &decrypt).gains.is_empty());
    let not_decrypt = ROOT.replace(r#""Action":"kms:*""#, r#""NotAction":"kms:Decrypt""#);
    assert_eq!(ex(&not_decrypt, &decrypt).gains[0].actions, ["kms:Decrypt"]);
    // Narrowing a NotAction's exclusions is a gain.
    let not_both = ROOT.replace(
        r#""Action":"kms:*""#,
        r#""NotAction":["kms:Decrypt","kms:Encrypt"]"#,
    );
    assert!(ex(&not_decrypt, &not_both).gains.is_empty());
    assert_eq!(
        ex(&not_both, &not_decrypt).gains[0].actions,
        ["every action except kms:Decrypt"]
    );
}

#[test]
fn severities_are_ordered_and_named() {
    let names: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "cosmetic",
            "narrowing",
            "access",
            "admin",
            "cross-account",
            "public"
        ]
    );
    assert!(Severity::Public > Severity::CrossAccount && Severity::Admin > Severity::Access);
    for s in Severity::ALL {
        assert_eq!(s.to_string().parse::<Severity>(), Ok(s));
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::Value::String(s.as_str().to_owned())
        );
    }
    assert!("severe".parse::<Severity>().is_err());
}

#[test]
fn the_highest_severity_wins_and_several_lines_end_in_a_summary() {
    let public = r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#;
    let admin = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/Ops"},"Action":"kms:*","Resource":"*"}"#;
    let e = ex(
        &format!("{ROOT},{USE}"),
        &format!("{ROOT},{admin},{public}"),
    );
    assert_eq!(e.severity, Severity::Public);
    assert_eq!(
        e.sentences(),
        [
            "* gains kms:Decrypt (no condition)",
            "arn:aws:iam::111122223333:role/Ops gains kms:* (no condition)",
            // Decrypt stays granted: the unconditional grant to everyone covers it.
            "arn:aws:iam::111122223333:role/App loses kms:Encrypt when kms:ViaService = s3.eu-west-1.amazonaws.com",
            "severity: public",
        ]
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["severity"], "public");
    assert_eq!(json["gains"][0]["when"], serde_json::Value::Null);
}

#[test]
fn every_unit_of_a_large_policy_is_explained() {
    // 100 statements of 20 actions and 10 principals each, on both sides.
    let statement = |i: usize, extra: &str| {
        let actions: Vec<String> = (0..20)
            .map(|a| format!("\"kms:Action{a}{extra}\""))
            .collect();
        let principals: Vec<String> = (0..10)
            .map(|p| format!("\"arn:aws:iam::111122223333:role/R{i}-{p}\""))
            .collect();
        format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":[{}]}},"Action":[{}],"Resource":"*","Condition":{{"StringEquals":{{"kms:ViaService":"s{i}"}}}}}}"#,
            principals.join(","),
            actions.join(",")
        )
    };
    let from: Vec<String> = (0..100).map(|i| statement(i, "")).collect();
    let to: Vec<String> = (0..100).map(|i| statement(i, "X")).collect();
    let (from, to) = (
        parse(&policy(&from.join(","))),
        parse(&policy(&to.join(","))),
    );
    // Its cost belongs in a benchmark, not a timed test; here: every unit is accounted for.
    let e = explain(&from, &to, &Trust::own(OWN));
    assert_eq!(e.gains.len(), 1000);
    assert_eq!(e.losses.len(), 1000);
}

// ---------------------------------------------------------------------------------------
// Trust: which accounts and organisations a grant may reach, and which conditions pin the
// caller to them.

const PARTNER: &str = "444455556666";
const STRANGER: &str = "999988887777";
const ORG: &str = "o-a1b2c3d4e5";

/// The severity of the baseline (ROOT, USE) plus one statement, judged against `trust`.
fn rated(statement: &str, trust: &Trust) -> Severity {
    let from = parse(&policy(&format!("{ROOT},{USE}")));
    let to = parse(&policy(&format!("{ROOT},{USE},{statement}")));
    explain(&from, &to, trust).severity
}

/// `principal` (JSON) gaining kms:Decrypt under `condition` (JSON, or empty).
fn grant(principal: &str, condition: &str) -> String {
    let condition = if condition.is_empty() {
        String::new()
    } else {
        format!(r#","Condition":{condition}"#)
    };
    format!(
        r#"{{"Effect":"Allow","Principal":{principal},"Action":"kms:Decrypt","Resource":"*"{condition}}}"#
    )
}

fn partner_trust() -> Trust {
    Trust::new(OWN, [PARTNER.to_owned()], [ORG.to_owned()])
}

#[test]
fn an_unpinned_service_principal_is_cross_account() {
    let e = added(&grant(r#"{"Service":"logs.amazonaws.com"}"#, ""));
    assert_eq!(e.severity, Severity::CrossAccount);
    assert_eq!(e.gains[0].principal, "logs.amazonaws.com");
    // Trusting more accounts does not help: nothing ties the service to any of them.
    assert_eq!(
        rated(
            &grant(r#"{"Service":"logs.amazonaws.com"}"#, ""),
            &partner_trust()
        ),
        Severity::CrossAccount
    );
}

#[test]
fn a_service_principal_pinned_to_the_own_account_is_only_access() {
    let pinned = grant(
        r#"{"Service":"logs.amazonaws.com"}"#,
        r#"{"StringEquals":{"aws:SourceAccount":"111122223333"}}"#,
    );
    assert_eq!(added(&pinned).severity, Severity::Access);
    let elsewhere = pinned.replace(OWN, STRANGER);
    assert_eq!(added(&elsewhere).severity, Severity::CrossAccount);
}

#[test]
fn a_service_principal_pinned_by_a_bucket_arn_is_cross_account() {
    // An S3 bucket ARN names no account: whoever owns a bucket of that name is the caller.
    let bucket = grant(
        r#"{"Service":"s3.amazonaws.com"}"#,
        r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:s3:::reports"}}"#,
    );
    assert_eq!(added(&bucket).severity, Severity::CrossAccount);
}

#[test]
fn every_pin_ties_everyone_to_the_account_or_organisation_it_names() {
    // (operator, key, value pinning the partner account or the organisation)
    let pins = [
        ("StringEquals", "aws:PrincipalAccount", PARTNER.to_owned()),
        ("StringEquals", "aws:SourceAccount", PARTNER.to_owned()),
        ("StringEquals", "kms:CallerAccount", PARTNER.to_owned()),
        ("StringEquals", "aws:SourceOwner", PARTNER.to_owned()),
        ("StringEquals", "aws:PrincipalOrgID", ORG.to_owned()),
        ("StringEquals", "aws:SourceOrgID", ORG.to_owned()),
        (
            "ForAnyValue:StringLike",
            "aws:PrincipalOrgPaths",
            format!("{ORG}/r-ab12/ou-ab12-11111111/*"),
        ),
        (
            "ForAnyValue:StringLike",
            "aws:SourceOrgPaths",
            format!("{ORG}/*"),
        ),
        (
            "ArnLike",
            "aws:PrincipalArn",
            format!("arn:aws:iam::{PARTNER}:role/*"),
        ),
        (
            "ArnLike",
            "aws:SourceArn",
            format!("arn:aws:logs:*:{PARTNER}:*"),
        ),
        (
            "StringLike",
            "aws:SourceArn",
            format!("arn:aws:logs:us-east-1:{PARTNER}:*"),
        ),
    ];
    for (op, key, value) in pins {
        let statement = grant(r#""*""#, &format!(r#"{{"{op}":{{"{key}":"{value}"}}}}"#));
        assert_eq!(
            rated(&statement, &partner_trust()),
            Severity::Access,
            "{op} {key} trusted"
        );
        // Pinned, so not public; but to someone the default trust does not know.
        assert_eq!(
            rated(&statement, &Trust::own(OWN)),
            Severity::CrossAccount,
            "{op} {key} untrusted"
        );
    }
}

#[test]
fn one_trusted_pin_among_several_is_enough() {
    // Conditions are ANDed: the caller must satisfy the trusted pin whatever the others say.
    let statement = grant(
        r#""*""#,
        &format!(
            r#"{{"StringEquals":{{"aws:PrincipalOrgID":"o-zzzzzzzzzz","aws:PrincipalAccount":"{OWN}"}}}}"#
        ),
    );
    assert_eq!(rated(&statement, &Trust::own(OWN)), Severity::Access);
}

#[test]
fn a_pin_with_one_untrusted_value_does_not_tie_the_caller() {
    let statement = grant(
        r#""*""#,
        &format!(r#"{{"StringEquals":{{"aws:PrincipalAccount":["{OWN}","{STRANGER}"]}}}}"#),
    );
    assert_eq!(rated(&statement, &Trust::own(OWN)), Severity::CrossAccount);
}

#[test]
fn a_resource_account_variable_pins_the_own_account() {
    let statement = grant(
        r#""*""#,
        r#"{"StringEquals":{"aws:PrincipalAccount":"${aws:ResourceAccount}"}}"#,
    );
    assert_eq!(rated(&statement, &Trust::own(OWN)), Severity::Access);
}

#[test]
fn an_encryption_context_of_trusted_resources_pins_a_service_principal_only() {
    let context = format!(
        r#"{{"ArnLike":{{"kms:EncryptionContext:aws:logs:arn":"arn:aws:logs:eu-west-1:{OWN}:log-group:*"}}}}"#
    );
    let service = grant(r#"{"Service":"logs.eu-west-1.amazonaws.com"}"#, &context);
    assert_eq!(rated(&service, &Trust::own(OWN)), Severity::Access);
    let foreign = service.replace(OWN, STRANGER);
    assert_eq!(rated(&foreign, &Trust::own(OWN)), Severity::CrossAccount);
    // Anyone may send any encryption context: for everyone it limits nothing.
    let everyone = grant(r#""*""#, &context);
    assert_eq!(rated(&everyone, &Trust::own(OWN)), Severity::Public);
    // A context value that is not an ARN pins no account.
    let plain = grant(
        r#"{"Service":"logs.eu-west-1.amazonaws.com"}"#,
        r#"{"StringEquals":{"kms:EncryptionContext:app":"billing"}}"#,
    );
    assert_eq!(rated(&plain, &Trust::own(OWN)), Severity::CrossAccount);
}

#[test]
fn a_pin_to_a_caller_of_unknown_account_is_cross_account_not_public() {
    for condition in [
        r#"{"StringLike":{"aws:userid":"AROAEXAMPLEEXAMPLE:*"}}"#,
        r#"{"StringEquals":{"aws:username":"alice"}}"#,
        r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:s3:::reports"}}"#,
    ] {
        let e = added(&grant(r#""*""#, condition));
        assert_eq!(e.severity, Severity::CrossAccount, "{condition}");
    }
    // A user id pattern that starts with a wildcard limits nothing.
    let e = added(&grant(
        r#""*""#,
        r#"{"StringLike":{"aws:userid":"*:alice"}}"#,
    ));
    assert_eq!(e.severity, Severity::Public);
}

#[test]
fn several_values_are_shown_as_a_list_whatever_the_operator() {
    let when = |condition: &str| {
        added(&grant(
            r#"{"AWS":"arn:aws:iam::111122223333:role/Other"}"#,
            condition,
        ))
        .gains[0]
            .when
            .clone()
    };
    assert_eq!(
        when(r#"{"StringLike":{"kms:ViaService":["s3.*","ec2.*"]}}"#).as_deref(),
        Some("kms:ViaService like [ec2.*, s3.*]")
    );
    assert_eq!(
        when(r#"{"NumericLessThan":{"aws:MultiFactorAuthAge":["600","3600"]}}"#).as_deref(),
        Some("aws:MultiFactorAuthAge NumericLessThan [3600, 600]")
    );
    assert_eq!(
        when(r#"{"NumericLessThan":{"aws:MultiFactorAuthAge":"600"}}"#).as_deref(),
        Some("aws:MultiFactorAuthAge NumericLessThan 600")
    );
}

#[test]
fn a_key_that_names_no_account_pins_nothing_even_with_arn_values() {
    let statement = grant(
        r#"{"Service":"logs.amazonaws.com"}"#,
        r#"{"StringEquals":{"kms:GranteePrincipal":"arn:aws:iam::111122223333:role/App"}}"#,
    );
    assert_eq!(added(&statement).severity, Severity::CrossAccount);
}

#[test]
fn conditions_that_hold_without_the_key_are_not_pins() {
    for condition in [
        format!(r#"{{"StringEqualsIfExists":{{"aws:PrincipalAccount":"{OWN}"}}}}"#),
        format!(r#"{{"ArnLikeIfExists":{{"aws:PrincipalArn":"arn:aws:iam::{OWN}:role/*"}}}}"#),
        format!(r#"{{"ForAllValues:StringEquals":{{"aws:PrincipalOrgID":"{ORG}"}}}}"#),
    ] {
        let e = added(&grant(r#""*""#, &condition));
        assert_eq!(e.severity, Severity::Public, "{condition}");
    }
}

#[test]
fn negated_conditions_are_not_pins() {
    for condition in [
        format!(r#"{{"StringNotEquals":{{"aws:PrincipalAccount":"{STRANGER}"}}}}"#),
        format!(r#"{{"ArnNotLike":{{"aws:PrincipalArn":"arn:aws:iam::{STRANGER}:*"}}}}"#),
        format!(r#"{{"StringNotEqualsIgnoreCase":{{"aws:PrincipalOrgID":"{ORG}"}}}}"#),
    ] {
        let e = added(&grant(r#""*""#, &condition));
        assert_eq!(e.severity, Severity::Public, "{condition}");
    }
}

#[test]
fn wildcard_values_are_not_pins() {
    for condition in [
        r#"{"StringLike":{"aws:PrincipalAccount":"1111222233*"}}"#.to_owned(),
        r#"{"StringLike":{"aws:PrincipalOrgID":"o-*"}}"#.to_owned(),
        r#"{"ForAnyValue:StringLike":{"aws:PrincipalOrgPaths":"o-*/r-ab12/*"}}"#.to_owned(),
        r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Admin"}}"#.to_owned(),
        // Under a string operator a `*` before the account may span colons.
        format!(r#"{{"StringLike":{{"aws:SourceArn":"arn:aws:logs:*:{OWN}:*"}}}}"#),
    ] {
        let e = added(&grant(r#""*""#, &condition));
        assert_eq!(e.severity, Severity::Public, "{condition}");
    }
}

#[test]
fn operator_names_are_read_whatever_their_case() {
    for condition in [
        format!(r#"{{"ARNLike":{{"aws:PrincipalArn":"arn:aws:iam::{OWN}:role/*"}}}}"#),
        format!(
            r#"{{"ARNEquals":{{"aws:SourceArn":"arn:aws:logs:eu-west-1:{OWN}:log-group:x"}}}}"#
        ),
        format!(r#"{{"stringequals":{{"aws:PrincipalAccount":"{OWN}"}}}}"#),
        format!(r#"{{"forAnyValue:StringEquals":{{"aws:PrincipalAccount":"{OWN}"}}}}"#),
    ] {
        let e = added(&grant(r#""*""#, &condition));
        assert_eq!(e.severity, Severity::Access, "{condition}");
    }
    // ...and so are their IfExists forms, which are no pins in any case.
    let e = added(&grant(
        r#""*""#,
        &format!(r#"{{"StringEqualsIFEXISTS":{{"aws:PrincipalAccount":"{OWN}"}}}}"#),
    ));
    assert_eq!(e.severity, Severity::Public);
}

#[test]
fn a_re_cased_operator_covers_what_its_documented_spelling_grants() {
    let documented = grant(
        r#"{"AWS":"arn:aws:iam::111122223333:role/App"}"#,
        r#"{"ArnLike":{"aws:SourceArn":"arn:aws:logs:*:111122223333:*"}}"#,
    );
    let recased = documented.replace("ArnLike", "ARNLIKE");
    let e = ex(
        &format!("{ROOT},{documented}"),
        &format!("{ROOT},{recased}"),
    );
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(
        added(&recased).gains[0].when.as_deref(),
        Some("aws:SourceArn ARNLIKE arn:aws:logs:*:111122223333:*")
    );
    // The baseline's USE grants the same under `StringEquals`: nothing is gained.
    let stringy = grant(
        r#"{"AWS":"arn:aws:iam::111122223333:role/App"}"#,
        r#"{"stringEquals":{"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}"#,
    );
    assert!(added(&stringy).is_empty());
    let other = stringy.replace("role/App", "role/Other");
    assert_eq!(
        added(&other).gains[0].when.as_deref(),
        Some("kms:ViaService = s3.eu-west-1.amazonaws.com")
    );
}

#[test]
fn a_trusted_account_is_not_cross_account() {
    for principal in [
        format!(r#"{{"AWS":"{PARTNER}"}}"#),
        format!(r#"{{"AWS":"arn:aws:iam::{PARTNER}:role/Reader"}}"#),
    ] {
        let statement = grant(&principal, "");
        assert_eq!(rated(&statement, &Trust::own(OWN)), Severity::CrossAccount);
        assert_eq!(rated(&statement, &partner_trust()), Severity::Access);
    }
}

#[test]
fn a_trusted_organisation_is_not_cross_account() {
    let statement = grant(
        r#""*""#,
        &format!(r#"{{"StringEquals":{{"aws:PrincipalOrgID":"{ORG}"}}}}"#),
    );
    assert_eq!(rated(&statement, &Trust::own(OWN)), Severity::CrossAccount);
    assert_eq!(
        rated(&statement, &Trust::new(OWN, [], [ORG.to_owned()])),
        Severity::Access
    );
}

#[test]
fn an_untrusted_account_pinned_to_a_trusted_organisation_is_not_cross_account() {
    // The caller must be of that account and of the organisation: inside the trust.
    let statement = grant(
        &format!(r#"{{"AWS":"{STRANGER}"}}"#),
        &format!(r#"{{"StringEquals":{{"aws:PrincipalOrgID":"{ORG}"}}}}"#),
    );
    assert_eq!(rated(&statement, &partner_trust()), Severity::Access);
}

#[test]
fn a_deleted_principal_is_cross_account() {
    let statement = grant(r#"{"AWS":"AROAEXAMPLEEXAMPLE123"}"#, "");
    assert_eq!(rated(&statement, &partner_trust()), Severity::CrossAccount);
}

#[test]
fn a_federated_principal_is_cross_account_unless_its_provider_is_trusted() {
    let web = grant(r#"{"Federated":"cognito-identity.amazonaws.com"}"#, "");
    assert_eq!(rated(&web, &Trust::own(OWN)), Severity::CrossAccount);
    let saml = grant(
        r#"{"Federated":"arn:aws:iam::111122223333:saml-provider/Corp"}"#,
        "",
    );
    assert_eq!(rated(&saml, &Trust::own(OWN)), Severity::Access);
    assert_eq!(
        rated(&saml.replace(OWN, STRANGER), &Trust::own(OWN)),
        Severity::CrossAccount
    );
}

#[test]
fn not_principal_is_public_unless_pinned() {
    let everyone_but = r#"{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:role/Blocked"},"Action":"kms:Decrypt","Resource":"*"}"#;
    assert_eq!(added(everyone_but).severity, Severity::Public);
    let pinned = everyone_but.replace(
        r#""Resource":"*""#,
        r#""Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#,
    );
    assert_eq!(added(&pinned).severity, Severity::Access);
    assert_eq!(
        added(&pinned.replace(
            r#""kms:CallerAccount":"111122223333""#,
            r#""kms:CallerAccount":"999988887777""#
        ))
        .severity,
        Severity::CrossAccount
    );
}

#[test]
fn account_principals_are_shown_in_the_partition_of_the_own_account() {
    let from = parse(&policy(ROOT));
    let to = parse(&policy(&format!(
        "{ROOT},{}",
        grant(&format!(r#"{{"AWS":"{PARTNER}"}}"#), "")
    )));
    let e = explain(&from, &to, &Trust::own("arn:aws-cn:iam::111122223333:root"));
    assert_eq!(e.gains[0].principal, "arn:aws-cn:iam::444455556666:root");
    assert_eq!(e.severity, Severity::CrossAccount);
}
