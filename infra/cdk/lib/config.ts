// The stack settings: the same knobs as the SAM template's parameters, read from CDK context
// (`-c remediationMode=enforce`, or the "context" block of cdk.json) and validated at synth time.
// The function's own names (namespace, tag keys, metrics) and the hub stack's alarms come from
// infra/contract.json, which `cargo xtask docs` writes from the code (test/contract.test.ts checks
// the validation against it, test/alarms.test.ts the synthesized alarms).

import contract from '../../contract.json';

/** What the code declares: the function's settings with their parsers' verdicts, metrics, tag keys; the hub's alarms. */
export const CONTRACT = contract;

/** Settings of the hub stack (function, rules, alarms). */
export interface GuardConfig {
  /** `dry-run` reports drift only; `enforce` rewrites drifted replica key policies. */
  readonly remediationMode: 'dry-run' | 'enforce';
  /**
   * `primary`, `file:PATH`, `dir:PATH` (a catalogue of NAME.json files shipped with the function)
   * or a literal JSON document (SSM / S3: use the four fields below). Ignored when one of them is set.
   */
  readonly baselineSource: string;
  /**
   * Full path (starting with `/`) of an SSM parameter holding the baseline, or ''. A SecureString
   * under a customer managed key also needs kms:Decrypt on that key (not granted by the stack).
   */
  readonly baselineSsmParameter: string;
  /** `BUCKET/KEY` of an S3 object holding the baseline, or ''. */
  readonly baselineS3Object: string;
  /**
   * A catalogue in SSM: a path ending in `/` (every parameter directly under it is a baseline named
   * by its last segment), or ''. SecureStrings under a customer managed key also need kms:Decrypt.
   */
  readonly baselineSsmPath: string;
  /** A catalogue in S3: `BUCKET/PREFIX/` (every `NAME.json` object directly under it), or ''. */
  readonly baselineS3Prefix: string;
  /** Catalogue only: the tag key whose value names a key's baseline. */
  readonly baselineTag: string;
  /** Catalogue only: the baseline of untagged keys (a name, or `primary`); '' = the one named default. */
  readonly baselineDefault: string;
  /** `exact`: the policy is the baseline; `contains`: the baseline's statements must be present. */
  readonly baselineMatch: 'exact' | 'contains';
  /** `on`: mirroring also rewrites ARNs of the key's own account and Region in conditions. */
  readonly mirrorRewrite: 'on' | 'off';
  /** Keys carrying this tag key are never changed. */
  readonly excludeTag: string;
  /** Comma-separated 12-digit accounts a written policy may grant (TRUSTED_ACCOUNTS); '' = the key's own only. */
  readonly trustedAccounts: string;
  /** Comma-separated organization ids (`o-...`) a written policy may grant (TRUSTED_ORGS); '' = none. */
  readonly trustedOrgs: string;
  /** Longest exemption the exclude tag may grant, in days (EXEMPTION_MAX_DAYS); '' = no limit. */
  readonly exemptionMaxDays: string;
  /** The baseline's SHA-256, or `NAME=HEX` pairs for a catalogue (BASELINE_SHA256); '' = not pinned. */
  readonly baselineSha256: string;
  /** Catalogue only: `NAME=ACCOUNT|ACCOUNT,...`, the accounts that may select each baseline (BASELINE_SCOPE); '' = none. */
  readonly baselineScope: string;
  /** A Lambda code signing configuration ARN for the function; '' = no code signing. */
  readonly codeSigningConfigArn: string;
  /** Regions the scheduled sweep covers; empty = the hub Region. */
  readonly sweepRegions: string[];
  /** Hours between two full sweeps (rate(N hours)), one of SWEEP_INTERVAL_HOURS_VALUES; the heartbeat alarm follows it. */
  readonly sweepIntervalHours: number;
  readonly memorySize: number;
  /** Function timeout in seconds. */
  readonly functionTimeout: number;
  /** Reserved concurrency; 0 = do not reserve (the default), else at least sweepWorkerConcurrency + 2. */
  readonly reservedConcurrency: number;
  readonly maxRetryAttempts: number;
  readonly maxEventAgeSeconds: number;
  readonly logLevel: 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' | 'FATAL';
  readonly logRetentionDays: number;
  readonly metricsNamespace: string;
  /** E-mail address subscribed to the alarm topic, or ''. */
  readonly alarmEmail: string;
  /** The AutoFixApplied alarm fires when the 5-minute sum is above this. */
  readonly autoFixSpikeThreshold: number;
  /**
   * Where drift events go (EVENT_BUS): `dedicated`, a custom bus of the stack (`<stack>-drift`,
   * no bus policy) that also holds the notification rules; or `default`, this Region's default bus.
   */
  readonly driftEventBus: 'dedicated' | 'default';
  /** Days the backups bucket keeps each policy backup (and each noncurrent version). */
  readonly backupRetentionDays: number;
  /** Flap guard: rewrites of one key within flapWindow before the function leaves it alone. */
  readonly flapMax: number;
  /** Flap guard window: seconds, or a number with an s, m, h or d suffix (`3600`, `90m`, `1h`). */
  readonly flapWindow: string;
  /** Client-side GetKeyPolicy requests per second per Region (under the KMS quota). */
  readonly rateGetKeyPolicy: number;
  /** Client-side PutKeyPolicy requests per second per Region (under the KMS quota). */
  readonly ratePutKeyPolicy: number;
  /** Client-side DescribeKey requests per second per Region (under the KMS quota). */
  readonly rateDescribeKey: number;
  /**
   * Name of the role the function assumes in member accounts (member stack's memberRoleName), or ''
   * (single account). Requires memberAccounts.
   */
  readonly memberRoleName: string;
  /**
   * Name of the read-only role the detector assumes in member accounts (member stack's
   * detectorRoleName), used when memberRoleName is set and the detector exists.
   */
  readonly detectorMemberRoleName: string;
  /** External id sent with AssumeRole, or ''. It is in the function's environment: not a secret. */
  readonly memberExternalId: string;
  /** `organization`, or comma-separated 12-digit account ids; '' when memberRoleName is ''. */
  readonly memberAccounts: string;
  /** `o-...`: the hub bus admits PutEvents from the organisation, AssumeRole stays inside it; or ''. */
  readonly organizationId: string;
  /** MaximumConcurrency of the sweep queue's event source: one of SWEEP_WORKER_CONCURRENCY_VALUES. */
  readonly sweepWorkerConcurrency: number;
  /** Visibility timeout of the sweep queue in seconds (at least functionTimeout; AWS recommends 6x). */
  readonly sweepVisibilityTimeout: number;
  /**
   * `on`: the detector function keeps a Security Hub finding for each replica in its own account and
   * Region (SECURITY_HUB), on the guard's drift events and a dry-run sweep.
   */
  readonly securityHub: 'on' | 'off';
  /**
   * An AWS Config custom rule backed by the detector function: `account`, `organization` (management
   * or delegated admin account), or `none`. The detector exists when this or securityHub is set.
   */
  readonly configRule: 'none' | 'account' | 'organization';
  /** The rule's periodic evaluation (MaximumExecutionFrequency), one of CONFIG_RULE_FREQUENCIES. */
  readonly configRuleFrequency: string;
}

