import { aws_events as events } from 'aws-cdk-lib';

/**
 * KMS API calls that can change which policy a multi-Region replica key has, or which policy it
 * should have: a tag change may add or end an exemption (EXCLUDE_TAG) or pick another baseline
 * (BASELINE_TAG).
 */
export const KMS_EVENT_NAMES = ['ReplicateKey', 'CreateKey', 'PutKeyPolicy', 'UpdatePrimaryRegion', 'TagResource', 'UntagResource'];

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

/** The EventBridge `source` of the function's drift events. */
export const GUARD_EVENT_SOURCE = 'kms-replica-guard';

/** The `detail-type`s of the function's drift events. */
export const DRIFT_DETAIL_TYPES = [
  'Replica Key Policy Drift Detected',
  'Replica Key Policy Remediated',
  'Replica Key Policy Remediation Failed',
];

/**
 * The hub's exposure notification rule (identical to infra/sam/template.yaml's
 * ExposureNotificationRule; infra/tests checks it against infra/tests/fixtures/): drifts that
 * give anyone, or another account, access.
 */
export const EXPOSURE_EVENT_PATTERN: events.EventPattern = {
  source: [GUARD_EVENT_SOURCE],
  detailType: DRIFT_DETAIL_TYPES,
  detail: { exposure: { severity: ['public', 'cross-account'] } },
};

/**
 * The readable message the rule sends to the alarm topic. InputTransformer paths are scalar
 * only (no array indexing); a path that is missing (`actor` is null when a sweep found the
 * drift) renders empty.
 */
export const EXPOSURE_MESSAGE = {
  inputPathsMap: {
    severity: '$.detail.exposure.severity',
    key_arn: '$.detail.key_arn',
    region: '$.detail.region',
    account: '$.detail.account',
    action: '$.detail.action',
    actor_arn: '$.detail.actor.arn',
    actor_ip: '$.detail.actor.source_ip_address',
    actor_time: '$.detail.actor.event_time',
    actor_event_id: '$.detail.actor.event_id',
  },
  inputTemplate:
    '"kms-replica-guard: <severity> drift on <key_arn> (<region>, account <account>): <action>. ' +
    'Caused by <actor_arn> from <actor_ip> at <actor_time> (CloudTrail event <actor_event_id>). Runbook: README.md#exposuredrift"',
};
