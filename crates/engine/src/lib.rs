//! The domain of kms-replica-guard: everything that decides, nothing that calls AWS.
//!
//! Where this crate sits (each crate depends only on the ones below it):
//!
//! ```text
//! kms-replica-guard (src/)   config ─► wiring ─► lambda handler | cli
//!        │                              │
//!        ▼                              ▼
//! krg-aws (crates/aws)       adapters: KMS, CloudWatch, S3 backups/claims, SSM/S3 text
//!        │   implements the ports of
//!        ▼
//! krg-engine (this crate)    identifiers, triggers, baselines, decisions, outcomes,
//!        │                   ports, reconcile stages, the in-memory ledger, fakes
//!        ▼
//! krg-policy (crates/policy) the key policy language: canonical form, equivalence, diff,
//!                            validation, the lockout check
//! ```
//!
//! Data flow of one invocation:
//!
//! ```text
//! payload ─► trigger::parse ─► Trigger (keys to look at | sweep | no-op)
//!         ─► reconcile::Reconciler::run
//!              event    describe (ports::KeyDirectory) ─► decide::reach / skip_for_state
//!              sweep    ListKeys per Region ─► one DescribeKey per key id ─► replicas
//!              replica  desired = baseline (render template | mirror primary)
//!                                 + krg_policy::validate (grammar, size, charset, lockout)
//!                       live    = ports::PolicyStore::get_policy
//!                       verdict = krg_policy::compare (equivalence + diff)
//!              claimed write (ports::BackupStore::claim) ─► verify (backup, put, re-read)
//!              restore  a backed-up policy put back, validated and verified like any write
//!         ─► outcome::Report ─► response JSON, one log line per key, metrics
//!            (ports::MetricsSink)
//! ```
//!
//! Modules:
//! - [`key`]: validated identifiers (key ARN, Region, account, role ARN).
//! - [`trigger`]: CloudTrail/EventBridge payloads and sweep requests into a [`trigger::Trigger`].
//! - [`baseline`]: the desired policy: a template rendered per key, or the primary mirrored.
//! - [`catalogue`]: named baselines, picked per key by a tag.
//! - [`decide`]: pure decisions on live key facts (reach, skip, drift name).
//! - [`outcome`]: the one result type, with typed reasons rendered only at the edge.
//! - [`findings`]: outcomes as Security Hub findings (ASFF) and AWS Config evaluations.
//! - [`ports`]: one small trait per capability the engine needs from AWS.
//! - [`ledger`]: the in-process write history and write claims (no backup bucket).
//! - [`reconcile`]: the engine, one file per stage.
//! - [`retry`]: the one backoff helper; [`settings`]: how the engine behaves.
//! - [`tenancy`]: the accounts worked in (home, members through the member role, allow-list).
//! - [`work_item`]: a sweep queue message, read strictly as one planned (account, Region).
//! - `fake` (feature `test-util`): in-memory ports that count calls.

pub mod baseline;
pub mod catalogue;
pub mod config_rule;
pub mod decide;
pub mod error;
pub mod exemption;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod findings;
pub mod key;
pub mod ledger;
pub mod outcome;
pub mod ports;
pub mod reconcile;
pub mod retry;
pub mod settings;
pub mod tenancy;
pub mod trigger;
pub mod work_item;

pub use reconcile::{Progress, Quiet, Reconciler};
pub use settings::{BaselineMatch, FlapGuard, Mode, Settings, Trusted};
