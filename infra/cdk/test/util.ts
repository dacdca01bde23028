import * as fs from 'node:fs';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';

/**
 * An App with cdk.json's context (the feature flags `cdk synth` uses), so that tests see the
 * templates the CLI produces, and with bundling skipped: tests never cross-compile Rust.
 */
export function testApp(): App {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8'));
  return new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
}
