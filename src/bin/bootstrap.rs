//! The Lambda function binary: builds the SDK clients and reads the configuration once,
//! then serves invocations.

use kms_replica_guard::aws::clients::load_sdk_config;
use kms_replica_guard::aws::remote::Remote;
use kms_replica_guard::config::Config;
use kms_replica_guard::lambda::on_aws;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_replica_guard::telemetry::init();
    let sdk = load_sdk_config().await;
    let remote = Remote::new(
        aws_sdk_ssm::Client::new(&sdk),
        aws_sdk_s3::Client::new(&sdk),
    );
    let app = on_aws(&sdk, Config::load(&remote).await);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.handle(event.payload).await
    }))
    .await
}
