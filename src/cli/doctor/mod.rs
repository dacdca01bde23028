//! `doctor`: a deployment checked from the outside, with the operator's credentials, for
//! what a first deployment gets wrong. Reads only: the function's configuration (and through
//! it the guard's own settings, read by the function's own reader), the trails, the rules,
//! the member roles, the baseline rendered in each account, the heartbeat alarm. Prints a
//! checklist; exit 0 when nothing failed, 2 otherwise.

mod checks;

use aws_config::SdkConfig;
use console::style;
use futures::StreamExt;
use krg_aws::deployment::{Deployment, FunctionInfo};
use krg_aws::members::{MemberAccess, Organization};
use krg_aws::remote::Remote;
use krg_engine::baseline::Baseline;
use krg_engine::key::{AccountId, Region};
use krg_engine::outcome::Metric;
use krg_engine::tenancy::Members;
use serde_json::json;

use self::checks::{Check, Status};
use super::CliError;
use crate::config::{Config, DEFAULT_NAMESPACE, Options};

/// Member accounts entered at once.
const MEMBERS_AT_ONCE: usize = 16;

/// Failures listed one by one before the rest are counted.
const LISTED: usize = 20;

/// The parts of the checklist `--skip` can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// CloudTrail trails in each Region.
    Trail,
    /// The event rule, the schedule, the queue mapping and the spoke Regions' forwarding.
    Rules,
    /// AssumeRole into each member account (the member role trusts the hub role only: skip
    /// it unless your credentials are trusted by it too).
    Members,
    /// The baseline rendered and validated for each account.
    Baseline,
    /// The heartbeat alarm.
    Heartbeat,
}

/// Arguments of `doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The hub function: its name or ARN (the hub stack's FunctionName output).
    #[arg(long, env = "GUARD_FUNCTION")]
    function: String,
    /// Leave parts out (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    skip: Vec<Part>,
}

impl Args {
    /// The Region of `--function` when it is an ARN.
    pub fn function_region(&self) -> Option<String> {
        self.function
            .strip_prefix("arn:")
            .and_then(|rest| rest.split(':').nth(2))
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
    }
}

/// `doctor`: the checklist, printed; 0 when nothing failed, 2 otherwise.
pub async fn run(
    args: Args,
    sdk: &SdkConfig,
    region: Option<Region>,
    json: bool,
) -> Result<u8, CliError> {
    let hub = hub_region(&args.function, region, sdk).map_err(CliError::Doctor)?;
    let checks = diagnose(sdk, &hub, &args.function, &args.skip).await;
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"function": args.function, "region": hub, "ok": failed == 0, "checks": checks})
            )
            .expect("checks serialise")
        );
    } else {
        print(&args.function, &hub, &checks);
    }
    Ok(if failed == 0 { 0 } else { 2 })
}

/// The function's Region: an ARN's own, else `--region` / `AWS_REGION`, else the SDK's.
fn hub_region(function: &str, region: Option<Region>, sdk: &SdkConfig) -> Result<Region, String> {
    let from_arn = function
        .strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2))
        .map(str::parse::<Region>);
    match (from_arn, region, sdk.region()) {
        (Some(Ok(r)), _, _) => Ok(r),
        (Some(Err(e)), _, _) => Err(format!(
            "--function {function}: not a Lambda function ARN ({e})"
        )),
        (None, Some(r), _) => Ok(r),
        (None, None, Some(r)) => r
            .as_ref()
            .parse()
            .map_err(|e| format!("the SDK's Region {r} is not a Region name ({e})")),
        (None, None, None) => {
            Err("no Region: set AWS_REGION or --region, or pass the function's ARN".to_owned())
        }
    }
}

