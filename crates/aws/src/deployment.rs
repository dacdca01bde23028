//! What a deployment consists of, read back with the operator's credentials for `doctor`:
//! the CloudTrail trails that feed EventBridge, the function's configuration, the rules that
//! target it (or forward to its bus), and the alarms on its metrics. Read-only; plain types
//! out, so the checks themselves are pure code elsewhere.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use krg_engine::error::{Api, CallError};
use krg_engine::key::Region;

use super::call_error;

/// A CloudTrail trail as seen from one Region (a multi-Region trail is seen from every Region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailInfo {
    /// The trail's name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// The Region it was created in.
    pub home_region: String,
    /// Logs every Region.
    pub multi_region: bool,
    /// An organisation trail (logs every account of the organisation).
    pub organization: bool,
    /// Logging is on (GetTrailStatus `IsLogging`).
    pub logging: bool,
    /// What it selects.
    pub selectors: Selectors,
}

/// A trail's event selectors (basic or advanced; a trail has one kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selectors {
    /// Basic event selectors.
    Basic(Vec<BasicSelector>),
    /// Advanced event selectors: each a list of field conditions, all of which must hold.
    Advanced(Vec<Vec<FieldSelector>>),
}

/// One basic event selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicSelector {
    /// `All`, `ReadOnly` or `WriteOnly`.
    pub read_write: String,
    /// `IncludeManagementEvents`.
    pub management: bool,
    /// `ExcludeManagementEventSources` (e.g. `kms.amazonaws.com`).
    pub excluded_sources: Vec<String>,
}

/// One field condition of an advanced event selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// The field (`eventCategory`, `readOnly`, `eventSource`, `eventName`, …).
    pub field: String,
    /// `Equals`.
    pub equals: Vec<String>,
    /// `NotEquals`.
    pub not_equals: Vec<String>,
    /// `StartsWith`.
    pub starts_with: Vec<String>,
    /// `NotStartsWith`.
    pub not_starts_with: Vec<String>,
    /// `EndsWith`.
    pub ends_with: Vec<String>,
    /// `NotEndsWith`.
    pub not_ends_with: Vec<String>,
}

/// A Lambda function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// `State` (`Active`, `Pending`, `Inactive`, `Failed`).
    pub state: String,
    /// Why, when not active.
    pub state_reason: Option<String>,
    /// `LastUpdateStatus` (`Successful`, `InProgress`, `Failed`).
    pub last_update_status: Option<String>,
    /// The execution role.
    pub role: String,
    /// Its environment variables.
    pub environment: BTreeMap<String, String>,
}

/// An EventBridge rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Its name.
    pub name: String,
    /// `ENABLED`, `DISABLED`, …
    pub state: String,
    /// Its event pattern, if it has one.
    pub pattern: Option<String>,
    /// Its schedule expression, if it has one.
    pub schedule: Option<String>,
}

/// A CloudWatch metric alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmInfo {
    /// Its name.
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// Its actions are enabled.
    pub actions_enabled: bool,
    /// Has at least one alarm action.
    pub has_actions: bool,
    /// `TreatMissingData`.
    pub treat_missing_data: Option<String>,
}

/// Reads a deployment with one SDK configuration, in any Region.
#[derive(Debug, Clone)]
pub struct Deployment {
    sdk: SdkConfig,
}

impl Deployment {
    /// Reads with `sdk`'s credentials and endpoints.
    pub fn new(sdk: &SdkConfig) -> Self {
        Self { sdk: sdk.clone() }
    }

    fn in_region(&self, region: &Region) -> SdkConfig {
        self.sdk
            .to_builder()
            .region(aws_config::Region::new(region.as_str().to_owned()))
            .build()
    }

    /// The trails that log `region` (its own and the multi-Region trails seen from it), with
    /// their logging status and selectors.
    pub async fn trails(&self, region: &Region) -> Result<Vec<TrailInfo>, CallError> {
        let client = aws_sdk_cloudtrail::Client::new(&self.in_region(region));
        let listed = client
            .describe_trails()
            .include_shadow_trails(true)
            .send()
            .await
            .map_err(|e| call_error(Api::DescribeTrails, region, e))?;
        let mut trails = Vec::new();
        for t in listed.trail_list.unwrap_or_default() {
            let (Some(name), Some(arn)) = (t.name, t.trail_arn) else {
                continue;
            };
            let home_region = t.home_region.unwrap_or_else(|| region.to_string());
            let multi_region = t.is_multi_region_trail.unwrap_or(false);
            if !multi_region && home_region != region.as_str() {
                continue;
            }
            let status = client
                .get_trail_status()
                .name(&arn)
                .send()
                .await
                .map_err(|e| call_error(Api::GetTrailStatus, &arn, e))?;
            let selected = client
                .get_event_selectors()
                .trail_name(&arn)
                .send()
                .await
                .map_err(|e| call_error(Api::GetEventSelectors, &arn, e))?;
            let selectors = match selected.advanced_event_selectors {
                Some(advanced) if !advanced.is_empty() => Selectors::Advanced(
                    advanced
                        .into_iter()
                        .map(|s| {
                            s.field_selectors
                                .into_iter()
                                .map(|f| FieldSelector {
                                    field: f.field,
                                    equals: f.equals.unwrap_or_default(),
                                    not_equals: f.not_equals.unwrap_or_default(),
                                    starts_with: f.starts_with.unwrap_or_default(),
                                    not_starts_with: f.not_starts_with.unwrap_or_default(),
                                    ends_with: f.ends_with.unwrap_or_default(),
                                    not_ends_with: f.not_ends_with.unwrap_or_default(),
                                })
                                .collect()
                        })
                        .collect(),
                ),
                _ => Selectors::Basic(
                    selected
                        .event_selectors
                        .unwrap_or_default()
                        .into_iter()
                        .map(|s| BasicSelector {
                            read_write: s
                                .read_write_type
                                .map_or_else(|| "All".to_owned(), |r| r.as_str().to_owned()),
                            management: s.include_management_events.unwrap_or(true),
                            excluded_sources: s
                                .exclude_management_event_sources
                                .unwrap_or_default(),
                        })
                        .collect(),
                ),
            };
            trails.push(TrailInfo {
                name,
                arn,
                home_region,
                multi_region,
                organization: t.is_organization_trail.unwrap_or(false),
                logging: status.is_logging.unwrap_or(false),
                selectors,
            });
        }
        Ok(trails)
    }

