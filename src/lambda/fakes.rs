//! The remediator over the in-memory fake, for the unit tests.

use std::marker::PhantomData;

use krg_engine::fake::FakeAws;
use krg_engine::ledger::MemoryLedger;

use super::detector::DetectorPorts;
use super::{PortSet, Ports};

/// Every port the fake (backups in memory).
pub struct Fakes<'a>(PhantomData<&'a FakeAws>);

impl<'a> Ports for Fakes<'a> {
    type Keys = &'a FakeAws;
    type Policies = &'a FakeAws;
    type Accounts = &'a FakeAws;
    type Backups = MemoryLedger;
    type Metrics = &'a FakeAws;
    type Queue = &'a FakeAws;
    type Notifier = &'a FakeAws;
}

/// The fake as every port; no work queue, no notifier.
pub fn fakes(fake: &FakeAws) -> PortSet<Fakes<'_>> {
    PortSet {
        keys: fake,
        policies: fake,
        accounts: fake,
        backups: MemoryLedger::default(),
        metrics: fake,
        queue: None,
        notifier: None,
    }
}

impl<'a> DetectorPorts for Fakes<'a> {
    type Keys = &'a FakeAws;
    type Policies = &'a FakeAws;
    type Accounts = &'a FakeAws;
    type Metrics = &'a FakeAws;
    type Findings = &'a FakeAws;
    type Evaluations = &'a FakeAws;
}
