//! The ledger as the async loop uses it: each operation on a blocking thread, never a
//! transaction held across an `.await`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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

    /// Runs `operation` as [`Db::run`] does, and again while the database cannot be reached
    /// (a PostgreSQL server restarting, a connection dropped): after a pause that doubles from
    /// 100 ms up to 5 s, for up to `outage` in all. `waiting` hears of the first failure, once.
    ///
    /// An operation that committed but whose answer was lost runs again: it must be one that
    /// the ledger takes twice as once (an agent call carries its key for that).
    pub async fn run_retrying<R, F>(
        &self,
        outage: Duration,
        operation: F,
        waiting: impl FnOnce(&StoreError),
    ) -> Result<R, StoreError>
    where
        F: Fn(&mut Store) -> Result<R, StoreError> + Send + Sync + 'static,
        R: Send + 'static,
    {
        let operation = Arc::new(operation);
        let deadline = tokio::time::Instant::now() + outage;
        let mut pause = Duration::from_millis(100);
        let mut waiting = Some(waiting);
        loop {
            let attempt = Arc::clone(&operation);
            match self.run(move |store| attempt(store)).await {
                Err(err)
                    if err.is_connection_lost()
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    if let Some(tell) = waiting.take() {
                        tell(&err);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}
