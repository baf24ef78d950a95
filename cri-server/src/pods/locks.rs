//! Per-object locks: one `RwLock` per pod or container id, created on
//! demand and dropped with the object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// A map of id → lock. The map's own mutex is held only to look a lock up.
#[derive(Debug, Default)]
pub struct Locks {
    map: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

impl Locks {
    fn get(&self, id: &str) -> Arc<RwLock<()>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// Exclusive access to `id`.
    pub async fn write(&self, id: &str) -> OwnedRwLockWriteGuard<()> {
        self.get(id).write_owned().await
    }

    /// Shared access to `id`.
    pub async fn read(&self, id: &str) -> OwnedRwLockReadGuard<()> {
        self.get(id).read_owned().await
    }

    /// Forgets the lock of a removed object (holders keep theirs).
    pub fn forget(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn exclusive_per_id_only() {
        let locks = Locks::default();
        let a = locks.write("a").await;
        // Another id is free.
        let _b = locks.write("b").await;
        // The same id waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), locks.write("a"))
                .await
                .is_err()
        );
        drop(a);
        let _r1 = locks.read("a").await;
        let _r2 = locks.read("a").await;
    }
}
