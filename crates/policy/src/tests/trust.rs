//! The trust a severity is judged against: the own account, trusted accounts and
//! organisations.

use super::super::Trust;

#[test]
fn the_own_account_is_read_from_a_bare_id_or_a_root_arn() {
    for own in ["111122223333", " arn:aws:iam::111122223333:root "] {
        let t = Trust::own(own);
        assert_eq!(t.own_account(), "111122223333");
        assert_eq!(t.partition(), "aws");
        assert!(t.trusts_account("111122223333"));
        assert!(!t.trusts_account("444455556666"));
        assert!(t.orgs().is_empty());
    }
    assert_eq!(
        Trust::own("arn:aws-us-gov:iam::111122223333:root").partition(),
        "aws-us-gov"
    );
}

#[test]
fn by_default_only_the_own_account_is_trusted() {
    let t = Trust::own("111122223333");
    assert_eq!(t.accounts().iter().collect::<Vec<_>>(), ["111122223333"]);
}

#[test]
fn trusted_accounts_and_organisations_are_added_to_the_own_account() {
    let t = Trust::new(
        "111122223333",
        [
            "arn:aws:iam::444455556666:root".to_owned(),
            " 777788889999".to_owned(),
            "  ".to_owned(),
        ],
        ["o-a1b2c3d4e5 ".to_owned(), String::new()],
    );
    assert_eq!(
        t.accounts().iter().collect::<Vec<_>>(),
        ["111122223333", "444455556666", "777788889999"]
    );
    assert!(t.trusts_account("777788889999"));
    assert_eq!(t.orgs().iter().collect::<Vec<_>>(), ["o-a1b2c3d4e5"]);
    assert!(t.trusts_org("o-a1b2c3d4e5"));
    assert!(!t.trusts_org("o-zzzzzzzzzz"));
}
