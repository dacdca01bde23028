import { CfnResource } from 'aws-cdk-lib';

/** One checkov check that does not apply, with the reason (kept in the resource's Metadata). */
export interface CheckovSkip {
  readonly id: string;
  readonly comment: string;
}

/** Records justified checkov skips on a resource, the way checkov reads them. */
export function skipCheckov(resource: CfnResource, skips: CheckovSkip[]): void {
  resource.addMetadata('checkov', { skip: skips });
}

export const FUNCTION_SKIPS: CheckovSkip[] = [
  {
    id: 'CKV_AWS_116',
    comment:
      'Failed asynchronous invocations go to the on-failure destination (EventInvokeConfig -> DeadLetterQueue), the successor of the function-level DLQ, which would only duplicate it.',
  },
  {
    id: 'CKV_AWS_117',
    comment: 'The function only calls public AWS APIs (KMS, CloudWatch, SSM/S3); a VPC would add NAT or endpoints and no isolation benefit.',
  },
  {
    id: 'CKV_AWS_115',
    comment:
      'No reservation by default: Lambda refuses one that leaves the account fewer than 100 unreserved executions, which fails a first deploy on accounts with a low quota. ReservedConcurrency (at least SweepWorkerConcurrency + 2) caps it when set; the sweep is capped by its event source MaximumConcurrency either way.',
  },
  {
    id: 'CKV_AWS_173',
    comment:
      'The environment holds configuration only (mode, baseline location and digests, tag keys and matching, trusted accounts and organizations, exemption limit, namespace, role ARN, Regions, backup bucket name, flap guard and rate limits, member role name, accounts and external id, sweep queue URL, event bus name); no secrets, Lambda encrypts it at rest with its service key.',
  },
];

export const DETECTOR_FUNCTION_SKIPS: CheckovSkip[] = [
  {
    id: 'CKV_AWS_116',
    comment:
      "Failed asynchronous invocations go to the on-failure destination (EventInvokeConfig -> DeadLetterQueue, the stack's one on-failure queue), the successor of the function-level DLQ, which would only duplicate it.",
  },
  {
    id: 'CKV_AWS_117',
    comment: 'The detector only calls public AWS APIs (KMS, CloudWatch, Security Hub, Config, SSM/S3); a VPC would add NAT or endpoints and no isolation benefit.',
  },
  {
    id: 'CKV_AWS_115',
    comment:
      'No reservation: the detector only reads and reports, and a reservation that leaves the account fewer than 100 unreserved executions fails the deployment; its reads are paced by the same client-side rate limits as the remediator.',
  },
  {
    id: 'CKV_AWS_173',
    comment:
      "The environment holds configuration only (baseline location and digests, tag keys and matching, trusted accounts and organizations, exemption limit, namespace, the remediator's role ARN, Regions, rate limits, the detector member role name, accounts and external id, the Security Hub switch); no secrets, Lambda encrypts it at rest with its service key.",
  },
];

export const LOG_GROUP_SKIPS: CheckovSkip[] = [
  {
    id: 'CKV_AWS_158',
    comment:
      'Encrypted at rest by CloudWatch Logs by default; the logs hold key ARNs and key policies (no secrets), a customer managed key would add cost and a key policy for the logs service.',
  },
];

export const BACKUP_BUCKET_SKIPS: CheckovSkip[] = [
  {
    id: 'CKV_AWS_18',
    comment:
      'Server access logging needs a second (log) bucket; the writer is the function alone, whose every PutObject is in its own JSON logs and in CloudTrail (data events, if enabled).',
  },
];