/** The SAM template's AllowedValues of ConfigRuleFrequency. */
export const CONFIG_RULE_FREQUENCIES = ['One_Hour', 'Three_Hours', 'Six_Hours', 'Twelve_Hours', 'TwentyFour_Hours'];

/** The function's default of a setting, as src/config/vars.rs declares it (infra/contract.json). */
function declaredDefault(variable: string): string {
  const declared = contract.settings.find((s) => s.variable === variable)?.default;
  if (declared === null || declared === undefined) throw new Error(`infra/contract.json declares no default of ${variable}`);
  return declared;
}

/** Key prefix of the policy backups in the backups bucket (BACKUP_PREFIX); the IAM grants use it. */
export const BACKUP_PREFIX = declaredDefault('BACKUP_PREFIX');

/** The defaults, identical to the SAM template's parameter defaults: the function's own (and its deployment facts) from infra/contract.json. */
export const DEFAULT_CONFIG: GuardConfig = {
  remediationMode: declaredDefault('REMEDIATION_MODE') as GuardConfig['remediationMode'],
  baselineSource: declaredDefault('BASELINE_SOURCE'),
  baselineSsmParameter: '',
  baselineS3Object: '',
  baselineSsmPath: '',
  baselineS3Prefix: '',
  baselineTag: contract.tag_keys.baseline,
  baselineDefault: '',
  baselineMatch: declaredDefault('BASELINE_MATCH') as GuardConfig['baselineMatch'],
  mirrorRewrite: declaredDefault('MIRROR_REWRITE') as GuardConfig['mirrorRewrite'],
  excludeTag: contract.tag_keys.exclude,
  trustedAccounts: '',
  trustedOrgs: '',
  exemptionMaxDays: '',
  baselineSha256: '',
  baselineScope: '',
  codeSigningConfigArn: '',
  sweepRegions: [],
  sweepIntervalHours: 6,
  memorySize: contract.function.memory_mb,
  functionTimeout: contract.function.timeout_seconds,
  reservedConcurrency: 0,
  maxRetryAttempts: contract.function.max_retry_attempts,
  maxEventAgeSeconds: contract.function.max_event_age_seconds,
  logLevel: contract.function.log_level as GuardConfig['logLevel'],
  logRetentionDays: contract.function.log_retention_days,
  metricsNamespace: contract.metrics_namespace,
  alarmEmail: '',
  autoFixSpikeThreshold: 10,
  driftEventBus: 'dedicated',
  backupRetentionDays: 365,
  flapMax: Number(declaredDefault('FLAP_MAX')),
  flapWindow: declaredDefault('FLAP_WINDOW'),
  rateGetKeyPolicy: Number(declaredDefault('RATE_GET_KEY_POLICY')),
  ratePutKeyPolicy: Number(declaredDefault('RATE_PUT_KEY_POLICY')),
  rateDescribeKey: Number(declaredDefault('RATE_DESCRIBE_KEY')),
  memberRoleName: '',
  detectorMemberRoleName: 'kms-replica-guard-detector',
  memberExternalId: '',
  memberAccounts: '',
  organizationId: '',
  sweepWorkerConcurrency: 2,
  sweepVisibilityTimeout: 1800,
  securityHub: declaredDefault('SECURITY_HUB') as GuardConfig['securityHub'],
  configRule: 'none',
  configRuleFrequency: 'TwentyFour_Hours',
};

