//! Reads baselines kept outside the function: SSM parameters and S3 objects.

use aws_sdk_s3::Client as S3;
use aws_sdk_ssm::Client as Ssm;

use super::call_error;
use crate::config::RemoteText;
use crate::reconcile::ports::{CallError, ErrorKind};

/// SSM and S3 clients of the function's home Region.
#[derive(Clone)]
pub struct Remote {
    ssm: Ssm,
    s3: S3,
}

impl Remote {
    /// Readers over these clients.
    pub fn new(ssm: Ssm, s3: S3) -> Self {
        Self { ssm, s3 }
    }
}

impl RemoteText for Remote {
    async fn ssm_parameter(&self, name: &str) -> Result<String, CallError> {
        let out = self
            .ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| call_error("GetParameter", name, e))?;
        out.parameter.and_then(|p| p.value).ok_or_else(|| {
            CallError::new(
                "GetParameter",
                name,
                ErrorKind::NotFound,
                "the parameter has no value",
            )
        })
    }

    async fn s3_object(&self, bucket: &str, key: &str) -> Result<String, CallError> {
        let location = format!("s3://{bucket}/{key}");
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| call_error("GetObject", &location, e))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| {
                CallError::new("GetObject", &location, ErrorKind::Transient, e.to_string())
            })?
            .into_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            CallError::new(
                "GetObject",
                &location,
                ErrorKind::Invalid,
                "the object is not UTF-8 text",
            )
        })
    }
}
