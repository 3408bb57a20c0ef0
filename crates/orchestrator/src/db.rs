//! The ledger as the async loop uses it: each operation on a blocking thread, never a
//! transaction held across an `.await`.

use std::sync::{Arc, Mutex, PoisonError};

use session_store::{Store, StoreError};

/// A shared handle to the store. Operations run one at a time on tokio's blocking pool.
#[derive(Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
}

impl Db {
    pub fn new(store: Store) -> Db {
        Db {
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// Runs `operation` on the store from a blocking thread.
    pub async fn run<R, F>(&self, operation: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let store = Arc::clone(&self.store);
        let joined = tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-written transaction (rusqlite
            // rolls back on drop), so a poisoned lock is safe to keep using.
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            operation(&mut store)
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(join) => match join.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(_) => panic!("invariant: blocking store operations are never aborted"),
            },
        }
    }
}
