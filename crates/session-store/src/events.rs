//! The append-only log of state changes: what happened to which task or session, and when.
//!
//! The store appends an event, in the same transaction, for every change to a task (added, a
//! state change, a new dependency) and for the changes to a session that its row does not keep
//! (a reopen, a sweep, a lease changing hands; a session's opening and closing are in its row).
//! Callers append their own with [`Store::append_event`]. Rows are never updated or deleted
//! (triggers refuse it).

use crate::db::{Row, ToSql, params};
use agent::SessionId;
use redact::Redacted;
use serde_json::Value;

use crate::error::StoreError;
use crate::ids::{EventId, TaskId};
use crate::lookup::{ensure_session, ensure_task};
use crate::sql::optional_session_id_at;
use crate::store::{Store, Write};
use crate::units::Timestamp;

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub task: Option<TaskId>,
    pub session: Option<SessionId>,
    /// A short word for what happened, such as `guidance_added`. The store's own kinds are
    /// listed in [`event_kind`].
    pub kind: Redacted,
    /// Details: free text, or a JSON object (what the store's own events use), such as
    /// [`redact::Redactor::redact_json_value`] makes.
    pub detail: Redacted,
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub at: Timestamp,
    pub task: Option<TaskId>,
    pub session: Option<SessionId>,
    pub kind: String,
    pub detail: String,
}

/// Which events to list. Both filters apply when both are set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub task: Option<TaskId>,
    pub session: Option<SessionId>,
}

/// The kinds of the events the store appends itself. Each one's detail is a JSON object.
pub mod event_kind {
    /// A task was added: `{"title"}`.
    pub const TASK_ADDED: &str = "task_added";
    /// A task changed state: `{"from", "to", "reason"}`.
    pub const TASK_STATUS: &str = "task_status";
    /// A task got a new dependency: `{"on"}`.
    pub const DEPENDENCY_ADDED: &str = "dependency_added";
    /// A closed session was opened again to be resumed: `{"was", "ended_at", "end_reason",
    /// "owner"}`, keeping how it had ended, which its row forgets.
    pub const SESSION_REOPENED: &str = "session_reopened";
    /// A sweep abandoned a session: `{"why", "owner", "agent_pid"}`.
    pub const SESSION_SWEPT: &str = "session_swept";
    /// A runner's heartbeat went silent for longer than the lease TTL; its task was taken
    /// back.
    pub const RUNNER_SILENT: &str = "runner_silent";
    /// Another process took over a session's lease: `{"owner", "previous"}`.
    pub const LEASE_ACQUIRED: &str = "lease_acquired";
    /// A session's lease was given up without closing it: `{"owner"}`.
    pub const LEASE_RELEASED: &str = "lease_released";
}

const EVENT_COLUMNS: &str = "id, at, task_id, session_id, kind, detail";

impl Store {
    /// Appends an event to the log. A task or session it names must exist. Its kind and
    /// detail come redacted.
    pub fn append_event(&mut self, event: &NewEvent) -> Result<EventId, StoreError> {
        self.write("append an event", |transaction| {
            if let Some(task) = event.task {
                ensure_task(transaction, task)?;
            }
            if let Some(session) = event.session {
                ensure_session(transaction, session)?;
            }
            let session = event.session.map(|id| id.to_string());
            Ok(insert_row(
                transaction,
                Timestamp::now(),
                event.task,
                session.as_deref(),
                event.kind.as_str(),
                event.detail.as_str(),
            )?)
        })
    }

    /// The events that match `filter`, oldest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.read("list events", |connection| {
            if let Some(task) = filter.task {
                ensure_task(connection, task)?;
            }
            if let Some(session) = filter.session {
                ensure_session(connection, session)?;
            }
            let session = filter.session.map(|id| id.to_string());
            // Only the filters that are set go into the statement, so that it can use the
            // index of the column it filters on.
            let mut clauses = Vec::new();
            let mut parameters: Vec<&dyn ToSql> = Vec::new();
            if let Some(task) = &filter.task {
                clauses.push("task_id = ?");
                parameters.push(task);
            }
            if let Some(session) = &session {
                clauses.push("session_id = ?");
                parameters.push(session);
            }
            let filter_sql = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events {filter_sql} ORDER BY id"
            ))?;
            let events = statement
                .query_map(parameters.as_slice(), event_from_row)?
                .collect::<crate::db::Result<Vec<_>>>()?;
            Ok(events)
        })
    }
}

/// Appends one of the store's own events (`kind` is one of [`event_kind`]) inside the caller's
/// write transaction. The detail the store composed passes through the store's redactor, once,
/// whole: its strings are redacted and it stays JSON.
pub(crate) fn insert_event(
    transaction: &Write<'_>,
    at: Timestamp,
    task: Option<TaskId>,
    session: Option<&str>,
    kind: &'static str,
    detail: Value,
) -> crate::db::Result<EventId> {
    let detail = transaction.detail(detail);
    insert_row(transaction, at, task, session, kind, detail.as_str())
}

/// Inserts an event row as given: the kind is a constant or came redacted, as did the detail.
fn insert_row(
    transaction: &Write<'_>,
    at: Timestamp,
    task: Option<TaskId>,
    session: Option<&str>,
    kind: &str,
    detail: &str,
) -> crate::db::Result<EventId> {
    let mut statement = transaction.prepare_cached(
        "INSERT INTO events (at, task_id, session_id, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5) \
         RETURNING id",
    )?;
    let id = statement.query_row(params![at, task, session, kind, detail], |row| row.get(0))?;
    Ok(EventId(id))
}

fn event_from_row(row: &Row<'_>) -> crate::db::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        at: row.get(1)?,
        task: row.get(2)?,
        session: optional_session_id_at(row, 3)?,
        kind: row.get(4)?,
        detail: row.get(5)?,
    })
}
