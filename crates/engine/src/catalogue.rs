//! A catalogue of named baselines (`BASELINE_SOURCE=dir:PATH`, `s3://BUCKET/PREFIX/`,
//! `ssm:/PATH/`): each key picks one with a tag (`BASELINE_TAG`, value = a name), read from
//! the replica and, when the replica has none, from its primary; untagged keys use
//! `BASELINE_DEFAULT`. The name `primary` means "mirror the primary".
//!
//! Picking is pure: the reconcile stage reads the tags (once per key and run) and asks
//! [`Catalogue::pick`]. An unknown name is a failure of that key only, never a write.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::baseline::Template;
use crate::key::AccountId;

/// The tag a key names its baseline with, unless `BASELINE_TAG` says otherwise.
pub const DEFAULT_BASELINE_TAG: &str = "kms-replica-guard:baseline";

/// The name that means "mirror the primary key's policy" (as a tag value or the default).
pub const PRIMARY: &str = "primary";

/// What a key's baseline is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// A named template of the catalogue.
    Named(String),
    /// The primary's policy, mirrored.
    Primary,
}

impl Choice {
    /// `primary`, or a name.
    pub fn parse(name: &str) -> Self {
        let name = name.trim();
        if name == PRIMARY {
            Choice::Primary
        } else {
            Choice::Named(name.to_owned())
        }
    }

    /// The name, as outcomes show it.
    pub fn name(&self) -> &str {
        match self {
            Choice::Named(n) => n,
            Choice::Primary => PRIMARY,
        }
    }
}

/// Where a key's choice came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChosenBy {
    /// The replica's own tag.
    ReplicaTag,
    /// The primary's tag (the replica has none).
    PrimaryTag,
    /// Neither carries the tag: `BASELINE_DEFAULT`.
    Default,
}

impl fmt::Display for ChosenBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChosenBy::ReplicaTag => "the replica's tag",
            ChosenBy::PrimaryTag => "the primary's tag",
            ChosenBy::Default => "BASELINE_DEFAULT",
        })
    }
}

/// A key's baseline, picked from the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick<'a> {
    /// Render this template.
    Template {
        /// Its name in the catalogue.
        name: &'a str,
        /// The template.
        template: &'a Template,
    },
    /// Mirror the primary.
    Primary,
}

/// A key names a baseline the catalogue does not have: that key fails, nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{by} names baseline {name:?} (tag {tag}), which the catalogue {origin} does not have; nothing was written: fix the tag to one of {known}, or add {name:?} to the catalogue"
)]
pub struct UnknownBaseline {
    /// The name asked for.
    pub name: String,
    /// The tag that named it.
    pub tag: String,
    /// Where the name came from.
    pub by: ChosenBy,
    /// The catalogue.
    pub origin: String,
    /// The names it has (and `primary`), comma-separated.
    pub known: String,
}

/// A key's tag names a baseline that its account may not select (`BASELINE_SCOPE`): that key
/// fails, nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{by} names baseline {name:?} (tag {tag}), which only accounts {allowed} may select (BASELINE_SCOPE), and this key is in account {account}; nothing was written: tag the key with a baseline its account may use, or add {account} to {name:?}'s scope"
)]
pub struct OutOfScope {
    /// The name asked for.
    pub name: String,
    /// The tag that named it.
    pub tag: String,
    /// Where the name came from.
    pub by: ChosenBy,
    /// The key's account.
    pub account: AccountId,
    /// The accounts that may select it, comma-separated.
    pub allowed: String,
}

/// Why a key's tag picks no baseline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// The catalogue has no baseline of that name.
    #[error(transparent)]
    Unknown(UnknownBaseline),
    /// The key's account may not select it.
    #[error(transparent)]
    OutOfScope(OutOfScope),
}

/// A catalogue that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    /// No baseline in it.
    #[error("the catalogue {origin} holds no baseline; add NAME.json templates to it")]
    Empty {
        /// The catalogue.
        origin: String,
    },
    /// A name that a tag value could not carry, or `primary`.
    #[error(
        "the catalogue {origin} has a baseline named {name:?}: names are 1 to 128 letters, digits, '.', '_' or '-' (the value of the tag {tag}), and `primary` is reserved for mirroring; rename it"
    )]
    BadName {
        /// The catalogue.
        origin: String,
        /// The name.
        name: String,
        /// The tag keys name baselines with.
        tag: String,
    },
    /// `BASELINE_DEFAULT` names a baseline the catalogue does not have.
    #[error(
        "BASELINE_SCOPE names {name:?}, which the catalogue {origin} does not have; use one of {known}"
    )]
    UnknownScoped {
        origin: String,
        name: String,
        known: String,
    },
    #[error(
        "BASELINE_DEFAULT names {name:?}, which the catalogue {origin} does not have; use one of {known}"
    )]
    UnknownDefault {
        /// The catalogue.
        origin: String,
        /// The name.
        name: String,
        /// The names it has (and `primary`).
        known: String,
    },
}

