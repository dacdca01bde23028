//! Where security teams look: outcomes as AWS Security Hub findings (ASFF) and as AWS Config
//! evaluations. Pure values; the adapters of `krg-aws` send them.
//!
//! - A finding per replica key, with a deterministic id (re-imports update it, never add a
//!   second): FAILED while the key is drifted (dry-run, flapping, excluded, a refused or
//!   failed fix, with the reason), PASSED and ARCHIVED once it is healed or found in sync.
//!   Resolving is the finding provider's own fields through BatchImportFindings: `Workflow`
//!   belongs to the customer (BatchImportFindings cannot change it after creation, and
//!   BatchUpdateFindings is the customers' API); Security Hub sets the workflow back to NEW
//!   by itself when an archived finding becomes ACTIVE again or PASSED turns FAILED.
//! - Severity from the access explanation ([`Severity`]): public → CRITICAL, cross-account
//!   and admin → HIGH, access → MEDIUM, narrowing → LOW, cosmetic → INFORMATIONAL; a live
//!   policy that could not be explained (it did not parse) → HIGH.
//! - A Config evaluation per key a rule asks about: COMPLIANT, NON_COMPLIANT with an
//!   annotation of at most 256 characters, or NOT_APPLICABLE for a key the guard does not
//!   manage (a primary, a single-Region key, a key pending deletion).

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::key::KeyArn;
use crate::outcome::{Outcome, Report, Severity, Skip, Status};

/// The finding's `GeneratorId`: the rule that produced it.
pub const GENERATOR_ID: &str = "kms-replica-guard/replica-key-policy-baseline";

/// The finding's `Types` (ASFF namespace/category/classifier).
pub const FINDING_TYPE: &str =
    "Software and Configuration Checks/AWS Security Best Practices/KMS replica key policy drift";

/// Added to `Types` when the drift exposes the key's data beyond the trusted accounts.
pub const EXPOSURE_TYPE: &str = "Effects/Data Exposure/KMS replica key policy";

/// Where the finding's remediation text points.
pub const RUNBOOK: &str = "docs/src/security-hub-and-config.md";

/// Security Hub's limits on the fields the guard fills.
const MAX_TITLE: usize = 256;
const MAX_DESCRIPTION: usize = 1024;
const MAX_REMEDIATION: usize = 512;
const MAX_FIELD_VALUE: usize = 2048;
/// AWS Config's limit on an evaluation's annotation.
pub const MAX_ANNOTATION: usize = 256;

/// ASFF `Severity.Label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Label {
    /// Nothing to act on (a passed finding, a cosmetic drift).
    Informational,
    /// Access only taken away.
    Low,
    /// Someone gained ordinary access.
    Medium,
    /// Key administration, or access outside the trusted accounts.
    High,
    /// Everyone gained access.
    Critical,
}

impl Label {
    /// The drift severity's label.
    pub fn of(severity: Severity) -> Self {
        match severity {
            Severity::Public => Label::Critical,
            Severity::CrossAccount | Severity::Admin => Label::High,
            Severity::Access => Label::Medium,
            Severity::Narrowing => Label::Low,
            Severity::Cosmetic => Label::Informational,
        }
    }

    /// The ASFF name.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Informational => "INFORMATIONAL",
            Label::Low => "LOW",
            Label::Medium => "MEDIUM",
            Label::High => "HIGH",
            Label::Critical => "CRITICAL",
        }
    }
}

/// ASFF `Compliance.Status` of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compliance {
    /// The key's policy is not the baseline.
    Failed,
    /// The key's policy is the baseline (healed or found in sync).
    Passed,
}

impl Compliance {
    /// The ASFF name.
    pub fn as_str(self) -> &'static str {
        match self {
            Compliance::Failed => "FAILED",
            Compliance::Passed => "PASSED",
        }
    }

    /// The `RecordState` that goes with it: a passed finding is archived.
    pub fn record_state(self) -> &'static str {
        match self {
            Compliance::Failed => "ACTIVE",
            Compliance::Passed => "ARCHIVED",
        }
    }
}

