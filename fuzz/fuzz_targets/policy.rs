//! Key policy text → canonical form, validation, diff and the drift verdict.
//!
//! Input: policy text (bytes that are not UTF-8 are read lossily, as U+FFFD). A NUL byte
//! splits the input into two policies, which are then also compared with each other.
//!
//! Beyond "no panic", the target checks the properties drift detection rests on:
//! - equivalence is reflexive;
//! - the canonical JSON (`to_value`) parses back to an equal policy and renders to the
//!   same JSON again;
//! - the diff of a policy against itself (or its canonical form) is empty;
//! - a policy that passes `validate` is in sync with itself (`compare`) and is the policy
//!   `parse` reads from the same text;
//! - for two policies: equivalent ⇔ equal canonical JSON ⇔ empty diff ⇔ `InSync`, and a
//!   `Drift` verdict carries exactly the diff.

#![no_main]

use std::hint::black_box;
use std::sync::LazyLock;

use krg_policy::{CanonicalPolicy, LockoutGuard, Verdict, compare, diff, equivalent, validate};
use libfuzzer_sys::fuzz_target;

/// The lockout check both ways it runs: for the remediator role and for the account root.
static GUARDS: LazyLock<[LockoutGuard; 2]> = LazyLock::new(|| {
    let guard = |role: Option<&str>| LockoutGuard {
        key_arn: "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
            .to_owned(),
        account_id: "111122223333".to_owned(),
        partition: "aws".to_owned(),
        remediator_role_arn: role.map(str::to_owned),
    };
    [
        guard(Some(
            "arn:aws:iam::111122223333:role/kms-replica-guard-remediator",
        )),
        guard(None),
    ]
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match text.split_once('\0') {
        Some((a, b)) => {
            one(a);
            one(b);
            pair(a, b);
        }
        None => one(&text),
    }
});

fn one(text: &str) {
    let parsed = CanonicalPolicy::parse(text);

    for guard in GUARDS.iter() {
        match validate(text, guard) {
            Ok(valid) => {
                let p = parsed.as_ref().unwrap_or_else(|e| {
                    panic!("validate accepted a policy that parse rejects: {e}")
                });
                assert_eq!(&valid, p, "validate and parse read different policies");
                assert_eq!(
                    compare(text, &valid),
                    Verdict::InSync,
                    "a validated policy is not in sync with itself"
                );
            }
            Err(errors) => {
                assert!(!errors.0.is_empty(), "validate failed without a reason");
                black_box(errors.to_string());
            }
        }
    }

    let p = match parsed {
        Ok(p) => p,
        Err(e) => {
            black_box(e.to_string());
            return;
        }
    };

    // (a) Equivalence is reflexive (`equivalent` parses the text twice).
    assert_eq!(
        equivalent(text, text),
        Ok(true),
        "a policy is not equivalent to itself"
    );

    // (b) The canonical JSON round-trips and is a fixed point.
    let canonical = p.to_value();
    let canonical_text = canonical.to_string();
    let back = CanonicalPolicy::parse(&canonical_text).unwrap_or_else(|e| {
        panic!("the canonical JSON does not parse: {e}\ncanonical: {canonical_text}")
    });
    assert_eq!(
        back, p,
        "the canonical JSON parses to a different policy\ncanonical: {canonical_text}"
    );
    assert_eq!(
        back.to_value(),
        canonical,
        "the canonical JSON is not a fixed point"
    );

    // (c) No difference from itself.
    for other in [&p, &back] {
        let d = diff(&p, other);
        assert!(d.is_empty(), "diff of a policy with itself: {d}");
        assert_eq!(d.to_string(), "", "an empty diff renders as nothing");
    }

    // (d) A policy is in sync with itself (and, by (b), with its canonical spelling).
    assert_eq!(compare(text, &p), Verdict::InSync);
    black_box(format!("{:#}", canonical));
}

fn pair(a: &str, b: &str) {
    let (pa, pb) = (CanonicalPolicy::parse(a), CanonicalPolicy::parse(b));
    let (pa, pb) = match (pa, pb) {
        (Ok(pa), Ok(pb)) => (pa, pb),
        // A live policy that does not parse is drift, never an error.
        (Err(_), Ok(pb)) => {
            assert!(matches!(compare(a, &pb), Verdict::Drift(_)));
            return;
        }
        (Ok(pa), Err(_)) => {
            assert!(matches!(compare(b, &pa), Verdict::Drift(_)));
            return;
        }
        (Err(_), Err(_)) => return,
    };
    let same = pa == pb;
    assert_eq!(
        pa.to_value() == pb.to_value(),
        same,
        "canonical JSON equality disagrees with equivalence"
    );
    for (live_text, live, desired) in [(a, &pa, &pb), (b, &pb, &pa)] {
        let d = diff(live, desired);
        let rendered = d.to_string();
        assert_eq!(
            d.is_empty(),
            same,
            "diff emptiness disagrees with equivalence: {d}"
        );
        assert_eq!(
            rendered.is_empty(),
            same,
            "diff text disagrees with equivalence"
        );
        match compare(live_text, desired) {
            Verdict::InSync => assert!(same, "InSync for policies that differ:\n{rendered}"),
            Verdict::Drift(text) => {
                assert!(!same, "Drift for equivalent policies: {text}");
                assert_eq!(text, rendered, "the drift report is not the diff");
            }
        }
    }
}
