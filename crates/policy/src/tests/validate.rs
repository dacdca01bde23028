use super::super::{
    LockoutGuard, MAX_POLICY_BYTES, Origin, PolicyError, ValidationError, ValidationErrors,
    is_unique_id, validate, validate_as,
};
use super::{parse, policy};

const ROLE: &str = "arn:aws:iam::111122223333:role/kms-replica-guard";
/// The replica the guards protect.
const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
/// A session of `ROLE`, as the remediator's calls are made.
const SESSION: &str = "arn:aws:sts::111122223333:assumed-role/kms-replica-guard/remediator";
/// The remediator role in another account than the key's.
const FOREIGN_ROLE: &str = "arn:aws:iam::444455556666:role/kms-replica-guard";
const ROOT_ALLOW: &str = r#"{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;

fn root_guard() -> LockoutGuard {
    LockoutGuard {
        key_arn: KEY.into(),
        account_id: "111122223333".into(),
        partition: "aws".into(),
        remediator_role_arn: None,
    }
}

fn role_guard() -> LockoutGuard {
    LockoutGuard {
        remediator_role_arn: Some(ROLE.into()),
        ..root_guard()
    }
}

fn foreign_role_guard() -> LockoutGuard {
    LockoutGuard {
        remediator_role_arn: Some(FOREIGN_ROLE.into()),
        ..root_guard()
    }
}

fn china_guard() -> LockoutGuard {
    LockoutGuard {
        key_arn: "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
            .into(),
        account_id: "111122223333".into(),
        partition: "aws-cn".into(),
        remediator_role_arn: Some("arn:aws-cn:iam::111122223333:role/kms-replica-guard".into()),
    }
}

fn errors(text: &str, guard: &LockoutGuard) -> Vec<ValidationError> {
    match validate(text, guard) {
        Ok(_) => Vec::new(),
        Err(ValidationErrors(errors)) => errors,
    }
}

fn is_lockout(e: &ValidationError) -> bool {
    matches!(
        e,
        ValidationError::LockoutNotAllowed { .. } | ValidationError::LockoutDenied { .. }
    )
}

fn locks_out(text: &str, guard: &LockoutGuard) -> bool {
    errors(text, guard).iter().any(is_lockout)
}

/// A statement allowing `principal` the given action on `resource`.
fn allow(principal: &str, action: &str, resource: &str) -> String {
    format!(
        r#"{{"Effect":"Allow","Principal":{principal},"Action":"{action}","Resource":"{resource}"}}"#
    )
}

#[test]
fn the_default_key_policy_is_valid_and_returned_in_canonical_form() {
    let text = policy(ROOT_ALLOW);
    let canonical = validate(&text, &root_guard()).expect("valid");
    assert_eq!(canonical, parse(&text));
    assert!(validate(&text, &role_guard()).is_ok());
}

#[test]
fn a_policy_of_exactly_the_kms_limit_is_accepted() {
    let text = policy(ROOT_ALLOW);
    let padded = text.replacen(
        '{',
        &format!("{{{}", " ".repeat(MAX_POLICY_BYTES - text.len())),
        1,
    );
    assert_eq!(padded.len(), MAX_POLICY_BYTES);
    assert!(validate(&padded, &root_guard()).is_ok());
    let over = padded.replacen('{', "{ ", 1);
    assert_eq!(
        errors(&over, &root_guard()),
        [ValidationError::TooLarge {
            bytes: MAX_POLICY_BYTES + 1
        }]
    );
}

