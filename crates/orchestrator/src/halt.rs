//! Stopping a whole run because the agent cannot work: an error no retry fixes (a bad key,
//! an empty account, a model the account may not use) or an outage longer than the run may
//! wait. Every task would fail the same way, through no fault of its own, so the run starts
//! no new call, its loops close their sessions as resumable, and their tasks stay pending.

use std::sync::{Mutex, PoisonError};

use agent::{CancellationToken, ErrorKind};
use session_store::TaskId;

/// Why a run stopped because the agent cannot work, and what a person does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUnavailable {
    /// The kind of the error that stopped the run (`authentication_error`, `api_error` for an
    /// outage, …).
    pub kind: ErrorKind,
    /// The cause, in the agent's (and so the API's) words.
    pub cause: String,
    /// What to do about it.
    pub what_to_do: String,
    /// The task whose call found it.
    pub task: TaskId,
}

/// A run's switch for stopping itself: the first cause wins, and the run's cancellation
/// token (armed when the run starts) winds every loop down.
#[derive(Debug, Default)]
pub(crate) struct Halt {
    cause: Mutex<Option<AgentUnavailable>>,
    token: Mutex<Option<CancellationToken>>,
}

impl Halt {
    /// Makes `token` the one a halt cancels: the run's own, a child of the caller's, so that
    /// a halt never looks like a person's Ctrl-C.
    pub(crate) fn arm(&self, token: CancellationToken) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
    }

    /// Stops the run for `unavailable`, unless it was stopped for something else first.
    /// Returns whether this was the first cause.
    pub(crate) fn stop(&self, unavailable: AgentUnavailable) -> bool {
        let first = {
            let mut cause = self.cause.lock().unwrap_or_else(PoisonError::into_inner);
            let first = cause.is_none();
            cause.get_or_insert(unavailable);
            first
        };
        if let Some(token) = &*self.token.lock().unwrap_or_else(PoisonError::into_inner) {
            token.cancel();
        }
        first
    }

    /// Why the run stopped, if it stopped this way.
    pub(crate) fn cause(&self) -> Option<AgentUnavailable> {
        self.cause
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(cause: &str) -> AgentUnavailable {
        AgentUnavailable {
            kind: ErrorKind::Authentication,
            cause: cause.into(),
            what_to_do: String::from("log in"),
            task: TaskId(1),
        }
    }

    #[test]
    fn the_first_cause_wins_and_cancels_the_run() {
        let halt = Halt::default();
        let parent = CancellationToken::new();
        let run = parent.child_token();
        halt.arm(run.clone());
        assert!(halt.stop(unavailable("first")));
        assert!(!halt.stop(unavailable("second")));
        assert_eq!(halt.cause().unwrap().cause, "first");
        assert!(run.is_cancelled());
        assert!(!parent.is_cancelled(), "the caller's token is left alone");
    }
}
