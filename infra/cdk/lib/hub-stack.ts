import * as path from 'node:path';
import { Aws, CfnOutput, CfnRule, Fn, Stack, StackProps, aws_events as events } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { GuardConfig, checkConcurrency, checkOrganization, hasDetector } from './config';
import { AlarmTopic, Alarms, Detector, DriftBus, Notifications, Remediator, SweepQueue } from './constructs';
import { BINARIES } from './constructs/function-guard';

/** The repository root: where Cargo.toml (binaries `bootstrap` and `detector`) lives. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

export interface HubStackProps extends StackProps {
  readonly config: GuardConfig;
  /**
   * Build the Rust function with cargo-lambda during synth (needed for deploy). false skips
   * bundling: the template is complete, but its code asset is not built (synth checks, tests).
   */
  readonly bundle: boolean;
}

/**
 * The function, its triggers, the on-failure queue, the backups bucket, alarms, topic and dashboard:
 * the parts in ./constructs, each creating its resources in this stack's scope (see constructs/index.ts).
 */
export class HubStack extends Stack {
  private readonly bundle: boolean;

  constructor(scope: Construct, id: string, props: HubStackProps) {
    super(scope, id, props);
    this.bundle = props.bundle;
    const cfg = props.config;
    checkConcurrency(cfg);
    checkOrganization(cfg);
    if (!props.bundle) {
      // Without bundling the code asset is the source tree, not a function: make CloudFormation
      // refuse such a template before it changes anything.
      new CfnRule(this, 'CodeNotBuilt', {
        assertions: [
          {
            // A stack name cannot contain '=': this assertion always fails.
            assert: Fn.conditionEquals(Aws.STACK_NAME, 'code-not-built=bundle-false'),
            assertDescription: 'Synthesized with -c bundle=false (the Rust code was not built): deploy with make deploy-cdk.',
          },
        ],
      });
    }
    // One Cargo package: a binary for each function.
    const manifestPath = path.join(REPO_ROOT, 'Cargo.toml');

    const sweepQueue = new SweepQueue(this, { config: cfg });
    const driftBus = new DriftBus(this, { config: cfg });
    const remediator = new Remediator(this, { config: cfg, manifestPath, binaryName: BINARIES.remediator, sweepQueue: sweepQueue.queue, driftBus });
    const sweep = sweepQueue.workedBy(remediator.fn, remediator.role);

    // The detector (securityHub on, or a configRule): the same engine in dry-run, in a package of its
    // own (the findings and Config clients stay out of the remediator's cold start); read-only. As
    // infra/sam/template.yaml's DetectorFunction, DetectorRole and their rules.
    const detector = hasDetector(cfg)
      ? new Detector(this, {
          config: cfg,
          manifestPath,
          binaryName: BINARIES.detector,
          guarded: remediator.guarded,
          baselineReads: remediator.baselineReads,
          listAccounts: remediator.listAccounts,
          deadLetterQueue: remediator.deadLetterQueue,
          driftBusName: driftBus.name,
        })
      : undefined;

    // Organisation mode: the member accounts' forwarding rules put their KMS events on this
    // default bus; only principals of the organisation may.
    if (cfg.organizationId) {
      new events.CfnEventBusPolicy(this, 'OrganizationEventBusPolicy', {
        eventBusName: 'default',
        statementId: 'kms-replica-guard-organization',
        statement: {
          Effect: 'Allow',
          Principal: '*',
          Action: 'events:PutEvents',
          Resource: `arn:${this.partition}:events:${this.region}:${this.account}:event-bus/default`,
          // KMS CloudTrail events only: a member account cannot put the guard's own events here.
          Condition: {
            StringEquals: { 'aws:PrincipalOrgID': cfg.organizationId },
            'ForAllValues:StringEquals': { 'events:source': ['aws.kms'], 'events:detail-type': ['AWS API Call via CloudTrail'] },
          },
        },
      });
    }

    const { topic } = new AlarmTopic(this, { config: cfg });
    new Notifications(this, {
      topic,
      driftBusName: driftBus.name,
      remediator: {
        functionName: remediator.fn.functionName,
        functionArn: remediator.fn.functionArn,
        roleName: remediator.role.roleName,
        ruleNames: [remediator.kmsRule.ruleName, sweep.rule.ruleName],
        mappingId: sweep.mappingId,
      },
      detector: detector && {
        functionName: detector.fn.functionName,
        functionArn: detector.fn.functionArn,
        roleName: detector.role.roleName,
        ruleNames: detector.ruleNames,
      },
    });
    new Alarms(this, {
      config: cfg,
      topic,
      fn: remediator.fn,
      deadLetterQueue: remediator.deadLetterQueue,
      sweepDeadLetterQueue: sweepQueue.deadLetterQueue,
    });

    new CfnOutput(this, 'HubEventBusArn', {
      description:
        'The hub default event bus: the target of the spoke and member stacks. Events that spoke rules of the same account put here are accepted without a bus policy; member accounts need organizationId (the organisation bus policy).',
      value: `arn:${this.partition}:events:${this.region}:${this.account}:event-bus/default`,
    });
  }

  /** Skips cargo-lambda bundling when the stack was created with `bundle: false`. */
  public override get bundlingRequired(): boolean {
    return this.bundle && super.bundlingRequired;
  }
}
