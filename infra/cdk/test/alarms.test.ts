// The alarms (lib/constructs/alarms.ts): the alarm topic and its key, every alarm, the dashboard.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { CONTRACT, DEFAULT_CONFIG, GuardConfig } from '../lib/config';
import { CONTRACT_ALARMS, CONTRACT_DASHBOARD, ContractAlarm, ContractKnob, ContractSeries, ContractWidget } from '../lib/constructs';
import { asyncDlqId, onlyResource, remediator, sweepQueues, synthHub } from './util';

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

// Every alarm as infra/contract.json declares it (xtask/src/alarms.rs; the SAM template is checked
// against the same entries by infra/tests/test_contract.py): the contract's alarm written as the
// CloudFormation CDK must synthesize, with the stack's settings and logical ids put in.
describe('the alarms against the contract', () => {
  /** The CloudFormation alarm the contract describes for these settings, in this template. */
  const expected = (a: ContractAlarm, cfg: GuardConfig, t: Template): any => {
    const [topicId] = onlyResource(t, 'AWS::SNS::Topic');
    const [fnId] = remediator(t);
    // The remediator's on-failure queue (the detector's invoke config, when it exists, names it too).
    const [, invokeConfig] = onlyResource(t, 'AWS::Lambda::EventInvokeConfig', { Properties: { FunctionName: { Ref: fnId } } });
    const dlqId = invokeConfig.Properties.DestinationConfig.OnFailure.Destination['Fn::GetAtt'][0];
    const ids: Record<string, string> = { Function: fnId, DeadLetterQueue: dlqId, SweepDeadLetterQueue: sweepQueues(t).dlqId };
    const setting = (k: ContractKnob) => (cfg as any)[k.cdk_key];
    // The template's references (a SAM logical id) to this template's resources.
    const resolve = (v: any): any => {
      if (typeof v !== 'object' || v === null) return v;
      if ('Ref' in v) return { Ref: ids[v.Ref] };
      if ('Fn::GetAtt' in v) return { 'Fn::GetAtt': [ids[v['Fn::GetAtt'][0]], v['Fn::GetAtt'][1]] };
      throw new Error(`unexpected dimension value ${JSON.stringify(v)}`);
    };
    const dimensions = (s: ContractSeries) => {
      const d = Object.entries(s.dimensions).map(([Name, Value]) => ({ Name, Value: resolve(Value) }));
      return d.length > 0 ? { Dimensions: d } : {};
    };
    const namespace = (s: ContractSeries) => (typeof s.namespace === 'string' ? s.namespace : setting(s.namespace));
    const period = typeof a.period === 'number' ? a.period : 3600 * setting(a.period.sweep_interval_hours);
    let watched: object;
    if (a.math) {
      const math = a.math;
      const expression = math.expression.replace(/\$\{(\w+)\}/g, (_, name) => String(setting(math.parameters.find((p) => p.sam_parameter === name)!)));
      watched = {
        Metrics: [
          // CDK numbers its expressions (expr_1): the SAM template's id is a name only.
          { Id: expect.any(String), Label: math.label, Expression: expression, ReturnData: true },
          ...math.metrics.map((m) => ({
            Id: m.id,
            MetricStat: { Metric: { Namespace: namespace(m), MetricName: m.metric_name, ...dimensions(m) }, Period: period, Stat: m.statistic },
            ReturnData: false,
          })),
        ],
      };
    } else {
      const m = a.metric!;
      watched = { Namespace: namespace(m), MetricName: m.metric_name, ...dimensions(m), Statistic: m.statistic, Period: period };
    }
    return {
      AlarmName: `kms-replica-guard-${a.name}`,
      AlarmDescription: a.description,
      ...watched,
      EvaluationPeriods: a.evaluation_periods,
      ...(a.datapoints_to_alarm !== null ? { DatapointsToAlarm: a.datapoints_to_alarm } : {}),
      Threshold: typeof a.threshold === 'number' ? a.threshold : setting(a.threshold),
      ComparisonOperator: a.comparison_operator,
      TreatMissingData: a.treat_missing_data,
      AlarmActions: [{ Ref: topicId }],
      OKActions: [{ Ref: topicId }],
    };
  };
  const conditionHolds = (a: ContractAlarm, cfg: GuardConfig) => {
    if (a.condition === null) return true;
    const value = String((cfg as any)[a.condition.cdk_key]);
    return a.condition.equals !== undefined ? value === a.condition.equals : value !== a.condition.not_equals;
  };

  test('the contract declares the alarms with their runbook pages', () => {
    expect(CONTRACT_ALARMS.length).toBeGreaterThanOrEqual(18);
    for (const a of CONTRACT_ALARMS) {
      expect(a.description.endsWith(` Runbook: ${a.runbook}`)).toBe(true);
      expect(fs.existsSync(path.join(__dirname, '..', '..', '..', a.runbook))).toBe(true);
    }
  });

  test.each([
    ['the defaults', {}],
    ['enforce, Security Hub and an account Config rule', { remediationMode: 'enforce', securityHub: 'on', configRule: 'account' }],
    [
      'other thresholds, periods and namespace',
      {
        remediationMode: 'enforce',
        configRule: 'organization',
        metricsNamespace: 'Guard/ns',
        autoFixSpikeThreshold: 25,
        maxEventAgeSeconds: 7200,
        sweepIntervalHours: 12,
      },
    ],
  ] as [string, Partial<GuardConfig>][])('with %s, the synthesized alarms are the contract\'s', (_, overrides) => {
    const cfg = { ...DEFAULT_CONFIG, ...overrides };
    const t = synthHub(overrides);
    const synthesized = Object.entries(t.findResources('AWS::CloudWatch::Alarm'));
    const wanted = CONTRACT_ALARMS.filter((a) => conditionHolds(a, cfg));
    // Each one by its logical id (the construct id, and CDK's hash of its path).
    expect(synthesized.map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort()).toEqual(wanted.map((a) => a.logical_id).sort());
    for (const a of wanted) {
      const [, resource] = synthesized.find(([id]) => id.replace(/[0-9A-F]{8}$/, '') === a.logical_id)!;
      expect(resource.Condition).toBeUndefined();
      expect(resource.Properties).toEqual(expected(a, cfg, t));
    }
  });
});

