// The hub stack's parts, one file per job; HubStack (../hub-stack.ts) composes them:
//   sweep-queue.ts    the sweep's work queue and its DLQ, the schedule, the queue's event source
//   notifications.ts  the drift bus; the exposure, refused write, exemption and guard change rules
//   remediator.ts     the function, its role, log group, on-failure queue, backups bucket, KMS rule
//   detector.ts       the detector function, its role, log group and rules; the AWS Config rule
//   alarms.ts         the alarm topic and its key; every alarm and the dashboard
//   function-guard.ts what both functions get once built: checkov skips, the cfn-lint note, and
//                     the policy that keeps each role's powers to its function
//
// Logical ids. These parts are not Constructs: each is a class whose constructor takes the hub
// stack and creates its resources directly in the stack's scope, with the ids HubStack gave them
// when it created them itself. A resource under a child Construct would get that construct's id
// in its path: a new logical id (prefix and hash) and a new aws:cdk:path. CloudFormation would
// replace every deployed resource, and the checks find the resources by id (CDK's hash aside).
// Overriding logical ids instead would still change the paths, and would have to reproduce the
// ids CDK derives from them (the invoke permissions, invoke configs, event source mapping).
// So the synthesized templates are what they were before the split.
export * from './alarms';
export * from './detector';
export * from './notifications';
export * from './remediator';
export * from './sweep-queue';
