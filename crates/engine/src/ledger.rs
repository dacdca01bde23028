//! The in-memory ledger: with no backup bucket, the previous policy is only logged, and the
//! write history (flap guard) and write claims live in this process, one execution
//! environment.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::CallError;
use crate::key::KeyArn;
use crate::ports::{Backup, BackupStore, Claimed, WriteClaim, WriteHistory, WriteRecord};

/// No backup bucket: the previous policy is only in the log line before the write, and the
/// write history and write claims are kept in this process (one execution environment).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    writes: Mutex<HashMap<KeyArn, Vec<WriteRecord>>>,
    claims: Mutex<HashMap<(KeyArn, String), WriteClaim>>,
}

#[cfg(any(test, feature = "test-util"))]
impl MemoryLedger {
    /// Whether no claim is held.
    pub fn holds_no_claims(&self) -> bool {
        self.claims.lock().expect("no panics while held").is_empty()
    }
}

impl BackupStore for MemoryLedger {
    async fn save(&self, _backup: &Backup) -> Result<String, CallError> {
        Ok("logged only (no BACKUP_BUCKET)".to_owned())
    }
    async fn record_write(&self, write: &WriteRecord) -> Result<(), CallError> {
        self.writes
            .lock()
            .expect("no panics while held")
            .entry(write.key.clone())
            .or_default()
            .push(write.clone());
        Ok(())
    }
    async fn writes_since(
        &self,
        key: &KeyArn,
        since: SystemTime,
    ) -> Result<WriteHistory, CallError> {
        let writes = self.writes.lock().expect("no panics while held");
        Ok(WriteHistory::of(
            writes.get(key).into_iter().flatten(),
            since,
        ))
    }
    async fn claim(&self, claim: &WriteClaim) -> Result<Claimed, CallError> {
        let mut claims = self.claims.lock().expect("no panics while held");
        Ok(
            match claims.entry((claim.key.clone(), claim.drift.clone())) {
                Entry::Occupied(held) => Claimed::Held(Box::new(held.get().clone())),
                Entry::Vacant(free) => {
                    free.insert(claim.clone());
                    Claimed::Won
                }
            },
        )
    }
    async fn release(&self, claim: &WriteClaim) -> Result<(), CallError> {
        self.claims
            .lock()
            .expect("no panics while held")
            .remove(&(claim.key.clone(), claim.drift.clone()));
        Ok(())
    }
}
