//! AWS adapters: the only code that calls AWS (KMS, CloudWatch, EventBridge, S3, SSM, STS,
//! Organizations, SQS, Security Hub, Config; CloudTrail and Lambda for `doctor`'s reads of a
//! deployment). Each implements a port from [`krg_engine::ports`] and maps SDK
//! errors onto [`CallError`]s.

pub mod backups;
pub mod clients;
pub mod cloudwatch;
pub mod configservice;
pub mod deployment;
pub mod events;
pub mod kms;
pub mod members;
pub mod queue;
pub mod remote;
pub mod securityhub;

use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

use krg_engine::error::{Api, CallError, ErrorKind};

/// `s3://BUCKET/KEY` split into bucket and key, both non-empty.
pub fn split_s3_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("s3://")?
        .split_once('/')
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
}

/// An S3 object as read: its whole body, with S3's own date and ETag.
pub(crate) struct S3Object {
    /// The body.
    pub bytes: Vec<u8>,
    /// When S3 stored it (`LastModified`).
    pub last_modified: Option<aws_sdk_s3::primitives::DateTime>,
    /// Its ETag.
    pub etag: Option<String>,
}

/// The whole body of an S3 object (GetObject), with errors naming `s3://bucket/key`.
pub(crate) async fn get_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<S3Object, CallError> {
    let location = format!("s3://{bucket}/{key}");
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| call_error(Api::GetObject, &location, e))?;
    let last_modified = out.last_modified;
    let etag = out.e_tag;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| {
            CallError::new(
                Api::GetObject,
                &location,
                ErrorKind::Transient,
                e.to_string(),
            )
        })?
        .to_vec();
    Ok(S3Object {
        bytes,
        last_modified,
        etag,
    })
}

/// Maps any SDK error onto a [`CallError`] with a kind that decides retries.
pub(crate) fn call_error<E>(
    operation: Api,
    target: impl Into<krg_engine::error::Target>,
    err: SdkError<E, HttpResponse>,
) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, message) = match &err {
        SdkError::TimeoutError(_) => (ErrorKind::Transient, "timed out".to_owned()),
        SdkError::DispatchFailure(d) => (
            ErrorKind::Transient,
            format!("could not reach the endpoint: {d:?}"),
        ),
        SdkError::ServiceError(s) => {
            let e = s.err();
            let status = s.raw().status().as_u16();
            let code = e.code().unwrap_or("Unknown");
            let kind = match code {
                _ if status == 429 => ErrorKind::Throttled,
                // S3's answer to a conditional write that lost (If-None-Match), or that
                // raced another conditional write of the same object.
                _ if status == 412 || code == "ConditionalRequestConflict" => ErrorKind::Conflict,
                _ if status >= 500 => ErrorKind::Transient,
                _ if status == 404 => ErrorKind::NotFound,
                _ if status == 403 => ErrorKind::AccessDenied,
                "NotFoundException" | "ResourceNotFoundException" | "ResourceNotFound" => {
                    ErrorKind::NotFound
                }
                "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded" => ErrorKind::Throttled,
                "AccessDeniedException"
                | "AccessDenied"
                | "UnauthorizedOperation"
                | "Forbidden" => ErrorKind::AccessDenied,
                "KMSInvalidStateException" => ErrorKind::InvalidState,
                "MalformedPolicyDocumentException"
                    if e.message().is_some_and(|m| m.contains("invalid principal")) =>
                {
                    ErrorKind::InvalidPrincipals
                }
                "MalformedPolicyDocumentException"
                    if e.message().is_some_and(|m| {
                        m.contains("will not allow you to update the key policy")
                    }) =>
                {
                    ErrorKind::LockoutRefused
                }
                "MalformedPolicyDocumentException"
                | "InvalidParameterValue"
                | "InvalidArnException"
                | "ValidationException" => ErrorKind::Invalid,
                "KMSInternalException"
                | "DependencyTimeoutException"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "InternalServiceError" => ErrorKind::Transient,
                _ => ErrorKind::Other,
            };
            (
                kind,
                format!("{code}: {}", e.message().unwrap_or("(no message)")),
            )
        }
        SdkError::ResponseError(r) => (
            ErrorKind::Transient,
            format!("unreadable response: {:?}", r.raw()),
        ),
        other => (ErrorKind::Other, format!("{other:?}")),
    };
    CallError::new(operation, target, kind, message)
}
