// The sweep (lib/constructs/sweep-queue.ts): the schedule, the work queue and its DLQ, the event
// source that consumes it, the queue policy.
import { Match } from 'aws-cdk-lib/assertions';
import { configFromContext } from '../lib/config';
import { asyncDlqId, onlyResource, roleStatements, sweepQueues, synthHub } from './util';

describe('the sweep queue', () => {
  const template = synthHub();

  test('the sweep runs on the schedule and reaches the function', () => {
    const [fnId] = onlyResource(template, 'AWS::Lambda::Function');
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(6 hours)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] } })],
    });
    template.resourceCountIs('AWS::Lambda::Permission', 2);
  });

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
    const other = synthHub({ sweepWorkerConcurrency: 5, sweepVisibilityTimeout: 3600 });
    other.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 5 } });
    other.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 3600 });
  });

  test('only the function role may send, receive, delete or hide sweep work items', () => {
    const t = synthHub();
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

  test('the sweep interval sets the schedule and the heartbeat period; other intervals are refused', () => {
    for (const [hours, expression] of [[1, 'rate(1 hour)'], [12, 'rate(12 hours)']] as const) {
      const t = synthHub({ sweepIntervalHours: hours });
      t.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: expression });
      t.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'SweepCompleted', Period: hours * 3600, EvaluationPeriods: 2 });
    }
    const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
    expect(() => configFromContext(ctx({ sweepIntervalHours: '5' }))).toThrow(/sweepIntervalHours=5: expected one of 1, 2, 3, 4, 6, 8, 12, 24/);
    expect(configFromContext(ctx({ sweepIntervalHours: '24' })).sweepIntervalHours).toBe(24);
  });
});
