//! Security Hub findings: BatchImportFindings in each key's own account and Region (the
//! service takes a finding only from the account its `AwsAccountId` names, unless the caller
//! is an allow-listed partner), at most 100 findings a call, throttling retried by the SDK's
//! standard retry. The findings a call did not take are named in the error; the caller
//! decides what a failure means (it never blocks or undoes a fix).

use std::collections::BTreeMap;

use aws_sdk_securityhub::Client;
use aws_sdk_securityhub::types::{
    AwsKmsKeyDetails, AwsSecurityFinding, Compliance, ComplianceStatus, FindingProviderFields,
    FindingProviderSeverity, Partition, Recommendation, RecordState, Remediation, Resource,
    ResourceDetails, Severity, SeverityLabel,
};

use super::call_error;
use crate::clients::AccountClients;
use krg_engine::error::{Api, CallError, ErrorKind};
use krg_engine::findings::{Compliance as Status, Finding, GENERATOR_ID, Label};
use krg_engine::key::{AccountId, Region};
use krg_engine::outcome::rfc3339;
use krg_engine::ports::{FindingsSink, Undelivered};

/// BatchImportFindings takes at most this many findings a call.
pub const BATCH: usize = 100;

/// The ASFF schema version.
pub const SCHEMA_VERSION: &str = "2018-10-08";

/// Security Hub in every account and Region a finding belongs to.
pub struct SecurityHub {
    clients: AccountClients<Client>,
}

impl SecurityHub {
    /// Findings go through these clients.
    pub fn new(clients: AccountClients<Client>) -> Self {
        Self { clients }
    }
}

fn label(l: Label) -> SeverityLabel {
    match l {
        Label::Informational => SeverityLabel::Informational,
        Label::Low => SeverityLabel::Low,
        Label::Medium => SeverityLabel::Medium,
        Label::High => SeverityLabel::High,
        Label::Critical => SeverityLabel::Critical,
    }
}

/// The ASFF document of a finding.
pub fn asff(f: &Finding) -> AwsSecurityFinding {
    let key = &f.key_arn;
    let at = rfc3339(f.observed_at);
    let (compliance, record_state) = match f.compliance {
        Status::Failed => (ComplianceStatus::Failed, RecordState::Active),
        Status::Passed => (ComplianceStatus::Passed, RecordState::Archived),
    };
    let details = AwsKmsKeyDetails::builder()
        .aws_account_id(key.account().as_str())
        .key_id(key.key_id())
        // Multi-Region keys are customer managed keys: AWS managed keys are never
        // multi-Region.
        .key_manager("CUSTOMER")
        .build();
    let resource = Resource::builder()
        .r#type("AwsKmsKey")
        .id(key.as_str())
        .partition(Partition::from(key.partition()))
        .region(key.region().as_str())
        .details(ResourceDetails::builder().aws_kms_key(details).build())
        .build();
    AwsSecurityFinding::builder()
        .schema_version(SCHEMA_VERSION)
        .id(&f.id)
        .product_arn(f.product_arn())
        .generator_id(GENERATOR_ID)
        .aws_account_id(key.account().as_str())
        .region(key.region().as_str())
        .set_types(Some(f.types.clone()))
        .created_at(&at)
        .updated_at(&at)
        .severity(Severity::builder().label(label(f.label)).build())
        .finding_provider_fields(
            FindingProviderFields::builder()
                .severity(
                    FindingProviderSeverity::builder()
                        .label(label(f.label))
                        .build(),
                )
                .set_types(Some(f.types.clone()))
                .build(),
        )
        .title(&f.title)
        .description(&f.description)
        .remediation(
            Remediation::builder()
                .recommendation(Recommendation::builder().text(&f.remediation).build())
                .build(),
        )
        .set_product_fields(Some(f.fields.clone().into_iter().collect()))
        .resources(resource)
        .compliance(Compliance::builder().status(compliance).build())
        .record_state(record_state)
        .build()
}

impl SecurityHub {
    /// Imports one batch (same account and Region); how many were taken, and why the others
    /// were not.
    async fn batch(
        &self,
        account: &AccountId,
        region: &Region,
        findings: &[&Finding],
    ) -> Result<(usize, Vec<String>), CallError> {
        let place = format!("Security Hub {account} {region}");
        let client = self.clients.get(Some(account), region).await?;
        let docs = findings.iter().map(|f| asff(f)).collect();
        // Boxed: the operation's future is large (the ASFF shapes), too large for a small
        // stack in debug builds.
        let out = Box::pin(
            client
                .batch_import_findings()
                .set_findings(Some(docs))
                .send(),
        )
        .await
        .map_err(|e| call_error(Api::BatchImportFindings, &place, e))?;
        let failed: Vec<String> = out
            .failed_findings()
            .iter()
            .map(|f| {
                format!(
                    "{}: {} {}",
                    f.id().unwrap_or("-"),
                    f.error_code().unwrap_or("-"),
                    f.error_message().unwrap_or("")
                )
            })
            .collect();
        Ok((out.success_count().unwrap_or(0) as usize, failed))
    }
}

