import { aws_events as events } from 'aws-cdk-lib';
import { CONTRACT } from './config';

// The rules' facts come from infra/contract.json (`cargo xtask docs`, from xtask/src/rules.rs and
// the function's own declarations): the KMS calls the function acts on, the source and
// detail-types of its events, the notification messages. infra/tests/test_contract.py checks the
// SAM templates against the same.
const RULES = CONTRACT.rules as unknown as ContractRules;

/** A readable message (an InputTransformer) of the contract. */
interface ContractMessage {
  readonly input_paths_map: Record<string, string>;
  readonly input_template: string;
  readonly runbook: string;
}

/** A notification rule of the contract (the stacks add `account`: this account's). */
interface ContractNotification {
  readonly logical_id: string;
  readonly name: string;
  readonly description: string;
  readonly event_pattern: { readonly source: string[]; readonly 'detail-type': string[]; readonly detail?: Record<string, unknown> };
  readonly message: ContractMessage;
}

/** The contract's `rules`. */
interface ContractRules {
  readonly kms_event_names: string[];
  readonly guard_event_source: string;
  readonly notifications: ContractNotification[];
  readonly guard_change_message: ContractMessage;
  readonly guard_role_event_names: string[];
}

/** A notification rule of the contract, by its logical id: its name after `<stack>-`, description, pattern and message. */
export function notification(logicalId: string): ContractNotification {
  const found = RULES.notifications.find((n) => n.logical_id === logicalId);
  if (!found) throw new Error(`infra/contract.json has no notification rule ${logicalId}`);
  return found;
}

/** A message of the contract as the rule target takes it. */
export function message(m: ContractMessage): { inputPathsMap: Record<string, string>; inputTemplate: string } {
  return { inputPathsMap: m.input_paths_map, inputTemplate: m.input_template };
}

/** An EventPattern of the contract (`detail-type` spelled the CDK way). */
export function pattern(p: ContractNotification['event_pattern']): events.EventPattern {
  return { source: p.source, detailType: p['detail-type'], ...(p.detail ? { detail: p.detail } : {}) };
}

/**
 * KMS API calls that can change which policy a multi-Region replica key has, or which policy it
 * should have: a tag change may add or end an exemption (EXCLUDE_TAG) or pick another baseline
 * (BASELINE_TAG).
 */
export const KMS_EVENT_NAMES: string[] = RULES.kms_event_names;

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
export const GUARD_EVENT_SOURCE: string = RULES.guard_event_source;

/** The `detail-type`s of the function's drift events. */
export const DRIFT_DETAIL_TYPES: string[] = notification('ExposureNotificationRule').event_pattern['detail-type'];

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
export const EXPOSURE_EVENT_PATTERN: events.EventPattern = pattern(notification('ExposureNotificationRule').event_pattern);

/**
 * The readable message the rule sends to the alarm topic. InputTransformer paths are scalar
 * only (no array indexing); a path that is missing (`actor` is null when a sweep found the
 * drift) renders empty.
 */
export const EXPOSURE_MESSAGE = message(notification('ExposureNotificationRule').message);

/**
 * The hub's write refused notification rule (identical to infra/sam/template.yaml's
 * WriteRefusedNotificationRule; infra/tests checks it against infra/tests/fixtures/): writes the
 * guardrails refused, dry-run included.
 */
export const WRITE_REFUSED_EVENT_PATTERN: events.EventPattern = pattern(notification('WriteRefusedNotificationRule').event_pattern);

/** Its message: the key, why (the outcome's reason, which names each breach) and the trigger. */
export const WRITE_REFUSED_MESSAGE = message(notification('WriteRefusedNotificationRule').message);

/**
 * The hub's exemption notification rule (identical to infra/sam/template.yaml's
 * ExemptionNotificationRule): the exclude tag set on a key.
 */
export const EXEMPTION_EVENT_PATTERN: events.EventPattern = pattern(notification('ExemptionNotificationRule').event_pattern);

/** Its message: the key, the tag and its value, who set it. */
export const EXEMPTION_MESSAGE = message(notification('ExemptionNotificationRule').message);

/** The IAM calls that change what the guard's role may do (the guard change rule's IAM branch). */
export const GUARD_ROLE_EVENT_NAMES: string[] = RULES.guard_role_event_names;

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
export const GUARD_CHANGE_MESSAGE = message(RULES.guard_change_message);
