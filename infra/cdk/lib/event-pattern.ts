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
 * The detector's notification rule (identical to infra/sam/template.yaml's DetectorNotificationRule;
 * the stacks add `account`: this account's): every event of the guard, whatever its detail-type. The
 * detector re-reads the key it names and never trusts the event.
 */
export const DETECTOR_EVENT_PATTERN: events.EventPattern = {
  source: [GUARD_EVENT_SOURCE],
};

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
    'Caused by <actor_arn> from <actor_ip> at <actor_time> (CloudTrail event <actor_event_id>). Runbook: docs/src/runbook/exposuredrift.md"',
};

/**
 * The hub's write refused notification rule (identical to infra/sam/template.yaml's
 * WriteRefusedNotificationRule; infra/tests checks it against infra/tests/fixtures/): writes the
 * guardrails refused, dry-run included.
 */
export const WRITE_REFUSED_EVENT_PATTERN: events.EventPattern = {
  source: [GUARD_EVENT_SOURCE],
  detailType: ['Replica Key Policy Write Refused'],
};

/** Its message: the key, why (the outcome's reason, which names each breach) and the trigger. */
export const WRITE_REFUSED_MESSAGE = {
  inputPathsMap: {
    key_arn: '$.detail.key_arn',
    region: '$.detail.region',
    account: '$.detail.account',
    reason: '$.detail.reason',
    actor_arn: '$.detail.actor.arn',
    actor_ip: '$.detail.actor.source_ip_address',
    actor_time: '$.detail.actor.event_time',
    actor_event_id: '$.detail.actor.event_id',
  },
  inputTemplate:
    '"kms-replica-guard: write refused on <key_arn> (<region>, account <account>): <reason> ' +
    'Triggered by <actor_arn> from <actor_ip> at <actor_time> (CloudTrail event <actor_event_id>). Runbook: docs/src/runbook/guardrailrefused.md"',
};

/**
 * The hub's exemption notification rule (identical to infra/sam/template.yaml's
 * ExemptionNotificationRule): the exclude tag set on a key.
 */
export const EXEMPTION_EVENT_PATTERN: events.EventPattern = {
  source: [GUARD_EVENT_SOURCE],
  detailType: ['Replica Key Exemption Granted'],
};

/** Its message: the key, the tag and its value, who set it. */
export const EXEMPTION_MESSAGE = {
  inputPathsMap: {
    key_arn: '$.detail.key_arn',
    tag: '$.detail.tag',
    value: '$.detail.value',
    actor_arn: '$.detail.actor.arn',
    actor_ip: '$.detail.actor.source_ip_address',
    actor_time: '$.detail.actor.event_time',
    actor_event_id: '$.detail.actor.event_id',
  },
  inputTemplate:
    '"kms-replica-guard: exemption granted on <key_arn>: tag <tag>=<value> set by <actor_arn> from <actor_ip> at <actor_time> ' +
    '(CloudTrail event <actor_event_id>). The guard no longer fixes this key. Runbook: docs/src/runbook/exemption-granted.md"',
};

/** The IAM calls that change what the guard's role may do (the guard change rule's IAM branch). */
export const GUARD_ROLE_EVENT_NAMES = ['PutRolePolicy', 'DeleteRolePolicy', 'AttachRolePolicy', 'DetachRolePolicy', 'UpdateAssumeRolePolicy'];

/** The detail of a change to the guard roles' policies, as CloudTrail records it. */
function guardRoleChangeDetail(...roleNames: string[]): Record<string, unknown> {
  return { eventSource: ['iam.amazonaws.com'], eventName: GUARD_ROLE_EVENT_NAMES, requestParameters: { roleName: roleNames } };
}

/**
 * The changes to the guard role's policies alone: the guard change rule's IAM branch as a pattern of its
 * own, which the spoke stack in us-east-1 forwards to a hub elsewhere (IAM is global; EventBridge
 * delivers its CloudTrail events in us-east-1 only). Identical to infra/sam/spoke.yaml's
 * ForwardGuardRoleChanges (infra/tests checks both against the hub's IAM branch).
 */
export function guardRoleChangePattern(roleName: string): events.EventPattern {
  return { source: ['aws.iam'], detailType: ['AWS API Call via CloudTrail'], detail: guardRoleChangeDetail(roleName) };
}

