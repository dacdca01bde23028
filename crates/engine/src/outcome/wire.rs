//! An outcome and its wire format (the response's, the log line's, the CLI's JSON).

use super::*;

/// The result for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The key.
    pub key_arn: KeyArn,
    /// Its Region.
    pub region: Region,
    /// What was done, and why.
    pub status: Status,
    /// Statement-level diff of live vs baseline, when there was drift.
    pub diff: Option<String>,
    /// The drift as access gained and lost, with its severity, when there was drift (and
    /// the live policy parsed).
    pub exposure: Option<Exposure>,
    /// Who made the change the event records (event-driven outcomes with a drift only).
    pub actor: Option<Actor>,
    /// The baseline the key was compared with: its catalogue name, `primary`, or the
    /// single baseline's origin (`None` when the key was left before one was chosen).
    pub baseline: Option<String>,
    /// What mirroring rewrote for this replica's Region (primary mode).
    pub rewrites: Vec<Rewrite>,
    /// `BASELINE_MATCH=contains`: the live policy's statements beyond the baseline, kept or
    /// removed, with why.
    pub extras: Option<Extras>,
    /// The key's exemption (the exclude tag's `until=`) ended then (RFC 3339), so it was
    /// reconciled again.
    pub exemption_ended: Option<String>,
    /// The key carries the exclude tag but the exemption is not honoured (its end cannot be
    /// read, or it lasts longer than `EXEMPTION_MAX_DAYS`): why, so it was reconciled.
    pub exemption_ignored: Option<String>,
    /// The hex SHA-256 of the baseline template the key was compared with (not for a
    /// mirrored primary).
    pub baseline_sha256: Option<String>,
    /// What the policy written (or, in dry-run, to be written) grants that the live policy
    /// did not: the write judged the other way round from `exposure`.
    pub write_exposure: Option<Exposure>,
}

/// The live policy's statements beyond the baseline (`BASELINE_MATCH=contains`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extras {
    /// Kept: they grant nothing public, cross-account or administrative, and take nothing
    /// away from the baseline.
    pub kept: Vec<Extra>,
    /// Removed by the rewrite (or, in dry-run, that would be), with why.
    pub removed: Vec<Extra>,
}

impl Outcome {
    /// The outcome of `status` for `key`, without a diff.
    pub fn new(key: &KeyArn, status: Status) -> Self {
        Self {
            key_arn: key.clone(),
            region: key.region().clone(),
            status,
            diff: None,
            exposure: None,
            actor: None,
            baseline: None,
            rewrites: Vec::new(),
            extras: None,
            exemption_ended: None,
            exemption_ignored: None,
            baseline_sha256: None,
            write_exposure: None,
        }
    }

    /// In sync, nothing more to say.
    pub fn in_sync(key: &KeyArn) -> Self {
        Self::new(key, Status::InSync(None))
    }

    /// Left alone.
    pub fn skipped(key: &KeyArn, why: Skip) -> Self {
        Self::new(key, Status::Skipped(why))
    }

    /// Not brought to the baseline; the failure carries its retry class.
    pub fn failed(key: &KeyArn, failure: Failure) -> Self {
        Self::new(key, Status::Failed(failure))
    }

    /// A failed AWS call.
    pub fn call_failed(key: &KeyArn, e: &CallError) -> Self {
        Self::failed(key, Failure::Call(e.clone()))
    }

    /// The wire's action.
    pub fn action(&self) -> Action {
        self.status.action()
    }

    /// The reason in words (`None` for a plain in-sync key).
    pub fn reason(&self) -> Option<String> {
        match &self.status {
            Status::InSync(None) => None,
            status => Some(Reason(status).to_string()),
        }
    }

    /// For failures: whether a retry can help.
    pub fn retry(&self) -> Option<Retry> {
        match &self.status {
            Status::Failed(failure) => Some(failure.retry()),
            _ => None,
        }
    }

    /// Whether the flap guard left this key alone.
    pub fn is_flap_suppressed(&self) -> bool {
        matches!(self.status, Status::Skipped(Skip::Flapping { .. }))
    }

