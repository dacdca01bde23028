//! The minimal lambda_runtime function: it echoes the event. The cold-start benchmark
//! (`make bench-coldstart`, bench/coldstart.py) runs it beside `bootstrap`, built with the
//! same release profile, as the floor for init time and memory.
//!
//! cargo build --release --example hello_lambda

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| async {
        Ok::<_, lambda_runtime::Error>(e.payload)
    }))
    .await
}
