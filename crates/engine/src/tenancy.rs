//! Which accounts the engine heals, and as whom: the function's own (home) account with its
//! own role, member accounts through the role it assumes there (`MEMBER_ROLE_NAME`), and the
//! allow-list of members (`MEMBER_ACCOUNTS`: listed ids, or the organisation).
//!
//! Everything that was "the account" is the *target* account: the lockout check and
//! own-event detection use the role that acts in the key's account ([`Tenancy::actor_in`]).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::key::{AccountId, IdError, RoleArn};

/// The session name of every AssumeRole into a member account: CloudTrail in the member
/// account shows it, and a member role's trust policy may require it.
pub const SESSION_NAME: &str = "kms-replica-guard";

/// The role the hub assumes in member accounts, with the optional external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole {
    /// The role's name, with its path when it has one (`path/name`).
    name: String,
    /// Sent with AssumeRole when the member role's trust policy asks for one.
    external_id: Option<String>,
}

impl MemberRole {
    /// A member role named `name` (IAM role name, optionally `path/name`).
    pub fn new(name: &str, external_id: Option<String>) -> Result<Self, IdError> {
        let name = name.trim_matches('/');
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        };
        let role = name.rsplit('/').next().unwrap_or_default();
        if name.len() > 512 || role.len() > 64 || !name.split('/').all(segment_ok) {
            return Err(IdError::new(
                "member role name",
                name,
                "expected an IAM role name such as kms-replica-guard-member (letters, digits and +=,.@_-), optionally with a path: team/kms-replica-guard-member",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            external_id: external_id.filter(|e| !e.is_empty()),
        })
    }

    /// The role's name (with its path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The external id AssumeRole sends, if any.
    pub fn external_id(&self) -> Option<&str> {
        self.external_id.as_deref()
    }

    /// The role's ARN in `account` of `partition`.
    pub fn arn_in(&self, account: &AccountId, partition: &str) -> RoleArn {
        format!("arn:{partition}:iam::{account}:role/{}", self.name)
            .parse()
            .expect("a valid name in a valid account")
    }
}

/// The member accounts the hub may enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Members {
    /// These accounts only (`MEMBER_ACCOUNTS=111122223333,444455556666`).
    Listed(BTreeSet<AccountId>),
    /// Every active account the organisation lists (`MEMBER_ACCOUNTS=organization`).
    Organization,
}

impl FromStr for Members {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("organization") || s.eq_ignore_ascii_case("organisation") {
            return Ok(Members::Organization);
        }
        let ids = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<AccountId>().map_err(|e| e.to_string()))
            .collect::<Result<BTreeSet<_>, _>>()?;
        if ids.is_empty() {
            return Err("expected comma-separated 12-digit account ids, or `organization` to accept every active account of the organisation".into());
        }
        Ok(Members::Listed(ids))
    }
}

/// How the function reaches accounts other than its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// The role assumed in member accounts.
    pub role: MemberRole,
    /// Which accounts may be entered.
    pub members: Members,
}

/// The accounts the engine works in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tenancy {
    /// The function's own account, when known (always known when `fleet` is set).
    pub home: Option<AccountId>,
    /// Member accounts; `None`: the function heals its own account only.
    pub fleet: Option<Fleet>,
}

/// Whether an account may be worked in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The function's own account (its own credentials).
    Home,
    /// A member account (through the member role).
    Member,
    /// Not to be touched: no AssumeRole, no call, no write.
    Refused(NotAllowed),
}

/// Why an account is not worked in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAllowed {
    /// The function heals its own account only (no `MEMBER_ROLE_NAME`).
    SingleAccount {
        /// The function's own account.
        home: AccountId,
    },
    /// The account is not in `MEMBER_ACCOUNTS`.
    NotListed,
    /// `MEMBER_ACCOUNTS=organization` and the organisation does not list it as active.
    NotInOrganization,
}

impl fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotAllowed::SingleAccount { home } => write!(
                f,
                "this function heals its own account {home} only (MEMBER_ROLE_NAME is not set); nothing was done"
            ),
            NotAllowed::NotListed => f.write_str(
                "the account is not in MEMBER_ACCOUNTS; nothing was done (no AssumeRole); add it to MEMBER_ACCOUNTS to heal it",
            ),
            NotAllowed::NotInOrganization => f.write_str(
                "the organisation does not list the account as ACTIVE (MEMBER_ACCOUNTS=organization); nothing was done (no AssumeRole)",
            ),
        }
    }
}

impl Tenancy {
    /// One account: the function's own.
    pub fn single(home: Option<AccountId>) -> Self {
        Self { home, fleet: None }
    }

    /// Whether `account` is the function's own (an unknown home in single-account mode
    /// counts every account as its own, as before member accounts existed).
    pub fn is_home(&self, account: &AccountId) -> bool {
        match &self.home {
            Some(home) => home == account,
            None => self.fleet.is_none(),
        }
    }