/// Named baselines, the tag that picks one, and the default for untagged keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    origin: String,
    templates: BTreeMap<String, Template>,
    tag: String,
    default: Choice,
    /// Baselines a tag may select only in these accounts (`BASELINE_SCOPE`); a name not
    /// listed may be selected in any account.
    scope: BTreeMap<String, BTreeSet<AccountId>>,
}

/// Whether `name` can be a baseline's name: what a tag value can carry, without spaces or
/// slashes, and not `primary`.
pub fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name != PRIMARY
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Catalogue {
    /// A catalogue read from `origin`; every name must be valid and the default known.
    pub fn new(
        origin: impl Into<String>,
        templates: BTreeMap<String, Template>,
        tag: impl Into<String>,
        default: Choice,
    ) -> Result<Self, CatalogueError> {
        let origin = origin.into();
        let tag = tag.into();
        if templates.is_empty() {
            return Err(CatalogueError::Empty { origin });
        }
        if let Some(name) = templates.keys().find(|n| !valid_name(n)) {
            return Err(CatalogueError::BadName {
                origin,
                name: name.clone(),
                tag,
            });
        }
        let catalogue = Self {
            origin,
            templates,
            tag,
            default,
            scope: BTreeMap::new(),
        };
        if let Choice::Named(name) = &catalogue.default
            && !catalogue.templates.contains_key(name)
        {
            return Err(CatalogueError::UnknownDefault {
                origin: catalogue.origin.clone(),
                name: name.clone(),
                known: catalogue.known(),
            });
        }
        Ok(catalogue)
    }

    /// Where the catalogue was read from (`dir:baselines`, `s3://bucket/prefix/`, ...).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Limits which accounts' keys may select each named baseline by tag; a name the
    /// catalogue lacks is an error naming it.
    pub fn with_scope(
        mut self,
        scope: BTreeMap<String, BTreeSet<AccountId>>,
    ) -> Result<Self, CatalogueError> {
        if let Some(name) = scope.keys().find(|n| !self.templates.contains_key(*n)) {
            return Err(CatalogueError::UnknownScoped {
                origin: self.origin.clone(),
                name: name.clone(),
                known: self.known(),
            });
        }
        self.scope = scope;
        Ok(self)
    }

    /// The tag keys pick their baseline with.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The baseline of untagged keys.
    pub fn default(&self) -> &Choice {
        &self.default
    }

    /// The named templates, by name.
    pub fn templates(&self) -> impl Iterator<Item = (&str, &Template)> {
        self.templates.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// The names a tag may carry, for messages.
    fn known(&self) -> String {
        self.templates
            .keys()
            .map(String::as_str)
            .chain([PRIMARY])
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The baseline of a key whose replica carries `replica_tag` and whose primary carries
    /// `primary_tag` (values of [`Catalogue::tag`]); the replica's tag wins.
    pub fn pick(
        &self,
        account: &AccountId,
        replica_tag: Option<&str>,
        primary_tag: Option<&str>,
    ) -> Result<(Pick<'_>, ChosenBy), PickError> {
        let (choice, by) = match (replica_tag, primary_tag) {
            (Some(v), _) => (Choice::parse(v), ChosenBy::ReplicaTag),
            (None, Some(v)) => (Choice::parse(v), ChosenBy::PrimaryTag),
            (None, None) => (self.default.clone(), ChosenBy::Default),
        };
        match choice {
            Choice::Primary => Ok((Pick::Primary, by)),
            Choice::Named(name) => match self.templates.get_key_value(&name) {
                Some((name, _))
                    if by != ChosenBy::Default
                        && self.scope.get(name).is_some_and(|a| !a.contains(account)) =>
                {
                    Err(PickError::OutOfScope(OutOfScope {
                        name: name.clone(),
                        tag: self.tag.clone(),
                        by,
                        account: account.clone(),
                        allowed: self.scope[name]
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    }))
                }
                Some((name, template)) => Ok((Pick::Template { name, template }, by)),
                None => Err(PickError::Unknown(UnknownBaseline {
                    name,
                    tag: self.tag.clone(),
                    by,
                    origin: self.origin.clone(),
                    known: self.known(),
                })),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        "111122223333".parse().unwrap()
    }

    fn catalogue(default: Choice) -> Result<Catalogue, CatalogueError> {
        let mut t = BTreeMap::new();
        for name in ["s3-data", "logs"] {
            t.insert(
                name.to_owned(),
                Template::new(format!("dir:baselines/{name}.json"), "{}").unwrap(),
            );
        }
        Catalogue::new("dir:baselines", t, DEFAULT_BASELINE_TAG, default)
    }

    #[test]
    fn the_replicas_tag_wins_then_the_primarys_then_the_default() {
        let c = catalogue(Choice::Named("logs".into())).unwrap();
        let name = |p: Pick<'_>| match p {
            Pick::Template { name, .. } => name.to_owned(),
            Pick::Primary => PRIMARY.to_owned(),
        };
        let (p, by) = c.pick(&account(), Some("s3-data"), Some("logs")).unwrap();
        assert_eq!((name(p), by), ("s3-data".into(), ChosenBy::ReplicaTag));
        let (p, by) = c.pick(&account(), None, Some(" s3-data ")).unwrap();
        assert_eq!((name(p), by), ("s3-data".into(), ChosenBy::PrimaryTag));
        let (p, by) = c.pick(&account(), None, None).unwrap();
        assert_eq!((name(p), by), ("logs".into(), ChosenBy::Default));
        let (p, by) = c.pick(&account(), Some("primary"), None).unwrap();
        assert_eq!((p, by), (Pick::Primary, ChosenBy::ReplicaTag));
    }

    #[test]
    fn an_unknown_name_says_which_tag_named_it_and_what_exists() {
        let c = catalogue(Choice::Primary).unwrap();
        let Err(PickError::Unknown(e)) = c.pick(&account(), None, Some("s3-dta")) else {
            panic!("an unknown name")
        };
        assert_eq!(e.by, ChosenBy::PrimaryTag);
        let text = e.to_string();
        assert!(
            text.contains("\"s3-dta\"")
                && text.contains("logs, s3-data, primary")
                && text.contains("nothing was written"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_name_an_unknown_default_and_an_empty_catalogue_are_refused() {
        assert!(matches!(
            catalogue(Choice::Named("nope".into())),
            Err(CatalogueError::UnknownDefault { .. })
        ));
        let e = Catalogue::new("dir:x", BTreeMap::new(), "t", Choice::Primary).unwrap_err();
        assert!(matches!(e, CatalogueError::Empty { .. }));
        for bad in ["primary", "has space", "a/b", ""] {
            let mut t = BTreeMap::new();
            t.insert(bad.to_owned(), Template::new("x", "{}").unwrap());
            assert!(
                matches!(
                    Catalogue::new("dir:x", t, "t", Choice::Primary),
                    Err(CatalogueError::BadName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(valid_name("s3-data.v2_eu"));
    }

    #[test]
    fn a_scoped_baseline_is_selected_by_tag_only_in_its_accounts() {
        let scope = BTreeMap::from([(
            "s3-data".to_owned(),
            BTreeSet::from(["444455556666".parse().unwrap()]),
        )]);
        let c = catalogue(Choice::Named("s3-data".into()))
            .unwrap()
            .with_scope(scope)
            .unwrap();
        let Err(PickError::OutOfScope(e)) = c.pick(&account(), Some("s3-data"), None) else {
            panic!("out of scope")
        };
        assert_eq!(e.by, ChosenBy::ReplicaTag);
        let text = e.to_string();
        assert!(
            text.contains("444455556666")
                && text.contains("111122223333")
                && text.contains("nothing was written"),
            "{text}"
        );
        assert!(matches!(
            c.pick(&account(), None, Some("s3-data")),
            Err(PickError::OutOfScope(_))
        ));
        let other: AccountId = "444455556666".parse().unwrap();
        assert!(c.pick(&other, Some("s3-data"), None).is_ok());
        // The default is the operator's choice, not a tagger's: scope limits tags only.
        assert!(c.pick(&account(), None, None).is_ok());
        // Unscoped names stay open to every account.
        assert!(c.pick(&account(), Some("logs"), None).is_ok());
    }

    #[test]
    fn a_scope_naming_a_baseline_the_catalogue_lacks_is_refused() {
        let scope = BTreeMap::from([("nope".to_owned(), BTreeSet::new())]);
        let e = catalogue(Choice::Primary)
            .unwrap()
            .with_scope(scope)
            .unwrap_err();
        assert!(matches!(e, CatalogueError::UnknownScoped { .. }), "{e}");
    }
}
