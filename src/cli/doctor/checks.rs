//! The checklist's verdicts: pure judgements of what the deployment reads returned, one
//! [`Check`] each, with what to do when it is wrong.

use krg_aws::deployment::{AlarmInfo, FieldSelector, FunctionInfo, RuleInfo, Selectors, TrailInfo};
use serde::Serialize;

// The KMS calls the function is invoked on: a rule or trail that misses one of them leaves
// those changes to the next sweep (the tag calls: exemptions and baseline switches).
use krg_engine::trigger::KMS_EVENT_NAMES;

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Pass,
    /// Works, but not as a tier-0 control should (not a failure: exit 0).
    Warn,
    /// Broken: the guard misses drift or cannot fix it (exit 2).
    Fail,
    /// Not checked (`--skip`, or nothing to check).
    Skip,
}

impl Status {
    /// The mark printed before the check.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
            Status::Skip => "–",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`function`, `trail`, `rule`, …).
    pub check: &'static str,
    /// Where (a Region, an account, a name).
    pub target: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, when it is not a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A pass.
    pub fn pass(check: &'static str, target: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            check,
            target: target.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A failure, with its fix.
    pub fn fail(
        check: &'static str,
        target: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Fail,
            fix: Some(fix.into()),
            ..Self::pass(check, target, detail)
        }
    }

    /// A warning, with what to do.
    pub fn warn(
        check: &'static str,
        target: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Warn,
            ..Self::fail(check, target, detail, fix)
        }
    }

    /// Not checked.
    pub fn skip(check: &'static str, target: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            status: Status::Skip,
            ..Self::pass(check, target, why)
        }
    }
}

/// The function is deployed and ready.
pub fn function(f: &FunctionInfo) -> Check {
    let updated = f.last_update_status.as_deref().unwrap_or("Successful");
    if f.state == "Active" && updated == "Successful" {
        return Check::pass(
            "function",
            &f.name,
            format!("{} ({}, role {})", f.state, f.arn, f.role),
        );
    }
    Check::fail(
        "function",
        &f.name,
        format!(
            "state {}, last update {updated}{}",
            f.state,
            f.state_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        "the function cannot run: read the state reason, fix it (role, code, VPC) and redeploy the stack",
    )
}

/// The remediation mode the function runs in.
pub fn mode(f: &FunctionInfo) -> Check {
    match f.environment.get("REMEDIATION_MODE").map(String::as_str) {
        Some("enforce") => Check::pass("mode", &f.name, "enforce: drifted replicas are healed"),
        other => Check::warn(
            "mode",
            &f.name,
            format!(
                "{}: drift is reported, never healed",
                other.unwrap_or("dry-run (REMEDIATION_MODE unset)")
            ),
            "when its reports look right, deploy with RemediationMode=enforce",
        ),
    }
}

/// What of a trail's selection makes it log the guard's triggers: KMS write management events.
pub fn logs_kms_writes(selectors: &Selectors) -> bool {
    match selectors {
        Selectors::Basic(list) => list.iter().any(|s| {
            s.management
                && matches!(s.read_write.as_str(), "All" | "WriteOnly")
                && !s
                    .excluded_sources
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case("kms.amazonaws.com"))
        }),
        Selectors::Advanced(list) => list.iter().any(|fields| {
            fields.iter().all(|f| match f.field.as_str() {
                "eventCategory" => holds(f, "Management"),
                "readOnly" => holds(f, "false"),
                "eventSource" => holds(f, "kms.amazonaws.com"),
                "eventName" => KMS_EVENT_NAMES.iter().all(|name| holds(f, name)),
                // Any other field does not apply to management events: such a selector
                // selects data events only.
                _ => false,
            })
        }),
    }
}

/// Whether an advanced field selector admits `value` (every operator given must hold).
fn holds(f: &FieldSelector, value: &str) -> bool {
    (f.equals.is_empty() || f.equals.iter().any(|v| v == value))
        && !f.not_equals.iter().any(|v| v == value)
        && (f.starts_with.is_empty() || f.starts_with.iter().any(|p| value.starts_with(p.as_str())))
        && !f
            .not_starts_with
            .iter()
            .any(|p| value.starts_with(p.as_str()))
        && (f.ends_with.is_empty() || f.ends_with.iter().any(|p| value.ends_with(p.as_str())))
        && !f.not_ends_with.iter().any(|p| value.ends_with(p.as_str()))
}