impl FindingsSink for SecurityHub {
    async fn import(&self, findings: &[Finding]) -> Result<usize, Undelivered> {
        let mut by_place: BTreeMap<(AccountId, Region), Vec<&Finding>> = BTreeMap::new();
        for f in findings {
            by_place
                .entry((f.key_arn.account().clone(), f.key_arn.region().clone()))
                .or_default()
                .push(f);
        }
        let mut taken = 0;
        let mut refused: Vec<String> = Vec::new();
        let mut first_error: Option<CallError> = None;
        for ((account, region), place) in &by_place {
            for batch in place.chunks(BATCH) {
                match Box::pin(self.batch(account, region, batch)).await {
                    Ok((n, failed)) => {
                        taken += n;
                        refused.extend(failed);
                    }
                    Err(e) => {
                        tracing::error!(account = %account, region = %region, error = %e, findings = batch.len(), "findings not imported");
                        refused.extend(batch.iter().map(|f| format!("{}: {e}", f.id)));
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if refused.is_empty() {
            return Ok(taken);
        }
        let mut e = first_error.unwrap_or_else(|| {
            CallError::new(
                Api::BatchImportFindings,
                "Security Hub",
                ErrorKind::Other,
                String::new(),
            )
        });
        e.message = format!(
            "{} of {} findings not imported (first: {})",
            refused.len(),
            findings.len(),
            refused[0]
        );
        Err(Undelivered {
            count: refused.len(),
            error: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_securityhub::operation::batch_import_findings::BatchImportFindingsOutput;
    use aws_sdk_securityhub::types::ImportFindingsError;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use krg_engine::outcome::{DriftNote, Outcome, Report, Status};

    fn hub(client: Client) -> SecurityHub {
        let sdk = aws_config::SdkConfig::builder().build();
        SecurityHub::new(AccountClients::new(&sdk, None, move |_| client.clone()))
    }

    /// Findings of `n` drifted keys, in two Regions.
    fn findings(n: usize) -> Vec<Finding> {
        let report = Report {
            outcomes: (0..n)
                .map(|i| {
                    let region = if i % 2 == 0 { "eu-west-1" } else { "us-west-2" };
                    let key = format!("arn:aws:kms:{region}:111122223333:key/mrk-{i:032x}")
                        .parse()
                        .unwrap();
                    Outcome::new(&key, Status::DriftDetected(DriftNote::DryRun))
                        .with_drift("d".into(), None)
                })
                .collect(),
            ..Report::default()
        };
        report.findings(std::time::SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn the_asff_document_names_the_key_in_its_own_account_and_region() {
        let f = &findings(1)[0];
        let doc = asff(f);
        assert_eq!(doc.aws_account_id(), Some("111122223333"));
        assert_eq!(doc.region(), Some("eu-west-1"));
        assert_eq!(doc.schema_version(), Some(SCHEMA_VERSION));
        assert_eq!(doc.generator_id(), Some(GENERATOR_ID));
        assert_eq!(doc.created_at(), Some("1970-01-01T00:00:00+00:00"));
        assert_eq!(doc.record_state(), Some(&RecordState::Active));
        let r = &doc.resources()[0];
        assert_eq!(
            (r.r#type(), r.id()),
            (Some("AwsKmsKey"), Some(f.key_arn.as_str()))
        );
        assert_eq!(
            r.details()
                .and_then(|d| d.aws_kms_key())
                .and_then(|k| k.key_id()),
            Some(f.key_arn.key_id())
        );
    }

    #[tokio::test]
    async fn findings_go_per_region_at_most_a_hundred_a_call_and_refusals_are_counted() {
        let batch = mock!(Client::batch_import_findings)
            .match_requests(|r| {
                let findings = r.findings();
                findings.len() <= BATCH
                    && findings.iter().all(|f| f.region() == findings[0].region())
            })
            .then_output(|| {
                BatchImportFindingsOutput::builder()
                    .success_count(99)
                    .failed_count(1)
                    .failed_findings(
                        ImportFindingsError::builder()
                            .id("x")
                            .error_code("InvalidInput")
                            .error_message("no")
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_securityhub, RuleMode::MatchAny, [&batch]);
        // 300 findings: 150 a Region, so two calls a Region.
        let e = hub(client).import(&findings(300)).await.unwrap_err();
        assert_eq!(batch.num_calls(), 4);
        assert_eq!(e.count, 4, "one refused finding a call: {e:?}");
        assert!(e.error.message.contains("4 of 300"), "{e:?}");
    }
}
