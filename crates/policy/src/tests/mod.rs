//! Tests for the policy module; one named test per equivalence and validation rule,
//! plus property tests over generated policies.

mod contains;
mod diff;
mod equivalence;
mod explain;
mod guardrail;
mod properties;
mod trust;
mod validate;

use super::{CanonicalPolicy, equivalent};

/// Parses both texts and says whether they are equivalent; panics on parse errors.
fn same(a: &str, b: &str) -> bool {
    equivalent(a, b).unwrap_or_else(|e| panic!("test policy does not parse: {e}"))
}

/// Wraps one statement body into a policy with the current Version.
fn policy(statement: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statement}]}}"#)
}

fn parse(text: &str) -> CanonicalPolicy {
    CanonicalPolicy::parse(text).unwrap_or_else(|e| panic!("test policy does not parse: {e}"))
}
