// The CDK app against infra/contract.json, which `cargo xtask docs` writes from the settings the
// function declares: no context value the app accepts may be one the function's own parser refuses
// (the stack would deploy and the function fail at every cold start), and the app's defaults are
// the function's. Stricter is allowed: the app may refuse what the function would take.
import { Match } from 'aws-cdk-lib/assertions';
import { CONTRACT, DEFAULT_CONFIG, configFromContext } from '../lib/config';
import { detector, onlyResource, remediator, synthHub } from './util';

describe('the CDK context against the contract', () => {
  const stackSettings = CONTRACT.settings.filter((s) => s.cdk_key !== null);

  test('the contract lists the settings the app exposes', () => {
    expect(stackSettings.length).toBeGreaterThan(15);
    for (const s of stackSettings) {
      expect(Object.keys(DEFAULT_CONFIG)).toContain(s.cdk_key);
    }
  });

  test.each(stackSettings.map((s) => [s.cdk_key as string, s.variable, s.accepts] as const))(
    'context %s accepts no value that %s refuses',
    (key, _variable, accepts) => {
      for (const probe of CONTRACT.probes) {
        let accepted = true;
        try {
          configFromContext((k) => (k === key ? probe : undefined));
        } catch {
          accepted = false;
        }
        if (accepted) {
          expect({ key, probe, acceptedByTheFunction: accepts.includes(probe) }).toEqual({
            key,
            probe,
            acceptedByTheFunction: true,
          });
        }
      }
    },
  );

  test('the defaults are the function names', () => {
    expect(DEFAULT_CONFIG.metricsNamespace).toBe('KmsReplicaGuard');
    expect(DEFAULT_CONFIG.excludeTag).toBe(CONTRACT.tag_keys.exclude);
    expect(DEFAULT_CONFIG.baselineTag).toBe(CONTRACT.tag_keys.baseline);
  });
});

// The rules against the contract's `rules` (xtask/src/rules.rs): the app builds them from there, and
// these tests make sure what it synthesizes is what the contract says, both ways.
describe('the hub rules against the contract', () => {
  const template = synthHub();
  const rules = Object.entries(template.findResources('AWS::Events::Rule'));
  const [topicId] = onlyResource(template, 'AWS::SNS::Topic');
  const [busId] = onlyResource(template, 'AWS::Events::EventBus');

  test('the KMS rule matches exactly the calls the function acts on', () => {
    const kms = rules.filter(([, r]) => (r.Properties.EventPattern?.source ?? []).includes('aws.kms'));
    expect(kms).toHaveLength(1);
    expect(kms[0][1].Properties.EventPattern.detail.eventName).toEqual(CONTRACT.rules.kms_event_names);
  });

  test('the notification rules on the guard events are the contract ones, both ways', () => {
    const onGuardEvents = rules.filter(
      ([, r]) =>
        (r.Properties.EventPattern?.source ?? []).includes(CONTRACT.rules.guard_event_source) &&
        JSON.stringify(r.Properties.Targets?.[0]?.Arn) === JSON.stringify({ Ref: topicId }),
    );
    // CDK's logical ids are the construct ids with a hash.
    expect(onGuardEvents.map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort()).toEqual(CONTRACT.rules.notifications.map((n) => n.logical_id).sort());
    for (const n of CONTRACT.rules.notifications) {
      const [, rule] = onlyResource(template, 'AWS::Events::Rule', { Properties: { Name: `kms-replica-guard-${n.name}` } });
      expect(rule.Properties.Description).toBe(n.description);
      expect(rule.Properties.EventPattern).toStrictEqual({ ...n.event_pattern, account: [{ Ref: 'AWS::AccountId' }] });
      expect(rule.Properties.EventBusName).toEqual({ Ref: busId });
      expect(rule.Properties.Targets).toHaveLength(1);
      expect(rule.Properties.Targets[0].InputTransformer).toStrictEqual({
        InputPathsMap: n.message.input_paths_map,
        InputTemplate: n.message.input_template,
      });
    }
  });

  test('the guard change rule sends the contract message and names the calls that change a guard role', () => {
    const [, rule] = onlyResource(template, 'AWS::Events::Rule', { Properties: { Name: 'kms-replica-guard-guard-changes' } });
    const m = CONTRACT.rules.guard_change_message;
    expect(rule.Properties.Targets[0].InputTransformer).toStrictEqual({ InputPathsMap: m.input_paths_map, InputTemplate: m.input_template });
    const iam = rule.Properties.EventPattern.detail.$or.filter((b: any) => JSON.stringify(b.eventSource) === '["iam.amazonaws.com"]');
    expect(iam).toHaveLength(1);
    expect(iam[0].eventName).toEqual(CONTRACT.rules.guard_role_event_names);
  });
});