/** The SAM template's AllowedPatterns of the organisation parameters. */
export const MEMBER_ROLE_NAME_PATTERN = /^([\w+=,.@-]+\/)*[\w+=,.@-]{1,64}$/;
export const EXTERNAL_ID_PATTERN = /^[\w+=,.@:/-]{2,1224}$/;
export const MEMBER_ACCOUNTS_PATTERN = /^(organization|[0-9]{12}(,[0-9]{12})*)$/;
export const ORGANIZATION_ID_PATTERN = /^o-[a-z0-9]{10,32}$/;

/**
 * The SAM template's AllowedValues of SweepWorkerConcurrency: its rules compare by equality only,
 * one rule per value lists the reservations that value refuses.
 */
/**
 * The sweep intervals the SAM template allows (SweepIntervalHours): its SweepInterval mapping gives
 * each one's schedule and the heartbeat alarm's period, which a free schedule expression could not.
 */
export const SWEEP_INTERVAL_HOURS_VALUES = [1, 2, 3, 4, 6, 8, 12, 24];

export const SWEEP_WORKER_CONCURRENCY_VALUES = [2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200];

/**
 * Refuses a reservation that would let the sweep take every slot: KMS events need two beside the
 * sweep's workers (the SAM template's ReservationLeavesRoomForEvents rules).
 */
