import { testApp } from './util';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { DEFAULT_CONFIG, GuardConfig, configFromContext } from '../lib/config';
import { HubStack } from '../lib/hub-stack';

const ACCOUNT = '111122223333';
const REGION = 'us-east-1';

// Never cross-compile Rust in tests: no stack is bundled.
function synth(overrides: Partial<GuardConfig> = {}, bundle = false): Template {
  const app = testApp();
  const stack = new HubStack(app, 'Hub', {
    stackName: 'kms-replica-guard',
    env: { account: ACCOUNT, region: REGION },
    config: { ...DEFAULT_CONFIG, ...overrides },
    bundle,
  });
  return Template.fromStack(stack);
}

function onlyResource(template: Template, type: string, props: object = {}): [string, any] {
  const found = template.findResources(type, props);
  const ids = Object.keys(found);
  expect(ids).toHaveLength(1);
  return [ids[0], found[ids[0]]];
}

/** The on-failure queue of the asynchronous invocations (the EventInvokeConfig destination). */
function asyncDlqId(template: Template): string {
  const [, config] = onlyResource(template, 'AWS::Lambda::EventInvokeConfig');
  return config.Properties.DestinationConfig.OnFailure.Destination['Fn::GetAtt'][0];
}

/** The sweep work queue (the one with a redrive policy) and its dead-letter queue. */
function sweepQueues(template: Template): { queueId: string; queue: any; dlqId: string } {
  const [queueId, queue] = onlyResource(template, 'AWS::SQS::Queue', { Properties: { RedrivePolicy: Match.anyValue() } });
  return { queueId, queue, dlqId: queue.Properties.RedrivePolicy.deadLetterTargetArn['Fn::GetAtt'][0] };
}

function roleStatements(template: Template): any[] {
  const [, role] = onlyResource(template, 'AWS::IAM::Role');
  return role.Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
}

/** The remediator's or the detector's function or role: the detector's logical ids start with Detector. */
function guard(template: Template, type: string, isDetector: boolean): [string, any] {
  const found = Object.entries(template.findResources(type)).filter(([id]) => id.startsWith('Detector') === isDetector);
  expect(found).toHaveLength(1);
  return found[0] as [string, any];
}
const remediator = (t: Template) => guard(t, 'AWS::Lambda::Function', false);
const detector = (t: Template) => guard(t, 'AWS::Lambda::Function', true);

/** Every statement of the role's identity policies: inline, and the policies attached to it. */
function statementsOfRole(template: Template, isDetector: boolean): any[] {
  const [roleId, role] = guard(template, 'AWS::IAM::Role', isDetector);
  const attached = (Object.values(template.findResources('AWS::IAM::Policy')) as any[]).filter((p) =>
    p.Properties.Roles.some((r: any) => r.Ref === roleId),
  );
  return [...role.Properties.Policies, ...attached.map((p) => p.Properties)].flatMap((p: any) => p.PolicyDocument.Statement);
}
const remediatorStatements = (t: Template) => statementsOfRole(t, false);
const detectorStatements = (t: Template) => statementsOfRole(t, true);

function statementsOf(template: Template, type: string): any[] {
  return (Object.values(template.findResources(type)) as any[]).flatMap((r) => (r.Properties.Policies ?? []).flatMap((p: any) => p.PolicyDocument.Statement));
}

