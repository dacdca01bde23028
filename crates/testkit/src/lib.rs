//! Test support for kms-replica-guard, shared by the integration tests and the developer
//! tasks: [`proxy`], an HTTP proxy on 127.0.0.1 in front of the emulator that injects
//! faults per KMS operation and counts what it forwards, and [`strict`], the layer of it
//! that answers as strictly as real KMS where the emulator is kind; and [`sim`], a KMS
//! simulator (latency, quotas per account and Region, throttling, eventual consistency, any
//! number of accounts) on the same HTTP server, for measuring the guard at organisation scale.

pub mod proxy;
pub mod sim;
pub mod strict;

pub use proxy::{Fault, FaultProxy};
pub use strict::StrictKms;
