// The CDK app against infra/contract.json, which `cargo xtask docs` writes from the settings the
// function declares: no context value the app accepts may be one the function's own parser refuses
// (the stack would deploy and the function fail at every cold start), and the app's defaults are
// the function's. Stricter is allowed: the app may refuse what the function would take.
import { CONTRACT, DEFAULT_CONFIG, configFromContext } from '../lib/config';

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
