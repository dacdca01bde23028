import { Aws, CfnOutput, Stack, aws_events as events, aws_sns as sns } from 'aws-cdk-lib';
import { GuardConfig } from '../config';
import { GUARD_CHANGE_MESSAGE, guardChangePattern, message, notification, pattern } from '../event-pattern';
import { contractStatements, declaredPolicy } from './function-guard';

/** An InputTransformer written out (InputPathsMap + InputTemplate), exactly as the SAM template has it. */
class TransformedInput extends events.RuleTargetInput {
  constructor(
    private readonly pathsMap: Record<string, string>,
    private readonly template: string,
  ) {
    super();
  }

  public bind(): events.RuleTargetInputProperties {
    return { inputPathsMap: this.pathsMap, inputTemplate: this.template };
  }
}

export interface DriftBusProps {
  readonly config: GuardConfig;
}

/**
 * The bus the function publishes every drift to (EVENT_BUS) and the notification rules read: the
 * stack's own (driftEventBus dedicated) or this Region's default bus.
 */
export class DriftBus {
  /** The bus's name: EVENT_BUS, and the bus of the rules that read the guard's events. */
  public readonly name: string;
  public readonly arn: string;

  constructor(stack: Stack, props: DriftBusProps) {
    // The drift events' own bus (driftEventBus dedicated): each event carries a key's policy diff,
    // which not every reader of the default bus should see. No bus policy: a custom bus without one
    // admits no other account; in this account, whoever IAM allows events:PutEvents / PutRule on it.
    const bus =
      props.config.driftEventBus === 'dedicated' ? new events.EventBus(stack, 'DriftBus', { eventBusName: `${stack.stackName}-drift` }) : undefined;
    this.name = bus ? bus.eventBusName : 'default';
    this.arn = bus ? bus.eventBusArn : `arn:${stack.partition}:events:${stack.region}:${stack.account}:event-bus/default`;
    new CfnOutput(stack, 'DriftEventBusName', {
      description:
        'The event bus the function publishes each drift to (source kms-replica-guard, EVENT_BUS): the stack own <stack>-drift bus (driftEventBus dedicated) or default. Route the events with rules of your own on this bus.',
      value: this.name,
    });
  }
}

/** A guard function as CloudTrail names it: its name and ARN, its role, the rules that invoke it. */
export interface WatchedFunction {
  readonly functionName: string;
  readonly functionArn: string;
  readonly roleName: string;
  readonly ruleNames: string[];
}

export interface NotificationsProps {
  /** The alarm topic: every notification goes there. */
  readonly topic: sns.ITopic;
  /** The drift bus's name (DriftBus.name): the guard's own events are read there. */
  readonly driftBusName: string;
  /** The remediator (its rules: the KMS rule and the sweep schedule) and its sweep queue mapping. */
  readonly remediator: WatchedFunction & { readonly mappingId: string };
  /** The detector, when the stack has one (its rules: securityHub on). */
  readonly detector?: WatchedFunction;
}

/**
 * Readable messages on the alarm topic: public and cross-account drifts, refused writes and
 * exemptions (the guard's own events on the drift bus), and changes to the guard's own resources
 * (CloudTrail, on the default bus); and the topic policy statement that lets exactly these rules publish.
 */
export class Notifications {
  constructor(stack: Stack, props: NotificationsProps) {
    const { topic, driftBusName } = props;
    // A readable message of the guard's own events (put on the drift bus by this account) to the
    // alarm topic. The target is bound by hand (not targets.SnsTopic, which would add Sid-less,
    // unconditioned grants to the topic and key policies) so that both policies say exactly what SAM says.
    // Each as infra/contract.json declares it (xtask/src/rules.rs): public and cross-account drifts,
    // as soon as the function publishes them (dry-run included); writes the guardrails refused
    // (dry-run included); exemptions (the exclude tag set on a key). The function puts every drift on
    // the bus; route the others (or these, elsewhere) with rules of your own on source kms-replica-guard.
    // The notification rules have fixed names: the guard change rule names them, and Ref of a rule on a
    // custom bus is BUS|NAME, not the name CloudTrail records.
    const notificationRule = (id: string) => {
      const n = notification(id);
      const ruleName = `${stack.stackName}-${n.name}`;
      const rule = new events.Rule(stack, id, {
        ruleName,
        description: n.description,
        eventPattern: { ...pattern(n.event_pattern), account: [Aws.ACCOUNT_ID] },
      });
      (rule.node.defaultChild as events.CfnRule).eventBusName = driftBusName;
      const m = message(n.message);
      rule.addTarget({ bind: () => ({ arn: topic.topicArn, input: new TransformedInput(m.inputPathsMap, m.inputTemplate) }) });
      return { rule, ruleName };
    };
    const { rule: exposureRule, ruleName: exposureRuleName } = notificationRule('ExposureNotificationRule');
    const { rule: refusedRule, ruleName: refusedRuleName } = notificationRule('WriteRefusedNotificationRule');
    const { rule: exemptionRule, ruleName: exemptionRuleName } = notificationRule('ExemptionNotificationRule');
    // Changes to the guard's own resources (CloudTrail management events), as a readable message to
    // the alarm topic at once; scoped to this stack's resources where CloudTrail names them (the
    // same rule as infra/sam/template.yaml's GuardChangeNotificationRule; see guardChangePattern).
    const { remediator, detector } = props;
    const changeRuleName = `${stack.stackName}-guard-changes`;
    const changeRule = new events.Rule(stack, 'GuardChangeNotificationRule', {
      ruleName: changeRuleName,
      description: "Changes to the guard's own function, queue mapping, rules, alarms and role (CloudTrail), as a readable message to the alarm topic",
      eventPattern: guardChangePattern({
        functionName: remediator.functionName,
        functionArn: remediator.functionArn,
        mappingId: remediator.mappingId,
        ruleNames: [...remediator.ruleNames, exposureRuleName, refusedRuleName, exemptionRuleName, changeRuleName, ...(detector?.ruleNames ?? [])],
        alarmPrefix: `${stack.stackName}-`,
        roleName: remediator.roleName,
        detector: detector ? { functionName: detector.functionName, functionArn: detector.functionArn, roleName: detector.roleName } : undefined,
      }),
    });
    (changeRule.node.defaultChild as events.CfnRule).eventBusName = 'default';
    changeRule.addTarget({
      bind: () => ({
        arn: topic.topicArn,
        input: new TransformedInput(GUARD_CHANGE_MESSAGE.inputPathsMap, GUARD_CHANGE_MESSAGE.inputTemplate),
      }),
    });
    // The topic's access policy (AlarmTopic has the alarms' statement): these rules may publish
    // (infra/contract.json, xtask/src/iam.rs).
    const [rulesPublish] = contractStatements(
      declaredPolicy('alarm_topic').filter((s) => s.sid === 'EventBridgeRulesPublish'),
      {
        AlarmTopic: topic.topicArn,
        'ExposureNotificationRule.Arn': exposureRule.ruleArn,
        'WriteRefusedNotificationRule.Arn': refusedRule.ruleArn,
        'ExemptionNotificationRule.Arn': exemptionRule.ruleArn,
        'GuardChangeNotificationRule.Arn': changeRule.ruleArn,
      },
    );
    topic.addToResourcePolicy(rulesPublish);
  }
}
