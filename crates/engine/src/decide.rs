//! Reconcile decisions on live key facts: which keys an event reaches, which are left alone
//! and why, and the name of a drift. No I/O here; whether a live policy has drifted is
//! [`krg_policy::compare`].

use krg_policy::LockoutGuard;

use crate::key::{KeyArn, RoleArn};
use crate::outcome::Skip;
use crate::trigger::Scope;

/// The state of a KMS key (DescribeKey `KeyState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Disabled; its policy still matters when it is re-enabled.
    Disabled,
    /// A replica still being created (eventual consistency right after ReplicateKey).
    Creating,
    /// Scheduled for deletion.
    PendingDeletion,
    /// A primary waiting for its replicas to be deleted.
    PendingReplicaDeletion,
    /// Waiting for imported key material.
    PendingImport,
    /// Its custom key store is disconnected.
    Unavailable,
    /// Being updated (UpdatePrimaryRegion in progress).
    Updating,
    /// A state this version does not know.
    Other(String),
}

impl KeyState {
    /// Parses the API's state name.
    pub fn parse(s: &str) -> Self {
        match s {
            "Enabled" => Self::Enabled,
            "Disabled" => Self::Disabled,
            "Creating" => Self::Creating,
            "PendingDeletion" => Self::PendingDeletion,
            "PendingReplicaDeletion" => Self::PendingReplicaDeletion,
            "PendingImport" => Self::PendingImport,
            "Unavailable" => Self::Unavailable,
            "Updating" => Self::Updating,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Primary or replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiRegionRole {
    /// The primary key of a multi-Region key set.
    Primary,
    /// A replica.
    Replica,
}

/// What DescribeKey says about a multi-Region key's family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiRegion {
    /// This key's role.
    pub role: MultiRegionRole,
    /// The primary key.
    pub primary: KeyArn,
    /// Every replica.
    pub replicas: Vec<KeyArn>,
}

/// Live facts about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The key.
    pub arn: KeyArn,
    /// Its state.
    pub state: KeyState,
    /// Present for multi-Region keys.
    pub multi_region: Option<MultiRegion>,
}

/// Which replicas an event reaches, from the live facts of the key it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Reconcile these replicas against `primary`.
    Replicas {
        /// The primary (mirror source, and `{{PrimaryRegion}}`).
        primary: KeyArn,
        /// The replicas to reconcile.
        replicas: Vec<KeyArn>,
    },
    /// Nothing to reconcile from this key, for this reason.
    Skip(Skip),
}

/// Decides which replicas a trigger on `facts` reaches. A replica reaches itself; a primary
/// reaches its replicas only when the baseline mirrors it or the primary moved.
pub fn reach(facts: &KeyFacts, scope: Scope, mirrors_primary: bool) -> Reach {
    let Some(mr) = &facts.multi_region else {
        return Reach::Skip(Skip::SingleRegionEvent);
    };
    match (mr.role, scope) {
        (MultiRegionRole::Replica, Scope::Key) => Reach::Replicas {
            primary: mr.primary.clone(),
            replicas: vec![facts.arn.clone()],
        },
        (MultiRegionRole::Primary, Scope::Key) if !mirrors_primary => {
            Reach::Skip(Skip::PrimaryNotMirrored)
        }
        _ if mr.replicas.is_empty() => Reach::Skip(Skip::PrimaryWithoutReplicas),
        _ => Reach::Replicas {
            primary: mr.primary.clone(),
            replicas: mr.replicas.clone(),
        },
    }
}

/// Why a replica in this state is left alone, or `None` when it is managed.
pub fn skip_for_state(state: &KeyState) -> Option<Skip> {
    match state {
        KeyState::PendingDeletion => Some(Skip::PendingDeletion),
        KeyState::PendingReplicaDeletion => Some(Skip::PendingReplicaDeletion),
        KeyState::Unavailable => Some(Skip::Unavailable),
        _ => None,
    }
}

/// Whether `tags` carry the exclude tag (any value).
pub fn is_excluded<'a>(mut tag_keys: impl Iterator<Item = &'a str>, exclude_tag: &str) -> bool {
    tag_keys.any(|k| k == exclude_tag)
}

/// The lockout check for writes to `key`: the remediator (or, without one, the account's
/// root) must keep `kms:PutKeyPolicy` on it.
pub fn lockout_guard(key: &KeyArn, remediator: Option<&RoleArn>) -> LockoutGuard {
    LockoutGuard {
        key_arn: key.to_string(),
        account_id: key.account().to_string(),
        partition: key.partition().to_owned(),
        remediator_role_arn: remediator.map(|r| r.to_string()),
    }
}

