//! The minimal lambda_runtime function, written as lambda_runtime's own examples write it
//! (`#[tokio::main]`, the multi-thread runtime): it echoes the event. The cold-start
//! benchmark (`make bench-coldstart`, xtask/src/coldstart.rs) runs it beside `bootstrap`, built
//! with the same release profile, as the reference for the init budget and for memory.
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
