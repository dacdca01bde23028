//! Validated identifiers: Regions, account ids, key ARNs and role ARNs.
//!
//! Everything that reaches an AWS call or a placeholder is parsed once into one of these,
//! so later code never has to wonder whether a string is an id, an ARN or garbage.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {why}")]
pub struct IdError {
    what: &'static str,
    value: String,
    why: &'static str,
}

impl IdError {
    pub(crate) fn new(what: &'static str, value: &str, why: &'static str) -> Self {
        Self {
            what,
            value: value.to_owned(),
            why,
        }
    }
}

/// An AWS Region name such as `us-east-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(String);

impl Region {
    /// The Region name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The partition this Region belongs to (`aws`, `aws-cn`, `aws-us-gov`, ...).
    pub fn partition(&self) -> &'static str {
        let r = self.0.as_str();
        if r.starts_with("cn-") {
            "aws-cn"
        } else if r.starts_with("us-gov-") {
            "aws-us-gov"
        } else if r.starts_with("us-isob-") {
            "aws-iso-b"
        } else if r.starts_with("us-iso-") {
            "aws-iso"
        } else if r.starts_with("eu-isoe-") {
            "aws-iso-e"
        } else {
            "aws"
        }
    }
}

impl FromStr for Region {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let ok = (3..=32).contains(&s.len())
            && s.split('-').count() >= 3
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && s.bytes().last().is_some_and(|b| b.is_ascii_digit());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::new(
                "Region",
                s,
                "expected a Region name such as us-east-1",
            ))
        }
    }
}

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// The account id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::new("account id", s, "expected 12 digits"))
        }
    }
}

/// Where keys live: an account and a Region. The account is `None` for a function that
/// does not know its own account and has no members: its own credentials' account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    /// The account, when known.
    pub account: Option<AccountId>,
    /// The Region.
    pub region: Region,
}

impl Place {
    /// `region` of `account`.
    pub fn new(account: Option<AccountId>, region: Region) -> Self {
        Self { account, region }
    }

    /// `region` of the caller's own account.
    pub fn own(region: Region) -> Self {
        Self::new(None, region)
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.account {
            Some(a) => write!(f, "{a}/{}", self.region),
            None => write!(f, "{}", self.region),
        }
    }
}

/// The ARN of a KMS key: `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyArn {
    arn: String,
    partition: String,
    region: Region,
    account: AccountId,
    key_id: String,
}

impl KeyArn {
    /// Builds the ARN of `key_id` in `region` of `account`.
    pub fn new(region: &Region, account: &AccountId, key_id: &str) -> Result<Self, IdError> {
        format!(
            "arn:{}:kms:{}:{}:key/{}",
            region.partition(),
            region.as_str(),
            account.as_str(),
            key_id
        )
        .parse()
    }

    /// Resolves a `keyId` as CloudTrail logs it: a bare key id or a key ARN. Aliases cannot
    /// be resolved without a call and are rejected.
    pub fn from_id_or_arn(
        id_or_arn: &str,
        region: &Region,
        account: &AccountId,
    ) -> Result<Self, IdError> {
        if id_or_arn.starts_with("arn:") {
            id_or_arn.parse()
        } else if id_or_arn.starts_with("alias/") {
            Err(IdError::new(
                "key id",
                id_or_arn,
                "an alias, not a key id; key events name keys by id or ARN",
            ))
        } else {
            Self::new(region, account, id_or_arn)
        }
    }

    /// The same key id in another Region (the ARN of a related multi-Region key).
    pub fn in_region(&self, region: &Region) -> Self {
        Self::new(region, &self.account, &self.key_id).expect("components were already valid")
    }

    /// The full ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }
    /// The key id (`mrk-...` for multi-Region keys).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// The Region the key lives in.
    pub fn region(&self) -> &Region {
        &self.region
    }
    /// The account that owns the key.
    pub fn account(&self) -> &AccountId {
        &self.account
    }
    /// The partition (`aws`, `aws-cn`, ...).
    pub fn partition(&self) -> &str {
        &self.partition
    }
    /// Whether the id marks a multi-Region key (`mrk-` prefix).
    pub fn is_multi_region(&self) -> bool {
        self.key_id.starts_with("mrk-")
    }
}

