import {
  Aws,
  BootstraplessSynthesizer,
  CfnCondition,
  CfnOutput,
  CfnParameter,
  Fn,
  Stack,
  StackProps,
  aws_organizations as organizations,
} from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { DEFAULT_CONFIG } from './config';
import { DEFAULT_MEMBER_ROLE_NAME } from './member-stack';

/** The actions that change the guard's hub resources (the ProtectTheGuard SCP). */
const HUB_RESOURCE_ACTIONS = [
  'lambda:CreateFunction', 'lambda:DeleteFunction', 'lambda:DeleteFunctionConcurrency', 'lambda:DeleteFunctionEventInvokeConfig',
  'lambda:PutFunctionConcurrency', 'lambda:PutFunctionEventInvokeConfig', 'lambda:UpdateFunctionCode',
  'lambda:UpdateFunctionConfiguration', 'lambda:UpdateFunctionEventInvokeConfig',
  'events:DeleteRule', 'events:DisableRule', 'events:PutRule', 'events:PutTargets', 'events:RemoveTargets',
  'cloudwatch:DeleteAlarms', 'cloudwatch:DisableAlarmActions', 'cloudwatch:PutMetricAlarm', 'cloudwatch:SetAlarmState',
  'sqs:DeleteQueue', 'sqs:PurgeQueue', 'sqs:SetQueueAttributes',
  's3:DeleteBucket', 's3:DeleteBucketPolicy', 's3:PutBucketPolicy', 's3:PutBucketVersioning', 's3:PutLifecycleConfiguration',
];

const ROLE_ACTIONS = [
  'iam:AttachRolePolicy', 'iam:CreateRole', 'iam:DeleteRole', 'iam:DeleteRolePermissionsBoundary', 'iam:DeleteRolePolicy',
  'iam:DetachRolePolicy', 'iam:PassRole', 'iam:PutRolePermissionsBoundary', 'iam:PutRolePolicy', 'iam:TagRole', 'iam:UntagRole',
  'iam:UpdateAssumeRolePolicy', 'iam:UpdateRole', 'iam:UpdateRoleDescription',
];

/**
 * What the Lambda service does with the hub role outside the execution environment, without
 * lambda:SourceFunctionArn (the SQS event source's polling, the on-failure destination, the
 * environment's decryption): left out of the hub-role-in-its-function-only statement.
 */
const SERVICE_ACTIONS_WITHOUT_SOURCE_FUNCTION = [
  'kms:Decrypt', 'sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ReceiveMessage', 'sqs:SendMessage',
];

const STACK_ACTIONS = [
  'cloudformation:CreateChangeSet', 'cloudformation:DeleteStack', 'cloudformation:ExecuteChangeSet',
  'cloudformation:SetStackPolicy', 'cloudformation:UpdateStack', 'cloudformation:UpdateTerminationProtection',
];

/**
 * The organisation policies of infra/guardrails/guardrails.yaml (the same template; infra/tests
 * checks it): SCPs reserving replica key policies and the guard's tags to the guard and named
 * pipelines, and the guard's own resources to its deployment roles; an optional RCP keeping KMS
 * inside the organisation. For the management account (or an Organizations delegated
 * administrator), with parameters, no bootstrap stack.
 */
