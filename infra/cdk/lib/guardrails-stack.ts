import * as path from 'path';
import { BootstraplessSynthesizer, Stack, StackProps } from 'aws-cdk-lib';
import { CfnInclude } from 'aws-cdk-lib/cloudformation-include';
import { Construct } from 'constructs';

/** The organisation policies' one definition, plain CloudFormation: the CDK app includes it as it is. */
export const GUARDRAILS_TEMPLATE = path.join(__dirname, '..', '..', 'guardrails', 'guardrails.yaml');

/**
 * The organisation policies: infra/guardrails/guardrails.yaml itself (CfnInclude). SCPs reserving
 * replica key policies and the guard's tags to the guard and named pipelines, and the guard's own
 * resources to its deployment roles; an optional RCP keeping KMS inside the organisation. For the
 * management account (or an Organizations delegated administrator), with parameters, no bootstrap
 * stack. infra/tests/test_guardrails.py checks the template against the JSON documents beside it,
 * the stacks and the function; test/guardrails-stack.test.ts what this stack synthesizes.
 */
export class GuardrailsStack extends Stack {
  constructor(scope: Construct, id: string, props: StackProps = {}) {
    super(scope, id, { ...props, synthesizer: props.synthesizer ?? new BootstraplessSynthesizer() });
    new CfnInclude(this, 'Template', { templateFile: GUARDRAILS_TEMPLATE });
  }
}