describe('the CDK defaults against the contract', () => {
  // Each setting whose default the function declares (src/config/vars.rs): the app's default
  // context value, and the remediator's environment at the defaults, are that default; but for
  // what the stack decides itself (BASELINE_TAG only with a catalogue, EVENT_BUS the stack's own
  // bus, RATE_INSTANCES the sweep's workers: their own tests).
  const withDefault = CONTRACT.settings.filter((s) => s.default !== null);

  test('every context key defaults to the function default', () => {
    const keyed = withDefault.filter((s) => s.cdk_key !== null);
    expect(keyed.length).toBeGreaterThanOrEqual(12);
    for (const s of keyed) {
      expect({ key: s.cdk_key, value: String(DEFAULT_CONFIG[s.cdk_key as keyof typeof DEFAULT_CONFIG]) }).toEqual({ key: s.cdk_key, value: s.default });
    }
  });

  test('the remediator environment at the defaults carries the function defaults', () => {
    const env = remediator(synthHub())[1].Properties.Environment.Variables;
    const stackDecides: Record<string, unknown> = { BASELINE_TAG: '', RATE_INSTANCES: '2' };
    const checked = withDefault.filter((s) => s.variable in env && s.variable !== 'EVENT_BUS');
    expect(checked.length).toBeGreaterThanOrEqual(12);
    for (const s of checked) {
      expect({ variable: s.variable, value: env[s.variable] }).toEqual({ variable: s.variable, value: stackDecides[s.variable] ?? s.default });
    }
  });
});

describe('the CDK functions against the contract', () => {
  test('each function runs as the contract says', () => {
    const template = synthHub({ securityHub: 'on' });
    for (const [, fn] of [remediator(template), detector(template)]) {
      const p = fn.Properties;
      expect({ runtime: p.Runtime, architectures: p.Architectures, handler: p.Handler, logFormat: p.LoggingConfig.LogFormat }).toEqual({
        runtime: CONTRACT.function.runtime,
        architectures: [CONTRACT.function.architecture],
        handler: CONTRACT.function.handler,
        logFormat: CONTRACT.function.log_format,
      });
      expect([p.MemorySize, p.Timeout]).toEqual([CONTRACT.function.memory_mb, CONTRACT.function.timeout_seconds]);
    }
    expect(DEFAULT_CONFIG.logRetentionDays).toBe(CONTRACT.function.log_retention_days);
    expect([DEFAULT_CONFIG.logLevel, DEFAULT_CONFIG.maxRetryAttempts, DEFAULT_CONFIG.maxEventAgeSeconds]).toEqual([
      CONTRACT.function.log_level,
      CONTRACT.function.max_retry_attempts,
      CONTRACT.function.max_event_age_seconds,
    ]);
  });

  test('each function logs to the contract group, kept for the contract retention', () => {
    const template = synthHub({ securityHub: 'on' });
    const groups = Object.values(template.findResources('AWS::Logs::LogGroup')).map((g: any) => g.Properties);
    expect(groups).toEqual([
      { LogGroupName: CONTRACT.function.remediator_log_group.replace('${AWS::StackName}', 'kms-replica-guard'), RetentionInDays: CONTRACT.function.log_retention_days },
      { LogGroupName: CONTRACT.function.detector_log_group.replace('${AWS::StackName}', 'kms-replica-guard'), RetentionInDays: CONTRACT.function.log_retention_days },
    ]);
  });

  test('each function gives up on events into the stack on-failure queue', () => {
    const template = synthHub({ securityHub: 'on' });
    const configs = Object.values(template.findResources('AWS::Lambda::EventInvokeConfig'));
    expect(configs).toHaveLength(2);
    const [dlqId] = Object.keys(template.findResources('AWS::SQS::Queue')).filter((id) => id.startsWith('DeadLetterQueue'));
    for (const c of configs) {
      expect(c.Properties.MaximumRetryAttempts).toBe(CONTRACT.function.max_retry_attempts);
      expect(c.Properties.MaximumEventAgeInSeconds).toBe(CONTRACT.function.max_event_age_seconds);
      expect(c.Properties.DestinationConfig).toEqual({ OnFailure: { Destination: { 'Fn::GetAtt': [dlqId, 'Arn'] } } });
    }
  });

  test('each function is deployed with the contract variables, the guardrails only when given', () => {
    const env = CONTRACT.function.environment;
    const names = (t: any, isDetector: boolean) => Object.keys((isDetector ? detector(t) : remediator(t))[1].Properties.Environment.Variables).sort();
    const without = (list: string[]) => list.filter((v) => !env.when_given.includes(v)).sort();
    const bare = synthHub({ securityHub: 'on' });
    expect(names(bare, false)).toEqual(without(env.remediator));
    expect(names(bare, true)).toEqual(without(env.detector));
    const given = synthHub({
      securityHub: 'on',
      trustedAccounts: '444455556666',
      trustedOrgs: 'o-a1b2c3d4e5',
      exemptionMaxDays: '30',
      baselineSha256: 'a'.repeat(64),
    });
    const withGiven = (list: string[]) => list.filter((v) => v !== 'BASELINE_SCOPE').sort();
    expect(names(given, false)).toEqual(withGiven(env.remediator));
    expect(names(given, true)).toEqual(withGiven(env.detector));
  });
});

