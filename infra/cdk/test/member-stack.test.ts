import { testApp } from './util';
import { Template } from 'aws-cdk-lib/assertions';
import { MemberStack } from '../lib/member-stack';

const HUB_ACCOUNT = '111122223333';
const HUB_ROLE = `arn:aws:iam::${HUB_ACCOUNT}:role/kms-replica-guard-RemediatorRole-ABC`;
const HUB_DETECTOR_ROLE = `arn:aws:iam::${HUB_ACCOUNT}:role/kms-replica-guard-DetectorRole-DEF`;

function synth(hubDetectorRoleArn?: string): Template {
  const app = testApp();
  return Template.fromStack(new MemberStack(app, 'Member', { hubAccountId: HUB_ACCOUNT, hubRegion: 'us-east-1', hubRoleArn: HUB_ROLE, hubDetectorRoleArn }));
}

describe('the member stack', () => {
  const template = synth();
  const json = template.toJSON();
  const [memberRoleId, memberRole] = Object.entries(template.findResources('AWS::IAM::Role', { Properties: { RoleName: { Ref: 'MemberRoleName' } } }))[0] as [string, any];

  test('is a StackSet template: environment-agnostic, no bootstrap parameter, the documented parameters', () => {
    expect(Object.keys(json.Parameters).sort()).toEqual([
      'DetectorRoleName',
      'ExternalId',
      'HubAccountId',
      'HubDetectorRoleArn',
      'HubRegion',
      'HubRoleArn',
      'MemberRoleName',
      'RoleRegion',
    ]);
    expect(json.Parameters.HubRoleArn.Default).toBe(HUB_ROLE);
    expect(json.Parameters.HubDetectorRoleArn.Default).toBe('');
    expect(json.Parameters.DetectorRoleName.Default).toBe('kms-replica-guard-detector');
    expect(json.Parameters.MemberRoleName.Default).toBe('kms-replica-guard-member');
    expect(json.Parameters.ExternalId).toMatchObject({ Default: '', NoEcho: true });
    expect(json.Parameters.RoleRegion.Default).toBe('us-east-1');
    expect(JSON.stringify(json)).not.toContain(`:${HUB_ACCOUNT}:key/`);
  });

  test('the member role is created in RoleRegion only and trusts exactly the hub function role', () => {
    expect(memberRole.Condition).toBe('CreateMemberRole');
    expect(json.Conditions.CreateMemberRole).toEqual({ 'Fn::Equals': [{ Ref: 'AWS::Region' }, { Ref: 'RoleRegion' }] });
    expect(memberRole.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      {
        Sid: 'HubFunctionOnly',
        Effect: 'Allow',
        // The hub role's account, narrowed to the hub role: survives a recreated hub role.
        Principal: {
          AWS: {
            'Fn::Sub': [
              'arn:${AWS::Partition}:iam::${HubRoleAccount}:root',
              { HubRoleAccount: { 'Fn::Select': [4, { 'Fn::Split': [':', { Ref: 'HubRoleArn' }] }] } },
            ],
          },
        },
        Action: 'sts:AssumeRole',
        Condition: {
          'Fn::If': [
            'HasExternalId',
            { ArnEquals: { 'aws:PrincipalArn': { Ref: 'HubRoleArn' } }, StringEquals: { 'sts:ExternalId': { Ref: 'ExternalId' } } },
            { ArnEquals: { 'aws:PrincipalArn': { Ref: 'HubRoleArn' } } },
          ],
        },
      },
    ]);
    expect(json.Conditions.HasExternalId).toEqual({ 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'ExternalId' }, ''] }] });
    expect(template.findOutputs('MemberRoleArn').MemberRoleArn).toMatchObject({ Condition: 'CreateMemberRole', Value: { 'Fn::GetAtt': `${memberRoleId}.Arn` } });
  });

  test('the member role may do what the hub role does with KMS and never bypass the lockout check; findings and Config answers are not its', () => {
    const statements = memberRole.Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
    expect(statements).toEqual([
      {
        Sid: 'ReadMultiRegionKeys',
        Effect: 'Allow',
        Action: ['kms:DescribeKey', 'kms:GetKeyPolicy', 'kms:ListResourceTags'],
        Resource: { 'Fn::Sub': 'arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/mrk-*' },
      },
      {
        Sid: 'RewriteReplicaKeyPolicies',
        Effect: 'Allow',
        Action: 'kms:PutKeyPolicy',
        Resource: { 'Fn::Sub': 'arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/mrk-*' },
        Condition: { StringEquals: { 'kms:MultiRegionKeyType': 'REPLICA' } },
      },
      { Sid: 'ListKeysForSweep', Effect: 'Allow', Action: 'kms:ListKeys', Resource: '*' },
      {
        Sid: 'NeverBypassLockoutSafetyCheck',
        Effect: 'Deny',
        Action: 'kms:PutKeyPolicy',
        Resource: '*',
        Condition: { Bool: { 'kms:BypassPolicyLockoutSafetyCheck': 'true' } },
      },
    ]);
    template.resourceCountIs('AWS::IAM::Policy', 0);
  });

  test('with hubDetectorRoleArn, a read-only detector role trusted by the hub detector role only: reads, findings, Config answers, no KMS write', () => {
    const t = synth(HUB_DETECTOR_ROLE);
    const j = t.toJSON();
    expect(j.Parameters.HubDetectorRoleArn.Default).toBe(HUB_DETECTOR_ROLE);
    const [detectorRoleId, detectorRole] = Object.entries(t.findResources('AWS::IAM::Role', { Properties: { RoleName: { Ref: 'DetectorRoleName' } } }))[0] as [string, any];
    expect(detectorRole.Condition).toBe('CreateDetectorRole');
    expect(j.Conditions.CreateDetectorRole).toEqual({
      'Fn::And': [{ Condition: 'CreateMemberRole' }, { 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'HubDetectorRoleArn' }, ''] }] }],
    });
    // Only the hub detector's role (ArnEquals aws:PrincipalArn), with the external id when there is one.
    expect(detectorRole.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      {
        Sid: 'HubDetectorOnly',
        Effect: 'Allow',
        Principal: {
          AWS: {
            'Fn::Sub': [
              'arn:${AWS::Partition}:iam::${HubDetectorRoleAccount}:root',
              { HubDetectorRoleAccount: { 'Fn::Select': [4, { 'Fn::Split': [':', { Ref: 'HubDetectorRoleArn' }] }] } },
            ],
          },
        },
        Action: 'sts:AssumeRole',
        Condition: {
          'Fn::If': [
            'HasExternalId',
            { ArnEquals: { 'aws:PrincipalArn': { Ref: 'HubDetectorRoleArn' } }, StringEquals: { 'sts:ExternalId': { Ref: 'ExternalId' } } },
            { ArnEquals: { 'aws:PrincipalArn': { Ref: 'HubDetectorRoleArn' } } },
          ],
        },
      },
    ]);
    expect(JSON.stringify(detectorRole.Properties.AssumeRolePolicyDocument)).not.toContain('HubRoleArn"');
    const statements = detectorRole.Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
    const allowed = statements.filter((s: any) => s.Effect === 'Allow').flatMap((s: any) => [s.Action].flat()).sort();
    expect(allowed).toEqual([
      'config:PutEvaluations',
      'kms:DescribeKey',
      'kms:GetKeyPolicy',
      'kms:ListKeys',
      'kms:ListResourceTags',
      'securityhub:BatchImportFindings',
    ]);
    const deny = statements.find((s: any) => s.Sid === 'NeverChangeKeys');
    expect(deny).toMatchObject({ Effect: 'Deny', Resource: '*' });
    expect(deny.Action).toEqual(expect.arrayContaining(['kms:Put*', 'kms:Create*', 'kms:Delete*', 'kms:Tag*', 'kms:Untag*', 'kms:Replicate*', 'kms:Update*']));
    expect(t.findOutputs('DetectorRoleArn').DetectorRoleArn).toMatchObject({ Condition: 'CreateDetectorRole', Value: { 'Fn::GetAtt': `${detectorRoleId}.Arn` } });
  });

  test('the rule forwards the hub pattern to the hub bus with its role, except in the hub account hub Region', () => {
    const hubBus = { 'Fn::Sub': 'arn:${AWS::Partition}:events:${HubRegion}:${HubAccountId}:event-bus/default' };
    const rules = Object.values(template.findResources('AWS::Events::Rule')) as any[];
    expect(rules).toHaveLength(1);
    expect(rules[0].Condition).toBe('ForwardEvents');
    expect(rules[0].Properties.EventPattern).toStrictEqual({
      source: ['aws.kms'],
      'detail-type': ['AWS API Call via CloudTrail'],
      detail: {
        eventSource: ['kms.amazonaws.com'],
        eventName: ['ReplicateKey', 'CreateKey', 'PutKeyPolicy', 'UpdatePrimaryRegion', 'TagResource', 'UntagResource'],
        errorCode: [{ exists: false }],
      },
    });
    const [forwardRoleId, forwardRole] = Object.entries(template.findResources('AWS::IAM::Role')).find(([, r]) => (r as any).Condition === 'ForwardEvents') as [string, any];
    expect(rules[0].Properties.Targets).toEqual([{ Id: 'HubEventBus', Arn: hubBus, RoleArn: { 'Fn::GetAtt': `${forwardRoleId}.Arn` } }]);
    expect(forwardRole.Condition).toBe('ForwardEvents');
    expect(forwardRole.Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement)).toEqual([
      { Sid: 'PutEventsOnHubBus', Effect: 'Allow', Action: 'events:PutEvents', Resource: hubBus },
    ]);
    expect(forwardRole.Properties.AssumeRolePolicyDocument.Statement[0]).toMatchObject({
      Principal: { Service: 'events.amazonaws.com' },
      Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
    });
    // No rule (and no forward role) in the hub account's hub Region: it would forward the bus to itself.
    expect(json.Conditions.ForwardEvents).toEqual({
      'Fn::Not': [
        {
          'Fn::And': [
            { 'Fn::Equals': [{ Ref: 'AWS::AccountId' }, { Ref: 'HubAccountId' }] },
            { 'Fn::Equals': [{ Ref: 'AWS::Region' }, { Ref: 'HubRegion' }] },
          ],
        },
      ],
    });
    expect(template.findOutputs('ForwardRuleArn').ForwardRuleArn.Condition).toBe('ForwardEvents');
    // The instance there still has a resource (a stack without any is refused).
    const unconditional = Object.values(json.Resources).filter((r: any) => !r.Condition) as any[];
    expect(unconditional.map((r) => r.Type)).toEqual(['AWS::CloudFormation::WaitConditionHandle']);
  });

  test('refuses a partition without cross-Region bus targets, and bad synth-time defaults', () => {
    expect(json.Rules.CrossRegionTargetsAvailable.Assertions).toEqual([
      expect.objectContaining({ Assert: { 'Fn::Contains': [['aws', 'aws-cn', 'aws-us-gov'], { Ref: 'AWS::Partition' }] } }),
    ]);
    expect(() => new MemberStack(testApp(), 'M', { hubAccountId: '123', hubRegion: 'us-east-1' })).toThrow(/hubAccountId/);
    expect(() => new MemberStack(testApp(), 'M', { hubAccountId: HUB_ACCOUNT, hubRegion: 'nowhere' })).toThrow(/hubRegion/);
  });
});
