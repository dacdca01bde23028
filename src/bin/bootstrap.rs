//! The Lambda function binary: builds the SDK clients and reads the configuration once,
//! then serves invocations.

use kms_replica_guard::aws::backups::{Backups, S3Backups};
use kms_replica_guard::aws::clients::{kms_clients, load_sdk_config};
use kms_replica_guard::aws::cloudwatch::CloudWatch;
use kms_replica_guard::aws::kms::Kms;
use kms_replica_guard::aws::remote::Remote;
use kms_replica_guard::config::Config;
use kms_replica_guard::lambda::App;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_replica_guard::telemetry::init();
    let sdk = load_sdk_config().await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let config = Config::load(&Remote::new(aws_sdk_ssm::Client::new(&sdk), s3.clone())).await;
    let (limits, backups) = match &config {
        Ok(c) => (
            c.rate_limits,
            c.backup_bucket.as_ref().map_or(Backups::Off, |bucket| {
                Backups::S3(S3Backups::new(s3, bucket, &c.backup_prefix))
            }),
        ),
        Err(_) => (Default::default(), Backups::Off),
    };
    let kms = Kms::with_limits(kms_clients(&sdk), limits);
    let metrics = CloudWatch::new(aws_sdk_cloudwatch::Client::new(&sdk));
    let app = App::with_backups(config, kms.clone(), kms, backups, metrics);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        app.handle(event.payload).await
    }))
    .await
}
