//! Every setting, declared once: its variable, type, parser, CLI flag, stack parameter and
//! documentation. From these declarations come [`Options`] and its reader (the function's
//! environment and the CLI's flags go through the same parsers), the CLI's flags
//! ([`crate::cli`]), the configuration table of the book and the settings of the stacks'
//! contract (`cargo xtask docs`). Adding a setting is one entry here plus the code that uses it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use krg_engine::key::{AccountId, Region, RoleArn};
use krg_engine::tenancy::Members;
use krg_engine::{BaselineMatch, Mode};

use super::parse::*;
use super::{BaselineSource, ConfigError, err};

/// How a setting appears on the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cli {
    /// Not a flag: the CLI decides it itself (`--apply`, `sweep --regions`) or never uses it.
    No,
    /// `--LONG`, falling back to the variable.
    Flag {
        /// The flag's name.
        long: &'static str,
        /// Left out of `--help` (tuning knobs).
        hidden: bool,
        /// One line of `--help`.
        help: &'static str,
    },
}

/// Where a setting is documented in the configuration table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// A row of its own.
    Own {
        /// The default, as the reader sees it.
        default: &'static str,
        /// What it does.
        doc: &'static str,
    },
    /// In the row of the named variable (settings that go together).
    With(&'static str),
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    /// The environment variable.
    pub name: &'static str,
    /// Variables read when it is unset, in order.
    pub aliases: &'static [&'static str],
    /// Its CLI flag.
    pub cli: Cli,
    /// The SAM parameter and the CDK context key that set it ("" when the stacks do not).
    pub stack: (&'static str, &'static str),
    /// The value that behaves as the variable unset, when one does (a test holds the two
    /// equal); `None` when the default depends on something else (the function's Region, the
    /// catalogue) or is "none".
    pub default: Option<&'static str>,
    /// Its documentation.
    pub row: Row,
    /// Its parser, for a value's validity only.
    pub check: fn(&str) -> Result<(), String>,
}

/// A variable read by something else than [`Options`] (the runtime, the SDK), documented in
/// the same table.
#[derive(Debug, Clone, Copy)]
pub struct External {
    /// The variables, as the table shows them.
    pub names: &'static str,
    /// The default.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// The value of `var` (else of its first alias that is set) parsed by `parse`; an error names
/// the variable actually read.
fn read<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    aliases: &'static [&'static str],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    for name in std::iter::once(&var).chain(aliases) {
        if let Some(v) = get(name) {
            return parse(&v).map(Some).map_err(|problem| err(name, problem));
        }
    }
    Ok(None)
}

/// `Some` of the literal given, `None` without one.
macro_rules! optional {
    () => {
        None
    };
    ($value:literal) => {
        Some($value)
    };
}

macro_rules! settings {
    ($(
        $field:ident : $ty:ty = $var:literal $(| $alias:literal)* => $parse:expr;
            $cli:expr,
            stack: ($sam:literal, $cdk:literal),
            $(default: $default:literal,)?
            row: $row:expr;
    )*) => {
        /// The configuration as given, each value parsed into its type; `None` means "not
        /// set, use the default". [`super::Config::resolve`] checks the whole and applies the
        /// defaults. One field per [`VARS`] entry.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Options {
            $(
                #[doc = concat!("`", $var, "`.")]
                pub $field: Option<$ty>,
            )*
        }

        impl Options {
            /// Parses the variables read through `get` (the process environment, a map in
            /// tests, the CLI's flags).
            pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
                Ok(Self {
                    $( $field: read(&get, $var, &[$($alias),*], $parse)?, )*
                })
            }
        }

        /// Every setting, in the order the configuration table lists them.
        pub static VARS: &[Var] = &[
            $(
                Var {
                    name: $var,
                    aliases: &[$($alias),*],
                    cli: $cli,
                    stack: ($sam, $cdk),
                    default: optional!($($default)?),
                    row: $row,
                    check: {
                        fn check(v: &str) -> Result<(), String> {
                            ($parse)(v).map(|_| ())
                        }
                        check
                    },
                },
            )*
        ];
    };
}

