//! Existence checks inside an operation: each reads one row and fails with
//! [`StoreError::NotFound`] naming what is missing, so that an operation on something that is
//! not there says so instead of failing on a foreign key.
//!
//! They sit below every module that owns a table, so that those modules (and the event log,
//! which checks what an event names) can use one another's checks without depending on each
//! other.

use crate::db::{Connection, OptionalExtension};
use agent::SessionId;

use crate::error::{Failure, Missing, StoreError};
use crate::ids::{MilestoneId, TaskId};
use crate::status::SessionStatus;

/// Fails with [`StoreError::NotFound`] unless the task exists.
pub(crate) fn ensure_task(connection: &Connection, id: TaskId) -> Result<(), Failure> {
    let exists = connection
        .prepare_cached("SELECT 1 FROM tasks WHERE id = ?1")?
        .exists([id])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(Missing::Task(id)).into())
    }
}

/// The milestone of a task that must exist.
pub(crate) fn task_milestone(
    connection: &Connection,
    id: TaskId,
) -> Result<Option<MilestoneId>, Failure> {
    connection
        .prepare_cached("SELECT milestone_id FROM tasks WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(Missing::Task(id)).into())
}

/// Reads a session's status, or fails with [`StoreError::NotFound`].
pub(crate) fn session_status(
    connection: &Connection,
    id: SessionId,
    text: &str,
) -> Result<SessionStatus, Failure> {
    connection
        .prepare_cached("SELECT status FROM sessions WHERE id = ?1")?
        .query_row([text], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(Missing::Session(id)).into())
}

/// Fails with [`StoreError::NotFound`] unless the session exists.
pub(crate) fn ensure_session(connection: &Connection, id: SessionId) -> Result<(), Failure> {
    session_status(connection, id, &id.to_string()).map(drop)
}

/// Fails with [`StoreError::NotFound`] unless the milestone exists.
pub(crate) fn ensure_milestone(connection: &Connection, id: MilestoneId) -> Result<(), Failure> {
    let exists = connection
        .prepare_cached("SELECT 1 FROM milestones WHERE id = ?1")?
        .exists([id])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(Missing::Milestone(id)).into())
    }
}