describe('the hub stack', () => {
  const template = synth();

  test('the KMS rule pattern is exactly the documented one and targets the function', () => {
    const [fnId] = onlyResource(template, 'AWS::Lambda::Function');
    const [, rule] = onlyResource(template, 'AWS::Events::Rule', { Properties: { EventPattern: Match.objectLike({ source: ['aws.kms'] }) } });
    expect(rule.Properties.EventPattern).toStrictEqual({
      source: ['aws.kms'],
      'detail-type': ['AWS API Call via CloudTrail'],
      detail: {
        eventSource: ['kms.amazonaws.com'],
        eventName: ['ReplicateKey', 'CreateKey', 'PutKeyPolicy', 'UpdatePrimaryRegion', 'TagResource', 'UntagResource'],
        errorCode: [{ exists: false }],
      },
    });
    expect(rule.Properties.Targets).toEqual([expect.objectContaining({ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] } })]);
  });

  test('the sweep runs on the schedule and reaches the function', () => {
    const [fnId] = onlyResource(template, 'AWS::Lambda::Function');
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(6 hours)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] } })],
    });
    template.resourceCountIs('AWS::Lambda::Permission', 2);
  });

  test('the function is the arm64 provided.al2023 bootstrap with its environment and JSON logs', () => {
    const [roleId] = onlyResource(template, 'AWS::IAM::Role');
    const [bucketId] = onlyResource(template, 'AWS::S3::Bucket');
    const [busId] = onlyResource(template, 'AWS::Events::EventBus');
    const [logGroupId] = onlyResource(template, 'AWS::Logs::LogGroup', {
      Properties: { LogGroupName: '/kms-replica-guard/kms-replica-guard', RetentionInDays: 365 },
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'provided.al2023',
      Architectures: ['arm64'],
      Handler: 'bootstrap',
      // No reservation by default: Lambda refuses one that leaves fewer than 100 unreserved.
      ReservedConcurrentExecutions: Match.absent(),
      Role: { 'Fn::GetAtt': [roleId, 'Arn'] },
      LoggingConfig: { LogFormat: 'JSON', ApplicationLogLevel: 'INFO', LogGroup: { Ref: logGroupId } },
      Environment: {
        Variables: {
          REMEDIATION_MODE: 'dry-run',
          BASELINE_SOURCE: 'primary',
          // No catalogue: the tag and default stay empty (unset, to the function).
          BASELINE_TAG: '',
          BASELINE_DEFAULT: '',
          BASELINE_MATCH: 'exact',
          MIRROR_REWRITE: 'off',
          METRICS_NAMESPACE: 'KmsReplicaGuard',
          EXCLUDE_TAG: 'kms-replica-guard:exclude',
          REMEDIATOR_ROLE_ARN: { 'Fn::GetAtt': [roleId, 'Arn'] },
          SWEEP_REGIONS: REGION,
          BACKUP_BUCKET: { Ref: bucketId },
          BACKUP_PREFIX: 'kms-replica-guard/',
          FLAP_MAX: '5',
          FLAP_WINDOW: '1h',
          RATE_GET_KEY_POLICY: '800',
          RATE_PUT_KEY_POLICY: '12',
          RATE_DESCRIBE_KEY: '1600',
          RATE_INSTANCES: '2',
          EVENT_BUS: { Ref: busId },
        },
      },
    });
    // The findings are the detector's (securityHub), not the remediator's.
    const [, fn] = onlyResource(template, 'AWS::Lambda::Function');
    expect(fn.Properties.Environment.Variables.SECURITY_HUB).toBeUndefined();
  });

  test('the backups bucket is encrypted, versioned, private, TLS-only, written by the guard only, expires backups and is retained', () => {
    const [bucketId, bucket] = onlyResource(template, 'AWS::S3::Bucket');
    expect(bucket.DeletionPolicy).toBe('Retain');
    expect(bucket.UpdateReplacePolicy).toBe('Retain');
    expect(bucket.Properties).toEqual({
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      VersioningConfiguration: { Status: 'Enabled' },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      LifecycleConfiguration: {
        Rules: [{ Id: 'ExpireBackups', Status: 'Enabled', ExpirationInDays: 365, NoncurrentVersionExpiration: { NoncurrentDays: 365 } }],
      },
    });
    const [, policy] = onlyResource(template, 'AWS::S3::BucketPolicy');
    expect(policy.DeletionPolicy).toBe('Retain');
    expect(policy.Properties.Bucket).toEqual({ Ref: bucketId });
    expect(policy.Properties.PolicyDocument.Statement).toEqual([
      {
        Sid: 'DenyInsecureTransport',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: 's3:*',
        Resource: [
          { 'Fn::GetAtt': [bucketId, 'Arn'] },
          { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId, 'Arn'] }, '/*']] },
        ],
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
      {
        Sid: 'OnlyTheGuardWritesUnderItsPrefix',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: ['s3:DeleteObject', 's3:PutObject'],
        Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId, 'Arn'] }, '/kms-replica-guard/*']] },
        Condition: { ArnNotEquals: { 'aws:PrincipalArn': { 'Fn::GetAtt': [onlyResource(template, 'AWS::IAM::Role')[0], 'Arn'] } } },
      },
      {
        Sid: 'NoOneDeletesHistory',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: 's3:DeleteObjectVersion',
        Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId, 'Arn'] }, '/kms-replica-guard/*']] },
      },
    ]);
    expect(template.findOutputs('BackupBucketName').BackupBucketName.Value).toEqual({ Ref: bucketId });
  });

  test('the role may write and read backups, and list them, only under the backup prefix, and delete only write claims', () => {
    const [bucketId] = onlyResource(template, 'AWS::S3::Bucket');
    const s3Statements = roleStatements(template).filter((s) => [s.Action].flat().some((a: string) => a.startsWith('s3:')));
    expect(s3Statements).toEqual([
      {
        Sid: 'WriteAndReadPolicyBackups',
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:PutObject'],
        Resource: { 'Fn::Join': ['', ['arn:aws:s3:::', { Ref: bucketId }, '/kms-replica-guard/*']] },
      },
      {
        Sid: 'ListPolicyBackups',
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: { 'Fn::GetAtt': [bucketId, 'Arn'] },
      },
      {
        Sid: 'ReleaseWriteClaims',
        Effect: 'Allow',
        Action: 's3:DeleteObject',
        Resource: { 'Fn::Join': ['', ['arn:aws:s3:::', { Ref: bucketId }, '/kms-replica-guard/claims/*']] },
      },
    ]);
  });

  test('failed async invocations go to an encrypted 14-day DLQ after the retries', () => {
    const queueId = asyncDlqId(template);
    template.hasResourceProperties('AWS::SQS::Queue', { KmsMasterKeyId: 'alias/aws/sqs', MessageRetentionPeriod: 1209600 });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      Qualifier: '$LATEST',
      MaximumRetryAttempts: 2,
      MaximumEventAgeInSeconds: 3600,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId, 'Arn'] } } },
    });
    expect(roleStatements(template)).toContainEqual(
      expect.objectContaining({ Effect: 'Allow', Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': [queueId, 'Arn'] } }),
    );
  });

  test('the role may only touch multi-Region keys of this account, and never bypass the lockout check', () => {
    const statements = roleStatements(template);
    const read = statements.find((s) => s.Sid === 'ReadMultiRegionKeys');
    expect(read.Effect).toBe('Allow');
    expect([...read.Action].sort()).toEqual(['kms:DescribeKey', 'kms:GetKeyPolicy', 'kms:ListResourceTags']);
    expect(read.Resource).toBe(`arn:aws:kms:*:${ACCOUNT}:key/mrk-*`);
    // PutKeyPolicy on replicas only: never on a primary, never on a single-Region key.
    expect(statements).toContainEqual({
      Sid: 'RewriteReplicaKeyPolicies',
      Effect: 'Allow',
      Action: 'kms:PutKeyPolicy',
      Resource: `arn:aws:kms:*:${ACCOUNT}:key/mrk-*`,
      Condition: { StringEquals: { 'kms:MultiRegionKeyType': 'REPLICA' } },
    });
    const puts = statements.filter((s) => s.Effect === 'Allow' && [s.Action].flat().includes('kms:PutKeyPolicy'));
    expect(puts.map((s) => s.Sid)).toEqual(['RewriteReplicaKeyPolicies']);
    expect(statements).toContainEqual({
      Sid: 'NeverBypassLockoutSafetyCheck',
      Effect: 'Deny',
      Action: 'kms:PutKeyPolicy',
      Resource: '*',
      Condition: { Bool: { 'kms:BypassPolicyLockoutSafetyCheck': 'true' } },
    });
    expect(statements).toContainEqual({
      Sid: 'PublishOwnMetrics',
      Effect: 'Allow',
      Action: 'cloudwatch:PutMetricData',
      Resource: '*',
      Condition: { StringEquals: { 'cloudwatch:namespace': 'KmsReplicaGuard' } },
    });
    // Only ListKeys (no resource-level permissions) and the conditioned statements use "*".
    const unscoped = statements.filter((s) => s.Effect === 'Allow' && s.Resource === '*' && !s.Condition);
    expect(unscoped.map((s) => s.Action)).toEqual(['kms:ListKeys']);
    // No generated DefaultPolicy: the inline policy is the whole grant, as in the SAM template. The
    // one AWS::IAM::Policy denies: the role works only from this function (lambda:SourceFunctionArn).
    const [, only] = onlyResource(template, 'AWS::IAM::Policy');
    const [fnId] = onlyResource(template, 'AWS::Lambda::Function');
    expect(only.Properties.PolicyDocument.Statement).toEqual([
      expect.objectContaining({
        Sid: 'OnlyFromThisFunction',
        Effect: 'Deny',
        Resource: '*',
        Condition: { ArnNotEquals: { 'lambda:SourceFunctionArn': { 'Fn::GetAtt': [fnId, 'Arn'] } } },
      }),
    ]);
    const denied: string[] = only.Properties.PolicyDocument.Statement[0].Action;
    expect(denied).toContain('kms:PutKeyPolicy');
    expect(denied).toContain('sts:AssumeRole');
    // The Lambda service polls the sweep queue and sends to the DLQ with the role, without the key.
    expect(denied.filter((a) => a.startsWith('sqs:') || a.startsWith('logs:'))).toEqual([]);
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({ Principal: { Service: 'lambda.amazonaws.com' }, Condition: { StringEquals: { 'aws:SourceAccount': ACCOUNT } } }),
        ],
      },
    });
  });

  test('the alarms watch the right metrics with the right thresholds and notify the topic', () => {
    const [topicId] = onlyResource(template, 'AWS::SNS::Topic');
    const queueId = asyncDlqId(template);
    const { dlqId: sweepDlqId } = sweepQueues(template);
    const [fnId] = onlyResource(template, 'AWS::Lambda::Function');
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a: any) => a.Properties);
    const byName = Object.fromEntries(alarms.map((a) => [a.AlarmName, a]));
    expect(Object.keys(byName).sort()).toEqual([
      'kms-replica-guard-AccountNotAllowed',
      'kms-replica-guard-AccountNotEntered',
      'kms-replica-guard-AsyncEventAge',
      'kms-replica-guard-AsyncEventsDropped',
      'kms-replica-guard-AutoFixApplied-spike',
      'kms-replica-guard-AutoFixFailed',
      'kms-replica-guard-DLQ-not-empty',
      'kms-replica-guard-ExposureDrift',
      'kms-replica-guard-FlapSuppressed',
      'kms-replica-guard-FunctionErrors',
      'kms-replica-guard-GuardrailRefused',
      'kms-replica-guard-SweepCompleted-heartbeat',
      'kms-replica-guard-Throttles',
      'kms-replica-guard-WriteExposure',
      'kms-replica-guard-sweep-DLQ-not-empty',
    ]);
    const common = { Period: 300, EvaluationPeriods: 1, TreatMissingData: 'notBreaching' };
    // The fleet totals: no dimensions at all (the function also publishes a Region-dimensioned copy).
    expect(byName['kms-replica-guard-AutoFixApplied-spike']).toMatchObject({
      ...common, Namespace: 'KmsReplicaGuard', MetricName: 'AutoFixApplied', Statistic: 'Sum',
      Threshold: 10, ComparisonOperator: 'GreaterThanThreshold',
    });
    for (const metric of ['AutoFixFailed', 'FlapSuppressed', 'AccountNotEntered', 'AccountNotAllowed']) {
      expect(byName[`kms-replica-guard-${metric}`]).toMatchObject({
        ...common, Namespace: 'KmsReplicaGuard', MetricName: metric, Statistic: 'Sum',
        Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
    }
    for (const name of ['AutoFixApplied-spike', 'AutoFixFailed', 'FlapSuppressed', 'AccountNotEntered', 'AccountNotAllowed']) {
      expect(byName[`kms-replica-guard-${name}`].Dimensions).toBeUndefined();
    }
    expect(byName['kms-replica-guard-FunctionErrors']).toMatchObject({
      ...common, Namespace: 'AWS/Lambda', MetricName: 'Errors', Statistic: 'Sum', Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold', Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId } }],
    });
    // The Lambda service's own metrics of this function.
    for (const metric of ['Throttles', 'AsyncEventsDropped']) {
      expect(byName[`kms-replica-guard-${metric}`]).toMatchObject({
        ...common, Namespace: 'AWS/Lambda', MetricName: metric, Statistic: 'Sum', Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold', Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId } }],
      });
    }
    // AsyncEventAge is in milliseconds: half of maxEventAgeSeconds (3600 s by default) is the alarm.
    const age = byName['kms-replica-guard-AsyncEventAge'];
    expect(age).toMatchObject({ EvaluationPeriods: 1, Threshold: 0.5, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching' });
    expect(age.Metrics).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Expression: 'age / (1000 * 3600)', ReturnData: true }),
        {
          Id: 'age',
          MetricStat: { Metric: { Namespace: 'AWS/Lambda', MetricName: 'AsyncEventAge', Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId } }] }, Period: 300, Stat: 'Maximum' },
          ReturnData: false,
        },
      ]),
    );
    expect(age.Metrics).toHaveLength(2);
    expect(byName['kms-replica-guard-DLQ-not-empty']).toMatchObject({
      ...common, Namespace: 'AWS/SQS', MetricName: 'ApproximateNumberOfMessagesVisible', Statistic: 'Maximum',
      Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }],
    });
    expect(byName['kms-replica-guard-sweep-DLQ-not-empty']).toMatchObject({
      ...common, Namespace: 'AWS/SQS', MetricName: 'ApproximateNumberOfMessagesVisible', Statistic: 'Maximum',
      Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [sweepDlqId, 'QueueName'] } }],
    });
    // ExposureDrift has no dimensionless total: metric math over the public and cross-account series.
    const exposure = byName['kms-replica-guard-ExposureDrift'];
    expect(exposure).toMatchObject({ EvaluationPeriods: 1, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching' });
    expect(exposure.MetricName).toBeUndefined();
    const series = (severity: string) => ({
      Metric: { Namespace: 'KmsReplicaGuard', MetricName: 'ExposureDrift', Dimensions: [{ Name: 'Severity', Value: severity }] },
      Period: 300,
      Stat: 'Sum',
    });
    expect(exposure.Metrics).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Expression: 'public + cross_account', ReturnData: true }),
        { Id: 'public', MetricStat: series('public'), ReturnData: false },
        { Id: 'cross_account', MetricStat: series('cross-account'), ReturnData: false },
      ]),
    );
    expect(exposure.Metrics).toHaveLength(3);
    expect(exposure.AlarmDescription).toMatch(/dry-run.*Runbook: docs\/src\/runbook\/exposuredrift\.md$/);
    // GuardrailRefused and WriteExposure: the same sum over their public and cross-account series.
    for (const metric of ['GuardrailRefused', 'WriteExposure']) {
      const math = byName[`kms-replica-guard-${metric}`];
      expect(math).toMatchObject({ EvaluationPeriods: 1, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching' });
      const of = (severity: string) => ({ ...series(severity), Metric: { ...series(severity).Metric, MetricName: metric } });
      expect(math.Metrics).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ Expression: 'public + cross_account', ReturnData: true }),
          { Id: 'public', MetricStat: of('public'), ReturnData: false },
          { Id: 'cross_account', MetricStat: of('cross-account'), ReturnData: false },
        ]),
      );
      expect(math.AlarmDescription).toMatch(new RegExp(`Runbook: docs/src/runbook/${metric.toLowerCase()}\\.md$`));
    }
    expect(byName['kms-replica-guard-AccountNotEntered'].AlarmDescription).toMatch(/Runbook: docs\/src\/runbook\/accountnotentered\.md$/);
    expect(byName['kms-replica-guard-sweep-DLQ-not-empty'].AlarmDescription).toMatch(/Runbook: docs\/src\/runbook\/sweep-dlq-not-empty\.md$/);
    // The heartbeat: two sweep intervals (6 hours by default) without a completed sweep, missing data breaching.
    expect(byName['kms-replica-guard-SweepCompleted-heartbeat']).toMatchObject({
      Namespace: 'KmsReplicaGuard', MetricName: 'SweepCompleted', Statistic: 'Sum', Period: 21600,
      EvaluationPeriods: 2, DatapointsToAlarm: 2, Threshold: 1, ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'breaching',
    });
    expect(byName['kms-replica-guard-SweepCompleted-heartbeat'].AlarmDescription).toMatch(/Runbook: docs\/src\/runbook\/sweepcompleted-heartbeat\.md$/);
    for (const a of alarms) {
      expect(a.AlarmActions).toEqual([{ Ref: topicId }]);
      expect(a.OKActions).toEqual([{ Ref: topicId }]);
    }
  });

  test('the alarm topic is encrypted with a rotated key that CloudWatch and EventBridge may use', () => {
    const [keyId, key] = onlyResource(template, 'AWS::KMS::Key', { Properties: { EnableKeyRotation: true } });
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] } });
    for (const [sid, service] of [['CloudWatchAlarmsPublish', 'cloudwatch.amazonaws.com'], ['EventBridgeRulesPublish', 'events.amazonaws.com']]) {
      expect(key.Properties.KeyPolicy.Statement).toContainEqual({
        Sid: sid,
        Effect: 'Allow',
        Principal: { Service: service },
        Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        Resource: '*',
      });
    }
    template.resourceCountIs('AWS::SNS::Subscription', 0);
  });

  test('the exposure rule sends public and cross-account drifts of the drift bus to the topic as a readable message', () => {
    const [topicId] = onlyResource(template, 'AWS::SNS::Topic');
    const [busId] = onlyResource(template, 'AWS::Events::EventBus');
    const [ruleId, rule] = onlyResource(template, 'AWS::Events::Rule', {
      Properties: { EventPattern: Match.objectLike({ source: ['kms-replica-guard'], 'detail-type': Match.arrayWith(['Replica Key Policy Drift Detected']) }) },
    });
    const [refusedId] = onlyResource(template, 'AWS::Events::Rule', {
      Properties: { EventPattern: Match.objectLike({ 'detail-type': ['Replica Key Policy Write Refused'] }) },
    });
    const [exemptionId] = onlyResource(template, 'AWS::Events::Rule', {
      Properties: { EventPattern: Match.objectLike({ 'detail-type': ['Replica Key Exemption Granted'] }) },
    });
    expect(rule.Properties.EventBusName).toEqual({ Ref: busId });
    expect(rule.Properties.Name).toBe('kms-replica-guard-exposure');
    expect(rule.Properties.EventPattern).toStrictEqual({
      source: ['kms-replica-guard'],
      'detail-type': ['Replica Key Policy Drift Detected', 'Replica Key Policy Remediated', 'Replica Key Policy Remediation Failed'],
      detail: { exposure: { severity: ['public', 'cross-account'] } },
      // The guard's own events only: put on the bus by this account.
      account: [{ Ref: 'AWS::AccountId' }],
    });
    expect(rule.Properties.Targets).toHaveLength(1);
    const [target] = rule.Properties.Targets;
    expect(target.Arn).toEqual({ Ref: topicId });
    const { InputPathsMap: paths, InputTemplate: text } = target.InputTransformer;
    // Scalar paths only (InputTransformer cannot index arrays); every placeholder has one.
    for (const path of Object.values(paths) as string[]) expect(path).toMatch(/^\$(\.[A-Za-z0-9_-]+)+$/);
    expect(new Set([...text.matchAll(/<([^>]+)>/g)].map((m: RegExpMatchArray) => m[1]))).toEqual(new Set(Object.keys(paths)));
    expect(paths).toMatchObject({ severity: '$.detail.exposure.severity', key_arn: '$.detail.key_arn', actor_arn: '$.detail.actor.arn' });
    expect(text).toMatch(/^"kms-replica-guard: <severity> drift on <key_arn> .*Runbook: docs\/src\/runbook\/exposuredrift\.md"$/);
    // The topic admits this stack's alarms, this rule and the guard change rule only.
    const [changeRuleId] = onlyResource(template, 'AWS::Events::Rule', { Properties: { Name: 'kms-replica-guard-guard-changes' } });
    const [, policy] = onlyResource(template, 'AWS::SNS::TopicPolicy');
    expect(policy.Properties.Topics).toEqual([{ Ref: topicId }]);
    expect(policy.Properties.PolicyDocument.Statement).toEqual([
      {
        Sid: 'CloudWatchAlarmsPublish',
        Effect: 'Allow',
        Principal: { Service: 'cloudwatch.amazonaws.com' },
        Action: 'sns:Publish',
        Resource: { Ref: topicId },
        Condition: {
          StringEquals: { 'aws:SourceAccount': ACCOUNT },
          ArnLike: { 'aws:SourceArn': `arn:aws:cloudwatch:${REGION}:${ACCOUNT}:alarm:kms-replica-guard-*` },
        },
      },
      {
        Sid: 'EventBridgeRulesPublish',
        Effect: 'Allow',
        Principal: { Service: 'events.amazonaws.com' },
        Action: 'sns:Publish',
        Resource: { Ref: topicId },
        Condition: {
          ArnEquals: {
            'aws:SourceArn': [ruleId, refusedId, exemptionId, changeRuleId].map((id) => ({ 'Fn::GetAtt': [id, 'Arn'] })),
          },
        },
      },
    ]);
    // The function may publish its drift events to the drift bus, and nowhere else.
    const publish = roleStatements(template).filter((s) => [s.Action].flat().some((a: string) => a.startsWith('events:')));
    expect(publish).toEqual([
      { Sid: 'PublishDriftEvents', Effect: 'Allow', Action: 'events:PutEvents', Resource: { 'Fn::GetAtt': [busId, 'Arn'] } },
    ]);
  });

  test('drift events go to the stack own bus, <stack>-drift, without a bus policy (driftEventBus dedicated, the default)', () => {
    const [busId, bus] = onlyResource(template, 'AWS::Events::EventBus');
    expect(bus.Properties).toEqual({ Name: 'kms-replica-guard-drift' });
    template.resourceCountIs('AWS::Events::EventBusPolicy', 0);
    const guardRules = Object.values(template.findResources('AWS::Events::Rule', {
      Properties: { EventPattern: Match.objectLike({ source: ['kms-replica-guard'] }) },
    })) as any[];
    expect(guardRules).toHaveLength(3);
    for (const r of guardRules) expect(r.Properties.EventBusName).toEqual({ Ref: busId });
    expect(template.findOutputs('DriftEventBusName').DriftEventBusName.Value).toEqual({ Ref: busId });
  });

  test('driftEventBus default puts the drift events and their rules back on the default bus', () => {
    const t = synth({ driftEventBus: 'default' });
    t.resourceCountIs('AWS::Events::EventBus', 0);
    t.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ EVENT_BUS: 'default' }) } });
    const guardRules = Object.values(t.findResources('AWS::Events::Rule', {
      Properties: { EventPattern: Match.objectLike({ source: ['kms-replica-guard'] }) },
    })) as any[];
    expect(guardRules).toHaveLength(3);
    for (const r of guardRules) expect(r.Properties.EventBusName).toBe('default');
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    const publish = roleStatements(t).filter((s) => s.Sid === 'PublishDriftEvents');
    expect(publish).toEqual([
      { Sid: 'PublishDriftEvents', Effect: 'Allow', Action: 'events:PutEvents', Resource: `arn:aws:events:${REGION}:${ACCOUNT}:event-bus/default` },
    ]);
    expect(() => configFromContext(ctx({ driftEventBus: 'custom' }))).toThrow(/driftEventBus=custom/);
    expect(configFromContext(ctx({})).driftEventBus).toBe('dedicated');
  });

  test('refused writes and exemptions of the guard in this account go to the topic as readable messages', () => {
    const [topicId] = onlyResource(template, 'AWS::SNS::Topic');
    for (const [detailType, runbook, words] of [
      ['Replica Key Policy Write Refused', 'guardrailrefused', ['key_arn', 'reason', 'actor_arn']],
      ['Replica Key Exemption Granted', 'exemption-granted', ['key_arn', 'tag', 'value', 'actor_arn']],
    ] as const) {
      const [, rule] = onlyResource(template, 'AWS::Events::Rule', { Properties: { EventPattern: Match.objectLike({ 'detail-type': [detailType] }) } });
      const [busId] = onlyResource(template, 'AWS::Events::EventBus');
      expect(rule.Properties.EventBusName).toEqual({ Ref: busId });
      expect(rule.Properties.EventPattern).toStrictEqual({ source: ['kms-replica-guard'], 'detail-type': [detailType], account: [{ Ref: 'AWS::AccountId' }] });
      const [target] = rule.Properties.Targets;
      expect(target.Arn).toEqual({ Ref: topicId });
      const { InputPathsMap: paths, InputTemplate: text } = target.InputTransformer;
      for (const path of Object.values(paths) as string[]) expect(path).toMatch(/^\$(\.[A-Za-z0-9_-]+)+$/);
      expect(new Set([...text.matchAll(/<([^>]+)>/g)].map((m: RegExpMatchArray) => m[1]))).toEqual(new Set(Object.keys(paths)));
      for (const w of words) expect(Object.keys(paths)).toContain(w);
      expect(text).toMatch(new RegExp(`^"kms-replica-guard: .*Runbook: docs/src/runbook/${runbook}\\.md"$`));
    }
  });

  test('the dashboard shows the six metrics', () => {
    const [, dashboard] = onlyResource(template, 'AWS::CloudWatch::Dashboard');
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const m of ['AutoFixApplied', 'DriftDetected', 'AutoFixFailed', 'FlapSuppressed', 'AccountNotEntered', 'AccountNotAllowed']) {
      expect(body).toContain(m);
    }
  });

  test('the outputs give the user what they need', () => {
    const outputs = Object.keys(template.findOutputs('*')).sort();
    expect(outputs).toEqual([
      'AlarmTopicArn', 'BackupBucketName', 'DashboardName', 'DeadLetterQueueArn', 'DeadLetterQueueUrl', 'DriftEventBusName', 'FunctionArn',
      'FunctionName', 'HubEventBusArn', 'RemediatorRoleArn', 'RemediatorRoleName', 'SweepDeadLetterQueueUrl', 'SweepQueueUrl',
    ]);
  });

  test('every checkov skip carries a reason', () => {
    for (const type of ['AWS::Lambda::Function', 'AWS::Logs::LogGroup', 'AWS::S3::Bucket']) {
      const [, res] = onlyResource(template, type);
      for (const skip of res.Metadata.checkov.skip) {
        expect(skip.id).toMatch(/^CKV2?_AWS_\d+$/);
        expect(skip.comment.length).toBeGreaterThan(40);
      }
    }
  });
});