/// One finding about one replica key, in the key's own account and Region.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Deterministic: the same key always has the same id.
    pub id: String,
    /// The key (`Resources[0].Id`); its account is the finding's `AwsAccountId`.
    pub key_arn: KeyArn,
    /// FAILED or PASSED.
    pub compliance: Compliance,
    /// The severity label.
    pub label: Label,
    /// What a person reads first.
    pub title: String,
    /// What happened, in a few sentences.
    pub description: String,
    /// `Types`.
    pub types: Vec<String>,
    /// `Remediation.Recommendation.Text`.
    pub remediation: String,
    /// `ProductFields`: baseline, digest, action, actor, reason, diff (each bounded).
    pub fields: BTreeMap<String, String>,
    /// `UpdatedAt` (and `CreatedAt`, which Security Hub keeps from the first import).
    pub observed_at: SystemTime,
}

impl Finding {
    /// `ProductArn`: the account's default product, which any account may import into.
    pub fn product_arn(&self) -> String {
        let k = &self.key_arn;
        format!(
            "arn:{}:securityhub:{}:{}:product/{}/default",
            k.partition(),
            k.region(),
            k.account(),
            k.account()
        )
    }
}

/// The deterministic id of a key's finding.
pub fn finding_id(key: &KeyArn) -> String {
    format!(
        "kms-replica-guard/{}/{}/{}/{}",
        key.partition(),
        key.account(),
        key.region(),
        key.key_id()
    )
}

/// `text` cut to at most `max` characters (`…` marks the cut).
pub fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The one-line summary of a drift: the first gain (`* gains kms:Decrypt`), else the first
/// loss, with how many more there are.
fn summary(outcome: &Outcome) -> String {
    let Some(exposure) = &outcome.exposure else {
        return "policy differs from the baseline (not explained: the live policy did not parse)"
            .to_owned();
    };
    let (first, gains) = match (exposure.gains.first(), exposure.losses.first()) {
        (Some(g), _) => (g, true),
        (None, Some(l)) => (l, false),
        (None, None) => return "policy differs from the baseline in form only".to_owned(),
    };
    let verb = if gains { "gains" } else { "loses" };
    let more = exposure.gains.len() + exposure.losses.len() - 1;
    let mut line = format!("{} {verb} {}", first.principal, first.actions.join(", "));
    if let Some(when) = &first.when {
        line.push_str(&format!(" when {when}"));
    }
    if more > 0 {
        line.push_str(&format!(" (and {more} more)"));
    }
    line
}

/// Whether an outcome says the key is drifted now (FAILED), in sync now (PASSED), or
/// nothing about it (no finding).
fn compliance(outcome: &Outcome) -> Option<Compliance> {
    match &outcome.status {
        Status::Remediated(_) | Status::InSync(_) => Some(Compliance::Passed),
        Status::DriftDetected(_) => Some(Compliance::Failed),
        // A refused or failed fix, a flapping or exempt key: still drifted, when a drift was
        // seen. A failure before the policy was read says nothing about it.
        Status::Failed(_) | Status::Skipped(Skip::Flapping { .. } | Skip::Excluded { .. }) => {
            outcome.diff.as_ref().map(|_| Compliance::Failed)
        }
        Status::Skipped(_) => None,
    }
}

fn short_key(key: &KeyArn) -> String {
    format!("{} replica of {}", key.region(), key.key_id())
}

