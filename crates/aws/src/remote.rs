//! What the configuration reads at start-up: baselines kept outside the function (SSM
//! parameters, S3 objects) and, for member accounts, the function's own account (STS).

use aws_config::SdkConfig;
use aws_sdk_s3::Client as S3;
use aws_sdk_ssm::Client as Ssm;

use super::{call_error, get_object};
use krg_engine::error::{Api, CallError, ErrorKind};
use krg_engine::key::AccountId;
use krg_engine::ports::RemoteText;

/// Reads through SSM and S3 in the home Region. The clients are made when a read needs
/// them (a baseline is read once per cold start), so a function whose baseline is not in
/// SSM or S3 never builds them.
#[derive(Clone)]
pub struct Remote {
    sdk: SdkConfig,
}

impl Remote {
    /// Readers over this SDK configuration.
    pub fn new(sdk: &SdkConfig) -> Self {
        Self { sdk: sdk.clone() }
    }
}

impl RemoteText for Remote {
    async fn caller_account(&self) -> Result<AccountId, CallError> {
        let out = aws_sdk_sts::Client::new(&self.sdk)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| call_error(Api::GetCallerIdentity, "the function's credentials", e))?;
        out.account().and_then(|a| a.parse().ok()).ok_or_else(|| {
            CallError::new(
                Api::GetCallerIdentity,
                "the function's credentials",
                ErrorKind::Other,
                "response has no usable Account",
            )
        })
    }

    async fn ssm_parameter(&self, name: &str) -> Result<String, CallError> {
        let out = Ssm::new(&self.sdk)
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| call_error(Api::GetParameter, name, e))?;
        out.parameter.and_then(|p| p.value).ok_or_else(|| {
            CallError::new(
                Api::GetParameter,
                name,
                ErrorKind::NotFound,
                "the parameter has no value",
            )
        })
    }

    async fn ssm_parameters(&self, path: &str) -> Result<Vec<(String, String)>, CallError> {
        parameters_by_path(&Ssm::new(&self.sdk), path).await
    }

    async fn s3_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, CallError> {
        let s3 = S3::new(&self.sdk);
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    call_error(Api::ListObjectsV2, format!("s3://{bucket}/{prefix}"), e)
                })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter(|k| k.ends_with(".json"))
                    .map(str::to_owned),
            );
            match (page.is_truncated, page.next_continuation_token) {
                (Some(true), Some(t)) => token = Some(t),
                _ => break,
            }
        }
        let mut all = Vec::with_capacity(keys.len());
        for key in keys {
            let text = self.s3_object(bucket, &key).await?;
            all.push((key, text));
        }
        Ok(all)
    }

    async fn s3_object(&self, bucket: &str, key: &str) -> Result<String, CallError> {
        let bytes = get_object(&S3::new(&self.sdk), bucket, key).await?.bytes;
        String::from_utf8(bytes).map_err(|_| {
            CallError::new(
                Api::GetObject,
                format!("s3://{bucket}/{key}"),
                ErrorKind::Invalid,
                "the object is not UTF-8 text",
            )
        })
    }
}

/// Every parameter directly under `path` (`/a/b/`), every page. IAM authorises
/// GetParametersByPath against the path as requested (`parameter/a/b`), which is what the
/// stacks grant: the request names the path without its trailing slash, and SSM answers
/// with the same parameters (`/a/b/NAME`).
async fn parameters_by_path(ssm: &Ssm, path: &str) -> Result<Vec<(String, String)>, CallError> {
    let requested = match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = ssm
            .get_parameters_by_path()
            .path(requested)
            .recursive(false)
            .with_decryption(true)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| call_error(Api::GetParametersByPath, requested, e))?;
        all.extend(
            page.parameters()
                .iter()
                .filter_map(|p| Some((p.name()?.to_owned(), p.value()?.to_owned()))),
        );
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ssm::operation::get_parameters_by_path::GetParametersByPathOutput;
    use aws_sdk_ssm::types::Parameter;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[tokio::test]
    async fn a_catalogue_path_is_requested_as_the_stacks_grant_it_without_the_trailing_slash() {
        let parameter = |name: &str| Parameter::builder().name(name).value("{}").build();
        let first = mock!(aws_sdk_ssm::Client::get_parameters_by_path)
            .match_requests(|r| {
                r.path() == Some("/kms-replica-guard/baselines") && r.next_token().is_none()
            })
            .then_output(move || {
                GetParametersByPathOutput::builder()
                    .parameters(parameter("/kms-replica-guard/baselines/app"))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(aws_sdk_ssm::Client::get_parameters_by_path)
            .match_requests(|r| {
                r.path() == Some("/kms-replica-guard/baselines")
                    && r.next_token() == Some("page-2")
                    && r.recursive() == Some(false)
            })
            .then_output(move || {
                GetParametersByPathOutput::builder()
                    .parameters(parameter("/kms-replica-guard/baselines/logs"))
                    .build()
            });
        let ssm = mock_client!(aws_sdk_ssm, RuleMode::Sequential, [&first, &second]);
        let all = parameters_by_path(&ssm, "/kms-replica-guard/baselines/")
            .await
            .unwrap();
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "/kms-replica-guard/baselines/app",
                "/kms-replica-guard/baselines/logs"
            ]
        );
        assert_eq!(first.num_calls(), 1);
        assert_eq!(second.num_calls(), 1);
    }
}
