//! What every task's loop in a run shares: the ledger, the agent, the configuration, this
//! process's name in leases, where events go, the redactor, which sessions have a call
//! under way here, and the switch that stops the run when the agent cannot work.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use agent::{Agent, SessionId};
use redact::Redactor;
use session_store::{LeaseOwner, Store, StoreError};

use crate::budget::Budgets;
use crate::config::RunConfig;
use crate::db::Db;
use crate::event::RunEvents;
use crate::halt::Halt;
use crate::outage::Outage;
use crate::workspace::Workspaces;

/// The run's shared context, behind one `Arc` that the scheduler hands to each task's loop.
pub(crate) struct RunContext {
    pub(crate) db: Db,
    pub(crate) agent: Arc<dyn Agent>,
    pub(crate) config: RunConfig,
    /// This process, as named in the leases it takes.
    pub(crate) owner: LeaseOwner,
    pub(crate) events: RunEvents,
    /// The redactor the store was opened with: what the loop sends to the agent, records in
    /// the ledger (which takes free text only as `Redacted`) and reports in events passes
    /// through it.
    pub(crate) redactor: Redactor,
    /// The in-process half of "one live process per session" (the store's lease is the half
    /// across processes).
    pub(crate) live_sessions: LiveSessions,
    /// Where tasks get their worktrees; `None` runs every task in its directory as it is.
    pub(crate) workspaces: Option<Arc<dyn Workspaces>>,
    /// The run's budget and its calls' reservations.
    pub(crate) budgets: Budgets,
    /// Stops the whole run when the agent cannot work (see [`Halt`]).
    pub(crate) halt: Halt,
    /// Pauses the whole run while the API keeps failing (see [`Outage`]).
    pub(crate) outage: Outage,
}

impl RunContext {
    /// Runs a ledger operation that may be made twice (a read, or a write the ledger takes
    /// twice as once), waiting up to [`RunConfig::ledger_outage`] for a database that went
    /// away, as the task loop's own steps do.
    pub(crate) async fn ledger<R, F>(&self, operation: F) -> Result<R, StoreError>
    where
        F: Fn(&mut Store) -> Result<R, StoreError> + Send + Sync + 'static,
        R: Send + 'static,
    {
        self.db
            .run_retrying(self.config.ledger_outage, operation, |_| {})
            .await
    }
}

/// Sessions with an agent call under way in this process.
#[derive(Debug, Default)]
pub(crate) struct LiveSessions {
    sessions: Mutex<HashSet<SessionId>>,
}

/// Marks a session as having a call under way in this process, until dropped.
pub(crate) struct LiveCall<'sessions> {
    sessions: &'sessions LiveSessions,
    id: SessionId,
}

impl LiveSessions {
    /// Enters `id`, or returns `None` when a call in it is already under way here.
    pub(crate) fn enter(&self, id: SessionId) -> Option<LiveCall<'_>> {
        let inserted = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        // Built only when entered: a guard made and dropped here would remove the entry of
        // the call that holds it.
        inserted.then_some(LiveCall { sessions: self, id })
    }
}

impl Drop for LiveCall<'_> {
    fn drop(&mut self) {
        self.sessions
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_takes_one_call_at_a_time_in_a_process() {
        let live = LiveSessions::default();
        let (one, other) = (SessionId::new_v4(), SessionId::new_v4());
        let first = live.enter(one).expect("a free session can be entered");
        assert!(live.enter(one).is_none(), "a busy session cannot");
        let _second = live.enter(other).expect("another session is independent");
        drop(first);
        assert!(live.enter(one).is_some(), "the session is free again");
    }
}
