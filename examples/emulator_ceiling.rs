//! The emulator's own request ceiling, measured the way the sweep calls it: the same SDK
//! client and adapter, the same concurrency, no client-side rate limit. `make bench-sweep`
//! runs it so the sweep's rate reads as a fraction of what the emulator can serve.
//!
//! cargo run --release --example emulator_ceiling -- KEY_ARN [CONCURRENCY] [SECONDS]

use std::time::{Duration, Instant};

use futures::StreamExt;
use krg_aws::clients::{AccountClients, load_sdk_config};
use krg_aws::kms::{Kms, RateLimits};
use krg_engine::key::KeyArn;
use krg_engine::ports::{KeyDirectory, PolicyStore};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let key: KeyArn = args
        .next()
        .expect("usage: emulator_ceiling KEY_ARN [CONCURRENCY] [SECONDS]")
        .parse()
        .expect("a key ARN");
    let concurrency: usize = args.next().map_or(16, |c| c.parse().expect("a number"));
    let seconds: u64 = args.next().map_or(10, |s| s.parse().expect("a number"));
    let unlimited = RateLimits {
        describe_key: 100_000,
        get_key_policy: 100_000,
        put_key_policy: 100_000,
        list_keys: 100_000,
        list_resource_tags: 100_000,
        instances: 1,
    };
    let sdk = load_sdk_config().await;
    let kms = Kms::with_limits(
        AccountClients::new(&sdk, None, aws_sdk_kms::Client::new),
        unlimited,
    );
    let mut report = serde_json::Map::new();
    for op in ["GetKeyPolicy", "DescribeKey"] {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let results: Vec<bool> = futures::stream::iter(0..)
            .take_while(|_| std::future::ready(Instant::now() < deadline))
            .map(|_| {
                let (kms, key) = (&kms, &key);
                async move {
                    match op {
                        "GetKeyPolicy" => kms.get_policy(key).await.is_ok(),
                        _ => kms.describe_key(key).await.is_ok(),
                    }
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let ok = results.iter().filter(|r| **r).count();
        report.insert(
            op.to_owned(),
            serde_json::json!({
                "requests": results.len(), "errors": results.len() - ok,
                "seconds": elapsed, "rps": (ok as f64 / elapsed * 10.0).round() / 10.0,
                "concurrency": concurrency,
            }),
        );
    }
    println!("{}", serde_json::Value::Object(report));
}