/// A trail logs the Region: EventBridge receives "AWS API Call via CloudTrail" events only
/// while a trail with logging on covers it.
pub fn trail(region: &str, trails: &[TrailInfo]) -> Check {
    let logging: Vec<&TrailInfo> = trails.iter().filter(|t| t.logging).collect();
    if logging.is_empty() {
        let stopped = trails
            .iter()
            .map(|t| format!("{} (logging off)", t.name))
            .collect::<Vec<_>>();
        return Check::fail(
            "trail",
            region,
            if stopped.is_empty() {
                "no trail logs this Region".to_owned()
            } else {
                stopped.join(", ")
            },
            "EventBridge receives KMS API calls only while a trail logs them: create a multi-Region trail (or an organisation trail) with management events, or start logging on the one above",
        );
    }
    match logging.iter().find(|t| logs_kms_writes(&t.selectors)) {
        Some(t) => Check::pass(
            "trail",
            region,
            format!(
                "{}{} logs KMS write management events",
                t.name,
                if t.organization {
                    " (organisation trail)"
                } else if t.multi_region {
                    " (multi-Region)"
                } else {
                    ""
                }
            ),
        ),
        None => Check::warn(
            "trail",
            region,
            format!(
                "{} logs, but its selectors leave out KMS write management events",
                logging
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "select management events (All or WriteOnly) without excluding kms.amazonaws.com, so the trail records what the guard acts on",
        ),
    }
}

/// The rule's pattern routes KMS API calls that trigger the guard.
pub fn routes_kms(rule: &RuleInfo) -> bool {
    let Some(pattern) = rule.pattern.as_deref() else {
        return false;
    };
    let Ok(p) = serde_json::from_str::<serde_json::Value>(pattern) else {
        return false;
    };
    let lists = |v: &serde_json::Value, want: &str| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(want)))
    };
    lists(&p["source"], "aws.kms")
        && KMS_EVENT_NAMES
            .iter()
            .all(|name| lists(&p["detail"]["eventName"], name))
}

/// An enabled rule routes the KMS events to `target` (the function in the hub Region, the
/// hub's bus in a spoke Region).
pub fn event_rule(check: &'static str, region: &str, rules: &[RuleInfo], fix: &str) -> Check {
    let routing: Vec<&RuleInfo> = rules.iter().filter(|r| routes_kms(r)).collect();
    match routing.iter().find(|r| r.state == "ENABLED") {
        Some(r) => Check::pass(
            check,
            region,
            format!("{} routes the KMS API calls", r.name),
        ),
        None if !routing.is_empty() => Check::fail(
            check,
            region,
            format!(
                "{} is {}: no KMS event reaches the guard",
                routing[0].name, routing[0].state
            ),
            format!(
                "enable it (aws events enable-rule --name {} --region {region}); DisableRule on it is an alarm of its own",
                routing[0].name
            ),
        ),
        None => Check::fail(
            check,
            region,
            format!("no rule routes {} here", KMS_EVENT_NAMES.join("/")),
            fix.to_owned(),
        ),
    }
}

/// IAM delivers its CloudTrail events to EventBridge in us-east-1 only: for a hub elsewhere,
/// changes to the guard's role reach its guard-changes rule only through a us-east-1 rule
/// that forwards them (the spoke stack's `GuardRoleName`). A warning: the guard still works,
/// but a change to its role's policies is not news.
pub fn iam_forwarding(hub: &str, rules: &[RuleInfo]) -> Check {
    let forwards_iam = |r: &&RuleInfo| {
        r.state == "ENABLED"
            && r.pattern
                .as_deref()
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                .is_some_and(|p| {
                    p["source"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|s| s == "aws.iam"))
                })
    };
    match rules.iter().find(forwards_iam) {
        Some(r) => Check::pass(
            "iam-forwarding",
            "us-east-1",
            format!(
                "{} forwards IAM changes of the guard's role to {hub}",
                r.name
            ),
        ),
        None => Check::warn(
            "iam-forwarding",
            "us-east-1",
            "no rule forwards IAM events to the hub: a change to the guard's role policies raises no message",
            format!(
                "deploy infra/sam/spoke.yaml in us-east-1 with HubRegion={hub} and GuardRoleName set to the hub's RemediatorRoleName output"
            ),
        ),
    }
}