#[test]
fn an_oversized_policy_is_rejected() {
    let padding = "x".repeat(MAX_POLICY_BYTES);
    let text = policy(&ROOT_ALLOW.replace(r#""Sid":"Root""#, &format!(r#""Sid":"{padding}""#)));
    let errs = errors(&text, &root_guard());
    assert_eq!(errs, [ValidationError::TooLarge { bytes: text.len() }]);
    assert!(errs[0].to_string().contains("32768"));
}

#[test]
fn a_character_kms_rejects_is_reported_with_code_point_and_offset() {
    let text = policy(&ROOT_ALLOW.replace("Root", "Root✓é€"));
    let offset = text.find('✓').expect("present");
    let errs = errors(&text, &root_guard());
    assert_eq!(
        errs,
        [ValidationError::InvalidCharacter {
            character: '✓',
            offset
        }]
    );
    assert!(
        errs[0]
            .to_string()
            .contains(&format!("U+2713) at byte offset {offset}")),
        "{}",
        errs[0]
    );
    // Latin-1, tab, CR and LF are fine.
    assert!(
        errors(
            &format!("\t\r\n{}", policy(&ROOT_ALLOW.replace("Root", "Rööt"))),
            &root_guard()
        )
        .is_empty()
    );
}

#[test]
fn invalid_json_is_reported_with_line_and_column() {
    let errs = errors("{\"Statement\": [\n}", &root_guard());
    assert!(
        matches!(
            errs.as_slice(),
            [ValidationError::Grammar(PolicyError::NotJson {
                line: 2,
                ..
            })]
        ),
        "{errs:?}"
    );
}

#[test]
fn an_unsupported_version_is_rejected() {
    let text = format!(r#"{{"Version":"2012-10-18","Statement":[{ROOT_ALLOW}]}}"#);
    assert_eq!(
        errors(&text, &root_guard()),
        [ValidationError::UnsupportedVersion {
            found: "2012-10-18".into()
        }]
    );
    let legacy = format!(r#"{{"Version":"2008-10-17","Statement":[{ROOT_ALLOW}]}}"#);
    assert!(errors(&legacy, &root_guard()).is_empty());
    let unversioned = format!(r#"{{"Statement":[{ROOT_ALLOW}]}}"#);
    assert!(errors(&unversioned, &root_guard()).is_empty());
}

#[test]
fn a_missing_or_empty_statement_is_rejected() {
    assert_eq!(
        errors(r#"{"Version":"2012-10-17"}"#, &root_guard()),
        [ValidationError::Grammar(PolicyError::MissingStatement)]
    );
    assert_eq!(
        errors(&policy(""), &root_guard()),
        [ValidationError::EmptyStatement]
    );
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text = format!(
        r#"{{"Version":"1","Statement":[{ROOT_ALLOW},
        {{"Sid":"Broken","Effect":"Maybe","Principal":"*","NotPrincipal":"*","Resource":"*"}},
        {{"Action":7,"Resource":[1]}}]}}"#
    );
    let errs = errors(&text, &root_guard());
    let rendered = ValidationErrors(errs.clone()).to_string();
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines.len(), errs.len());
    let expected = [
        "Version is \"1\"",
        "Statement[2].Action must be a string or an array of strings, found the number 7",
        "Statement[2].Resource[0] must be a string, found the number 1",
        "Statement[1] (Sid \"Broken\"): Effect is \"Maybe\"; set it to \"Allow\" or \"Deny\"",
        "Statement[1] (Sid \"Broken\"): has both Principal and NotPrincipal",
        "Statement[1] (Sid \"Broken\"): has neither Action nor NotAction",
        "Statement[2] (no Sid): Effect is missing",
        "Statement[2] (no Sid): has neither Principal nor NotPrincipal",
    ];
    for want in expected {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in\n{rendered}"
        );
    }
    assert_eq!(lines.len(), expected.len(), "{rendered}");
}

#[test]
fn a_policy_that_allows_neither_root_nor_the_role_is_a_lockout() {
    let text = policy(&allow(
        r#"{"AWS":"arn:aws:iam::111122223333:role/Other"}"#,
        "kms:*",
        "*",
    ));
    let errs = errors(&text, &role_guard());
    assert_eq!(
        errs,
        [ValidationError::LockoutNotAllowed {
            who: format!("the remediator role {ROLE}"),
            principal: ROLE.into(),
            alternative: Some("arn:aws:iam::111122223333:root".into()),
            key: KEY.into(),
        }]
    );
    let message = errs[0].to_string();
    assert!(
        message.contains(&format!(
            r#""Principal": {{"AWS": "{ROLE}"}}, "Action": "kms:PutKeyPolicy""#
        )),
        "{message}"
    );
    assert!(locks_out(&text, &root_guard()));
    // For a role, allowing the account root instead is offered; for the root, nothing else.
    assert!(
        message.ends_with(
            " (allowing the account root arn:aws:iam::111122223333:root instead also works, as the root delegates to IAM policies)"
        ),
        "{message}"
    );
    let root_message = errors(&text, &root_guard())[0].to_string();
    assert!(
        root_message.ends_with(r#""Resource": "*"}"#),
        "{root_message}"
    );
}

#[test]
fn a_wildcard_that_must_skip_false_starts_still_matches_the_key() {
    // `*` must pass over `12ab`, then `34cd...` before `ab` ends the key id.
    for pattern in [
        "arn:aws:kms:*:111122223333:key/mrk-1234abcd*ab",
        "arn:aws:kms:eu-west-1:111122223333:key/*a*b",
    ] {
        let text = policy(&format!(
            r#"{ROOT_ALLOW},{{"Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"{pattern}"}}"#
        ));
        assert!(locks_out(&text, &root_guard()), "{pattern}");
    }
    let elsewhere = policy(&format!(
        r#"{ROOT_ALLOW},{{"Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"arn:aws:kms:*:111122223333:key/mrk-1234abcd*ac"}}"#
    ));
    assert!(!locks_out(&elsewhere, &root_guard()));
}

#[test]
fn a_remediator_role_arn_that_does_not_parse_leaves_the_key_account_protected() {
    // Without a role account to go by, the key's own account root must keep access.
    for role in [
        "arn:aws:iam::1111:role/kms-replica-guard",
        "arn::iam::111122223333:role/kms-replica-guard",
    ] {
        let guard = LockoutGuard {
            remediator_role_arn: Some(role.into()),
            ..root_guard()
        };
        let deny_root = format!(
            r#"{ROOT_ALLOW},{{"Effect":"Allow","Principal":{{"AWS":"{role}"}},"Action":"kms:PutKeyPolicy","Resource":"*"}},{{"Effect":"Deny","Principal":{{"AWS":"arn:aws:iam::111122223333:root"}},"Action":"kms:PutKeyPolicy","Resource":"*"}}"#
        );
        let errs = errors(&policy(&deny_root), &guard);
        assert!(
            matches!(
                errs.as_slice(),
                [ValidationError::LockoutDenied { index: 2, exemption, .. }]
                    if exemption.contains("aws:PrincipalArn")
            ),
            "{role}: {errs:?}"
        );
    }
}

#[test]
fn a_deny_of_the_key_account_in_another_partition_is_counted() {
    // The account id is what a Deny reaches; the partition of the root ARN is not trusted
    // to keep it away.
    for principal in [
        "arn:aws-us-gov:iam::111122223333:root",
        "arn:aws-cn:iam::111122223333:root",
    ] {
        let text = policy(&format!(
            r#"{ROOT_ALLOW},{{"Effect":"Deny","Principal":{{"AWS":"{principal}"}},"Action":"kms:PutKeyPolicy","Resource":"*"}}"#
        ));
        assert!(locks_out(&text, &role_guard()), "{principal}");
        assert!(locks_out(&text, &root_guard()), "{principal}");
    }
    // A pattern that matches the key account's root reaches it too.
    let pattern = policy(&format!(
        r#"{ROOT_ALLOW},{{"Effect":"Deny","Principal":{{"AWS":"arn:aws:iam::*:root"}},"Action":"kms:PutKeyPolicy","Resource":"*"}}"#
    ));
    assert!(locks_out(&pattern, &root_guard()));
    // Another account's root, in any partition, is not the key's.
    let other = policy(&format!(
        r#"{ROOT_ALLOW},{{"Effect":"Deny","Principal":{{"AWS":["arn:aws-cn:iam::444455556666:root","444455556666"]}},"Action":"kms:PutKeyPolicy","Resource":"*"}}"#
    ));
    assert!(!locks_out(&other, &role_guard()));
}

#[test]
fn the_account_root_covers_the_remediator_role_through_iam() {
    for principal in [
        r#"{"AWS":"111122223333"}"#,
        r#"{"AWS":"arn:aws:iam::111122223333:root"}"#,
    ] {
        let text = policy(&allow(principal, "kms:PutKeyPolicy", "*"));
        assert!(!locks_out(&text, &role_guard()), "{principal}");
    }
}

#[test]
fn allowing_only_the_role_is_enough_when_the_role_is_the_remediator() {
    let text = policy(&allow(
        &format!(r#"{{"AWS":["{ROLE}"]}}"#),
        "kms:PutKeyPolicy",
        "*",
    ));
    assert!(!locks_out(&text, &role_guard()));
    assert!(locks_out(&text, &root_guard()));
}

#[test]
fn a_wildcard_principal_keeps_access() {
    assert!(!locks_out(
        &policy(&allow(r#""*""#, "kms:*", "*")),
        &role_guard()
    ));
    assert!(!locks_out(
        &policy(&allow(r#"{"AWS":"*"}"#, "kms:*", "*")),
        &root_guard()
    ));
}

#[test]
fn iam_wildcards_in_actions_cover_put_key_policy_case_insensitively() {
    for action in [
        "*",
        "kms:*",
        "kms:Put*",
        "KMS:putkeypolicy",
        "kms:PutKeyPolic?",
        "kms:*Policy",
    ] {
        let text = policy(&allow(r#"{"AWS":"111122223333"}"#, action, "*"));
        assert!(!locks_out(&text, &root_guard()), "{action}");
    }
    for action in ["kms:Get*", "kms:PutKeyPolicy?", "kms:Put", "s3:*"] {
        let text = policy(&allow(r#"{"AWS":"111122223333"}"#, action, "*"));
        assert!(locks_out(&text, &root_guard()), "{action}");
    }
}

#[test]
fn a_resource_must_be_star_or_a_key_pattern_of_the_account() {
    for resource in ["arn:aws:kms:*:111122223333:key/*", KEY] {
        let text = policy(&allow(r#"{"AWS":"111122223333"}"#, "kms:*", resource));
        assert!(!locks_out(&text, &root_guard()), "{resource}");
    }
    for resource in [
        "arn:aws:kms:us-east-1:111122223333:key/mrk-1",
        "arn:aws:kms:*:444455556666:key/*",
        "arn:aws:s3:::bucket",
        "arn:aws:kms:*:111122223333:alias/*",
    ] {
        let text = policy(&allow(r#"{"AWS":"111122223333"}"#, "kms:*", resource));
        assert!(locks_out(&text, &root_guard()), "{resource}");
    }
}

#[test]
fn a_conditional_allow_does_not_keep_access() {
    let text = policy(
        r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":true}}}"#,
    );
    assert!(locks_out(&text, &root_guard()));
}

#[test]
fn an_allow_with_not_principal_or_not_resource_does_not_keep_access() {
    let not_principal = policy(
        r#"{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:*","Resource":"*"}"#,
    );
    let not_resource = policy(
        r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","NotResource":"arn:aws:s3:::x"}"#,
    );
    assert!(locks_out(&not_principal, &root_guard()));
    assert!(locks_out(&not_resource, &root_guard()));
}

#[test]
fn an_allow_with_not_action_that_spares_put_key_policy_keeps_access() {
    let spares = policy(
        r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"NotAction":"kms:ScheduleKeyDeletion","Resource":"*"}"#,
    );
    let excludes = policy(
        r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"NotAction":"kms:Put*","Resource":"*"}"#,
    );
    assert!(!locks_out(&spares, &root_guard()));
    assert!(locks_out(&excludes, &root_guard()));
}

#[test]
fn an_unconditional_deny_covering_the_role_is_a_lockout() {
    let deny = r#"{"Sid":"NoChanges","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:role/kms-replica-guard"},"Action":"kms:Put*","Resource":"*"}"#;
    let text = policy(&format!("{ROOT_ALLOW},{deny}"));
    let errs = errors(&text, &role_guard());
    assert!(
        matches!(errs.as_slice(), [ValidationError::LockoutDenied { index: 1, sid: Some(s), .. }] if s == "NoChanges"),
        "{errs:?}"
    );
    let message = errs[0].to_string();
    assert!(
        message.starts_with("Statement[1] (Sid \"NoChanges\"): this Deny"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            r#"{{"ArnNotEquals": {{"aws:PrincipalArn": "{ROLE}"}}}}"#
        )),
        "{message}"
    );
    // The same Deny does not reach the root when the root is what must keep access.
    assert!(!locks_out(&text, &root_guard()));
}

#[test]
fn a_deny_for_everyone_the_account_or_a_role_session_is_a_lockout() {
    for principal in [
        r#""*""#,
        r#"{"AWS":"*"}"#,
        r#"{"AWS":"arn:aws:iam::111122223333:root"}"#,
        r#"{"AWS":"arn:aws:sts::111122223333:assumed-role/kms-replica-guard/session-1"}"#,
    ] {
        let deny = format!(
            r#"{{"Effect":"Deny","Principal":{principal},"Action":"kms:PutKeyPolicy","Resource":"*"}}"#
        );
        assert!(
            locks_out(&policy(&format!("{ROOT_ALLOW},{deny}")), &role_guard()),
            "{principal}"
        );
    }
}

#[test]
fn a_conditional_or_unrelated_deny_is_not_a_lockout() {
    let conditional = r#"{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#;
    let other_action =
        r#"{"Effect":"Deny","Principal":"*","Action":"kms:ScheduleKeyDeletion","Resource":"*"}"#;
    let other_principal = r#"{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:role/Intern"},"Action":"kms:*","Resource":"*"}"#;
    let spares = r#"{"Effect":"Deny","Principal":"*","NotAction":["kms:PutKeyPolicy","kms:Describe*"],"Resource":"*"}"#;
    for deny in [conditional, other_action, other_principal, spares] {
        assert!(
            !locks_out(&policy(&format!("{ROOT_ALLOW},{deny}")), &role_guard()),
            "{deny}"
        );
    }
}

#[test]
fn a_deny_with_not_principal_is_a_lockout_unless_it_certainly_exempts_the_caller() {
    let deny = |not: &str| {
        policy(&format!(
            r#"{ROOT_ALLOW},{{"Effect":"Deny","NotPrincipal":{{"AWS":{not}}},"Action":"kms:*","Resource":"*"}}"#
        ))
    };
    // Listing the role is not enough: the caller is a session of it. Nor are the role
    // and a session: IAM may judge the account first, so it must be listed as well.
    assert!(locks_out(&deny(&format!(r#"["{ROLE}"]"#)), &role_guard()));
    assert!(locks_out(
        &deny(&format!(r#"["{ROLE}","{SESSION}"]"#)),
        &role_guard()
    ));
    for account in ["arn:aws:iam::111122223333:root", "111122223333"] {
        assert!(
            !locks_out(
                &deny(&format!(r#"["{account}","{ROLE}","{SESSION}"]"#)),
                &role_guard()
            ),
            "{account}"
        );
    }
    for incomplete in [
        format!(r#"["111122223333","{SESSION}"]"#),
        format!(r#"["111122223333","{ROLE}"]"#),
        format!(r#"["arn:aws-cn:iam::111122223333:root","{ROLE}","{SESSION}"]"#),
        format!(r#"["444455556666","{ROLE}","{SESSION}"]"#),
        // A session must be named: not a pattern of sessions, not the bare prefix.
        format!(
            r#"["111122223333","{ROLE}","arn:aws:sts::111122223333:assumed-role/kms-replica-guard/*"]"#
        ),
        format!(
            r#"["111122223333","{ROLE}","arn:aws:sts::111122223333:assumed-role/kms-replica-guard/"]"#
        ),
    ] {
        assert!(locks_out(&deny(&incomplete), &role_guard()), "{incomplete}");
    }
    assert!(!locks_out(
        &deny(r#""arn:aws:iam::111122223333:root""#),
        &root_guard()
    ));
    assert!(locks_out(
        &deny(r#""arn:aws:iam::444455556666:root""#),
        &root_guard()
    ));
}

#[test]
fn lockout_messages_never_suggest_bypassing_the_safety_check() {
    let deny = r#"{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}"#;
    let text = policy(&format!(
        "{},{deny}",
        allow(
            r#"{"AWS":"arn:aws:iam::111122223333:role/Other"}"#,
            "kms:*",
            "*"
        )
    ));
    for guard in [root_guard(), role_guard()] {
        let rendered = validate(&text, &guard).expect_err("locked out").to_string();
        assert_eq!(rendered.lines().count(), 2, "{rendered}");
        assert!(
            !rendered.to_ascii_lowercase().contains("bypass"),
            "{rendered}"
        );
    }
}

#[test]
fn an_allow_on_another_key_or_region_does_not_keep_access() {
    // The primary's own ARN, a sibling key, another Region: none of them is this replica.
    for resource in [
        "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        "arn:aws:kms:eu-west-1:111122223333:key/mrk-0000",
        "arn:aws:kms:us-*:111122223333:key/*",
        // ARNs are compared case-sensitively.
        "arn:aws:kms:eu-west-1:111122223333:key/MRK-1234ABCD12AB34CD56EF1234567890AB",
        // A wildcard that would have to span ARN segments is not certain to match.
        "arn:aws:kms:*",
        "arn:aws:kms:eu-west-1:111122223333:key/${aws:PrincipalTag/key}",
    ] {
        let text = policy(&allow(
            r#"{"AWS":"arn:aws:iam::111122223333:root"}"#,
            "kms:*",
            resource,
        ));
        for guard in [root_guard(), role_guard()] {
            let errs = errors(&text, &guard);
            assert!(
                matches!(errs.as_slice(), [ValidationError::LockoutNotAllowed { key, .. }] if key == KEY),
                "{resource}: {errs:?}"
            );
            assert!(errs[0].to_string().contains(KEY), "{}", errs[0]);
        }
    }
    for resource in [
        KEY,
        "arn:aws:kms:eu-west-?:111122223333:key/mrk-*",
        "arn:aws:kms:*:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        "arn:*:kms:*:*:key/*",
    ] {
        let text = policy(&allow(r#"{"AWS":"111122223333"}"#, "kms:*", resource));
        assert!(!locks_out(&text, &root_guard()), "{resource}");
    }
}

#[test]
fn a_deny_counts_when_its_resource_might_be_this_key() {
    let deny = |element: &str, resource: &str| {
        policy(&format!(
            r#"{ROOT_ALLOW},{{"Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","{element}":"{resource}"}}"#
        ))
    };
    for resource in [
        KEY,
        "arn:aws:kms:*:111122223333:key/*",
        "arn:aws:kms:*",
        "arn:aws:kms:eu-west-1:111122223333:key/MRK-1234ABCD12AB34CD56EF1234567890AB",
        "arn:aws:kms:eu-west-1:111122223333:key/${aws:PrincipalTag/key}",
    ] {
        assert!(
            locks_out(&deny("Resource", resource), &role_guard()),
            "{resource}"
        );
    }
    for resource in [
        "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        "arn:aws:kms:*:444455556666:key/*",
        "arn:aws:kms:eu-west-1:111122223333:alias/*",
    ] {
        assert!(
            !locks_out(&deny("Resource", resource), &role_guard()),
            "{resource}"
        );
    }
    // NotResource: only a pattern that certainly names this key keeps the Deny away.
    assert!(!locks_out(&deny("NotResource", KEY), &role_guard()));
    assert!(!locks_out(&deny("NotResource", "*"), &role_guard()));
    assert!(locks_out(
        &deny(
            "NotResource",
            "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
        ),
        &role_guard()
    ));
}

/// A policy keeping root access plus a Deny of kms:PutKeyPolicy for everyone under
/// `condition`.
fn deny_when(condition: &str) -> String {
    policy(&format!(
        r#"{ROOT_ALLOW},{{"Sid":"Guarded","Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*","Condition":{condition}}}"#
    ))
}

#[test]
fn a_deny_exempting_only_another_role_is_a_lockout_that_the_suggestion_fixes() {
    let admin = "arn:aws:iam::111122223333:role/Admin";
    let text = deny_when(&format!(
        r#"{{"ArnNotEquals":{{"aws:PrincipalArn":"{admin}"}}}}"#
    ));
    let errs = errors(&text, &role_guard());
    assert!(
        matches!(
            errs.as_slice(),
            [ValidationError::LockoutDenied { index: 1, .. }]
        ),
        "{errs:?}"
    );
    let message = errs[0].to_string();
    let exemption = format!(r#"{{"ArnNotEquals": {{"aws:PrincipalArn": "{ROLE}"}}}}"#);
    assert!(
        message.starts_with("Statement[1] (Sid \"Guarded\"): this Deny covers kms:PutKeyPolicy"),
        "{message}"
    );
    assert!(message.contains("its Condition holds"), "{message}");
    assert!(message.contains(&exemption), "{message}");
    // The suggestion works as the whole Condition, or merged into the existing list.
    assert!(!locks_out(&deny_when(&exemption), &role_guard()));
    let merged = format!(r#"{{"ArnNotEquals":{{"aws:PrincipalArn":["{admin}","{ROLE}"]}}}}"#);
    assert!(!locks_out(&deny_when(&merged), &role_guard()));

    // The same for the account root, exempted by account.
    let text = deny_when(r#"{"StringNotEquals":{"aws:PrincipalAccount":"444455556666"}}"#);
    let errs = errors(&text, &root_guard());
    assert!(
        matches!(
            errs.as_slice(),
            [ValidationError::LockoutDenied { index: 1, .. }]
        ),
        "{errs:?}"
    );
    let exemption = r#"{"StringNotEquals": {"aws:PrincipalAccount": "111122223333"}}"#;
    assert!(errs[0].to_string().contains(exemption), "{}", errs[0]);
    assert!(!locks_out(&deny_when(exemption), &root_guard()));
    let merged = r#"{"StringNotEquals":{"aws:PrincipalAccount":["444455556666","111122223333"]}}"#;
    assert!(!locks_out(&deny_when(merged), &root_guard()));
}

#[test]
fn a_deny_whose_condition_holds_for_the_remediator_is_a_lockout() {
    for condition in [
        "{}".to_owned(),
        r#"{"StringEquals":{}}"#.to_owned(),
        format!(r#"{{"StringEquals":{{"aws:PrincipalArn":"{ROLE}"}}}}"#),
        format!(r#"{{"StringEqualsIfExists":{{"aws:PrincipalArn":"{ROLE}"}}}}"#),
        format!(r#"{{"ArnEquals":{{"aws:PrincipalArn":"{ROLE}"}}}}"#),
        r#"{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/kms-*"}}"#.to_owned(),
        r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/kms-replica-*"}}"#
            .to_owned(),
        r#"{"ArnNotLike":{"aws:PrincipalArn":["arn:aws:iam::*:role/Admin","arn:aws:iam::*:role/Break*"]}}"#.to_owned(),
        // aws:PrincipalArn is the role's ARN, never the session's: this exempts nobody.
        format!(r#"{{"StringNotEquals":{{"aws:PrincipalArn":"{SESSION}"}}}}"#),
        // Condition keys are case-insensitive.
        r#"{"ArnNotEquals":{"AWS:principalARN":"arn:aws:iam::111122223333:role/Admin"}}"#
            .to_owned(),
        r#"{"StringEquals":{"aws:PrincipalAccount":"111122223333"}}"#.to_owned(),
        r#"{"StringNotEquals":{"aws:PrincipalAccount":"444455556666"}}"#.to_owned(),
        r#"{"Bool":{"aws:SecureTransport":"true"}}"#.to_owned(),
        r#"{"Bool":{"aws:SecureTransport":true}}"#.to_owned(),
        r#"{"BoolIfExists":{"kms:BypassPolicyLockoutSafetyCheck":"false"}}"#.to_owned(),
        r#"{"StringEquals":{"aws:PrincipalAccount":"111122223333"},"Bool":{"aws:SecureTransport":"true"}}"#.to_owned(),
        // StringEqualsIgnoreCase ignores the case of the values.
        format!(
            r#"{{"StringEqualsIgnoreCase":{{"aws:PrincipalArn":"{}"}}}}"#,
            ROLE.to_uppercase()
        ),
        r#"{"StringNotEqualsIgnoreCase":{"aws:PrincipalAccount":"444455556666"}}"#.to_owned(),
        r#"{"StringNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Admin*"}}"#.to_owned(),
    ] {
        assert!(
            locks_out(&deny_when(&condition), &role_guard()),
            "{condition}"
        );
    }
}

#[test]
fn a_deny_under_a_re_cased_operator_is_judged_as_its_documented_spelling() {
    for (condition, lockout) in [
        (
            format!(r#"{{"stringequals":{{"aws:PrincipalArn":"{ROLE}"}}}}"#),
            true,
        ),
        (
            format!(r#"{{"ARNEquals":{{"aws:PrincipalArn":"{ROLE}"}}}}"#),
            true,
        ),
        (
            format!(r#"{{"arnLIKEifexists":{{"aws:PrincipalArn":"{ROLE}"}}}}"#),
            true,
        ),
        (
            r#"{"STRINGNOTEQUALS":{"aws:PrincipalAccount":"111122223333"}}"#.to_owned(),
            false,
        ),
        (
            r#"{"bool":{"aws:SecureTransport":"false"}}"#.to_owned(),
            false,
        ),
    ] {
        assert_eq!(
            locks_out(&deny_when(&condition), &role_guard()),
            lockout,
            "{condition}"
        );
    }
}

#[test]
fn a_deny_whose_condition_cannot_hold_for_the_remediator_is_not_a_lockout() {
    for condition in [
        r#"{"Bool":{"aws:SecureTransport":"false"}}"#.to_owned(),
        r#"{"Bool":{"kms:BypassPolicyLockoutSafetyCheck":"true"}}"#.to_owned(),
        r#"{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/Admin"}}"#
            .to_owned(),
        // String and ARN operators are case-sensitive.
        format!(
            r#"{{"StringEquals":{{"aws:PrincipalArn":"{}"}}}}"#,
            ROLE.to_uppercase()
        ),
        r#"{"StringNotLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/kms-*"}}"#
            .to_owned(),
        r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::*:role/kms-replica-guard"}}"#
            .to_owned(),
        r#"{"StringNotEquals":{"aws:PrincipalAccount":"111122223333"}}"#.to_owned(),
        r#"{"StringEquals":{"aws:PrincipalAccount":"444455556666"}}"#.to_owned(),
        format!(
            r#"{{"StringNotEqualsIgnoreCase":{{"aws:PrincipalArn":"{}"}}}}"#,
            ROLE.to_uppercase()
        ),
        r#"{"StringEqualsIgnoreCase":{"aws:PrincipalAccount":"444455556666"}}"#.to_owned(),
        // One block that cannot hold is enough, whatever the others say.
        r#"{"StringEquals":{"aws:PrincipalAccount":"111122223333"},"Bool":{"aws:SecureTransport":"false"}}"#.to_owned(),
        r#"{"StringNotEquals":{"aws:PrincipalOrgID":"o-abc123"},"Bool":{"kms:BypassPolicyLockoutSafetyCheck":"true"}}"#.to_owned(),
    ] {
        assert!(
            !locks_out(&deny_when(&condition), &role_guard()),
            "{condition}"
        );
    }
}

#[test]
fn a_deny_with_a_condition_the_check_cannot_judge_is_not_counted() {
    for condition in [
        r#"{"StringNotEquals":{"aws:PrincipalOrgID":"o-abc123"}}"#.to_owned(),
        format!(
            r#"{{"StringNotEquals":{{"aws:PrincipalOrgID":"o-abc123"}},"StringEquals":{{"aws:PrincipalArn":"{ROLE}"}}}}"#
        ),
        r#"{"StringEquals":{"aws:PrincipalArn":"${aws:PrincipalTag/remediator}"}}"#.to_owned(),
        // Negated, a policy variable would seem to hold for anyone: still not judged.
        r#"{"StringNotEquals":{"aws:PrincipalArn":"${aws:PrincipalTag/remediator}"}}"#.to_owned(),
        r#"{"StringNotEquals":{"aws:PrincipalAccount":["444455556666","${aws:ResourceAccount}"]}}"#
            .to_owned(),
        format!(r#"{{"ForAnyValue:StringEquals":{{"aws:PrincipalArn":"{ROLE}"}}}}"#),
        // The remediator never sends the flag; whether KMS then sees `false` is not known.
        r#"{"Bool":{"kms:BypassPolicyLockoutSafetyCheck":"false"}}"#.to_owned(),
    ] {
        assert!(
            !locks_out(&deny_when(&condition), &role_guard()),
            "{condition}"
        );
    }
    // Without a role the caller's ARN is not known.
    let admin_only =
        r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/Admin"}}"#;
    assert!(!locks_out(&deny_when(admin_only), &root_guard()));
}

#[test]
fn a_role_in_another_account_is_granted_by_its_own_account_not_the_keys() {
    for principal in [
        r#"{"AWS":"111122223333"}"#,
        r#"{"AWS":"arn:aws:iam::111122223333:root"}"#,
        r#"{"AWS":"arn:aws:iam::111122223333:role/kms-replica-guard"}"#,
    ] {
        let text = policy(&allow(principal, "kms:*", "*"));
        let errs = errors(&text, &foreign_role_guard());
        assert_eq!(
            errs,
            [ValidationError::LockoutNotAllowed {
                who: format!("the remediator role {FOREIGN_ROLE}"),
                principal: FOREIGN_ROLE.into(),
                alternative: Some("arn:aws:iam::444455556666:root".into()),
                key: KEY.into(),
            }],
            "{principal}"
        );
    }
    for principal in [
        r#"{"AWS":"444455556666"}"#.to_owned(),
        r#"{"AWS":"arn:aws:iam::444455556666:root"}"#.to_owned(),
        format!(r#"{{"AWS":"{FOREIGN_ROLE}"}}"#),
    ] {
        let text = policy(&allow(&principal, "kms:PutKeyPolicy", "*"));
        assert!(!locks_out(&text, &foreign_role_guard()), "{principal}");
    }
}

#[test]
fn a_deny_or_exemption_for_a_role_in_another_account_is_judged_in_that_account() {
    let base = allow(r#"{"AWS":"444455556666"}"#, "kms:*", "*");
    let deny = |principal: &str| {
        policy(&format!(
            r#"{base},{{"Effect":"Deny","Principal":{{"AWS":"{principal}"}},"Action":"kms:PutKeyPolicy","Resource":"*"}}"#
        ))
    };
    for principal in [
        "arn:aws:sts::444455556666:assumed-role/kms-replica-guard/remediator",
        "arn:aws:iam::444455556666:root",
        "444455556666",
    ] {
        assert!(
            locks_out(&deny(principal), &foreign_role_guard()),
            "{principal}"
        );
    }
    for principal in [
        "arn:aws:sts::111122223333:assumed-role/kms-replica-guard/remediator",
        "111122223333",
    ] {
        assert!(
            !locks_out(&deny(principal), &foreign_role_guard()),
            "{principal}"
        );
    }
    let not_principal = |listed: &str| {
        policy(&format!(
            r#"{base},{{"Effect":"Deny","NotPrincipal":{{"AWS":{listed}}},"Action":"kms:*","Resource":"*"}}"#
        ))
    };
    let foreign_session = "arn:aws:sts::444455556666:assumed-role/kms-replica-guard/remediator";
    assert!(!locks_out(
        &not_principal(&format!(
            r#"["444455556666","{FOREIGN_ROLE}","{foreign_session}"]"#
        )),
        &foreign_role_guard()
    ));
    assert!(locks_out(
        &not_principal(&format!(r#"["111122223333","{FOREIGN_ROLE}","{SESSION}"]"#)),
        &foreign_role_guard()
    ));
    let by_account = |account: &str| {
        policy(&format!(
            r#"{base},{{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{{"StringNotEquals":{{"aws:PrincipalAccount":"{account}"}}}}}}"#
        ))
    };
    assert!(!locks_out(
        &by_account("444455556666"),
        &foreign_role_guard()
    ));
    assert!(locks_out(
        &by_account("111122223333"),
        &foreign_role_guard()
    ));
}

#[test]
fn an_allow_for_the_account_in_another_partition_does_not_keep_access() {
    let china_root = allow(
        r#"{"AWS":"arn:aws-cn:iam::111122223333:root"}"#,
        "kms:*",
        "*",
    );
    assert!(locks_out(&policy(&china_root), &root_guard()));
    assert!(locks_out(&policy(&china_root), &role_guard()));
    let china_role = allow(
        r#"{"AWS":"arn:aws-cn:iam::111122223333:role/kms-replica-guard"}"#,
        "kms:*",
        "*",
    );
    assert!(locks_out(&policy(&china_role), &role_guard()));

    // In the partition of their own, the same statements keep access.
    assert!(!locks_out(&policy(&china_root), &china_guard()));
    assert!(!locks_out(&policy(&china_role), &china_guard()));
    assert!(locks_out(&policy(ROOT_ALLOW), &china_guard()));
}

#[test]
fn a_statement_that_names_no_principal_action_or_resource_is_rejected() {
    let cases = [
        (
            r#"{"Effect":"Allow","Principal":{},"Action":"kms:Decrypt","Resource":"*"}"#,
            "Principal",
        ),
        (
            r#"{"Effect":"Allow","Principal":{"AWS":[]},"Action":"kms:Decrypt","Resource":"*"}"#,
            "Principal",
        ),
        (
            r#"{"Effect":"Allow","Principal":{"AWS":[],"Service":[]},"Action":"kms:Decrypt","Resource":"*"}"#,
            "Principal",
        ),
        (
            r#"{"Effect":"Deny","NotPrincipal":{"AWS":[]},"Action":"kms:Decrypt","Resource":"*"}"#,
            "NotPrincipal",
        ),
        (
            r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":[],"Resource":"*"}"#,
            "Action",
        ),
        (
            r#"{"Effect":"Deny","Principal":"*","NotAction":[],"Resource":"*"}"#,
            "NotAction",
        ),
        (
            r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:Decrypt","Resource":[]}"#,
            "Resource",
        ),
        (
            r#"{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","NotResource":[]}"#,
            "NotResource",
        ),
    ];
    for (statement, element) in cases {
        let errs = errors(&policy(&format!("{ROOT_ALLOW},{statement}")), &role_guard());
        let found = errs.iter().find(|e| {
            matches!(e, ValidationError::EmptyElement { index: 1, sid: None, element: el } if *el == element)
        });
        let Some(found) = found else {
            panic!("{statement}: no EmptyElement for {element} in {errs:?}");
        };
        let message = found.to_string();
        assert!(
            message.starts_with(&format!("Statement[1] (no Sid): {element} ")),
            "{message}"
        );
        assert!(message.contains("at least one"), "{message}");
        // Each element's hint names what to put there.
        let hint = match element {
            "Principal" | "NotPrincipal" => r#"{"AWS": "arn:aws:iam::ACCOUNT_ID:root"}"#,
            "Action" => r#"e.g. "kms:Decrypt""#,
            "NotAction" => "or use Action instead",
            "Resource" => r#""*" (the key itself)"#,
            _ => r#"or use "Resource": "*" instead"#,
        };
        assert!(message.contains(hint), "{element}: {message}");
    }
    // An element of the wrong type is a grammar error only, not also an empty list.
    let object = r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:Decrypt","Resource":{}}"#;
    let errs = errors(&policy(&format!("{ROOT_ALLOW},{object}")), &role_guard());
    assert!(
        matches!(errs.as_slice(), [ValidationError::Grammar(PolicyError::WrongType { element, .. })] if element == "Statement[1].Resource"),
        "{errs:?}"
    );
    // An empty list for one principal type beside a non-empty one is fine.
    let mixed = r#"{"Effect":"Allow","Principal":{"AWS":[],"Service":"logs.amazonaws.com"},"Action":"kms:Decrypt","Resource":"*"}"#;
    assert!(errors(&policy(&format!("{ROOT_ALLOW},{mixed}")), &role_guard()).is_empty());
}

/// Two statements: the root's full access, and `extra`.
fn with_root(extra: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{ROOT_ALLOW},{extra}]}}"#)
}

#[test]
fn effect_is_case_sensitive_as_kms_reads_it() {
    let lower = with_root(
        r#"{"Sid":"App","Effect":"allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/app"},"Action":"kms:Decrypt","Resource":"*"}"#,
    );
    let errors = validate(&lower, &root_guard()).unwrap_err();
    assert!(
        matches!(&errors.0[..], [ValidationError::InvalidEffect { index: 1, found: Some(f), .. }] if f == "\"allow\""),
        "{errors}"
    );
    assert!(
        errors
            .to_string()
            .contains(r#"set it to "Allow" or "Deny""#)
    );
    validate(&lower.replace("allow", "Allow"), &root_guard()).unwrap();
}

#[test]
fn a_principal_named_by_its_unique_id_is_refused_naming_the_id() {
    let deleted = with_root(
        r#"{"Sid":"Gone","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/app","AROA6QJX2M4TBCKL7WZNE"]},"Action":"kms:Decrypt","Resource":"*"}"#,
    );
    let errors = validate(&deleted, &root_guard()).unwrap_err();
    assert!(
        matches!(&errors.0[..], [ValidationError::UniqueIdPrincipal { index: 1, id, .. }] if id == "AROA6QJX2M4TBCKL7WZNE"),
        "{errors}"
    );
    assert!(errors.to_string().contains("deleted"), "{errors}");
    // As a single value, in NotPrincipal, and for a user: the same.
    let user = with_root(
        r#"{"Sid":"U","Effect":"Deny","NotPrincipal":{"AWS":"AIDA6QJX2M4TF6L3NWUZQ"},"Action":"kms:Decrypt","Resource":"*"}"#,
    );
    assert!(matches!(
        &validate(&user, &root_guard()).unwrap_err().0[..],
        [ValidationError::UniqueIdPrincipal { .. }]
    ));
    // A unique id in a condition (aws:userid) is legitimate and stays.
    let by_userid = with_root(
        r#"{"Sid":"C","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:Decrypt","Resource":"*","Condition":{"StringLike":{"aws:userid":"AROA6QJX2M4TBCKL7WZNE:*"}}}"#,
    );
    validate(&by_userid, &root_guard()).unwrap();
    // Mirroring a primary that shows one is refused too: KMS would refuse the write.
    assert!(validate_as(&deleted, &root_guard(), Origin::Mirrored).is_err());
}

#[test]
fn unique_ids_are_told_apart_from_arns_accounts_and_services() {
    for id in [
        "AROA6QJX2M4TBCKL7WZNE",
        "AIDA6QJX2M4TF6L3NWUZQ",
        "AGPAJQABCDEFGHIJKLMNO",
    ] {
        assert!(is_unique_id(id), "{id}");
    }
    for other in [
        "arn:aws:iam::111122223333:role/AROA6QJX2M4TBCKL7WZNE",
        "111122223333",
        "*",
        "AROA",
        "aroa6qjx2m4tbckl7wzne",
        "cloudtrail.amazonaws.com",
    ] {
        assert!(!is_unique_id(other), "{other}");
    }
}

#[test]
fn a_statement_without_action_or_resource_is_refused_in_a_baseline_but_mirrored_with_a_warning() {
    let no_action = with_root(
        r#"{"Sid":"Inert","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/app"},"Resource":"*"}"#,
    );
    let no_resource = with_root(
        r#"{"Sid":"Inert","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/app"},"Action":"kms:Decrypt"}"#,
    );
    for (text, element) in [(&no_action, "Action"), (&no_resource, "Resource")] {
        let errors = validate(text, &root_guard()).unwrap_err();
        assert!(
            matches!(&errors.0[..], [ValidationError::MissingElement { element: e, .. }] if *e == element),
            "{errors}"
        );
        let mirrored = validate_as(text, &root_guard(), Origin::Mirrored).unwrap();
        assert!(
            matches!(&mirrored.warnings[..], [ValidationError::MissingElement { element: e, .. }] if *e == element),
            "{:?}",
            mirrored.warnings
        );
        assert_eq!(mirrored.policy, parse(text));
    }
    // A statement without a principal is refused even when mirrored: it is not ineffective
    // in the same way, and KMS refuses it.
    let no_principal =
        with_root(r#"{"Sid":"Who","Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}"#);
    assert!(validate_as(&no_principal, &root_guard(), Origin::Mirrored).is_err());
}