/** The guard's own resources, as CloudTrail names them in requestParameters. */
export interface GuardResources {
  readonly functionName: string;
  readonly functionArn: string;
  /** The sweep queue's event source mapping (its UUID). */
  readonly mappingId: string;
  readonly ruleNames: string[];
  /** Every alarm of the stack is named `<stack>-...`. */
  readonly alarmPrefix: string;
  readonly roleName: string;
  /** The detector (securityHub on, or a configRule), beside the remediator: its function and role. */
  readonly detector?: { readonly functionName: string; readonly functionArn: string; readonly roleName: string };
}

/**
 * The hub's guard change rule (identical to infra/sam/template.yaml's GuardChangeNotificationRule;
 * infra/tests checks it against infra/tests/fixtures/guard-changes/): CloudTrail records of calls that
 * change the function, its queue mapping, its rules, its alarms or its role. Lambda's event names
 * carry an API version (UpdateFunctionConfiguration20150331v2): prefixes. IAM events reach
 * EventBridge in us-east-1 only: a hub elsewhere gets them from the us-east-1 spoke (guardRoleChangePattern).
 */
export function guardChangePattern(r: GuardResources): events.EventPattern {
  const prefixes = (...names: string[]) => names.map((prefix) => ({ prefix }));
  return {
    source: ['aws.lambda', 'aws.events', 'aws.monitoring', 'aws.iam'],
    detailType: ['AWS API Call via CloudTrail'],
    detail: {
      $or: [
        {
          eventSource: ['lambda.amazonaws.com'],
          eventName: prefixes('UpdateFunctionConfiguration', 'UpdateFunctionCode', 'PutFunctionConcurrency', 'DeleteFunctionConcurrency'),
          requestParameters: {
            functionName: [r.functionName, r.functionArn, ...(r.detector ? [r.detector.functionName, r.detector.functionArn] : [])],
          },
        },
        {
          eventSource: ['lambda.amazonaws.com'],
          eventName: prefixes('UpdateEventSourceMapping', 'DeleteEventSourceMapping'),
          requestParameters: { uUID: [r.mappingId] },
        },
        { eventSource: ['events.amazonaws.com'], eventName: ['DisableRule', 'DeleteRule', 'PutRule'], requestParameters: { name: r.ruleNames } },
        { eventSource: ['events.amazonaws.com'], eventName: ['RemoveTargets', 'PutTargets'], requestParameters: { rule: r.ruleNames } },
        {
          eventSource: ['monitoring.amazonaws.com'],
          eventName: ['DeleteAlarms', 'DisableAlarmActions'],
          requestParameters: { alarmNames: [{ prefix: r.alarmPrefix }] },
        },
        {
          eventSource: ['monitoring.amazonaws.com'],
          eventName: ['SetAlarmState', 'PutMetricAlarm'],
          requestParameters: { alarmName: [{ prefix: r.alarmPrefix }] },
        },
        guardRoleChangeDetail(r.roleName, ...(r.detector ? [r.detector.roleName] : [])),
      ],
    },
  };
}

/** The guard change rule's message: who did what to which of the guard's resources. */
export const GUARD_CHANGE_MESSAGE = {
  inputPathsMap: {
    event_name: '$.detail.eventName',
    event_source: '$.detail.eventSource',
    function: '$.detail.requestParameters.functionName',
    mapping: '$.detail.requestParameters.uUID',
    rule_name: '$.detail.requestParameters.name',
    rule: '$.detail.requestParameters.rule',
    alarm: '$.detail.requestParameters.alarmName',
    role: '$.detail.requestParameters.roleName',
    actor_arn: '$.detail.userIdentity.arn',
    actor_ip: '$.detail.sourceIPAddress',
    event_time: '$.detail.eventTime',
    account: '$.account',
    region: '$.detail.awsRegion',
    event_id: '$.detail.eventID',
  },
  inputTemplate:
    '"kms-replica-guard: its own configuration changed: <event_name> (<event_source>) on <function><mapping><rule_name><rule><alarm><role> ' +
    'by <actor_arn> from <actor_ip> at <event_time> (account <account>, <region>, CloudTrail event <event_id>). Runbook: docs/src/runbook/guard-configuration-changed.md"',
};
