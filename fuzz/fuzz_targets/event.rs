//! Invocation payload → trigger, the way the Lambda runtime and the handler do it.
//!
//! Input: the raw payload bytes. Any error is an acceptable answer to garbage; a panic, or
//! a trigger that breaks one of the properties below, is a bug.

#![no_main]

use std::sync::LazyLock;

use krg_engine::key::{KeyArn, Region, RoleArn};
use krg_engine::trigger::{self, EventError, Trigger};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The remediator role of the sample events (events/README.md).
static REMEDIATOR: LazyLock<RoleArn> = LazyLock::new(|| {
    "arn:aws:iam::111122223333:role/kms-replica-guard-remediator"
        .parse()
        .expect("the remediator role ARN is valid")
});

fuzz_target!(|data: &[u8]| {
    // lambda_runtime 1.x deserialises the body exactly like this (deserializer.rs):
    // serde_path_to_error over a slice deserializer, without rejecting trailing bytes.
    let de = &mut serde_json::Deserializer::from_slice(data);
    let Ok(payload) = serde_path_to_error::deserialize::<_, Value>(de) else {
        return;
    };

    let plain = trigger::parse(&payload, None);
    let guarded = trigger::parse(&payload, Some(&REMEDIATOR));
    check(&plain);
    check(&guarded);

    // Configuring the remediator role only ever marks the calls made under that role (the
    // reconcile stage then decides by what was written); every other part of the answer is
    // the same either way.
    let marked = match &guarded {
        Ok(Trigger::Keys { event, .. } | Trigger::Ignore { event, .. }) => event.own_role.as_ref(),
        _ => None,
    };
    if let Some(own) = marked {
        assert_eq!(
            own.role, *REMEDIATOR,
            "marked as the guard's own: {guarded:?}"
        );
    }
    let unmarked = guarded.clone().map(|t| match t {
        Trigger::Keys { mut event, targets } => {
            event.own_role = None;
            Trigger::Keys { event, targets }
        }
        Trigger::Ignore { mut event, reason } => {
            event.own_role = None;
            Trigger::Ignore { event, reason }
        }
        other => other,
    });
    assert_eq!(
        plain, unmarked,
        "the remediator role changed the answer beyond marking its own call"
    );
});

/// What the handler and the engine do with the answer, and what they rely on.
fn check(result: &Result<Trigger, EventError>) {
    match result {
        // The handler logs the error and returns it as the invocation's error message.
        Err(e) => {
            std::hint::black_box(e.to_string());
        }
        Ok(t) => {
            std::hint::black_box(format!("{t:?}"));
            match t {
                Trigger::Keys { event, targets } => {
                    assert!(!targets.is_empty(), "a Keys trigger without keys: {t:?}");
                    std::hint::black_box(&event.id);
                    for target in targets {
                        check_key(&target.key);
                    }
                }
                Trigger::Sweep { regions, .. } => {
                    for r in regions.iter().flatten() {
                        check_region(r);
                    }
                }
                Trigger::Ignore { reason, .. } => {
                    assert!(!reason.is_empty(), "a no-op without a reason: {t:?}");
                }
            }
        }
    }
}

fn check_key(key: &KeyArn) {
    assert!(
        key.is_multi_region(),
        "only multi-Region keys may be targeted: {key}"
    );
    // Logs, outcomes and the response carry the ARN as text and as JSON.
    let text = key.to_string();
    let back: KeyArn = text
        .parse()
        .unwrap_or_else(|e| panic!("a target's ARN does not parse back: {text:?}: {e}"));
    assert_eq!(&back, key, "the ARN text does not round-trip");
    assert_eq!(
        serde_json::to_value(key).expect("a key ARN serialises"),
        Value::String(text.clone())
    );
    check_region(key.region());
    // The engine derives the ARNs of related keys from a target.
    let same = key.in_region(key.region());
    assert_eq!(same.key_id(), key.key_id());
    assert_eq!(same.region(), key.region());
    assert_eq!(same.account(), key.account());
    let other: Region = "eu-west-1".parse().expect("a valid Region");
    let related = key.in_region(&other);
    assert_eq!(related.key_id(), key.key_id());
    assert_eq!(related.region(), &other);
}

fn check_region(region: &Region) {
    let text = region.to_string();
    let back: Region = text
        .parse()
        .unwrap_or_else(|e| panic!("a Region does not parse back: {text:?}: {e}"));
    assert_eq!(&back, region);
    std::hint::black_box(region.partition());
}
