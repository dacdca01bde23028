import { aws_events as events } from 'aws-cdk-lib';

/** KMS API calls that can change which policy a multi-Region replica key has. */
export const KMS_EVENT_NAMES = ['ReplicateKey', 'CreateKey', 'PutKeyPolicy', 'UpdatePrimaryRegion'];

/**
 * The KMS rule pattern of the hub and the spoke stacks (identical to infra/sam; infra/tests
 * checks every template's pattern against events/). No filter on the caller: the function
 * ignores its own PutKeyPolicy events, and `anything-but` on a missing field would drop
 * IAM-user events.
 */
export const KMS_EVENT_PATTERN: events.EventPattern = {
  source: ['aws.kms'],
  detailType: ['AWS API Call via CloudTrail'],
  detail: {
    eventSource: ['kms.amazonaws.com'],
    eventName: KMS_EVENT_NAMES,
    errorCode: events.Match.doesNotExist(),
  },
};
