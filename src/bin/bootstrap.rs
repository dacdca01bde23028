//! The Lambda function binary: builds the SDK clients once, then serves invocations.

use kms_replica_guard::aws::clients::{kms_clients, load_sdk_config};
use kms_replica_guard::aws::cloudwatch::CloudWatch;
use kms_replica_guard::aws::kms::Kms;
use kms_replica_guard::config::Config;
use kms_replica_guard::lambda::App;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_replica_guard::telemetry::init();
    let sdk = load_sdk_config().await;
    let kms = Kms::new(kms_clients(&sdk));
    let metrics = CloudWatch::new(aws_sdk_cloudwatch::Client::new(&sdk));
    let app = App::new(Config::from_env(), kms.clone(), kms, metrics);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.handle(event.payload).await
    }))
    .await
}
