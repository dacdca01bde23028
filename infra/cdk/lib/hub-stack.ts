import * as path from 'node:path';
import {
  Aws,
  CfnOutput,
  CfnRule,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  StackProps,
  aws_cloudwatch as cloudwatch,
  aws_cloudwatch_actions as cw_actions,
  aws_config as config,
  aws_events as events,
  aws_events_targets as targets,
  aws_iam as iam,
  aws_kms as kms,
  aws_lambda as lambda,
  aws_lambda_destinations as destinations,
  aws_lambda_event_sources as event_sources,
  aws_logs as logs,
  aws_s3 as s3,
  aws_sns as sns,
  aws_sns_subscriptions as subscriptions,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { BACKUP_BUCKET_SKIPS, DETECTOR_FUNCTION_SKIPS, FUNCTION_SKIPS, LOG_GROUP_SKIPS, skipCheckov } from './checkov';
import { BACKUP_PREFIX, GuardConfig, checkConcurrency, checkOrganization, hasDetector, rateInstances, usesCatalogue } from './config';
import {
  DETECTOR_EVENT_PATTERN,
  EXEMPTION_EVENT_PATTERN,
  EXEMPTION_MESSAGE,
  EXPOSURE_EVENT_PATTERN,
  EXPOSURE_MESSAGE,
  GUARD_CHANGE_MESSAGE,
  KMS_EVENT_PATTERN,
  WRITE_REFUSED_EVENT_PATTERN,
  WRITE_REFUSED_MESSAGE,
  guardChangePattern,
} from './event-pattern';

/** The repository root: where Cargo.toml (binary `bootstrap`) lives. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

/** The four metrics the function publishes (each datum with no dimension and with `Region`). */
export const METRIC_NAMES = ['AutoFixApplied', 'DriftDetected', 'AutoFixFailed', 'FlapSuppressed'] as const;

/** The organisation metrics (member accounts not entered, events from accounts not allowed). */
export const MEMBER_METRIC_NAMES = ['AccountNotEntered', 'AccountNotAllowed'] as const;

/** Drifts by severity (dimension `Severity` only, no dimensionless total): the alarm's two series. */
export const EXPOSURE_ALARM_SEVERITIES = ['public', 'cross-account'] as const;

/** What the role may do only from the function's execution environment (lambda:SourceFunctionArn). */
export const ONLY_THIS_FUNCTION_ACTIONS = [
  'cloudwatch:PutMetricData',
  'events:PutEvents',
  'kms:DescribeKey',
  'kms:GetKeyPolicy',
  'kms:ListKeys',
  'kms:ListResourceTags',
  'kms:PutKeyPolicy',
  'organizations:ListAccounts',
  's3:DeleteObject',
  's3:GetObject',
  's3:ListBucket',
  's3:PutObject',
  'ssm:GetParameter',
  'ssm:GetParametersByPath',
  'sts:AssumeRole',
];

/** The same for the detector's role (it reads and reports; it writes no key policy). */
export const DETECTOR_ONLY_THIS_FUNCTION_ACTIONS = [
  'cloudwatch:PutMetricData',
  'config:PutEvaluations',
  'kms:DescribeKey',
  'kms:GetKeyPolicy',
  'kms:ListKeys',
  'kms:ListResourceTags',
  'organizations:ListAccounts',
  's3:GetObject',
  's3:ListBucket',
  'securityhub:BatchImportFindings',
  'ssm:GetParameter',
  'ssm:GetParametersByPath',
  'sts:AssumeRole',
];

/** KMS actions the detector's roles are denied whatever else they are granted: every change to a key. */
export const KMS_WRITE_ACTIONS = [
  'kms:Cancel*',
  'kms:Create*',
  'kms:Delete*',
  'kms:Disable*',
  'kms:Enable*',
  'kms:Import*',
  'kms:Put*',
  'kms:Replicate*',
  'kms:Retire*',
  'kms:Revoke*',
  'kms:Schedule*',
  'kms:Tag*',
  'kms:Untag*',
  'kms:Update*',
];

/** The share of maxEventAgeSeconds an event may wait in Lambda's asynchronous queue before the alarm. */
export const ASYNC_EVENT_AGE_ALARM_FRACTION = 0.5;

/** An InputTransformer written out (InputPathsMap + InputTemplate), exactly as the SAM template has it. */
class TransformedInput extends events.RuleTargetInput {
  constructor(
    private readonly pathsMap: Record<string, string>,
    private readonly template: string,
  ) {
    super();
  }

  public bind(): events.RuleTargetInputProperties {
    return { inputPathsMap: this.pathsMap, inputTemplate: this.template };
  }
}

export interface HubStackProps extends StackProps {
  readonly config: GuardConfig;
  /**
   * Build the Rust function with cargo-lambda during synth (needed for deploy). false skips
   * bundling: the template is complete, but its code asset is not built (synth checks, tests).
   */
  readonly bundle: boolean;
}

/** The function, its triggers, the on-failure queue, the backups bucket, alarms, topic and dashboard. */
export class HubStack extends Stack {
  private readonly bundle: boolean;

  constructor(scope: Construct, id: string, props: HubStackProps) {
    super(scope, id, props);
    this.bundle = props.bundle;
    const cfg = props.config;
    checkConcurrency(cfg);
    checkOrganization(cfg);
    if (!props.bundle) {
      // Without bundling the code asset is the source tree, not a function: make CloudFormation
      // refuse such a template before it changes anything.
      new CfnRule(this, 'CodeNotBuilt', {
        assertions: [
          {
            // A stack name cannot contain '=': this assertion always fails.
            assert: Fn.conditionEquals(Aws.STACK_NAME, 'code-not-built=bundle-false'),
            assertDescription: 'Synthesized with -c bundle=false (the Rust code was not built): deploy with make deploy-cdk.',
          },
        ],
      });
    }
    const period = Duration.minutes(5);
    const sweepInterval = Duration.hours(cfg.sweepIntervalHours);

    const logGroup = new logs.LogGroup(this, 'LogGroup', {
      logGroupName: `/kms-replica-guard/${this.stackName}`,
      retention: cfg.logRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    skipCheckov(logGroup.node.defaultChild as logs.CfnLogGroup, LOG_GROUP_SKIPS);

    // Failed asynchronous invocations (after the retries or the maximum age) land here.
    const dlq = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.KMS_MANAGED,
      retentionPeriod: Duration.days(14),
    });

    // The sweep's work items (one per account and Region), consumed by the function itself; items
    // that failed maxReceiveCount times are kept 14 days in the sweep DLQ for a redrive. 5 receives,
    // as AWS advises for a Lambda event source: a throttled receive counts too.
    const sweepDlq = new sqs.Queue(this, 'SweepDeadLetterQueue', {
      encryption: sqs.QueueEncryption.KMS_MANAGED,
      retentionPeriod: Duration.days(14),
    });
    const sweepQueue = new sqs.Queue(this, 'SweepQueue', {
      encryption: sqs.QueueEncryption.KMS_MANAGED,
      visibilityTimeout: Duration.seconds(cfg.sweepVisibilityTimeout),
      deadLetterQueue: { queue: sweepDlq, maxReceiveCount: 5 },
    });

    // Every key policy the function overwrites, saved before the write: the audit trail and the
    // flap guard's write history. Retained when the stack is deleted or the bucket replaced.
    const backupBucket = new s3.Bucket(this, 'BackupBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      versioned: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [
        {
          id: 'ExpireBackups',
          expiration: Duration.days(cfg.backupRetentionDays),
          noncurrentVersionExpiration: Duration.days(cfg.backupRetentionDays),
        },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    skipCheckov(backupBucket.node.defaultChild as s3.CfnBucket, BACKUP_BUCKET_SKIPS);
    // TLS only. Written out (rather than enforceSSL) to carry the same Sid as the SAM template.
    backupBucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DenyInsecureTransport',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:*'],
        resources: [backupBucket.bucketArn, backupBucket.arnForObjects('*')],
        conditions: { Bool: { 'aws:SecureTransport': 'false' } },
      }),
    );
    // Retained with the bucket, so that a bucket left behind by a stack deletion stays TLS-only.
    backupBucket.policy?.applyRemovalPolicy(RemovalPolicy.RETAIN);

    // The drift events' own bus (driftEventBus dedicated): each event carries a key's policy diff,
    // which not every reader of the default bus should see. No bus policy: a custom bus without one
    // admits no other account; in this account, whoever IAM allows events:PutEvents / PutRule on it.
    const driftBus =
      cfg.driftEventBus === 'dedicated' ? new events.EventBus(this, 'DriftBus', { eventBusName: `${this.stackName}-drift` }) : undefined;
    const driftBusName = driftBus ? driftBus.eventBusName : 'default';
    const driftBusArn = driftBus ? driftBus.eventBusArn : `arn:${this.partition}:events:${this.region}:${this.account}:event-bus/default`;

    // Explicit role: REMEDIATOR_ROLE_ARN is its ARN, and every replica's baseline key policy
    // must allow it (lockout check).
    const statements = [
      new iam.PolicyStatement({
        sid: 'ReadMultiRegionKeys',
        actions: ['kms:DescribeKey', 'kms:GetKeyPolicy', 'kms:ListResourceTags'],
        resources: [`arn:${this.partition}:kms:*:${this.account}:key/mrk-*`],
      }),
      // Writes only replicas (kms:MultiRegionKeyType, a KMS key resource condition): a primary is
      // never written, only read as the mirror source.
      new iam.PolicyStatement({
        sid: 'RewriteReplicaKeyPolicies',
        actions: ['kms:PutKeyPolicy'],
        resources: [`arn:${this.partition}:kms:*:${this.account}:key/mrk-*`],
        conditions: { StringEquals: { 'kms:MultiRegionKeyType': 'REPLICA' } },
      }),
      new iam.PolicyStatement({ sid: 'ListKeysForSweep', actions: ['kms:ListKeys'], resources: ['*'] }),
      new iam.PolicyStatement({
        sid: 'NeverBypassLockoutSafetyCheck',
        effect: iam.Effect.DENY,
        actions: ['kms:PutKeyPolicy'],
        resources: ['*'],
        conditions: { Bool: { 'kms:BypassPolicyLockoutSafetyCheck': 'true' } },
      }),
      new iam.PolicyStatement({
        sid: 'PublishOwnMetrics',
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringEquals: { 'cloudwatch:namespace': cfg.metricsNamespace } },
      }),
      new iam.PolicyStatement({
        sid: 'WriteOwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
      new iam.PolicyStatement({
        sid: 'SendFailedEventsToQueue',
        actions: ['sqs:SendMessage'],
        resources: [dlq.queueArn],
      }),
      // The scheduled sweep plans one work item per (account, Region) and sends them to the sweep
      // queue; the same function consumes it through the SQS event source.
      new iam.PolicyStatement({
        sid: 'FeedAndWorkSweepQueue',
        actions: ['sqs:SendMessage', 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ChangeMessageVisibility'],
        resources: [sweepQueue.queueArn],
      }),
      // Backups of the policies it overwrites (a failed backup blocks the write), read back as
      // the flap guard's write history: only under BACKUP_PREFIX.
      new iam.PolicyStatement({
        sid: 'WriteAndReadPolicyBackups',
        actions: ['s3:PutObject', 's3:GetObject'],
        resources: [`arn:${this.partition}:s3:::${backupBucket.bucketName}/${BACKUP_PREFIX}*`],
      }),
      // The whole (dedicated) bucket, without an s3:prefix condition: S3 answers a GetObject
      // of a missing object with 404 only to a caller that may list the bucket, and with 403
      // otherwise (a released write claim would read as denied).
      new iam.PolicyStatement({
        sid: 'ListPolicyBackups',
        actions: ['s3:ListBucket'],
        resources: [backupBucket.bucketArn],
      }),
      // The claim that lets one of several concurrent invocations write a fix is deleted when
      // its write is done; deleting is allowed under claims/ only.
      new iam.PolicyStatement({
        sid: 'ReleaseWriteClaims',
        actions: ['s3:DeleteObject'],
        resources: [`arn:${this.partition}:s3:::${backupBucket.bucketName}/${BACKUP_PREFIX}claims/*`],
      }),
      // Every drift found is put on the drift bus (source kms-replica-guard, EVENT_BUS): the stack's
      // own bus (driftEventBus dedicated) or this Region's default bus; the notification rules and
      // the operator's own rules read it there. That bus only; a failed publish never blocks a fix.
      new iam.PolicyStatement({
        sid: 'PublishDriftEvents',
        actions: ['events:PutEvents'],
        resources: [driftBusArn],
      }),
    ];
    // The baseline's location, read by the remediator and, when it exists, the detector.
    const baselineReads: iam.PolicyStatement[] = [];
    if (cfg.baselineSsmParameter) {
      baselineReads.push(
        new iam.PolicyStatement({
          sid: 'ReadBaselineParameter',
          actions: ['ssm:GetParameter'],
          resources: [`arn:${this.partition}:ssm:${this.region}:${this.account}:parameter${cfg.baselineSsmParameter}`],
        }),
      );
    }
    if (cfg.baselineS3Object) {
      baselineReads.push(
        new iam.PolicyStatement({
          sid: 'ReadBaselineObject',
          actions: ['s3:GetObject'],
          resources: [`arn:${this.partition}:s3:::${cfg.baselineS3Object}`],
        }),
      );
    }
    // A catalogue in SSM: GetParametersByPath is authorized against the path of the request (the
    // path's own parameter ARN, without the trailing /), not against the parameters it returns.
    if (cfg.baselineSsmPath) {
      baselineReads.push(
        new iam.PolicyStatement({
          sid: 'ReadBaselineCatalogueParameters',
          actions: ['ssm:GetParametersByPath'],
          resources: [`arn:${this.partition}:ssm:${this.region}:${this.account}:parameter${cfg.baselineSsmPath.replace(/\/$/, '')}`],
        }),
      );
    }
    // A catalogue in S3: ListObjectsV2 of the prefix (delimiter /), listing allowed for that prefix
    // only, then GetObject of each NAME.json under it.
    if (cfg.baselineS3Prefix) {
      const [bucket, ...levels] = cfg.baselineS3Prefix.split('/');
      baselineReads.push(
        new iam.PolicyStatement({
          sid: 'ListBaselineCatalogueObjects',
          actions: ['s3:ListBucket'],
          resources: [`arn:${this.partition}:s3:::${bucket}`],
          conditions: { StringLike: { 's3:prefix': `${levels.join('/')}*` } },
        }),
        new iam.PolicyStatement({
          sid: 'ReadBaselineCatalogueObjects',
          actions: ['s3:GetObject'],
          resources: [`arn:${this.partition}:s3:::${cfg.baselineS3Prefix}*`],
        }),
      );
    }
    statements.push(...baselineReads);
    // Organisation mode: the member role of every account, by name (its trust policy admits exactly
    // this role); inside the organisation only when organizationId is set.
    if (cfg.memberRoleName) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'EnterMemberAccounts',
          actions: ['sts:AssumeRole'],
          resources: [`arn:${this.partition}:iam::*:role/${cfg.memberRoleName}`],
          conditions: cfg.organizationId ? { StringEquals: { 'aws:ResourceOrgID': cfg.organizationId } } : undefined,
        }),
      );
    }
    // memberAccounts=organization: ListAccounts has no resource-level permissions.
    const listAccounts =
      cfg.memberAccounts === 'organization'
        ? [new iam.PolicyStatement({ sid: 'ListOrganizationAccounts', actions: ['organizations:ListAccounts'], resources: ['*'] })]
        : [];
    statements.push(...listAccounts);
    const role = new iam.Role(this, 'RemediatorRole', {
      description: 'Execution role of kms-replica-guard (reads and rewrites multi-Region replica key policies)',
      assumedBy: new iam.PrincipalWithConditions(new iam.ServicePrincipal('lambda.amazonaws.com'), {
        StringEquals: { 'aws:SourceAccount': this.account },
      }),
      inlinePolicies: { 'kms-replica-guard': new iam.PolicyDocument({ statements }) },
    });
    // The sweep's work items are planned and worked by the function alone: a planted item would
    // steer a sweep, a deleted or hidden one would skip an account and Region silently.
    sweepQueue.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'OnlyTheGuardPlansAndWorksSweepItems',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:PurgeQueue', 'sqs:ReceiveMessage', 'sqs:SendMessage'],
        resources: [sweepQueue.queueArn],
        conditions: { ArnNotEquals: { 'aws:PrincipalArn': role.roleArn } },
      }),
    );
    // Backups, write records and claims are the guard's memory (flap guard, verification failures,
    // who is writing a fix): nobody else may plant or remove one, whatever IAM grants them.
    backupBucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'OnlyTheGuardWritesUnderItsPrefix',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:PutObject', 's3:DeleteObject'],
        resources: [backupBucket.arnForObjects(`${BACKUP_PREFIX}*`)],
        conditions: { ArnNotEquals: { 'aws:PrincipalArn': role.roleArn } },
      }),
    );
    // Versioning keeps every overwritten or deleted object until the lifecycle expires it; no one,
    // the guard included, deletes a version.
    backupBucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'NoOneDeletesHistory',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:DeleteObjectVersion'],
        resources: [backupBucket.arnForObjects(`${BACKUP_PREFIX}*`)],
      }),
    );

    // At most one location is set (configFromContext); without one, baselineSource.
    const baselineSource = cfg.baselineSsmParameter
      ? `ssm:${cfg.baselineSsmParameter}`
      : cfg.baselineS3Object
        ? `s3://${cfg.baselineS3Object}`
        : cfg.baselineSsmPath
          ? `ssm:${cfg.baselineSsmPath}`
          : cfg.baselineS3Prefix
            ? `s3://${cfg.baselineS3Prefix}`
            : cfg.baselineSource;
    const catalogue = usesCatalogue(cfg);
    // What is guarded and against which baseline: one object for the remediator and the detector.
    const guarded: Record<string, string> = {
      BASELINE_SOURCE: baselineSource,
      // Catalogue only (an empty value is unset, to the function).
      BASELINE_TAG: catalogue ? cfg.baselineTag : '',
      BASELINE_DEFAULT: catalogue ? cfg.baselineDefault : '',
      BASELINE_MATCH: cfg.baselineMatch,
      MIRROR_REWRITE: cfg.mirrorRewrite,
      METRICS_NAMESPACE: cfg.metricsNamespace,
      EXCLUDE_TAG: cfg.excludeTag,
      // Guardrails: set only when given (absent = the function's default).
      ...(cfg.trustedAccounts ? { TRUSTED_ACCOUNTS: cfg.trustedAccounts } : {}),
      ...(cfg.trustedOrgs ? { TRUSTED_ORGS: cfg.trustedOrgs } : {}),
      ...(cfg.exemptionMaxDays ? { EXEMPTION_MAX_DAYS: cfg.exemptionMaxDays } : {}),
      ...(cfg.baselineSha256 ? { BASELINE_SHA256: cfg.baselineSha256 } : {}),
      // Catalogue only (configFromContext refuses it without one).
      ...(cfg.baselineScope ? { BASELINE_SCOPE: cfg.baselineScope } : {}),
      // The remediator's role (the detector's lockout check judges a baseline for the role that writes it).
      REMEDIATOR_ROLE_ARN: role.roleArn,
      SWEEP_REGIONS: cfg.sweepRegions.length > 0 ? cfg.sweepRegions.join(',') : this.region,
      RATE_GET_KEY_POLICY: String(cfg.rateGetKeyPolicy),
      RATE_DESCRIBE_KEY: String(cfg.rateDescribeKey),
      // The rate* limits are the function's per account and Region; each of its at most
      // reservedConcurrency environments paces at its share. Unreserved, the sweep's workers
      // share them (its concurrency is bounded; events use the headroom under the quota).
      RATE_INSTANCES: String(rateInstances(cfg)),
      MEMBER_EXTERNAL_ID: cfg.memberExternalId,
      MEMBER_ACCOUNTS: cfg.memberAccounts,
    };

    const fn = new RustFunction(this, 'Function', {
      manifestPath: path.join(REPO_ROOT, 'Cargo.toml'),
      binaryName: 'bootstrap',
      runtime: 'provided.al2023',
      architecture: lambda.Architecture.ARM_64,
      description: 'kms-replica-guard - converges multi-Region replica key policies on a baseline',
      memorySize: cfg.memorySize,
      timeout: Duration.seconds(cfg.functionTimeout),
      // The inline policy above is complete (incl. sqs:SendMessage for the destination): no
      // generated DefaultPolicy, so the role stays exactly what the SAM template declares.
      role: role.withoutPolicyUpdates(),
      codeSigningConfig: cfg.codeSigningConfigArn
        ? lambda.CodeSigningConfig.fromCodeSigningConfigArn(this, 'CodeSigningConfig', cfg.codeSigningConfigArn)
        : undefined,
      reservedConcurrentExecutions: cfg.reservedConcurrency > 0 ? cfg.reservedConcurrency : undefined,
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: cfg.logLevel as lambda.ApplicationLogLevel,
      systemLogLevelV2: lambda.SystemLogLevel.INFO,
      environment: {
        REMEDIATION_MODE: cfg.remediationMode,
        ...guarded,
        BACKUP_BUCKET: backupBucket.bucketName,
        BACKUP_PREFIX,
        FLAP_MAX: String(cfg.flapMax),
        FLAP_WINDOW: cfg.flapWindow,
        RATE_PUT_KEY_POLICY: String(cfg.ratePutKeyPolicy),
        // Organisation mode (empty MEMBER_ROLE_NAME = this account only).
        MEMBER_ROLE_NAME: cfg.memberRoleName,
        // The scheduled sweep fans out to this queue: one work item per (account, Region).
        SWEEP_QUEUE_URL: sweepQueue.queueUrl,
        // Each drift found is published here as an event (source kms-replica-guard).
        EVENT_BUS: driftBusName,
      },
      retryAttempts: cfg.maxRetryAttempts,
      maxEventAge: Duration.seconds(cfg.maxEventAgeSeconds),
      onFailure: new destinations.SqsDestination(dlq),
    });
    const cfnFunction = fn.node.defaultChild as lambda.CfnFunction;
    skipCheckov(cfnFunction, FUNCTION_SKIPS);
    // cfn-lint W3005 (redundant DependsOn): lambda.Function always adds a construct dependency
    // on its role, rendered as DependsOn next to the Fn::GetAtt; harmless, and not removable
    // from here because CDK turns construct dependencies into DependsOn after this code runs.
    cfnFunction.addMetadata('cfn-lint', { config: { ignore_checks: ['W3005'] } });

    // The role's powers are this function's only (lambda:SourceFunctionArn, which Lambda puts in the
    // request context of every call from the execution environment; identity policies and SCPs
    // only): the same policy as infra/sam/template.yaml's OnlyThisFunctionPolicy, which says why
    // the SQS and log actions are left out. Separate from the role's inline policy (a cycle).
    new iam.Policy(this, 'OnlyThisFunctionPolicy', {
      policyName: 'kms-replica-guard-only-this-function',
      roles: [role],
      statements: [
        new iam.PolicyStatement({
          sid: 'OnlyFromThisFunction',
          effect: iam.Effect.DENY,
          actions: ONLY_THIS_FUNCTION_ACTIONS,
          resources: ['*'],
          conditions: { ArnNotEquals: { 'lambda:SourceFunctionArn': fn.functionArn } },
        }),
      ],
    });

    // The detector (securityHub on, or a configRule): the same engine in dry-run, in a package of its
    // own (the findings and Config clients stay out of the remediator's cold start); read-only. As
    // infra/sam/template.yaml's DetectorFunction, DetectorRole and their rules.
    const detectorParts = hasDetector(cfg) ? this.detector(cfg, guarded, baselineReads, listAccounts, dlq, driftBusName) : undefined;
    const detector = detectorParts?.fn;

    // The AWS Config rule backed by the detector (it evaluates and never writes): as the SAM
    // template's ConfigRule parameter, with the same invoke permission (SourceAccount for a rule in
    // this account; none for an organization rule, whose members' Config invokes it).
    if (detector && cfg.configRule !== 'none') {
      const permission = new lambda.CfnPermission(this, cfg.configRule === 'account' ? 'ConfigRuleInvokePermission' : 'OrganizationConfigRuleInvokePermission', {
        action: 'lambda:InvokeFunction',
        functionName: detector.functionArn,
        principal: 'config.amazonaws.com',
        sourceAccount: cfg.configRule === 'account' ? this.account : undefined,
      });
      const description = 'kms-replica-guard - multi-Region replica key policies equal their baseline (detect only)';
      const rule =
        cfg.configRule === 'account'
          ? new config.CfnConfigRule(this, 'ReplicaKeyPolicyConfigRule', {
              configRuleName: `${this.stackName}-replica-key-policy`,
              description,
              scope: { complianceResourceTypes: ['AWS::KMS::Key'] },
              source: {
                owner: 'CUSTOM_LAMBDA',
                sourceIdentifier: detector.functionArn,
                sourceDetails: [
                  { eventSource: 'aws.config', messageType: 'ConfigurationItemChangeNotification' },
                  { eventSource: 'aws.config', messageType: 'OversizedConfigurationItemChangeNotification' },
                  { eventSource: 'aws.config', messageType: 'ScheduledNotification', maximumExecutionFrequency: cfg.configRuleFrequency },
                ],
              },
            })
          : new config.CfnOrganizationConfigRule(this, 'ReplicaKeyPolicyOrganizationConfigRule', {
              organizationConfigRuleName: `${this.stackName}-replica-key-policy`,
              organizationCustomRuleMetadata: {
                description,
                lambdaFunctionArn: detector.functionArn,
                organizationConfigRuleTriggerTypes: [
                  'ConfigurationItemChangeNotification',
                  'OversizedConfigurationItemChangeNotification',
                  'ScheduledNotification',
                ],
                resourceTypesScope: ['AWS::KMS::Key'],
                maximumExecutionFrequency: cfg.configRuleFrequency,
              },
            });
      rule.addDependency(permission);
    }

    const kmsRule = new events.Rule(this, 'KmsApiCallRule', {
      description: 'KMS calls that can change a multi-Region replica key policy',
      eventPattern: KMS_EVENT_PATTERN,
      targets: [new targets.LambdaFunction(fn)],
    });
    const sweepRule = new events.Rule(this, 'SweepRule', {
      description: 'Full sweep of the multi-Region replica keys in SWEEP_REGIONS (fanned out to the sweep queue)',
      schedule: events.Schedule.rate(sweepInterval),
      targets: [new targets.LambdaFunction(fn)],
    });
    // The sweep's work items; failed items are reported one by one (batchItemFailures). The role
    // already allows the polling (withoutPolicyUpdates: nothing is added to it here).
    const sweepWork = new event_sources.SqsEventSource(sweepQueue, {
      batchSize: 5,
      reportBatchItemFailures: true,
      maxConcurrency: cfg.sweepWorkerConcurrency,
    });
    fn.addEventSource(sweepWork);

    // Organisation mode: the member accounts' forwarding rules put their KMS events on this
    // default bus; only principals of the organisation may.
    if (cfg.organizationId) {
      new events.CfnEventBusPolicy(this, 'OrganizationEventBusPolicy', {
        eventBusName: 'default',
        statementId: 'kms-replica-guard-organization',
        statement: {
          Effect: 'Allow',
          Principal: '*',
          Action: 'events:PutEvents',
          Resource: `arn:${this.partition}:events:${this.region}:${this.account}:event-bus/default`,
          // KMS CloudTrail events only: a member account cannot put the guard's own events here.
          Condition: {
            StringEquals: { 'aws:PrincipalOrgID': cfg.organizationId },
            'ForAllValues:StringEquals': { 'events:source': ['aws.kms'], 'events:detail-type': ['AWS API Call via CloudTrail'] },
          },
        },
      });
    }

    // CloudWatch can only publish to an encrypted topic whose key policy allows it, which the
    // AWS managed alias/aws/sns key cannot: hence a customer managed key.
    const topicKey = new kms.Key(this, 'AlarmTopicKey', {
      description: 'Encrypts the kms-replica-guard alarm topic',
      enableKeyRotation: true,
      pendingWindow: Duration.days(7),
      removalPolicy: RemovalPolicy.DESTROY,
    });
    topicKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
      }),
    );
    // The same for EventBridge (the exposure notification rule's target). No aws:SourceArn /
    // aws:SourceAccount condition: EventBridge does not send them on this KMS request.
    topicKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'EventBridgeRulesPublish',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
      }),
    );
    const topic = new sns.Topic(this, 'AlarmTopic', { displayName: 'kms-replica-guard alarms', masterKey: topicKey });
    if (cfg.alarmEmail) {
      topic.addSubscription(new subscriptions.EmailSubscription(cfg.alarmEmail));
    }

    // Public and cross-account drifts, as one readable paragraph on the alarm topic, as soon as
    // the function publishes them (dry-run included). The function puts every drift on the bus;
    // route the others (or these, elsewhere) with rules of your own on source kms-replica-guard.
    // The target is bound by hand (not targets.SnsTopic, which would add Sid-less, unconditioned
    // grants to the topic and key policies) so that both policies say exactly what SAM says.
    // The notification rules have fixed names: the guard change rule names them, and Ref of a rule on a
    // custom bus is BUS|NAME, not the name CloudTrail records.
    const exposureRuleName = `${this.stackName}-exposure`;
    const exposureRule = new events.Rule(this, 'ExposureNotificationRule', {
      ruleName: exposureRuleName,
      description: 'Public and cross-account replica key policy drifts found by kms-replica-guard, as a readable message to the alarm topic',
      // The guard's own events only: put on this bus by this account.
      eventPattern: { ...EXPOSURE_EVENT_PATTERN, account: [Aws.ACCOUNT_ID] },
    });
    (exposureRule.node.defaultChild as events.CfnRule).eventBusName = driftBusName;
    exposureRule.addTarget({
      bind: () => ({
        arn: topic.topicArn,
        input: new TransformedInput(EXPOSURE_MESSAGE.inputPathsMap, EXPOSURE_MESSAGE.inputTemplate),
      }),
    });
    // A write the guardrails refused (dry-run included), and an exemption (the exclude tag set on a
    // key): each as a readable message to the alarm topic, the guard's own events from this account
    // only (the same rules as infra/sam/template.yaml's WriteRefusedNotificationRule and
    // ExemptionNotificationRule).
    const notificationRule = (id: string, ruleName: string, description: string, pattern: events.EventPattern, message: { inputPathsMap: Record<string, string>; inputTemplate: string }) => {
      const rule = new events.Rule(this, id, { ruleName, description, eventPattern: { ...pattern, account: [Aws.ACCOUNT_ID] } });
      (rule.node.defaultChild as events.CfnRule).eventBusName = driftBusName;
      rule.addTarget({ bind: () => ({ arn: topic.topicArn, input: new TransformedInput(message.inputPathsMap, message.inputTemplate) }) });
      return rule;
    };
    const refusedRuleName = `${this.stackName}-write-refused`;
    const refusedRule = notificationRule(
      'WriteRefusedNotificationRule',
      refusedRuleName,
      'Key policy writes the kms-replica-guard guardrails refused, as a readable message to the alarm topic',
      WRITE_REFUSED_EVENT_PATTERN,
      WRITE_REFUSED_MESSAGE,
    );
    const exemptionRuleName = `${this.stackName}-exemption`;
    const exemptionRule = notificationRule(
      'ExemptionNotificationRule',
      exemptionRuleName,
      'Exemptions (the exclude tag set on a key) seen by kms-replica-guard, as a readable message to the alarm topic',
      EXEMPTION_EVENT_PATTERN,
      EXEMPTION_MESSAGE,
    );
    // Changes to the guard's own resources (CloudTrail management events), as a readable message to
    // the alarm topic at once; scoped to this stack's resources where CloudTrail names them (the
    // same rule as infra/sam/template.yaml's GuardChangeNotificationRule; see guardChangePattern).
    const changeRuleName = `${this.stackName}-guard-changes`;
    const changeRule = new events.Rule(this, 'GuardChangeNotificationRule', {
      ruleName: changeRuleName,
      description: "Changes to the guard's own function, queue mapping, rules, alarms and role (CloudTrail), as a readable message to the alarm topic",
      eventPattern: guardChangePattern({
        functionName: fn.functionName,
        functionArn: fn.functionArn,
        mappingId: sweepWork.eventSourceMappingId,
        ruleNames: [kmsRule.ruleName, sweepRule.ruleName, exposureRuleName, refusedRuleName, exemptionRuleName, changeRuleName, ...(detectorParts?.ruleNames ?? [])],
        alarmPrefix: `${this.stackName}-`,
        roleName: role.roleName,
        detector: detectorParts
          ? { functionName: detectorParts.fn.functionName, functionArn: detectorParts.fn.functionArn, roleName: detectorParts.roleName }
          : undefined,
      }),
    });
    (changeRule.node.defaultChild as events.CfnRule).eventBusName = 'default';
    changeRule.addTarget({
      bind: () => ({
        arn: topic.topicArn,
        input: new TransformedInput(GUARD_CHANGE_MESSAGE.inputPathsMap, GUARD_CHANGE_MESSAGE.inputTemplate),
      }),
    });
    // The topic's access policy (it replaces SNS's default one): this stack's alarms and its
    // notification rules may publish, nothing else; the account's IAM principals keep what IAM
    // grants them.
    topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: {
          StringEquals: { 'aws:SourceAccount': this.account },
          ArnLike: { 'aws:SourceArn': `arn:${this.partition}:cloudwatch:${this.region}:${this.account}:alarm:${this.stackName}-*` },
        },
      }),
    );
    topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'EventBridgeRulesPublish',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: { ArnEquals: { 'aws:SourceArn': [exposureRule.ruleArn, refusedRule.ruleArn, exemptionRule.ruleArn, changeRule.ruleArn] } },
      }),
    );

    // Alarms watch the dimensionless fleet totals; the function also publishes each datum per Region.
    const guardMetric = (metricName: string) =>
      new cloudwatch.Metric({ namespace: cfg.metricsNamespace, metricName, statistic: 'Sum', period });
    const alarm = (id: string, props: cloudwatch.AlarmProps) => {
      const a = new cloudwatch.Alarm(this, id, props);
      a.addAlarmAction(new cw_actions.SnsAction(topic));
      a.addOkAction(new cw_actions.SnsAction(topic));
      return a;
    };
    const atLeastOnce = {
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    };
    alarm('AutoFixAppliedSpikeAlarm', {
      alarmName: `${this.stackName}-AutoFixApplied-spike`,
      alarmDescription:
        'More key policies were rewritten in 5 minutes than AutoFixSpikeThreshold (mass drift, or something fighting the baseline). Runbook: docs/src/runbook/autofixapplied-spike.md',
      metric: guardMetric('AutoFixApplied'),
      threshold: cfg.autoFixSpikeThreshold,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm('AutoFixFailedAlarm', {
      alarmName: `${this.stackName}-AutoFixFailed`,
      alarmDescription:
        'A replica key policy could not be checked or rewritten (permissions, lockout check, verification mismatch). Runbook: docs/src/runbook/autofixfailed.md',
      metric: guardMetric('AutoFixFailed'),
      ...atLeastOnce,
    });
    alarm('FlapSuppressedAlarm', {
      alarmName: `${this.stackName}-FlapSuppressed`,
      alarmDescription:
        'A key was rewritten too often and is now left alone (another automation keeps changing its policy). Runbook: docs/src/runbook/flapsuppressed.md',
      metric: guardMetric('FlapSuppressed'),
      ...atLeastOnce,
    });
    alarm('FunctionErrorsAlarm', {
      alarmName: `${this.stackName}-FunctionErrors`,
      alarmDescription:
        'The remediator function failed an invocation (it is retried; after the retries the event goes to the DLQ). Runbook: docs/src/runbook/functionerrors.md',
      metric: fn.metricErrors({ statistic: 'Sum', period }),
      ...atLeastOnce,
    });
    alarm('DeadLetterQueueAlarm', {
      alarmName: `${this.stackName}-DLQ-not-empty`,
      alarmDescription:
        'Events the remediator (or the detector) gave up on are waiting in the on-failure queue (read them, fix the cause, redrive). Runbook: docs/src/runbook/dlq-not-empty.md',
      metric: dlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period }),
      ...atLeastOnce,
    });

    alarm('AccountNotEnteredAlarm', {
      alarmName: `${this.stackName}-AccountNotEntered`,
      alarmDescription:
        'The hub could not assume the member role in an account (refused, throttled, unreachable): its keys are not being checked. Runbook: docs/src/runbook/accountnotentered.md',
      metric: guardMetric('AccountNotEntered'),
      ...atLeastOnce,
    });
    alarm('SweepDeadLetterQueueAlarm', {
      alarmName: `${this.stackName}-sweep-DLQ-not-empty`,
      alarmDescription:
        'Sweep work items (one account and Region each) failed 5 times and wait in the sweep dead-letter queue (read them, fix the cause, redrive). Runbook: docs/src/runbook/sweep-dlq-not-empty.md',
      metric: sweepDlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period }),
      ...atLeastOnce,
    });

    // The heartbeat: every sweep that ran through publishes SweepCompleted (the scheduled inline
    // sweep, or each organisation work item, which complete at the schedule's cadence). No datum
    // for two intervals (missing data is breaching), or only zeros (sweeps with a run error), is
    // an alarm: a disabled or deleted schedule, rule or queue mapping, a broken role or metrics
    // permission, a function that no longer starts all end here.
    alarm('SweepHeartbeatAlarm', {
      alarmName: `${this.stackName}-SweepCompleted-heartbeat`,
      alarmDescription:
        'No sweep completed in two sweep intervals (SweepIntervalHours): the guard may be stopped (schedule, rule, queue mapping, role or function broken or disabled). Runbook: docs/src/runbook/sweepcompleted-heartbeat.md',
      metric: new cloudwatch.Metric({ namespace: cfg.metricsNamespace, metricName: 'SweepCompleted', statistic: 'Sum', period: sweepInterval }),
      threshold: 1,
      evaluationPeriods: 2,
      datapointsToAlarm: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });

    // The mode as the function reports it (EnforceMode: 1 enforce, 0 dry-run). Only in a stack
    // deployed in enforce mode (a dry-run stack must not page).
    if (cfg.remediationMode === 'enforce') {
      alarm('EnforceModeAlarm', {
        alarmName: `${this.stackName}-EnforceMode-dry-run`,
        alarmDescription:
          'The function reports dry-run although this stack was deployed in enforce mode: drifts are no longer fixed (REMEDIATION_MODE changed outside the deployment?). Runbook: docs/src/runbook/enforcemode-dry-run.md',
        metric: new cloudwatch.Metric({ namespace: cfg.metricsNamespace, metricName: 'EnforceMode', statistic: 'Minimum', period }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    // Metric math: ExposureDrift has no dimensionless total, only one series per Severity.
    // Missing values count as 0 in the sum, so either severity alone fires it.
    const exposureDrift = (severity: string) =>
      new cloudwatch.Metric({
        namespace: cfg.metricsNamespace,
        metricName: 'ExposureDrift',
        dimensionsMap: { Severity: severity },
        statistic: 'Sum',
        period,
      });
    alarm('ExposureDriftAlarm', {
      alarmName: `${this.stackName}-ExposureDrift`,
      alarmDescription:
        'A replica key policy drifted to grant access to anyone (public) or to another account (cross-account); counted in dry-run too, where nothing is rewritten. Runbook: docs/src/runbook/exposuredrift.md',
      metric: new cloudwatch.MathExpression({
        expression: 'public + cross_account',
        label: 'public + cross-account drifts',
        usingMetrics: { public: exposureDrift('public'), cross_account: exposureDrift('cross-account') },
        period,
      }),
      ...atLeastOnce,
    });

    // Lambda refused invocations for want of concurrency; a throttled asynchronous event goes back to
    // Lambda's queue and is retried for up to maxEventAgeSeconds.
    alarm('FunctionThrottlesAlarm', {
      alarmName: `${this.stackName}-Throttles`,
      alarmDescription:
        'Lambda throttled the remediator (no concurrency left): KMS events wait in the asynchronous queue and age towards MaxEventAgeSeconds. Runbook: docs/src/runbook/throttles.md',
      metric: fn.metricThrottles({ statistic: 'Sum', period }),
      ...atLeastOnce,
    });
    // AsyncEventAge (milliseconds, Maximum) as a fraction of maxEventAgeSeconds, the age at which
    // Lambda gives an event up: written as the SAM template must write it (metric math), so that
    // both stacks are one alarm.
    alarm('AsyncEventAgeAlarm', {
      alarmName: `${this.stackName}-AsyncEventAge`,
      alarmDescription:
        'A KMS event waited more than half of MaxEventAgeSeconds in the asynchronous queue before the remediator ran (throttling, a long sweep holding the concurrency, retries): past the maximum it is dropped to the DLQ unchecked. Runbook: docs/src/runbook/asynceventage.md',
      metric: new cloudwatch.MathExpression({
        expression: `age / (1000 * ${cfg.maxEventAgeSeconds})`,
        label: 'oldest event age / MaxEventAgeSeconds',
        usingMetrics: { age: fn.metric('AsyncEventAge', { statistic: 'Maximum', period }) },
        period,
      }),
      threshold: ASYNC_EVENT_AGE_ALARM_FRACTION,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm('AsyncEventsDroppedAlarm', {
      alarmName: `${this.stackName}-AsyncEventsDropped`,
      alarmDescription:
        'Lambda dropped KMS events without a successful invocation of the remediator (retries exhausted or MaxEventAgeSeconds passed): those keys were not checked. Runbook: docs/src/runbook/asynceventsdropped.md',
      metric: fn.metric('AsyncEventsDropped', { statistic: 'Sum', period }),
      ...atLeastOnce,
    });
    alarm('AccountNotAllowedAlarm', {
      alarmName: `${this.stackName}-AccountNotAllowed`,
      alarmDescription:
        'A KMS event came from an account outside MemberAccounts (a forwarding rule or bus policy admits more than the guard may enter, or MemberAccounts is missing an account): the event was ignored. Runbook: docs/src/runbook/accountnotallowed.md',
      metric: guardMetric('AccountNotAllowed'),
      ...atLeastOnce,
    });
    // The detector's own metrics: a finding Security Hub did not take, an evaluation AWS Config did not
    // take (the same alarms as infra/sam/template.yaml's, under the same settings).
    const moreThanNone = {
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    };
    if (cfg.securityHub === 'on') {
      alarm('FindingsNotImportedAlarm', {
        alarmName: `${this.stackName}-FindingsNotImported`,
        alarmDescription:
          "Security Hub did not take some of the detector's findings (not enabled in that account and Region, access denied, throttled): those findings may be stale until the next sweep. Runbook: docs/src/runbook/findingsnotimported.md",
        metric: guardMetric('FindingsNotImported'),
        ...moreThanNone,
      });
    }
    if (cfg.configRule !== 'none') {
      alarm('EvaluationsNotPutAlarm', {
        alarmName: `${this.stackName}-EvaluationsNotPut`,
        alarmDescription:
          "AWS Config did not take the detector's answers for the replica key policy rule (access denied, expired result token, throttled): the rule shows a stale compliance until its next evaluation. Runbook: docs/src/runbook/evaluationsnotput.md",
        metric: guardMetric('EvaluationsNotPut'),
        ...moreThanNone,
      });
    }
    // GuardrailRefused and WriteExposure have one series per Severity, no total: metric math.
    const bySeverity = (metricName: string, severity: string) =>
      new cloudwatch.Metric({ namespace: cfg.metricsNamespace, metricName, dimensionsMap: { Severity: severity }, statistic: 'Sum', period });
    alarm('GuardrailRefusedAlarm', {
      alarmName: `${this.stackName}-GuardrailRefused`,
      alarmDescription:
        'The guardrails refused a policy the guard would have written (public access, an untrusted account or organisation, an unpinned service principal): nothing was written; counted in dry-run too. Runbook: docs/src/runbook/guardrailrefused.md',
      metric: new cloudwatch.MathExpression({
        expression: 'public + cross_account',
        label: 'refused writes (public + cross-account)',
        usingMetrics: { public: bySeverity('GuardrailRefused', 'public'), cross_account: bySeverity('GuardrailRefused', 'cross-account') },
        period,
      }),
      ...atLeastOnce,
    });
    alarm('WriteExposureAlarm', {
      alarmName: `${this.stackName}-WriteExposure`,
      alarmDescription:
        'The guard wrote a key policy granting an untrusted account or the public access the live policy did not: its guardrails refuse such writes, so this is a guardrail failure (stop, restore, report). Runbook: docs/src/runbook/writeexposure.md',
      metric: new cloudwatch.MathExpression({
        expression: 'public + cross_account',
        label: 'writes granting cross-account or public access',
        usingMetrics: { public: bySeverity('WriteExposure', 'public'), cross_account: bySeverity('WriteExposure', 'cross-account') },
        period,
      }),
      ...atLeastOnce,
    });

    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      // Dashboards are global to the account: the Region keeps per-Region stacks apart.
      dashboardName: `${this.stackName}-${this.region}`,
    });
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Fleet totals (5 min sums)',
        width: 12,
        left: METRIC_NAMES.map((m) => guardMetric(m)),
      }),
      new cloudwatch.GraphWidget({
        title: 'Drift detected by Region',
        width: 12,
        left: [
          new cloudwatch.MathExpression({
            expression: `SEARCH('{${cfg.metricsNamespace},Region} MetricName="DriftDetected"', 'Sum', 300)`,
            label: '',
            period,
          }),
        ],
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Member accounts (5 min sums)',
        width: 12,
        left: MEMBER_METRIC_NAMES.map((m) => guardMetric(m)),
      }),
    );

    new CfnOutput(this, 'FunctionName', { description: 'Name of the remediator function', value: fn.functionName });
    new CfnOutput(this, 'FunctionArn', { description: 'ARN of the remediator function', value: fn.functionArn });
    new CfnOutput(this, 'RemediatorRoleArn', {
      description:
        'Execution role ARN; every replica baseline key policy must allow it kms:PutKeyPolicy, kms:GetKeyPolicy and kms:DescribeKey (or keep the account-root statement)',
      value: role.roleArn,
    });
    new CfnOutput(this, 'RemediatorRoleName', {
      description:
        'Name of the execution role. With the hub outside us-east-1, give it to the spoke stack in us-east-1 as guardRoleName: EventBridge delivers IAM CloudTrail events there only, and that spoke forwards the changes to this role policies to the hub guard change rule.',
      value: role.roleName,
    });
    new CfnOutput(this, 'DriftEventBusName', {
      description:
        'The event bus the function publishes each drift to (source kms-replica-guard, EVENT_BUS): the stack own <stack>-drift bus (driftEventBus dedicated) or default. Route the events with rules of your own on this bus.',
      value: driftBusName,
    });
    new CfnOutput(this, 'BackupBucketName', {
      description: `Bucket of the backups of every overwritten key policy (under ${BACKUP_PREFIX}); retained when the stack is deleted`,
      value: backupBucket.bucketName,
    });
    new CfnOutput(this, 'DeadLetterQueueUrl', { description: 'On-failure queue of the asynchronous invocations', value: dlq.queueUrl });
    new CfnOutput(this, 'DeadLetterQueueArn', { description: 'ARN of the on-failure queue (redrive source)', value: dlq.queueArn });
    new CfnOutput(this, 'AlarmTopicArn', { description: 'SNS topic of the alarms', value: topic.topicArn });
    new CfnOutput(this, 'HubEventBusArn', {
      description:
        'The hub default event bus: the target of the spoke and member stacks. Events that spoke rules of the same account put here are accepted without a bus policy; member accounts need organizationId (the organisation bus policy).',
      value: `arn:${this.partition}:events:${this.region}:${this.account}:event-bus/default`,
    });
    new CfnOutput(this, 'SweepQueueUrl', {
      description: 'The sweep work queue (one item per account and Region, consumed by the function)',
      value: sweepQueue.queueUrl,
    });
    new CfnOutput(this, 'SweepDeadLetterQueueUrl', {
      description: 'Sweep work items that failed 5 times (redrive source of the sweep queue)',
      value: sweepDlq.queueUrl,
    });
    new CfnOutput(this, 'DashboardName', { description: 'CloudWatch dashboard of the function metrics', value: dashboard.dashboardName });
  }

  /**
   * The detector function, its read-only role and log group, and (securityHub on) the rules that
   * invoke it: the guard's own events on the drift bus, and a dry-run sweep at the sweep interval.
   */
  private detector(
    cfg: GuardConfig,
    guarded: Record<string, string>,
    baselineReads: iam.PolicyStatement[],
    listAccounts: iam.PolicyStatement[],
    dlq: sqs.Queue,
    driftBusName: string,
  ): { fn: lambda.IFunction; roleName: string; ruleNames: string[] } {
    const logGroup = new logs.LogGroup(this, 'DetectorLogGroup', {
      logGroupName: `/kms-replica-guard/${this.stackName}-detector`,
      retention: cfg.logRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    skipCheckov(logGroup.node.defaultChild as logs.CfnLogGroup, LOG_GROUP_SKIPS);
    const statements = [
      new iam.PolicyStatement({
        sid: 'ReadMultiRegionKeys',
        actions: ['kms:DescribeKey', 'kms:GetKeyPolicy', 'kms:ListResourceTags'],
        resources: [`arn:${this.partition}:kms:*:${this.account}:key/mrk-*`],
      }),
      new iam.PolicyStatement({ sid: 'ListKeysForSweep', actions: ['kms:ListKeys'], resources: ['*'] }),
      // Nothing here allows a KMS write; the Deny keeps it so whatever else is attached later.
      new iam.PolicyStatement({ sid: 'NeverChangeKeys', effect: iam.Effect.DENY, actions: KMS_WRITE_ACTIONS, resources: ['*'] }),
      // FindingsNotImported and EvaluationsNotPut, in the guard's namespace.
      new iam.PolicyStatement({
        sid: 'PublishOwnMetrics',
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringEquals: { 'cloudwatch:namespace': cfg.metricsNamespace } },
      }),
      new iam.PolicyStatement({ sid: 'WriteOwnLogs', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.logGroupArn] }),
      // The stack's one on-failure queue: Lambda sends a failed asynchronous event there.
      new iam.PolicyStatement({ sid: 'SendFailedEventsToQueue', actions: ['sqs:SendMessage'], resources: [dlq.queueArn] }),
      ...baselineReads,
      ...listAccounts,
    ];
    // Member accounts: their read-only detector role, never the writer's member role.
    if (cfg.memberRoleName) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'EnterMemberAccountsReadOnly',
          actions: ['sts:AssumeRole'],
          resources: [`arn:${this.partition}:iam::*:role/${cfg.detectorMemberRoleName}`],
          conditions: cfg.organizationId ? { StringEquals: { 'aws:ResourceOrgID': cfg.organizationId } } : undefined,
        }),
      );
    }
    // securityHub=on: findings in this account's default product (member accounts import through
    // their detector role: Security Hub takes a finding only from the account it names).
    if (cfg.securityHub === 'on') {
      statements.push(
        new iam.PolicyStatement({
          sid: 'ImportFindings',
          actions: ['securityhub:BatchImportFindings'],
          resources: [`arn:${this.partition}:securityhub:*:${this.account}:product/${this.account}/default`],
        }),
      );
    }
    // configRule: the rule's answer (PutEvaluations has no resource-level permissions).
    if (cfg.configRule !== 'none') {
      statements.push(new iam.PolicyStatement({ sid: 'AnswerConfigRule', actions: ['config:PutEvaluations'], resources: ['*'] }));
    }
    const role = new iam.Role(this, 'DetectorRole', {
      description:
        'Execution role of the kms-replica-guard detector (reads multi-Region key policies, reports findings and Config answers; writes no key policy)',
      assumedBy: new iam.PrincipalWithConditions(new iam.ServicePrincipal('lambda.amazonaws.com'), {
        StringEquals: { 'aws:SourceAccount': this.account },
      }),
      inlinePolicies: { 'kms-replica-guard-detector': new iam.PolicyDocument({ statements }) },
    });
    const fn = new RustFunction(this, 'DetectorFunction', {
      manifestPath: path.join(REPO_ROOT, 'Cargo.toml'),
      binaryName: 'detector',
      runtime: 'provided.al2023',
      architecture: lambda.Architecture.ARM_64,
      description: 'kms-replica-guard detector - Security Hub findings and AWS Config answers for multi-Region replica key policies (read-only)',
      memorySize: cfg.memorySize,
      timeout: Duration.seconds(cfg.functionTimeout),
      role: role.withoutPolicyUpdates(),
      codeSigningConfig: cfg.codeSigningConfigArn
        ? lambda.CodeSigningConfig.fromCodeSigningConfigArn(this, 'DetectorCodeSigningConfig', cfg.codeSigningConfigArn)
        : undefined,
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: cfg.logLevel as lambda.ApplicationLogLevel,
      systemLogLevelV2: lambda.SystemLogLevel.INFO,
      // What is guarded, as the remediator's; no mode (always dry-run), backups, flap guard, write
      // rate, sweep queue or event bus: it writes nothing and publishes no drift event.
      environment: {
        ...guarded,
        // Organisation mode (empty = this account only): the writer member role names the role the
        // lockout check and own-call detection are about; the detector assumes the read-only one.
        MEMBER_ROLE_NAME: cfg.memberRoleName,
        MEMBER_READ_ROLE_NAME: cfg.memberRoleName ? cfg.detectorMemberRoleName : '',
        // Each replica reported on is a Security Hub finding in its own account and Region.
        SECURITY_HUB: cfg.securityHub,
      },
      retryAttempts: cfg.maxRetryAttempts,
      maxEventAge: Duration.seconds(cfg.maxEventAgeSeconds),
      onFailure: new destinations.SqsDestination(dlq),
    });
    const cfnFunction = fn.node.defaultChild as lambda.CfnFunction;
    skipCheckov(cfnFunction, DETECTOR_FUNCTION_SKIPS);
    cfnFunction.addMetadata('cfn-lint', { config: { ignore_checks: ['W3005'] } });
    new iam.Policy(this, 'DetectorOnlyThisFunctionPolicy', {
      policyName: 'kms-replica-guard-detector-only-this-function',
      roles: [role],
      statements: [
        new iam.PolicyStatement({
          sid: 'OnlyFromThisFunction',
          effect: iam.Effect.DENY,
          actions: DETECTOR_ONLY_THIS_FUNCTION_ACTIONS,
          resources: ['*'],
          conditions: { ArnNotEquals: { 'lambda:SourceFunctionArn': fn.functionArn } },
        }),
      ],
    });
    // The rules' names, for the guard change rule (a fixed name on the drift bus: Ref of a rule on a
    // custom bus is BUS|NAME, not the name CloudTrail records).
    const ruleNames: string[] = [];
    if (cfg.securityHub === 'on') {
      // Every event of the guard on its drift bus (any detail-type, put there by this account): the
      // detector re-reads the key itself and updates its finding.
      const notificationsName = `${this.stackName}-detector-notifications`;
      const notifications = new events.Rule(this, 'DetectorNotificationRule', {
        ruleName: notificationsName,
        description: 'The guard own events on its drift bus, to the kms-replica-guard detector (Security Hub findings)',
        eventPattern: { ...DETECTOR_EVENT_PATTERN, account: [Aws.ACCOUNT_ID] },
        targets: [new targets.LambdaFunction(fn)],
      });
      (notifications.node.defaultChild as events.CfnRule).eventBusName = driftBusName;
      // A dry-run sweep at the remediator's sweep interval refreshes every finding.
      const sweep = new events.Rule(this, 'DetectorSweepRule', {
        description: 'Dry-run sweep of the kms-replica-guard detector (refreshes every Security Hub finding)',
        schedule: events.Schedule.rate(Duration.hours(cfg.sweepIntervalHours)),
        targets: [new targets.LambdaFunction(fn)],
      });
      ruleNames.push(notificationsName, sweep.ruleName);
    }
    new CfnOutput(this, 'DetectorFunctionName', {
      description: 'Name of the detector function (Security Hub findings, AWS Config answers; read-only)',
      value: fn.functionName,
    });
    new CfnOutput(this, 'DetectorFunctionArn', {
      description: 'ARN of the detector function (the AWS Config rule function; infra/config/conformance-pack.yaml GuardFunctionArn)',
      value: fn.functionArn,
    });
    new CfnOutput(this, 'DetectorRoleArn', {
      description: 'The detector execution role: give it to the member stack as hubDetectorRoleArn, whose read-only detector role trusts exactly this role.',
      value: role.roleArn,
    });
    new CfnOutput(this, 'DetectorRoleName', {
      description: 'Name of the detector execution role (it reads key policies and writes none)',
      value: role.roleName,
    });
    return { fn, roleName: role.roleName, ruleNames };
  }

  /** Skips cargo-lambda bundling when the stack was created with `bundle: false`. */
  public override get bundlingRequired(): boolean {
    return this.bundle && super.bundlingRequired;
  }
}
