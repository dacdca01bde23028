import { testApp } from './util';
import { Template } from 'aws-cdk-lib/assertions';
import { SpokeStack } from '../lib/spoke-stack';

const ACCOUNT = '111122223333';
const HUB_BUS = `arn:aws:events:us-east-1:${ACCOUNT}:event-bus/default`;

function synth(region: string): Template {
  const app = testApp();
  return Template.fromStack(new SpokeStack(app, `Spoke-${region}`, { env: { account: ACCOUNT, region }, hubRegion: 'us-east-1' }));
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
});
