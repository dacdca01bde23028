#!/usr/bin/env node
// kms-replica-guard CDK app: one hub stack (function, rules, alarms) in hubRegion and one
// forwarding spoke stack per Region in spokeRegions. Settings come from context:
//   npx cdk deploy --all -c account=111122223333 -c hubRegion=us-east-1 \
//     -c spokeRegions=us-west-2,eu-west-1 -c remediationMode=enforce -c alarmEmail=ops@example.com
// `-c memberStack=true` also synthesizes the organisation member stack (cdk.out/Member.template.json,
// environment-agnostic, for a service-managed StackSet, not for `cdk deploy`: leave memberStack
// unset when deploying), with parameter defaults from -c account / hubRegion / hubRoleArn /
// memberRoleName / roleRegion.
// `-c guardrails=true` also synthesizes the organisation policies (cdk.out/Guardrails.template.json,
// environment-agnostic, for the management account: infra/guardrails/guardrails.yaml's twin).
// `-c bundle=false` skips the cargo-lambda build (synth checks and tests; never for deploy).
import { App } from 'aws-cdk-lib';
import { REGION_PATTERN, configFromContext } from '../lib/config';
import { HubStack } from '../lib/hub-stack';
import { GuardrailsStack } from '../lib/guardrails-stack';
import { MemberStack } from '../lib/member-stack';
import { SpokeStack } from '../lib/spoke-stack';

const app = new App();
const ctx = (key: string): unknown => app.node.tryGetContext(key);

const account = String(ctx('account') ?? process.env.CDK_DEFAULT_ACCOUNT ?? '');
const hubRegion = String(ctx('hubRegion') ?? process.env.CDK_DEFAULT_REGION ?? '');
if (!/^[0-9]{12}$/.test(account) || !REGION_PATTERN.test(hubRegion)) {
  throw new Error(
    'Set the target explicitly: -c account=<12-digit id> -c hubRegion=<Region> ' +
      `(got account='${account}', hubRegion='${hubRegion}'; the AWS CLI profile is used when credentials are available).`,
  );
}
const spokeRegions = String(ctx('spokeRegions') ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
for (const r of spokeRegions) {
  if (!REGION_PATTERN.test(r)) throw new Error(`context spokeRegions: ${r} is not a Region name`);
}
const bundle = String(ctx('bundle') ?? 'true') !== 'false';

const config = configFromContext(ctx);
new HubStack(app, 'Hub', {
  stackName: 'kms-replica-guard',
  description: 'kms-replica-guard hub: keeps multi-Region replica key policies converged on a baseline',
  env: { account, region: hubRegion },
  analyticsReporting: false,
  config: config.sweepRegions.length > 0 ? config : { ...config, sweepRegions: [hubRegion, ...spokeRegions] },
  bundle,
});
for (const region of spokeRegions) {
  new SpokeStack(app, `Spoke-${region}`, {
    stackName: 'kms-replica-guard-spoke',
    description: `kms-replica-guard spoke: forwards ${region} KMS events to ${hubRegion}`,
    env: { account, region },
    analyticsReporting: false,
    hubRegion,
  });
}

if (String(ctx('memberStack') ?? 'false') === 'true') {
  const hubRoleArn = ctx('hubRoleArn');
  const roleRegion = ctx('roleRegion');
  new MemberStack(app, 'Member', {
    stackName: 'kms-replica-guard-member',
    description: 'kms-replica-guard member: the role the hub assumes here and the rule forwarding KMS events to the hub (StackSet)',
    analyticsReporting: false,
    hubAccountId: account,
    hubRegion,
    hubRoleArn: hubRoleArn ? String(hubRoleArn) : undefined,
    memberRoleName: config.memberRoleName || undefined,
    roleRegion: roleRegion ? String(roleRegion) : undefined,
  });
}

if (String(ctx('guardrails') ?? 'false') === 'true') {
  new GuardrailsStack(app, 'Guardrails', {
    stackName: 'kms-replica-guard-guardrails',
    description: 'kms-replica-guard guardrails: SCPs reserving replica key policies and the guard tags, protecting the guard; an optional KMS RCP',
    analyticsReporting: false,
  });
}
