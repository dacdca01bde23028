//! The Lambda function binary. Init only sets up logging and the runtime; the SDK (its
//! configuration, the shared HTTPS client with its root certificates) and the function's
//! configuration (which may read an `ssm:` or `s3://` baseline) are built on the first
//! event and kept for the life of the execution environment (unless a read it needs failed
//! for a reason that may pass: then that event fails retryably and the next one reads again).
//! Measured (BENCHMARKS.md, "Measurements behind decisions"): built in init they made init a
//! multiple of a hello-world function's, for no gain — the same work would only move from
//! event 1 to init.
//!
//! The runtime is tokio's current-thread scheduler. Lambda hands an execution environment
//! one event at a time, the work per event is waiting on KMS (its CPU per event: BENCHMARKS.md),
//! and a sweep's concurrency is concurrent requests, not threads: worker threads would only
//! be spawned at start-up to sit idle (their cost in init: BENCHMARKS.md, "Measurements behind
//! decisions").

use kms_replica_guard::wiring::{AwsApp, from_environment, kept};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tokio::sync::OnceCell;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_replica_guard::telemetry::init();
    let app: OnceCell<AwsApp> = OnceCell::new();
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // Boxed: the SDK set-up future is too deep to lay out inline. A configuration that
        // could not be read for a passing reason fails this event and is read again.
        kept(app, || Box::pin(from_environment()))
            .await?
            .handle(event.payload)
            .await
    }))
    .await
}
