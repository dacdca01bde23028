// The hub stack as a whole (lib/hub-stack.ts): its logical ids, outputs, the rule refusing an unbuilt
// template, the organisation bus policy, the validation of its settings. Each part has its own file.
import { DEFAULT_CONFIG, configFromContext } from '../lib/config';
import { ACCOUNT, REGION, onlyResource, synthHub } from './util';

describe('the hub stack', () => {
  const template = synthHub();

  // Each part creates its resources in the stack's scope (lib/constructs/index.ts): the logical ids
  // are the ones deployed stacks have, and the checks find the resources by them.
  test('every resource keeps its logical id', () => {
    expect(Object.keys(template.toJSON().Resources).sort()).toEqual([
      'AccountNotAllowedAlarm36647E35',
      'AccountNotEnteredAlarmEC1E678C',
      'AlarmTopicD01E77F9',
      'AlarmTopicKey57B0D3A7',
      'AlarmTopicPolicy309DB5F8',
      'AsyncEventAgeAlarm15D94820',
      'AsyncEventsDroppedAlarmB02F8E48',
      'AutoFixAppliedSpikeAlarm4EA996D3',
      'AutoFixFailedAlarm050A8C2C',
      'BackupBucket26B8E51C',
      'BackupBucketPolicy8C403F71',
      'Dashboard9E4231ED',
      'DeadLetterQueue9F481546',
      'DeadLetterQueueAlarm48D9D867',
      'DriftBusBBD1B7B4',
      'ExemptionNotificationRule23B81C6A',
      'ExposureDriftAlarmBBFFA91C',
      'ExposureNotificationRuleDC0088EF',
      'FlapSuppressedAlarmD3EDF0A8',
      'Function76856677',
      'FunctionErrorsAlarm60070EC7',
      'FunctionEventInvokeConfig9F3DE447',
      'FunctionSqsEventSourceHubSweepQueueA9A3771ECAD304F8',
      'FunctionThrottlesAlarmB7D9F83F',
      'GuardChangeNotificationRule4C7BAE3F',
      'GuardrailRefusedAlarm9CE9979E',
      'KmsApiCallRule1C77D855',
      'KmsApiCallRuleAllowEventRuleHubFunctionC10201FABCD5A617',
      'LogGroupF5B46931',
      'OnlyThisFunctionPolicyF6DA9AA2',
      'RemediatorRoleA36235BE',
      'SweepDeadLetterQueue556D11DC',
      'SweepDeadLetterQueueAlarm8FC7FDA1',
      'SweepHeartbeatAlarmD6D80BC4',
      'SweepQueue1C82B4CB',
      'SweepQueuePolicy88C6B6BF',
      'SweepRule15B27B41',
      'SweepRuleAllowEventRuleHubFunctionC10201FA6736C90A',
      'WriteExposureAlarm5B332F0A',
      'WriteRefusedNotificationRuleD05C6A5B',
    ]);
  });

  test('the outputs give the user what they need', () => {
    const outputs = Object.keys(template.findOutputs('*')).sort();
    expect(outputs).toEqual([
      'AlarmTopicArn', 'BackupBucketName', 'DashboardName', 'DeadLetterQueueArn', 'DeadLetterQueueUrl', 'DriftEventBusName', 'FunctionArn',
      'FunctionName', 'HubEventBusArn', 'RemediatorRoleArn', 'RemediatorRoleName', 'SweepDeadLetterQueueUrl', 'SweepQueueUrl',
    ]);
  });

  test('a template synthesized without the Rust build cannot be deployed', () => {
    expect(synthHub().toJSON().Rules).toHaveProperty('CodeNotBuilt');
    // bundle=true (deploys): no such rule; the test app still skips the build itself.
    expect(synthHub({}, true).toJSON().Rules).not.toHaveProperty('CodeNotBuilt');
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
});

describe('the hub stack in organisation mode', () => {
  test('organizationId: the default bus admits KMS CloudTrail events from the organisation only', () => {
    const t = synthHub({ organizationId: 'o-a1b2c3d4e5' });
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
    expect(() => synthHub({ memberRoleName: 'r', memberAccounts: 'organization' })).toThrow(/organizationId must be too/);
    expect(
      configFromContext(ctx({ memberRoleName: 'r', memberAccounts: '222233334444, 444455556666', organizationId: 'o-a1b2c3d4e5' })).memberAccounts,
    ).toBe('222233334444,444455556666');
  });
});
