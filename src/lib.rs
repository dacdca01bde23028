//! kms-replica-guard keeps the key policies of KMS multi-Region replica keys converged on a
//! declared baseline.
//!
//! Data flow of one invocation:
//!
//! ```text
//! payload ─► core::trigger::parse ─► Trigger (keys to look at | sweep | no-op)
//!         ─► reconcile::Reconciler::run
//!              describe (ports::KeyDirectory) ─► core::decide::reach / skip_for_state
//!              desired  = core::baseline (render template | mirror primary)
//!                         + core::policy::validate (grammar, size, charset, lockout)
//!              live     = ports::PolicyStore::get_policy
//!              verdict  = core::decide::compare (core::policy equivalence + diff)
//!              enforce  ─► put_policy ─► re-read ─► verify
//!         ─► core::outcome::Report ─► response JSON, one log line per key, metrics
//!            (ports::MetricsSink)
//! ```
//!
//! Modules:
//! - [`core`]: pure logic, no I/O: identifiers, triggers, policy equivalence and
//!   validation, baseline rendering, reconcile decisions, outcomes.
//! - [`reconcile`]: the engine and the ports (traits) it needs from AWS.
//! - [`aws`]: the adapters that implement the ports with the AWS SDK.
//! - [`lambda`]: the Lambda handler; [`config`]: typed configuration; [`retry`]: the one
//!   backoff helper; [`telemetry`]: logging set-up.
//! - [`cli`]: the operator CLI (`check`, `diff`, `sweep`, `validate-baseline`, `restore`).
//! - `src/bin/bootstrap.rs` (the Lambda) and `src/bin/kms-replica-guard.rs` (the CLI): a few
//!   lines each: set up, then run.

pub mod aws;
pub mod cli;
pub mod config;
pub mod core;
pub mod lambda;
pub mod reconcile;
pub mod retry;
pub mod telemetry;