impl FromStr for KeyArn {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = |why| IdError::new("key ARN", s, why);
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(bad("expected arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID"));
        };
        if arn != "arn" || service != "kms" || partition.is_empty() {
            return Err(bad("expected arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID"));
        }
        let key_id = resource
            .strip_prefix("key/")
            .ok_or_else(|| bad("the resource must be key/KEY_ID (aliases are not keys)"))?;
        let id_ok = !key_id.is_empty()
            && key_id.len() <= 64
            && key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !id_ok {
            return Err(bad("the key id must be letters, digits and dashes"));
        }
        let region: Region = region.parse().map_err(|_| bad("bad Region"))?;
        let account: AccountId = account.parse().map_err(|_| bad("bad account id"))?;
        Ok(Self {
            arn: s.to_owned(),
            partition: partition.to_owned(),
            region,
            account,
            key_id: key_id.to_owned(),
        })
    }
}

/// The ARN of an IAM role, as `sessionIssuer.arn` names it in CloudTrail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleArn {
    arn: String,
    account: AccountId,
}

impl RoleArn {
    /// The full ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }
    /// The account that owns the role.
    pub fn account(&self) -> &AccountId {
        &self.account
    }
    /// The role's partition (`aws`, `aws-cn`, ...).
    pub fn partition(&self) -> &str {
        self.arn.split(':').nth(1).expect("checked when parsed")
    }
}

impl FromStr for RoleArn {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || {
            IdError::new(
                "role ARN",
                s,
                "expected arn:PARTITION:iam::ACCOUNT:role/NAME",
            )
        };
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(bad());
        };
        if arn != "arn"
            || partition.is_empty()
            || service != "iam"
            || !region.is_empty()
            || !resource.starts_with("role/")
        {
            return Err(bad());
        }
        Ok(Self {
            arn: s.to_owned(),
            account: account.parse().map_err(|_| bad())?,
        })
    }
}

macro_rules! display_and_serialize {
    ($($t:ty => $field:tt),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.$field)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.$field)
            }
        }
    )*};
}
display_and_serialize!(Region => 0, AccountId => 0, KeyArn => arn, RoleArn => arn);

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

    #[test]
    fn a_key_arn_exposes_its_parts() {
        let k: KeyArn = ARN.parse().unwrap();
        assert_eq!(k.region().as_str(), "us-west-2");
        assert_eq!(k.account().as_str(), "111122223333");
        assert_eq!(k.key_id(), "mrk-1234abcd12ab34cd56ef1234567890ab");
        assert_eq!(k.partition(), "aws");
        assert!(k.is_multi_region());
        assert_eq!(k.to_string(), ARN);
    }

    #[test]
    fn a_bare_id_resolves_in_the_event_region_and_account() {
        let r: Region = "eu-west-1".parse().unwrap();
        let a: AccountId = "111122223333".parse().unwrap();
        let k = KeyArn::from_id_or_arn("mrk-1234abcd12ab34cd56ef1234567890ab", &r, &a).unwrap();
        assert_eq!(
            k.as_str(),
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
        );
        let cn: Region = "cn-north-1".parse().unwrap();
        assert_eq!(
            KeyArn::from_id_or_arn("mrk-1", &cn, &a)
                .unwrap()
                .partition(),
            "aws-cn"
        );
    }

    #[test]
    fn in_region_keeps_the_id_and_account() {
        let k: KeyArn = ARN.parse().unwrap();
        let other = k.in_region(&"ap-south-1".parse().unwrap());
        assert_eq!(other.key_id(), k.key_id());
        assert_eq!(other.region().as_str(), "ap-south-1");
    }

    #[test]
    fn malformed_identifiers_are_rejected_with_the_reason() {
        for bad in [
            "",
            "arn:aws:kms:us-east-1:111122223333:alias/foo",
            "arn:aws:s3:us-east-1:111122223333:key/x",
            "arn:aws:kms:us-east-1:1111:key/x",
            "arn:aws:kms:US-EAST-1:111122223333:key/x",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms:us-east-1:111122223333:key/a b",
        ] {
            let err = bad.parse::<KeyArn>().unwrap_err();
            assert!(err.to_string().contains("key ARN"), "{bad}: {err}");
        }
        assert!("us-east".parse::<Region>().is_err());
        assert!("12345678901a".parse::<AccountId>().is_err());
        let alias = KeyArn::from_id_or_arn(
            "alias/app",
            &"us-east-1".parse().unwrap(),
            &"111122223333".parse().unwrap(),
        );
        assert!(alias.unwrap_err().to_string().contains("alias"));
    }

    #[test]
    fn role_arns_with_paths_parse() {
        let r: RoleArn = "arn:aws:iam::111122223333:role/service/kms-replica-guard"
            .parse()
            .unwrap();
        assert_eq!(r.account().as_str(), "111122223333");
        assert!(
            "arn:aws:iam::111122223333:user/bob"
                .parse::<RoleArn>()
                .is_err()
        );
    }
}
