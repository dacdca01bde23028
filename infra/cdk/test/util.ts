import * as fs from 'node:fs';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { DEFAULT_CONFIG, GuardConfig } from '../lib/config';
import { HubStack } from '../lib/hub-stack';

/**
 * An App with cdk.json's context (the feature flags `cdk synth` uses), so that tests see the
 * templates the CLI produces, and with bundling skipped: tests never cross-compile Rust.
 */
export function testApp(): App {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8'));
  return new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
}

// The hub stack's tests (hub-stack.test.ts and one file per part in lib/constructs/) synthesize the
// whole hub and read each part's resources in its template.

export const ACCOUNT = '111122223333';
export const REGION = 'us-east-1';

/** The hub stack's template, with the default settings and these overrides. Never cross-compiles Rust: no stack is bundled. */
export function synthHub(overrides: Partial<GuardConfig> = {}, bundle = false): Template {
  const app = testApp();
  const stack = new HubStack(app, 'Hub', {
    stackName: 'kms-replica-guard',
    env: { account: ACCOUNT, region: REGION },
    config: { ...DEFAULT_CONFIG, ...overrides },
    bundle,
  });
  return Template.fromStack(stack);
}

/** The one resource of this type (with these properties): its logical id and its template entry. */
export function onlyResource(template: Template, type: string, props: object = {}): [string, any] {
  const found = template.findResources(type, props);
  const ids = Object.keys(found);
  expect(ids).toHaveLength(1);
  return [ids[0], found[ids[0]]];
}

/** The on-failure queue of the asynchronous invocations (the EventInvokeConfig destination). */
export function asyncDlqId(template: Template): string {
  const [, config] = onlyResource(template, 'AWS::Lambda::EventInvokeConfig');
  return config.Properties.DestinationConfig.OnFailure.Destination['Fn::GetAtt'][0];
}

/** The sweep work queue (the one with a redrive policy) and its dead-letter queue. */
export function sweepQueues(template: Template): { queueId: string; queue: any; dlqId: string } {
  const [queueId, queue] = onlyResource(template, 'AWS::SQS::Queue', { Properties: { RedrivePolicy: Match.anyValue() } });
  return { queueId, queue, dlqId: queue.Properties.RedrivePolicy.deadLetterTargetArn['Fn::GetAtt'][0] };
}

/** The inline statements of the stack's one role (the remediator's, without the detector). */
export function roleStatements(template: Template): any[] {
  const [, role] = onlyResource(template, 'AWS::IAM::Role');
  return role.Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
}

/** The remediator's or the detector's function or role: the detector's logical ids start with Detector. */
export function guard(template: Template, type: string, isDetector: boolean): [string, any] {
  const found = Object.entries(template.findResources(type)).filter(([id]) => id.startsWith('Detector') === isDetector);
  expect(found).toHaveLength(1);
  return found[0] as [string, any];
}
export const remediator = (t: Template) => guard(t, 'AWS::Lambda::Function', false);
export const detector = (t: Template) => guard(t, 'AWS::Lambda::Function', true);

/** Every statement of the role's identity policies: inline, and the policies attached to it. */
export function statementsOfRole(template: Template, isDetector: boolean): any[] {
  const [roleId, role] = guard(template, 'AWS::IAM::Role', isDetector);
  const attached = (Object.values(template.findResources('AWS::IAM::Policy')) as any[]).filter((p) =>
    p.Properties.Roles.some((r: any) => r.Ref === roleId),
  );
  return [...role.Properties.Policies, ...attached.map((p) => p.Properties)].flatMap((p: any) => p.PolicyDocument.Statement);
}
export const remediatorStatements = (t: Template) => statementsOfRole(t, false);
export const detectorStatements = (t: Template) => statementsOfRole(t, true);

/** The inline statements of every resource of this type (every role, for AWS::IAM::Role). */
export function statementsOf(template: Template, type: string): any[] {
  return (Object.values(template.findResources(type)) as any[]).flatMap((r) => (r.Properties.Policies ?? []).flatMap((p: any) => p.PolicyDocument.Statement));
}
