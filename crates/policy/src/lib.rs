//! The KMS key policy language, pure (no I/O, no tokio, no SDK): the bottom crate of the
//! workspace, under krg-engine (which decides with it) and everything above. Parsing into a
//! canonical form so that equivalence is judged on meaning rather than text
//! ([`CanonicalPolicy`], [`equivalent`]), the verdict on a live policy ([`compare`]), a
//! readable statement-level diff for drift reports ([`diff`]), the drift as access — who
//! gains and loses what, and how serious it is ([`explain`]), judged against the accounts
//! and organisations the key may trust ([`Trust`]) — the guardrails any document must pass
//! before it is written, by the same rules ([`guardrails`]), and validation (grammar, KMS
//! limits, no remediator lockout) before any write ([`validate`]).
//!
//! Equivalence follows the Terraform provider's policy comparison but is stricter
//! where that has known gaps: lists are compared as sets after de-duplication, so
//! `[a, a]` is not `[a, b]`.

mod arn;
mod canonical;
mod compare;
mod contains;
mod diff;
mod explain;
mod guardrail;
mod lockout;
mod pattern;
mod trust;
mod validate;

#[cfg(test)]
mod tests;

pub use arn::Arn;
pub use canonical::{CanonicalPolicy, PolicyError, equivalent};
pub use compare::{Verdict, assess, assess_parsed, compare};
pub use contains::{Containment, Extra, contain, contain_with};
pub use diff::{PolicyDiff, diff};
pub use explain::{Access, Exposure, Severity, UnknownSeverity, explain};
pub use guardrail::{Breach, BreachReason, guardrails};
pub use trust::Trust;
pub use validate::{
    ACCEPTED_VERSIONS, LockoutGuard, MAX_POLICY_BYTES, Origin, UNIQUE_ID_PREFIXES, Validated,
    ValidationError, ValidationErrors, is_unique_id, validate, validate_as, validate_merged,
};
