//! AWS Config rule invocation → what the detector evaluates, the way the handler reads it.
//!
//! Input: the raw payload bytes. Any error is an acceptable answer to garbage; a panic, or an
//! invocation that breaks one of the properties below, is a bug: the detector would evaluate
//! (and answer Config about) a key in another account or Region than the rule's.

#![no_main]

use krg_engine::config_rule::{self, Subject};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // lambda_runtime 1.x deserialises the body exactly like this (deserializer.rs).
    let de = &mut serde_json::Deserializer::from_slice(data);
    let Ok(payload) = serde_path_to_error::deserialize::<_, Value>(de) else {
        return;
    };
    if !config_rule::is_config_invocation(&payload) {
        return;
    }
    match config_rule::parse(&payload) {
        Err(e) => {
            // The handler logs it and returns it as the invocation's error message.
            std::hint::black_box(e.to_string());
        }
        Ok(inv) => {
            assert!(!inv.result_token.is_empty(), "an answer needs a token");
            assert!(inv.result_token.len() <= 64 * 1024, "a bounded token");
            if let Subject::Key { key, .. } = &inv.subject {
                assert_eq!(
                    key.account(),
                    &inv.account,
                    "the key is in the rule's account"
                );
                assert_eq!(key.region(), &inv.region, "the key is in the rule's Region");
                let text = key.to_string();
                let back: krg_engine::key::KeyArn = text.parse().expect("the ARN parses back");
                assert_eq!(&back, key);
            }
        }
    }
});
