//! The hub stack's alarms, declared once. The function never reads them; the stacks do:
//! `cargo xtask docs` writes them into `infra/contract.json` (key `alarms`), the CDK app builds
//! its alarms from there (infra/cdk/lib/constructs/alarms.ts) and infra/tests/test_contract.py
//! checks the SAM template's alarms against them, both ways. The same command writes the book's
//! alarm table (`docs/src/alarms.md`, [`table`]): when each alarm fires, in words, from the
//! declaration, and what it means.
//!
//! An alarm watches one series or a metric-math expression over several, each series one of:
//! the function's own metrics ([`Metric`], in the stack's metrics namespace, so that a renamed
//! metric does not compile), a Lambda metric of the remediator function (`AWS/Lambda`, dimension
//! `FunctionName`) or an SQS metric of one of the stack's queues (`AWS/SQS`, dimension
//! `QueueName`). Every alarm notifies the alarm topic when it fires and when it is OK again, and
//! is named `<stack>-<name>` (the topic policy and the guard change rule rely on the prefix).

use kms_replica_guard::config::vars::VARS;
use krg_engine::outcome::Metric;
use krg_policy::Severity;
use serde_json::{Value, json};

/// A value the stacks take from their settings: a setting of the function (by its variable,
/// whose SAM parameter and CDK key `src/config/vars.rs` declares), or a setting of the stacks
/// only (its SAM parameter and CDK context key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    /// A setting of the function, by its environment variable.
    Setting(&'static str),
    /// A setting of the stacks only.
    Stack {
        /// The SAM parameter.
        sam: &'static str,
        /// The CDK context key.
        cdk: &'static str,
    },
}

impl Knob {
    /// (SAM parameter, CDK context key).
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            Knob::Stack { sam, cdk } => (sam, cdk),
            Knob::Setting(var) => {
                let v = VARS
                    .iter()
                    .find(|v| v.name == var)
                    .unwrap_or_else(|| panic!("{var} is not a declared setting"));
                assert!(
                    !v.stack.0.is_empty() && !v.stack.1.is_empty(),
                    "{var} is not a stack setting"
                );
                v.stack
            }
        }
    }

    pub(crate) fn json(self) -> Value {
        let (sam, cdk) = self.names();
        json!({ "sam_parameter": sam, "cdk_key": cdk })
    }
}

/// The stack's metrics namespace (METRICS_NAMESPACE).
pub const NAMESPACE: Knob = Knob::Setting("METRICS_NAMESPACE");
/// The AutoFixApplied spike threshold.
pub const AUTO_FIX_SPIKE_THRESHOLD: Knob = Knob::Stack {
    sam: "AutoFixSpikeThreshold",
    cdk: "autoFixSpikeThreshold",
};
/// The age at which Lambda gives an asynchronous event up, in seconds.
pub const MAX_EVENT_AGE_SECONDS: Knob = Knob::Stack {
    sam: "MaxEventAgeSeconds",
    cdk: "maxEventAgeSeconds",
};
/// Hours between two sweeps (the SAM template maps each allowed value to its seconds in the
/// mapping `SweepInterval`, key `Seconds`: CloudFormation has no arithmetic).
pub const SWEEP_INTERVAL_HOURS: Knob = Knob::Stack {
    sam: "SweepIntervalHours",
    cdk: "sweepIntervalHours",
};

/// One of the stack's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// The on-failure queue of the asynchronous invocations.
    DeadLetter,
    /// The sweep work queue's dead-letter queue.
    SweepDeadLetter,
}

impl Queue {
    /// Its logical id in the SAM template (the CDK app maps it to its queue).
    pub fn logical_id(self) -> &'static str {
        match self {
            Queue::DeadLetter => "DeadLetterQueue",
            Queue::SweepDeadLetter => "SweepDeadLetterQueue",
        }
    }

    /// As the book names it.
    pub fn words(self) -> &'static str {
        match self {
            Queue::DeadLetter => "DLQ",
            Queue::SweepDeadLetter => "sweep DLQ",
        }
    }
}

/// Where a series comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A metric the function publishes, in the stack's namespace.
    Guard(Metric),
    /// A Lambda metric of the remediator function (`AWS/Lambda`, `FunctionName`).
    Function(&'static str),
    /// An SQS metric of a queue of the stack (`AWS/SQS`, `QueueName`).
    Queue(Queue, &'static str),
}

/// The logical id of the remediator function in the SAM template.
pub const FUNCTION: &str = "Function";

/// A CloudWatch statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    Sum,
    Maximum,
    Minimum,
}

impl Statistic {
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Sum => "Sum",
            Statistic::Maximum => "Maximum",
            Statistic::Minimum => "Minimum",
        }
    }
}

