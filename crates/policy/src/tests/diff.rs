use super::super::diff;
use super::{parse, policy};

const ADMIN: &str = r#"{"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;
const USE: &str = r#"{"Sid":"Use","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*"}"#;
const ANONYMOUS: &str =
    r#"{"Effect":"Deny","Principal":"*","Action":"kms:ScheduleKeyDeletion","Resource":"*"}"#;

fn render(live: &str, desired: &str) -> String {
    diff(&parse(live), &parse(desired)).to_string()
}

#[test]
fn an_equivalent_policy_has_an_empty_diff() {
    let live = policy(&format!("{ADMIN},{USE}"));
    let desired = policy(&format!("{USE},{}", ADMIN.replace("kms:*", "KMS:*")));
    let d = diff(&parse(&live), &parse(&desired));
    assert!(d.is_empty());
    assert_eq!(d.to_string(), "");
}

#[test]
fn a_changed_statement_is_paired_by_sid_and_shown_as_a_line_diff() {
    let live = policy(&format!("{ADMIN},{USE}"));
    let desired = policy(&format!(
        "{ADMIN},{}",
        USE.replace("kms:Encrypt", "kms:GenerateDataKey*")
    ));
    let expected = r#"~ statement "Use"
    @@ -2,5 +2,5 @@
       "Action": [
         "kms:Decrypt",
    -    "kms:Encrypt"
    +    "kms:GenerateDataKey*"
       ],
       "Effect": "Allow","#;
    assert_eq!(render(&live, &desired), expected);
}

#[test]
fn statements_only_in_desired_are_added_and_only_in_live_removed() {
    let live = policy(&format!("{ADMIN},{USE}"));
    let desired = policy(&format!("{ADMIN},{ANONYMOUS}"));
    let out = render(&live, &desired);
    assert!(out.starts_with("- statement \"Use\"\n    {\n"), "{out}");
    let added = "\n+ statement #1\n    {\n      \"Action\": [\n        \"kms:ScheduleKeyDeletion\"";
    assert!(out.contains(added), "{out}");
    assert_eq!(
        out.lines().filter(|l| !l.starts_with(' ')).count(),
        2,
        "{out}"
    );
}

#[test]
fn a_version_change_is_its_own_line() {
    let live = format!(r#"{{"Version":"2008-10-17","Statement":[{ADMIN}]}}"#);
    assert_eq!(
        render(&live, &policy(ADMIN)),
        r#"~ Version: "2008-10-17" -> "2012-10-17""#
    );
    let unversioned = format!(r#"{{"Statement":[{ADMIN}]}}"#);
    assert_eq!(
        render(&unversioned, &policy(ADMIN)),
        r#"+ Version: "2012-10-17""#
    );
    assert_eq!(
        render(&policy(ADMIN), &unversioned),
        r#"- Version: "2012-10-17""#
    );
}

#[test]
fn an_unknown_top_level_element_difference_is_shown() {
    let live = format!(r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{ADMIN}]}}"#);
    assert_eq!(render(&live, &policy(ADMIN)), r#"- Id: "key-default-1""#);
}

#[test]
fn statements_with_a_repeated_sid_are_not_paired() {
    let live = policy(&format!(
        "{ADMIN},{}",
        ADMIN.replace("kms:*", "kms:Decrypt")
    ));
    let desired = policy(&ADMIN.replace("kms:*", "kms:Encrypt"));
    let out = render(&live, &desired);
    let headers: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        headers,
        [
            "- statement \"Admin\"",
            "- statement \"Admin\"",
            "+ statement \"Admin\""
        ]
    );
}

#[test]
fn the_diff_is_deterministic() {
    let live = policy(&format!("{USE},{ANONYMOUS}"));
    let desired = policy(&format!("{ADMIN},{}", USE.replace("App", "Other")));
    let reordered_live = policy(&format!("{ANONYMOUS},{USE}"));
    let first = render(&live, &desired);
    assert_eq!(first, render(&reordered_live, &desired));
    let headers: Vec<&str> = first.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        headers,
        [
            "~ statement \"Use\"",
            "- statement #1",
            "+ statement \"Admin\""
        ]
    );
}

#[test]
fn actions_are_shown_as_written_and_a_case_change_alone_is_no_line() {
    // A real change (Encrypt dropped) next to a mere re-casing (KMS:DECRYPT).
    let live = policy(&USE.replace("kms:Decrypt", "KMS:DECRYPT"));
    let desired = policy(&USE.replace(r#","kms:Encrypt""#, ""));
    let out = render(&live, &desired);
    assert!(out.contains("-    \"kms:Encrypt\""), "{out}");
    assert!(!out.contains("DECRYPT"), "{out}");
    assert!(out.contains("+    \"kms:Decrypt\"\n"), "{out}");
    // The canonical JSON stays folded: equivalent policies render to the same text.
    assert_eq!(parse(&live).to_value(), parse(&policy(USE)).to_value());
}
