// The notifications (lib/constructs/notifications.ts): the drift bus, and the exposure, refused
// write, exemption and guard change rules with their messages to the alarm topic.
import { Match } from 'aws-cdk-lib/assertions';
import { configFromContext } from '../lib/config';
import { ACCOUNT, REGION, detector, guard, onlyResource, roleStatements, synthHub } from './util';

describe('the notifications', () => {
  const template = synthHub();

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
    const t = synthHub({ driftEventBus: 'default' });
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

  test('changes to the guard\'s own function, mapping, rules, alarms and role go to the topic as a readable message', () => {
    const template = synthHub();
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
});

describe('the guard change rule with the detector', () => {
  test('names the detector function, its rules and its role beside the remediator ones', () => {
    const t = synthHub({ securityHub: 'on' });
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
    const [, plain] = onlyResource(synthHub(), 'AWS::Events::Rule', { Properties: { Name: 'kms-replica-guard-guard-changes' } });
    expect(JSON.stringify(plain.Properties.EventPattern)).not.toContain('Detector');
  });
});