describe('the hub stack sweep queue and organisation mode', () => {
  const template = synth();

  test('the sweep fans out to an encrypted work queue with a redrive to its own 14-day DLQ', () => {
    const { queueId, queue, dlqId } = sweepQueues(template);
    expect(queue.Properties).toEqual({
      KmsMasterKeyId: 'alias/aws/sqs',
      VisibilityTimeout: 1800,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: 5 },
    });
    expect(dlqId).not.toBe(asyncDlqId(template));
    expect(template.toJSON().Resources[dlqId].Properties).toEqual({ KmsMasterKeyId: 'alias/aws/sqs', MessageRetentionPeriod: 1209600 });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ SWEEP_QUEUE_URL: { Ref: queueId }, MEMBER_ROLE_NAME: '', MEMBER_EXTERNAL_ID: '', MEMBER_ACCOUNTS: '' }) },
    });
    expect(template.findOutputs('SweepQueueUrl').SweepQueueUrl.Value).toEqual({ Ref: queueId });
    expect(template.findOutputs('SweepDeadLetterQueueUrl').SweepDeadLetterQueueUrl.Value).toEqual({ Ref: dlqId });
  });

  test('the function consumes the work queue in batches of 5, reporting item failures, at most sweepWorkerConcurrency at once', () => {
    const [fnId] = onlyResource(template, 'AWS::Lambda::Function');
    const { queueId } = sweepQueues(template);
    const [, esm] = onlyResource(template, 'AWS::Lambda::EventSourceMapping');
    expect(esm.Properties).toEqual({
      BatchSize: 5,
      EventSourceArn: { 'Fn::GetAtt': [queueId, 'Arn'] },
      FunctionName: { Ref: fnId },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 2 },
    });
    expect(roleStatements(template)).toContainEqual({
      Sid: 'FeedAndWorkSweepQueue',
      Effect: 'Allow',
      Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ReceiveMessage', 'sqs:SendMessage'],
      Resource: { 'Fn::GetAtt': [queueId, 'Arn'] },
    });
    const other = synth({ sweepWorkerConcurrency: 5, sweepVisibilityTimeout: 3600 });
    other.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 5 } });
    other.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 3600 });
  });

  test('single account by default: no AssumeRole, no ListAccounts, no bus policy', () => {
    const actions = roleStatements(template).flatMap((s) => [s.Action].flat());
    expect(actions).not.toContain('sts:AssumeRole');
    expect(actions).not.toContain('organizations:ListAccounts');
    template.resourceCountIs('AWS::Events::EventBusPolicy', 0);
  });

  test('member accounts: AssumeRole on the member role name, inside the organisation; ListAccounts for organization', () => {
    const t = synth({ memberRoleName: 'kms-replica-guard-member', memberAccounts: 'organization', memberExternalId: 'ext-1234', organizationId: 'o-a1b2c3d4e5' });
    const statements = roleStatements(t);
    expect(statements).toContainEqual({
      Sid: 'EnterMemberAccounts',
      Effect: 'Allow',
      Action: 'sts:AssumeRole',
      Resource: 'arn:aws:iam::*:role/kms-replica-guard-member',
      Condition: { StringEquals: { 'aws:ResourceOrgID': 'o-a1b2c3d4e5' } },
    });
    expect(statements).toContainEqual({ Sid: 'ListOrganizationAccounts', Effect: 'Allow', Action: 'organizations:ListAccounts', Resource: '*' });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({ MEMBER_ROLE_NAME: 'kms-replica-guard-member', MEMBER_EXTERNAL_ID: 'ext-1234', MEMBER_ACCOUNTS: 'organization' }),
      },
    });
    const listed = roleStatements(
      synth({ memberRoleName: 'kms-replica-guard-member', memberAccounts: '222233334444,444455556666', organizationId: 'o-a1b2c3d4e5' }),
    );
    expect(listed.find((s) => s.Sid === 'EnterMemberAccounts').Condition).toEqual({ StringEquals: { 'aws:ResourceOrgID': 'o-a1b2c3d4e5' } });
    expect(listed.map((s) => s.Sid)).not.toContain('ListOrganizationAccounts');
  });

  test('organizationId: the default bus admits KMS CloudTrail events from the organisation only', () => {
    const t = synth({ organizationId: 'o-a1b2c3d4e5' });
    const [, policy] = onlyResource(t, 'AWS::Events::EventBusPolicy');
    expect(policy.Properties).toEqual({
      EventBusName: 'default',
      StatementId: 'kms-replica-guard-organization',
      Statement: {
        Effect: 'Allow',
        Principal: '*',
        Action: 'events:PutEvents',
        Resource: `arn:aws:events:${REGION}:${ACCOUNT}:event-bus/default`,
        Condition: {
          StringEquals: { 'aws:PrincipalOrgID': 'o-a1b2c3d4e5' },
          'ForAllValues:StringEquals': { 'events:source': ['aws.kms'], 'events:detail-type': ['AWS API Call via CloudTrail'] },
        },
      },
    });
  });

  test('only the function role may send, receive, delete or hide sweep work items', () => {
    const t = synth();
    const [roleId] = onlyResource(t, 'AWS::IAM::Role');
    const { queueId } = sweepQueues(t);
    const [, policy] = onlyResource(t, 'AWS::SQS::QueuePolicy');
    expect(policy.Properties.Queues).toEqual([{ Ref: queueId }]);
    expect(policy.Properties.PolicyDocument.Statement).toEqual([
      {
        Sid: 'OnlyTheGuardPlansAndWorksSweepItems',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:PurgeQueue', 'sqs:ReceiveMessage', 'sqs:SendMessage'],
        Resource: { 'Fn::GetAtt': [queueId, 'Arn'] },
        Condition: { ArnNotEquals: { 'aws:PrincipalArn': { 'Fn::GetAtt': [roleId, 'Arn'] } } },
      },
    ]);
  });

  test('bad organisation settings fail the synth with a message', () => {
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ memberRoleName: 'kms-replica-guard-member' }))).toThrow(/memberAccounts/);
    expect(() => configFromContext(ctx({ memberRoleName: 'r', memberAccounts: '1234' }))).toThrow(/memberAccounts/);
    expect(() => configFromContext(ctx({ memberRoleName: 'bad name!', memberAccounts: 'organization' }))).toThrow(/memberRoleName/);
    expect(() => configFromContext(ctx({ organizationId: 'org-1' }))).toThrow(/organizationId/);
    expect(() => configFromContext(ctx({ sweepWorkerConcurrency: '1' }))).toThrow(/sweepWorkerConcurrency/);
    expect(() => configFromContext(ctx({ sweepVisibilityTimeout: '200' }))).toThrow(/at least functionTimeout/);
    // Member accounts' events reach the hub bus through the organisation's bus policy only.
    expect(() => configFromContext(ctx({ memberRoleName: 'r', memberAccounts: '222233334444' }))).toThrow(/organizationId must be too/);
    expect(() => synth({ memberRoleName: 'r', memberAccounts: 'organization' })).toThrow(/organizationId must be too/);
    expect(
      configFromContext(ctx({ memberRoleName: 'r', memberAccounts: '222233334444, 444455556666', organizationId: 'o-a1b2c3d4e5' })).memberAccounts,
    ).toBe('222233334444,444455556666');
  });
});

