import { Template } from 'aws-cdk-lib/assertions';
import { GuardrailsStack } from '../lib/guardrails-stack';
import { testApp } from './util';

// infra/tests/test_guardrails.py checks this template against infra/guardrails/ (JSON and CloudFormation).
describe('the guardrails stack', () => {
  const template = Template.fromStack(new GuardrailsStack(testApp(), 'Guardrails'));

  test('two SCPs and an RCP that exists only with an organisation id', () => {
    const policies = template.findResources('AWS::Organizations::Policy');
    expect(Object.fromEntries(Object.entries(policies).map(([id, p]: [string, any]) => [id, [p.Properties.Type, p.Condition]]))).toEqual({
      ReserveReplicaPolicies: ['SERVICE_CONTROL_POLICY', undefined],
      ProtectTheGuard: ['SERVICE_CONTROL_POLICY', undefined],
      KmsInsideTheOrganization: ['RESOURCE_CONTROL_POLICY', 'CreateKmsPerimeter'],
    });
  });

  test('replica key policies are reserved by kms:MultiRegionKeyType, the tags by aws:TagKeys', () => {
    const [scp] = Object.values(template.findResources('AWS::Organizations::Policy', { Properties: { Name: 'kms-replica-guard-reserve-replica-policies' } })) as any[];
    const [writes, tags] = scp.Properties.Content.Statement;
    expect(writes).toMatchObject({ Effect: 'Deny', Action: 'kms:PutKeyPolicy', Condition: { StringEquals: { 'kms:MultiRegionKeyType': 'REPLICA' } } });
    expect(tags.Condition['ForAnyValue:StringEquals']['aws:TagKeys']).toEqual([{ Ref: 'ExcludeTag' }, { Ref: 'BaselineTag' }]);
    expect(template.toJSON().Parameters.ExcludeTag.Default).toBe('kms-replica-guard:exclude');
    expect(template.toJSON().Parameters.BaselineTag.Default).toBe('kms-replica-guard:baseline');
  });

  test('the hub role works inside the guard function only (lambda:SourceFunctionArn), service-made calls aside', () => {
    const [scp] = Object.values(template.findResources('AWS::Organizations::Policy', { Properties: { Name: 'kms-replica-guard-protect-the-guard' } })) as any[];
    const only = scp.Properties.Content.Statement.find((s: any) => s.Sid === 'TheHubRoleWorksInTheGuardsFunctionOnly');
    expect(only).toMatchObject({ Effect: 'Deny', Resource: '*' });
    expect(only.Action).toBeUndefined();
    expect(only.NotAction).toEqual(['kms:Decrypt', 'sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ReceiveMessage', 'sqs:SendMessage']);
    expect(Object.keys(only.Condition).sort()).toEqual(['ArnLike', 'ArnNotLike', 'BoolIfExists']);
    expect(Object.keys(only.Condition.ArnLike)).toEqual(['aws:PrincipalArn']);
    expect(Object.keys(only.Condition.ArnNotLike)).toEqual(['lambda:SourceFunctionArn']);
    expect(only.Condition.BoolIfExists).toEqual({ 'aws:ViaAWSService': 'false' });
  });
});