/// One metric series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series {
    pub source: Source,
    pub statistic: Statistic,
    /// The `Severity` dimension (the function's by-severity metrics have no dimensionless total).
    pub severity: Option<Severity>,
}

/// What an alarm watches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Watch {
    /// One series.
    Metric(Series),
    /// Metric math: `expression` over the series, each under its id. `${Name}` in the expression
    /// is the value of the SAM parameter `Name` (one of `parameters`; `Fn::Sub` in SAM).
    Math {
        /// The expression's id in the SAM template (CDK numbers its expressions itself).
        id: &'static str,
        label: &'static str,
        expression: &'static str,
        parameters: &'static [Knob],
        series: &'static [(&'static str, Series)],
    },
}

/// An alarm's period (for metric math, every series' period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Seconds(u32),
    /// The sweep interval: the setting's hours.
    SweepInterval(Knob),
}

/// The threshold: a number, or a setting's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Fixed(f64),
    Set(Knob),
}

/// CloudWatch's comparison operators the alarms use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
}

impl Comparison {
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::GreaterThan => "GreaterThanThreshold",
            Comparison::GreaterThanOrEqual => "GreaterThanOrEqualToThreshold",
            Comparison::LessThan => "LessThanThreshold",
        }
    }

    /// As the book writes it.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::GreaterThan => ">",
            Comparison::GreaterThanOrEqual => "≥",
            Comparison::LessThan => "<",
        }
    }
}

/// How a period without data counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    NotBreaching,
    Breaching,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::NotBreaching => "notBreaching",
            Missing::Breaching => "breaching",
        }
    }
}

/// When the stacks create the alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exists {
    Always,
    /// When the setting is (`equals: true`) or is not `value`: the SAM template's condition
    /// `sam_condition`, the CDK app's test of its context key.
    When {
        sam_condition: &'static str,
        knob: Knob,
        equals: bool,
        value: &'static str,
    },
}

/// One alarm of the hub stack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alarm {
    /// The logical id in the SAM template (the CDK construct id).
    pub logical_id: &'static str,
    /// The name after the stack's: `<stack>-<name>`.
    pub name: &'static str,
    /// What the alarm means (its AlarmDescription, before the runbook link).
    pub about: &'static str,
    /// What it means in short, for the "Means" column of the book's alarm table
    /// (`docs/src/alarms.md`; the other columns are written from the fields below).
    pub means: &'static str,
    /// A remark the table adds, in bold, to when the alarm fires (what the numbers do not say).
    pub remark: Option<&'static str>,
    /// Its runbook page, `docs/src/runbook/<page>.md`.
    pub runbook: &'static str,
    pub watch: Watch,
    pub period: Period,
    pub threshold: Threshold,
    pub comparison: Comparison,
    pub evaluation_periods: u32,
    /// When not every evaluated period must breach ("M out of N"); `None`: all of them.
    pub datapoints_to_alarm: Option<u32>,
    pub missing: Missing,
    pub exists: Exists,
}

const FIVE_MINUTES: Period = Period::Seconds(300);

const fn guard(metric: Metric) -> Series {
    Series {
        source: Source::Guard(metric),
        statistic: Statistic::Sum,
        severity: None,
    }
}

const fn by_severity(metric: Metric, severity: Severity) -> Series {
    Series {
        source: Source::Guard(metric),
        statistic: Statistic::Sum,
        severity: Some(severity),
    }
}

const fn lambda(metric: &'static str, statistic: Statistic) -> Series {
    Series {
        source: Source::Function(metric),
        statistic,
        severity: None,
    }
}

const fn messages_visible(queue: Queue) -> Series {
    Series {
        source: Source::Queue(queue, "ApproximateNumberOfMessagesVisible"),
        statistic: Statistic::Maximum,
        severity: None,
    }
}

/// The public and cross-account series of a by-severity metric.
const fn public_and_cross_account(metric: Metric) -> [(&'static str, Series); 2] {
    [
        ("public", by_severity(metric, Severity::Public)),
        ("cross_account", by_severity(metric, Severity::CrossAccount)),
    ]
}

const EXPOSURE_DRIFT: [(&str, Series); 2] = public_and_cross_account(Metric::ExposureDrift);
const GUARDRAIL_REFUSED: [(&str, Series); 2] = public_and_cross_account(Metric::GuardrailRefused);
const WRITE_EXPOSURE: [(&str, Series); 2] = public_and_cross_account(Metric::WriteExposure);

/// The sum of the series (missing values count as 0 in the sum, so either alone fires it).
const fn sum_of(
    id: &'static str,
    label: &'static str,
    series: &'static [(&'static str, Series)],
) -> Watch {
    Watch::Math {
        id,
        label,
        expression: "public + cross_account",
        parameters: &[],
        series,
    }
}

