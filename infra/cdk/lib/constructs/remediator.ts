import {
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  aws_events as events,
  aws_events_targets as targets,
  aws_iam as iam,
  aws_lambda as lambda,
  aws_lambda_destinations as destinations,
  aws_logs as logs,
  aws_s3 as s3,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { RustFunction } from 'cargo-lambda-cdk';
import { BACKUP_BUCKET_SKIPS, FUNCTION_SKIPS, LOG_GROUP_SKIPS, skipCheckov } from '../checkov';
import { BACKUP_PREFIX, CONTRACT, GuardConfig, rateInstances, usesCatalogue } from '../config';
import { KMS_EVENT_PATTERN } from '../event-pattern';
import { contractStatements, declaredPolicy, enterMemberAccounts, FUNCTION_RUNTIME, guardFunction, onlyThisFunctionActions } from './function-guard';

/** What the role may do only from the function's execution environment (lambda:SourceFunctionArn). */
export const ONLY_THIS_FUNCTION_ACTIONS = onlyThisFunctionActions('remediator');

export interface RemediatorProps {
  readonly config: GuardConfig;
  /** The Cargo manifest whose binary the function runs (cargo-lambda-cdk builds it at synth). */
  readonly manifestPath: string;
  readonly binaryName: string;
  /** The sweep's work queue: the function plans the items onto it (SWEEP_QUEUE_URL) and works them. */
  readonly sweepQueue: sqs.IQueue;
  /** Where the function publishes each drift (EVENT_BUS): DriftBus. */
  readonly driftBus: { readonly name: string; readonly arn: string };
}

/**
 * The remediator: the function that rewrites drifted replica key policies, its role (and the
 * policy that keeps the role's powers in the function), its log group, its asynchronous
 * invocations' on-failure queue, the backups bucket, and the KMS rule that invokes it.
 */
export class Remediator {
  public readonly fn: lambda.Function;
  public readonly role: iam.Role;
  /** The on-failure queue of the asynchronous invocations (the detector's too). */
  public readonly deadLetterQueue: sqs.Queue;
  /** What is guarded and against which baseline: the environment the detector shares. */
  public readonly guarded: Record<string, string>;
  /** The statements that read the baseline (the detector's role has them too). */
  public readonly baselineReads: iam.PolicyStatement[];
  /** organizations:ListAccounts when memberAccounts is organization (the detector's role has it too). */
  public readonly listAccounts: iam.PolicyStatement[];
  /** The rule of the KMS calls that can change a replica key policy. */
  public readonly kmsRule: events.Rule;

  constructor(stack: Stack, props: RemediatorProps) {
    const cfg = props.config;
    const { sweepQueue } = props;
    const driftBusName = props.driftBus.name;
    const driftBusArn = props.driftBus.arn;

    const logGroup = new logs.LogGroup(stack, 'LogGroup', {
      logGroupName: CONTRACT.function.remediator_log_group.replace('${AWS::StackName}', stack.stackName),
      retention: cfg.logRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    skipCheckov(logGroup.node.defaultChild as logs.CfnLogGroup, LOG_GROUP_SKIPS);

    // Failed asynchronous invocations (after the retries or the maximum age) land here.
    const dlq = new sqs.Queue(stack, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.KMS_MANAGED,
      retentionPeriod: Duration.days(14),
    });

    // Every key policy the function overwrites, saved before the write: the audit trail and the
    // flap guard's write history. Retained when the stack is deleted or the bucket replaced.
    const backupBucket = new s3.Bucket(stack, 'BackupBucket', {
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

    // Explicit role: REMEDIATOR_ROLE_ARN is its ARN, and every replica's baseline key policy
    // must allow it (lockout check). Its own statements as infra/contract.json declares them
    // (xtask/src/iam.rs, where each says why), their Fn::Sub text rendered with this stack's values.
    const statements = contractStatements(declaredPolicy('remediator'), {
      'AWS::Partition': stack.partition,
      'AWS::AccountId': stack.account,
      MetricsNamespace: cfg.metricsNamespace,
      'LogGroup.Arn': logGroup.logGroupArn,
      'DeadLetterQueue.Arn': dlq.queueArn,
      'SweepQueue.Arn': sweepQueue.queueArn,
      BackupBucket: backupBucket.bucketName,
      'BackupBucket.Arn': backupBucket.bucketArn,
      DriftBusArn: driftBusArn,
    });
    // The baseline's location, read by the remediator and, when it exists, the detector.
    const baselineReads: iam.PolicyStatement[] = [];
    if (cfg.baselineSsmParameter) {
      baselineReads.push(
        new iam.PolicyStatement({
          sid: 'ReadBaselineParameter',
          actions: ['ssm:GetParameter'],
          resources: [`arn:${stack.partition}:ssm:${stack.region}:${stack.account}:parameter${cfg.baselineSsmParameter}`],
        }),
      );
    }
    if (cfg.baselineS3Object) {
      baselineReads.push(
        new iam.PolicyStatement({
          sid: 'ReadBaselineObject',
          actions: ['s3:GetObject'],
          resources: [`arn:${stack.partition}:s3:::${cfg.baselineS3Object}`],
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
          resources: [`arn:${stack.partition}:ssm:${stack.region}:${stack.account}:parameter${cfg.baselineSsmPath.replace(/\/$/, '')}`],
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
          resources: [`arn:${stack.partition}:s3:::${bucket}`],
          conditions: { StringLike: { 's3:prefix': `${levels.join('/')}*` } },
        }),
        new iam.PolicyStatement({
          sid: 'ReadBaselineCatalogueObjects',
          actions: ['s3:GetObject'],
          resources: [`arn:${stack.partition}:s3:::${cfg.baselineS3Prefix}*`],
        }),
      );
    }
    statements.push(...baselineReads);
    // Organisation mode: the member role of every account, by name (its trust policy admits exactly
    // this role); inside the organisation only when organizationId is set.
    if (cfg.memberRoleName) {
      statements.push(enterMemberAccounts(stack, 'EnterMemberAccounts', cfg.memberRoleName, cfg.organizationId));
    }
    // memberAccounts=organization: ListAccounts has no resource-level permissions.
    const listAccounts =
      cfg.memberAccounts === 'organization'
        ? [new iam.PolicyStatement({ sid: 'ListOrganizationAccounts', actions: ['organizations:ListAccounts'], resources: ['*'] })]
        : [];
    statements.push(...listAccounts);
    const role = new iam.Role(stack, 'RemediatorRole', {
      description: 'Execution role of kms-replica-guard (reads and rewrites multi-Region replica key policies)',
      assumedBy: new iam.PrincipalWithConditions(new iam.ServicePrincipal('lambda.amazonaws.com'), {
        StringEquals: { 'aws:SourceAccount': stack.account },
      }),
      inlinePolicies: { 'kms-replica-guard': new iam.PolicyDocument({ statements }) },
    });
    // The bucket's policy as infra/contract.json declares it (xtask/src/iam.rs): TLS only, and the
    // guard's memory (backups, write records, claims) written by its role alone and never erased.
    // Retained with the bucket, so that a bucket left behind by a stack deletion stays protected.
    for (const statement of contractStatements(declaredPolicy('backups_bucket'), {
      'BackupBucket.Arn': backupBucket.bucketArn,
      'RemediatorRole.Arn': role.roleArn,
    })) {
      backupBucket.addToResourcePolicy(statement);
    }
    backupBucket.policy?.applyRemovalPolicy(RemovalPolicy.RETAIN);

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
      SWEEP_REGIONS: cfg.sweepRegions.length > 0 ? cfg.sweepRegions.join(',') : stack.region,
      RATE_GET_KEY_POLICY: String(cfg.rateGetKeyPolicy),
      RATE_DESCRIBE_KEY: String(cfg.rateDescribeKey),
      // The rate* limits are the function's per account and Region; each of its at most
      // reservedConcurrency environments paces at its share. Unreserved, the sweep's workers
      // share them (its concurrency is bounded; events use the headroom under the quota).
      RATE_INSTANCES: String(rateInstances(cfg)),
      MEMBER_EXTERNAL_ID: cfg.memberExternalId,
      MEMBER_ACCOUNTS: cfg.memberAccounts,
    };

    const fn = new RustFunction(stack, 'Function', {
      manifestPath: props.manifestPath,
      binaryName: props.binaryName,
      runtime: FUNCTION_RUNTIME.runtime,
      architecture: FUNCTION_RUNTIME.architecture,
      description: 'kms-replica-guard - converges multi-Region replica key policies on a baseline',
      memorySize: cfg.memorySize,
      timeout: Duration.seconds(cfg.functionTimeout),
      // The inline policy above is complete (incl. sqs:SendMessage for the destination): no
      // generated DefaultPolicy, so the role stays exactly what the SAM template declares.
      role: role.withoutPolicyUpdates(),
      codeSigningConfig: cfg.codeSigningConfigArn
        ? lambda.CodeSigningConfig.fromCodeSigningConfigArn(stack, 'CodeSigningConfig', cfg.codeSigningConfigArn)
        : undefined,
      reservedConcurrentExecutions: cfg.reservedConcurrency > 0 ? cfg.reservedConcurrency : undefined,
      logGroup,
      loggingFormat: FUNCTION_RUNTIME.loggingFormat,
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
    guardFunction(stack, fn, role, {
      checkovSkips: FUNCTION_SKIPS,
      policyId: 'OnlyThisFunctionPolicy',
      policyName: 'kms-replica-guard-only-this-function',
      actions: ONLY_THIS_FUNCTION_ACTIONS,
    });

    // The KMS calls on this Region's default bus: its own CloudTrail events, and those the spoke
    // and member stacks forward there.
    const kmsRule = new events.Rule(stack, 'KmsApiCallRule', {
      description: 'KMS calls that can change a multi-Region replica key policy',
      eventPattern: KMS_EVENT_PATTERN,
      targets: [new targets.LambdaFunction(fn)],
    });

    this.fn = fn;
    this.role = role;
    this.deadLetterQueue = dlq;
    this.guarded = guarded;
    this.baselineReads = baselineReads;
    this.listAccounts = listAccounts;
    this.kmsRule = kmsRule;

    new CfnOutput(stack, 'FunctionName', { description: 'Name of the remediator function', value: fn.functionName });
    new CfnOutput(stack, 'FunctionArn', { description: 'ARN of the remediator function', value: fn.functionArn });
    new CfnOutput(stack, 'RemediatorRoleArn', {
      description:
        'Execution role ARN; every replica baseline key policy must allow it kms:PutKeyPolicy, kms:GetKeyPolicy and kms:DescribeKey (or keep the account-root statement)',
      value: role.roleArn,
    });
    new CfnOutput(stack, 'RemediatorRoleName', {
      description:
        'Name of the execution role. With the hub outside us-east-1, give it to the spoke stack in us-east-1 as guardRoleName: EventBridge delivers IAM CloudTrail events there only, and that spoke forwards the changes to this role policies to the hub guard change rule.',
      value: role.roleName,
    });
    new CfnOutput(stack, 'BackupBucketName', {
      description: `Bucket of the backups of every overwritten key policy (under ${BACKUP_PREFIX}); retained when the stack is deleted`,
      value: backupBucket.bucketName,
    });
    new CfnOutput(stack, 'DeadLetterQueueUrl', { description: 'On-failure queue of the asynchronous invocations', value: dlq.queueUrl });
    new CfnOutput(stack, 'DeadLetterQueueArn', { description: 'ARN of the on-failure queue (redrive source)', value: dlq.queueArn });
  }
}