/// The name of one drift: a digest of the policy to replace and the policy to write, as
/// KMS returned and as rendered. Invocations that see the same drift compute the same name;
/// it names a claim and decides nothing about equivalence.
pub fn drift_name(live: &str, desired: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update((live.len() as u64).to_be_bytes())
        .chain_update(live)
        .chain_update(desired)
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fake::arn as key;

    fn facts(role: MultiRegionRole, replicas: &[&str]) -> KeyFacts {
        let arn = match role {
            MultiRegionRole::Primary => key("us-east-1"),
            MultiRegionRole::Replica => key(replicas[0]),
        };
        KeyFacts {
            arn,
            state: KeyState::Enabled,
            multi_region: Some(MultiRegion {
                role,
                primary: key("us-east-1"),
                replicas: replicas.iter().map(|r| key(r)).collect(),
            }),
        }
    }

    #[test]
    fn a_replica_event_reaches_only_that_replica() {
        let f = facts(MultiRegionRole::Replica, &["us-west-2", "eu-west-1"]);
        for mirror in [true, false] {
            assert_eq!(
                reach(&f, Scope::Key, mirror),
                Reach::Replicas {
                    primary: key("us-east-1"),
                    replicas: vec![key("us-west-2")]
                }
            );
        }
    }

    #[test]
    fn a_primary_event_fans_out_only_when_the_baseline_mirrors_the_primary() {
        let f = facts(MultiRegionRole::Primary, &["us-west-2", "eu-west-1"]);
        assert_eq!(
            reach(&f, Scope::Key, false),
            Reach::Skip(Skip::PrimaryNotMirrored)
        );
        assert!(
            matches!(reach(&f, Scope::Key, true), Reach::Replicas { replicas, .. } if replicas.len() == 2)
        );
    }

    #[test]
    fn a_moved_primary_reaches_every_replica_in_any_mode() {
        let primary = facts(MultiRegionRole::Primary, &["us-west-2", "eu-west-1"]);
        let replica = facts(MultiRegionRole::Replica, &["us-west-2", "eu-west-1"]);
        for f in [primary, replica] {
            assert!(
                matches!(reach(&f, Scope::AllRelated, false), Reach::Replicas { replicas, .. } if replicas.len() == 2)
            );
        }
    }

    #[test]
    fn single_region_keys_and_lonely_primaries_are_skipped() {
        let single = KeyFacts {
            arn: key("us-east-1"),
            state: KeyState::Enabled,
            multi_region: None,
        };
        assert_eq!(
            reach(&single, Scope::Key, true),
            Reach::Skip(Skip::SingleRegionEvent)
        );
        let lonely = facts(MultiRegionRole::Primary, &[]);
        assert_eq!(
            reach(&lonely, Scope::Key, true),
            Reach::Skip(Skip::PrimaryWithoutReplicas)
        );
    }

    #[test]
    fn deleting_and_unavailable_keys_are_left_alone_with_a_reason() {
        for s in [
            KeyState::PendingDeletion,
            KeyState::PendingReplicaDeletion,
            KeyState::Unavailable,
        ] {
            assert!(skip_for_state(&s).is_some(), "{s:?}");
        }
        for s in [
            KeyState::Enabled,
            KeyState::Disabled,
            KeyState::PendingImport,
        ] {
            assert!(skip_for_state(&s).is_none(), "{s:?}");
        }
        assert_eq!(KeyState::parse("Creating"), KeyState::Creating);
        assert_eq!(KeyState::parse("Weird"), KeyState::Other("Weird".into()));
    }

    #[test]
    fn the_exclude_tag_matches_by_key_whatever_its_value() {
        assert!(is_excluded(
            ["a", "kms-replica-guard:exclude"].into_iter(),
            "kms-replica-guard:exclude"
        ));
        assert!(!is_excluded(
            ["kms-replica-guard:Exclude"].into_iter(),
            "kms-replica-guard:exclude"
        ));
    }

    #[test]
    fn a_drift_is_named_by_both_policies() {
        let a = drift_name("{}", "{\"a\":1}");
        assert_eq!(a, drift_name("{}", "{\"a\":1}"));
        assert_eq!(a.len(), 64);
        assert_ne!(
            a,
            drift_name("{}{", "\"a\":1}"),
            "the boundary is part of the name"
        );
        assert_ne!(a, drift_name("{\"a\":1}", "{}"));
    }
}
