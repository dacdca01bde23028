// The detector (lib/constructs/detector.ts): its function, read-only role, log group and rules, and
// the AWS Config rule.
import { Match } from 'aws-cdk-lib/assertions';
import { GuardConfig, configFromContext } from '../lib/config';
import { ACCOUNT, detector, detectorStatements, guard, onlyResource, remediator, remediatorStatements, statementsOf, synthHub } from './util';

describe('the detector settings', () => {
  test('securityHub=on: the detector imports findings in this account (SECURITY_HUB); the remediator does not', () => {
    expect(statementsOf(synthHub(), 'AWS::IAM::Role').map((s: any) => s.Sid)).not.toContain('ImportFindings');
    const on = synthHub({ securityHub: 'on' });
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
    const none = synthHub();
    none.resourceCountIs('AWS::Config::ConfigRule', 0);
    expect(Object.keys(none.findResources('AWS::Lambda::Permission', { Properties: { Principal: 'config.amazonaws.com' } }))).toEqual([]);
    const t = synthHub({ configRule: 'account', configRuleFrequency: 'Six_Hours' });
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
    const t = synthHub({ configRule: 'organization' });
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
  const on = synthHub({ securityHub: 'on', configRule: 'account' });
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
      const t = synthHub(overrides);
      const ids = Object.keys(t.toJSON().Resources);
      expect(ids.some((id) => id.startsWith('DetectorFunction'))).toBe(exists);
      expect(ids.some((id) => id.startsWith('DetectorRole'))).toBe(exists);
      expect(ids.filter((id) => id.startsWith('DetectorNotificationRule') || id.startsWith('DetectorSweepRule')).length > 0).toBe(rules);
    }
  });

  test('its role may write no key anywhere: no KMS write allowed, every KMS write denied, the remediator KMS reads only', () => {
    for (const t of [on, synthHub({ securityHub: 'on', memberRoleName: 'm', memberAccounts: 'organization', organizationId: 'o-a1b2c3d4e5', baselineS3Prefix: 'b-k/a/' })]) {
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
    const t = synthHub({ securityHub: 'on', memberRoleName: 'kms-replica-guard-member', memberAccounts: 'organization', organizationId: 'o-a1b2c3d4e5' });
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
    const custom = synthHub({ securityHub: 'on', memberRoleName: 'm', detectorMemberRoleName: 'reader', memberAccounts: '222233334444', organizationId: 'o-a1b2c3d4e5' });
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
    const onDefault = synthHub({ securityHub: 'on', driftEventBus: 'default' });
    const [, ruleOnDefault] = Object.entries(onDefault.findResources('AWS::Events::Rule')).find(([id]) => id.startsWith('DetectorNotificationRule')) as [string, any];
    expect(ruleOnDefault.Properties.EventBusName).toBe('default');
  });

  test('a dry-run sweep at the remediator sweep interval refreshes every finding', () => {
    const [fnId] = detector(on);
    on.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(6 hours)', Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] } })] });
    const t = synthHub({ securityHub: 'on', sweepIntervalHours: 12 });
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