/// An enabled schedule rule invokes the function's sweep.
pub fn schedule(region: &str, rules: &[RuleInfo]) -> Check {
    let scheduled: Vec<&RuleInfo> = rules.iter().filter(|r| r.schedule.is_some()).collect();
    match scheduled.iter().find(|r| r.state == "ENABLED") {
        Some(r) => Check::pass(
            "schedule",
            region,
            format!(
                "{} runs the sweep ({})",
                r.name,
                r.schedule.as_deref().unwrap_or_default()
            ),
        ),
        None => Check::fail(
            "schedule",
            region,
            scheduled.first().map_or_else(
                || {
                    "no schedule invokes the function: drift that no event reports is never found"
                        .to_owned()
                },
                |r| format!("{} is {}", r.name, r.state),
            ),
            "redeploy the hub stack (its Sweep schedule), or enable the rule",
        ),
    }
}

/// The heartbeat alarm exists, pages, and is OK.
pub fn heartbeat(region: &str, alarms: &[AlarmInfo]) -> Check {
    let paging = alarms.iter().find(|a| {
        a.actions_enabled && a.has_actions && a.treat_missing_data.as_deref() == Some("breaching")
    });
    let Some(a) = paging else {
        return Check::fail(
            "heartbeat",
            region,
            if alarms.is_empty() {
                "no alarm watches SweepCompleted: a stopped guard goes unnoticed".to_owned()
            } else {
                format!(
                    "{} does not page when sweeps stop (actions disabled, none, or missing data not breaching)",
                    alarms[0].name
                )
            },
            "deploy the hub stack's SweepHeartbeatAlarm (or enable its actions: aws cloudwatch enable-alarm-actions)",
        );
    };
    match a.state.as_str() {
        "OK" => Check::pass("heartbeat", region, format!("{} is OK", a.name)),
        "INSUFFICIENT_DATA" => Check::warn(
            "heartbeat",
            region,
            format!("{} has no data yet", a.name),
            "no sweep has completed since the deployment: wait for the schedule, or invoke the function with events/scheduled.json",
        ),
        state => Check::fail(
            "heartbeat",
            region,
            format!("{} is {state}: no sweep completed in two intervals", a.name),
            "the guard is stopped: follow docs/src/runbook/sweepcompleted-heartbeat.md",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use krg_aws::deployment::BasicSelector;
    use std::collections::BTreeMap;

    fn basic(read_write: &str, management: bool, excluded: &[&str]) -> Selectors {
        Selectors::Basic(vec![BasicSelector {
            read_write: read_write.to_owned(),
            management,
            excluded_sources: excluded.iter().map(|s| (*s).to_owned()).collect(),
        }])
    }

    fn field(name: &str, equals: &[&str], not_equals: &[&str]) -> FieldSelector {
        FieldSelector {
            field: name.to_owned(),
            equals: equals.iter().map(|s| (*s).to_owned()).collect(),
            not_equals: not_equals.iter().map(|s| (*s).to_owned()).collect(),
            ..FieldSelector::default()
        }
    }

    fn trail_with(logging: bool, selectors: Selectors) -> TrailInfo {
        TrailInfo {
            name: "org".into(),
            arn: "arn:aws:cloudtrail:us-east-1:111122223333:trail/org".into(),
            home_region: "us-east-1".into(),
            multi_region: true,
            organization: false,
            logging,
            selectors,
        }
    }

    #[test]
    fn basic_selectors_must_keep_kms_write_management_events() {
        assert!(logs_kms_writes(&basic("All", true, &[])));
        assert!(logs_kms_writes(&basic(
            "WriteOnly",
            true,
            &["rdsdata.amazonaws.com"]
        )));
        assert!(!logs_kms_writes(&basic("ReadOnly", true, &[])));
        assert!(!logs_kms_writes(&basic("All", false, &[])));
        assert!(!logs_kms_writes(&basic(
            "All",
            true,
            &["kms.amazonaws.com"]
        )));
        assert!(!logs_kms_writes(&Selectors::Basic(Vec::new())));
    }

    #[test]
    fn advanced_selectors_are_evaluated_field_by_field() {
        let management = vec![field("eventCategory", &["Management"], &[])];
        assert!(logs_kms_writes(&Selectors::Advanced(vec![management])));
        let without_kms = vec![
            field("eventCategory", &["Management"], &[]),
            field("eventSource", &[], &["kms.amazonaws.com"]),
        ];
        assert!(!logs_kms_writes(&Selectors::Advanced(vec![without_kms])));
        let reads_only = vec![
            field("eventCategory", &["Management"], &[]),
            field("readOnly", &["true"], &[]),
        ];
        assert!(!logs_kms_writes(&Selectors::Advanced(vec![reads_only])));
        let data_only = vec![
            field("eventCategory", &["Data"], &[]),
            field("resources.type", &["AWS::S3::Object"], &[]),
        ];
        assert!(!logs_kms_writes(&Selectors::Advanced(vec![
            data_only.clone()
        ])));
        let some_names = vec![
            field("eventCategory", &["Management"], &[]),
            field("eventName", &["PutKeyPolicy"], &[]),
        ];
        assert!(
            !logs_kms_writes(&Selectors::Advanced(vec![some_names])),
            "ReplicateKey and the rest would be missed"
        );
        let prefixed = vec![
            field("eventCategory", &["Management"], &[]),
            FieldSelector {
                field: "eventSource".into(),
                starts_with: vec!["kms.".into()],
                ..FieldSelector::default()
            },
        ];
        assert!(logs_kms_writes(&Selectors::Advanced(vec![
            data_only, prefixed
        ])));
    }

    #[test]
    fn a_region_without_a_logging_trail_fails_and_a_narrow_one_warns() {
        let none = trail("eu-west-1", &[]);
        assert_eq!(none.status, Status::Fail);
        assert!(none.fix.as_deref().unwrap().contains("trail"));
        let stopped = trail("eu-west-1", &[trail_with(false, basic("All", true, &[]))]);
        assert_eq!(stopped.status, Status::Fail);
        assert!(stopped.detail.contains("logging off"), "{}", stopped.detail);
        let narrow = trail(
            "eu-west-1",
            &[trail_with(true, basic("All", true, &["kms.amazonaws.com"]))],
        );
        assert_eq!(narrow.status, Status::Warn);
        let good = trail(
            "eu-west-1",
            &[trail_with(true, basic("WriteOnly", true, &[]))],
        );
        assert_eq!(good.status, Status::Pass, "{good:?}");
        assert!(good.detail.contains("multi-Region"));
    }

    fn rule(name: &str, state: &str, pattern: Option<&str>, schedule: Option<&str>) -> RuleInfo {
        RuleInfo {
            name: name.into(),
            state: state.into(),
            pattern: pattern.map(Into::into),
            schedule: schedule.map(Into::into),
        }
    }

    const PATTERN: &str = r#"{"source":["aws.kms"],"detail-type":["AWS API Call via CloudTrail"],"detail":{"eventSource":["kms.amazonaws.com"],"eventName":["ReplicateKey","CreateKey","PutKeyPolicy","UpdatePrimaryRegion","TagResource","UntagResource"]}}"#;

    #[test]
    fn the_event_rule_must_route_every_trigger_and_be_enabled() {
        let fix = "deploy it";
        let ok = event_rule(
            "rule",
            "us-east-1",
            &[rule("r", "ENABLED", Some(PATTERN), None)],
            fix,
        );
        assert_eq!(ok.status, Status::Pass);
        let off = event_rule(
            "rule",
            "us-east-1",
            &[rule("r", "DISABLED", Some(PATTERN), None)],
            fix,
        );
        assert_eq!(off.status, Status::Fail);
        assert!(off.fix.unwrap().contains("enable-rule --name r"));
        let partial = r#"{"source":["aws.kms"],"detail":{"eventName":["PutKeyPolicy"]}}"#;
        let narrow = event_rule(
            "rule",
            "us-east-1",
            &[rule("r", "ENABLED", Some(partial), None)],
            fix,
        );
        assert_eq!(narrow.status, Status::Fail);
        assert_eq!(narrow.fix.as_deref(), Some(fix));
        // A rule without the tag calls: exemptions and baseline switches would wait for the
        // next sweep, and ExemptionGranted would never be told.
        let untagged = PATTERN.replace(r#","TagResource","UntagResource""#, "");
        let old = event_rule(
            "rule",
            "us-east-1",
            &[rule("r", "ENABLED", Some(&untagged), None)],
            fix,
        );
        assert_eq!(old.status, Status::Fail);
        assert_eq!(
            old.detail,
            "no rule routes ReplicateKey/CreateKey/PutKeyPolicy/UpdatePrimaryRegion/TagResource/UntagResource here"
        );
        let none = event_rule("rule", "us-east-1", &[], fix);
        assert_eq!(none.status, Status::Fail);
    }

    #[test]
    fn iam_changes_must_be_forwarded_from_us_east_1() {
        let iam = r#"{"source":["aws.iam"],"detail":{"eventSource":["iam.amazonaws.com"]}}"#;
        let on = [rule("f", "ENABLED", Some(iam), None)];
        assert_eq!(iam_forwarding("eu-west-1", &on).status, Status::Pass);
        let off = [rule("f", "DISABLED", Some(iam), None)];
        assert_eq!(iam_forwarding("eu-west-1", &off).status, Status::Warn);
        let kms_only = [rule("k", "ENABLED", Some(PATTERN), None)];
        let c = iam_forwarding("eu-west-1", &kms_only);
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.unwrap().contains("GuardRoleName"));
    }

    #[test]
    fn the_schedule_must_exist_and_be_enabled() {
        let on = [rule("s", "ENABLED", None, Some("rate(6 hours)"))];
        assert_eq!(schedule("us-east-1", &on).status, Status::Pass);
        let off = [rule("s", "DISABLED", None, Some("rate(6 hours)"))];
        let c = schedule("us-east-1", &off);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("DISABLED"));
        assert_eq!(schedule("us-east-1", &[]).status, Status::Fail);
    }

    fn alarm(state: &str, actions: bool, missing: &str) -> AlarmInfo {
        AlarmInfo {
            name: "hub-SweepCompleted-heartbeat".into(),
            state: state.into(),
            actions_enabled: actions,
            has_actions: true,
            treat_missing_data: Some(missing.into()),
        }
    }

    #[test]
    fn the_heartbeat_must_page_and_be_ok() {
        for (state, actions, missing, want) in [
            ("OK", true, "breaching", Status::Pass),
            ("INSUFFICIENT_DATA", true, "breaching", Status::Warn),
            ("ALARM", true, "breaching", Status::Fail),
            ("OK", false, "breaching", Status::Fail),
            ("OK", true, "notBreaching", Status::Fail),
        ] {
            assert_eq!(
                heartbeat("r", &[alarm(state, actions, missing)]).status,
                want,
                "{state}, actions enabled {actions}, missing data {missing}"
            );
        }
        assert_eq!(heartbeat("r", &[]).status, Status::Fail);
    }

    fn function_info(state: &str, mode: Option<&str>) -> FunctionInfo {
        FunctionInfo {
            name: "guard".into(),
            arn: "arn:aws:lambda:us-east-1:111122223333:function:guard".into(),
            state: state.into(),
            state_reason: (state != "Active").then(|| "The role cannot be assumed".into()),
            last_update_status: Some("Successful".into()),
            role: "arn:aws:iam::111122223333:role/guard".into(),
            environment: mode
                .map(|m| BTreeMap::from([("REMEDIATION_MODE".to_owned(), m.to_owned())]))
                .unwrap_or_default(),
        }
    }

    #[test]
    fn the_function_must_be_active_and_dry_run_is_a_warning() {
        assert_eq!(
            function(&function_info("Active", None)).status,
            Status::Pass
        );
        let failed = function(&function_info("Failed", None));
        assert_eq!(failed.status, Status::Fail);
        assert!(failed.detail.contains("The role cannot be assumed"));
        assert_eq!(
            mode(&function_info("Active", Some("enforce"))).status,
            Status::Pass
        );
        assert_eq!(
            mode(&function_info("Active", Some("dry-run"))).status,
            Status::Warn
        );
        assert_eq!(mode(&function_info("Active", None)).status, Status::Warn);
    }
}