describe('the hub stack settings', () => {
  test('a template synthesized without the Rust build cannot be deployed', () => {
    expect(synth().toJSON().Rules).toHaveProperty('CodeNotBuilt');
    // bundle=true (deploys): no such rule; the test app still skips the build itself.
    expect(synth({}, true).toJSON().Rules).not.toHaveProperty('CodeNotBuilt');
  });

  test('enforce mode, an SSM baseline and an e-mail subscription', () => {
    const template = synth({
      remediationMode: 'enforce',
      baselineSsmParameter: '/kms-replica-guard/baseline',
      alarmEmail: 'ops@example.com',
      sweepRegions: ['us-east-1', 'eu-west-1'],
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          REMEDIATION_MODE: 'enforce',
          BASELINE_SOURCE: 'ssm:/kms-replica-guard/baseline',
          SWEEP_REGIONS: 'us-east-1,eu-west-1',
        }),
      },
    });
    expect(roleStatements(template)).toContainEqual({
      Sid: 'ReadBaselineParameter',
      Effect: 'Allow',
      Action: 'ssm:GetParameter',
      Resource: `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/kms-replica-guard/baseline`,
    });
    template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
  });

  test('an S3 baseline grants s3:GetObject on exactly that object', () => {
    const template = synth({ baselineS3Object: 'baseline-bucket/policies/replica.json' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ BASELINE_SOURCE: 's3://baseline-bucket/policies/replica.json' }) },
    });
    expect(roleStatements(template)).toContainEqual({
      Sid: 'ReadBaselineObject',
      Effect: 'Allow',
      Action: 's3:GetObject',
      Resource: 'arn:aws:s3:::baseline-bucket/policies/replica.json',
    });
    expect(roleStatements(template).map((s) => s.Sid)).not.toContain('ReadBaselineParameter');
  });

  test('an SSM baseline is read with ssm:GetParameter only (a customer key for a SecureString is not granted)', () => {
    const statements = roleStatements(synth({ baselineSsmParameter: '/team/kms/baseline.json' }));
    const read = statements.filter((s) => [s.Action].flat().some((a: string) => a.startsWith('ssm:') || a === 'kms:Decrypt'));
    expect(read).toEqual([
      {
        Sid: 'ReadBaselineParameter',
        Effect: 'Allow',
        Action: 'ssm:GetParameter',
        Resource: `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/team/kms/baseline.json`,
      },
    ]);
  });

  /** The statements that read a baseline (SSM, or S3 outside the backups bucket). */
  const baselineReads = (template: Template) =>
    roleStatements(template).filter(
      (s) =>
        [s.Action].flat().some((a: string) => a.startsWith('ssm:') || a === 'kms:Decrypt') ||
        (String(s.Sid).includes('Baseline') && [s.Action].flat().some((a: string) => a.startsWith('s3:'))),
    );

  test('an SSM catalogue is read with ssm:GetParametersByPath on exactly its path', () => {
    const template = synth({ baselineSsmPath: '/kms-replica-guard/baselines/', baselineTag: 'team:baseline', baselineDefault: 'strict' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          BASELINE_SOURCE: 'ssm:/kms-replica-guard/baselines/',
          BASELINE_TAG: 'team:baseline',
          BASELINE_DEFAULT: 'strict',
          BASELINE_MATCH: 'exact',
          MIRROR_REWRITE: 'off',
        }),
      },
    });
    // The path's own parameter ARN (GetParametersByPath is authorized against the requested path).
    expect(baselineReads(template)).toEqual([
      {
        Sid: 'ReadBaselineCatalogueParameters',
        Effect: 'Allow',
        Action: 'ssm:GetParametersByPath',
        Resource: `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/kms-replica-guard/baselines`,
      },
    ]);
  });

  test('an S3 catalogue is listed under its prefix only and read below it', () => {
    const template = synth({ baselineS3Prefix: 'baseline-bucket/kms/baselines/', baselineMatch: 'contains', mirrorRewrite: 'on' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          BASELINE_SOURCE: 's3://baseline-bucket/kms/baselines/',
          BASELINE_TAG: 'kms-replica-guard:baseline',
          BASELINE_DEFAULT: '',
          BASELINE_MATCH: 'contains',
          MIRROR_REWRITE: 'on',
        }),
      },
    });
    expect(baselineReads(template)).toEqual([
      {
        Sid: 'ListBaselineCatalogueObjects',
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: 'arn:aws:s3:::baseline-bucket',
        Condition: { StringLike: { 's3:prefix': 'kms/baselines/*' } },
      },
      {
        Sid: 'ReadBaselineCatalogueObjects',
        Effect: 'Allow',
        Action: 's3:GetObject',
        Resource: 'arn:aws:s3:::baseline-bucket/kms/baselines/*',
      },
    ]);
  });

  test('a directory catalogue sets the tag and default and grants nothing', () => {
    const template = synth({ baselineSource: 'dir:/var/task/baselines', baselineDefault: 'primary' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          BASELINE_SOURCE: 'dir:/var/task/baselines',
          BASELINE_TAG: 'kms-replica-guard:baseline',
          BASELINE_DEFAULT: 'primary',
        }),
      },
    });
    expect(baselineReads(template)).toEqual([]);
  });

  test('one baseline (SSM or S3) leaves the catalogue tag and default unset', () => {
    for (const overrides of [{ baselineSsmParameter: '/kms/baseline' }, { baselineS3Object: 'bucket/baseline.json' }]) {
      const template = synth(overrides);
      template.hasResourceProperties('AWS::Lambda::Function', {
        Environment: { Variables: Match.objectLike({ BASELINE_TAG: '', BASELINE_DEFAULT: '' }) },
      });
      expect(baselineReads(template).map((s) => s.Sid)).not.toContain('ReadBaselineCatalogueParameters');
      expect(baselineReads(template).map((s) => s.Sid)).not.toContain('ListBaselineCatalogueObjects');
    }
  });

  test('bad baseline catalogue settings fail the synth with a message', () => {
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ baselineSsmPath: '/kms/baselines' }))).toThrow(/baselineSsmPath.*ending in \//);
    expect(() => configFromContext(ctx({ baselineSsmPath: 'kms/baselines/' }))).toThrow(/baselineSsmPath/);
    for (const prefix of ['bucket/', 'bucket/a', 's3://bucket/a/', 'bucket/a*/', 'bucket/${aws:username}/', 'b/1/2/3/4/5/6/7/8/9/']) {
      expect(() => configFromContext(ctx({ baselineS3Prefix: prefix }))).toThrow(/baselineS3Prefix/);
    }
    expect(() => configFromContext(ctx({ baselineSsmPath: '/a/', baselineS3Prefix: 'bucket/a/' }))).toThrow(/not several/);
    expect(() => configFromContext(ctx({ baselineSsmParameter: '/a', baselineS3Prefix: 'bucket/a/' }))).toThrow(/not several/);
    expect(() => configFromContext(ctx({ baselineS3Object: 'bucket/k', baselineSsmPath: '/a/' }))).toThrow(/not several/);
    expect(() => configFromContext(ctx({ baselineSource: 'dir:' }))).toThrow(/dir:PATH/);
    expect(() => configFromContext(ctx({ baselineDefault: 'strict' }))).toThrow(/catalogue only/);
    expect(() => configFromContext(ctx({ baselineTag: 'team:baseline' }))).toThrow(/catalogue only/);
    expect(() => configFromContext(ctx({ baselineSsmParameter: '/a', baselineSource: 'dir:/x', baselineDefault: 'x' }))).toThrow(
      /catalogue only/,
    );
    expect(() => configFromContext(ctx({ baselineSsmPath: '/a/', baselineDefault: 'no spaces' }))).toThrow(/baselineDefault/);
    expect(() => configFromContext(ctx({ baselineMatch: 'subset' }))).toThrow(/exact or contains/);
    expect(() => configFromContext(ctx({ mirrorRewrite: 'yes' }))).toThrow(/on or off/);
    expect(configFromContext(ctx({ mirrorRewrite: true })).mirrorRewrite).toBe('on');
    expect(
      configFromContext(ctx({ baselineS3Prefix: 'my.bucket/env=prod/kms/', baselineTag: 'team:baseline', baselineDefault: 'primary' })),
    ).toMatchObject({ baselineS3Prefix: 'my.bucket/env=prod/kms/', baselineTag: 'team:baseline', baselineDefault: 'primary' });
    expect(configFromContext(ctx({ baselineSource: 'dir:/var/task/baselines', baselineDefault: 'strict' })).baselineDefault).toBe('strict');
  });

  test('backup retention, flap guard and rate limits reach the bucket and the environment', () => {
    const template = synth({
      backupRetentionDays: 90,
      flapMax: 3,
      flapWindow: '30m',
      rateGetKeyPolicy: 100,
      ratePutKeyPolicy: 4,
      rateDescribeKey: 200,
    });
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: [Match.objectLike({ ExpirationInDays: 90, NoncurrentVersionExpiration: { NoncurrentDays: 90 } })] },
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          FLAP_MAX: '3',
          FLAP_WINDOW: '30m',
          RATE_GET_KEY_POLICY: '100',
          RATE_PUT_KEY_POLICY: '4',
          RATE_DESCRIBE_KEY: '200',
        }),
      },
    });
  });

  test('code signing is optional', () => {
    synth().hasResourceProperties('AWS::Lambda::Function', { CodeSigningConfigArn: Match.absent() });
    const arn = 'arn:aws:lambda:us-east-1:111122223333:code-signing-config:csc-0123456789abcdef0';
    synth({ codeSigningConfigArn: arn }).hasResourceProperties('AWS::Lambda::Function', { CodeSigningConfigArn: arn });
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ codeSigningConfigArn: 'csc-0123456789abcdef0' }))).toThrow(/codeSigningConfigArn/);
  });

  test('the guardrail settings reach the environment only when set', () => {
    const unset = (synth().findResources('AWS::Lambda::Function') as any);
    const vars = Object.values(unset).map((f: any) => f.Properties.Environment.Variables)[0];
    for (const name of ['TRUSTED_ACCOUNTS', 'TRUSTED_ORGS', 'EXEMPTION_MAX_DAYS', 'BASELINE_SHA256', 'BASELINE_SCOPE']) {
      expect(vars).not.toHaveProperty(name);
    }
    synth({ baselineSource: 'dir:/var/task/baselines', baselineScope: 'partner-share=444455556666|777788889999,strict=111122223333' })
      .hasResourceProperties('AWS::Lambda::Function', {
        Environment: { Variables: Match.objectLike({ BASELINE_SCOPE: 'partner-share=444455556666|777788889999,strict=111122223333' }) },
      });
    const digest = 'a'.repeat(64);
    synth({
      trustedAccounts: '444455556666,777788889999',
      trustedOrgs: 'o-a1b2c3d4e5',
      exemptionMaxDays: '90',
      baselineSha256: `strict=${digest},default=${'0'.repeat(64)}`,
    }).hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          TRUSTED_ACCOUNTS: '444455556666,777788889999',
          TRUSTED_ORGS: 'o-a1b2c3d4e5',
          EXEMPTION_MAX_DAYS: '90',
          BASELINE_SHA256: `strict=${digest},default=${'0'.repeat(64)}`,
        }),
      },
    });
  });

  test('bad guardrail settings fail the synth with a message', () => {
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    for (const bad of ['12345678901', '444455556666;777788889999', 'organization']) {
      expect(() => configFromContext(ctx({ trustedAccounts: bad }))).toThrow(/trustedAccounts/);
    }
    for (const bad of ['o-short', 'O-A1B2C3D4E5', 'r-a1b2']) {
      expect(() => configFromContext(ctx({ trustedOrgs: bad }))).toThrow(/trustedOrgs/);
    }
    for (const bad of ['0', '-1', '1.5', '30d', '100000']) {
      expect(() => configFromContext(ctx({ exemptionMaxDays: bad }))).toThrow(/exemptionMaxDays/);
    }
    for (const bad of ['a'.repeat(63), 'g'.repeat(64), `=${'a'.repeat(64)}`, `strict:${'a'.repeat(64)}`, `a b=${'a'.repeat(64)}`]) {
      expect(() => configFromContext(ctx({ baselineSha256: bad }))).toThrow(/baselineSha256/);
    }
    expect(configFromContext(ctx({ trustedAccounts: '444455556666, 777788889999', exemptionMaxDays: 30 }))).toMatchObject({
      trustedAccounts: '444455556666,777788889999',
      exemptionMaxDays: '30',
    });
    expect(configFromContext(ctx({ baselineSha256: 'B'.repeat(64) })).baselineSha256).toBe('B'.repeat(64));
    const dir = { baselineSource: 'dir:/var/task/baselines' };
    for (const bad of ['partner-share', 'partner-share=', 'partner-share=12345678901', 'a b=111122223333', 'a=111122223333;444455556666']) {
      expect(() => configFromContext(ctx({ ...dir, baselineScope: bad }))).toThrow(/baselineScope: expected/);
    }
    expect(() => configFromContext(ctx({ baselineScope: 'a=111122223333' }))).toThrow(/baselineScope applies to a baseline catalogue only/);
    expect(configFromContext(ctx({ ...dir, baselineScope: 'a=111122223333|444455556666' })).baselineScope).toBe('a=111122223333|444455556666');
  });

  test('reserved concurrency 0 means no reservation; the sweep workers then share the rate limits', () => {
    const template = synth({ reservedConcurrency: 0, sweepWorkerConcurrency: 5 });
    template.hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: Match.absent(),
      Environment: { Variables: Match.objectLike({ RATE_INSTANCES: '5' }) },
    });
  });

  test('a reservation leaves two slots to KMS events beside the sweep workers, and shares the rate limits', () => {
    synth({ reservedConcurrency: 7, sweepWorkerConcurrency: 5 }).hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: 7,
      Environment: { Variables: Match.objectLike({ RATE_INSTANCES: '7' }) },
    });
    expect(() => synth({ reservedConcurrency: 6, sweepWorkerConcurrency: 5 })).toThrow(/at least sweepWorkerConcurrency \+ 2 \(7\)/);
    expect(() => synth({ reservedConcurrency: 2 })).toThrow(/reservedConcurrency=2/);
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ reservedConcurrency: '3' }))).toThrow(/reservedConcurrency=3/);
    expect(configFromContext(ctx({ reservedConcurrency: '4' })).reservedConcurrency).toBe(4);
    expect(() => configFromContext(ctx({ sweepWorkerConcurrency: '7' }))).toThrow(/expected one of 2, 3, 4, 5, 6, 8/);
  });

  test('changes to the guard\'s own function, mapping, rules, alarms and role go to the topic as a readable message', () => {
    const template = synth();
    const [topicId] = onlyResource(template, 'AWS::SNS::Topic');
    const [fnId] = onlyResource(template, 'AWS::Lambda::Function');
    const [roleId] = onlyResource(template, 'AWS::IAM::Role');
    const [mappingId] = onlyResource(template, 'AWS::Lambda::EventSourceMapping');
    const [, rule] = onlyResource(template, 'AWS::Events::Rule', { Properties: { Name: 'kms-replica-guard-guard-changes' } });
    expect(rule.Properties.EventBusName).toBe('default');
    const p = rule.Properties.EventPattern;
    expect(p.source).toEqual(['aws.lambda', 'aws.events', 'aws.monitoring', 'aws.iam']);
    expect(p['detail-type']).toEqual(['AWS API Call via CloudTrail']);
    const branches = p.detail.$or;
    expect(branches).toHaveLength(7);
    expect(branches[0].requestParameters.functionName).toEqual([{ Ref: fnId }, { 'Fn::GetAtt': [fnId, 'Arn'] }]);
    expect(branches[1].requestParameters.uUID).toEqual([{ Ref: mappingId }]);
    expect(branches[2].requestParameters.name).toHaveLength(6);
    expect(branches[2].requestParameters.name).toContain('kms-replica-guard-guard-changes');
    // The notification rules by their fixed names (Ref of a rule on a custom bus is BUS|NAME).
    for (const name of ['kms-replica-guard-exposure', 'kms-replica-guard-write-refused', 'kms-replica-guard-exemption']) {
      expect(branches[2].requestParameters.name).toContain(name);
      expect(branches[3].requestParameters.rule).toContain(name);
    }
    expect(branches[4].requestParameters.alarmNames).toEqual([{ prefix: 'kms-replica-guard-' }]);
    expect(branches[6].requestParameters.roleName).toEqual([{ Ref: roleId }]);
    const [target] = rule.Properties.Targets;
    expect(target.Arn).toEqual({ Ref: topicId });
    expect(target.InputTransformer.InputTemplate).toMatch(/^"kms-replica-guard: its own configuration changed: .*Runbook: docs\/src\/runbook\/guard-configuration-changed\.md"$/);
  });

  test('the dry-run alarm exists only in a stack deployed in enforce mode', () => {
    const names = (t: Template) => Object.values(t.findResources('AWS::CloudWatch::Alarm')).map((a: any) => a.Properties.AlarmName);
    expect(names(synth())).not.toContain('kms-replica-guard-EnforceMode-dry-run');
    const enforce = synth({ remediationMode: 'enforce' });
    expect(names(enforce)).toContain('kms-replica-guard-EnforceMode-dry-run');
    enforce.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: 'kms-replica-guard-EnforceMode-dry-run', Namespace: 'KmsReplicaGuard', MetricName: 'EnforceMode',
      Statistic: 'Minimum', Period: 300, EvaluationPeriods: 1, Threshold: 1, ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'notBreaching', AlarmDescription: Match.stringLikeRegexp('Runbook: docs/src/runbook/enforcemode-dry-run\\.md$'),
    });
  });

  test('the sweep interval sets the schedule and the heartbeat period; other intervals are refused', () => {
    for (const [hours, expression] of [[1, 'rate(1 hour)'], [12, 'rate(12 hours)']] as const) {
      const t = synth({ sweepIntervalHours: hours });
      t.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: expression });
      t.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'SweepCompleted', Period: hours * 3600, EvaluationPeriods: 2 });
    }
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ sweepIntervalHours: '5' }))).toThrow(/sweepIntervalHours=5: expected one of 1, 2, 3, 4, 6, 8, 12, 24/);
    expect(configFromContext(ctx({ sweepIntervalHours: '24' })).sweepIntervalHours).toBe(24);
  });

  test('bad context values fail the synth with a message', () => {
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ remediationMode: 'fix-it' }))).toThrow(/dry-run or enforce/);
    expect(() => configFromContext(ctx({ baselineSource: 'ssm:/x' }))).toThrow(/baselineSsmParameter/);
    expect(() =>
      configFromContext(ctx({ baselineSsmParameter: '/a', baselineS3Object: 'bucket/key' })),
    ).toThrow(/not several/);
    expect(() => configFromContext(ctx({ logRetentionDays: '10' }))).toThrow(/logRetentionDays/);
    expect(() => configFromContext(ctx({ sweepRegions: 'us-east-1,nowhere' }))).toThrow(/nowhere/);
    for (const w of ['0', '1w', 'an hour', '-5m', '1.5h']) {
      expect(() => configFromContext(ctx({ flapWindow: w }))).toThrow(/flapWindow/);
    }
    for (const w of ['3600', '3600s', '90m', '1h', '2d']) {
      expect(configFromContext(ctx({ flapWindow: w })).flapWindow).toBe(w);
    }
    expect(() => configFromContext(ctx({ flapMax: '0' }))).toThrow(/flapMax/);
    expect(() => configFromContext(ctx({ ratePutKeyPolicy: '0' }))).toThrow(/ratePutKeyPolicy/);
    expect(() => configFromContext(ctx({ rateGetKeyPolicy: '2.5' }))).toThrow(/rateGetKeyPolicy/);
    expect(() => configFromContext(ctx({ backupRetentionDays: '0' }))).toThrow(/backupRetentionDays/);
    expect(configFromContext(ctx({ baselineSsmParameter: '/kms/baseline' })).baselineSsmParameter).toBe('/kms/baseline');
    expect(configFromContext(ctx({ maxRetryAttempts: '0', sweepRegions: 'us-east-1, eu-west-1' }))).toMatchObject({
      maxRetryAttempts: 0,
      sweepRegions: ['us-east-1', 'eu-west-1'],
    });
    expect(configFromContext(ctx({}))).toEqual(DEFAULT_CONFIG);
  });

  test('securityHub=on: the detector imports findings in this account (SECURITY_HUB); the remediator does not', () => {
    expect(statementsOf(synth(), 'AWS::IAM::Role').map((s: any) => s.Sid)).not.toContain('ImportFindings');
    const on = synth({ securityHub: 'on' });
    expect(detectorStatements(on).find((s: any) => s.Sid === 'ImportFindings')).toEqual({
      Sid: 'ImportFindings',
      Effect: 'Allow',
      Action: 'securityhub:BatchImportFindings',
      Resource: `arn:aws:securityhub:*:${ACCOUNT}:product/${ACCOUNT}/default`,
    });
    expect(remediatorStatements(on).map((s: any) => s.Sid)).not.toContain('ImportFindings');
    expect(detector(on)[1].Properties.Environment.Variables.SECURITY_HUB).toBe('on');
    expect(remediator(on)[1].Properties.Environment.Variables.SECURITY_HUB).toBeUndefined();
  });

  test('a Config rule in the account: the rule, its invoke permission from this account, and PutEvaluations, all the detector\'s', () => {
    const none = synth();
    none.resourceCountIs('AWS::Config::ConfigRule', 0);
    expect(Object.keys(none.findResources('AWS::Lambda::Permission', { Properties: { Principal: 'config.amazonaws.com' } }))).toEqual([]);
    const t = synth({ configRule: 'account', configRuleFrequency: 'Six_Hours' });
    const [fnId] = detector(t);
    const [permissionId, permission] = onlyResource(t, 'AWS::Lambda::Permission', { Properties: { Principal: 'config.amazonaws.com' } });
    expect(permission.Properties).toEqual({
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [fnId, 'Arn'] },
      Principal: 'config.amazonaws.com',
      SourceAccount: ACCOUNT,
    });
    const [, rule] = onlyResource(t, 'AWS::Config::ConfigRule');
    expect(rule.DependsOn).toContain(permissionId);
    expect(rule.Properties.Source.SourceIdentifier).toEqual({ 'Fn::GetAtt': [fnId, 'Arn'] });
    expect(rule.Properties.Scope).toEqual({ ComplianceResourceTypes: ['AWS::KMS::Key'] });
    expect(rule.Properties.Source.Owner).toBe('CUSTOM_LAMBDA');
    expect(rule.Properties.Source.SourceDetails.map((d: any) => d.MessageType)).toEqual([
      'ConfigurationItemChangeNotification',
      'OversizedConfigurationItemChangeNotification',
      'ScheduledNotification',
    ]);
    expect(rule.Properties.Source.SourceDetails[2].MaximumExecutionFrequency).toBe('Six_Hours');
    expect(detectorStatements(t).map((s: any) => s.Sid)).toContain('AnswerConfigRule');
    expect(remediatorStatements(t).map((s: any) => s.Sid)).not.toContain('AnswerConfigRule');
  });

  test('an organization Config rule names the detector for every member, without SourceAccount', () => {
    const t = synth({ configRule: 'organization' });
    t.resourceCountIs('AWS::Config::ConfigRule', 0);
    const [fnId] = detector(t);
    const [, permission] = onlyResource(t, 'AWS::Lambda::Permission', { Properties: { Principal: 'config.amazonaws.com' } });
    expect(permission.Properties.SourceAccount).toBeUndefined();
    expect(permission.Properties.FunctionName).toEqual({ 'Fn::GetAtt': [fnId, 'Arn'] });
    const [, rule] = onlyResource(t, 'AWS::Config::OrganizationConfigRule');
    expect(rule.Properties.OrganizationCustomRuleMetadata).toMatchObject({
      LambdaFunctionArn: { 'Fn::GetAtt': [fnId, 'Arn'] },
      OrganizationConfigRuleTriggerTypes: [
        'ConfigurationItemChangeNotification',
        'OversizedConfigurationItemChangeNotification',
        'ScheduledNotification',
      ],
      ResourceTypesScope: ['AWS::KMS::Key'],
      MaximumExecutionFrequency: 'TwentyFour_Hours',
    });
  });

  test('bad Security Hub and Config rule settings fail the synth with a message', () => {
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ securityHub: 'yes' }))).toThrow(/securityHub=yes: expected on or off/);
    expect(configFromContext(ctx({ securityHub: true })).securityHub).toBe('on');
    expect(() => configFromContext(ctx({ configRule: 'everywhere' }))).toThrow(/configRule=everywhere/);
    expect(() => configFromContext(ctx({ configRuleFrequency: 'Hourly' }))).toThrow(/configRuleFrequency=Hourly/);
  });
});

