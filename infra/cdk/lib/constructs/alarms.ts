import {
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  aws_cloudwatch as cloudwatch,
  aws_cloudwatch_actions as cw_actions,
  aws_kms as kms,
  aws_lambda as lambda,
  aws_sns as sns,
  aws_sns_subscriptions as subscriptions,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { CONTRACT, GuardConfig } from '../config';
import { contractStatements, declaredPolicy } from './function-guard';

/** A value the stack takes from a setting: its SAM parameter and its CDK context key. */
export interface ContractKnob {
  readonly sam_parameter: string;
  readonly cdk_key: string;
}

/**
 * One series an alarm watches: `guard`, a metric the function publishes (namespace: the
 * metricsNamespace setting); `function`, a Lambda metric of the remediator; `queue`, an SQS metric of
 * the queue `resource` (a SAM logical id). `dimensions` as the SAM template writes them.
 */
export interface ContractSeries {
  readonly source: string;
  readonly resource: string | null;
  readonly namespace: string | ContractKnob;
  readonly metric_name: string;
  readonly statistic: string;
  readonly dimensions: Record<string, unknown>;
}

/** An alarm of the hub stack as infra/contract.json declares it (`cargo xtask docs`, from xtask/src/alarms.rs). */
export interface ContractAlarm {
  readonly logical_id: string;
  /** The alarm is named `<stack>-<name>`. */
  readonly name: string;
  /** The AlarmDescription, ending with the runbook page. */
  readonly description: string;
  readonly runbook: string;
  /** null: always; else only when the setting equals (or does not equal) the value. */
  readonly condition: null | (ContractKnob & { readonly sam_condition: string; readonly equals?: string; readonly not_equals?: string });
  /** One series, or `math`. */
  readonly metric?: ContractSeries;
  /** Metric math: `${Name}` in the expression is the value of the setting whose SAM parameter is Name. */
  readonly math?: {
    readonly id: string;
    readonly label: string;
    readonly expression: string;
    readonly parameters: readonly ContractKnob[];
    readonly metrics: readonly (ContractSeries & { readonly id: string })[];
  };
  /** Seconds, or the sweep interval (a setting in hours). */
  readonly period: number | { readonly sweep_interval_hours: ContractKnob };
  readonly threshold: number | ContractKnob;
  readonly comparison_operator: string;
  readonly evaluation_periods: number;
  readonly datapoints_to_alarm: number | null;
  readonly treat_missing_data: string;
}

/** Every alarm of the hub stack, from the contract. */
export const CONTRACT_ALARMS: readonly ContractAlarm[] = CONTRACT.alarms as readonly ContractAlarm[];

/**
 * A graph of the hub stack's dashboard as infra/contract.json declares it (`cargo xtask docs`, from
 * xtask/src/dashboard.rs), with its place on the grid (CDK's row layout must give the same).
 */
export interface ContractWidget {
  readonly title: string;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly view: string;
  /** The period of its lines, in seconds. */
  readonly period: number;
  /** One line per series, or `search`. */
  readonly metrics?: readonly ContractSeries[];
  /**
   * A SEARCH expression (a line per value of a dimension): `${Name}` in it is the value of the
   * setting whose SAM parameter is Name. `id` is the SAM template's (CDK gives a dashboard's expressions none).
   */
  readonly search?: { readonly id: string; readonly expression: string; readonly parameters: readonly ContractKnob[] };
}

/** The hub stack's dashboard, row by row, from the contract. */
export const CONTRACT_DASHBOARD: { readonly rows: readonly (readonly ContractWidget[])[] } = CONTRACT.dashboard as {
  readonly rows: readonly (readonly ContractWidget[])[];
};

/** The value of a setting of the stack (a context key of GuardConfig). */
export function settingOf(cfg: GuardConfig, knob: ContractKnob): unknown {
  if (!(knob.cdk_key in cfg)) throw new Error(`infra/contract.json names ${knob.cdk_key}, which is not a setting of the stack`);
  return (cfg as unknown as Record<string, unknown>)[knob.cdk_key];
}

/** Whether the stack has the alarm with these settings (its condition). */
export function alarmExists(cfg: GuardConfig, a: ContractAlarm): boolean {
  if (a.condition === null) return true;
  const value = String(settingOf(cfg, a.condition));
  return a.condition.equals !== undefined ? value === a.condition.equals : value !== a.condition.not_equals;
}

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
    // The services that publish to the topic may use its key (infra/contract.json, xtask/src/iam.rs).
    for (const statement of contractStatements(declaredPolicy('alarm_topic_key'), {})) {
      topicKey.addToResourcePolicy(statement);
    }
    const topic = new sns.Topic(stack, 'AlarmTopic', { displayName: 'kms-replica-guard alarms', masterKey: topicKey });
    this.topic = topic;
    if (cfg.alarmEmail) {
      topic.addSubscription(new subscriptions.EmailSubscription(cfg.alarmEmail));
    }
    // The topic's access policy (it replaces SNS's default one): this stack's alarms and its
    // notification rules (Notifications adds their statement) may publish, nothing else; the
    // account's IAM principals keep what IAM grants them.
    // The topic's access policy (it replaces SNS's default one), as infra/contract.json declares it
    // (xtask/src/iam.rs): this stack's alarms, here, and its notification rules (Notifications adds
    // their statement) may publish, nothing else; the account's IAM principals keep what IAM grants them.
    const [alarmsPublish] = contractStatements(
      declaredPolicy('alarm_topic').filter((s) => s.sid === 'CloudWatchAlarmsPublish'),
      {
        'AWS::Partition': stack.partition,
        'AWS::Region': stack.region,
        'AWS::AccountId': stack.account,
        'AWS::StackName': stack.stackName,
        AlarmTopic: topic.topicArn,
      },
    );
    topic.addToResourcePolicy(alarmsPublish);
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
 * Every alarm of the stack (CONTRACT_ALARMS, whose condition holds for the settings), each notifying
 * the topic when it fires and when it is OK again, and the dashboard (CONTRACT_DASHBOARD). Each alarm
 * is named `<stack>-...` (the topic policy and the guard change rule rely on it).
 */
export class Alarms {
  constructor(stack: Stack, props: AlarmsProps) {
    const cfg = props.config;
    const { topic, fn, deadLetterQueue: dlq, sweepDeadLetterQueue: sweepDlq } = props;

    // Every alarm as infra/contract.json declares it (xtask/src/alarms.rs), each notifying the topic
    // when it fires and when it is OK again.
    const queues: Record<string, sqs.IQueue> = { DeadLetterQueue: dlq, SweepDeadLetterQueue: sweepDlq };
    const setting = (knob: ContractKnob) => settingOf(cfg, knob);
    /** A contract expression with each `${Name}` replaced by the value of its parameter. */
    const substitute = (expression: string, parameters: readonly ContractKnob[], what: string) =>
      expression.replace(/\$\{(\w+)\}/g, (_, name: string) => {
        const knob = parameters.find((p) => p.sam_parameter === name);
        if (!knob) throw new Error(`${what}: the expression's \${${name}} is not one of its parameters`);
        return String(setting(knob));
      });
    const series = (s: ContractSeries, seriesPeriod: Duration): cloudwatch.IMetric => {
      const props = { statistic: s.statistic, period: seriesPeriod };
      const dimensions = Object.keys(s.dimensions);
      switch (s.source) {
        case 'guard':
          return new cloudwatch.Metric({
            namespace: String(setting(s.namespace as ContractKnob)),
            metricName: s.metric_name,
            ...(dimensions.length > 0 ? { dimensionsMap: s.dimensions as Record<string, string> } : {}),
            ...props,
          });
        case 'function':
          if (s.resource !== 'Function' || dimensions.join() !== 'FunctionName') throw new Error(`unexpected function series ${JSON.stringify(s)}`);
          return fn.metric(s.metric_name, props);
        case 'queue': {
          const queue = queues[s.resource ?? ''];
          if (!queue || dimensions.join() !== 'QueueName') throw new Error(`unexpected queue series ${JSON.stringify(s)}`);
          return queue.metric(s.metric_name, props);
        }
        default:
          throw new Error(`unknown series source ${s.source}`);
      }
    };
    for (const a of CONTRACT_ALARMS) {
      if (!alarmExists(cfg, a)) continue;
      const alarmPeriod =
        typeof a.period === 'number' ? Duration.seconds(a.period) : Duration.hours(Number(setting(a.period.sweep_interval_hours)));
      let metric: cloudwatch.IMetric;
      if (a.math) {
        const math = a.math;
        metric = new cloudwatch.MathExpression({
          expression: substitute(math.expression, math.parameters, a.name),
          label: math.label,
          usingMetrics: Object.fromEntries(math.metrics.map((m) => [m.id, series(m, alarmPeriod)])),
          period: alarmPeriod,
        });
      } else if (a.metric) {
        metric = series(a.metric, alarmPeriod);
      } else {
        throw new Error(`${a.name}: neither a metric nor metric math`);
      }
      const alarm = new cloudwatch.Alarm(stack, a.logical_id, {
        alarmName: `${stack.stackName}-${a.name}`,
        alarmDescription: a.description,
        metric,
        threshold: typeof a.threshold === 'number' ? a.threshold : Number(setting(a.threshold)),
        evaluationPeriods: a.evaluation_periods,
        datapointsToAlarm: a.datapoints_to_alarm ?? undefined,
        comparisonOperator: a.comparison_operator as cloudwatch.ComparisonOperator,
        treatMissingData: a.treat_missing_data as cloudwatch.TreatMissingData,
      });
      alarm.addAlarmAction(new cw_actions.SnsAction(topic));
      alarm.addOkAction(new cw_actions.SnsAction(topic));
    }

    // The dashboard as infra/contract.json declares it (xtask/src/dashboard.rs): one addWidgets per
    // row, which places the widgets where the contract (and the SAM template) does.
    const dashboard = new cloudwatch.Dashboard(stack, 'Dashboard', {
      // Dashboards are global to the account: the Region keeps per-Region stacks apart.
      dashboardName: `${stack.stackName}-${stack.region}`,
    });
    for (const row of CONTRACT_DASHBOARD.rows) {
      dashboard.addWidgets(
        ...row.map((w) => {
          const linePeriod = Duration.seconds(w.period);
          let lines: cloudwatch.IMetric[];
          if (w.search) {
            // A SEARCH names its lines itself (label '': none written).
            const expression = substitute(w.search.expression, w.search.parameters, `the dashboard's ${w.title}`);
            lines = [new cloudwatch.MathExpression({ expression, label: '', period: linePeriod })];
          } else if (w.metrics) {
            lines = w.metrics.map((s) => series(s, linePeriod));
          } else {
            throw new Error(`the dashboard's ${w.title}: neither metrics nor a search`);
          }
          return new cloudwatch.GraphWidget({
            title: w.title,
            width: w.width,
            height: w.height,
            view: w.view as cloudwatch.GraphWidgetView,
            left: lines,
          });
        }),
      );
    }
    new CfnOutput(stack, 'DashboardName', { description: 'CloudWatch dashboard of the function metrics', value: dashboard.dashboardName });
  }
}
