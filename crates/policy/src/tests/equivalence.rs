use serde_json::json;

use super::super::{CanonicalPolicy, PolicyError};
use super::{parse, policy, same};

const ADMIN: &str = r#"{"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;
const USE: &str = r#"{"Sid":"Use","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/App"]},"Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}}"#;

fn with(statement: &str) -> String {
    policy(&format!("{ADMIN},{statement}"))
}

#[test]
fn whitespace_is_not_drift() {
    let compact = with(USE);
    let spaced =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&compact).unwrap())
            .unwrap();
    assert!(same(
        &compact,
        &format!("\n\t{}\r\n", spaced.replace("\": ", "\"\t:\r\n "))
    ));
}

#[test]
fn a_reordered_policy_is_not_drift() {
    let a = policy(&format!("{ADMIN},{USE}"));
    let b = r#"{"Statement":[
        {"Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}},
         "Action":["kms:Encrypt","kms:Decrypt"],"Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Effect":"Allow","Sid":"Use"},
        {"Resource":"*","Action":"kms:*","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Sid":"Admin"}],
        "Version":"2012-10-17"}"#;
    assert!(same(&a, b));
}

#[test]
fn duplicate_statements_are_not_drift() {
    assert!(same(
        &with(USE),
        &policy(&format!("{USE},{ADMIN},{USE},{ADMIN}"))
    ));
}

#[test]
fn duplicate_list_entries_are_not_drift() {
    let doubled = USE.replace(
        r#"["kms:Decrypt","kms:Encrypt"]"#,
        r#"["kms:Encrypt","kms:Decrypt","kms:Encrypt"]"#,
    );
    assert!(same(&with(USE), &with(&doubled)));
}