// The dashboard as infra/contract.json declares it (xtask/src/dashboard.rs; the SAM template's
// DashboardBody is checked against the same entries by infra/tests/test_contract.py): each widget at
// its place with its title and lines, read back from the synthesized body.
describe('the dashboard against the contract', () => {
  /** The synthesized DashboardBody, parsed, each reference (the Region) put in as `<Name>`. */
  const body = (t: Template): any => {
    const [, dashboard] = onlyResource(t, 'AWS::CloudWatch::Dashboard');
    const b = dashboard.Properties.DashboardBody;
    const parts: any[] = typeof b === 'string' ? [b] : b['Fn::Join'][1];
    return JSON.parse(parts.map((p) => (typeof p === 'string' ? p : `<${p.Ref}>`)).join(''));
  };
  /** A graph's lines: each series with its dimensions, statistic and period (its own or the widget's), or an expression with its options. */
  const lines = (props: any) =>
    props.metrics.map((line: any[]) => {
      const last = line[line.length - 1];
      const options = typeof last === 'object' && last !== null ? last : {};
      if ('expression' in options) return { ...options };
      const [namespace, metricName, ...pairs] = line.filter((x) => x !== options);
      const dimensions: Record<string, string> = {};
      for (let i = 0; i < pairs.length; i += 2) dimensions[pairs[i]] = pairs[i + 1];
      return {
        namespace,
        metric_name: metricName,
        dimensions,
        statistic: options.stat ?? props.stat,
        period: options.period ?? props.period ?? 300,
      };
    });
  /** The widget the contract declares, with these settings, as `lines` reads it. */
  const expected = (w: ContractWidget, cfg: GuardConfig) => {
    const setting = (k: ContractKnob) => String((cfg as any)[k.cdk_key]);
    return {
      type: 'metric', title: w.title, x: w.x, y: w.y, width: w.width, height: w.height, view: w.view, region: '<AWS::Region>',
      lines: w.search
        ? // CDK gives a dashboard's expressions no id (the SAM template's is a name only).
          [{ expression: w.search.expression.replace(/\$\{(\w+)\}/g, (_, name) => setting(w.search!.parameters.find((p) => p.sam_parameter === name)!)) }]
        : w.metrics!.map((s) => ({
            namespace: setting(s.namespace as ContractKnob), metric_name: s.metric_name, dimensions: s.dimensions, statistic: s.statistic, period: w.period,
          })),
    };
  };

  test('the contract declares the dashboard', () => {
    expect(CONTRACT_DASHBOARD.rows.length).toBeGreaterThanOrEqual(2);
    const shown = CONTRACT_DASHBOARD.rows.flat().flatMap((w) => (w.metrics ?? []).map((s) => s.metric_name));
    expect(shown).toEqual(expect.arrayContaining(['AutoFixApplied', 'DriftDetected', 'AccountNotEntered']));
    for (const s of CONTRACT_DASHBOARD.rows.flat().flatMap((w) => w.metrics ?? [])) {
      expect(CONTRACT.metrics).toContain(s.metric_name);
    }
  });

  test.each([
    ['the defaults', {}],
    ['another namespace', { metricsNamespace: 'Guard/ns' }],
  ] as [string, Partial<GuardConfig>][])('with %s, the synthesized dashboard is the contract\'s', (_, overrides) => {
    const cfg = { ...DEFAULT_CONFIG, ...overrides };
    const widgets = body(synthHub(overrides)).widgets;
    const synthesized = widgets.map((w: any) => {
      const { view, title, region, metrics: _metrics, yAxis, ...rest } = w.properties;
      // Nothing the contract does not declare (CDK writes an empty yAxis).
      expect(rest).toEqual({});
      expect(yAxis).toEqual({});
      return { type: w.type, title, x: w.x, y: w.y, width: w.width, height: w.height, view, region, lines: lines(w.properties) };
    });
    expect(synthesized).toEqual(CONTRACT_DASHBOARD.rows.flat().map((w) => expected(w, cfg)));
  });
});