export class GuardrailsStack extends Stack {
  constructor(scope: Construct, id: string, props: StackProps = {}) {
    super(scope, id, { ...props, synthesizer: props.synthesizer ?? new BootstraplessSynthesizer() });

    const hubAccountId = new CfnParameter(this, 'HubAccountId', {
      type: 'String',
      allowedPattern: '^[0-9]{12}$',
      constraintDescription: 'must be a 12-digit account id',
      description: 'The account of the hub stack (its function role is exempted).',
    });
    const hubRoleNamePattern = new CfnParameter(this, 'HubRoleNamePattern', {
      type: 'String',
      default: 'kms-replica-guard-RemediatorRole*',
      allowedPattern: '^[\\w+=,.@*-]{1,64}$',
      description: 'Name (IAM wildcards allowed) of the hub function role.',
    });
    const memberRoleName = new CfnParameter(this, 'MemberRoleName', {
      type: 'String',
      default: DEFAULT_MEMBER_ROLE_NAME,
      allowedPattern: '^[\\w+=,.@-]{1,64}$',
      description: 'The member role name, exempted in every account.',
    });
    const pipelineRoleArns = new CfnParameter(this, 'PipelineRoleArns', {
      type: 'CommaDelimitedList',
      description: 'ARNs (IAM wildcards allowed) of the pipeline roles that may also write replica key policies and set the guard tags.',
    });
    const excludeTag = new CfnParameter(this, 'ExcludeTag', {
      type: 'String',
      default: DEFAULT_CONFIG.excludeTag,
      description: 'The hub excludeTag (EXCLUDE_TAG).',
    });
    const baselineTag = new CfnParameter(this, 'BaselineTag', {
      type: 'String',
      default: DEFAULT_CONFIG.baselineTag,
      description: 'The hub baselineTag (BASELINE_TAG).',
    });
    const guardStackName = new CfnParameter(this, 'GuardStackName', {
      type: 'String',
      default: 'kms-replica-guard',
      allowedPattern: '^[a-zA-Z][-a-zA-Z0-9]{0,127}$',
      description: 'The hub (and spoke) stack name.',
    });
    const memberStackSetName = new CfnParameter(this, 'MemberStackSetName', {
      type: 'String',
      default: 'kms-replica-guard-member',
      allowedPattern: '^[a-zA-Z][-a-zA-Z0-9]{0,127}$',
      description: 'The member StackSet name.',
    });
    const deploymentRoleArns = new CfnParameter(this, 'DeploymentRoleArns', {
      type: 'CommaDelimitedList',
      default: 'arn:aws:iam::*:role/kms-replica-guard-deployer,arn:aws:iam::*:role/stacksets-exec-*',
      description: 'The roles that deploy the guard: the only principals that may change its resources.',
    });
    const targetIds = new CfnParameter(this, 'TargetIds', {
      type: 'CommaDelimitedList',
      description: 'The organisation root, OUs or accounts the policies are attached to.',
    });
    const organizationId = new CfnParameter(this, 'OrganizationId', {
      type: 'String',
      default: '',
      allowedPattern: '^$|^o-[a-z0-9]{10,32}$',
      description: 'Set to create the resource control policy that keeps KMS keys inside this organisation.',
    });

    const deployers = { ArnNotLike: { 'aws:PrincipalArn': deploymentRoleArns.valueAsList } };
    const stack = guardStackName.valueAsString;
    const stackSet = memberStackSetName.valueAsString;

    const reserve = new organizations.CfnPolicy(this, 'ReserveReplicaPolicies', {
      name: 'kms-replica-guard-reserve-replica-policies',
      description: "Only the guard and named pipelines write replica key policies or set the guard's tags",
      type: 'SERVICE_CONTROL_POLICY',
      targetIds: targetIds.valueAsList,
      content: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'OnlyTheGuardWritesReplicaKeyPolicies',
            Effect: 'Deny',
            Action: 'kms:PutKeyPolicy',
            Resource: '*',
            Condition: {
              StringEquals: { 'kms:MultiRegionKeyType': 'REPLICA' },
              ArnNotLike: {
                'aws:PrincipalArn': Fn.split(
                  ',',
                  Fn.join(',', [
                    `arn:${Aws.PARTITION}:iam::${hubAccountId.valueAsString}:role/${hubRoleNamePattern.valueAsString}`,
                    `arn:${Aws.PARTITION}:iam::*:role/${memberRoleName.valueAsString}`,
                    Fn.join(',', pipelineRoleArns.valueAsList),
                  ]),
                ),
              },
            },
          },
          {
            Sid: 'OnlyPipelinesSetTheGuardsTags',
            Effect: 'Deny',
            Action: ['kms:TagResource', 'kms:UntagResource'],
            Resource: '*',
            Condition: {
              'ForAnyValue:StringEquals': { 'aws:TagKeys': [excludeTag.valueAsString, baselineTag.valueAsString] },
              ArnNotLike: { 'aws:PrincipalArn': pipelineRoleArns.valueAsList },
            },
          },
        ],
      },
    });

    const protect = new organizations.CfnPolicy(this, 'ProtectTheGuard', {
      name: 'kms-replica-guard-protect-the-guard',
      description: "Only the deployment roles change the guard's stacks, roles, function, rules, alarms, queues and bucket; the hub role works in the guard's function only",
      type: 'SERVICE_CONTROL_POLICY',
      targetIds: targetIds.valueAsList,
      content: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'ProtectTheGuardsRoles',
            Effect: 'Deny',
            Action: ROLE_ACTIONS,
            Resource: [
              `arn:${Aws.PARTITION}:iam::*:role/${hubRoleNamePattern.valueAsString}`,
              `arn:${Aws.PARTITION}:iam::*:role/${memberRoleName.valueAsString}`,
            ],
            Condition: deployers,
          },
          {
            Sid: 'ProtectTheGuardsStacks',
            Effect: 'Deny',
            Action: STACK_ACTIONS,
            Resource: [
              `arn:${Aws.PARTITION}:cloudformation:*:*:stack/${stack}*/*`,
              `arn:${Aws.PARTITION}:cloudformation:*:*:stack/StackSet-${stackSet}-*/*`,
            ],
            Condition: deployers,
          },
          {
            Sid: 'ProtectTheGuardsHubResources',
            Effect: 'Deny',
            Action: HUB_RESOURCE_ACTIONS,
            Resource: [
              `arn:${Aws.PARTITION}:lambda:*:*:function:${stack}-*`,
              `arn:${Aws.PARTITION}:events:*:*:rule/${stack}-*`,
              `arn:${Aws.PARTITION}:events:*:*:rule/StackSet-${stackSet}-*`,
              `arn:${Aws.PARTITION}:cloudwatch:*:*:alarm:${stack}-*`,
              `arn:${Aws.PARTITION}:sqs:*:*:${stack}-*`,
              `arn:${Aws.PARTITION}:s3:::${stack}-backupbucket*`,
            ],
            Condition: deployers,
          },
          {
            Sid: 'ProtectTheGuardsEventSourceMapping',
            Effect: 'Deny',
            Action: ['lambda:DeleteEventSourceMapping', 'lambda:UpdateEventSourceMapping'],
            Resource: '*',
            Condition: {
              ArnLike: { 'lambda:FunctionArn': `arn:${Aws.PARTITION}:lambda:*:*:function:${stack}-*` },
              ...deployers,
            },
          },
          // The hub role's credentials work inside the guard's function only (lambda:SourceFunctionArn,
          // which Lambda puts into every request from the execution environment; an absent key matches
          // ArnNotLike): guardrails.yaml says what is left out and why.
          {
            Sid: 'TheHubRoleWorksInTheGuardsFunctionOnly',
            Effect: 'Deny',
            NotAction: SERVICE_ACTIONS_WITHOUT_SOURCE_FUNCTION,
            Resource: '*',
            Condition: {
              ArnLike: { 'aws:PrincipalArn': `arn:${Aws.PARTITION}:iam::${hubAccountId.valueAsString}:role/${hubRoleNamePattern.valueAsString}` },
              ArnNotLike: { 'lambda:SourceFunctionArn': `arn:${Aws.PARTITION}:lambda:*:${hubAccountId.valueAsString}:function:${stack}-*` },
              BoolIfExists: { 'aws:ViaAWSService': 'false' },
            },
          },
        ],
      },
    });

    const perimeter = new CfnCondition(this, 'CreateKmsPerimeter', {
      expression: Fn.conditionNot(Fn.conditionEquals(organizationId.valueAsString, '')),
    });
    const rcp = new organizations.CfnPolicy(this, 'KmsInsideTheOrganization', {
      name: 'kms-replica-guard-kms-inside-organization',
      description: 'KMS keys of these accounts answer principals of the organisation (and AWS services) only',
      type: 'RESOURCE_CONTROL_POLICY',
      targetIds: targetIds.valueAsList,
      content: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'KmsKeysStayInsideTheOrganization',
            Effect: 'Deny',
            Principal: '*',
            Action: 'kms:*',
            Resource: '*',
            Condition: {
              StringNotEqualsIfExists: { 'aws:PrincipalOrgID': organizationId.valueAsString },
              Bool: { 'aws:PrincipalIsAWSService': 'false' },
            },
          },
        ],
      },
    });
    rcp.cfnOptions.condition = perimeter;

    new CfnOutput(this, 'ReserveReplicaPoliciesId', {
      description: 'The SCP keeping replica key policies and the guard tags to the guard and pipelines',
      value: reserve.ref,
    });
    new CfnOutput(this, 'ProtectTheGuardId', { description: 'The SCP protecting the guard own resources', value: protect.ref });
    const rcpOut = new CfnOutput(this, 'KmsInsideTheOrganizationId', {
      description: 'The RCP keeping KMS keys inside the organisation',
      value: rcp.ref,
    });
    rcpOut.condition = perimeter;
  }
}
