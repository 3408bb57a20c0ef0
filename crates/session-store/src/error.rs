//! What can go wrong with the ledger, in terms a caller can act on.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use agent::SessionId;

use crate::db::DatabaseError;
use crate::ids::{MilestoneId, RunnerId, TaskId};
use crate::process::LeaseOwner;
use crate::status::{SessionStatus, TaskStatus};
use crate::units::Timestamp;

/// Why a ledger operation failed.
///
/// Domain errors (a missing id, a forbidden transition, a held lease) are their own variants
/// so that callers decide on them by matching; only a failure of SQLite itself is
/// [`StoreError::Database`], and a lock that outlasted the busy timeout is
/// [`StoreError::Busy`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory for a new database could not be created.
    #[error("could not create the directory `{}` for the ledger database", path.display())]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The database file could not be created.
    #[error("could not create the ledger database file `{}`", path.display())]
    CreateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// SQLite could not open or configure the database, or the PostgreSQL server could not
    /// be reached or refused the connection.
    #[error("could not open the ledger database `{}`", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: DatabaseError,
    },

    /// The database could not be switched to write-ahead logging, which the ledger's
    /// concurrency relies on (network file systems do not support it).
    #[error(
        "could not switch the ledger database `{}` to write-ahead logging (its journal mode stays `{journal_mode}`): keep it on a local file system",
        path.display()
    )]
    NoWriteAheadLog { path: PathBuf, journal_mode: String },

    /// The database was written by a newer build of Baton, with a schema this one does not know.
    #[error(
        "the ledger database `{}` has schema version {found}, but this build of baton knows versions up to {supported} only: upgrade baton, or use another database file",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The file is some other application's SQLite database.
    #[error(
        "`{}` is a SQLite database of another application (application id {application_id:#x}), not a baton ledger: use another database file",
        path.display()
    )]
    ForeignDatabase { path: PathBuf, application_id: i32 },

    /// The PostgreSQL database holds another application's tables where the ledger's go.
    #[error(
        "the PostgreSQL database `{}` already holds a `tasks` table that is not a baton ledger's: use another database, or another schema through the URL's `options=-csearch_path=…`",
        path.display()
    )]
    ForeignTables { path: PathBuf },

    /// A schema migration failed; the database stays at the version it had.
    #[error(
        "could not upgrade the ledger database `{}` to schema version {version} ({description}); it was left unchanged",
        path.display()
    )]
    Migrate {
        path: PathBuf,
        version: u32,
        description: &'static str,
        #[source]
        source: DatabaseError,
    },

    /// The calling process's pid, host name or start time could not be read.
    #[error("could not read this process's identity (pid, host name and start time)")]
    ProcessIdentity {
        #[source]
        source: io::Error,
    },

    /// A lookup named something that is not in the ledger.
    #[error("{0} does not exist in the ledger")]
    NotFound(Missing),

    /// The task state machine does not allow this change.
    #[error("task {task} is {from} and cannot become {to} ({})", allowed_after(*from))]
    InvalidTransition {
        task: TaskId,
        from: TaskStatus,
        to: TaskStatus,
    },

    /// A task was asked to start before the tasks it depends on completed.
    #[error(
        "task {task} cannot start yet: it waits for {} to complete",
        task_list(waiting_on)
    )]
    DependenciesUnmet {
        task: TaskId,
        waiting_on: Vec<TaskId>,
    },

    /// A claim found its task ready but being written by another runner (claiming it, most
    /// likely) and went on without waiting, as a queue's claim skips a locked row.
    #[error("task {task} is being claimed by another runner")]
    ClaimTaken { task: TaskId },

    /// A new dependency would make tasks wait for each other forever.
    #[error(
        "task {task} cannot depend on task {on}: that would close the cycle {}; drop one of those dependencies",
        cycle_text(cycle)
    )]
    DependencyCycle {
        task: TaskId,
        on: TaskId,
        /// The cycle, starting and ending at `task`: `task` → `on` → … → `task`.
        cycle: Vec<TaskId>,
    },

    /// Milestone names are unique.
    #[error(
        "a milestone named `{name}` already exists: choose another name, or use that milestone"
    )]
    MilestoneExists { name: String },

    /// A session with this id was opened before.
    #[error("session {id} already exists: mint a new session id for a new session")]
    SessionExists { id: SessionId },

    /// The operation needs an open session, and this one is closed.
    #[error("session {id} is {status}, not open: open a new session, or reopen this one")]
    SessionClosed {
        id: SessionId,
        status: SessionStatus,
    },

    /// A rotated session has a successor and is never used again.
    #[error(
        "session {id} was rotated and cannot be reopened: continue in the session that replaced it"
    )]
    SessionRotated { id: SessionId },

    /// The session was already closed, in a different end state.
    #[error("session {id} is already {current} and cannot be closed again as {requested}")]
    CloseConflict {
        id: SessionId,
        current: SessionStatus,
        requested: SessionStatus,
    },

    /// Another process holds the session's lease.
    #[error(
        "session {id} is leased to {holder} until {expires_at}: wait for that process to finish, or sweep stale sessions if it is gone"
    )]
    LeaseHeld {
        id: SessionId,
        holder: LeaseOwner,
        expires_at: Timestamp,
    },

    /// The caller tried to renew a lease that nobody holds.
    #[error("{owner} does not hold the lease on session {id}: acquire it first")]
    LeaseNotHeld { id: SessionId, owner: LeaseOwner },

    /// An agent call was recorded for a task in another task's session.
    #[error(
        "session {session} belongs to task {session_task}, not to task {task}: record each task's calls in its own session"
    )]
    WrongTask {
        session: SessionId,
        session_task: TaskId,
        task: TaskId,
    },

    /// A task was paired with a milestone it is not in.
    #[error("task {task} is in {}, not in {}", milestone_text(*task_milestone), milestone_text(*expected))]
    MilestoneMismatch {
        task: TaskId,
        task_milestone: Option<MilestoneId>,
        expected: Option<MilestoneId>,
    },

    /// The runner no longer holds the claim or the lease it writes under: another runner took
    /// the task or the session over (this one was cut off, or silent, for longer than the
    /// lease TTL). It must stop its work and record nothing more for it.
    #[error(
        "{what} was taken over by another runner (this runner holds epoch {held}, the ledger is at {current}): this runner stops its work on it and records nothing more"
    )]
    Fenced {
        what: String,
        held: u64,
        current: u64,
    },

    /// An input value is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },

    /// Another connection held the write lock for longer than the busy timeout.
    #[error(
        "could not {operation}: the ledger database `{}` stayed locked by another writer for longer than the busy timeout; try again, and check for a stuck process using it",
        path.display()
    )]
    Busy {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: DatabaseError,
    },

    /// The database itself failed (SQLite, or PostgreSQL and the connection to it).
    #[error("could not {operation} in the ledger database `{}`", path.display())]
    Database {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: DatabaseError,
    },
}

