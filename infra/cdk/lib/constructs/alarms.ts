import {
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  aws_cloudwatch as cloudwatch,
  aws_cloudwatch_actions as cw_actions,
  aws_iam as iam,
  aws_kms as kms,
  aws_lambda as lambda,
  aws_sns as sns,
  aws_sns_subscriptions as subscriptions,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { GuardConfig } from '../config';

/** The four metrics the function publishes (each datum with no dimension and with `Region`). */
export const METRIC_NAMES = ['AutoFixApplied', 'DriftDetected', 'AutoFixFailed', 'FlapSuppressed'] as const;

/** The organisation metrics (member accounts not entered, events from accounts not allowed). */
export const MEMBER_METRIC_NAMES = ['AccountNotEntered', 'AccountNotAllowed'] as const;

/** Drifts by severity (dimension `Severity` only, no dimensionless total): the alarm's two series. */
export const EXPOSURE_ALARM_SEVERITIES = ['public', 'cross-account'] as const;

/** The share of maxEventAgeSeconds an event may wait in Lambda's asynchronous queue before the alarm. */
export const ASYNC_EVENT_AGE_ALARM_FRACTION = 0.5;

export interface AlarmTopicProps {
  readonly config: GuardConfig;
}

/**
 * The alarm topic, encrypted with a key of its own, and (alarmEmail) its e-mail subscription: the
 * alarms and the notification rules publish there.
 */
export class AlarmTopic {
  public readonly topic: sns.Topic;

  constructor(stack: Stack, props: AlarmTopicProps) {
    const cfg = props.config;
    // CloudWatch can only publish to an encrypted topic whose key policy allows it, which the
    // AWS managed alias/aws/sns key cannot: hence a customer managed key.
    const topicKey = new kms.Key(stack, 'AlarmTopicKey', {
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
    const topic = new sns.Topic(stack, 'AlarmTopic', { displayName: 'kms-replica-guard alarms', masterKey: topicKey });
    this.topic = topic;
    if (cfg.alarmEmail) {
      topic.addSubscription(new subscriptions.EmailSubscription(cfg.alarmEmail));
    }
    // The topic's access policy (it replaces SNS's default one): this stack's alarms and its
    // notification rules (Notifications adds their statement) may publish, nothing else; the
    // account's IAM principals keep what IAM grants them.
    topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: {
          StringEquals: { 'aws:SourceAccount': stack.account },
          ArnLike: { 'aws:SourceArn': `arn:${stack.partition}:cloudwatch:${stack.region}:${stack.account}:alarm:${stack.stackName}-*` },
        },
      }),
    );
    new CfnOutput(stack, 'AlarmTopicArn', { description: 'SNS topic of the alarms', value: topic.topicArn });
  }
}

export interface AlarmsProps {
  readonly config: GuardConfig;
  /** Where every alarm and its return to OK go. */
  readonly topic: sns.ITopic;
  /** The remediator function (its errors, throttles and asynchronous events). */
  readonly fn: lambda.IFunction;
  /** The on-failure queue of the asynchronous invocations. */
  readonly deadLetterQueue: sqs.IQueue;
  /** The sweep work queue's dead-letter queue. */
  readonly sweepDeadLetterQueue: sqs.IQueue;
}

/**
 * Every alarm of the stack, each notifying the topic when it fires and when it is OK again, and
 * the dashboard. Each alarm is named `<stack>-...` (the topic policy and the guard change rule rely on it).
 */