fn finding(outcome: &Outcome, observed_at: SystemTime) -> Option<Finding> {
    let compliance = compliance(outcome)?;
    let key = &outcome.key_arn;
    let baseline = outcome.baseline.as_deref().unwrap_or("the baseline");
    let mut fields = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        fields.insert(
            format!("kms-replica-guard/{k}"),
            bounded(v, MAX_FIELD_VALUE),
        );
    };
    put("action", outcome.action().as_str());
    put("baseline", baseline);
    if let Some(digest) = &outcome.baseline_sha256 {
        put("baseline_sha256", digest);
    }
    if let Some(reason) = outcome.reason() {
        put("reason", &reason);
    }
    if let Some(diff) = &outcome.diff {
        put("diff", diff);
    }
    if let Some(actor) = &outcome.actor {
        let who = actor
            .arn
            .as_deref()
            .or(actor.role.as_deref())
            .unwrap_or("-");
        put("actor", who);
        if let Some(at) = &actor.event_time {
            put("actor_event_time", at);
        }
        if let Some(id) = &actor.event_id {
            put("actor_event_id", id);
        }
    }
    let (label, title, description) = match compliance {
        Compliance::Passed => {
            let how = match &outcome.status {
                Status::Remediated(_) => "rewritten to the baseline and verified",
                _ => "found equivalent to the baseline",
            };
            (
                Label::Informational,
                format!("{}: in sync with {baseline}", short_key(key)),
                format!(
                    "The key policy of {key} was {how}; the drift this finding reported is resolved."
                ),
            )
        }
        Compliance::Failed => {
            let label = outcome
                .exposure
                .as_ref()
                .map_or(Label::High, |e| Label::of(e.severity));
            let severity = outcome
                .exposure
                .as_ref()
                .map_or("unexplained", |e| e.severity.as_str());
            let who = outcome
                .actor
                .as_ref()
                .and_then(|a| a.arn.as_deref().or(a.role.as_deref()))
                .map(|a| format!(" Changed by {a}."))
                .unwrap_or_default();
            let reason = outcome.reason().unwrap_or_default();
            (
                label,
                format!("{}: {}", short_key(key), summary(outcome)),
                format!(
                    "The key policy of {key} differs from {baseline} ({severity}).{who} {reason}"
                ),
            )
        }
    };
    let mut types = vec![FINDING_TYPE.to_owned()];
    if compliance == Compliance::Failed
        && outcome
            .exposure
            .as_ref()
            .is_some_and(|e| e.severity >= Severity::CrossAccount)
    {
        types.push(EXPOSURE_TYPE.to_owned());
    }
    Some(Finding {
        id: finding_id(key),
        key_arn: key.clone(),
        compliance,
        label,
        title: bounded(&title, MAX_TITLE),
        description: bounded(description.trim(), MAX_DESCRIPTION),
        types,
        remediation: bounded(
            &format!(
                "Put the key policy back to {baseline}: with REMEDIATION_MODE=enforce the guard does it and this finding turns PASSED; if the guard refused or failed, the reason says why. Runbook: kms-replica-guard {RUNBOOK}."
            ),
            MAX_REMEDIATION,
        ),
        fields,
        observed_at,
    })
}

impl Report {
    /// One finding per replica the report says something about: FAILED while drifted,
    /// PASSED when healed or in sync (a sweep's in-sync replicas included). Keys left alone
    /// for other reasons, and failures before the policy was read, make none.
    pub fn findings(&self, observed_at: SystemTime) -> Vec<Finding> {
        self.outcomes
            .iter()
            .chain(&self.in_sync)
            .filter_map(|o| finding(o, observed_at))
            .collect()
    }
}

/// AWS Config's answer for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigCompliance {
    /// The replica's policy is the baseline.
    Compliant,
    /// The replica's policy is not the baseline.
    NonCompliant,
    /// Not a key the guard manages.
    NotApplicable,
}

impl ConfigCompliance {
    /// The Config API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigCompliance::Compliant => "COMPLIANT",
            ConfigCompliance::NonCompliant => "NON_COMPLIANT",
            ConfigCompliance::NotApplicable => "NOT_APPLICABLE",
        }
    }
}

/// One evaluation for PutEvaluations (`ComplianceResourceType` `AWS::KMS::Key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// `ComplianceResourceId`: the key id, as Config names KMS keys.
    pub resource_id: String,
    /// The answer.
    pub compliance: ConfigCompliance,
    /// Why, at most [`MAX_ANNOTATION`] characters.
    pub annotation: Option<String>,
}

impl Evaluation {
    /// A key the guard does not manage, with why.
    pub fn not_applicable(resource_id: &str, why: &str) -> Self {
        Self {
            resource_id: resource_id.to_owned(),
            compliance: ConfigCompliance::NotApplicable,
            annotation: Some(bounded(why, MAX_ANNOTATION)),
        }
    }

