import { Stack, aws_iam as iam, aws_lambda as lambda } from 'aws-cdk-lib';
import { CheckovSkip, skipCheckov } from '../checkov';
import { CONTRACT } from '../config';

/**
 * How every guard function runs (infra/contract.json's `function`, from xtask/src/function.rs):
 * Lambda's OS-only runtime, the architecture the package is built and measured for, JSON logs.
 */
export const FUNCTION_RUNTIME = {
  runtime: CONTRACT.function.runtime as 'provided.al2023' | 'provided.al2',
  architecture: CONTRACT.function.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
  loggingFormat: CONTRACT.function.log_format as lambda.LoggingFormat,
};

/** The binaries of the one Cargo package (src/bin/<name>.rs). */
export const BINARIES = { remediator: CONTRACT.function.remediator_binary, detector: CONTRACT.function.detector_binary };

export interface FunctionGuardProps {
  /** The function's justified checkov skips. */
  readonly checkovSkips: CheckovSkip[];
  /** Logical id and name of the policy that keeps the role's powers to the function. */
  readonly policyId: string;
  readonly policyName: string;
  /** The actions denied to the role outside the function. */
  readonly actions: string[];
}

/**
 * What each of the guard's functions gets once built (the remediator and the detector alike): its
 * checkov skips, the cfn-lint note, and an identity policy that denies its role's powers anywhere but
 * in the function (lambda:SourceFunctionArn, which Lambda puts in the request context of every call
 * from the execution environment; identity policies and SCPs only): the same policy as
 * infra/sam/template.yaml's OnlyThisFunctionPolicy, which says why the SQS and log actions are left
 * out. Separate from the role's inline policy (a cycle).
 */
export function guardFunction(stack: Stack, fn: lambda.Function, role: iam.Role, props: FunctionGuardProps): void {
  const cfnFunction = fn.node.defaultChild as lambda.CfnFunction;
  skipCheckov(cfnFunction, props.checkovSkips);
  // cfn-lint W3005 (redundant DependsOn): lambda.Function always adds a construct dependency
  // on its role, rendered as DependsOn next to the Fn::GetAtt; harmless, and not removable
  // from here because CDK turns construct dependencies into DependsOn after this code runs.
  cfnFunction.addMetadata('cfn-lint', { config: { ignore_checks: ['W3005'] } });
  new iam.Policy(stack, props.policyId, {
    policyName: props.policyName,
    roles: [role],
    statements: [
      new iam.PolicyStatement({
        sid: 'OnlyFromThisFunction',
        effect: iam.Effect.DENY,
        actions: props.actions,
        resources: ['*'],
        conditions: { ArnNotEquals: { 'lambda:SourceFunctionArn': fn.functionArn } },
      }),
    ],
  });
}

/**
 * sts:AssumeRole on a member role, by name, in every account (the member role's trust policy admits
 * exactly the hub's role); inside the organisation only when organizationId is set.
 */
export function enterMemberAccounts(stack: Stack, sid: string, roleName: string, organizationId: string | undefined): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid,
    actions: ['sts:AssumeRole'],
    resources: [`arn:${stack.partition}:iam::*:role/${roleName}`],
    conditions: organizationId ? { StringEquals: { 'aws:ResourceOrgID': organizationId } } : undefined,
  });
}

/** A statement of infra/contract.json's `iam` (xtask/src/iam.rs): resources and condition values in Fn::Sub text. */
export interface ContractStatement {
  readonly sid: string;
  readonly effect: 'Allow' | 'Deny';
  /** Whom a resource policy's statement is about, as IAM writes it: `{AWS: '*'}` or `{Service: …}`. */
  readonly principal?: { readonly AWS?: '*'; readonly Service?: string };
  readonly actions: string[];
  readonly resources: string[];
  readonly condition?: Record<string, Record<string, string | string[]>>;
}

/**
 * The contract's statements, each `${Name}` of their Fn::Sub text replaced by this stack's value of it
 * (a token or a literal); a name without a value is an error, never left in a policy.
 */
/** `${Name}` of a contract text replaced by its value here; a name without one is an error, never left in a policy. */
function renderer(values: Record<string, string>): (text: string) => string {
  return (text) =>
    text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
      if (!(name in values)) throw new Error(`infra/contract.json: no value for \${${name}}`);
      return values[name];
    });
}

/** A contract condition with its values rendered. */
function renderCondition(condition: NonNullable<ContractStatement['condition']>, render: (text: string) => string) {
  return Object.fromEntries(
    Object.entries(condition).map(([op, kv]) => [
      op,
      Object.fromEntries(Object.entries(kv).map(([k, v]) => [k, Array.isArray(v) ? v.map(render) : render(v)])),
    ]),
  );
}

export function contractStatements(declared: readonly ContractStatement[], values: Record<string, string>): iam.PolicyStatement[] {
  const render = renderer(values);
  const principal = (p: ContractStatement['principal']): iam.IPrincipal[] | undefined => {
    if (p === undefined) return undefined;
    if (p.AWS === '*') return [new iam.AnyPrincipal()];
    if (p.Service) return [new iam.ServicePrincipal(p.Service)];
    throw new Error(`infra/contract.json: a principal this app does not build: ${JSON.stringify(p)}`);
  };
  return declared.map(
    (s) =>
      new iam.PolicyStatement({
        sid: s.sid,
        effect: s.effect === 'Deny' ? iam.Effect.DENY : iam.Effect.ALLOW,
        principals: principal(s.principal),
        actions: [...s.actions],
        resources: s.resources.map(render),
        conditions: s.condition ? renderCondition(s.condition, render) : undefined,
      }),
  );
}

/** The contract's statements of a policy (infra/contract.json's `iam`), by its key. */
export function declaredPolicy(
  key:
    | 'remediator'
    | 'detector'
    | 'backups_bucket'
    | 'alarm_topic'
    | 'alarm_topic_key'
    | 'import_findings'
    | 'answer_config_rule',
): ContractStatement[] {
  return CONTRACT.iam[key] as unknown as ContractStatement[];
}

/**
 * What a function's role may do only from its execution environment (lambda:SourceFunctionArn): the
 * IAM action of every call the code makes as that caller (infra/contract.json's `operations`, declared
 * with the calls in krg-engine), but for what the Lambda service does with the role outside it: the
 * queue's event source mapping and the on-failure destination (sqs:), and the logs.
 */
export function onlyThisFunctionActions(caller: 'remediator' | 'detector'): string[] {
  const actions = CONTRACT.operations
    .filter((o) => (o.callers as string[]).includes(caller))
    .map((o) => o.iam_action)
    .filter((a): a is string => typeof a === 'string' && !/^(sqs|logs):/.test(a));
  return [...new Set(actions)].sort();
}