export function checkConcurrency(cfg: Pick<GuardConfig, 'reservedConcurrency' | 'sweepWorkerConcurrency'>): void {
  if (!SWEEP_WORKER_CONCURRENCY_VALUES.includes(cfg.sweepWorkerConcurrency)) {
    throw new Error(
      `sweepWorkerConcurrency=${cfg.sweepWorkerConcurrency}: expected one of ${SWEEP_WORKER_CONCURRENCY_VALUES.join(', ')}`,
    );
  }
  if (cfg.reservedConcurrency !== 0 && cfg.reservedConcurrency < cfg.sweepWorkerConcurrency + 2) {
    throw new Error(
      `reservedConcurrency=${cfg.reservedConcurrency}: must be 0 (no reservation) or at least sweepWorkerConcurrency + 2 (${cfg.sweepWorkerConcurrency + 2}), so that KMS events are not starved by the sweep`,
    );
  }
}

/**
 * Member accounts need the organisation: the hub's default bus admits their forwarded events by
 * aws:PrincipalOrgID only (the SAM template's OrganizationWithMemberAccounts rule).
 */
export function checkOrganization(cfg: Pick<GuardConfig, 'memberAccounts' | 'organizationId'>): void {
  if (cfg.memberAccounts && !cfg.organizationId) {
    throw new Error(
      'context memberAccounts is set, so organizationId must be too (the hub bus admits member accounts events by organisation only)',
    );
  }
}

/** Whether the stack has the detector function (findings and Config answers, read-only). */
export function hasDetector(cfg: Pick<GuardConfig, 'securityHub' | 'configRule'>): boolean {
  return cfg.securityHub === 'on' || cfg.configRule !== 'none';
}

/** RATE_INSTANCES: the reservation, or unreserved the sweep's workers (whose concurrency is bounded). */
export function rateInstances(cfg: Pick<GuardConfig, 'reservedConcurrency' | 'sweepWorkerConcurrency'>): number {
  return cfg.reservedConcurrency > 0 ? cfg.reservedConcurrency : cfg.sweepWorkerConcurrency;
}

/** The SAM template's AllowedPatterns of the guardrail parameters (without their `^$|` alternative). */
export const TRUSTED_ACCOUNTS_PATTERN = /^[0-9]{12}(,[0-9]{12})*$/;
export const TRUSTED_ORGS_PATTERN = /^o-[a-z0-9]{10,32}(,o-[a-z0-9]{10,32})*$/;
export const EXEMPTION_MAX_DAYS_PATTERN = /^([1-9][0-9]{0,2}|[1-2][0-9]{3}|3[0-5][0-9]{2}|36[0-4][0-9]|3650)$/;
export const BASELINE_SHA256_PATTERN =
  /^[0-9a-fA-F]{64}$|^[a-zA-Z0-9._-]{1,128}=[0-9a-fA-F]{64}(,[a-zA-Z0-9._-]{1,128}=[0-9a-fA-F]{64})*$/;
export const CODE_SIGNING_CONFIG_ARN_PATTERN = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:code-signing-config:csc-[a-z0-9]{17}$/;
export const BASELINE_SCOPE_PATTERN = /^[a-zA-Z0-9._-]{1,128}=[0-9]{12}(\|[0-9]{12})*(,[a-zA-Z0-9._-]{1,128}=[0-9]{12}(\|[0-9]{12})*)*$/;

/** The SAM template's AllowedPatterns of the baseline catalogue parameters. */
export const SSM_CATALOGUE_PATTERN = /^(\/[a-zA-Z0-9_.-]+)+\/$/;
export const S3_CATALOGUE_PATTERN = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/([a-zA-Z0-9_.!=-]+\/){1,8}$/;
export const BASELINE_NAME_PATTERN = /^[a-zA-Z0-9._-]{1,128}$/;