    /// The evaluation of a detect-only outcome for its key; `None` when the outcome says
    /// nothing about the policy (a call failed before it was read).
    pub fn of(outcome: &Outcome) -> Option<Self> {
        let resource_id = outcome.key_arn.key_id().to_owned();
        if let Status::Skipped(skip) = &outcome.status
            && !matches!(skip, Skip::Flapping { .. } | Skip::Excluded { .. })
        {
            return Some(Self::not_applicable(&resource_id, &skip.to_string()));
        }
        let (compliance, annotation) = match compliance(outcome)? {
            Compliance::Passed => (ConfigCompliance::Compliant, None),
            Compliance::Failed => {
                let severity = outcome
                    .exposure
                    .as_ref()
                    .map_or("unexplained", |e| e.severity.as_str());
                (
                    ConfigCompliance::NonCompliant,
                    Some(bounded(
                        &format!("{severity}: {}", summary(outcome)),
                        MAX_ANNOTATION,
                    )),
                )
            }
        };
        Some(Self {
            resource_id,
            compliance,
            annotation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Api, CallError, ErrorKind};
    use crate::fake::arn;
    use crate::outcome::{Access, Breach, DriftNote, Exposure, Failure, Remediation, WriteCause};
    use std::time::Duration;

    fn exposure(severity: Severity, principal: &str, actions: &[&str]) -> Exposure {
        Exposure {
            severity,
            gains: vec![Access {
                principal: principal.to_owned(),
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
                when: None,
            }],
            losses: Vec::new(),
        }
    }

    fn drifted(severity: Severity) -> Outcome {
        let mut o = Outcome::new(&arn("eu-west-1"), Status::DriftDetected(DriftNote::DryRun))
            .with_drift(
                "- statement\n+ statement".into(),
                Some(exposure(severity, "*", &["kms:Decrypt"])),
            );
        o.baseline = Some("standard".into());
        o.baseline_sha256 = Some("ab".repeat(32));
        o
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000)
    }

    fn one(o: Outcome) -> Option<Finding> {
        Report {
            outcomes: vec![o],
            ..Report::default()
        }
        .findings(at())
        .pop()
    }

    #[test]
    fn a_public_drift_is_one_critical_failed_finding_that_reads_at_a_glance() {
        let f = one(drifted(Severity::Public)).expect("a finding");
        assert_eq!(f.compliance, Compliance::Failed);
        assert_eq!(f.compliance.record_state(), "ACTIVE");
        assert_eq!(f.label, Label::Critical);
        assert_eq!(
            f.title,
            "eu-west-1 replica of mrk-1234abcd12ab34cd56ef1234567890ab: * gains kms:Decrypt"
        );
        assert!(
            f.description.contains("differs from standard (public)"),
            "{}",
            f.description
        );
        assert_eq!(f.fields["kms-replica-guard/baseline"], "standard");
        assert_eq!(
            f.fields["kms-replica-guard/baseline_sha256"],
            "ab".repeat(32)
        );
        assert_eq!(f.fields["kms-replica-guard/action"], "drift-detected");
        assert!(f.fields["kms-replica-guard/diff"].contains("+ statement"));
        assert_eq!(f.types, [FINDING_TYPE, EXPOSURE_TYPE]);
        assert_eq!(
            f.product_arn(),
            "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default"
        );
        assert!(f.remediation.contains(RUNBOOK));
    }

    #[test]
    fn the_id_depends_on_the_key_only_so_a_re_import_updates_the_same_finding() {
        let first = one(drifted(Severity::Public)).unwrap();
        let mut again = drifted(Severity::Access);
        again.baseline = Some("another".into());
        let second = one(again).unwrap();
        assert_eq!(first.id, second.id);
        assert_eq!(
            first.id,
            "kms-replica-guard/aws/111122223333/eu-west-1/mrk-1234abcd12ab34cd56ef1234567890ab"
        );
        assert_ne!(first.id, finding_id(&arn("us-west-2")));
    }

    #[test]
    fn each_access_severity_has_its_label() {
        let labels: Vec<&str> = Severity::ALL
            .iter()
            .map(|s| Label::of(*s).as_str())
            .collect();
        assert_eq!(
            labels,
            ["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "HIGH", "CRITICAL"]
        );
        let mut unexplained = drifted(Severity::Public);
        unexplained.exposure = None;
        let f = one(unexplained).unwrap();
        assert_eq!(f.label, Label::High, "an unparsed live policy is not low");
        assert!(f.title.contains("not explained"), "{}", f.title);
    }

    #[test]
    fn a_healed_or_in_sync_key_passes_and_is_archived() {
        let healed = Outcome::new(
            &arn("eu-west-1"),
            Status::Remediated(Remediation {
                cause: WriteCause::Drift {
                    baseline: "b".into(),
                },
                backup: "s3://b/k".into(),
            }),
        );
        let f = one(healed).unwrap();
        assert_eq!(f.compliance, Compliance::Passed);
        assert_eq!(f.compliance.record_state(), "ARCHIVED");
        assert_eq!(f.label, Label::Informational);
        assert!(
            f.description.contains("rewritten to the baseline"),
            "{}",
            f.description
        );
        let swept = Report {
            in_sync: vec![Outcome::in_sync(&arn("us-west-2"))],
            ..Report::default()
        };
        let found = swept.findings(at());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].compliance, Compliance::Passed);
    }