    /// Attaches a drift diff.
    pub fn with_diff(mut self, diff: String) -> Self {
        self.diff = Some(diff);
        self
    }

    /// The drift's diff and, when known, its explanation.
    /// The grants the guardrails refused, when they refused this key's write.
    pub fn guardrail_breaches(&self) -> Option<&[Breach]> {
        match &self.status {
            Status::Failed(Failure::GuardrailRefused { breaches, .. }) => Some(breaches),
            _ => None,
        }
    }

    /// Whether this outcome's exposure counts in `ExposureDrift` and is published: every
    /// drift looked at, and a key an exemption leaves in place when its exposure is public or
    /// cross-account (the exemption stops the write, never the alarm); not keys left alone
    /// for other reasons.
    pub fn exposure_alarms(&self) -> bool {
        let Some(exposure) = &self.exposure else {
            return false;
        };
        match &self.status {
            Status::Skipped(Skip::Flapping { .. }) => true,
            Status::Skipped(Skip::Excluded { .. }) => exposure.severity >= Severity::CrossAccount,
            Status::Skipped(_) => false,
            _ => true,
        }
    }

    pub fn with_drift(mut self, diff: String, exposure: Option<Exposure>) -> Self {
        self.diff = Some(diff);
        self.exposure = exposure;
        self
    }
}

/// The documented contract: `key_arn`, `account`, `region`, `action`, `reason` (text or
/// null), `diff` (text or null), `exposure` and `actor` (objects or null), and only when
/// they apply: `retry` (failures), `baseline` (the baseline compared with), `rewrites`
/// (mirroring), `extras` (`contains` mode), `exemption_ended`.
impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let retry = self.retry();
        let optional = usize::from(retry.is_some())
            + usize::from(self.baseline.is_some())
            + usize::from(!self.rewrites.is_empty())
            + usize::from(self.extras.is_some())
            + usize::from(self.exemption_ended.is_some())
            + usize::from(self.exemption_ignored.is_some())
            + usize::from(self.baseline_sha256.is_some())
            + usize::from(self.write_exposure.is_some())
            + usize::from(self.guardrail_breaches().is_some());
        let mut s = serializer.serialize_struct("Outcome", 8 + optional)?;
        s.serialize_field("key_arn", &self.key_arn)?;
        s.serialize_field("account", self.key_arn.account())?;
        s.serialize_field("region", &self.region)?;
        s.serialize_field("action", &self.action())?;
        s.serialize_field("reason", &self.reason())?;
        s.serialize_field("diff", &self.diff)?;
        s.serialize_field("exposure", &self.exposure)?;
        s.serialize_field("actor", &self.actor)?;
        if let Some(retry) = retry {
            s.serialize_field("retry", &retry)?;
        }
        if let Some(baseline) = &self.baseline {
            s.serialize_field("baseline", baseline)?;
        }
        if !self.rewrites.is_empty() {
            s.serialize_field("rewrites", &self.rewrites)?;
        }
        if let Some(extras) = &self.extras {
            s.serialize_field("extras", extras)?;
        }
        if let Some(ended) = &self.exemption_ended {
            s.serialize_field("exemption_ended", ended)?;
        }
        if let Some(ignored) = &self.exemption_ignored {
            s.serialize_field("exemption_ignored", ignored)?;
        }
        if let Some(digest) = &self.baseline_sha256 {
            s.serialize_field("baseline_sha256", digest)?;
        }
        if let Some(write) = &self.write_exposure {
            s.serialize_field("write_exposure", write)?;
        }
        if let Some(breaches) = self.guardrail_breaches() {
            s.serialize_field("guardrail", breaches)?;
        }
        s.end()
    }
}

/// A failure that concerns no single key (e.g. a Region that could not be listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError(pub CallError);

impl RunError {
    /// Can a retry help.
    pub fn retry(&self) -> Retry {
        Retry::of(&self.0)
    }
}

impl Serialize for RunError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RunError", 2)?;
        s.serialize_field("message", &self.0.to_string())?;
        s.serialize_field("retry", &self.retry())?;
        s.end()
    }
}
