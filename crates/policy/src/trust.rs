//! Whom a key's policy may grant without it being a cross-account grant: the key's own
//! account, the accounts of `TRUSTED_ACCOUNTS` and the organisations of `TRUSTED_ORGS`
//! (DESIGN.md, "The guard is a tier-0 control"). The access explanation rates severity
//! against it, and the guardrail refuses what falls outside it.

use std::collections::BTreeSet;

use super::arn::Arn;
use super::canonical::is_account_id;

/// The accounts and organisations a key policy may grant access to.
///
/// Account ids are compared as bare 12-digit ids, organisation ids (`o-...`) as written.
/// The own account is always trusted; by default ([`Trust::own`]) it is the only one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Trust {
    own: String,
    partition: String,
    accounts: BTreeSet<String>,
    orgs: BTreeSet<String>,
}

impl Trust {
    /// Only the key's own account, given as a bare 12-digit id or as its root ARN
    /// (`arn:PARTITION:iam::ID:root`, whose partition is kept to show account principals).
    pub fn own(own_account: &str) -> Self {
        Self::new(own_account, [], [])
    }

    /// The key's own account (as for [`Trust::own`]) and further trusted accounts (bare
    /// ids or root ARNs) and organisations (`o-...`). Blank entries are ignored.
    pub fn new(
        own_account: &str,
        accounts: impl IntoIterator<Item = String>,
        orgs: impl IntoIterator<Item = String>,
    ) -> Self {
        let own = account_id(own_account).to_owned();
        let mut trusted: BTreeSet<String> = accounts
            .into_iter()
            .map(|a| account_id(&a).to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        trusted.insert(own.clone());
        Trust {
            partition: partition_of(own_account).to_owned(),
            own,
            accounts: trusted,
            orgs: orgs
                .into_iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    /// The key's own account id.
    pub fn own_account(&self) -> &str {
        &self.own
    }

    /// The partition account principals are shown in (`aws` unless the own account was
    /// given as an ARN of another partition).
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// Every trusted account id, the own account included, sorted.
    pub fn accounts(&self) -> &BTreeSet<String> {
        &self.accounts
    }

    /// Every trusted organisation id, sorted.
    pub fn orgs(&self) -> &BTreeSet<String> {
        &self.orgs
    }

    /// Whether an account id is trusted.
    pub fn trusts_account(&self, id: &str) -> bool {
        self.accounts.contains(id)
    }

    /// Whether an organisation id is trusted.
    pub fn trusts_org(&self, id: &str) -> bool {
        self.orgs.contains(id)
    }
}

/// The account id of a bare id or of an `arn:PARTITION:iam::ID:root`; anything else as
/// given (trimmed), which then matches no principal's account.
fn account_id(account: &str) -> &str {
    let account = account.trim();
    Arn::parse(account)
        .and_then(|arn| arn.account())
        .filter(|id| is_account_id(id))
        .unwrap_or(account)
}

/// The partition of an ARN (`arn:aws-cn:iam::...:root`), else `aws`.
fn partition_of(account: &str) -> &str {
    Arn::parse(account.trim()).map_or("aws", |arn| arn.partition)
}
