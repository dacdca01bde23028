//! The guardrails on what may be written: public, untrusted and unpinned-service grants.

use super::super::{Breach, BreachReason, Severity, Trust, guardrails};
use super::{parse, policy};

const OWN: &str = "111122223333";
const ROOT: &str = r#"{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;

fn breaches(statements: &str, trust: &Trust) -> Vec<Breach> {
    guardrails(&parse(&policy(statements)), trust)
}

fn own() -> Trust {
    Trust::own(OWN)
}

#[test]
fn the_own_account_alone_passes() {
    assert!(breaches(ROOT, &own()).is_empty());
}

#[test]
fn a_public_grant_breaches_with_a_line_an_operator_can_act_on() {
    let open = r#"{"Sid":"OpenToAll","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#;
    let b = breaches(&format!("{ROOT},{open}"), &own());
    assert_eq!(
        b,
        [Breach {
            sid: Some("OpenToAll".to_owned()),
            position: None,
            principal: "*".to_owned(),
            actions: vec!["kms:Decrypt".to_owned()],
            when: None,
            severity: Severity::Public,
            reason: BreachReason::Unlimited,
        }]
    );
    assert_eq!(
        b[0].to_string(),
        r#"statement "OpenToAll": * gains kms:Decrypt (no condition) — public: no condition limits the caller to a trusted account or organisation"#
    );
}

#[test]
fn a_statement_without_a_sid_is_named_by_its_position_in_the_document() {
    let open = r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*"}"#;
    let b = breaches(&format!("{ROOT},{open}"), &own());
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].sid.as_deref(), b[0].position), (None, Some(2)));
    assert_eq!(
        b[0].to_string(),
        "statement 2 (no Sid): * gains kms:Decrypt, kms:Encrypt (no condition) — public: no condition limits the caller to a trusted account or organisation"
    );
}

#[test]
fn an_untrusted_account_breaches_and_a_trusted_one_does_not() {
    let partner = r#"{"Sid":"Partner","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::444455556666:role/Reader","arn:aws:iam::111122223333:role/App"]},"Action":"kms:Decrypt","Resource":"*"}"#;
    let b = breaches(&format!("{ROOT},{partner}"), &own());
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0].principal, "arn:aws:iam::444455556666:role/Reader");
    assert_eq!(b[0].severity, Severity::CrossAccount);
    assert_eq!(
        b[0].reason,
        BreachReason::ForeignAccount {
            account: "444455556666".to_owned()
        }
    );
    assert_eq!(
        b[0].to_string(),
        r#"statement "Partner": arn:aws:iam::444455556666:role/Reader gains kms:Decrypt (no condition) — cross-account: account 444455556666 is not trusted (add it to TRUSTED_ACCOUNTS if it should be)"#
    );
    let trusted = Trust::new(OWN, ["444455556666".to_owned()], []);
    assert!(breaches(&format!("{ROOT},{partner}"), &trusted).is_empty());
}

#[test]
fn an_organisation_breaches_unless_it_is_trusted() {
    let org = r#"{"Sid":"Org","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-a1b2c3d4e5"}}}"#;
    let b = breaches(&format!("{ROOT},{org}"), &own());
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].reason, BreachReason::UntrustedLimit);
    assert_eq!(
        b[0].when.as_deref(),
        Some("aws:PrincipalOrgID = o-a1b2c3d4e5")
    );
    let trusted = Trust::new(OWN, [], ["o-a1b2c3d4e5".to_owned()]);
    assert!(breaches(&format!("{ROOT},{org}"), &trusted).is_empty());
}

#[test]
fn an_unpinned_service_principal_breaches_and_a_pinned_one_does_not() {
    let logs = r#"{"Sid":"Logs","Effect":"Allow","Principal":{"Service":"logs.amazonaws.com"},"Action":["kms:Encrypt*","kms:Decrypt*"],"Resource":"*"}"#;
    let b = breaches(&format!("{ROOT},{logs}"), &own());
    assert_eq!(b.len(), 1);
    assert_eq!(
        b[0].reason,
        BreachReason::UnpinnedService {
            service: "logs.amazonaws.com".to_owned()
        }
    );
    assert!(b[0].to_string().contains("(confused deputy)"), "{}", b[0]);
    let pinned = logs.replace(
        r#""Resource":"*""#,
        r#""Resource":"*","Condition":{"ArnLike":{"aws:SourceArn":"arn:aws:logs:*:111122223333:log-group:*"}}"#,
    );
    assert!(breaches(&format!("{ROOT},{pinned}"), &own()).is_empty());
}

#[test]
fn a_deny_never_breaches() {
    let deny = r#"{"Sid":"NoOne","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#;
    assert!(breaches(&format!("{ROOT},{deny}"), &own()).is_empty());
}

#[test]
fn a_grant_a_deny_of_the_same_policy_cancels_does_not_breach() {
    let open = r#"{"Sid":"Open","Effect":"Allow","Principal":"*","Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*"}"#;
    let deny = r#"{"Sid":"NotDecrypt","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#;
    let b = breaches(&format!("{ROOT},{open},{deny}"), &own());
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].actions, ["kms:Encrypt"]);
}

#[test]
fn a_statement_that_grants_nothing_never_breaches() {
    for hollow in [
        r#"{"Sid":"NoAction","Effect":"Allow","Principal":"*","Resource":"*"}"#,
        r#"{"Sid":"NoResource","Effect":"Allow","Principal":"*","Action":"kms:Decrypt"}"#,
        r#"{"Sid":"NoPrincipal","Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}"#,
        r#"{"Sid":"NoEffect","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#,
        r#"{"Sid":"NobodyLeft","Effect":"Allow","NotPrincipal":"*","Action":"kms:Decrypt","Resource":"*"}"#,
    ] {
        assert!(
            breaches(&format!("{ROOT},{hollow}"), &own()).is_empty(),
            "{hollow}"
        );
    }
}

#[test]
fn each_principal_of_a_statement_breaches_on_its_own() {
    let mixed = r#"{"Sid":"Mixed","Effect":"Allow","Principal":{"AWS":["*","arn:aws:iam::999988887777:root"],"Service":"logs.amazonaws.com"},"Action":"kms:Decrypt","Resource":"*"}"#;
    let b = breaches(&format!("{ROOT},{mixed}"), &own());
    let shown: Vec<(&str, Severity)> = b
        .iter()
        .map(|b| (b.principal.as_str(), b.severity))
        .collect();
    assert_eq!(
        shown,
        [
            ("*", Severity::Public),
            ("arn:aws:iam::999988887777:root", Severity::CrossAccount),
            ("logs.amazonaws.com", Severity::CrossAccount),
        ]
    );
}

#[test]
fn a_breach_serialises_with_its_reason_as_data() {
    let open = r#"{"Sid":"Partner","Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"kms:Decrypt","Resource":"*"}"#;
    let b = breaches(&format!("{ROOT},{open}"), &own());
    assert_eq!(
        serde_json::to_value(&b[0]).expect("serialisable"),
        serde_json::json!({
            "sid": "Partner",
            "position": null,
            "principal": "arn:aws:iam::444455556666:root",
            "actions": ["kms:Decrypt"],
            "when": null,
            "severity": "cross-account",
            "reason": {"kind": "foreign-account", "account": "444455556666"}
        })
    );
}