    /// The configuration of the function `name` (a name or an ARN) in `region`.
    pub async fn function(&self, region: &Region, name: &str) -> Result<FunctionInfo, CallError> {
        let client = aws_sdk_lambda::Client::new(&self.in_region(region));
        let out = client
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .map_err(|e| call_error(Api::GetFunctionConfiguration, name, e))?;
        Ok(FunctionInfo {
            name: out.function_name.unwrap_or_else(|| name.to_owned()),
            arn: out.function_arn.unwrap_or_else(|| name.to_owned()),
            state: out
                .state
                .map_or_else(|| "Unknown".to_owned(), |s| s.as_str().to_owned()),
            state_reason: out.state_reason,
            last_update_status: out.last_update_status.map(|s| s.as_str().to_owned()),
            role: out.role.unwrap_or_default(),
            environment: out
                .environment
                .and_then(|e| e.variables)
                .map(|v| v.into_iter().collect())
                .unwrap_or_default(),
        })
    }

    /// The event source mappings of the function `name` in `region`: (source ARN, state).
    pub async fn mappings(
        &self,
        region: &Region,
        name: &str,
    ) -> Result<Vec<(String, String)>, CallError> {
        let client = aws_sdk_lambda::Client::new(&self.in_region(region));
        let out = client
            .list_event_source_mappings()
            .function_name(name)
            .send()
            .await
            .map_err(|e| call_error(Api::ListEventSourceMappings, name, e))?;
        Ok(out
            .event_source_mappings
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                (
                    m.event_source_arn.unwrap_or_default(),
                    m.state.unwrap_or_default(),
                )
            })
            .collect())
    }

    /// The rules of the default bus in `region` that have `target` (an ARN) as a target.
    pub async fn rules_targeting(
        &self,
        region: &Region,
        target: &str,
    ) -> Result<Vec<RuleInfo>, CallError> {
        let client = aws_sdk_eventbridge::Client::new(&self.in_region(region));
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = client
                .list_rule_names_by_target()
                .target_arn(target)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| call_error(Api::ListRuleNamesByTarget, target, e))?;
            names.extend(out.rule_names.unwrap_or_default());
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        let mut rules = Vec::new();
        for name in names {
            let rule = client
                .describe_rule()
                .name(&name)
                .send()
                .await
                .map_err(|e| call_error(Api::DescribeRule, &name, e))?;
            rules.push(RuleInfo {
                state: rule
                    .state
                    .map_or_else(|| "UNKNOWN".to_owned(), |s| s.as_str().to_owned()),
                pattern: rule.event_pattern,
                schedule: rule.schedule_expression,
                name,
            });
        }
        Ok(rules)
    }

    /// The alarms on `metric` of `namespace` in `region` (any dimensions).
    pub async fn alarms_on(
        &self,
        region: &Region,
        namespace: &str,
        metric: &str,
    ) -> Result<Vec<AlarmInfo>, CallError> {
        let client = aws_sdk_cloudwatch::Client::new(&self.in_region(region));
        let out = client
            .describe_alarms_for_metric()
            .namespace(namespace)
            .metric_name(metric)
            .send()
            .await
            .map_err(|e| call_error(Api::DescribeAlarmsForMetric, metric, e))?;
        Ok(out
            .metric_alarms
            .unwrap_or_default()
            .into_iter()
            .map(|a| AlarmInfo {
                name: a.alarm_name.unwrap_or_default(),
                state: a
                    .state_value
                    .map_or_else(|| "INSUFFICIENT_DATA".to_owned(), |s| s.as_str().to_owned()),
                actions_enabled: a.actions_enabled.unwrap_or(false),
                has_actions: a.alarm_actions.is_some_and(|v| !v.is_empty()),
                treat_missing_data: a.treat_missing_data,
            })
            .collect())
    }
}