describe('the detector (securityHub on, or a configRule): read-only findings and Config answers', () => {
  const on = synth({ securityHub: 'on', configRule: 'account' });
  // Every KMS action that changes a key, as concrete calls: none may be allowed, each is denied.
  const KMS_WRITES = [
    'kms:PutKeyPolicy',
    'kms:CreateGrant',
    'kms:CreateKey',
    'kms:ReplicateKey',
    'kms:TagResource',
    'kms:UntagResource',
    'kms:ScheduleKeyDeletion',
    'kms:DisableKey',
    'kms:EnableKey',
    'kms:UpdatePrimaryRegion',
    'kms:CreateAlias',
    'kms:UpdateAlias',
    'kms:DeleteAlias',
    'kms:RevokeGrant',
    'kms:RetireGrant',
    'kms:ImportKeyMaterial',
    'kms:CancelKeyDeletion',
  ];
  const matches = (action: string, pattern: string) =>
    new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i').test(action);
  const actionsOf = (s: any): string[] => [s.Action].flat();

  test('exists for securityHub or a configRule only; its rules with securityHub only', () => {
    for (const [overrides, exists, rules] of [
      [{}, false, false],
      [{ securityHub: 'on' }, true, true],
      [{ configRule: 'account' }, true, false],
      [{ configRule: 'organization' }, true, false],
    ] as [Partial<GuardConfig>, boolean, boolean][]) {
      const t = synth(overrides);
      const ids = Object.keys(t.toJSON().Resources);
      expect(ids.some((id) => id.startsWith('DetectorFunction'))).toBe(exists);
      expect(ids.some((id) => id.startsWith('DetectorRole'))).toBe(exists);
      expect(ids.filter((id) => id.startsWith('DetectorNotificationRule') || id.startsWith('DetectorSweepRule')).length > 0).toBe(rules);
    }
  });

  test('its role may write no key anywhere: no KMS write allowed, every KMS write denied, the remediator KMS reads only', () => {
    for (const t of [on, synth({ securityHub: 'on', memberRoleName: 'm', memberAccounts: 'organization', organizationId: 'o-a1b2c3d4e5', baselineS3Prefix: 'b-k/a/' })]) {
      const statements = detectorStatements(t);
      for (const action of KMS_WRITES) {
        expect(statements.filter((s) => s.Effect === 'Allow' && actionsOf(s).some((a) => matches(action, a)))).toEqual([]);
        expect(statements.some((s) => s.Effect === 'Deny' && !s.Condition && s.Resource === '*' && actionsOf(s).some((a) => matches(action, a)))).toBe(true);
      }
    }
    const kms = (statements: any[]) =>
      statements
        .filter((s) => s.Effect === 'Allow')
        .flatMap(actionsOf)
        .filter((a) => a.startsWith('kms:') && a !== 'kms:PutKeyPolicy')
        .sort();
    expect(kms(detectorStatements(on))).toEqual(['kms:DescribeKey', 'kms:GetKeyPolicy', 'kms:ListKeys', 'kms:ListResourceTags']);
    expect(kms(detectorStatements(on))).toEqual(kms(remediatorStatements(on)));
    const [, role] = guard(on, 'AWS::IAM::Role', true);
    expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      { Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole', Condition: { StringEquals: { 'aws:SourceAccount': ACCOUNT } } },
    ]);
  });

  test('the remediator role no longer imports findings or answers Config', () => {
    const actions = remediatorStatements(on).flatMap(actionsOf);
    expect(actions.filter((a) => a.startsWith('securityhub:') || a.startsWith('config:'))).toEqual([]);
  });

  test('its environment is the remediator one for what is guarded, never the write settings', () => {
    const [, fn] = detector(on);
    const [, rem] = remediator(on);
    const [remediatorRoleId] = guard(on, 'AWS::IAM::Role', false);
    const d = fn.Properties.Environment.Variables;
    const r = rem.Properties.Environment.Variables;
    const shared = Object.keys(d).filter((k) => !['MEMBER_READ_ROLE_NAME', 'SECURITY_HUB'].includes(k));
    for (const k of shared) expect([k, d[k]]).toEqual([k, r[k]]);
    for (const k of ['REMEDIATION_MODE', 'EVENT_BUS', 'SWEEP_QUEUE_URL', 'BACKUP_BUCKET', 'BACKUP_PREFIX', 'FLAP_MAX', 'FLAP_WINDOW', 'RATE_PUT_KEY_POLICY']) {
      expect(d[k]).toBeUndefined();
    }
    expect(d.REMEDIATOR_ROLE_ARN).toEqual({ 'Fn::GetAtt': [remediatorRoleId, 'Arn'] });
    expect(d).toMatchObject({ SECURITY_HUB: 'on', MEMBER_ROLE_NAME: '', RATE_GET_KEY_POLICY: '800', RATE_DESCRIBE_KEY: '1600', BASELINE_SOURCE: 'primary' });
    expect(fn.Properties.ReservedConcurrentExecutions).toBeUndefined();
  });

  test('in member accounts it assumes the read-only detector role, never the writer member role', () => {
    const t = synth({ securityHub: 'on', memberRoleName: 'kms-replica-guard-member', memberAccounts: 'organization', organizationId: 'o-a1b2c3d4e5' });
    const assume = detectorStatements(t).filter((s) => s.Effect === 'Allow' && actionsOf(s).includes('sts:AssumeRole'));
    expect(assume).toEqual([
      {
        Sid: 'EnterMemberAccountsReadOnly',
        Effect: 'Allow',
        Action: 'sts:AssumeRole',
        Resource: 'arn:aws:iam::*:role/kms-replica-guard-detector',
        Condition: { StringEquals: { 'aws:ResourceOrgID': 'o-a1b2c3d4e5' } },
      },
    ]);
    expect(detector(t)[1].Properties.Environment.Variables.MEMBER_READ_ROLE_NAME).toBe('kms-replica-guard-detector');
    // The lockout check and own-call detection are about the writer.
    expect(detector(t)[1].Properties.Environment.Variables.MEMBER_ROLE_NAME).toBe('kms-replica-guard-member');
    expect(remediator(t)[1].Properties.Environment.Variables.MEMBER_ROLE_NAME).toBe('kms-replica-guard-member');
    expect(detectorStatements(t).find((s) => s.Sid === 'ListOrganizationAccounts')).toBeDefined();
    const custom = synth({ securityHub: 'on', memberRoleName: 'm', detectorMemberRoleName: 'reader', memberAccounts: '222233334444', organizationId: 'o-a1b2c3d4e5' });
    expect(detector(custom)[1].Properties.Environment.Variables.MEMBER_READ_ROLE_NAME).toBe('reader');
    expect(detector(custom)[1].Properties.Environment.Variables.MEMBER_ROLE_NAME).toBe('m');
    expect(() => configFromContext((k: string) => ({ detectorMemberRoleName: 'bad name!' } as Record<string, unknown>)[k])).toThrow(/detectorMemberRoleName/);
  });

  test('the guard own events on the drift bus reach it, whatever their detail-type, from this account only', () => {
    const [fnId] = detector(on);
    const [busId] = onlyResource(on, 'AWS::Events::EventBus');
    const [ruleId, rule] = Object.entries(on.findResources('AWS::Events::Rule')).find(([id]) => id.startsWith('DetectorNotificationRule')) as [string, any];
    expect(rule.Properties).toMatchObject({
      Name: 'kms-replica-guard-detector-notifications',
      EventBusName: { Ref: busId },
      EventPattern: { source: ['kms-replica-guard'], account: [{ Ref: 'AWS::AccountId' }] },
      Targets: [expect.objectContaining({ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] } })],
    });
    expect(Object.keys(rule.Properties.EventPattern).sort()).toEqual(['account', 'source']);
    on.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [fnId, 'Arn'] },
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [ruleId, 'Arn'] },
    });
    const onDefault = synth({ securityHub: 'on', driftEventBus: 'default' });
    const [, ruleOnDefault] = Object.entries(onDefault.findResources('AWS::Events::Rule')).find(([id]) => id.startsWith('DetectorNotificationRule')) as [string, any];
    expect(ruleOnDefault.Properties.EventBusName).toBe('default');
  });

  test('a dry-run sweep at the remediator sweep interval refreshes every finding', () => {
    const [fnId] = detector(on);
    on.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(6 hours)', Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] } })] });
    const t = synth({ securityHub: 'on', sweepIntervalHours: 12 });
    const [id12] = detector(t);
    t.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(12 hours)', Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [id12, 'Arn'] } })] });
  });

  test('failed async invocations go to the stack on-failure queue with the remediator retry settings; its own log group', () => {
    const [fnId, fn] = detector(on);
    const [remId] = remediator(on);
    const configs = Object.values(on.findResources('AWS::Lambda::EventInvokeConfig')) as any[];
    const of = (id: string) => configs.find((c) => c.Properties.FunctionName.Ref === id).Properties;
    const { FunctionName: _d, ...detectorConfig } = of(fnId);
    const { FunctionName: _r, ...remediatorConfig } = of(remId);
    expect(detectorConfig).toEqual(remediatorConfig);
    expect(detectorConfig).toMatchObject({ MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 3600 });
    expect(detectorStatements(on)).toContainEqual({
      Sid: 'SendFailedEventsToQueue',
      Effect: 'Allow',
      Action: 'sqs:SendMessage',
      Resource: detectorConfig.DestinationConfig.OnFailure.Destination,
    });
    const [logGroupId] = onlyResource(on, 'AWS::Logs::LogGroup', { Properties: { LogGroupName: '/kms-replica-guard/kms-replica-guard-detector' } });
    expect(fn.Properties.LoggingConfig).toMatchObject({ LogFormat: 'JSON', LogGroup: { Ref: logGroupId } });
    expect(fn.Properties.Timeout).toBe(300);
  });

  test('its role works from the detector function only, and the outputs name it', () => {
    const [fnId] = detector(on);
    const [roleId] = guard(on, 'AWS::IAM::Role', true);
    const policy = (Object.values(on.findResources('AWS::IAM::Policy')) as any[]).find((p) => p.Properties.Roles[0].Ref === roleId);
    expect(policy.Properties.PolicyDocument.Statement).toEqual([
      expect.objectContaining({ Sid: 'OnlyFromThisFunction', Effect: 'Deny', Condition: { ArnNotEquals: { 'lambda:SourceFunctionArn': { 'Fn::GetAtt': [fnId, 'Arn'] } } } }),
    ]);
    expect(Object.keys(on.findOutputs('*'))).toEqual(expect.arrayContaining(['DetectorFunctionName', 'DetectorRoleArn', 'DetectorRoleName']));
    expect(on.findOutputs('DetectorRoleName').DetectorRoleName.Value).toEqual({ Ref: roleId });
  });
});

