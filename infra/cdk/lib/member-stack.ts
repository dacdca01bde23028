import {
  Aws,
  BootstraplessSynthesizer,
  CfnCondition,
  CfnOutput,
  CfnParameter,
  CfnRule,
  CfnWaitConditionHandle,
  Fn,
  Stack,
  StackProps,
  aws_events as events,
  aws_iam as iam,
} from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { EXTERNAL_ID_PATTERN, REGION_PATTERN } from './config';
import { KMS_EVENT_NAMES } from './event-pattern';
import { contractStatementsJson, declaredPolicy } from './constructs/function-guard';

/** The default name of the member role (the hub's memberRoleName must be the same). */
export const DEFAULT_MEMBER_ROLE_NAME = 'kms-replica-guard-member';

/** The default name of the read-only detector role (the hub's detectorMemberRoleName must be the same). */
export const DEFAULT_DETECTOR_ROLE_NAME = 'kms-replica-guard-detector';

export interface MemberStackProps extends StackProps {
  /** Defaults of the template's parameters; each StackSet (instance) may override them. */
  readonly hubAccountId: string;
  readonly hubRegion: string;
  /** The hub's RemediatorRoleArn output, if known at synth time (else the parameter has no default). */
  readonly hubRoleArn?: string;
  /** The hub's DetectorRoleArn output, if known at synth time (else '': no detector role). */
  readonly hubDetectorRoleArn?: string;
  readonly memberRoleName?: string;
  readonly detectorRoleName?: string;
  /** Default: hubRegion. */
  readonly roleRegion?: string;
}

/**
 * The member stack of infra/sam/member.yaml, for a service-managed StackSet: environment-agnostic
 * (the account and Region are the instance's), parameters instead of synth-time values, no
 * bootstrap stack needed (no assets). The member role is created by the RoleRegion instance
 * only; the forwarding rule everywhere except in the hub account's hub Region.
 */
