import {
  Aws,
  CfnOutput,
  CfnRule,
  Fn,
  Stack,
  StackProps,
  aws_events as events,
  aws_events_targets as targets,
  aws_iam as iam,
} from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { REGION_PATTERN } from './config';
import { KMS_EVENT_PATTERN, guardRoleChangePattern } from './event-pattern';

/** The Region whose default bus receives IAM's CloudTrail events (IAM is global; commercial partition). */
export const IAM_EVENTS_REGION = 'us-east-1';

export interface SpokeStackProps extends StackProps {
  /** Region of the hub stack; its default event bus receives this Region's KMS events. */
  readonly hubRegion: string;
  /**
   * The hub's RemediatorRoleName output, for the spoke in us-east-1 of a hub elsewhere: the spoke also
   * forwards the changes to that role's policies (IAM's CloudTrail events, delivered in us-east-1 only)
   * to the hub's default bus, where its guard change rule matches them. Unset = no IAM forwarding.
   */
  readonly guardRoleName?: string;
}

/** Forwards one Region's KMS events (same pattern as the hub rule) to the hub Region's default bus. */
export class SpokeStack extends Stack {
  constructor(scope: Construct, id: string, props: SpokeStackProps) {
    super(scope, id, props);
    if (!REGION_PATTERN.test(props.hubRegion)) {
      throw new Error(`hubRegion=${props.hubRegion} is not a Region name`);
    }
    // A spoke in the hub Region would forward the default bus's events to itself, over and over.
    if (props.env?.region === props.hubRegion) {
      throw new Error(`a spoke stack cannot live in the hub Region (${props.hubRegion})`);
    }
    if (props.guardRoleName !== undefined) {
      if (!/^[\w+=,.@-]{1,64}$/.test(props.guardRoleName)) {
        throw new Error(`guardRoleName=${props.guardRoleName} is not an IAM role name`);
      }
      // IAM's CloudTrail events reach EventBridge in us-east-1 only: a rule for them anywhere else never matches.
      if (props.env?.region !== IAM_EVENTS_REGION) {
        throw new Error(`guardRoleName applies to the spoke in ${IAM_EVENTS_REGION} only, where EventBridge delivers IAM events`);
      }
    }

    // EventBridge routes events to a bus in another Region in the commercial, China and GovCloud
    // partitions only: elsewhere refuse the stack rather than drop the Region's events silently.
    new CfnRule(this, 'CrossRegionTargetsAvailable', {
      assertions: [
        {
          assert: Fn.conditionContains(['aws', 'aws-cn', 'aws-us-gov'], Aws.PARTITION),
          assertDescription:
            'Cross-Region event bus targets are not available in this partition; deploy the hub stack in this Region instead of a spoke.',
        },
      ],
    });

    const hubBusArn = `arn:${this.partition}:events:${props.hubRegion}:${this.account}:event-bus/default`;
    const role = new iam.Role(this, 'ForwardRole', {
      description: 'Lets the kms-replica-guard spoke rule put events on the hub Region default bus',
      assumedBy: new iam.PrincipalWithConditions(new iam.ServicePrincipal('events.amazonaws.com'), {
        StringEquals: { 'aws:SourceAccount': this.account },
      }),
      inlinePolicies: {
        'put-events-on-hub-bus': new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({ sid: 'PutEventsOnHubBus', actions: ['events:PutEvents'], resources: [hubBusArn] }),
          ],
        }),
      },
    });

    // The target gets the role as it is: the inline policy already allows exactly PutEvents on the hub bus.
    const rule = new events.Rule(this, 'ForwardKmsEvents', {
      description: 'Forwards KMS key policy events to the kms-replica-guard hub Region',
      eventPattern: KMS_EVENT_PATTERN,
      targets: [new targets.EventBus(events.EventBus.fromEventBusArn(this, 'HubBus', hubBusArn), { role: role.withoutPolicyUpdates() })],
    });

    new CfnOutput(this, 'ForwardRuleArn', { description: 'ARN of the forwarding rule', value: rule.ruleArn });
    // The hub's guard change rule names the hub role's policy changes, but EventBridge delivers IAM's
    // CloudTrail events on us-east-1's default bus only: for a hub elsewhere, forward them (the hub
    // rule's IAM branch, for the hub role's name); a forwarded event keeps its source and detail.
    if (props.guardRoleName) {
      const iamRule = new events.Rule(this, 'ForwardGuardRoleChanges', {
        description: "Forwards changes to the kms-replica-guard hub role's policies (IAM, delivered in us-east-1 only) to the hub Region",
        eventPattern: guardRoleChangePattern(props.guardRoleName),
        targets: [new targets.EventBus(events.EventBus.fromEventBusArn(this, 'HubBusForIam', hubBusArn), { role: role.withoutPolicyUpdates() })],
      });
      new CfnOutput(this, 'GuardRoleChangesRuleArn', { description: "ARN of the rule forwarding the hub role's IAM changes", value: iamRule.ruleArn });
    }
    new CfnOutput(this, 'HubEventBusArn', { description: 'The bus the events are forwarded to', value: hubBusArn });
  }
}