/**
 * Whether the function gets a baseline catalogue (BASELINE_SOURCE dir:PATH, ssm:/PATH/ or
 * s3://BUCKET/PREFIX/): BASELINE_TAG and BASELINE_DEFAULT are a configuration error otherwise.
 */
export function usesCatalogue(
  cfg: Pick<GuardConfig, 'baselineSource' | 'baselineSsmParameter' | 'baselineS3Object' | 'baselineSsmPath' | 'baselineS3Prefix'>,
): boolean {
  if (cfg.baselineSsmPath || cfg.baselineS3Prefix) return true;
  return !cfg.baselineSsmParameter && !cfg.baselineS3Object && cfg.baselineSource.startsWith('dir:');
}

/** The FlapWindow forms the function accepts (the SAM parameter's AllowedPattern). */
export const DURATION_PATTERN = /^[1-9][0-9]{0,7}[smhd]?$/;

export const REGION_PATTERN = /^[a-z]{2}(-[a-z]+)+-[0-9]+$/;
const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
const RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/** Reads one context value as the given key of GuardConfig ("" and undefined = the default). */
type ContextReader = (key: string) => unknown;

function toNumber(key: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'number' ? value : Number(String(value));
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`context ${key}=${String(value)}: expected an integer from ${min} to ${max}`);
  }
  return n;
}

function toList(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String).map((s) => s.trim()).filter(Boolean);
  return String(value).split(',').map((s) => s.trim()).filter(Boolean);
}

