//! Guardrails on what the guard writes (DESIGN.md, "The guard is a tier-0 control"):
//! whatever the baseline's source, a policy must not grant public access, access to an
//! account or organisation outside the [`Trust`], or access to a service principal that no
//! condition ties to a trusted account or organisation (a confused deputy).
//!
//! The guardrail rates each unit of access a policy grants with the explanation's own
//! rating ([`explain`](crate::explain)), so that the two never disagree: a policy breaches
//! exactly when explaining it against an empty policy is `public` or `cross-account`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::canonical::{CanonicalPolicy, Effect};
use super::explain::{
    compile, outside, pins, render_when, severity, show_who, shown_action, uncovered,
};
use super::{Access, Severity, Trust};

/// Why a grant falls outside the trust.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BreachReason {
    /// Everyone (`*`, `{"AWS": "*"}`, a NotPrincipal), with no condition that limits the
    /// caller to an account or an organisation: public.
    Unlimited,
    /// Everyone, with conditions that limit the caller only to accounts or organisations
    /// that are not trusted (or that this reading cannot name).
    UntrustedLimit,
    /// A principal of an account that is not trusted.
    ForeignAccount {
        /// The account id.
        account: String,
    },
    /// An AWS principal that names no account (an IAM unique id: a deleted principal).
    NoAccount {
        /// The principal value.
        principal: String,
    },
    /// A service principal that no condition ties to a trusted account or organisation.
    UnpinnedService {
        /// The service principal, e.g. `logs.amazonaws.com`.
        service: String,
    },
    /// A federated or canonical-user principal that no condition ties to a trusted
    /// account or organisation.
    UnpinnedFederation {
        /// The principal as `TYPE:VALUE`.
        principal: String,
    },
}

impl fmt::Display for BreachReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreachReason::Unlimited => f.write_str(
                "no condition limits the caller to a trusted account or organisation",
            ),
            BreachReason::UntrustedLimit => f.write_str(
                "its conditions limit the caller only to accounts or organisations that are not trusted",
            ),
            BreachReason::ForeignAccount { account } => write!(
                f,
                "account {account} is not trusted (add it to TRUSTED_ACCOUNTS if it should be)"
            ),
            BreachReason::NoAccount { principal } => write!(
                f,
                "principal {principal} names no account (an IAM unique id is a deleted principal), so it cannot be trusted"
            ),
            BreachReason::UnpinnedService { service } => write!(
                f,
                "service principal {service} acts for any account unless an aws:SourceAccount, aws:SourceArn or aws:SourceOrgID condition ties it to a trusted one (confused deputy)"
            ),
            BreachReason::UnpinnedFederation { principal } => write!(
                f,
                "principal {principal} is outside every account unless a condition ties it to a trusted account or organisation"
            ),
        }
    }
}

/// One grant of a policy that falls outside the trust.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Breach {
    /// The statement's Sid, when it has one.
    pub sid: Option<String>,
    /// The statement's 1-based position in the document it was read from, when it has no
    /// Sid (and the position is known).
    pub position: Option<usize>,
    /// The principal as the explanation shows it ([`Access::principal`]).
    pub principal: String,
    /// The actions it gains, as the explanation shows them ([`Access::actions`]).
    pub actions: Vec<String>,
    /// The statement's conditions, compact; `None` when unconditional.
    pub when: Option<String>,
    /// [`Severity::Public`] or [`Severity::CrossAccount`].
    pub severity: Severity,
    /// Why the grant is outside the trust.
    pub reason: BreachReason,
}

impl fmt::Display for Breach {
    /// `statement "OpenToAll": * gains kms:Decrypt (no condition) — public: no condition
    /// limits the caller to a trusted account or organisation`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.sid, self.position) {
            (Some(sid), _) => write!(f, "statement {}", Value::String(sid.clone()))?,
            (None, Some(at)) => write!(f, "statement {at} (no Sid)")?,
            (None, None) => f.write_str("a statement without a Sid")?,
        }
        let access = Access {
            principal: self.principal.clone(),
            actions: self.actions.clone(),
            when: self.when.clone(),
        };
        write!(
            f,
            ": {} — {}: {}",
            access.sentence(true),
            self.severity,
            self.reason
        )
    }
}

/// Every grant of `policy` that is public, reaches an account or organisation outside
/// `trust`, or reaches a service principal no condition ties to the trust: one breach per
/// statement and principal, in canonical statement order. Deny statements never breach;
/// an Allow's units that a Deny of the policy cancels do not either, nor does a statement
/// KMS evaluates as granting nothing (no principal, action or resource element).
pub fn guardrails(policy: &CanonicalPolicy, trust: &Trust) -> Vec<Breach> {
    let (mut allow, mut deny) = (Vec::new(), Vec::new());
    for s in &policy.statements {
        let Some(rule) = compile(s) else { continue };
        match s.effect {
            Some(Effect::Allow) => allow.push(rule),
            Some(Effect::Deny) => deny.push(rule),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for hit in uncovered(&allow, &[], &deny) {
        let rule = hit.rule;
        let pins = pins(rule.conditions, trust);
        // Per principal of the statement: folded action -> (action as shown), worst rating.
        let mut found: BTreeMap<usize, (BTreeMap<String, String>, Severity, BreachReason)> =
            BTreeMap::new();
        // Whether a principal is outside the trust does not depend on the action: judged
        // once per principal, with the rules `rate` applies for the explanation.
        let reasons: Vec<Option<BreachReason>> =
            rule.who.iter().map(|w| outside(w, &pins, trust)).collect();
        for &(p, a) in &hit.units {
            let Some(reason) = &reasons[p] else { continue };
            let action = &rule.action_items[a];
            let severity = severity(Some(reason), action);
            let entry = found
                .entry(p)
                .or_insert_with(|| (BTreeMap::new(), severity, reason.clone()));
            entry.1 = entry.1.max(severity);
            let (folded, shown) = shown_action(action);
            entry.0.entry(folded).or_insert(shown);
        }
        if found.is_empty() {
            continue;
        }
        let when = render_when(rule.conditions);
        for (p, (actions, severity, reason)) in found {
            out.push(Breach {
                sid: rule.statement.sid.clone(),
                position: rule
                    .statement
                    .sid
                    .is_none()
                    .then_some(rule.statement.at.0)
                    .flatten(),
                principal: show_who(&rule.who[p], trust.partition()),
                actions: actions.into_values().collect(),
                when: when.clone(),
                severity,
                reason,
            });
        }
    }
    out
}
