// The alarms (lib/constructs/alarms.ts): the alarm topic and its key, every alarm, the dashboard.
import { Match, Template } from 'aws-cdk-lib/assertions';
import { asyncDlqId, onlyResource, sweepQueues, synthHub } from './util';

describe('the alarms', () => {
  const template = synthHub();

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

  test('an e-mail subscription (alarmEmail) to the alarm topic', () => {
    const template = synthHub({
      remediationMode: 'enforce',
      baselineSsmParameter: '/kms-replica-guard/baseline',
      alarmEmail: 'ops@example.com',
      sweepRegions: ['us-east-1', 'eu-west-1'],
    });
    template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
  });

  test('the dashboard shows the six metrics', () => {
    const [, dashboard] = onlyResource(template, 'AWS::CloudWatch::Dashboard');
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const m of ['AutoFixApplied', 'DriftDetected', 'AutoFixFailed', 'FlapSuppressed', 'AccountNotEntered', 'AccountNotAllowed']) {
      expect(body).toContain(m);
    }
  });

  test('the dry-run alarm exists only in a stack deployed in enforce mode', () => {
    const names = (t: Template) => Object.values(t.findResources('AWS::CloudWatch::Alarm')).map((a: any) => a.Properties.AlarmName);
    expect(names(synthHub())).not.toContain('kms-replica-guard-EnforceMode-dry-run');
    const enforce = synthHub({ remediationMode: 'enforce' });
    expect(names(enforce)).toContain('kms-replica-guard-EnforceMode-dry-run');
    enforce.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: 'kms-replica-guard-EnforceMode-dry-run', Namespace: 'KmsReplicaGuard', MetricName: 'EnforceMode',
      Statistic: 'Minimum', Period: 300, EvaluationPeriods: 1, Threshold: 1, ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'notBreaching', AlarmDescription: Match.stringLikeRegexp('Runbook: docs/src/runbook/enforcemode-dry-run\\.md$'),
    });
  });
});

describe('the detector alarms', () => {
  const alarmsOf = (t: Template) =>
    Object.fromEntries((Object.values(t.findResources('AWS::CloudWatch::Alarm')) as any[]).map((a) => [a.Properties.AlarmName, a.Properties]));

  test('FindingsNotImported (securityHub on) and EvaluationsNotPut (a configRule): > 0 in 5 min, to the topic, with their runbook pages', () => {
    const none = alarmsOf(synthHub());
    expect(none['kms-replica-guard-FindingsNotImported']).toBeUndefined();
    expect(none['kms-replica-guard-EvaluationsNotPut']).toBeUndefined();
    expect(alarmsOf(synthHub({ securityHub: 'on' }))['kms-replica-guard-EvaluationsNotPut']).toBeUndefined();
    expect(alarmsOf(synthHub({ configRule: 'account' }))['kms-replica-guard-FindingsNotImported']).toBeUndefined();
    const t = synthHub({ securityHub: 'on', configRule: 'organization', metricsNamespace: 'Guard/ns' });
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