/// At least once in five minutes; no data is no news.
const fn at_least_once(
    logical_id: &'static str,
    name: &'static str,
    watch: Watch,
    about: &'static str,
    runbook: &'static str,
    means: &'static str,
) -> Alarm {
    Alarm {
        logical_id,
        name,
        about,
        means,
        remark: None,
        runbook,
        watch,
        period: FIVE_MINUTES,
        threshold: Threshold::Fixed(1.0),
        comparison: Comparison::GreaterThanOrEqual,
        evaluation_periods: 1,
        datapoints_to_alarm: None,
        missing: Missing::NotBreaching,
        exists: Exists::Always,
    }
}

/// Every alarm of the hub stack, in the templates' order.
pub const ALARMS: &[Alarm] = &[
    Alarm {
        logical_id: "AutoFixAppliedSpikeAlarm",
        name: "AutoFixApplied-spike",
        about: "More key policies were rewritten in 5 minutes than AutoFixSpikeThreshold (mass drift, or something fighting the baseline).",
        means: "many policies rewritten at once: a baseline change, mass drift, or a fight",
        remark: None,
        runbook: "autofixapplied-spike",
        watch: Watch::Metric(guard(Metric::AutoFixApplied)),
        period: FIVE_MINUTES,
        threshold: Threshold::Set(AUTO_FIX_SPIKE_THRESHOLD),
        comparison: Comparison::GreaterThan,
        evaluation_periods: 1,
        datapoints_to_alarm: None,
        missing: Missing::NotBreaching,
        exists: Exists::Always,
    },
    at_least_once(
        "AutoFixFailedAlarm",
        "AutoFixFailed",
        Watch::Metric(guard(Metric::AutoFixFailed)),
        "A replica key policy could not be checked or rewritten (permissions, lockout check, verification mismatch).",
        "autofixfailed",
        "a key could not be checked or fixed",
    ),
    at_least_once(
        "FlapSuppressedAlarm",
        "FlapSuppressed",
        Watch::Metric(guard(Metric::FlapSuppressed)),
        "A key was rewritten too often and is now left alone (another automation keeps changing its policy).",
        "flapsuppressed",
        "a key keeps drifting back; the function stopped touching it",
    ),
    at_least_once(
        "FunctionErrorsAlarm",
        "FunctionErrors",
        Watch::Metric(lambda("Errors", Statistic::Sum)),
        "The remediator function failed an invocation (it is retried; after the retries the event goes to the DLQ).",
        "functionerrors",
        "an invocation failed (it is retried)",
    ),
    at_least_once(
        "DeadLetterQueueAlarm",
        "DLQ-not-empty",
        Watch::Metric(messages_visible(Queue::DeadLetter)),
        "Events the remediator (or the detector) gave up on are waiting in the on-failure queue (read them, fix the cause, redrive).",
        "dlq-not-empty",
        "an event was given up on after the retries",
    ),
    at_least_once(
        "AccountNotEnteredAlarm",
        "AccountNotEntered",
        Watch::Metric(guard(Metric::AccountNotEntered)),
        "The hub could not assume the member role in an account (refused, throttled, unreachable): its keys are not being checked.",
        "accountnotentered",
        "the hub could not assume the member role in an account: its keys are not being checked",
    ),
    at_least_once(
        "SweepDeadLetterQueueAlarm",
        "sweep-DLQ-not-empty",
        Watch::Metric(messages_visible(Queue::SweepDeadLetter)),
        "Sweep work items (one account and Region each) failed 5 times and wait in the sweep dead-letter queue (read them, fix the cause, redrive).",
        "sweep-dlq-not-empty",
        "a sweep work item (one account and Region) failed 5 times",
    ),
    // The heartbeat: every sweep that ran through publishes SweepCompleted. No datum for two
    // intervals (missing data is breaching), or only zeros, is an alarm.
    Alarm {
        logical_id: "SweepHeartbeatAlarm",
        name: "SweepCompleted-heartbeat",
        about: "No sweep completed in two sweep intervals (SweepIntervalHours): the guard may be stopped (schedule, rule, queue mapping, role or function broken or disabled).",
        means: "no sweep ran through for two sweep intervals: the guard may have been stopped",
        remark: None,
        runbook: "sweepcompleted-heartbeat",
        watch: Watch::Metric(guard(Metric::SweepCompleted)),
        period: Period::SweepInterval(SWEEP_INTERVAL_HOURS),
        threshold: Threshold::Fixed(1.0),
        comparison: Comparison::LessThan,
        evaluation_periods: 2,
        datapoints_to_alarm: Some(2),
        missing: Missing::Breaching,
        exists: Exists::Always,
    },
    // EnforceMode: 1 enforce, 0 dry-run. A dry-run stack must not page.
    Alarm {
        logical_id: "EnforceModeAlarm",
        name: "EnforceMode-dry-run",
        about: "The function reports dry-run although this stack was deployed in enforce mode: drifts are no longer fixed (REMEDIATION_MODE changed outside the deployment?).",
        means: "the function runs in dry-run although the stack says enforce: drifts are reported, not fixed",
        remark: None,
        runbook: "enforcemode-dry-run",
        watch: Watch::Metric(Series {
            source: Source::Guard(Metric::EnforceMode),
            statistic: Statistic::Minimum,
            severity: None,
        }),
        period: FIVE_MINUTES,
        threshold: Threshold::Fixed(1.0),
        comparison: Comparison::LessThan,
        evaluation_periods: 1,
        datapoints_to_alarm: None,
        missing: Missing::NotBreaching,
        exists: Exists::When {
            sam_condition: "Enforcing",
            knob: Knob::Setting("REMEDIATION_MODE"),
            equals: true,
            value: "enforce",
        },
    },
    Alarm {
        remark: Some("in dry-run too"),
        ..at_least_once(
            "ExposureDriftAlarm",
            "ExposureDrift",
            sum_of("exposure", "public + cross-account drifts", &EXPOSURE_DRIFT),
            "A replica key policy drifted to grant access to anyone (public) or to another account (cross-account); counted in dry-run too, where nothing is rewritten.",
            "exposuredrift",
            "a replica key policy was opened to anyone or to another account; each such drift also arrives on the topic at once as a readable message from `ExposureNotificationRule`",
        )
    },
    at_least_once(
        "FunctionThrottlesAlarm",
        "Throttles",
        Watch::Metric(lambda("Throttles", Statistic::Sum)),
        "Lambda throttled the remediator (no concurrency left): KMS events wait in the asynchronous queue and age towards MaxEventAgeSeconds.",
        "throttles",
        "no concurrency was left for the function: KMS events wait in Lambda's queue",
    ),
    // AsyncEventAge (milliseconds, Maximum) as a fraction of MaxEventAgeSeconds (metric math:
    // CloudFormation has no arithmetic on parameters): half way there is the alarm.
    Alarm {
        logical_id: "AsyncEventAgeAlarm",
        name: "AsyncEventAge",
        about: "A KMS event waited more than half of MaxEventAgeSeconds in the asynchronous queue before the remediator ran (throttling, a long sweep holding the concurrency, retries): past the maximum it is dropped to the DLQ unchecked.",
        means: "an event waited half its allowed age before the function ran; past the whole it is dropped",
        remark: None,
        runbook: "asynceventage",
        watch: Watch::Math {
            id: "age_fraction",
            label: "oldest event age / MaxEventAgeSeconds",
            expression: "age / (1000 * ${MaxEventAgeSeconds})",
            parameters: &[MAX_EVENT_AGE_SECONDS],
            series: &[("age", lambda("AsyncEventAge", Statistic::Maximum))],
        },
        period: FIVE_MINUTES,
        threshold: Threshold::Fixed(0.5),
        comparison: Comparison::GreaterThanOrEqual,
        evaluation_periods: 1,
        datapoints_to_alarm: None,
        missing: Missing::NotBreaching,
        exists: Exists::Always,
    },
    at_least_once(
        "AsyncEventsDroppedAlarm",
        "AsyncEventsDropped",
        Watch::Metric(lambda("AsyncEventsDropped", Statistic::Sum)),
        "Lambda dropped KMS events without a successful invocation of the remediator (retries exhausted or MaxEventAgeSeconds passed): those keys were not checked.",
        "asynceventsdropped",
        "Lambda gave events up (retries exhausted or too old) without a successful run",
    ),
    at_least_once(
        "AccountNotAllowedAlarm",
        "AccountNotAllowed",
        Watch::Metric(guard(Metric::AccountNotAllowed)),
        "A KMS event came from an account outside MemberAccounts (a forwarding rule or bus policy admits more than the guard may enter, or MemberAccounts is missing an account): the event was ignored.",
        "accountnotallowed",
        "a KMS event came from an account outside `MemberAccounts` and was ignored",
    ),
    // The detector's own metrics: neither blocks a fix; the next sweep or evaluation repairs it.
    Alarm {
        logical_id: "FindingsNotImportedAlarm",
        name: "FindingsNotImported",
        about: "Security Hub did not take some of the detector's findings (not enabled in that account and Region, access denied, throttled): those findings may be stale until the next sweep.",
        means: "Security Hub did not take some of the detector's findings (not enabled there, access denied, throttled): they may be stale until the next sweep",
        remark: None,
        runbook: "findingsnotimported",
        watch: Watch::Metric(guard(Metric::FindingsNotImported)),
        period: FIVE_MINUTES,
        threshold: Threshold::Fixed(0.0),
        comparison: Comparison::GreaterThan,
        evaluation_periods: 1,
        datapoints_to_alarm: None,
        missing: Missing::NotBreaching,
        exists: Exists::When {
            sam_condition: "SecurityHubOn",
            knob: Knob::Setting("SECURITY_HUB"),
            equals: true,
            value: "on",
        },
    },
    Alarm {
        logical_id: "EvaluationsNotPutAlarm",
        name: "EvaluationsNotPut",
        about: "AWS Config did not take the detector's answers for the replica key policy rule (access denied, expired result token, throttled): the rule shows a stale compliance until its next evaluation.",
        means: "AWS Config did not take the detector's answers: the rule shows a stale compliance until its next evaluation",
        remark: None,
        runbook: "evaluationsnotput",
        watch: Watch::Metric(guard(Metric::EvaluationsNotPut)),
        period: FIVE_MINUTES,
        threshold: Threshold::Fixed(0.0),
        comparison: Comparison::GreaterThan,
        evaluation_periods: 1,
        datapoints_to_alarm: None,
        missing: Missing::NotBreaching,
        exists: Exists::When {
            sam_condition: "HasConfigRule",
            knob: Knob::Stack {
                sam: "ConfigRule",
                cdk: "configRule",
            },
            equals: false,
            value: "none",
        },
    },
    Alarm {
        remark: Some("in dry-run too"),
        ..at_least_once(
            "GuardrailRefusedAlarm",
            "GuardrailRefused",
            sum_of(
                "refused",
                "refused writes (public + cross-account)",
                &GUARDRAIL_REFUSED,
            ),
            "The guardrails refused a policy the guard would have written (public access, an untrusted account or organisation, an unpinned service principal): nothing was written; counted in dry-run too.",
            "guardrailrefused",
            "the guardrails refused a policy the guard would have written; each refusal also arrives at once as a readable message from `WriteRefusedNotificationRule`",
        )
    },
    // Defence in depth: the guardrails refuse every such write, so this is a guardrail that
    // failed. Admin grants (Severity=admin) are counted, not paged.
    at_least_once(
        "WriteExposureAlarm",
        "WriteExposure",
        sum_of(
            "granted",
            "writes granting cross-account or public access",
            &WRITE_EXPOSURE,
        ),
        "The guard wrote a key policy granting an untrusted account or the public access the live policy did not: its guardrails refuse such writes, so this is a guardrail failure (stop, restore, report).",
        "writeexposure",
        "the guard **wrote** a policy granting an untrusted account or the public access: the guardrails should have refused it (defence in depth; a trusted account's grant is `access` and not counted here)",
    ),
];

