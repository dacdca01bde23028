//! CloudWatch adapter: publishes the run's metric data in one PutMetricData call (more only
//! past the per-call datum limit).

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum as CwDatum, StandardUnit};

use super::call_error;
use krg_engine::error::{Api, CallError};
use krg_engine::outcome::MetricDatum;
use krg_engine::ports::MetricsSink;

/// PutMetricData accepts at most this many data per call.
const MAX_DATA_PER_CALL: usize = 1000;

/// CloudWatch in the function's home Region.
#[derive(Clone)]
pub struct CloudWatch {
    client: Client,
}

impl CloudWatch {
    /// An adapter over this client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl MetricsSink for CloudWatch {
    async fn publish(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), CallError> {
        for chunk in data.chunks(MAX_DATA_PER_CALL) {
            let data = chunk
                .iter()
                .map(|d| {
                    CwDatum::builder()
                        .metric_name(d.metric.name())
                        .unit(StandardUnit::Count)
                        .value(d.value)
                        .set_dimensions({
                            // The fleet total has none: no Dimensions element at all.
                            let dims: Vec<Dimension> = d
                                .dimensions()
                                .into_iter()
                                .map(|(name, value)| {
                                    Dimension::builder().name(name).value(value).build()
                                })
                                .collect();
                            (!dims.is_empty()).then_some(dims)
                        })
                        .build()
                })
                .collect();
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(data))
                .send()
                .await
                .map_err(|e| call_error(Api::PutMetricData, namespace, e))?;
        }
        Ok(())
    }
}
