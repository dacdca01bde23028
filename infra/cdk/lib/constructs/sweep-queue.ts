import {
  CfnOutput,
  Duration,
  Stack,
  aws_events as events,
  aws_events_targets as targets,
  aws_iam as iam,
  aws_lambda as lambda,
  aws_lambda_event_sources as event_sources,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { GuardConfig } from '../config';

export interface SweepQueueProps {
  readonly config: GuardConfig;
}

/** What workedBy made: the schedule's rule and the queue's event source mapping. */
export interface SweepWork {
  /** The schedule that starts each full sweep. */
  readonly rule: events.Rule;
  /** The event source mapping that feeds the work items to the function (its UUID). */
  readonly mappingId: string;
}

/**
 * The scheduled sweep: its work queue and that queue's dead-letter queue, then (workedBy) the
 * schedule, the event source that consumes the items and the queue policy that keeps them the
 * function's. Two steps because the function's role names the queue, and the queue policy the role.
 */
export class SweepQueue {
  public readonly queue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  private readonly stack: Stack;
  private readonly config: GuardConfig;

  constructor(stack: Stack, props: SweepQueueProps) {
    this.stack = stack;
    this.config = props.config;
    const cfg = props.config;
    // The sweep's work items (one per account and Region), consumed by the function itself; items
    // that failed maxReceiveCount times are kept 14 days in the sweep DLQ for a redrive. 5 receives,
    // as AWS advises for a Lambda event source: a throttled receive counts too.
    this.deadLetterQueue = new sqs.Queue(stack, 'SweepDeadLetterQueue', {
      encryption: sqs.QueueEncryption.KMS_MANAGED,
      retentionPeriod: Duration.days(14),
    });
    this.queue = new sqs.Queue(stack, 'SweepQueue', {
      encryption: sqs.QueueEncryption.KMS_MANAGED,
      visibilityTimeout: Duration.seconds(cfg.sweepVisibilityTimeout),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 5 },
    });
    new CfnOutput(stack, 'SweepQueueUrl', {
      description: 'The sweep work queue (one item per account and Region, consumed by the function)',
      value: this.queue.queueUrl,
    });
    new CfnOutput(stack, 'SweepDeadLetterQueueUrl', {
      description: 'Sweep work items that failed 5 times (redrive source of the sweep queue)',
      value: this.deadLetterQueue.queueUrl,
    });
  }

  /**
   * The function plans the sweep and works its items: the schedule invokes it, it consumes the
   * queue, and its role alone may touch the items.
   */
  public workedBy(fn: lambda.IFunction, role: iam.IRole): SweepWork {
    const cfg = this.config;
    // The sweep's work items are planned and worked by the function alone: a planted item would
    // steer a sweep, a deleted or hidden one would skip an account and Region silently.
    this.queue.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'OnlyTheGuardPlansAndWorksSweepItems',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:PurgeQueue', 'sqs:ReceiveMessage', 'sqs:SendMessage'],
        resources: [this.queue.queueArn],
        conditions: { ArnNotEquals: { 'aws:PrincipalArn': role.roleArn } },
      }),
    );
    const rule = new events.Rule(this.stack, 'SweepRule', {
      description: 'Full sweep of the multi-Region replica keys in SWEEP_REGIONS (fanned out to the sweep queue)',
      schedule: events.Schedule.rate(Duration.hours(cfg.sweepIntervalHours)),
      targets: [new targets.LambdaFunction(fn)],
    });
    // The sweep's work items; failed items are reported one by one (batchItemFailures). The role
    // already allows the polling (withoutPolicyUpdates: nothing is added to it here).
    const source = new event_sources.SqsEventSource(this.queue, {
      batchSize: 5,
      reportBatchItemFailures: true,
      maxConcurrency: cfg.sweepWorkerConcurrency,
    });
    fn.addEventSource(source);
    return { rule, mappingId: source.eventSourceMappingId };
  }
}