impl Alarm {
    /// The runbook page, from the repository's root.
    pub fn runbook_path(&self) -> String {
        format!("docs/src/runbook/{}.md", self.runbook)
    }

    /// The alarm's AlarmDescription: what it means, and its runbook page.
    pub fn description(&self) -> String {
        format!("{} Runbook: {}", self.about, self.runbook_path())
    }

    /// Its entry in the contract.
    pub fn json(&self) -> Value {
        let mut o = serde_json::Map::new();
        let mut put = |key: &str, value: Value| o.insert(key.to_string(), value);
        put("logical_id", json!(self.logical_id));
        put("name", json!(self.name));
        put("description", json!(self.description()));
        put("runbook", json!(self.runbook_path()));
        put(
            "condition",
            match self.exists {
                Exists::Always => Value::Null,
                Exists::When {
                    sam_condition,
                    knob,
                    equals,
                    value,
                } => {
                    let (sam, cdk) = knob.names();
                    json!({
                        "sam_condition": sam_condition,
                        "sam_parameter": sam,
                        "cdk_key": cdk,
                        (if equals { "equals" } else { "not_equals" }): value,
                    })
                }
            },
        );
        match self.watch {
            Watch::Metric(s) => put("metric", s.json(None)),
            Watch::Math {
                id,
                label,
                expression,
                parameters,
                series,
            } => put(
                "math",
                json!({
                    "id": id,
                    "label": label,
                    "expression": expression,
                    "parameters": parameters.iter().map(|k| k.json()).collect::<Vec<_>>(),
                    "metrics": series.iter().map(|(id, s)| s.json(Some(id))).collect::<Vec<_>>(),
                }),
            ),
        };
        put(
            "period",
            match self.period {
                Period::Seconds(s) => json!(s),
                Period::SweepInterval(k) => json!({ "sweep_interval_hours": k.json() }),
            },
        );
        put(
            "threshold",
            match self.threshold {
                Threshold::Fixed(t) => number(t),
                Threshold::Set(k) => k.json(),
            },
        );
        put("comparison_operator", json!(self.comparison.as_str()));
        put("evaluation_periods", json!(self.evaluation_periods));
        put("datapoints_to_alarm", json!(self.datapoints_to_alarm));
        put("treat_missing_data", json!(self.missing.as_str()));
        Value::Object(o)
    }
}