describe('the detector alarms', () => {
  const alarmsOf = (t: Template) =>
    Object.fromEntries((Object.values(t.findResources('AWS::CloudWatch::Alarm')) as any[]).map((a) => [a.Properties.AlarmName, a.Properties]));

  test('FindingsNotImported (securityHub on) and EvaluationsNotPut (a configRule): > 0 in 5 min, to the topic, with their runbook pages', () => {
    const none = alarmsOf(synth());
    expect(none['kms-replica-guard-FindingsNotImported']).toBeUndefined();
    expect(none['kms-replica-guard-EvaluationsNotPut']).toBeUndefined();
    expect(alarmsOf(synth({ securityHub: 'on' }))['kms-replica-guard-EvaluationsNotPut']).toBeUndefined();
    expect(alarmsOf(synth({ configRule: 'account' }))['kms-replica-guard-FindingsNotImported']).toBeUndefined();
    const t = synth({ securityHub: 'on', configRule: 'organization', metricsNamespace: 'Guard/ns' });
    const [topicId] = onlyResource(t, 'AWS::SNS::Topic');
    const byName = alarmsOf(t);
    for (const [metric, page] of [
      ['FindingsNotImported', 'findingsnotimported'],
      ['EvaluationsNotPut', 'evaluationsnotput'],
    ]) {
      expect(byName[`kms-replica-guard-${metric}`]).toMatchObject({
        Namespace: 'Guard/ns',
        MetricName: metric,
        Statistic: 'Sum',
        Period: 300,
        EvaluationPeriods: 1,
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
        AlarmActions: [{ Ref: topicId }],
        OKActions: [{ Ref: topicId }],
      });
      expect(byName[`kms-replica-guard-${metric}`].Dimensions).toBeUndefined();
      expect(byName[`kms-replica-guard-${metric}`].AlarmDescription).toMatch(new RegExp(`Runbook: docs/src/runbook/${page}\\.md$`));
    }
  });
});