    #[test]
    fn a_refused_or_failed_fix_stays_failed_with_its_reason_and_a_failed_read_makes_none() {
        let mut refused = drifted(Severity::Public);
        refused.status = Status::Failed(Failure::GuardrailRefused {
            source: "the baseline".into(),
            breaches: Vec::<Breach>::new(),
        });
        let f = one(refused).unwrap();
        assert_eq!(f.compliance, Compliance::Failed);
        assert!(
            f.fields["kms-replica-guard/reason"].contains("refused by the guardrails"),
            "{:?}",
            f.fields
        );
        let unread = Outcome::call_failed(
            &arn("eu-west-1"),
            &CallError::new(Api::GetKeyPolicy, "k", ErrorKind::Throttled, "slow down"),
        );
        assert_eq!(one(unread), None);
        assert_eq!(
            one(Outcome::skipped(&arn("eu-west-1"), Skip::PendingDeletion)),
            None
        );
    }

    #[test]
    fn hostile_principals_cannot_push_fields_past_security_hubs_limits() {
        let long = "arn:aws:iam::444455556666:role/".to_owned() + &"x".repeat(5000);
        let mut o = drifted(Severity::CrossAccount);
        o.exposure = Some(exposure(Severity::CrossAccount, &long, &["kms:*"]));
        o.diff = Some("d".repeat(100_000));
        let f = one(o).unwrap();
        assert!(f.title.chars().count() <= MAX_TITLE);
        assert!(f.description.chars().count() <= MAX_DESCRIPTION);
        assert!(
            f.fields
                .values()
                .all(|v| v.chars().count() <= MAX_FIELD_VALUE)
        );
        let e = Evaluation::of(&drifted(Severity::CrossAccount)).unwrap();
        assert!(e.annotation.unwrap().chars().count() <= MAX_ANNOTATION);
    }

    #[test]
    fn config_hears_non_compliant_with_severity_compliant_or_not_applicable() {
        let e = Evaluation::of(&drifted(Severity::Public)).unwrap();
        assert_eq!(e.compliance, ConfigCompliance::NonCompliant);
        assert_eq!(e.annotation.as_deref(), Some("public: * gains kms:Decrypt"));
        assert_eq!(e.resource_id, "mrk-1234abcd12ab34cd56ef1234567890ab");
        let ok = Evaluation::of(&Outcome::in_sync(&arn("us-west-2"))).unwrap();
        assert_eq!(
            (ok.compliance, ok.annotation),
            (ConfigCompliance::Compliant, None)
        );
        let primary =
            Evaluation::of(&Outcome::skipped(&arn("us-east-1"), Skip::NowPrimary)).unwrap();
        assert_eq!(primary.compliance, ConfigCompliance::NotApplicable);
    }
}