/// What a [`StoreError::NotFound`] looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Task(TaskId),
    Milestone(MilestoneId),
    MilestoneNamed(String),
    Session(SessionId),
    Runner(RunnerId),
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Task(id) => write!(f, "task {id}"),
            Missing::Milestone(id) => write!(f, "milestone {id}"),
            Missing::MilestoneNamed(name) => write!(f, "milestone `{name}`"),
            Missing::Session(id) => write!(f, "session {id}"),
            Missing::Runner(id) => write!(f, "runner {id}"),
        }
    }
}

impl StoreError {
    /// Whether this is [`StoreError::Busy`].
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Busy { .. })
    }

    /// Whether the database could not write to the disk: SQLite's disk is full (`SQLITE_FULL`),
    /// or a write or sync failed underneath (`SQLITE_IOERR`, which a file-size limit also
    /// gives); or the PostgreSQL server's disk is full or failed.
    pub fn is_disk_trouble(&self) -> bool {
        self.database_error()
            .is_some_and(DatabaseError::is_disk_trouble)
    }

    /// Whether the database, or the directory that must hold its journal, is read-only for
    /// this process (for PostgreSQL: the server or the transaction is read-only).
    pub fn is_read_only(&self) -> bool {
        self.database_error()
            .is_some_and(DatabaseError::is_read_only)
    }

    /// Whether the connection to a PostgreSQL server was lost or could not be made (the
    /// server restarted, the network went away). The next operation connects again, so
    /// such a failure is worth retrying; a SQLite file never gives it.
    pub fn is_connection_lost(&self) -> bool {
        self.database_error()
            .is_some_and(DatabaseError::is_connection_lost)
    }

    /// Whether a PostgreSQL server (or the connection to it) gave the failure: the server
    /// refused the login, could not be reached, or failed a statement.
    pub fn is_from_postgres(&self) -> bool {
        matches!(self.database_error(), Some(DatabaseError::Postgres(_)))
    }

    /// The SQL state a PostgreSQL server gave the failure (`28P01` for a refused password,
    /// `3D000` for a database that does not exist…), when it gave one.
    pub fn postgres_state(&self) -> Option<&str> {
        match self.database_error() {
            Some(DatabaseError::Postgres(error)) => error.code().map(|state| state.code()),
            _ => None,
        }
    }

    /// Whether TLS failed: the server offers none that the URL's `sslmode` asks for, its
    /// certificate does not check out, a certificate file is missing, or the server takes
    /// only TLS and the URL turned it off. The message says which, and what to do.
    pub fn is_tls_failure(&self) -> bool {
        matches!(self.database_error(), Some(DatabaseError::Tls(_)))
    }

    pub(crate) fn database_error(&self) -> Option<&DatabaseError> {
        match self {
            StoreError::Open { source, .. }
            | StoreError::Database { source, .. }
            | StoreError::Busy { source, .. }
            | StoreError::Migrate { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn allowed_after(from: TaskStatus) -> String {
    let next = from.next_states();
    if next.is_empty() {
        format!("{from} is final")
    } else {
        let words: Vec<&str> = next.iter().map(|status| status.as_str()).collect();
        format!("from {from} it can become {}", words.join(", "))
    }
}

fn task_list(ids: &[TaskId]) -> String {
    let numbers: Vec<String> = ids.iter().map(TaskId::to_string).collect();
    match numbers.len() {
        1 => format!("task {}", numbers[0]),
        _ => format!("tasks {}", numbers.join(", ")),
    }
}

fn cycle_text(cycle: &[TaskId]) -> String {
    let numbers: Vec<String> = cycle.iter().map(TaskId::to_string).collect();
    numbers.join(" → ")
}

fn milestone_text(milestone: Option<MilestoneId>) -> String {
    match milestone {
        Some(id) => format!("milestone {id}"),
        None => String::from("no milestone"),
    }
}

/// An error inside a ledger operation, before it is given its context: either a domain error
/// already typed, or a bare SQLite error that still needs the operation and path.
///
/// Operations are written with `?` on both kinds; [`Failure::into_store_error`] at the edge
/// of each operation turns SQLite errors into [`StoreError::Busy`] or
/// [`StoreError::Database`].
#[derive(Debug)]
pub(crate) enum Failure {
    Store(StoreError),
    Database(DatabaseError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::Store(error)
    }
}

impl From<DatabaseError> for Failure {
    fn from(error: DatabaseError) -> Failure {
        Failure::Database(error)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Failure {
        Failure::Database(error.into())
    }
}

impl Failure {
    pub(crate) fn into_store_error(self, operation: &'static str, path: &Path) -> StoreError {
        match self {
            Failure::Store(error) => error,
            Failure::Database(source) => database_error(operation, path, source),
        }
    }
}

/// Gives a database error its context, keeping a lock timeout apart from every other failure.
pub(crate) fn database_error(
    operation: &'static str,
    path: &Path,
    source: impl Into<DatabaseError>,
) -> StoreError {
    let source = source.into();
    if source.is_busy() {
        StoreError::Busy {
            operation,
            path: path.to_owned(),
            source,
        }
    } else {
        StoreError::Database {
            operation,
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_and_what_next() {
        let err = StoreError::InvalidTransition {
            task: TaskId(7),
            from: TaskStatus::Completed,
            to: TaskStatus::Running,
        };
        assert_eq!(
            err.to_string(),
            "task 7 is completed and cannot become running (completed is final)"
        );
        let err = StoreError::InvalidTransition {
            task: TaskId(7),
            from: TaskStatus::Pending,
            to: TaskStatus::Completed,
        };
        assert_eq!(
            err.to_string(),
            "task 7 is pending and cannot become completed (from pending it can become running, cancelled)"
        );
        let err = StoreError::DependencyCycle {
            task: TaskId(1),
            on: TaskId(2),
            cycle: vec![TaskId(1), TaskId(2), TaskId(3), TaskId(1)],
        };
        assert_eq!(
            err.to_string(),
            "task 1 cannot depend on task 2: that would close the cycle 1 → 2 → 3 → 1; drop one of those dependencies"
        );
        let err = StoreError::DependenciesUnmet {
            task: TaskId(4),
            waiting_on: vec![TaskId(2)],
        };
        assert_eq!(
            err.to_string(),
            "task 4 cannot start yet: it waits for task 2 to complete"
        );
        let err = StoreError::NotFound(Missing::MilestoneNamed("m1".into()));
        assert_eq!(
            err.to_string(),
            "milestone `m1` does not exist in the ledger"
        );
        let err = StoreError::NewerSchema {
            path: PathBuf::from("/x/baton.db"),
            found: 9,
            supported: 1,
        };
        assert_eq!(
            err.to_string(),
            "the ledger database `/x/baton.db` has schema version 9, but this build of baton knows versions up to 1 only: upgrade baton, or use another database file"
        );
    }

    #[test]
    fn no_message_ends_with_a_period_or_starts_upper_case() {
        let samples = [
            StoreError::MilestoneExists { name: "m".into() },
            StoreError::SessionRotated {
                id: SessionId::new_v4(),
            },
            StoreError::Invalid {
                field: "title",
                reason: "it is empty".into(),
            },
            StoreError::MilestoneMismatch {
                task: TaskId(1),
                task_milestone: None,
                expected: Some(MilestoneId(2)),
            },
        ];
        for err in samples {
            let text = err.to_string();
            assert!(!text.ends_with('.'), "{text}");
            assert!(text.starts_with(|c: char| !c.is_uppercase()), "{text}");
        }
    }
}