describe('the guard change rule with the detector', () => {
  test('names the detector function, its rules and its role beside the remediator ones', () => {
    const t = synth({ securityHub: 'on' });
    const [fnId] = detector(t);
    const [roleId] = guard(t, 'AWS::IAM::Role', true);
    const [remediatorRoleId] = guard(t, 'AWS::IAM::Role', false);
    const [, rule] = onlyResource(t, 'AWS::Events::Rule', { Properties: { Name: 'kms-replica-guard-guard-changes' } });
    const branches = rule.Properties.EventPattern.detail.$or;
    expect(branches[0].requestParameters.functionName).toEqual(expect.arrayContaining([{ Ref: fnId }, { 'Fn::GetAtt': [fnId, 'Arn'] }]));
    expect(branches[2].requestParameters.name).toContain('kms-replica-guard-detector-notifications');
    expect(branches[3].requestParameters.rule).toContain('kms-replica-guard-detector-notifications');
    const [sweepId] = Object.keys(t.findResources('AWS::Events::Rule')).filter((id) => id.startsWith('DetectorSweepRule'));
    expect(branches[2].requestParameters.name).toContainEqual({ Ref: sweepId });
    expect(branches[6].requestParameters.roleName).toEqual([{ Ref: remediatorRoleId }, { Ref: roleId }]);
    // Without the detector: the remediator's alone.
    const [, plain] = onlyResource(synth(), 'AWS::Events::Rule', { Properties: { Name: 'kms-replica-guard-guard-changes' } });
    expect(JSON.stringify(plain.Properties.EventPattern)).not.toContain('Detector');
  });
});
