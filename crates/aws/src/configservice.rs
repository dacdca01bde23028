//! AWS Config's answer to a custom rule invocation: PutEvaluations with the invocation's
//! result token, in the evaluated account (through the member role in an organisation) and
//! the rule's Region, at most 100 evaluations a call. The token `TESTMODE` (what a test
//! invocation carries) is sent with `TestMode=true`: Config checks the request and records
//! nothing.

use std::time::SystemTime;

use aws_sdk_config::Client;
use aws_sdk_config::primitives::DateTime;
use aws_sdk_config::types::{ComplianceType, Evaluation as ConfigEvaluation};

use super::call_error;
use crate::clients::AccountClients;
use krg_engine::error::{Api, CallError, ErrorKind};
use krg_engine::findings::{ConfigCompliance, Evaluation};
use krg_engine::key::{AccountId, Region};
use krg_engine::ports::{EvaluationSink, Undelivered};

/// PutEvaluations takes at most this many evaluations a call.
pub const BATCH: usize = 100;

/// The result token of a test invocation.
pub const TEST_MODE_TOKEN: &str = "TESTMODE";

/// The resource type the rule evaluates.
pub const RESOURCE_TYPE: &str = "AWS::KMS::Key";

/// AWS Config in every account and Region a rule runs in.
pub struct ConfigService {
    clients: AccountClients<Client>,
}

impl ConfigService {
    /// Evaluations go through these clients.
    pub fn new(clients: AccountClients<Client>) -> Self {
        Self { clients }
    }
}

fn compliance_type(c: ConfigCompliance) -> ComplianceType {
    match c {
        ConfigCompliance::Compliant => ComplianceType::Compliant,
        ConfigCompliance::NonCompliant => ComplianceType::NonCompliant,
        ConfigCompliance::NotApplicable => ComplianceType::NotApplicable,
    }
}

/// The Config API's evaluation.
pub fn evaluation(e: &Evaluation, ordering: SystemTime) -> Result<ConfigEvaluation, CallError> {
    ConfigEvaluation::builder()
        .compliance_resource_type(RESOURCE_TYPE)
        .compliance_resource_id(&e.resource_id)
        .compliance_type(compliance_type(e.compliance))
        .set_annotation(e.annotation.clone())
        .ordering_timestamp(DateTime::from(ordering))
        .build()
        .map_err(|err| {
            CallError::new(
                Api::PutEvaluations,
                &e.resource_id,
                ErrorKind::Invalid,
                err.to_string(),
            )
        })
}

impl EvaluationSink for ConfigService {
    async fn put_evaluations(
        &self,
        account: &AccountId,
        region: &Region,
        result_token: &str,
        evaluations: &[(Evaluation, SystemTime)],
    ) -> Result<usize, Undelivered> {
        let place = format!("AWS Config {account} {region}");
        let undelivered = |count: usize, error: CallError| Undelivered { count, error };
        let client = self
            .clients
            .get(Some(account), region)
            .await
            .map_err(|e| undelivered(evaluations.len(), e))?;
        let mut put = 0;
        for (i, batch) in evaluations.chunks(BATCH).enumerate() {
            let left = evaluations.len() - i * BATCH;
            let docs = batch
                .iter()
                .map(|(e, at)| evaluation(e, *at))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| undelivered(left, e))?;
            let out = client
                .put_evaluations()
                .set_evaluations(Some(docs))
                .result_token(result_token)
                .set_test_mode((result_token == TEST_MODE_TOKEN).then_some(true))
                .send()
                .await
                .map_err(|e| undelivered(left, call_error(Api::PutEvaluations, &place, e)))?;
            let failed = out.failed_evaluations().len();
            if failed > 0 {
                return Err(undelivered(
                    left - (batch.len() - failed),
                    CallError::new(
                        Api::PutEvaluations,
                        &place,
                        ErrorKind::Other,
                        format!(
                            "Config did not take {failed} of {} evaluations",
                            batch.len()
                        ),
                    ),
                ));
            }
            put += batch.len();
        }
        Ok(put)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_config::operation::put_evaluations::{PutEvaluationsInput, PutEvaluationsOutput};
    use aws_sdk_config::types::Evaluation as Failed;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn service(client: Client) -> ConfigService {
        let sdk = aws_config::SdkConfig::builder().build();
        ConfigService::new(AccountClients::new(&sdk, None, move |_| client.clone()))
    }

    fn evaluations(n: usize) -> Vec<(Evaluation, SystemTime)> {
        (0..n)
            .map(|i| {
                let e = Evaluation {
                    resource_id: format!("mrk-{i:032x}"),
                    compliance: ConfigCompliance::NonCompliant,
                    annotation: Some("public: * gains kms:Decrypt".into()),
                };
                (e, SystemTime::UNIX_EPOCH)
            })
            .collect()
    }

    fn place() -> (AccountId, Region) {
        (
            "111122223333".parse().unwrap(),
            "us-west-2".parse().unwrap(),
        )
    }

    #[tokio::test]
    async fn a_hundred_and_fifty_evaluations_go_in_two_calls_with_the_token() {
        let token = |r: &PutEvaluationsInput| r.result_token() == Some("a-real-token");
        let full = mock!(Client::put_evaluations)
            .match_requests(move |r| {
                token(r) && r.evaluations().len() == 100 && r.test_mode().is_none()
            })
            .then_output(|| PutEvaluationsOutput::builder().build());
        let rest = mock!(Client::put_evaluations)
            .match_requests(move |r| token(r) && r.evaluations().len() == 50)
            .then_output(|| PutEvaluationsOutput::builder().build());
        let client = mock_client!(aws_sdk_config, RuleMode::MatchAny, [&full, &rest]);
        let (account, region) = place();
        let put = service(client)
            .put_evaluations(&account, &region, "a-real-token", &evaluations(150))
            .await
            .unwrap();
        assert_eq!(put, 150);
        assert_eq!((full.num_calls(), rest.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn the_test_token_is_sent_in_test_mode_and_refused_evaluations_are_counted() {
        let test = mock!(Client::put_evaluations)
            .match_requests(|r| r.test_mode() == Some(true))
            .then_output(|| {
                PutEvaluationsOutput::builder()
                    .failed_evaluations(
                        Failed::builder()
                            .compliance_resource_type(RESOURCE_TYPE)
                            .compliance_resource_id("mrk-0")
                            .compliance_type(ComplianceType::NonCompliant)
                            .ordering_timestamp(DateTime::from_secs(0))
                            .build()
                            .unwrap(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_config, RuleMode::MatchAny, [&test]);
        let (account, region) = place();
        let e = service(client)
            .put_evaluations(&account, &region, TEST_MODE_TOKEN, &evaluations(3))
            .await
            .unwrap_err();
        assert_eq!(e.count, 1, "{e:?}");
        assert!(e.error.message.contains("did not take 1 of 3"), "{e:?}");
    }
}