    /// Whether `account` may be worked in. `organization` is the organisation's active
    /// accounts, needed only for [`Members::Organization`].
    pub fn admit(
        &self,
        account: &AccountId,
        organization: Option<&BTreeSet<AccountId>>,
    ) -> Admission {
        if self.is_home(account) {
            return Admission::Home;
        }
        let Some(fleet) = &self.fleet else {
            let home = self
                .home
                .clone()
                .expect("is_home admits all without a home");
            return Admission::Refused(NotAllowed::SingleAccount { home });
        };
        match &fleet.members {
            Members::Listed(ids) if ids.contains(account) => Admission::Member,
            Members::Listed(_) => Admission::Refused(NotAllowed::NotListed),
            Members::Organization if organization.is_some_and(|o| o.contains(account)) => {
                Admission::Member
            }
            Members::Organization => Admission::Refused(NotAllowed::NotInOrganization),
        }
    }

    /// Whether admitting accounts needs the organisation's account list.
    pub fn needs_organization(&self) -> bool {
        matches!(
            self.fleet,
            Some(Fleet {
                members: Members::Organization,
                ..
            })
        )
    }

    /// The role that acts in `account`: the function's own role (`own`) at home, the member
    /// role elsewhere. The lockout check keeps it able to call PutKeyPolicy, and events it
    /// caused are the function's own.
    pub fn actor_in(
        &self,
        account: &AccountId,
        partition: &str,
        own: Option<&RoleArn>,
    ) -> Option<RoleArn> {
        match &self.fleet {
            Some(fleet) if !self.is_home(account) => Some(fleet.role.arn_in(account, partition)),
            _ => own.cloned(),
        }
    }

    /// The member role, when there are member accounts.
    pub fn member_role(&self) -> Option<&MemberRole> {
        self.fleet.as_ref().map(|f| &f.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AccountId {
        s.parse().unwrap()
    }

    fn fleet(members: &str) -> Tenancy {
        Tenancy {
            home: Some(id("111111111111")),
            fleet: Some(Fleet {
                role: MemberRole::new("kms-replica-guard-member", None).unwrap(),
                members: members.parse().unwrap(),
            }),
        }
    }

    #[test]
    fn the_home_account_is_always_admitted_and_listed_members_only() {
        let t = fleet("222222222222, 333333333333");
        assert_eq!(t.admit(&id("111111111111"), None), Admission::Home);
        assert_eq!(t.admit(&id("222222222222"), None), Admission::Member);
        assert_eq!(
            t.admit(&id("444444444444"), None),
            Admission::Refused(NotAllowed::NotListed)
        );
    }

    #[test]
    fn organization_members_are_those_the_organisation_lists() {
        let t = fleet("organization");
        assert!(t.needs_organization());
        let org: BTreeSet<AccountId> = [id("222222222222")].into();
        assert_eq!(t.admit(&id("222222222222"), Some(&org)), Admission::Member);
        assert_eq!(
            t.admit(&id("333333333333"), Some(&org)),
            Admission::Refused(NotAllowed::NotInOrganization)
        );
    }

    #[test]
    fn a_single_account_function_refuses_other_accounts_when_it_knows_its_own() {
        let t = Tenancy::single(Some(id("111111111111")));
        assert!(matches!(
            t.admit(&id("222222222222"), None),
            Admission::Refused(NotAllowed::SingleAccount { .. })
        ));
        assert_eq!(
            Tenancy::single(None).admit(&id("222222222222"), None),
            Admission::Home
        );
    }

    #[test]
    fn the_member_role_acts_in_member_accounts_and_the_own_role_at_home() {
        let t = fleet("222222222222");
        let own: RoleArn = "arn:aws:iam::111111111111:role/hub".parse().unwrap();
        assert_eq!(
            t.actor_in(&id("222222222222"), "aws", Some(&own))
                .unwrap()
                .as_str(),
            "arn:aws:iam::222222222222:role/kms-replica-guard-member"
        );
        assert_eq!(
            t.actor_in(&id("111111111111"), "aws", Some(&own)),
            Some(own)
        );
    }

    #[test]
    fn member_role_names_are_checked_and_may_have_a_path() {
        let r = MemberRole::new("team/guard", Some(String::new())).unwrap();
        assert_eq!(
            r.arn_in(&id("222222222222"), "aws-cn").as_str(),
            "arn:aws-cn:iam::222222222222:role/team/guard"
        );
        assert_eq!(r.external_id(), None);
        for bad in ["", "a b", "arn:aws:iam::1:role/x", &"x".repeat(65)] {
            assert!(MemberRole::new(bad, None).is_err(), "{bad}");
        }
        assert!("".parse::<Members>().is_err());
        assert!(
            "12345"
                .parse::<Members>()
                .unwrap_err()
                .contains("12 digits")
        );
    }
}
