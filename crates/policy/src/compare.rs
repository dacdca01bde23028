//! A live policy text against the desired canonical policy: the one verdict every reconcile
//! stage acts on.

use super::{CanonicalPolicy, Exposure, Trust, diff, explain};

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

/// [`compare`] and, on drift, what the drift means as access ([`explain`]: from the
/// desired policy to the live one, so gains are what the drift opened). The live policy is
/// parsed once for both; an in-sync policy costs nothing more than [`compare`]. A live
/// policy that does not parse has no explanation (`None`).
pub fn assess(live: &str, desired: &CanonicalPolicy, trust: &Trust) -> (Verdict, Option<Exposure>) {
    assess_parsed(
        live,
        CanonicalPolicy::parse(live).ok().as_ref(),
        desired,
        trust,
    )
}

/// [`assess`] of a live policy already parsed: `parsed` is `live` in canonical form, or
/// `None` when it does not parse (as [`Containment::live`](crate::Containment::live)
/// has it), so that an event parses its live policy once.
pub fn assess_parsed(
    live: &str,
    parsed: Option<&CanonicalPolicy>,
    desired: &CanonicalPolicy,
    trust: &Trust,
) -> (Verdict, Option<Exposure>) {
    match parsed {
        Some(parsed) if parsed == desired => (Verdict::InSync, None),
        Some(parsed) => (
            Verdict::Drift(diff(parsed, desired).to_string()),
            Some(explain(desired, parsed, trust)),
        ),
        // Only to say why it does not parse: the rare path.
        None => (compare(live, desired), None),
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
        assert_eq!(
            assess(reformatted, &desired, &Trust::own("111122223333")),
            (Verdict::InSync, None)
        );
        assert_eq!(
            assess("nope", &desired, &Trust::own("111122223333")).1,
            None
        );
    }

    #[test]
    fn a_drift_is_assessed_with_what_the_live_policy_opened() {
        let desired = CanonicalPolicy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}]}"#,
        )
        .unwrap();
        let live = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"},{"Sid":"Open","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#;
        let (verdict, exposure) = assess(live, &desired, &Trust::own("111122223333"));
        assert!(
            matches!(&verdict, Verdict::Drift(d) if d.contains("Open")),
            "{verdict:?}"
        );
        let exposure = exposure.expect("a parsed drift is explained");
        assert_eq!(exposure.severity, crate::Severity::Public);
        assert_eq!(
            exposure.sentences(),
            ["* gains kms:Decrypt (no condition) — public"]
        );
    }
}