/// Every check of the deployment of `function` in `hub`, in order.
pub async fn diagnose(sdk: &SdkConfig, hub: &Region, function: &str, skip: &[Part]) -> Vec<Check> {
    let sdk = sdk
        .to_builder()
        .region(aws_config::Region::new(hub.as_str().to_owned()))
        .build();
    let d = Deployment::new(&sdk);
    let mut out = Vec::new();
    let f = match d.function(hub, function).await {
        Ok(f) => f,
        Err(e) => {
            out.push(Check::fail(
                "function",
                function,
                e.to_string(),
                "check the name (the hub stack's FunctionName output), the Region, and that your credentials may call lambda:GetFunctionConfiguration",
            ));
            return out;
        }
    };
    out.push(checks::function(&f));
    out.push(checks::mode(&f));

    // The guard's settings, read from its environment by its own reader and resolved with
    // the operator's credentials (an ssm: or s3:// baseline is fetched, as at start-up).
    let env = f.environment.clone();
    let lookup = |name: &str| match name {
        "AWS_REGION" => Some(hub.to_string()),
        _ => env.get(name).filter(|v| !v.is_empty()).cloned(),
    };
    let resolved = match Options::from_lookup(lookup) {
        Ok(options) => Config::resolve(options, &Remote::new(&sdk)).await,
        Err(e) => Err(e),
    };
    let config = match resolved {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::fail(
                "configuration",
                &f.name,
                e.to_string(),
                if e.transient {
                    "a read failed that may pass (throttled, or your credentials may not read the baseline): retry, or run doctor with read access to it"
                } else {
                    "the function refuses this configuration at start-up too: fix the stack parameter named above and redeploy"
                },
            ));
            return out;
        }
    };
    out.push(baseline_pin(&config, &env));
    let namespace = env
        .get("METRICS_NAMESPACE")
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let account: Option<AccountId> = f.arn.split(':').nth(4).and_then(|a| a.parse().ok());
    let partition = hub.partition();
    let mut regions = vec![hub.clone()];
    for r in &config.settings.sweep_regions {
        if !regions.contains(r) {
            regions.push(r.clone());
        }
    }

    let (members, listing) = member_accounts(&config, &sdk).await;
    out.extend(listing);
    if skip.contains(&Part::Baseline) {
        out.push(Check::skip("baseline", "accounts", "--skip baseline"));
    } else {
        let mut accounts: Vec<AccountId> = config.settings.tenancy.home.iter().cloned().collect();
        accounts.extend(members.iter().cloned());
        out.extend(baseline_in_accounts(&config, &accounts));
    }
    if skip.contains(&Part::Members) {
        out.push(Check::skip("member-role", "accounts", "--skip members"));
    } else if let Some(fleet) = &config.settings.tenancy.fleet {
        let access = MemberAccess::new(
            aws_sdk_sts::Client::new(&sdk),
            fleet.role.clone(),
            partition,
        );
        out.extend(member_roles(&access, &members).await);
    }

    if skip.contains(&Part::Trail) {
        out.push(Check::skip("trail", "Regions", "--skip trail"));
    } else {
        for r in &regions {
            out.push(match d.trails(r).await {
                Ok(trails) => checks::trail(r.as_str(), &trails),
                Err(e) => Check::fail(
                    "trail",
                    r.as_str(),
                    format!("cannot read the trails: {e}"),
                    "doctor needs cloudtrail:DescribeTrails, GetTrailStatus and GetEventSelectors",
                ),
            });
        }
    }

    if skip.contains(&Part::Rules) {
        out.push(Check::skip("rule", "Regions", "--skip rules"));
    } else {
        out.extend(rules(&d, hub, &f, &regions, account.as_ref(), partition).await);
    }

    if skip.contains(&Part::Heartbeat) {
        out.push(Check::skip("heartbeat", hub.as_str(), "--skip heartbeat"));
    } else {
        let heartbeat = Metric::SweepCompleted.name();
        out.push(match d.alarms_on(hub, &namespace, heartbeat).await {
            Ok(alarms) => checks::heartbeat(hub.as_str(), &alarms),
            Err(e) => Check::fail(
                "heartbeat",
                hub.as_str(),
                format!("cannot read the alarms: {e}"),
                "doctor needs cloudwatch:DescribeAlarmsForMetric",
            ),
        });
    }
    out
}

