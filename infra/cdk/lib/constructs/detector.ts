import {
  Aws,
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  aws_config as config,
  aws_events as events,
  aws_events_targets as targets,
  aws_iam as iam,
  aws_lambda as lambda,
  aws_lambda_destinations as destinations,
  aws_logs as logs,
  aws_sqs as sqs,
} from 'aws-cdk-lib';
import { RustFunction } from 'cargo-lambda-cdk';
import { DETECTOR_FUNCTION_SKIPS, LOG_GROUP_SKIPS, skipCheckov } from '../checkov';
import { CONTRACT, GuardConfig } from '../config';
import { DETECTOR_EVENT_PATTERN } from '../event-pattern';
import { contractStatements, declaredPolicy, enterMemberAccounts, FUNCTION_RUNTIME, guardFunction, onlyThisFunctionActions } from './function-guard';

/** The same for the detector's role (it reads and reports; it writes no key policy). */
export const DETECTOR_ONLY_THIS_FUNCTION_ACTIONS = onlyThisFunctionActions('detector');

export interface DetectorProps {
  readonly config: GuardConfig;
  /** The Cargo manifest whose binary the function runs (cargo-lambda-cdk builds it at synth). */
  readonly manifestPath: string;
  readonly binaryName: string;
  /** What is guarded and against which baseline: the remediator's (Remediator.guarded). */
  readonly guarded: Record<string, string>;
  /** The remediator's baseline reads and ListAccounts: the detector reads what the remediator reads. */
  readonly baselineReads: iam.PolicyStatement[];
  readonly listAccounts: iam.PolicyStatement[];
  /** The stack's one on-failure queue (the remediator's). */
  readonly deadLetterQueue: sqs.IQueue;
  /** The drift bus's name (DriftBus.name): the detector's notification rule reads it. */
  readonly driftBusName: string;
}

/**
 * The detector (securityHub on, or a configRule): the detector function, its read-only role and
 * log group, (securityHub on) the rules that invoke it: the guard's own events on the drift bus,
 * and a dry-run sweep at the sweep interval; and (configRule) the AWS Config rule it answers.
 */
export class Detector {
  public readonly fn: lambda.Function;
  public readonly role: iam.Role;
  /** The names of the rules that invoke it (securityHub on), as CloudTrail records them. */
  public readonly ruleNames: string[];

