//! A run's registration as a runner, and its heartbeat: while the run lasts it says every
//! third of the lease TTL that it lives, so that runs on other hosts, which cannot see its
//! process, can tell it from a dead one. A runner silent for longer than the TTL has its tasks
//! taken back by them, and is fenced off should it come back.

use std::time::Duration;

use agent::CancellationToken;
use session_store::{RunnerId, StoreError};
use tokio::task::JoinHandle;

use crate::context::RunContext;
use crate::db::Db;

/// The heartbeat of one run, until [`Heartbeat::stop`].
pub(crate) struct Heartbeat {
    db: Db,
    runner: RunnerId,
    stop: CancellationToken,
    beating: JoinHandle<()>,
}

impl Heartbeat {
    /// Registers this process as a runner and starts its heartbeat.
    pub(crate) async fn start(context: &RunContext) -> Result<Heartbeat, StoreError> {
        let owner = context.owner.clone();
        let runner = context
            .db
            .run(move |store| store.register_runner(&owner))
            .await?;
        let every = (context.config.lease_ttl / 3).max(Duration::from_millis(10));
        let stop = CancellationToken::new();
        let beating = tokio::spawn(beat(context.db.clone(), runner, every, stop.clone()));
        Ok(Heartbeat {
            db: context.db.clone(),
            runner,
            stop,
            beating,
        })
    }

    /// Stops the heartbeat and records that the runner ended cleanly.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.beating.await;
        let runner = self.runner;
        // A runner that cannot say it stopped falls silent, which other runs read the same way
        // once its TTL has passed.
        let _ = self.db.run(move |store| store.stop_runner(runner)).await;
    }
}

/// Beats every `every` until `stop`. A beat that fails (the database went away) is tried
/// again at the next: while the database is away nobody else can take this runner's work,
/// and once it is back a late beat is as good as any.
async fn beat(db: Db, runner: RunnerId, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let _ = db.run(move |store| store.heartbeat(runner)).await;
    }
}
