import * as path from 'path';
import { BootstraplessSynthesizer, Stack, StackProps } from 'aws-cdk-lib';
import { CfnInclude } from 'aws-cdk-lib/cloudformation-include';
import { Construct } from 'constructs';
import { REGION_PATTERN } from './config';

/** The member stack's one definition, plain CloudFormation: the CDK app includes it as it is. */
export const MEMBER_TEMPLATE = path.join(__dirname, '..', '..', 'sam', 'member.yaml');

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
 * The member stack, for a service-managed StackSet: infra/sam/member.yaml itself (CfnInclude), with
 * the defaults of its hub parameters taken from the synth context. One definition for both tools:
 * its roles' statements are checked against infra/contract.json (infra/tests/test_contract.py and
 * test/contract.test.ts), its behaviour by test/member-stack.test.ts. Environment-agnostic (the
 * account and Region are the instance's), no bootstrap stack needed (no assets).
 */
export class MemberStack extends Stack {
  constructor(scope: Construct, id: string, props: MemberStackProps) {
    super(scope, id, { ...props, synthesizer: props.synthesizer ?? new BootstraplessSynthesizer() });
    if (!/^[0-9]{12}$/.test(props.hubAccountId)) throw new Error(`hubAccountId=${props.hubAccountId} is not a 12-digit account id`);
    if (!REGION_PATTERN.test(props.hubRegion)) throw new Error(`hubRegion=${props.hubRegion} is not a Region name`);
    const roleRegion = props.roleRegion ?? props.hubRegion;
    if (!REGION_PATTERN.test(roleRegion)) throw new Error(`roleRegion=${roleRegion} is not a Region name`);

    const template = new CfnInclude(this, 'Template', { templateFile: MEMBER_TEMPLATE });
    const defaults: Record<string, string | undefined> = {
      HubAccountId: props.hubAccountId,
      HubRegion: props.hubRegion,
      HubRoleArn: props.hubRoleArn,
      HubDetectorRoleArn: props.hubDetectorRoleArn ?? '',
      MemberRoleName: props.memberRoleName || undefined,
      DetectorRoleName: props.detectorRoleName || undefined,
      RoleRegion: roleRegion,
    };
    for (const [name, value] of Object.entries(defaults)) {
      if (value !== undefined) template.getParameter(name).default = value;
    }
  }
}