export class MemberStack extends Stack {
  constructor(scope: Construct, id: string, props: MemberStackProps) {
    super(scope, id, { ...props, synthesizer: props.synthesizer ?? new BootstraplessSynthesizer() });
    if (!/^[0-9]{12}$/.test(props.hubAccountId)) throw new Error(`hubAccountId=${props.hubAccountId} is not a 12-digit account id`);
    if (!REGION_PATTERN.test(props.hubRegion)) throw new Error(`hubRegion=${props.hubRegion} is not a Region name`);
    const roleRegionDefault = props.roleRegion ?? props.hubRegion;
    if (!REGION_PATTERN.test(roleRegionDefault)) throw new Error(`roleRegion=${roleRegionDefault} is not a Region name`);

    const hubAccountId = new CfnParameter(this, 'HubAccountId', {
      type: 'String',
      default: props.hubAccountId,
      allowedPattern: '^[0-9]{12}$',
      constraintDescription: 'must be a 12-digit account id',
      description: 'Account of the hub stack; its default event bus in HubRegion receives the events.',
    });
    const hubRegion = new CfnParameter(this, 'HubRegion', {
      type: 'String',
      default: props.hubRegion,
      allowedPattern: REGION_PATTERN.source,
      constraintDescription: 'must be a Region name such as us-east-1',
      description: 'Region of the hub stack.',
    });
    const hubRoleArn = new CfnParameter(this, 'HubRoleArn', {
      type: 'String',
      default: props.hubRoleArn,
      allowedPattern: '^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$',
      constraintDescription: 'must be an IAM role ARN (the hub stack RemediatorRoleArn output)',
      description:
        'The hub function execution role (the hub stack RemediatorRoleArn output): the only principal the member role trusts (its account root as Principal, with aws:PrincipalArn equal to this ARN).',
    });
    const hubDetectorRoleArn = new CfnParameter(this, 'HubDetectorRoleArn', {
      type: 'String',
      default: props.hubDetectorRoleArn ?? '',
      allowedPattern: '^$|^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$',
      constraintDescription: 'must be empty or an IAM role ARN (the hub stack DetectorRoleArn output)',
      description:
        'The hub detector execution role (the hub stack DetectorRoleArn output): the only principal the read-only detector role trusts. Empty = no detector role.',
    });
    const memberRoleName = new CfnParameter(this, 'MemberRoleName', {
      type: 'String',
      default: props.memberRoleName || DEFAULT_MEMBER_ROLE_NAME,
      allowedPattern: '^[\\w+=,.@-]{1,64}$',
      constraintDescription: 'must be an IAM role name',
      description: 'Name of the member role; the hub memberRoleName must be the same.',
    });
    const detectorRoleName = new CfnParameter(this, 'DetectorRoleName', {
      type: 'String',
      default: props.detectorRoleName || DEFAULT_DETECTOR_ROLE_NAME,
      allowedPattern: '^[\\w+=,.@-]{1,64}$',
      constraintDescription: 'must be an IAM role name',
      description: 'Name of the read-only detector role; the hub detectorMemberRoleName must be the same.',
    });
    const externalId = new CfnParameter(this, 'ExternalId', {
      type: 'String',
      default: '',
      noEcho: true,
      allowedPattern: `^$|${EXTERNAL_ID_PATTERN.source}`,
      constraintDescription: 'must be empty or 2-1224 characters of letters, digits and +=,.@:/-_',
      description: 'Optional external id the member and detector roles require (sts:ExternalId); the hub memberExternalId.',
    });
    const roleRegion = new CfnParameter(this, 'RoleRegion', {
      type: 'String',
      default: roleRegionDefault,
      allowedPattern: REGION_PATTERN.source,
      constraintDescription: 'must be a Region name such as us-east-1',
      description: 'The one Region whose stack instance creates the member role (IAM is global, StackSets deploy per Region).',
    });

    // EventBridge routes events to a bus in another Region in the commercial, China and GovCloud
    // partitions only (as the spoke stack): elsewhere refuse the stack.
    new CfnRule(this, 'CrossRegionTargetsAvailable', {
      assertions: [
        {
          assert: Fn.conditionContains(['aws', 'aws-cn', 'aws-us-gov'], Aws.PARTITION),
          assertDescription:
            'Cross-Region event bus targets are not available in this partition; deploy the hub stack in this Region instead.',
        },
      ],
    });

    const createMemberRole = new CfnCondition(this, 'CreateMemberRole', {
      expression: Fn.conditionEquals(Aws.REGION, roleRegion.valueAsString),
    });
    const createDetectorRole = new CfnCondition(this, 'CreateDetectorRole', {
      expression: Fn.conditionAnd(createMemberRole, Fn.conditionNot(Fn.conditionEquals(hubDetectorRoleArn.valueAsString, ''))),
    });
    new CfnCondition(this, 'HasExternalId', { expression: Fn.conditionNot(Fn.conditionEquals(externalId.valueAsString, '')) });
    // Not in the hub account's hub Region (the rule would put the bus's events back on itself): a
    // condition, not a failure, so that the StackSet instance there succeeds.
    const forwardEvents = new CfnCondition(this, 'ForwardEvents', {
      expression: Fn.conditionNot(
        Fn.conditionAnd(Fn.conditionEquals(Aws.ACCOUNT_ID, hubAccountId.valueAsString), Fn.conditionEquals(Aws.REGION, hubRegion.valueAsString)),
      ),
    });

    // A stack with no resource is refused: the instance in the hub account's hub Region outside
    // RoleRegion keeps this no-op resource only.
    new CfnWaitConditionHandle(this, 'InstanceMarker');

    // Both member roles' statements as infra/contract.json declares them (xtask/src/iam.rs): the
    // writer holds exactly the hub role's own KMS statements, the detector the hub detector's (every
    // KMS write denied) and its findings and Config answers here.
    const here = { 'AWS::Partition': Aws.PARTITION, 'AWS::AccountId': Aws.ACCOUNT_ID };
    // The trust of a member role: the hub account, narrowed to one hub role by aws:PrincipalArn
    // (and the external id when set). `accountVar` names the account taken from the role's ARN.
    const trustOnly = (sid: string, roleArn: string, accountVar: string) => ({
      Sid: sid,
      Effect: 'Allow',
      Principal: {
        AWS: Fn.sub(`arn:\${AWS::Partition}:iam::\${${accountVar}}:root`, {
          [accountVar]: Fn.select(4, Fn.split(':', roleArn)),
        }),
      },
      Action: 'sts:AssumeRole',
      Condition: Fn.conditionIf(
        'HasExternalId',
        {
          ArnEquals: { 'aws:PrincipalArn': roleArn },
          StringEquals: { 'sts:ExternalId': externalId.valueAsString },
        },
        { ArnEquals: { 'aws:PrincipalArn': roleArn } },
      ),
    });
    const memberRole = new iam.CfnRole(this, 'MemberRole', {
      roleName: memberRoleName.valueAsString,
      description: "Assumed by the kms-replica-guard hub function to read and rewrite this account's multi-Region replica key policies",
      assumeRolePolicyDocument: {
        Version: '2012-10-17',
        Statement: [
          // The hub account, narrowed to the hub role by aws:PrincipalArn: a role ARN as Principal is
          // stored as the role's unique id (a recreated hub role would not match, and the policy is
          // refused while the hub role does not exist). The account is taken from HubRoleArn.
          trustOnly('HubFunctionOnly', hubRoleArn.valueAsString, 'HubRoleAccount'),
        ],
      },
      // Exactly the hub role's own KMS statements; findings and Config answers are the detector
      // role's; backups, metrics and logs stay in the hub.
      policies: [
        {
          policyName: 'kms-replica-guard-member',
          policyDocument: {
            Version: '2012-10-17',
            Statement: contractStatementsJson(declaredPolicy('member_writer'), here),
          },
        },
      ],
    });
    memberRole.cfnOptions.condition = createMemberRole;

    // The hub detector's read-only role (hubDetectorRoleArn set): it reads this account's keys and
    // reports about them here (findings, the organization Config rule's answers); it changes no key.
    // Trusted as the member role trusts the hub role, by the detector's role only.
    const detectorRole = new iam.CfnRole(this, 'DetectorRole', {
      roleName: detectorRoleName.valueAsString,
      description:
        "Assumed by the kms-replica-guard hub detector to read this account's multi-Region key policies and report findings and Config answers (read-only)",
      assumeRolePolicyDocument: {
        Version: '2012-10-17',
        Statement: [
          trustOnly('HubDetectorOnly', hubDetectorRoleArn.valueAsString, 'HubDetectorRoleAccount'),
        ],
      },
      policies: [
        {
          policyName: 'kms-replica-guard-detector',
          policyDocument: {
            Version: '2012-10-17',
            Statement: contractStatementsJson(declaredPolicy('member_detector'), here),
          },
        },
      ],
    });
    detectorRole.cfnOptions.condition = createDetectorRole;

    const hubBusArn = `arn:${Aws.PARTITION}:events:${hubRegion.valueAsString}:${hubAccountId.valueAsString}:event-bus/default`;
    // A rule targeting another account's bus needs a role (the hub bus admits the organisation).
    const forwardRole = new iam.CfnRole(this, 'ForwardRole', {
      description: "Lets the kms-replica-guard member rule put events on the hub's default bus",
      assumeRolePolicyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { Service: 'events.amazonaws.com' },
            Action: 'sts:AssumeRole',
            Condition: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
          },
        ],
      },
      policies: [
        {
          policyName: 'put-events-on-hub-bus',
          policyDocument: {
            Version: '2012-10-17',
            Statement: [{ Sid: 'PutEventsOnHubBus', Effect: 'Allow', Action: 'events:PutEvents', Resource: hubBusArn }],
          },
        },
      ],
    });
    forwardRole.cfnOptions.condition = forwardEvents;

    // The hub rule's pattern, in its CloudFormation form (infra/tests checks all rules are identical).
    const rule = new events.CfnRule(this, 'ForwardKmsEvents', {
      description: 'Forwards KMS key policy events to the kms-replica-guard hub',
      state: 'ENABLED',
      eventPattern: {
        source: ['aws.kms'],
        'detail-type': ['AWS API Call via CloudTrail'],
        detail: { eventSource: ['kms.amazonaws.com'], eventName: KMS_EVENT_NAMES, errorCode: [{ exists: false }] },
      },
      targets: [{ id: 'HubEventBus', arn: hubBusArn, roleArn: forwardRole.attrArn }],
    });
    rule.cfnOptions.condition = forwardEvents;

    const roleOut = new CfnOutput(this, 'MemberRoleArn', { description: 'The role the hub function assumes in this account', value: memberRole.attrArn });
    roleOut.condition = createMemberRole;
    const detectorOut = new CfnOutput(this, 'DetectorRoleArn', {
      description: 'The read-only role the hub detector assumes in this account',
      value: detectorRole.attrArn,
    });
    detectorOut.condition = createDetectorRole;
    const ruleOut = new CfnOutput(this, 'ForwardRuleArn', { description: 'ARN of the forwarding rule', value: rule.attrArn });
    ruleOut.condition = forwardEvents;
    new CfnOutput(this, 'HubEventBusArn', { description: 'The bus the events are forwarded to', value: hubBusArn });
  }
}
