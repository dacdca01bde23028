//! A live policy text against the desired canonical policy: the one verdict every reconcile
//! stage acts on.

use super::{CanonicalPolicy, diff};

/// In sync, or drifted with a readable diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Equivalent to the baseline.
    InSync,
    /// Not equivalent; the statement-level diff.
    Drift(String),
}

/// Compares a live policy text to the desired policy. A live policy that does not parse is
/// drift (the baseline is what it should be), never an error that blocks the fix.
pub fn compare(live: &str, desired: &CanonicalPolicy) -> Verdict {
    match CanonicalPolicy::parse(live) {
        Ok(live) if &live == desired => Verdict::InSync,
        Ok(live) => Verdict::Drift(diff(&live, desired).to_string()),
        Err(e) => Verdict::Drift(format!(
            "live policy does not parse ({e}); the baseline replaces it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unparseable_live_policy_is_drift_not_an_error() {
        let desired = CanonicalPolicy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}]}"#,
        )
        .unwrap();
        assert!(
            matches!(compare("nope", &desired), Verdict::Drift(d) if d.contains("does not parse"))
        );
        let reformatted = r#"{ "Statement": { "Resource": ["*"], "Action": "KMS:*", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Effect": "allow" }, "Version": "2012-10-17" }"#;
        assert_eq!(compare(reformatted, &desired), Verdict::InSync);
    }
}
