//! The report of an invocation: every outcome, run errors, tag news, refused accounts;
//! merged across work items, and its failure class.

use super::*;

/// The outcomes of one invocation or sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One entry per key looked at.
    pub outcomes: Vec<Outcome>,
    /// Failures outside any one key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RunError>,
    /// Sweeps: how many replicas ended in each action (in-sync ones are only counted here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<BTreeMap<Action, usize>>,
    /// Sweeps of several accounts: the summary per account.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub summary_by_account: BTreeMap<AccountId, BTreeMap<Action, usize>>,
    /// Accounts a sweep was asked for but may not work in (nothing was called there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts_refused: Vec<Refused>,
    /// Sweeps: how many drifted keys an exemption left in place (the `KeysExcluded` metric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<usize>,
    /// Tag events: the exemptions granted and removed, and the baselines switched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tag_changes: Vec<TagNews>,
    /// Sweeps that ran through without a run error (the heartbeat, `SweepCompleted`).
    #[serde(skip)]
    pub sweeps_completed: usize,
    /// Sweeps: the in-sync replicas, left out of `outcomes` (and of the response) but kept
    /// for what reports on every key (Security Hub findings, AWS Config evaluations).
    #[serde(skip)]
    pub in_sync: Vec<Outcome>,
}

/// A change of the exclude or baseline tag: itself news, whoever made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagNews {
    /// The key tagged or untagged.
    pub key_arn: KeyArn,
    /// What the change means.
    pub change: TagNewsKind,
    /// The tag key.
    pub tag: String,
    /// The value set (`None`: removed).
    pub value: Option<String>,
    /// Who made the call.
    pub actor: Option<Actor>,
}

/// What a tag change means to the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagNewsKind {
    /// The exclude tag was set: the guard stops writing to the key (never alarming on it).
    ExemptionGranted,
    /// The exclude tag was removed.
    ExemptionRemoved,
    /// The baseline tag was set or removed: the key (or a primary's replicas) may now be
    /// held to another baseline.
    BaselineSwitched,
}

/// An account left alone, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The account.
    pub account: AccountId,
    /// Why it is not worked in.
    pub why: NotAllowed,
}

impl Serialize for Refused {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Refused", 2)?;
        s.serialize_field("account", &self.account)?;
        s.serialize_field("reason", &self.why.to_string())?;
        s.end()
    }
}

impl Report {
    /// Adds another report's outcomes, errors and counts to this one (an SQS batch of
    /// planned sweep items answers as one).
    pub fn merge(&mut self, other: Report) {
        self.outcomes.extend(other.outcomes);
        self.errors.extend(other.errors);
        self.accounts_refused.extend(other.accounts_refused);
        self.tag_changes.extend(other.tag_changes);
        if let Some(counts) = other.summary {
            let summary = self.summary.get_or_insert_with(BTreeMap::new);
            for (action, n) in counts {
                *summary.entry(action).or_default() += n;
            }
        }
        for (account, counts) in other.summary_by_account {
            let mine = self.summary_by_account.entry(account).or_default();
            for (action, n) in counts {
                *mine.entry(action).or_default() += n;
            }
        }
        if let Some(n) = other.excluded {
            *self.excluded.get_or_insert(0) += n;
        }
        self.sweeps_completed += other.sweeps_completed;
        self.in_sync.extend(other.in_sync);
    }

    /// How many outcomes have this action.
    pub fn count(&self, action: Action) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.action() == action)
            .count()
    }

    /// The failed outcomes.
    pub fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.action() == Action::Failed)
    }

    /// `None` when nothing failed; otherwise whether a retry of the whole invocation can
    /// help (any retryable failure makes it retryable: the fixed keys are in sync by then).
    pub fn failure_class(&self) -> Option<Retry> {
        let classes = self
            .failures()
            .filter_map(Outcome::retry)
            .chain(self.errors.iter().map(RunError::retry));
        classes.fold(None, |acc, r| match (acc, r) {
            (Some(Retry::Retryable), _) | (_, Retry::Retryable) => Some(Retry::Retryable),
            _ => Some(Retry::NonRetryable),
        })
    }
}
