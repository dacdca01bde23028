//! The hello-world of examples/hello_lambda.rs on tokio's current-thread scheduler, as the
//! function itself runs. The cold-start benchmark (`make bench-coldstart`) times it too, so
//! that the init ratio is also shown like for like: what remains is the cost of loading a
//! larger binary, not of a different runtime.
//!
//! cargo build --release --example hello_lambda_current_thread

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| async {
        Ok::<_, lambda_runtime::Error>(e.payload)
    }))
    .await
}
