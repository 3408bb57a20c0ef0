//! The closed sets of words the ledger stores: task and session states, session policies,
//! and how an agent call ended.
//!
//! Each is an enum with a stable word (`as_str`) that is what the database holds, and `parse`
//! for the way back. The task state machine lives here too, so that it is one table.

use std::fmt;

use crate::db::{FromSql, FromSqlError, FromSqlResult, ToSql, Value, ValueRef};
use agent::ErrorKind;

/// Where a task is in its life.
///
/// ```text
/// pending ──> running ──> completed | failed | blocked | cancelled
///    │  ^        │                    │        │         │
///    │  └────────┴────────────────────┴────────┴─────────┘  (retry, or requeue after recovery)
///    └──> cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Waiting to run: new, retried, or requeued after its runner died.
    Pending,
    /// A runner is working on it.
    Running,
    /// Done, and its verification passed.
    Completed,
    /// Given up on, with a reason a person can act on.
    Failed,
    /// Waiting for a person's input.
    Blocked,
    /// Stopped by a person.
    Cancelled,
}

/// Where a session is in its life. Only `open` sessions take agent calls; every other state
/// is an end state, reached by closing the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// In use (or resumable) by the process holding its lease.
    Open,
    /// Its work ended well.
    Completed,
    /// Its work ended in an error.
    Failed,
    /// Stopped before its work ended: its owner went away without closing it (found by a
    /// sweep), or the run was cancelled. Its task continues it on the next run.
    Abandoned,
    /// Replaced by a new session because its context window filled up.
    Rotated,
}

/// Which sessions a task's agent calls go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionPolicy {
    /// One session per task; later iterations resume it.
    #[default]
    Task,
    /// A fresh session for every iteration.
    Fresh,
    /// One session across the tasks of a milestone, resumed task after task.
    Milestone,
}

/// How one agent call ended, as the ledger records it: `success`, or the word of the
/// [`ErrorKind`] it failed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Success,
    Failed(ErrorKind),
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Blocked,
        TaskStatus::Cancelled,
    ];

    /// The stable word stored in the ledger.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(word: &str) -> Option<TaskStatus> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == word)
    }

    /// Whether the state machine allows going from `self` to `to`.
    ///
    /// Back to `pending` is how a task is retried (from `failed`, `blocked`, `cancelled`) or
    /// requeued after its runner died (from `running`). `completed` is final.
    pub const fn can_become(self, to: TaskStatus) -> bool {
        use TaskStatus::{Blocked, Cancelled, Completed, Failed, Pending, Running};
        matches!(
            (self, to),
            (Pending, Running | Cancelled)
                | (Running, Completed | Failed | Blocked | Cancelled | Pending)
                | (Failed | Blocked | Cancelled, Pending)
        )
    }

    /// Every state this one may become, in declaration order.
    pub fn next_states(self) -> Vec<TaskStatus> {
        TaskStatus::ALL
            .into_iter()
            .filter(|to| self.can_become(*to))
            .collect()
    }

    /// Whether a runner is done with the task for now (it ran and stopped, or was cancelled).
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Blocked
                | TaskStatus::Cancelled
        )
    }
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 5] = [
        SessionStatus::Open,
        SessionStatus::Completed,
        SessionStatus::Failed,
        SessionStatus::Abandoned,
        SessionStatus::Rotated,
    ];

    /// The stable word stored in the ledger.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Open => "open",
            SessionStatus::Completed => "completed",
            SessionStatus::Failed => "failed",
            SessionStatus::Abandoned => "abandoned",
            SessionStatus::Rotated => "rotated",
        }
    }

    pub fn parse(word: &str) -> Option<SessionStatus> {
        SessionStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == word)
    }

    pub const fn is_open(self) -> bool {
        matches!(self, SessionStatus::Open)
    }
}

impl SessionPolicy {
    pub const ALL: [SessionPolicy; 3] = [
        SessionPolicy::Task,
        SessionPolicy::Fresh,
        SessionPolicy::Milestone,
    ];

    /// The stable word stored in the ledger (and used in configuration).
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionPolicy::Task => "task",
            SessionPolicy::Fresh => "fresh",
            SessionPolicy::Milestone => "milestone",
        }
    }

    pub fn parse(word: &str) -> Option<SessionPolicy> {
        SessionPolicy::ALL
            .into_iter()
            .find(|policy| policy.as_str() == word)
    }
}

impl CallOutcome {
    /// The stable word stored in the ledger: `success`, or [`ErrorKind::as_str`].
    pub const fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Failed(kind) => kind.as_str(),
        }
    }

    pub fn parse(word: &str) -> Option<CallOutcome> {
        if word == "success" {
            Some(CallOutcome::Success)
        } else {
            ErrorKind::parse(word).map(CallOutcome::Failed)
        }
    }

    pub const fn is_success(self) -> bool {
        matches!(self, CallOutcome::Success)
    }
}

impl From<ErrorKind> for CallOutcome {
    fn from(kind: ErrorKind) -> CallOutcome {
        CallOutcome::Failed(kind)
    }
}

/// Implements `Display`, `ToSql` and `FromSql` for a word enum through its `as_str` and
/// `parse`, so that the database holds exactly the documented words.
macro_rules! stored_as_word {
    ($name:ident, $what:literal) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> Value<'_> {
                Value::Text(self.as_str())
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let word = value.as_str()?;
                $name::parse(word).ok_or_else(|| {
                    FromSqlError::Other(format!(concat!("unknown ", $what, " `{}`"), word).into())
                })
            }
        }
    };
}

stored_as_word!(TaskStatus, "task status");
stored_as_word!(SessionStatus, "session status");
stored_as_word!(SessionPolicy, "session policy");
stored_as_word!(CallOutcome, "call outcome");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for status in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(status.as_str()), Some(status));
        }
        for status in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(status.as_str()), Some(status));
        }
        for policy in SessionPolicy::ALL {
            assert_eq!(SessionPolicy::parse(policy.as_str()), Some(policy));
        }
        for kind in ErrorKind::ALL {
            let outcome = CallOutcome::from(kind);
            assert_eq!(CallOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(CallOutcome::parse("success"), Some(CallOutcome::Success));
        assert_eq!(TaskStatus::parse("done"), None);
        assert_eq!(SessionPolicy::parse("Task"), None);
    }

    #[test]
    fn success_is_not_an_error_kind_word() {
        // The outcome column mixes both vocabularies, so they must never collide.
        assert!(ErrorKind::parse("success").is_none());
    }

    #[test]
    fn the_state_machine_is_the_documented_one() {
        let allowed: Vec<(TaskStatus, TaskStatus)> = TaskStatus::ALL
            .into_iter()
            .flat_map(|from| from.next_states().into_iter().map(move |to| (from, to)))
            .collect();
        let words: Vec<String> = allowed
            .iter()
            .map(|(from, to)| format!("{from}->{to}"))
            .collect();
        assert_eq!(
            words,
            [
                "pending->running",
                "pending->cancelled",
                "running->pending",
                "running->completed",
                "running->failed",
                "running->blocked",
                "running->cancelled",
                "failed->pending",
                "blocked->pending",
                "cancelled->pending",
            ]
        );
        assert!(TaskStatus::Completed.next_states().is_empty());
    }
}