settings! {
    mode: Mode = "REMEDIATION_MODE" => parse_from_str::<Mode>;
        Cli::No,
        stack: ("RemediationMode", "remediationMode"),
        default: "dry-run",
        row: Row::Own { default: r#"`dry-run`"#, doc: r#"`dry-run`: detect, report, metric, never write. `enforce`: rewrite drifted replicas and verify."# };
    baseline: BaselineSource = "BASELINE_SOURCE" => parse_from_str::<BaselineSource>;
        Cli::Flag { long: "baseline", hidden: false, help: r#"Baseline: `primary`, `file:PATH`, `ssm:NAME`, `s3://BUCKET/KEY` or a JSON document; or a catalogue of named baselines: `dir:PATH`, `ssm:/PATH/`, `s3://BUCKET/PREFIX/`."# },
        stack: ("BaselineSource", "baselineSource"),
        default: "primary",
        row: Row::Own { default: r#"`primary`"#, doc: r#"`primary`: mirror the primary key's current policy, rewritten for each replica's Region (its own key ARN, `kms:ViaService` values, regional service principals such as `logs.us-east-1.amazonaws.com`; with `MIRROR_REWRITE=on` also ARNs of the key's own account and Region in conditions; the outcome's `rewrites` lists what changed). `file:PATH`: a JSON template on disk. `ssm:NAME`: an SSM parameter (decrypted). `s3://BUCKET/KEY`: an S3 object. A literal JSON document (starts with `{`). Or a **catalogue** of named baselines ([below](#a-catalogue-of-baselines)): `dir:PATH` (every `NAME.json` in the directory), `ssm:/PATH/` (every parameter directly under the path, named by its last segment; GetParametersByPath), `s3://BUCKET/PREFIX/` (every `NAME.json` object directly under the prefix; ListObjectsV2 + GetObject). SSM and S3 baselines are read once per execution environment, on its first event (the cold start); a missing one fails every invocation with a configuration error and nothing is written. Every baseline of a catalogue is rendered and validated at that cold start; one invalid file refuses the whole configuration, every problem listed with the file it is in."# };
    baseline_tag: String = "BASELINE_TAG" => parse_text;
        Cli::Flag { long: "baseline-tag", hidden: false, help: r#"Catalogue: the tag a key names its baseline with."# },
        stack: ("BaselineTag", "baselineTag"),
        default: "kms-replica-guard:baseline",
        row: Row::Own { default: r#"`kms-replica-guard:baseline`"#, doc: r#"Catalogue only: the tag whose value names a key's baseline. Read from the replica; when the replica has none, from its primary (one ListResourceTags per key and invocation, the primary's shared by its replicas). The value `primary` means mirror the primary. A name the catalogue does not have fails that key (`NonRetryable`, the reason names the tag and the names there are), never a write."# };
    baseline_default: String = "BASELINE_DEFAULT" => parse_text;
        Cli::Flag { long: "baseline-default", hidden: false, help: r#"Catalogue: the baseline of keys without that tag (a name, or `primary`)."# },
        stack: ("BaselineDefault", "baselineDefault"),
        row: Row::Own { default: r#"`default` if the catalogue has it"#, doc: r#"Catalogue only: the baseline of keys neither copy tags: a name, or `primary`. Required when the catalogue has no `default`."# };
    baseline_match: BaselineMatch = "BASELINE_MATCH" => parse_from_str::<BaselineMatch>;
        Cli::Flag { long: "match", hidden: false, help: r#"`exact` (the policy is the baseline) or `contains` (the baseline's statements must be present; extra statements that grant nothing public, cross-account or administrative are kept)."# },
        stack: ("BaselineMatch", "baselineMatch"),
        default: "exact",
        row: Row::Own { default: r#"`exact`"#, doc: r#"`exact`: the live policy must be equivalent to the baseline. `contains`: every baseline statement must be present (by equivalence); extra statements may stay unless they grant anything `public`, `cross-account` or `admin` (the [access explanation](outcomes.md)'s rules) or take away what the baseline allows (a Deny, say). A rewrite writes the baseline plus the extras that may stay; the outcome's `extras` lists each extra `kept` or `removed` with its `severity` and `why`. Verification and the lockout check work on that merged document."# };
    mirror_rewrite: bool = "MIRROR_REWRITE" => parse_switch;
        Cli::Flag { long: "mirror-rewrite", hidden: false, help: r#"Mirroring also rewrites ARNs of the key's own account and Region in conditions."# },
        stack: ("MirrorRewrite", "mirrorRewrite"),
        default: "off",
        row: Row::Own { default: r#"`off`"#, doc: r#"`on`: in `primary` mode also rewrite ARNs of the key's own account and the primary's Region found in conditions (e.g. the CloudWatch Logs `kms:EncryptionContext:aws:logs:arn`) to the replica's Region. Other accounts' ARNs are never rewritten."# };
    remediator: RoleArn = "REMEDIATOR_ROLE_ARN" => parse_role;
        Cli::Flag { long: "remediator-role", hidden: false, help: r#"The remediator's role ARN, which the lockout check keeps able to manage policies."# },
        stack: ("", ""),
        row: Row::Own { default: r#"—"#, doc: r#"The function's execution role. A `PutKeyPolicy` made under it is a no-op only when the policy it wrote (`requestParameters.policy`) is equivalent to what the guard writes for that key (decided without a call for a single template in `exact` mode; otherwise the event is reconciled like any other and finds the key in sync), so whoever else uses the role is seen. The lockout check makes sure every baseline still lets it (or the account root) call `kms:PutKeyPolicy`. Without it only the account root is checked."# };
    metrics_namespace: String = "METRICS_NAMESPACE" => parse_namespace;
        Cli::No,
        stack: ("MetricsNamespace", "metricsNamespace"),
        default: "KmsReplicaGuard",
        row: Row::Own { default: r#"`KmsReplicaGuard`"#, doc: r#"CloudWatch namespace."# };
    exclude_tag: String = "EXCLUDE_TAG" => parse_text;
        Cli::Flag { long: "exclude-tag", hidden: false, help: r#"Keys carrying this tag key are left alone (`off`: no exclusion by tag)."# },
        stack: ("ExcludeTag", "excludeTag"),
        default: "kms-replica-guard:exclude",
        row: Row::Own { default: r#"`kms-replica-guard:exclude`"#, doc: r#"Keys carrying this tag key are not **written**: a drifted one is `skipped`, but still assessed: its outcome keeps its `exposure`, and a `public` or `cross-account` exposure counts in `ExposureDrift` and is published like any drift (the exemption stops the write, never the alarm). Its value may carry an end: `until=2026-12-31` (through that day, UTC) or `until=2026-12-31T18:00:00Z` (an RFC 3339 time), alone or in other text (`DR drill until=2026-12-31`); after it the key is reconciled again (`exemption_ended`, `ExemptionExpired`, a warning, at every reconcile until the tag is removed). **Fail closed:** a value whose end cannot be read (`until=31/12/2026`) excludes nothing: the key is reconciled and the outcome's `exemption_ignored` names the value. Any other value excludes until the tag goes, unless `EXEMPTION_MAX_DAYS` says otherwise. Setting the tag is itself news (`ExemptionGranted`, an event naming who tagged). The tags are read (ListResourceTags) only for a drifted key, just before a write (with a baseline catalogue, for every key, once per invocation). `off` turns exclusion by tag off."# };
    exemption_max_days: u64 = "EXEMPTION_MAX_DAYS" => parse_days;
        Cli::Flag { long: "exemption-max-days", hidden: false, help: r#"Exemptions without an end, or longer than this many days, are not honoured."# },
        stack: ("ExemptionMaxDays", "exemptionMaxDays"),
        row: Row::Own { default: r#"—"#, doc: r#"The longest exemption honoured, in days (1–3650): an exclude tag without an end, or ending later than that from now, does not exclude (`exemption_ignored` says why)."# };
    trusted_accounts: BTreeSet<AccountId> = "TRUSTED_ACCOUNTS" => parse_accounts;
        Cli::Flag { long: "trusted-accounts", hidden: false, help: r#"Accounts besides the key's own that a written policy may grant (comma-separated)."# },
        stack: ("TrustedAccounts", "trustedAccounts"),
        row: Row::Own { default: r#"—"#, doc: r#"Whom a policy the guard writes may grant access besides the key's own account: comma-separated 12-digit account ids, and organisation ids (`o-…`). By default nobody else: in organisation mode member accounts do not trust each other. The guardrails (below, [Threat model](threat-model.md)) and every severity are judged against this set."# };
    trusted_orgs: BTreeSet<String> = "TRUSTED_ORGS" => parse_orgs;
        Cli::Flag { long: "trusted-orgs", hidden: false, help: r#"Organisations (o-...) a written policy may grant (comma-separated)."# },
        stack: ("TrustedOrgs", "trustedOrgs"),
        row: Row::With("TRUSTED_ACCOUNTS");
    baseline_sha256: Digests = "BASELINE_SHA256" => parse_digests;
        Cli::Flag { long: "baseline-sha256", hidden: false, help: r#"The SHA-256 the baseline must have (64 hex digits), or NAME=HEX pairs for a catalogue."# },
        stack: ("BaselineSha256", "baselineSha256"),
        row: Row::Own { default: r#"—"#, doc: r#"Pins the baseline's bytes: the hex SHA-256 of a single baseline as read from its source (`sha256sum FILE`), or comma-separated `NAME=HEX` pairs for a catalogue (every entry needs its pair). A mismatch, an entry without a pair or a pair without an entry is a configuration error naming the source and both digests; nothing is written. Every cold start logs each baseline's digest, and outcomes carry `baseline_sha256`."# };
    baseline_scope: BTreeMap<String, BTreeSet<AccountId>> = "BASELINE_SCOPE" => parse_scope;
        Cli::Flag { long: "baseline-scope", hidden: false, help: r#"Catalogue: the accounts whose keys may pick a baseline by tag (NAME=ACCOUNT|ACCOUNT,...)."# },
        stack: ("BaselineScope", "baselineScope"),
        row: Row::Own { default: r#"—"#, doc: r#"Catalogue only: the accounts whose keys may select a baseline by tag, `NAME=ACCOUNT\|ACCOUNT,...` (e.g. `partner-share=111122223333`). A baseline not listed may be selected anywhere; the default baseline is always allowed. A key whose tag selects a baseline outside its scope fails (`NonRetryable`, nothing written) and its live policy is still judged against the default baseline."# };
    sweep_regions: Vec<Region> = "SWEEP_REGIONS" => parse_regions;
        Cli::No,
        stack: ("SweepRegions", "sweepRegions"),
        row: Row::Own { default: r#"the function's Region"#, doc: r#"Comma-separated Regions a scheduled sweep covers. A direct `{"sweep": {"regions": [...]}}` payload overrides it."# };
    concurrency: u64 = "CONCURRENCY" => parse_number::<1, 64>;
        Cli::Flag { long: "concurrency", hidden: false, help: r#"Replicas checked at once (per Region in a sweep)."# },
        stack: ("", ""),
        default: "32",
        row: Row::Own { default: r#"`32`"#, doc: r#"Replicas reconciled at once (per Region in a sweep; Regions run in parallel). A Region read at its GetKeyPolicy pace needs about that pace × the call latency in flight (800/s × 25 ms = 20); a drifted replica gives its slot back while its write waits for PutKeyPolicy's pace. Each slot costs memory and a socket, not quota: the `RATE_*` limits pace the calls. A sweep never has more than 850 calls in flight (a Lambda environment has 1,024 file descriptors), whatever this × its Regions and accounts."# };
    backup_bucket: String = "BACKUP_BUCKET" => parse_text;
        Cli::Flag { long: "backup-bucket", hidden: false, help: r#"S3 bucket for backups of every policy before it is overwritten (and `restore latest`)."# },
        stack: ("", ""),
        row: Row::Own { default: r#"—, `kms-replica-guard/`"#, doc: r#"Before every write the previous policy is stored at `s3://BUCKET/PREFIX/ACCOUNT/REGION/KEY_ID/YYYYMMDDTHHMMSS.mmmZ.json` (with the reason and the event id). If the backup fails, nothing is written. Without a bucket the previous policy is only in the log line before the write. The bucket also holds the write records (`PREFIX/writes/…`) and the write claims that keep concurrent invocations from writing one fix twice (`PREFIX/claims/…`, needs `s3:DeleteObject` there)."# };
    backup_prefix: String = "BACKUP_PREFIX" => parse_text;
        Cli::Flag { long: "backup-prefix", hidden: true, help: r#"Key prefix of backups, write records and claims in the bucket."# },
        stack: ("", ""),
        default: "kms-replica-guard/",
        row: Row::With("BACKUP_BUCKET");
    flap_max: u64 = "FLAP_MAX" => parse_number::<1, 1000>;
        Cli::Flag { long: "flap-max", hidden: true, help: r#"The flap guard: writes of one key allowed within --flap-window."# },
        stack: ("FlapMax", "flapMax"),
        default: "5",
        row: Row::Own { default: r#"`5`, `1h`"#, doc: r#"A replica already rewritten `FLAP_MAX` times within `FLAP_WINDOW` (`3600`, `90m`, `1h`, `2d`) is left alone: `skipped` with a reason starting `flapping`, counted in `FlapSuppressed`. Only writes KMS accepted count (a denied or throttled write stays `failed`). The history is the write records in `BACKUP_BUCKET`, dated by S3's own `LastModified` (never by their names or bodies: a record or claim dated in the future, beyond 5 minutes of clock skew, is ignored and logged as suspicious), so it survives cold starts; without a bucket it is kept per execution environment."# };
    flap_window: Duration = "FLAP_WINDOW" => parse_duration;
        Cli::Flag { long: "flap-window", hidden: true, help: r#"The flap guard's window (3600, 90m, 1h, 2d)."# },
        stack: ("FlapWindow", "flapWindow"),
        default: "1h",
        row: Row::With("FLAP_MAX");
    rate_get_key_policy: u64 = "RATE_GET_KEY_POLICY" => parse_number::<1, 100_000>;
        Cli::Flag { long: "rate-get-key-policy", hidden: true, help: r#"GetKeyPolicy calls per second and Region."# },
        stack: ("RateGetKeyPolicy", "rateGetKeyPolicy"),
        default: "800",
        row: Row::Own { default: r#"`800`, `12`, `1600`, `80`, `80`"#, doc: r#"Client-side requests per second per Region, under the default KMS quotas (GetKeyPolicy 1000/s, PutKeyPolicy 15/s, DescribeKey 2000/s per account and Region) with headroom for everything else in the account: the **function's** budget per account and Region, shared by its execution environments (below). Lower them for accounts with lower quotas. Throttling that still happens is retried by the SDK (4 attempts, backoff)."# };
    rate_put_key_policy: u64 = "RATE_PUT_KEY_POLICY" => parse_number::<1, 100_000>;
        Cli::Flag { long: "rate-put-key-policy", hidden: true, help: r#"PutKeyPolicy calls per second and Region."# },
        stack: ("RatePutKeyPolicy", "ratePutKeyPolicy"),
        default: "12",
        row: Row::With("RATE_GET_KEY_POLICY");
    rate_describe_key: u64 = "RATE_DESCRIBE_KEY" => parse_number::<1, 100_000>;
        Cli::Flag { long: "rate-describe-key", hidden: true, help: r#"DescribeKey calls per second and Region."# },
        stack: ("RateDescribeKey", "rateDescribeKey"),
        default: "1600",
        row: Row::With("RATE_GET_KEY_POLICY");
    rate_list_keys: u64 = "RATE_LIST_KEYS" => parse_number::<1, 100_000>;
        Cli::Flag { long: "rate-list-keys", hidden: true, help: r#"ListKeys pages per second and Region."# },
        stack: ("", ""),
        default: "80",
        row: Row::With("RATE_GET_KEY_POLICY");
    rate_list_resource_tags: u64 = "RATE_LIST_RESOURCE_TAGS" => parse_number::<1, 100_000>;
        Cli::Flag { long: "rate-list-resource-tags", hidden: true, help: r#"ListResourceTags pages per second and Region."# },
        stack: ("", ""),
        default: "80",
        row: Row::With("RATE_GET_KEY_POLICY");
    rate_instances: u64 = "RATE_INSTANCES" => parse_number::<0, 10_000>;
        Cli::Flag { long: "rate-instances", hidden: true, help: r#"Processes sharing those budgets (the CLI alone: 1)."# },
        stack: ("", ""),
        default: "1",
        row: Row::Own { default: r#"`1`"#, doc: r#"Execution environments that may run at once (the stacks pass the reserved concurrency). KMS quotas are per account and Region, the limiters per process: each environment paces at `RATE_* / RATE_INSTANCES`, e.g. PutKeyPolicy 12/s with reserved concurrency 2 is 6/s each (one every 167 ms), with 5 it is 2.4/s each; 0 or unset is no sharing (unreserved concurrency can then exceed the quota, and the SDK retries the throttling)."# };
    creating_retry_attempts: u64 = "CREATING_RETRY_ATTEMPTS" => parse_number::<1, 20>;
        Cli::Flag { long: "creating-retry-attempts", hidden: true, help: r#"Attempts while a fresh replica is still being created."# },
        stack: ("", ""),
        default: "8",
        row: Row::Own { default: r#"`8`, `500`"#, doc: r#"Bounded backoff while a fresh replica is not yet visible, a key is `Updating`, or a write's re-reads still return the previous policy (0.5, 1, 2, 4, 8, 8, 8 s)."# };
    creating_retry_base_ms: u64 = "CREATING_RETRY_BASE_MS" => parse_number::<1, 60_000>;
        Cli::Flag { long: "creating-retry-base-ms", hidden: true, help: r#"First delay of those attempts, in milliseconds."# },
        stack: ("", ""),
        default: "500",
        row: Row::With("CREATING_RETRY_ATTEMPTS");
    member_role: String = "MEMBER_ROLE_NAME" => parse_text;
        Cli::Flag { long: "role-name", hidden: false, help: r#"The role assumed in member accounts (the member stack's MemberRoleName)."# },
        stack: ("MemberRoleName", "memberRoleName"),
        row: Row::Own { default: r#"—"#, doc: r#"Heal other accounts too: the role (name, or `path/name`) the hub assumes in a member account (`arn:PARTITION:iam::ACCOUNT:role/NAME`, session name `kms-replica-guard`) for an event or sweep item of that account. Unset: this account only (an event from another account is `skipped`, counted in `AccountNotAllowed`). Everything account-specific is then the target account's: `{{AccountId}}`, the lockout check (the baseline must keep the **member role**, or the account root, able to call `kms:PutKeyPolicy` — checked at start-up for a member account), own-event detection (the member role's session is the function in that account), backup and claim paths, `account` in outcomes. Credentials are cached per account until 5 minutes before they expire and shared by that account's clients in every Region; clients and rate limits are per account and Region. A refused AssumeRole is a `NonRetryable` failure naming the role and the account; a throttled one is `Retryable`; both count in `AccountNotEntered`."# };
    member_read_role: String = "MEMBER_READ_ROLE_NAME" => parse_text;
        Cli::Flag { long: "read-role-name", hidden: false, help: r#"With --security-hub on: the read-only role findings are imported through in member accounts (the member stack's detector role, which holds that grant)."# },
        stack: ("DetectorMemberRoleName", "detectorMemberRoleName"),
        row: Row::Own { default: r#"`MEMBER_ROLE_NAME`"#, doc: r#"The role the detector function assumes in member accounts to read keys and post findings and Config answers (the member stack's read-only detector role), so that the function that answers Config holds no write anywhere; the CLI's findings (`--security-hub on`) go through it too. `MEMBER_ROLE_NAME` still names the role that writes, which the lockout check and own-call detection are about. Needs `MEMBER_ROLE_NAME`; the remediator ignores it."# };
    member_external_id: String = "MEMBER_EXTERNAL_ID" => parse_text;
        Cli::Flag { long: "external-id", hidden: false, help: r#"The external id the member role's trust policy asks for, if any."# },
        stack: ("MemberExternalId", "memberExternalId"),
        row: Row::Own { default: r#"—"#, doc: r#"Sent with every AssumeRole when the member role's trust policy requires an external id."# };
    member_accounts: Members = "MEMBER_ACCOUNTS" => parse_from_str::<Members>;
        Cli::Flag { long: "accounts", hidden: false, help: r#"Member accounts to work in: comma-separated 12-digit ids, or `organization` (every ACTIVE account Organizations lists). Needs --role-name."# },
        stack: ("MemberAccounts", "memberAccounts"),
        row: Row::Own { default: r#"—"#, doc: r#"Required with `MEMBER_ROLE_NAME` (start-up fails with a configuration error otherwise): a comma-separated list of 12-digit account ids, or `organization` for every `ACTIVE` account Organizations lists (ListAccounts, every page, re-read after 15 minutes; the hub must be the management account or a delegated administrator). The hub's own account is always healed with its own credentials. Any other account: `skipped`, never an AssumeRole."# };
    sweep_queue_url: String = "SWEEP_QUEUE_URL" => parse_text;
        Cli::No,
        stack: ("", ""),
        row: Row::Own { default: r#"—"#, doc: r#"A scheduled sweep is then *planned*, not run: one work item per (account, Region), `{"sweep": {"account": "…", "regions": ["…"]}}`, sent with SendMessageBatch to this queue, which the same function consumes through an event-source mapping (`ReportBatchItemFailures`: it answers `{"batchItemFailures": [...]}` with the items that failed, so SQS retries those alone and moves the ones that keep failing to the queue's DLQ). Unset: the sweep runs inline in one invocation (fine for one account and a few Regions)."# };
    event_bus: String = "EVENT_BUS" => parse_event_bus;
        Cli::No,
        stack: ("", ""),
        default: "default",
        row: Row::Own { default: r#"`default`"#, doc: r#"Every drift found (dry-run or enforce) is put on this EventBridge bus (a name or ARN, in the function's Region): `source` `kms-replica-guard`, `detail-type` `Replica Key Policy Drift Detected` / `Replica Key Policy Remediated` / `Replica Key Policy Remediation Failed`, `resources` the key ARN, `detail` the outcome with `exposure` and `actor`; also `Replica Key Policy Write Refused` (the guardrails refused a write, dry-run too; `detail.guardrail` lists each breach), `Replica Key Policy Write Grants Access` (a write whose `write_exposure` is `admin` or worse), `Replica Key Exemption Granted` and `Replica Key Baseline Switched` (a tag event; `detail` is the tag change with its `actor`). Route them with a rule (SNS, Chatbot, a ticketing tool). `off`: none. A publishing failure is logged and reported, never blocks a fix. Needs `events:PutEvents` on the bus."# };
    security_hub: bool = "SECURITY_HUB" => parse_switch;
        Cli::Flag { long: "security-hub", hidden: false, help: r#"on: post each replica's finding to Security Hub in its own account and Region (FAILED while drifted, PASSED once in sync); off (the default): print only."# },
        stack: ("SecurityHub", "securityHub"),
        default: "off",
        row: Row::Own { default: r#"`off`"#, doc: r#"Read by the detector function and the CLI's `check` and `sweep` (the remediator ignores it, with a warning at start-up). `on`: every replica they evaluate becomes an AWS Security Hub finding (ASFF, `BatchImportFindings`) in the key's own account and Region — `FAILED` while drifted, `PASSED` and archived once healed or found in sync; member accounts' findings through the member role. A failed import is logged and counted (`FindingsNotImported`), never blocks a fix. See [Security Hub and AWS Config](security-hub-and-config.md)."# };
    home: Region = "AWS_REGION" | "AWS_DEFAULT_REGION" => parse_region;
        Cli::Flag { long: "region", hidden: false, help: r#"The home Region (where a baseline is checked at start-up); else AWS_DEFAULT_REGION."# },
        stack: ("", ""),
        row: Row::Own { default: r#"the function's Region (Lambda sets it)"#, doc: r#"The home Region: where a baseline is checked at start-up and metrics and events are published. `AWS_DEFAULT_REGION` when `AWS_REGION` is unset (the CLI's `--region`)."# };
}

/// Variables the runtime and the SDK read, documented with the settings.
pub static EXTERNAL: &[External] = &[
    External {
        names: r#"`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL` / `RUST_LOG`"#,
        default: r#"text, `info`"#,
        doc: r#"Lambda's log controls; with `JSON` every per-key line is a flat JSON object (`key_arn`, `account`, `region`, `action`, `reason`, `diff`, `severity`, `exposure` and `actor` (the outcome's objects as JSON text), `actor_arn`, `event_name`, `event_id`). A level (`FATAL` counts as `error`) or `target=level` pairs such as `info,aws_smithy_runtime=debug`; anything else is refused with a warning and `info` is used. Every level is compiled in, the Lambda package included: `DEBUG` shows the SDK's own lines (retry attempts, credential refreshes) too."#,
    },
    External {
        names: r#"`AWS_ENDPOINT_URL`"#,
        default: r#"—"#,
        doc: r#"Send every AWS call to an emulator (local runs and tests)."#,
    },
];

/// The setting of variable `name`.
pub fn var(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.name == name)
}
