use super::super::{
    LockoutGuard, MAX_POLICY_BYTES, PolicyError, ValidationError, ValidationErrors, validate,
};
use super::{parse, policy};

const ROLE: &str = "arn:aws:iam::111122223333:role/kms-replica-guard";
const ROOT_ALLOW: &str = r#"{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;

fn root_guard() -> LockoutGuard {
    LockoutGuard {
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
    for resource in [
        "arn:aws:kms:*:111122223333:key/*",
        "arn:aws:kms:us-east-1:111122223333:key/mrk-1",
    ] {
        let text = policy(&allow(r#"{"AWS":"111122223333"}"#, "kms:*", resource));
        assert!(!locks_out(&text, &root_guard()), "{resource}");
    }
    for resource in [
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
    // Listing the role is not enough: the caller is a session of it.
    assert!(locks_out(&deny(&format!(r#"["{ROLE}"]"#)), &role_guard()));
    let session = "arn:aws:sts::111122223333:assumed-role/kms-replica-guard/remediator";
    assert!(!locks_out(
        &deny(&format!(r#"["{ROLE}","{session}"]"#)),
        &role_guard()
    ));
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
