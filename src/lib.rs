//! kms-replica-guard keeps the key policies of KMS multi-Region replica keys converged on a
//! declared baseline. This crate is the application: it reads the configuration, wires the
//! engine to AWS, and runs it as a Lambda handler or as the operator CLI.
//!
//! The workspace, each crate depending only on the ones below it (the compiler enforces
//! the direction; docs/src/architecture.md):
//!
//! ```text
//! kms-replica-guard (src/)   config ─► wiring ─► lambda handler | cli     (this crate)
//!        │                              │
//!        ▼                              ▼
//! krg-aws (crates/aws)       adapters: KMS, CloudWatch, S3 backups/claims, SSM/S3 text
//!        │   implements the ports of
//!        ▼
//! krg-engine (crates/engine) identifiers, triggers, baselines, decisions, outcomes,
//!        │                   ports, reconcile stages, the in-memory ledger, fakes
//!        ▼
//! krg-policy (crates/policy) the key policy language: canonical form, equivalence, diff,
//!                            validation, the lockout check
//! ```
//!
//! Data flow of one invocation:
//!
//! ```text
//! Lambda payload ─► lambda::App::handle
//!   ─► krg_engine::trigger::parse ─► Trigger
//!   ─► krg_engine::Reconciler::run (ports implemented by krg_aws)
//!   ─► Report ─► response JSON, one log line per key, metrics (krg_aws::cloudwatch),
//!                notifications (krg_aws::events), findings (krg_aws::securityhub)
//! AWS Config rule invocation ─► krg_engine::config_rule::parse ─► the engine in dry-run
//!   ─► evaluations ─► PutEvaluations (krg_aws::configservice)
//! ```
//!
//! Modules:
//! - [`config`]: the typed configuration, read from the environment (Lambda) or built from
//!   the CLI's flags; checked once, at start-up.
//! - [`wiring`]: the one place that assembles adapters into an engine, for the Lambda, the
//!   CLI and the integration tests.
//! - [`lambda`]: the Lambda handler; [`cli`]: the operator CLI, one module per subcommand;
//!   [`telemetry`]: logging set-up.
//! - `src/bin/bootstrap.rs` (the Lambda) and `src/bin/kms-replica-guard.rs` (the CLI): a few
//!   lines each: set up, then run.

pub mod cli;
pub mod config;
pub mod lambda;
pub mod telemetry;
pub mod wiring;