  constructor(stack: Stack, props: DetectorProps) {
    const cfg = props.config;
    const { guarded, baselineReads, listAccounts, deadLetterQueue: dlq, driftBusName } = props;
    const logGroup = new logs.LogGroup(stack, 'DetectorLogGroup', {
      logGroupName: CONTRACT.function.detector_log_group.replace('${AWS::StackName}', stack.stackName),
      retention: cfg.logRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    skipCheckov(logGroup.node.defaultChild as logs.CfnLogGroup, LOG_GROUP_SKIPS);
    // Its own statements as infra/contract.json declares them (xtask/src/iam.rs: reads, the Deny of
    // every KMS write, its metrics, logs and on-failure queue), then what the settings add.
    const statements = [
      ...contractStatements(declaredPolicy('detector'), {
        'AWS::Partition': stack.partition,
        'AWS::AccountId': stack.account,
        MetricsNamespace: cfg.metricsNamespace,
        'DetectorLogGroup.Arn': logGroup.logGroupArn,
        'DeadLetterQueue.Arn': dlq.queueArn,
      }),
      ...baselineReads,
      ...listAccounts,
    ];
    // Member accounts: their read-only detector role, never the writer's member role.
    if (cfg.memberRoleName) {
      statements.push(enterMemberAccounts(stack, 'EnterMemberAccountsReadOnly', cfg.detectorMemberRoleName, cfg.organizationId));
    }
    // securityHub=on: findings in this account's default product (member accounts import through
    // their detector role: Security Hub takes a finding only from the account it names).
    if (cfg.securityHub === 'on') {
      statements.push(...contractStatements(declaredPolicy('import_findings'), { 'AWS::Partition': stack.partition, 'AWS::AccountId': stack.account }));
    }
    // configRule: the rule's answer (PutEvaluations has no resource-level permissions).
    if (cfg.configRule !== 'none') {
      statements.push(...contractStatements(declaredPolicy('answer_config_rule'), {}));
    }
    const role = new iam.Role(stack, 'DetectorRole', {
      description:
        'Execution role of the kms-replica-guard detector (reads multi-Region key policies, reports findings and Config answers; writes no key policy)',
      assumedBy: new iam.PrincipalWithConditions(new iam.ServicePrincipal('lambda.amazonaws.com'), {
        StringEquals: { 'aws:SourceAccount': stack.account },
      }),
      inlinePolicies: { 'kms-replica-guard-detector': new iam.PolicyDocument({ statements }) },
    });
    const fn = new RustFunction(stack, 'DetectorFunction', {
      manifestPath: props.manifestPath,
      binaryName: props.binaryName,
      runtime: FUNCTION_RUNTIME.runtime,
      architecture: FUNCTION_RUNTIME.architecture,
      description: 'kms-replica-guard detector - Security Hub findings and AWS Config answers for multi-Region replica key policies (read-only)',
      memorySize: cfg.memorySize,
      timeout: Duration.seconds(cfg.functionTimeout),
      role: role.withoutPolicyUpdates(),
      codeSigningConfig: cfg.codeSigningConfigArn
        ? lambda.CodeSigningConfig.fromCodeSigningConfigArn(stack, 'DetectorCodeSigningConfig', cfg.codeSigningConfigArn)
        : undefined,
      logGroup,
      loggingFormat: FUNCTION_RUNTIME.loggingFormat,
      applicationLogLevelV2: cfg.logLevel as lambda.ApplicationLogLevel,
      systemLogLevelV2: lambda.SystemLogLevel.INFO,
      // What is guarded, as the remediator's; no mode (always dry-run), backups, flap guard, write
      // rate, sweep queue or event bus: it writes nothing and publishes no drift event.
      environment: {
        ...guarded,
        // Organisation mode (empty = this account only): the writer member role names the role the
        // lockout check and own-call detection are about; the detector assumes the read-only one.
        MEMBER_ROLE_NAME: cfg.memberRoleName,
        MEMBER_READ_ROLE_NAME: cfg.memberRoleName ? cfg.detectorMemberRoleName : '',
        // Each replica reported on is a Security Hub finding in its own account and Region.
        SECURITY_HUB: cfg.securityHub,
      },
      retryAttempts: cfg.maxRetryAttempts,
      maxEventAge: Duration.seconds(cfg.maxEventAgeSeconds),
      onFailure: new destinations.SqsDestination(dlq),
    });
    guardFunction(stack, fn, role, {
      checkovSkips: DETECTOR_FUNCTION_SKIPS,
      policyId: 'DetectorOnlyThisFunctionPolicy',
      policyName: 'kms-replica-guard-detector-only-this-function',
      actions: DETECTOR_ONLY_THIS_FUNCTION_ACTIONS,
    });
    // The rules' names, for the guard change rule (a fixed name on the drift bus: Ref of a rule on a
    // custom bus is BUS|NAME, not the name CloudTrail records).
    const ruleNames: string[] = [];
    if (cfg.securityHub === 'on') {
      // Every event of the guard on its drift bus (any detail-type, put there by this account): the
      // detector re-reads the key itself and updates its finding.
      const notificationsName = `${stack.stackName}-detector-notifications`;
      const notifications = new events.Rule(stack, 'DetectorNotificationRule', {
        ruleName: notificationsName,
        description: 'The guard own events on its drift bus, to the kms-replica-guard detector (Security Hub findings)',
        eventPattern: { ...DETECTOR_EVENT_PATTERN, account: [Aws.ACCOUNT_ID] },
        targets: [new targets.LambdaFunction(fn)],
      });
      (notifications.node.defaultChild as events.CfnRule).eventBusName = driftBusName;
      // A dry-run sweep at the remediator's sweep interval refreshes every finding.
      const sweep = new events.Rule(stack, 'DetectorSweepRule', {
        description: 'Dry-run sweep of the kms-replica-guard detector (refreshes every Security Hub finding)',
        schedule: events.Schedule.rate(Duration.hours(cfg.sweepIntervalHours)),
        targets: [new targets.LambdaFunction(fn)],
      });
      ruleNames.push(notificationsName, sweep.ruleName);
    }
    // The AWS Config rule backed by the detector (it evaluates and never writes): as the SAM
    // template's ConfigRule parameter, with the same invoke permission (SourceAccount for a rule in
    // this account; none for an organization rule, whose members' Config invokes it).
    if (cfg.configRule !== 'none') {
      const permission = new lambda.CfnPermission(stack, cfg.configRule === 'account' ? 'ConfigRuleInvokePermission' : 'OrganizationConfigRuleInvokePermission', {
        action: 'lambda:InvokeFunction',
        functionName: fn.functionArn,
        principal: 'config.amazonaws.com',
        sourceAccount: cfg.configRule === 'account' ? stack.account : undefined,
      });
      const description = 'kms-replica-guard - multi-Region replica key policies equal their baseline (detect only)';
      const rule =
        cfg.configRule === 'account'
          ? new config.CfnConfigRule(stack, 'ReplicaKeyPolicyConfigRule', {
              configRuleName: `${stack.stackName}-replica-key-policy`,
              description,
              scope: { complianceResourceTypes: ['AWS::KMS::Key'] },
              source: {
                owner: 'CUSTOM_LAMBDA',
                sourceIdentifier: fn.functionArn,
                sourceDetails: [
                  { eventSource: 'aws.config', messageType: 'ConfigurationItemChangeNotification' },
                  { eventSource: 'aws.config', messageType: 'OversizedConfigurationItemChangeNotification' },
                  { eventSource: 'aws.config', messageType: 'ScheduledNotification', maximumExecutionFrequency: cfg.configRuleFrequency },
                ],
              },
            })
          : new config.CfnOrganizationConfigRule(stack, 'ReplicaKeyPolicyOrganizationConfigRule', {
              organizationConfigRuleName: `${stack.stackName}-replica-key-policy`,
              organizationCustomRuleMetadata: {
                description,
                lambdaFunctionArn: fn.functionArn,
                organizationConfigRuleTriggerTypes: [
                  'ConfigurationItemChangeNotification',
                  'OversizedConfigurationItemChangeNotification',
                  'ScheduledNotification',
                ],
                resourceTypesScope: ['AWS::KMS::Key'],
                maximumExecutionFrequency: cfg.configRuleFrequency,
              },
            });
      rule.addDependency(permission);
    }

    new CfnOutput(stack, 'DetectorFunctionName', {
      description: 'Name of the detector function (Security Hub findings, AWS Config answers; read-only)',
      value: fn.functionName,
    });
    new CfnOutput(stack, 'DetectorFunctionArn', {
      description: 'ARN of the detector function (the AWS Config rule function; infra/config/conformance-pack.yaml GuardFunctionArn)',
      value: fn.functionArn,
    });
    new CfnOutput(stack, 'DetectorRoleArn', {
      description: 'The detector execution role: give it to the member stack as hubDetectorRoleArn, whose read-only detector role trusts exactly this role.',
      value: role.roleArn,
    });
    new CfnOutput(stack, 'DetectorRoleName', {
      description: 'Name of the detector execution role (it reads key policies and writes none)',
      value: role.roleName,
    });

    this.fn = fn;
    this.role = role;
    this.ruleNames = ruleNames;
  }
}