impl Series {
    /// The series (under its id in metric math): its source, the stack resource its dimension
    /// names (the function's or a queue's logical id in the SAM template), namespace, metric
    /// name, statistic and dimensions as the SAM template writes them.
    pub(crate) fn json(&self, id: Option<&str>) -> Value {
        let (source, namespace, metric, mut dimensions, resource) = match self.source {
            Source::Guard(m) => (
                "guard",
                NAMESPACE.json(),
                m.name(),
                serde_json::Map::new(),
                None,
            ),
            Source::Function(m) => (
                "function",
                json!("AWS/Lambda"),
                m,
                serde_json::Map::from_iter([(
                    "FunctionName".to_string(),
                    json!({ "Ref": FUNCTION }),
                )]),
                Some(FUNCTION),
            ),
            Source::Queue(q, m) => (
                "queue",
                json!("AWS/SQS"),
                m,
                serde_json::Map::from_iter([(
                    "QueueName".to_string(),
                    json!({ "Fn::GetAtt": [q.logical_id(), "QueueName"] }),
                )]),
                Some(q.logical_id()),
            ),
        };
        if let Some(s) = self.severity {
            dimensions.insert("Severity".to_string(), json!(s.as_str()));
        }
        let mut out = serde_json::Map::new();
        if let Some(id) = id {
            out.insert("id".to_string(), json!(id));
        }
        out.extend(
            json!({
                "source": source,
                "resource": resource,
                "namespace": namespace,
                "metric_name": metric,
                "statistic": self.statistic.as_str(),
                "dimensions": dimensions,
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        );
        Value::Object(out)
    }
}

/// The book's alarm table (`docs/src/alarms.md`, between the `xtask:alarms` markers): one row
/// per alarm, in the templates' order.
pub fn table() -> String {
    let mut out = String::from("| Alarm (`<stack>-…`) | Fires when | Means |\n|---|---|---|\n");
    for a in ALARMS {
        out.push_str(&format!(
            "| `{}`{} | {} | {} |\n",
            a.name,
            a.exists.words(),
            a.fires_when(),
            a.means
        ));
    }
    out
}

impl Alarm {
    /// When it fires, in words, from what it watches, the statistic, comparison, threshold,
    /// period, evaluation periods and missing data (then the remark, in bold). The statistic of
    /// one series is left out when any datum fires the alarm (≥ 1, > 0).
    pub fn fires_when(&self) -> String {
        let any_datum = matches!(
            (self.comparison, self.threshold),
            (Comparison::GreaterThanOrEqual, Threshold::Fixed(1.0))
                | (Comparison::GreaterThan, Threshold::Fixed(0.0))
        );
        let watched = match self.watch {
            Watch::Metric(s) if any_datum => s.words(),
            Watch::Metric(s) => format!("{} of {}", s.statistic.as_str(), s.words()),
            Watch::Math {
                expression, series, ..
            } => format!("metric math {}", math_words(expression, series)),
        };
        let threshold = match self.threshold {
            Threshold::Fixed(t) => number(t).to_string(),
            Threshold::Set(k) => format!("`{}`", k.names().0),
        };
        let period = match self.period {
            Period::Seconds(s) => duration_words(s),
            Period::SweepInterval(k) => format!("`{}`", k.names().0),
        };
        let periods = match (self.evaluation_periods, self.datapoints_to_alarm) {
            (1, _) => format!("in {period}"),
            (n, None) => format!("in each of {n} periods of {period}"),
            (n, Some(m)) if m == n => format!("in each of {n} periods of {period}"),
            (n, Some(m)) => format!("in {m} of {n} periods of {period}"),
        };
        let mut out = format!(
            "{watched} {} {threshold} {periods}",
            self.comparison.symbol()
        );
        if self.missing == Missing::Breaching {
            out.push_str(" (missing data **breaching**)");
        }
        if let Some(remark) = self.remark {
            out.push_str(&format!(" — **{remark}**"));
        }
        out
    }
}

impl Exists {
    /// After the alarm's name in the book: when the stacks create it.
    fn words(self) -> String {
        match self {
            Exists::Always => String::new(),
            Exists::When {
                knob,
                equals: true,
                value,
                ..
            } => format!(" (only with `{}={value}`)", knob.names().0),
            Exists::When {
                knob,
                equals: false,
                value,
                ..
            } => format!(" (only with `{}` ≠ `{value}`)", knob.names().0),
        }
    }
}

impl Series {
    /// The series as the book names it: the metric (with its dimension), or the AWS service's.
    fn words(&self) -> String {
        let severity = self
            .severity
            .map(|s| format!("{{Severity={}}}", s.as_str()))
            .unwrap_or_default();
        match self.source {
            Source::Guard(m) => format!("`{}{severity}`", m.name()),
            Source::Function(m) => format!("Lambda `{m}{severity}`"),
            Source::Queue(q, m) => format!("{} `{m}{severity}`", q.words()),
        }
    }
}

/// A metric-math expression in words: each series id replaced by the series, `${Name}` by the
/// parameter's name, `*` by `×`; the statistic after each series, or once after the
/// expression when the series share it.
fn math_words(expression: &str, series: &[(&str, Series)]) -> String {
    let shared = series.len() > 1
        && series
            .iter()
            .all(|(_, s)| s.statistic == series[0].1.statistic);
    let mut out = String::new();
    let mut rest = expression;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("${") {
            let (name, tail) = after.split_once('}').expect("a closed ${...}");
            out.push_str(&format!("`{name}`"));
            rest = tail;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            match series.iter().find(|(id, _)| *id == word) {
                Some((_, s)) if shared => out.push_str(&s.words()),
                Some((_, s)) => out.push_str(&format!("{} ({})", s.words(), s.statistic.as_str())),
                None => out.push_str(word),
            }
            rest = &rest[end..];
        } else {
            out.push(if c == '*' { '×' } else { c });
            rest = &rest[c.len_utf8()..];
        }
    }
    if shared {
        out.push_str(&format!(" ({})", series[0].1.statistic.as_str()));
    }
    out
}

/// A period in words: `5 min`, `6 h`, `90 s`.
fn duration_words(seconds: u32) -> String {
    if seconds.is_multiple_of(3600) {
        format!("{} h", seconds / 3600)
    } else if seconds.is_multiple_of(60) {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}

/// A whole number as an integer (`1`, not `1.0`), as the templates write it.
fn number(t: f64) -> Value {
    if t.fract() == 0.0 && t.abs() < 1e15 {
        json!(t as i64)
    } else {
        json!(t)
    }
}

/// The contract's `alarms`.
pub fn contract() -> Vec<Value> {
    ALARMS.iter().map(Alarm::json).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::env::root;

    #[test]
    fn every_alarm_has_its_runbook_page() {
        for a in ALARMS {
            let page = root().join(a.runbook_path());
            assert!(
                page.is_file(),
                "{}: {} does not exist",
                a.name,
                page.display()
            );
            // One page per alarm, named after it (infra/tests/test_templates.py checks the same
            // of the templates).
            assert_eq!(a.runbook, a.name.to_lowercase(), "{}", a.name);
        }
    }

    #[test]
    fn every_function_metric_alarm_watches_a_published_metric() {
        let published: HashSet<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        let mut watched = 0;
        for a in ALARMS {
            let series: Vec<Series> = match a.watch {
                Watch::Metric(s) => vec![s],
                Watch::Math { series, .. } => series.iter().map(|(_, s)| *s).collect(),
            };
            for s in series {
                if let Source::Guard(m) = s.source {
                    assert!(published.contains(m.name()), "{}: {}", a.name, m.name());
                    watched += 1;
                }
                // Only the function's by-severity metrics have a Severity dimension.
                if s.severity.is_some() {
                    assert!(matches!(
                        s.source,
                        Source::Guard(
                            Metric::ExposureDrift
                                | Metric::GuardrailRefused
                                | Metric::WriteExposure
                        )
                    ));
                }
            }
        }
        assert!(watched > 10);
    }

    #[test]
    fn ids_and_names_are_unique_and_the_expressions_name_their_parameters() {
        let ids: HashSet<&str> = ALARMS.iter().map(|a| a.logical_id).collect();
        let names: HashSet<&str> = ALARMS.iter().map(|a| a.name).collect();
        assert_eq!(ids.len(), ALARMS.len());
        assert_eq!(names.len(), ALARMS.len());
        for a in ALARMS {
            assert!(a.logical_id.ends_with("Alarm"), "{}", a.logical_id);
            if let Watch::Math {
                id,
                expression,
                parameters,
                series,
                ..
            } = a.watch
            {
                let used: Vec<&str> = expression
                    .split("${")
                    .skip(1)
                    .map(|s| s.split('}').next().unwrap())
                    .collect();
                let declared: Vec<&str> = parameters.iter().map(|k| k.names().0).collect();
                assert_eq!(used, declared, "{}: the expression's parameters", a.name);
                for (sid, _) in series {
                    assert!(expression.contains(sid), "{}: {sid} is not used", a.name);
                    assert_ne!(*sid, id);
                }
            }
        }
    }

    #[test]
    fn every_knob_names_a_stack_setting() {
        // A setting of the function resolves to its SAM parameter and CDK key (panics if not);
        // a stack-only knob is not also a setting of the function under another name.
        for a in ALARMS {
            let mut knobs = vec![];
            if let Threshold::Set(k) = a.threshold {
                knobs.push(k);
            }
            if let Period::SweepInterval(k) = a.period {
                knobs.push(k);
            }
            if let Exists::When { knob, .. } = a.exists {
                knobs.push(knob);
            }
            if let Watch::Math { parameters, .. } = a.watch {
                knobs.extend(parameters);
            }
            for k in knobs.into_iter().chain([NAMESPACE]) {
                let (sam, cdk) = k.names();
                if let Knob::Stack { .. } = k {
                    assert!(
                        !VARS.iter().any(|v| v.stack.0 == sam || v.stack.1 == cdk),
                        "{sam}: a setting of the function, name it Knob::Setting"
                    );
                }
            }
        }
    }

    fn alarm(name: &str) -> &'static Alarm {
        ALARMS.iter().find(|a| a.name == name).unwrap()
    }

    #[test]
    fn the_table_says_when_each_alarm_fires() {
        let fires = |name| alarm(name).fires_when();
        assert_eq!(
            fires("AutoFixApplied-spike"),
            "Sum of `AutoFixApplied` > `AutoFixSpikeThreshold` in 5 min"
        );
        assert_eq!(fires("AutoFixFailed"), "`AutoFixFailed` ≥ 1 in 5 min");
        assert_eq!(fires("FunctionErrors"), "Lambda `Errors` ≥ 1 in 5 min");
        assert_eq!(
            fires("sweep-DLQ-not-empty"),
            "sweep DLQ `ApproximateNumberOfMessagesVisible` ≥ 1 in 5 min"
        );
        assert_eq!(
            fires("EnforceMode-dry-run"),
            "Minimum of `EnforceMode` < 1 in 5 min"
        );
        assert_eq!(
            fires("SweepCompleted-heartbeat"),
            "Sum of `SweepCompleted` < 1 in each of 2 periods of `SweepIntervalHours` (missing data **breaching**)"
        );
        assert_eq!(
            fires("ExposureDrift"),
            "metric math `ExposureDrift{Severity=public}` + `ExposureDrift{Severity=cross-account}` (Sum) ≥ 1 in 5 min — **in dry-run too**"
        );
        // A series id inside a metric name (age, AsyncEventAge) is left alone.
        assert_eq!(
            fires("AsyncEventAge"),
            "metric math Lambda `AsyncEventAge` (Maximum) / (1000 × `MaxEventAgeSeconds`) ≥ 0.5 in 5 min"
        );
        assert_eq!(
            fires("FindingsNotImported"),
            "`FindingsNotImported` > 0 in 5 min"
        );
        // What the declarations do not use yet: M out of N, other periods, a statistic per series.
        const SERIES: &[(&str, Series)] = &[
            ("a", guard(Metric::DriftDetected)),
            ("b", messages_visible(Queue::DeadLetter)),
        ];
        let odd = Alarm {
            period: Period::Seconds(90),
            threshold: Threshold::Fixed(2.0),
            evaluation_periods: 3,
            datapoints_to_alarm: Some(2),
            watch: Watch::Math {
                id: "m",
                label: "",
                expression: "a * b",
                parameters: &[],
                series: SERIES,
            },
            ..*alarm("AutoFixFailed")
        };
        assert_eq!(
            odd.fires_when(),
            "metric math `DriftDetected` (Sum) × DLQ `ApproximateNumberOfMessagesVisible` (Maximum) ≥ 2 in 2 of 3 periods of 90 s"
        );
        assert_eq!(duration_words(21600), "6 h");
    }

    #[test]
    fn the_table_has_a_row_per_alarm() {
        let table = table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| Alarm (`<stack>-…`) | Fires when | Means |");
        assert_eq!(lines[1], "|---|---|---|");
        assert_eq!(lines.len(), 2 + ALARMS.len());
        for (row, a) in lines[2..].iter().zip(ALARMS) {
            let cells: Vec<&str> = row.split(" | ").collect();
            assert_eq!(cells.len(), 3, "{row}: a | in a cell");
            assert!(row.starts_with(&format!("| `{}`", a.name)), "{row}");
            assert!(row.ends_with(&format!(" {} |", a.means)), "{row}");
            assert!(!a.means.contains('|') && !a.remark.unwrap_or_default().contains('|'));
        }
        // The condition an alarm exists under follows its name.
        assert!(table.contains("| `EnforceMode-dry-run` (only with `RemediationMode=enforce`) | "));
        assert!(table.contains("| `FindingsNotImported` (only with `SecurityHub=on`) | "));
        assert!(table.contains("| `EvaluationsNotPut` (only with `ConfigRule` ≠ `none`) | "));
    }

    #[test]
    fn thresholds_are_written_as_the_templates_write_them() {
        assert_eq!(number(1.0).to_string(), "1");
        assert_eq!(number(0.0).to_string(), "0");
        assert_eq!(number(0.5).to_string(), "0.5");
    }
}