describe('the function roles against the contract', () => {
  test('its inline policy is the contract statements, in order, before any a setting adds', () => {
    const [, role] = onlyResource(synthHub(), 'AWS::IAM::Role', { Properties: { Description: Match.stringLikeRegexp('^Execution role of kms-replica-guard \\(') } });
    const statements = role.Properties.Policies[0].PolicyDocument.Statement;
    // CDK writes a statement's actions sorted.
    const listed = (v: string | string[]) => (Array.isArray(v) ? [...v] : [v]).sort();
    expect(statements.map((s: any) => [s.Sid, s.Effect, listed(s.Action)])).toEqual(
      CONTRACT.iam.remediator.map((s) => [s.sid, s.effect, [...s.actions].sort()]),
    );
  });

  test('the detector inline policy starts with the contract statements, the KMS writes denied', () => {
    const [, role] = onlyResource(synthHub({ securityHub: 'on' }), 'AWS::IAM::Role', {
      Properties: { Description: Match.stringLikeRegexp('^Execution role of the kms-replica-guard detector') },
    });
    const statements = role.Properties.Policies[0].PolicyDocument.Statement;
    const listed = (v: string | string[]) => (Array.isArray(v) ? [...v] : [v]).sort();
    const own = CONTRACT.iam.detector.map((s) => [s.sid, s.effect, [...s.actions].sort()]);
    expect(statements.slice(0, own.length).map((s: any) => [s.Sid, s.Effect, listed(s.Action)])).toEqual(own);
    expect(statements.map((s: any) => s.Sid).slice(own.length)).toEqual(['ImportFindings']);
  });
});

describe('the backups bucket against the contract', () => {
  test('its policy is the contract statements: anyone denied, the guard role excepted where it writes', () => {
    const template = synthHub();
    const [, policy] = onlyResource(template, 'AWS::S3::BucketPolicy');
    const [roleId] = onlyResource(template, 'AWS::IAM::Role', { Properties: { Description: Match.stringLikeRegexp('^Execution role of kms-replica-guard \\(') } });
    const listed = (v: string | string[]) => (Array.isArray(v) ? [...v] : [v]).sort();
    const statements = policy.Properties.PolicyDocument.Statement;
    expect(statements.map((s: any) => [s.Sid, s.Effect, s.Principal, listed(s.Action)])).toEqual(
      CONTRACT.iam.backups_bucket.map((s) => [s.sid, s.effect, s.principal, [...s.actions].sort()]),
    );
    const guardOnly = statements.find((s: any) => s.Sid === 'OnlyTheGuardWritesUnderItsPrefix');
    expect(guardOnly.Condition).toEqual({ ArnNotEquals: { 'aws:PrincipalArn': { 'Fn::GetAtt': [roleId, 'Arn'] } } });
  });
});

