//! Key policy handling: parsing into a canonical form so that equivalence is judged on
//! meaning rather than text, a readable statement-level diff for drift reports, and
//! validation (grammar, KMS limits, no remediator lockout) before any write.
//!
//! Equivalence follows the Terraform provider's policy comparison but is stricter
//! where that has known gaps: lists are compared as sets after de-duplication, so
//! `[a, a]` is not `[a, b]`.

mod canonical;
mod compare;
mod diff;
mod validate;

#[cfg(test)]
mod tests;

pub use canonical::{CanonicalPolicy, PolicyError, equivalent};
pub use compare::{Verdict, compare};
pub use diff::{PolicyDiff, diff};
pub use validate::{
    ACCEPTED_VERSIONS, LockoutGuard, MAX_POLICY_BYTES, ValidationError, ValidationErrors, validate,
};
