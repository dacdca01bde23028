import { testApp } from './util';
import { Template } from 'aws-cdk-lib/assertions';
import { SpokeStack } from '../lib/spoke-stack';
import { guardChangePattern } from '../lib/event-pattern';

const ACCOUNT = '111122223333';
const HUB_BUS = `arn:aws:events:us-east-1:${ACCOUNT}:event-bus/default`;

function synth(region: string, hubRegion = 'us-east-1', guardRoleName?: string): Template {
  const app = testApp();
  return Template.fromStack(new SpokeStack(app, `Spoke-${region}`, { env: { account: ACCOUNT, region }, hubRegion, guardRoleName }));
}

describe('the spoke stack', () => {
  const template = synth('eu-west-1');

  test('forwards exactly the hub pattern to the hub Region default bus with its role', () => {
    const rules = Object.values(template.findResources('AWS::Events::Rule')) as any[];
    expect(rules).toHaveLength(1);
    const [roleId] = Object.keys(template.findResources('AWS::IAM::Role'));
    expect(rules[0].Properties.EventPattern).toStrictEqual({
      source: ['aws.kms'],
      'detail-type': ['AWS API Call via CloudTrail'],
      detail: {
        eventSource: ['kms.amazonaws.com'],
        eventName: ['ReplicateKey', 'CreateKey', 'PutKeyPolicy', 'UpdatePrimaryRegion', 'TagResource', 'UntagResource'],
        errorCode: [{ exists: false }],
      },
    });
    expect(rules[0].Properties.Targets).toEqual([
      expect.objectContaining({ Arn: HUB_BUS, RoleArn: { 'Fn::GetAtt': [roleId, 'Arn'] } }),
    ]);
  });

  test('the role may only put events on the hub bus', () => {
    const roles = Object.values(template.findResources('AWS::IAM::Role')) as any[];
    expect(roles).toHaveLength(1);
    const statements = roles[0].Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
    expect(statements).toEqual([{ Sid: 'PutEventsOnHubBus', Effect: 'Allow', Action: 'events:PutEvents', Resource: HUB_BUS }]);
    expect(roles[0].Properties.AssumeRolePolicyDocument.Statement[0]).toMatchObject({
      Principal: { Service: 'events.amazonaws.com' },
      Condition: { StringEquals: { 'aws:SourceAccount': ACCOUNT } },
    });
    template.resourceCountIs('AWS::IAM::Policy', 0);
  });

  test('refuses to be deployed in the hub Region (it would forward to itself)', () => {
    expect(() => synth('us-east-1')).toThrow(/hub Region/);
  });
  test('refuses to deploy in a partition without cross-Region bus targets', () => {
    const rules = template.toJSON().Rules;
    expect(rules.CrossRegionTargetsAvailable.Assertions).toEqual([
      expect.objectContaining({
        Assert: { 'Fn::Contains': [['aws', 'aws-cn', 'aws-us-gov'], { Ref: 'AWS::Partition' }] },
      }),
    ]);
  });

  describe('in us-east-1 for a hub elsewhere, with the hub role name', () => {
    const ROLE = 'kms-replica-guard-RemediatorRole-ABC123';
    const west = synth('us-east-1', 'eu-west-1', ROLE);
    const HUB_WEST = `arn:aws:events:eu-west-1:${ACCOUNT}:event-bus/default`;

    test("forwards the changes to the hub role's policies, the hub guard change rule's IAM branch, to the hub bus", () => {
      const rules = Object.values(west.findResources('AWS::Events::Rule')) as any[];
      expect(rules).toHaveLength(2);
      const [iam] = rules.filter((r) => r.Properties.EventPattern.source[0] === 'aws.iam');
      expect(iam.Properties.EventPattern).toStrictEqual({
        source: ['aws.iam'],
        'detail-type': ['AWS API Call via CloudTrail'],
        detail: {
          eventSource: ['iam.amazonaws.com'],
          eventName: ['PutRolePolicy', 'DeleteRolePolicy', 'AttachRolePolicy', 'DetachRolePolicy', 'UpdateAssumeRolePolicy'],
          requestParameters: { roleName: [ROLE] },
        },
      });
      // The hub's own guard change rule has the same branch for its role.
      const hub = guardChangePattern({ functionName: 'f', functionArn: 'a', mappingId: 'm', ruleNames: [], alarmPrefix: 'p', roleName: ROLE }) as any;
      const branch = hub.detail.$or.find((b: any) => b.eventSource[0] === 'iam.amazonaws.com');
      expect(iam.Properties.EventPattern.detail).toStrictEqual(branch);
      const [roleId] = Object.keys(west.findResources('AWS::IAM::Role'));
      expect(iam.Properties.Targets).toEqual([expect.objectContaining({ Arn: HUB_WEST, RoleArn: { 'Fn::GetAtt': [roleId, 'Arn'] } })]);
      expect(Object.keys(west.findOutputs('*'))).toContain('GuardRoleChangesRuleArn');
    });

    test('no IAM forwarding without the role name, and none outside us-east-1', () => {
      const rules = Object.values(synth('us-east-1', 'eu-west-1').findResources('AWS::Events::Rule')) as any[];
      expect(rules.map((r) => r.Properties.EventPattern.source)).toEqual([['aws.kms']]);
      expect(() => synth('eu-west-2', 'eu-west-1', ROLE)).toThrow(/us-east-1 only/);
      expect(() => synth('us-east-1', 'eu-west-1', 'bad name!')).toThrow(/not an IAM role name/);
    });
  });
});