describe('the alarm topic against the contract', () => {
  test('the topic and its key admit the contract publishers, the topic nobody else', () => {
    const template = synthHub();
    const listed = (v: string | string[]) => (Array.isArray(v) ? [...v] : [v]).sort();
    const shape = (s: any) => [s.Sid, s.Effect, s.Principal, listed(s.Action)];
    const [, topicPolicy] = onlyResource(template, 'AWS::SNS::TopicPolicy');
    expect(topicPolicy.Properties.PolicyDocument.Statement.map(shape)).toEqual(
      CONTRACT.iam.alarm_topic.map((s) => [s.sid, s.effect, s.principal, [...s.actions].sort()]),
    );
    const rules = (CONTRACT.iam.alarm_topic[1] as any).condition.ArnEquals['aws:SourceArn'].map((r: string) => r.replace(/^\$\{(.*)\.Arn\}$/, '$1'));
    const sourceArns = topicPolicy.Properties.PolicyDocument.Statement[1].Condition.ArnEquals['aws:SourceArn'];
    expect(sourceArns.map((a: any) => a['Fn::GetAtt'][0].replace(/[0-9A-F]{8}$/, ''))).toEqual(rules);
    const [, key] = onlyResource(template, 'AWS::KMS::Key');
    const services = key.Properties.KeyPolicy.Statement.filter((s: any) => s.Principal.Service);
    expect(services.map(shape)).toEqual(CONTRACT.iam.alarm_topic_key.map((s) => [s.sid, s.effect, s.principal, [...s.actions].sort()]));
  });
});

// The hub's resources against the contract's `resources` (xtask/src/resources.rs): how many of each
// type at the defaults and what the detector and enforce mode add (IAM policies aside: the grants
// are checked statement by statement), and the backups bucket's properties and retention.
describe('the hub resources against the contract', () => {
  const R = CONTRACT.resources;
  const counts = (template: ReturnType<typeof synthHub>): Record<string, number> => {
    const found: Record<string, number> = {};
    for (const r of Object.values(template.toJSON().Resources) as any[]) {
      if (r.Type !== 'AWS::IAM::Policy') found[r.Type] = (found[r.Type] ?? 0) + 1;
    }
    return found;
  };
  const plus = (...inventories: Record<string, number>[]): Record<string, number> => {
    const total: Record<string, number> = {};
    for (const inv of inventories) for (const [t, n] of Object.entries(inv)) total[t] = (total[t] ?? 0) + n;
    return total;
  };

  test.each([
    ['at the defaults', {}, [R.hub_at_defaults]],
    ['with the detector', { securityHub: 'on', configRule: 'account' }, [R.hub_at_defaults, R.detector_adds]],
    ['in enforce mode', { remediationMode: 'enforce' }, [R.hub_at_defaults, R.enforce_adds]],
  ] as const)('%s', (_name, overrides, declared) => {
    expect(counts(synthHub(overrides as any))).toEqual(plus(...(declared as unknown as Record<string, number>[])));
  });

  test('the backups bucket is the contract one, retained with its policy, at the configured retention', () => {
    const withRetention = (v: unknown, days: number): unknown =>
      v === '${BackupRetentionDays}'
        ? days
        : Array.isArray(v)
          ? v.map((x) => withRetention(x, days))
          : v && typeof v === 'object'
            ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withRetention(x, days)]))
            : v;
    expect(R.backups_bucket.retained).toBe(true);
    for (const days of [DEFAULT_CONFIG.backupRetentionDays, 30]) {
      const template = synthHub({ backupRetentionDays: days });
      const [, bucket] = onlyResource(template, 'AWS::S3::Bucket');
      expect(bucket.Properties).toEqual(withRetention(R.backups_bucket.properties, days));
      const [, policy] = onlyResource(template, 'AWS::S3::BucketPolicy');
      for (const r of [bucket, policy]) expect([r.DeletionPolicy, r.UpdateReplacePolicy]).toEqual(['Retain', 'Retain']);
    }
  });
});