/** Builds and validates the configuration; throws an actionable error on a bad value. */
export function configFromContext(read: ContextReader): GuardConfig {
  const get = (key: keyof GuardConfig): unknown => {
    const v = read(key);
    return v === undefined || v === '' ? undefined : v;
  };
  const str = (key: keyof GuardConfig): string => String(get(key) ?? DEFAULT_CONFIG[key]);
  const num = (key: keyof GuardConfig, min: number, max: number): number =>
    toNumber(key, get(key) ?? DEFAULT_CONFIG[key], min, max);

  const mode = str('remediationMode');
  if (mode !== 'dry-run' && mode !== 'enforce') {
    throw new Error(`context remediationMode=${mode}: expected dry-run or enforce`);
  }
  const baselineSource = str('baselineSource');
  if (/^(ssm:|s3:\/\/)/.test(baselineSource)) {
    throw new Error(
      `context baselineSource=${baselineSource}: use baselineSsmParameter / baselineS3Object (one baseline) or baselineSsmPath / baselineS3Prefix (a catalogue) for SSM and S3, so that the stack grants read access`,
    );
  }
  if (baselineSource === 'dir:') {
    throw new Error('context baselineSource=dir:: expected dir:PATH, a directory of NAME.json baselines shipped with the function');
  }
  if (!/^(primary|file:[\s\S]*|dir:[\s\S]+|\s*\{[\s\S]*)$/.test(baselineSource)) {
    throw new Error(
      `context baselineSource=${baselineSource}: expected primary, file:PATH, dir:PATH or a JSON policy document`,
    );
  }
  const ssm = str('baselineSsmParameter');
  if (ssm && !/^(\/[a-zA-Z0-9_.-]+)+$/.test(ssm)) {
    throw new Error(`context baselineSsmParameter=${ssm}: expected a full parameter path such as /kms-replica-guard/baseline`);
  }
  const s3 = str('baselineS3Object');
  if (s3 && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+$/.test(s3)) {
    throw new Error(`context baselineS3Object=${s3}: expected BUCKET/KEY (without s3://)`);
  }
  const ssmPath = str('baselineSsmPath');
  if (ssmPath && !SSM_CATALOGUE_PATTERN.test(ssmPath)) {
    throw new Error(`context baselineSsmPath=${ssmPath}: expected a parameter path ending in /, such as /kms-replica-guard/baselines/`);
  }
  const s3Prefix = str('baselineS3Prefix');
  if (s3Prefix && !S3_CATALOGUE_PATTERN.test(s3Prefix)) {
    throw new Error(
      `context baselineS3Prefix=${s3Prefix}: expected BUCKET/PREFIX/ (without s3://, ending in /, 1 to 8 levels of letters, digits and _.!=-)`,
    );
  }
  if ([ssm, s3, ssmPath, s3Prefix].filter(Boolean).length > 1) {
    throw new Error('context: set one of baselineSsmParameter, baselineS3Object, baselineSsmPath and baselineS3Prefix, not several');
  }
  const catalogue = usesCatalogue({
    baselineSource,
    baselineSsmParameter: ssm,
    baselineS3Object: s3,
    baselineSsmPath: ssmPath,
    baselineS3Prefix: s3Prefix,
  });
  const baselineTag = str('baselineTag');
  if (baselineTag.length > 128) {
    throw new Error(`context baselineTag=${baselineTag}: a tag key has at most 128 characters`);
  }
  const baselineDefault = str('baselineDefault');
  if (baselineDefault && !BASELINE_NAME_PATTERN.test(baselineDefault)) {
    throw new Error(`context baselineDefault=${baselineDefault}: expected primary or a baseline name (1 to 128 letters, digits, '.', '_' or '-')`);
  }
  if (!catalogue && (baselineDefault || baselineTag !== DEFAULT_CONFIG.baselineTag)) {
    throw new Error(
      'context baselineTag / baselineDefault apply to a baseline catalogue only (baselineSsmPath, baselineS3Prefix or baselineSource=dir:PATH)',
    );
  }
  const baselineMatch = str('baselineMatch');
  if (baselineMatch !== 'exact' && baselineMatch !== 'contains') {
    throw new Error(`context baselineMatch=${baselineMatch}: expected exact or contains`);
  }
  const mirrorRewrite = ({ true: 'on', false: 'off' } as Record<string, string>)[str('mirrorRewrite')] ?? str('mirrorRewrite');
  if (mirrorRewrite !== 'on' && mirrorRewrite !== 'off') {
    throw new Error(`context mirrorRewrite=${mirrorRewrite}: expected on or off`);
  }
  const driftEventBus = str('driftEventBus');
  if (driftEventBus !== 'dedicated' && driftEventBus !== 'default') {
    throw new Error(`context driftEventBus=${driftEventBus}: expected dedicated or default`);
  }
  const securityHub = ({ true: 'on', false: 'off' } as Record<string, string>)[str('securityHub')] ?? str('securityHub');
  if (securityHub !== 'on' && securityHub !== 'off') {
    throw new Error(`context securityHub=${securityHub}: expected on or off`);
  }
  const configRule = str('configRule');
  if (configRule !== 'none' && configRule !== 'account' && configRule !== 'organization') {
    throw new Error(`context configRule=${configRule}: expected none, account or organization`);
  }
  const configRuleFrequency = str('configRuleFrequency');
  if (!CONFIG_RULE_FREQUENCIES.includes(configRuleFrequency)) {
    throw new Error(`context configRuleFrequency=${configRuleFrequency}: expected one of ${CONFIG_RULE_FREQUENCIES.join(', ')}`);
  }
  const sweepRegions = toList(get('sweepRegions') ?? []);
  for (const r of sweepRegions) {
    if (!REGION_PATTERN.test(r)) throw new Error(`context sweepRegions: ${r} is not a Region name`);
  }
  const logLevel = str('logLevel').toUpperCase();
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new Error(`context logLevel=${logLevel}: expected one of ${LOG_LEVELS.join(', ')}`);
  }
  const logRetentionDays = num('logRetentionDays', 1, 3653);
  if (!RETENTION_DAYS.includes(logRetentionDays)) {
    throw new Error(`context logRetentionDays=${logRetentionDays}: expected one of ${RETENTION_DAYS.join(', ')}`);
  }
  const alarmEmail = str('alarmEmail');
  if (alarmEmail && !/^[^\s@]+@[^\s@]+$/.test(alarmEmail)) {
    throw new Error(`context alarmEmail=${alarmEmail}: expected an e-mail address`);
  }
  const excludeTag = str('excludeTag');
  const trustedAccounts = toList(get('trustedAccounts') ?? []).join(',');
  if (trustedAccounts && !TRUSTED_ACCOUNTS_PATTERN.test(trustedAccounts)) {
    throw new Error(`context trustedAccounts=${trustedAccounts}: expected comma-separated 12-digit account ids`);
  }
  const trustedOrgs = toList(get('trustedOrgs') ?? []).join(',');
  if (trustedOrgs && !TRUSTED_ORGS_PATTERN.test(trustedOrgs)) {
    throw new Error(`context trustedOrgs=${trustedOrgs}: expected comma-separated organization ids such as o-a1b2c3d4e5`);
  }
  const exemptionMaxDays = str('exemptionMaxDays');
  if (exemptionMaxDays && !EXEMPTION_MAX_DAYS_PATTERN.test(exemptionMaxDays)) {
    throw new Error(`context exemptionMaxDays=${exemptionMaxDays}: expected a whole number of days from 1 to 3650, or nothing for no limit`);
  }
  const baselineSha256 = toList(get('baselineSha256') ?? []).join(',');
  if (baselineSha256 && !BASELINE_SHA256_PATTERN.test(baselineSha256)) {
    throw new Error(
      'context baselineSha256: expected a SHA-256 digest (64 hex digits) or comma-separated NAME=DIGEST pairs (one per baseline of a catalogue)',
    );
  }
  const baselineScope = toList(get('baselineScope') ?? []).join(',');
  if (baselineScope && !BASELINE_SCOPE_PATTERN.test(baselineScope)) {
    throw new Error(
      'context baselineScope: expected comma-separated NAME=ACCOUNT|ACCOUNT entries (a catalogue baseline, then the 12-digit accounts that may select it)',
    );
  }
  if (baselineScope && !catalogue) {
    throw new Error('context baselineScope applies to a baseline catalogue only (baselineSsmPath, baselineS3Prefix or baselineSource=dir:PATH)');
  }
  const codeSigningConfigArn = str('codeSigningConfigArn');
  if (codeSigningConfigArn && !CODE_SIGNING_CONFIG_ARN_PATTERN.test(codeSigningConfigArn)) {
    throw new Error(`context codeSigningConfigArn=${codeSigningConfigArn}: expected a Lambda code signing configuration ARN (arn:aws:lambda:REGION:ACCOUNT:code-signing-config:csc-...)`);
  }
  const flapWindow = str('flapWindow');
  if (!DURATION_PATTERN.test(flapWindow)) {
    throw new Error(
      `context flapWindow=${flapWindow}: expected a positive duration in seconds, or with an s, m, h or d suffix (3600, 90m, 1h, 2d)`,
    );
  }
  const metricsNamespace = str('metricsNamespace');
  if (!/^(?!AWS\/)[A-Za-z0-9._/#:-]{1,255}$/.test(metricsNamespace)) {
    throw new Error(`context metricsNamespace=${metricsNamespace}: invalid CloudWatch namespace`);
  }

  const memberRoleName = str('memberRoleName');
  if (memberRoleName && !MEMBER_ROLE_NAME_PATTERN.test(memberRoleName)) {
    throw new Error(`context memberRoleName=${memberRoleName}: expected an IAM role name such as kms-replica-guard-member`);
  }
  const detectorMemberRoleName = str('detectorMemberRoleName');
  if (!MEMBER_ROLE_NAME_PATTERN.test(detectorMemberRoleName)) {
    throw new Error(`context detectorMemberRoleName=${detectorMemberRoleName}: expected an IAM role name such as kms-replica-guard-detector`);
  }
  const memberExternalId = str('memberExternalId');
  if (memberExternalId && !EXTERNAL_ID_PATTERN.test(memberExternalId)) {
    throw new Error('context memberExternalId: expected 2-1224 characters of letters, digits and +=,.@:/-_');
  }
  const memberAccounts = toList(get('memberAccounts') ?? []).join(',');
  if (memberAccounts && !MEMBER_ACCOUNTS_PATTERN.test(memberAccounts)) {
    throw new Error(`context memberAccounts=${memberAccounts}: expected organization or comma-separated 12-digit account ids`);
  }
  if (memberRoleName && !memberAccounts) {
    throw new Error('context memberRoleName is set, so memberAccounts must say which accounts to enter (ids, or organization)');
  }
  const organizationId = str('organizationId');
  if (organizationId && !ORGANIZATION_ID_PATTERN.test(organizationId)) {
    throw new Error(`context organizationId=${organizationId}: expected an organization id such as o-a1b2c3d4e5`);
  }
  checkOrganization({ memberAccounts, organizationId });
  const functionTimeout = num('functionTimeout', 10, 900);
  const sweepVisibilityTimeout = num('sweepVisibilityTimeout', 10, 43200);
  if (sweepVisibilityTimeout < functionTimeout) {
    throw new Error(
      `context sweepVisibilityTimeout=${sweepVisibilityTimeout}: must be at least functionTimeout (${functionTimeout}); AWS recommends 6 x functionTimeout`,
    );
  }

  const sweepIntervalHours = num('sweepIntervalHours', 1, 24);
  if (!SWEEP_INTERVAL_HOURS_VALUES.includes(sweepIntervalHours)) {
    throw new Error(`context sweepIntervalHours=${sweepIntervalHours}: expected one of ${SWEEP_INTERVAL_HOURS_VALUES.join(', ')}`);
  }

  const concurrency = {
    reservedConcurrency: num('reservedConcurrency', 0, 1000),
    sweepWorkerConcurrency: num('sweepWorkerConcurrency', 2, 1000),
  };
  checkConcurrency(concurrency);

  return {
    remediationMode: mode,
    baselineSource,
    baselineSsmParameter: ssm,
    baselineS3Object: s3,
    baselineSsmPath: ssmPath,
    baselineS3Prefix: s3Prefix,
    baselineTag,
    baselineDefault,
    baselineMatch,
    mirrorRewrite,
    excludeTag,
    trustedAccounts,
    trustedOrgs,
    exemptionMaxDays,
    baselineSha256,
    baselineScope,
    codeSigningConfigArn,
    sweepRegions,
    sweepIntervalHours,
    memorySize: num('memorySize', 128, 10240),
    functionTimeout,
    reservedConcurrency: concurrency.reservedConcurrency,
    maxRetryAttempts: num('maxRetryAttempts', 0, 2),
    maxEventAgeSeconds: num('maxEventAgeSeconds', 60, 21600),
    logLevel: logLevel as GuardConfig['logLevel'],
    logRetentionDays,
    metricsNamespace,
    alarmEmail,
    autoFixSpikeThreshold: num('autoFixSpikeThreshold', 0, 1000000),
    driftEventBus,
    backupRetentionDays: num('backupRetentionDays', 1, 36500),
    flapMax: num('flapMax', 1, 1000),
    flapWindow,
    rateGetKeyPolicy: num('rateGetKeyPolicy', 1, 100000),
    ratePutKeyPolicy: num('ratePutKeyPolicy', 1, 100000),
    rateDescribeKey: num('rateDescribeKey', 1, 100000),
    memberRoleName,
    detectorMemberRoleName,
    memberExternalId,
    memberAccounts,
    organizationId,
    sweepWorkerConcurrency: concurrency.sweepWorkerConcurrency,
    sweepVisibilityTimeout,
    securityHub,
    configRule,
    configRuleFrequency,
  };
}
