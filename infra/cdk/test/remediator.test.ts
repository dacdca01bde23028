// The remediator (lib/constructs/remediator.ts): the function, its role, log group, on-failure
// queue and backups bucket, the KMS rule, and the settings that reach them.
import { Match, Template } from 'aws-cdk-lib/assertions';
import { configFromContext } from '../lib/config';
import { ACCOUNT, REGION, asyncDlqId, onlyResource, roleStatements, synthHub } from './util';

describe('the remediator', () => {
  const template = synthHub();

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

describe('the remediator in organisation mode', () => {
  const template = synthHub();

  test('single account by default: no AssumeRole, no ListAccounts, no bus policy', () => {
    const actions = roleStatements(template).flatMap((s) => [s.Action].flat());
    expect(actions).not.toContain('sts:AssumeRole');
    expect(actions).not.toContain('organizations:ListAccounts');
    template.resourceCountIs('AWS::Events::EventBusPolicy', 0);
  });

  test('member accounts: AssumeRole on the member role name, inside the organisation; ListAccounts for organization', () => {
    const t = synthHub({ memberRoleName: 'kms-replica-guard-member', memberAccounts: 'organization', memberExternalId: 'ext-1234', organizationId: 'o-a1b2c3d4e5' });
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
      synthHub({ memberRoleName: 'kms-replica-guard-member', memberAccounts: '222233334444,444455556666', organizationId: 'o-a1b2c3d4e5' }),
    );
    expect(listed.find((s) => s.Sid === 'EnterMemberAccounts').Condition).toEqual({ StringEquals: { 'aws:ResourceOrgID': 'o-a1b2c3d4e5' } });
    expect(listed.map((s) => s.Sid)).not.toContain('ListOrganizationAccounts');
  });
});

describe('the remediator settings', () => {
  test('enforce mode and an SSM baseline', () => {
    const template = synthHub({
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
  });

  test('an S3 baseline grants s3:GetObject on exactly that object', () => {
    const template = synthHub({ baselineS3Object: 'baseline-bucket/policies/replica.json' });
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
    const statements = roleStatements(synthHub({ baselineSsmParameter: '/team/kms/baseline.json' }));
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
    const template = synthHub({ baselineSsmPath: '/kms-replica-guard/baselines/', baselineTag: 'team:baseline', baselineDefault: 'strict' });
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
    const template = synthHub({ baselineS3Prefix: 'baseline-bucket/kms/baselines/', baselineMatch: 'contains', mirrorRewrite: 'on' });
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
    const template = synthHub({ baselineSource: 'dir:/var/task/baselines', baselineDefault: 'primary' });
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
      const template = synthHub(overrides);
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
    const template = synthHub({
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
    synthHub().hasResourceProperties('AWS::Lambda::Function', { CodeSigningConfigArn: Match.absent() });
    const arn = 'arn:aws:lambda:us-east-1:111122223333:code-signing-config:csc-0123456789abcdef0';
    synthHub({ codeSigningConfigArn: arn }).hasResourceProperties('AWS::Lambda::Function', { CodeSigningConfigArn: arn });
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ codeSigningConfigArn: 'csc-0123456789abcdef0' }))).toThrow(/codeSigningConfigArn/);
  });

  test('the guardrail settings reach the environment only when set', () => {
    const unset = (synthHub().findResources('AWS::Lambda::Function') as any);
    const vars = Object.values(unset).map((f: any) => f.Properties.Environment.Variables)[0];
    for (const name of ['TRUSTED_ACCOUNTS', 'TRUSTED_ORGS', 'EXEMPTION_MAX_DAYS', 'BASELINE_SHA256', 'BASELINE_SCOPE']) {
      expect(vars).not.toHaveProperty(name);
    }
    synthHub({ baselineSource: 'dir:/var/task/baselines', baselineScope: 'partner-share=444455556666|777788889999,strict=111122223333' })
      .hasResourceProperties('AWS::Lambda::Function', {
        Environment: { Variables: Match.objectLike({ BASELINE_SCOPE: 'partner-share=444455556666|777788889999,strict=111122223333' }) },
      });
    const digest = 'a'.repeat(64);
    synthHub({
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
    const template = synthHub({ reservedConcurrency: 0, sweepWorkerConcurrency: 5 });
    template.hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: Match.absent(),
      Environment: { Variables: Match.objectLike({ RATE_INSTANCES: '5' }) },
    });
  });

  test('a reservation leaves two slots to KMS events beside the sweep workers, and shares the rate limits', () => {
    synthHub({ reservedConcurrency: 7, sweepWorkerConcurrency: 5 }).hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: 7,
      Environment: { Variables: Match.objectLike({ RATE_INSTANCES: '7' }) },
    });
    expect(() => synthHub({ reservedConcurrency: 6, sweepWorkerConcurrency: 5 })).toThrow(/at least sweepWorkerConcurrency \+ 2 \(7\)/);
    expect(() => synthHub({ reservedConcurrency: 2 })).toThrow(/reservedConcurrency=2/);
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ reservedConcurrency: '3' }))).toThrow(/reservedConcurrency=3/);
    expect(configFromContext(ctx({ reservedConcurrency: '4' })).reservedConcurrency).toBe(4);
    expect(() => configFromContext(ctx({ sweepWorkerConcurrency: '7' }))).toThrow(/expected one of 2, 3, 4, 5, 6, 8/);
  });
});
