//! The detector function binary: Security Hub findings and AWS Config rule answers, from the
//! same engine in dry-run ([`kms_replica_guard::lambda::detector`]). Built like the
//! remediator's `bootstrap`: logging and the runtime in init, the SDK and the configuration
//! on the first event, kept for the execution environment's life.

use kms_replica_guard::wiring::{AwsDetector, detector_from_environment, kept};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tokio::sync::OnceCell;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_replica_guard::telemetry::init();
    let detector: OnceCell<AwsDetector> = OnceCell::new();
    let detector = &detector;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // Boxed: the SDK set-up future is too deep to lay out inline.
        kept(detector, || Box::pin(detector_from_environment()))
            .await?
            .handle(event.payload)
            .await
    }))
    .await
}