export class Alarms {
  constructor(stack: Stack, props: AlarmsProps) {
    const cfg = props.config;
    const { topic, fn, deadLetterQueue: dlq, sweepDeadLetterQueue: sweepDlq } = props;
    const period = Duration.minutes(5);
    const sweepInterval = Duration.hours(cfg.sweepIntervalHours);

    // Alarms watch the dimensionless fleet totals; the function also publishes each datum per Region.
    const guardMetric = (metricName: string) =>
      new cloudwatch.Metric({ namespace: cfg.metricsNamespace, metricName, statistic: 'Sum', period });
    const alarm = (id: string, alarmProps: cloudwatch.AlarmProps) => {
      const a = new cloudwatch.Alarm(stack, id, alarmProps);
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
      alarmName: `${stack.stackName}-AutoFixApplied-spike`,
      alarmDescription:
        'More key policies were rewritten in 5 minutes than AutoFixSpikeThreshold (mass drift, or something fighting the baseline). Runbook: docs/src/runbook/autofixapplied-spike.md',
      metric: guardMetric('AutoFixApplied'),
      threshold: cfg.autoFixSpikeThreshold,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm('AutoFixFailedAlarm', {
      alarmName: `${stack.stackName}-AutoFixFailed`,
      alarmDescription:
        'A replica key policy could not be checked or rewritten (permissions, lockout check, verification mismatch). Runbook: docs/src/runbook/autofixfailed.md',
      metric: guardMetric('AutoFixFailed'),
      ...atLeastOnce,
    });
    alarm('FlapSuppressedAlarm', {
      alarmName: `${stack.stackName}-FlapSuppressed`,
      alarmDescription:
        'A key was rewritten too often and is now left alone (another automation keeps changing its policy). Runbook: docs/src/runbook/flapsuppressed.md',
      metric: guardMetric('FlapSuppressed'),
      ...atLeastOnce,
    });
    alarm('FunctionErrorsAlarm', {
      alarmName: `${stack.stackName}-FunctionErrors`,
      alarmDescription:
        'The remediator function failed an invocation (it is retried; after the retries the event goes to the DLQ). Runbook: docs/src/runbook/functionerrors.md',
      metric: fn.metricErrors({ statistic: 'Sum', period }),
      ...atLeastOnce,
    });
    alarm('DeadLetterQueueAlarm', {
      alarmName: `${stack.stackName}-DLQ-not-empty`,
      alarmDescription:
        'Events the remediator (or the detector) gave up on are waiting in the on-failure queue (read them, fix the cause, redrive). Runbook: docs/src/runbook/dlq-not-empty.md',
      metric: dlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period }),
      ...atLeastOnce,
    });

    alarm('AccountNotEnteredAlarm', {
      alarmName: `${stack.stackName}-AccountNotEntered`,
      alarmDescription:
        'The hub could not assume the member role in an account (refused, throttled, unreachable): its keys are not being checked. Runbook: docs/src/runbook/accountnotentered.md',
      metric: guardMetric('AccountNotEntered'),
      ...atLeastOnce,
    });
    alarm('SweepDeadLetterQueueAlarm', {
      alarmName: `${stack.stackName}-sweep-DLQ-not-empty`,
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
      alarmName: `${stack.stackName}-SweepCompleted-heartbeat`,
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
        alarmName: `${stack.stackName}-EnforceMode-dry-run`,
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
      alarmName: `${stack.stackName}-ExposureDrift`,
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
      alarmName: `${stack.stackName}-Throttles`,
      alarmDescription:
        'Lambda throttled the remediator (no concurrency left): KMS events wait in the asynchronous queue and age towards MaxEventAgeSeconds. Runbook: docs/src/runbook/throttles.md',
      metric: fn.metricThrottles({ statistic: 'Sum', period }),
      ...atLeastOnce,
    });
    // AsyncEventAge (milliseconds, Maximum) as a fraction of maxEventAgeSeconds, the age at which
    // Lambda gives an event up: written as the SAM template must write it (metric math), so that
    // both stacks are one alarm.
    alarm('AsyncEventAgeAlarm', {
      alarmName: `${stack.stackName}-AsyncEventAge`,
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
      alarmName: `${stack.stackName}-AsyncEventsDropped`,
      alarmDescription:
        'Lambda dropped KMS events without a successful invocation of the remediator (retries exhausted or MaxEventAgeSeconds passed): those keys were not checked. Runbook: docs/src/runbook/asynceventsdropped.md',
      metric: fn.metric('AsyncEventsDropped', { statistic: 'Sum', period }),
      ...atLeastOnce,
    });
    alarm('AccountNotAllowedAlarm', {
      alarmName: `${stack.stackName}-AccountNotAllowed`,
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
        alarmName: `${stack.stackName}-FindingsNotImported`,
        alarmDescription:
          "Security Hub did not take some of the detector's findings (not enabled in that account and Region, access denied, throttled): those findings may be stale until the next sweep. Runbook: docs/src/runbook/findingsnotimported.md",
        metric: guardMetric('FindingsNotImported'),
        ...moreThanNone,
      });
    }
    if (cfg.configRule !== 'none') {
      alarm('EvaluationsNotPutAlarm', {
        alarmName: `${stack.stackName}-EvaluationsNotPut`,
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
      alarmName: `${stack.stackName}-GuardrailRefused`,
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
      alarmName: `${stack.stackName}-WriteExposure`,
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

    const dashboard = new cloudwatch.Dashboard(stack, 'Dashboard', {
      // Dashboards are global to the account: the Region keeps per-Region stacks apart.
      dashboardName: `${stack.stackName}-${stack.region}`,
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
    new CfnOutput(stack, 'DashboardName', { description: 'CloudWatch dashboard of the function metrics', value: dashboard.dashboardName });
  }
}
