//! Usage roll-ups: what the agent calls of a session, a task or a milestone added up to.
//!
//! Sessions and tasks keep running totals, updated in the transaction that records each
//! call, so their roll-ups are one row read. A milestone's is the sum of its tasks'.

use crate::db::{Connection, OptionalExtension};
use agent::SessionId;

use crate::error::{Missing, StoreError};
use crate::ids::{MilestoneId, TaskId};
use crate::lookup::ensure_milestone;
use crate::sql::{TOTALS_COLUMNS, totals_at};
use crate::store::Store;
use crate::units::Totals;

impl Store {
    /// What the agent calls recorded in a session added up to.
    pub fn session_usage(&self, id: SessionId) -> Result<Totals, StoreError> {
        self.read("read a session's usage", |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {TOTALS_COLUMNS} FROM sessions WHERE id = ?1"
                ))?
                .query_row([id.to_string()], |row| totals_at(row, 0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(Missing::Session(id)).into())
        })
    }

    /// What the agent calls recorded for a task added up to, across all its sessions.
    pub fn task_usage(&self, task: TaskId) -> Result<Totals, StoreError> {
        self.read("read a task's usage", |connection| {
            connection
                .prepare_cached(&format!("SELECT {TOTALS_COLUMNS} FROM tasks WHERE id = ?1"))?
                .query_row([task], |row| totals_at(row, 0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(Missing::Task(task)).into())
        })
    }

    /// What the agent calls recorded for a milestone's tasks added up to.
    pub fn milestone_usage(&self, milestone: MilestoneId) -> Result<Totals, StoreError> {
        self.read("read a milestone's usage", |connection| {
            ensure_milestone(connection, milestone)?;
            Ok(milestone_totals(connection, milestone)?)
        })
    }
}

/// The sum of a milestone's tasks' totals: its usage, and what its budget has spent.
pub(crate) fn milestone_totals(
    connection: &Connection,
    milestone: MilestoneId,
) -> crate::db::Result<Totals> {
    connection
        .prepare_cached(
            "SELECT CAST(coalesce(sum(agent_calls), 0) AS BIGINT), CAST(coalesce(sum(turns), 0) AS BIGINT), \
             CAST(coalesce(sum(input_tokens), 0) AS BIGINT), CAST(coalesce(sum(output_tokens), 0) AS BIGINT), \
             CAST(coalesce(sum(cache_read_tokens), 0) AS BIGINT), CAST(coalesce(sum(cache_creation_tokens), 0) AS BIGINT), \
             CAST(coalesce(sum(cost_nano_usd), 0) AS BIGINT) \
             FROM tasks WHERE milestone_id = ?1",
        )?
        .query_row([milestone], |row| totals_at(row, 0))
}
