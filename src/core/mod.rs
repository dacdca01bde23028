//! Pure logic: no I/O, no AWS SDK. Everything here is decided on values and unit-tested.

pub mod baseline;
pub mod decide;
pub mod key;
pub mod outcome;
pub mod policy;
pub mod trigger;