/// The baseline's source and digest, and whether the function pins it.
fn baseline_pin(config: &Config, env: &std::collections::BTreeMap<String, String>) -> Check {
    let baseline = &config.settings.baseline;
    let origin = baseline.describe();
    let digests: Vec<(String, String)> = match baseline {
        Baseline::Primary => {
            return Check::pass(
                "baseline",
                origin,
                "mirrors each key's primary (no document to pin)",
            );
        }
        Baseline::Template(t) => vec![(String::new(), t.sha256().to_owned())],
        Baseline::Catalogue(c) => c
            .templates()
            .map(|(n, t)| (n.to_owned(), t.sha256().to_owned()))
            .collect(),
    };
    let listed = digests
        .iter()
        .map(|(n, d)| format!("{n}{}sha256:{d}", if n.is_empty() { "" } else { " " }))
        .collect::<Vec<_>>()
        .join(", ");
    if env.get("BASELINE_SHA256").is_some_and(|v| !v.is_empty()) {
        // Config::resolve refused a mismatch: reaching here means the pin holds.
        Check::pass("baseline", origin, format!("{listed} (pinned, matches)"))
    } else {
        let pin = match baseline {
            Baseline::Template(t) => t.sha256().to_owned(),
            _ => digests
                .iter()
                .map(|(n, d)| format!("{n}={d}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        Check::warn(
            "baseline",
            origin,
            format!("{listed} (not pinned: whoever can write the baseline steers every write)"),
            format!("pin it: deploy with BaselineSha256={pin}"),
        )
    }
}

/// The member accounts the function works in (listed, or the organisation's as listed with
/// the operator's credentials), with a check when the listing failed.
async fn member_accounts(config: &Config, sdk: &SdkConfig) -> (Vec<AccountId>, Vec<Check>) {
    let Some(fleet) = &config.settings.tenancy.fleet else {
        return (Vec::new(), Vec::new());
    };
    let home = config.settings.tenancy.home.as_ref();
    let accounts = match &fleet.members {
        Members::Listed(ids) => ids.iter().cloned().collect::<Vec<_>>(),
        Members::Organization => {
            match Organization::new(aws_sdk_organizations::Client::new(sdk))
                .accounts()
                .await
            {
                Ok(ids) => ids,
                Err(e) => {
                    return (
                        Vec::new(),
                        vec![Check::fail(
                            "member-accounts",
                            "organization",
                            format!("cannot list the organisation's accounts: {e}"),
                            "run doctor in the management or delegated administrator account (organizations:ListAccounts)",
                        )],
                    );
                }
            }
        }
    };
    (
        accounts.into_iter().filter(|a| Some(a) != home).collect(),
        Vec::new(),
    )
}

/// The baseline rendered and validated for each account: one pass for all, one failure per
/// account that would refuse it.
fn baseline_in_accounts(config: &Config, accounts: &[AccountId]) -> Vec<Check> {
    if matches!(config.settings.baseline, Baseline::Primary) {
        return vec![Check::skip(
            "baseline-render",
            "accounts",
            "mirrors each key's primary: rendered per key, at run time",
        )];
    }
    let failed: Vec<Check> = accounts
        .iter()
        .filter_map(|a| {
            let problems = config.problems_in(a);
            (!problems.is_empty()).then(|| {
                Check::fail(
                    "baseline-render",
                    a.as_str(),
                    problems.join("; "),
                    "every write in this account would be refused: fix the baseline, or trust what it grants (TrustedAccounts, TrustedOrgs)",
                )
            })
        })
        .collect();
    let mut out = vec![];
    if failed.len() < accounts.len() {
        out.push(Check::pass(
            "baseline-render",
            "accounts",
            format!(
                "renders and validates in {} of {} accounts",
                accounts.len() - failed.len(),
                accounts.len()
            ),
        ));
    }
    out.extend(limited(failed));
    out
}

/// AssumeRole into each member account, a few at a time.
async fn member_roles(access: &MemberAccess, members: &[AccountId]) -> Vec<Check> {
    if members.is_empty() {
        return vec![Check::skip(
            "member-role",
            "accounts",
            "no member accounts listed",
        )];
    }
    let results: Vec<(AccountId, Result<(), String>)> = futures::stream::iter(members)
        .map(|a| async move {
            (
                a.clone(),
                access
                    .credentials(a)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            )
        })
        .buffer_unordered(MEMBERS_AT_ONCE)
        .collect()
        .await;
    let mut failed: Vec<Check> = results
        .into_iter()
        .filter_map(|(a, r)| r.err().map(|e| (a, e)))
        .map(|(a, e)| {
            Check::fail(
                "member-role",
                a.as_str(),
                e,
                "deploy infra/sam/member.yaml (the StackSet) to this account with the hub's HubRoleArn and ExternalId; if your credentials are not ones the member role trusts, run with --skip members",
            )
        })
        .collect();
    failed.sort_by(|a, b| a.target.cmp(&b.target));
    let mut out = vec![];
    if failed.len() < members.len() {
        out.push(Check::pass(
            "member-role",
            "accounts",
            format!(
                "assumed in {} of {} member accounts",
                members.len() - failed.len(),
                members.len()
            ),
        ));
    }
    out.extend(limited(failed));
    out
}

/// The first [`LISTED`] failures, and one line counting the rest.
fn limited(mut failed: Vec<Check>) -> Vec<Check> {
    if failed.len() > LISTED {
        let rest = failed.split_off(LISTED);
        let first = &rest[0];
        failed.push(Check::fail(
            first.check,
            format!("{} more accounts", rest.len()),
            "fail the same way (--output json lists each)",
            first.fix.clone().unwrap_or_default(),
        ));
    }
    failed
}

/// The hub's event rule, schedule and queue mapping, and each spoke Region's forwarding.
async fn rules(
    d: &Deployment,
    hub: &Region,
    f: &FunctionInfo,
    regions: &[Region],
    account: Option<&AccountId>,
    partition: &str,
) -> Vec<Check> {
    let mut out = Vec::new();
    let unreadable = |check: &'static str, r: &Region, e: String| {
        Check::fail(
            check,
            r.as_str(),
            format!("cannot read the rules: {e}"),
            "doctor needs events:ListRuleNamesByTarget and events:DescribeRule",
        )
    };
    match d.rules_targeting(hub, &f.arn).await {
        Ok(rules) => {
            out.push(checks::event_rule(
                "rule",
                hub.as_str(),
                &rules,
                "redeploy the hub stack: its KmsApiCall rule targets the function",
            ));
            out.push(checks::schedule(hub.as_str(), &rules));
        }
        Err(e) => out.push(unreadable("rule", hub, e.to_string())),
    }
    if let Some(url) = f
        .environment
        .get("SWEEP_QUEUE_URL")
        .filter(|v| !v.is_empty())
    {
        let queue = url.rsplit('/').next().unwrap_or_default();
        out.push(match d.mappings(hub, &f.name).await {
            Ok(m) => match m
                .iter()
                .find(|(arn, _)| arn.ends_with(&format!(":{queue}")))
            {
                Some((_, state)) if state == "Enabled" => Check::pass(
                    "queue-mapping",
                    queue,
                    "the function consumes the sweep queue",
                ),
                Some((_, state)) => Check::fail(
                    "queue-mapping",
                    queue,
                    format!("the mapping is {state}: planned sweep items are never worked"),
                    "enable it (aws lambda update-event-source-mapping --enabled)",
                ),
                None => Check::fail(
                    "queue-mapping",
                    queue,
                    "no event source mapping from the sweep queue",
                    "redeploy the hub stack (its SweepWork mapping)",
                ),
            },
            Err(e) => Check::fail(
                "queue-mapping",
                queue,
                format!("cannot read the mappings: {e}"),
                "doctor needs lambda:ListEventSourceMappings",
            ),
        });
    }
    let Some(account) = account else {
        return out;
    };
    let bus = format!("arn:{partition}:events:{hub}:{account}:event-bus/default");
    if partition == "aws" && hub.as_str() != "us-east-1" {
        let east: Region = "us-east-1".parse().expect("a Region name");
        out.push(match d.rules_targeting(&east, &bus).await {
            Ok(rules) => checks::iam_forwarding(hub.as_str(), &rules),
            Err(e) => unreadable("iam-forwarding", &east, e.to_string()),
        });
    }
    for r in regions.iter().filter(|r| *r != hub) {
        out.push(match d.rules_targeting(r, &bus).await {
            Ok(rules) => checks::event_rule(
                "forwarding",
                r.as_str(),
                &rules,
                &format!(
                    "deploy infra/sam/spoke.yaml in {r} with HubRegion={hub}: without it this Region's KMS calls never reach the guard (the sweep still finds the drift)"
                ),
            ),
            Err(e) => unreadable("forwarding", r, e.to_string()),
        });
    }
    out
}

/// The checklist for a terminal.
fn print(function: &str, hub: &Region, checks: &[Check]) {
    println!("kms-replica-guard doctor: {function} ({hub})");
    for c in checks {
        let mark = match c.status {
            Status::Pass => style(c.status.mark()).green(),
            Status::Warn => style(c.status.mark()).yellow(),
            Status::Fail => style(c.status.mark()).red().bold(),
            Status::Skip => style(c.status.mark()).dim(),
        };
        println!("{mark} {:<16} {:<24} {}", c.check, c.target, c.detail);
        if let Some(fix) = &c.fix {
            println!("  {:<16} {}", "", style(format!("→ {fix}")).dim());
        }
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    println!(
        "{} passed, {} warnings, {} failed",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    );
}