#[test]
fn a_single_value_equals_a_one_element_list_everywhere() {
    let single = r#"{"Effect":"Allow","Principal":{"AWS":"111122223333","Service":"logs.amazonaws.com"},"NotAction":"kms:ScheduleKeyDeletion","NotResource":"arn:aws:kms:us-east-1:111122223333:key/other","Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"}}}"#;
    let lists = r#"{"Effect":"Allow","Principal":{"AWS":["111122223333"],"Service":["logs.amazonaws.com"]},"NotAction":["kms:ScheduleKeyDeletion"],"NotResource":["arn:aws:kms:us-east-1:111122223333:key/other"],"Condition":{"StringEquals":{"kms:CallerAccount":["111122223333"]}}}"#;
    assert!(same(&policy(single), &policy(lists)));
    assert!(same(
        &policy(r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#),
        &policy(r#"{"Effect":"Allow","Principal":"*","Action":["kms:Decrypt"],"Resource":["*"]}"#),
    ));
}

#[test]
fn a_single_statement_object_equals_a_one_element_statement_array() {
    let object = format!(r#"{{"Version":"2012-10-17","Statement":{ADMIN}}}"#);
    assert!(same(&object, &policy(ADMIN)));
}

#[test]
fn action_names_are_case_insensitive() {
    assert!(same(
        &with(USE),
        &with(&USE.replace("kms:Decrypt", "KMS:decrypt"))
    ));
}

#[test]
fn condition_key_names_are_case_insensitive() {
    assert!(same(
        &with(USE),
        &with(&USE.replace("kms:ViaService", "KMS:viaservice"))
    ));
}

#[test]
fn condition_operator_names_are_case_sensitive() {
    let lower = USE.replace("StringEquals", "stringequals");
    let like = USE.replace("StringEquals", "StringLike");
    assert!(!same(&with(USE), &with(&lower)));
    assert!(!same(&with(USE), &with(&like)));
    assert!(!same(&with(&lower), &with(&like)));
}

#[test]
fn effect_is_case_insensitive() {
    assert!(same(&with(USE), &with(&USE.replace("Allow", "allow"))));
    assert!(same(&with(USE), &with(&USE.replace("Allow", "ALLOW"))));
}

#[test]
fn an_account_id_equals_its_root_arn_in_every_partition() {
    for partition in ["aws", "aws-cn", "aws-us-gov"] {
        let arn = ADMIN.replace("arn:aws:", &format!("arn:{partition}:"));
        assert!(same(
            &policy(&arn),
            &policy(&ADMIN.replace("arn:aws:iam::111122223333:root", "111122223333"))
        ));
    }
}

#[test]
fn only_a_real_root_arn_is_reduced_to_the_account_id() {
    // A user called "root" and a mistyped id are different principals.
    let user = ADMIN.replace(":root", ":user/root");
    let short = ADMIN.replace("111122223333:root", "11112222333:root");
    let plain = ADMIN.replace("arn:aws:iam::111122223333:root", "111122223333");
    assert!(!same(&policy(&user), &policy(&plain)));
    assert!(!same(
        &policy(&short),
        &policy(&plain.replace("111122223333", "11112222333"))
    ));
}

#[test]
fn empty_principal_lists_are_not_drift() {
    let a = policy(
        r#"{"Effect":"Allow","Principal":{"AWS":["x"],"Service":[]},"Action":"kms:Decrypt","Resource":"*"}"#,
    );
    let b = policy(
        r#"{"Effect":"Allow","Principal":{"AWS":"x"},"Action":"kms:Decrypt","Resource":"*"}"#,
    );
    assert!(same(&a, &b));
}

#[test]
fn condition_booleans_and_numbers_equal_their_string_form() {
    let native = policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:CreateGrant","Resource":"*","Condition":{"Bool":{"kms:GrantIsForAWSResource":true},"NumericLessThan":{"aws:MultiFactorAuthAge":[5, 3600]}}}"#,
    );
    let strings = policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:CreateGrant","Resource":"*","Condition":{"Bool":{"kms:GrantIsForAWSResource":"true"},"NumericLessThan":{"aws:MultiFactorAuthAge":["3600","5"]}}}"#,
    );
    assert!(same(&native, &strings));
    assert!(!same(&native, &strings.replace("\"true\"", "\"false\"")));
}

#[test]
fn a_wildcard_principal_is_not_an_aws_wildcard_principal() {
    let star =
        policy(r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#);
    let aws_star = policy(
        r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}"#,
    );
    assert!(!same(&star, &aws_star));
}

#[test]
fn a_missing_version_is_not_the_default_version() {
    let without = format!(r#"{{"Statement":[{ADMIN}]}}"#);
    assert!(!same(&without, &policy(ADMIN)));
}

#[test]
fn different_sids_are_drift() {
    assert!(!same(
        &policy(ADMIN),
        &policy(&ADMIN.replace("\"Admin\"", "\"Root\""))
    ));
    assert!(!same(
        &policy(ADMIN),
        &policy(&ADMIN.replace("\"Admin\"", "\"admin\""))
    ));
    assert!(!same(
        &policy(ADMIN),
        &policy(&ADMIN.replace(r#""Sid":"Admin","#, ""))
    ));
}

#[test]
fn a_missing_sid_equals_an_empty_sid() {
    let without = ADMIN.replace(r#""Sid":"Admin","#, "");
    let empty = ADMIN.replace(r#""Sid":"Admin""#, r#""Sid":"""#);
    assert!(same(&policy(&without), &policy(&empty)));
}

#[test]
fn different_condition_values_are_drift() {
    assert!(!same(
        &with(USE),
        &with(&USE.replace("s3.us-east-1", "s3.eu-west-1"))
    ));
}

#[test]
fn string_equals_values_are_case_sensitive() {
    assert!(!same(
        &with(USE),
        &with(&USE.replace("s3.us-east-1", "S3.us-east-1"))
    ));
}

#[test]
fn resources_and_principal_arns_are_case_sensitive() {
    let resource = policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"arn:aws:kms:us-east-1:111122223333:key/mrk-abc"}"#,
    );
    assert!(!same(&resource, &resource.replace("mrk-abc", "MRK-abc")));
    assert!(!same(
        &with(USE),
        &with(&USE.replace("role/App", "role/app"))
    ));
}

#[test]
fn wildcards_are_never_expanded() {
    let star = policy(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#);
    let list = policy(
        r#"{"Effect":"Allow","Principal":"*","Action":["kms:Decrypt","kms:Encrypt","kms:PutKeyPolicy"],"Resource":"*"}"#,
    );
    assert!(!same(&star, &list));
    assert!(!same(&star, &star.replace("kms:*", "*")));
}

#[test]
fn lists_with_the_same_distinct_entries_are_equal_whatever_the_duplicates() {
    let actions = |list: &str| {
        policy(&format!(
            r#"{{"Effect":"Allow","Principal":"*","Action":{list},"Resource":"*"}}"#
        ))
    };
    let aab = actions(r#"["kms:Decrypt","kms:Decrypt","kms:Encrypt"]"#);
    let abb = actions(r#"["kms:Decrypt","kms:Encrypt","kms:Encrypt"]"#);
    let ab = actions(r#"["kms:Decrypt","kms:Encrypt"]"#);
    assert!(same(&aab, &abb));
    assert!(same(&abb, &ab));
}

#[test]
fn lists_of_equal_length_with_different_entries_are_not_equal() {
    // The Terraform library's "same length and each of ours is in theirs" says equal.
    let actions = |list: &str| {
        policy(&format!(
            r#"{{"Effect":"Allow","Principal":"*","Action":{list},"Resource":"*"}}"#
        ))
    };
    let aa = actions(r#"["kms:Decrypt","kms:Decrypt"]"#);
    let ab = actions(r#"["kms:Decrypt","kms:Encrypt"]"#);
    assert!(!same(&aa, &ab));
    assert!(!same(&ab, &aa));
}

#[test]
fn policy_variables_survive_untouched() {
    let text = policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}}"#,
    );
    let value = parse(&text).to_value();
    assert_eq!(
        value["Statement"][0]["Condition"]["StringEquals"]["aws:resourcetag/team"],
        json!(["${aws:PrincipalTag/team}"])
    );
    assert!(!same(
        &text,
        &text.replace("${aws:PrincipalTag/team}", "${aws:principaltag/team}")
    ));
}

#[test]
fn unknown_elements_are_kept_and_compared_exactly() {
    let a = r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Future":{"b":[1,2],"a":true}}]}"#;
    let reordered = r#"{"Id":"key-default-1","Version":"2012-10-17","Statement":[{"Future":{"a":true,"b":[1,2]},"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#;
    assert!(same(a, reordered));
    assert!(!same(a, &a.replace("key-default-1", "key-default-2")));
    assert!(!same(a, &a.replace("[1,2]", "[2,1]")));
    assert!(!same(
        a,
        &a.replace(r#","Future":{"b":[1,2],"a":true}"#, "")
    ));
    assert_eq!(
        parse(a).to_value()["Statement"][0]["Future"],
        json!({"a": true, "b": [1, 2]})
    );
}

#[test]
fn an_empty_condition_block_is_not_a_missing_one() {
    let none =
        policy(r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#);
    let empty = policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{}}"#,
    );
    assert!(!same(&none, &empty));
}

#[test]
fn text_that_is_not_json_reports_line_and_column() {
    let err = CanonicalPolicy::parse("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [}\n")
        .unwrap_err();
    let PolicyError::NotJson { line, column, .. } = &err else {
        panic!("expected NotJson, got {err:?}");
    };
    assert_eq!((*line, *column), (3, 17));
    assert!(err.to_string().contains("line 3, column 17"), "{err}");
}

#[test]
fn a_document_that_is_not_an_object_is_rejected() {
    let err = CanonicalPolicy::parse("[]").unwrap_err();
    assert_eq!(
        err,
        PolicyError::NotAnObject {
            found: "an array".into()
        }
    );
}

#[test]
fn a_policy_without_statement_is_rejected() {
    let err = CanonicalPolicy::parse(r#"{"Version":"2012-10-17"}"#).unwrap_err();
    assert_eq!(err, PolicyError::MissingStatement);
    let err = CanonicalPolicy::parse(r#"{"Statement":"Allow"}"#).unwrap_err();
    assert!(
        matches!(&err, PolicyError::WrongType { element, .. } if element == "Statement"),
        "{err:?}"
    );
}

#[test]
fn a_wrong_element_type_names_the_element() {
    let err = CanonicalPolicy::parse(&policy(
        r#"{"Effect":"Allow","Principal":{"AWS":["x",7]},"Action":"kms:Decrypt","Resource":"*"}"#,
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Statement[0].Principal.AWS[1] must be a string, found the number 7"
    );
    let err = CanonicalPolicy::parse(&policy(
        r#"{"Effect":"Allow","Principal":"arn:aws:iam::111122223333:root","Action":"kms:Decrypt","Resource":"*"}"#,
    ))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Statement[0].Principal must be \"*\" or an object"),
        "{err}"
    );
    let err = CanonicalPolicy::parse(&policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":null}}}"#,
    ))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Statement[0].Condition.Bool.aws:SecureTransport must be"),
        "{err}"
    );
}

#[test]
fn condition_keys_that_differ_only_in_case_are_rejected_not_merged() {
    let err = CanonicalPolicy::parse(&policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"1","KMS:calleraccount":"2"}}}"#,
    ))
    .unwrap_err();
    assert!(
        matches!(err, PolicyError::DuplicateConditionKey { .. }),
        "{err:?}"
    );
}

#[test]
fn to_value_is_sorted_and_the_same_for_equivalent_policies() {
    let a = parse(&with(USE)).to_value();
    let b = parse(&policy(&format!(
        "{},{ADMIN}",
        USE.replace("kms:Decrypt", "KMS:DECRYPT")
    )))
    .to_value();
    assert_eq!(a.to_string(), b.to_string());
    assert_eq!(
        a,
        json!({
            "Statement": [
                {"Action": ["kms:*"], "Effect": "Allow", "Principal": {"AWS": ["111122223333"]}, "Resource": ["*"], "Sid": "Admin"},
                {"Action": ["kms:decrypt", "kms:encrypt"],
                 "Condition": {"StringEquals": {"kms:viaservice": ["s3.us-east-1.amazonaws.com"]}},
                 "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::111122223333:role/App"]}, "Resource": ["*"], "Sid": "Use"}
            ],
            "Version": "2012-10-17"
        })
    );
}

#[test]
fn the_default_kms_key_policy_round_trips_through_to_value() {
    let default = r#"{
      "Version": "2012-10-17",
      "Id": "key-default-1",
      "Statement": [{
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "kms:*",
        "Resource": "*"
      }]
    }"#;
    let canonical = parse(default);
    assert_eq!(parse(&canonical.to_value().to_string()), canonical);
}
