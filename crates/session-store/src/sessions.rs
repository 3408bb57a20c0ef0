//! Sessions: the agent conversations Baton owns, their leases, and how they end.
//!
//! A session is opened (row and lease, in one commit) before its agent process starts, takes
//! agent calls while it is `open`, and ends: `completed`, `failed`, `rotated`, or `abandoned`
//! when a sweep finds its owner gone. Its lease says which process may run agent calls in it;
//! see [`Store::acquire_lease`] and [`Store::sweep_stale`].
//!
//! Opening and closing a session append no event: the session row itself records both
//! (`started_at`, `ended_at`, `status`, `end_reason`), and they are the hot path, where every
//! page an event touches is written again at each commit. What the row would forget is logged:
//! a reopen (with how the session had ended), a sweep, a lease changing hands.

mod lease;

use std::time::Duration;

use crate::db::{Connection, OptionalExtension, Row, ToSql, params};
use agent::SessionId;
use redact::Redacted;
use serde_json::json;

use crate::error::{Failure, Missing, StoreError};
use crate::events::{event_kind, insert_event};
use crate::ids::{MilestoneId, TaskId};
use crate::lookup::{session_status, task_milestone};
use crate::process::{AgentProcess, LeaseOwner};
use crate::sql::{TOTALS_COLUMNS, session_id_at, totals_at};
use crate::status::{SessionPolicy, SessionStatus};
use crate::store::{Batch, Store, Write};
use crate::units::{Timestamp, Totals};

pub(crate) use self::lease::abandon_sessions_of_silent_runner;
pub use self::lease::{SweepReason, SweptSession};

/// A session to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The id Baton minted for it, which the agent will be told to use.
    pub id: SessionId,
    /// The task that opens it.
    pub task: TaskId,
    /// The task's milestone, which a session must agree with; required by the
    /// [`SessionPolicy::Milestone`] policy, whose session later tasks of the milestone share.
    pub milestone: Option<MilestoneId>,
    pub policy: SessionPolicy,
    /// The process that will run its agent calls; it gets the lease.
    pub owner: LeaseOwner,
    /// How long the lease lasts before it must be renewed.
    pub lease_ttl: Duration,
}

/// Who may run agent calls in a session, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: LeaseOwner,
    pub expires_at: Timestamp,
    /// How many times the session's lease passed to a holder: the epoch this holder's
    /// writes for the session carry ([`Fence`](crate::Fence)). Renewing keeps it.
    pub epoch: u64,
}

/// A session as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    /// The task that opened it.
    pub task: TaskId,
    pub milestone: Option<MilestoneId>,
    pub policy: SessionPolicy,
    pub status: SessionStatus,
    /// The current lease; only an open session can have one.
    pub lease: Option<Lease>,
    /// The agent process last recorded as running in it.
    pub agent: Option<AgentProcess>,
    /// Everything its agent calls added up to.
    pub totals: Totals,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
}

/// Which sessions to list. Every filter that is set applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub task: Option<TaskId>,
    pub status: Option<SessionStatus>,
    pub milestone: Option<MilestoneId>,
}

const SESSION_COLUMNS: &str = "id, task_id, milestone_id, policy, status, \
                               lease_pid, lease_host, lease_start_time, lease_expires_at, \
                               agent_pid, started_at, ended_at, end_reason, agent_start_time, \
                               lease_epoch";
/// The column at which [`TOTALS_COLUMNS`] start in a session row.
const SESSION_TOTALS_AT: usize = 15;

impl Store {
    /// Opens a session and gives its lease to `session.owner`, committing both before it
    /// returns, so the session exists in the ledger before any agent is told its id.
    ///
    /// The task must exist, and `session.milestone` must be the task's milestone
    /// ([`StoreError::MilestoneMismatch`]). A session id can be opened once
    /// ([`StoreError::SessionExists`]).
    pub fn open_session(&mut self, session: &NewSession) -> Result<Lease, StoreError> {
        self.write(OPEN_SESSION, |transaction| open(transaction, session))
    }

    /// The session with this id.
    pub fn session(&self, id: SessionId) -> Result<Session, StoreError> {
        let text = id.to_string();
        self.read_statement("read a session", |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS}, {TOTALS_COLUMNS} FROM sessions WHERE id = ?1"
                ))?
                .query_row([&text], session_from_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound(Missing::Session(id)).into())
        })
    }

    /// The sessions that match `filter`, oldest first.
    pub fn sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        self.read_statement("list sessions", |connection| {
            // Only the filters that are set go into the statement, so that it can use the
            // index of the column it filters on: a task's sessions are looked up before each
            // task runs, and scanning every session made that grow with the ledger.
            let mut clauses = Vec::new();
            let mut parameters: Vec<&dyn ToSql> = Vec::new();
            // A task's sessions hang off the task's row (a table with the one column `known`,
            // so the session columns stay unambiguous): no row at all says the task does not
            // exist, in the same statement, so the read needs no transaction.
            let from = if let Some(task) = &filter.task {
                parameters.push(task);
                "(SELECT id AS known FROM tasks WHERE id = ?) AS task \
                 LEFT JOIN sessions ON sessions.task_id = task.known"
            } else {
                "sessions"
            };
            if let Some(status) = &filter.status {
                clauses.push("status = ?");
                parameters.push(status);
            }
            if let Some(milestone) = &filter.milestone {
                clauses.push("milestone_id = ?");
                parameters.push(milestone);
            }
            // Under a task, the other filters join the sessions to it (a `WHERE` would drop
            // the task's row when no session matches).
            let lead = if filter.task.is_some() {
                "AND"
            } else {
                "WHERE"
            };
            let filter_sql = if clauses.is_empty() {
                String::new()
            } else {
                format!(" {lead} {}", clauses.join(" AND "))
            };
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS}, {TOTALS_COLUMNS} FROM {from}{filter_sql} \
                 ORDER BY started_at, id"
            ))?;
            let rows = statement
                .query_map(parameters.as_slice(), |row| {
                    // The task's row without a session: NULL in every session column.
                    if row.get_ref(0)? == crate::db::Value::Null {
                        Ok(None)
                    } else {
                        session_from_row(row).map(Some)
                    }
                })?
                .collect::<crate::db::Result<Vec<_>>>()?;
            if let Some(task) = filter.task
                && rows.is_empty()
            {
                return Err(StoreError::NotFound(Missing::Task(task)).into());
            }
            Ok(rows.into_iter().flatten().collect())
        })
    }

    /// Records the agent process running in an open session (or clears it with `None`), so
    /// that a sweep after a crash can find and stop it. The process's start time is read
    /// here, while it runs, so that a later sweep can tell it from a process that reused its
    /// pid.
    pub fn set_agent_pid(&mut self, id: SessionId, pid: Option<u32>) -> Result<(), StoreError> {
        let text = id.to_string();
        let agent = pid.map(AgentProcess::observe);
        self.write("record a session's agent process", |transaction| {
            let status = session_status(transaction, id, &text)?;
            if agent.is_some() && !status.is_open() {
                return Err(StoreError::SessionClosed { id, status }.into());
            }
            transaction
                .prepare_cached(
                    "UPDATE sessions SET agent_pid = ?2, agent_start_time = ?3 WHERE id = ?1",
                )?
                .execute(params![
                    text,
                    agent.map(|agent| agent.pid),
                    agent.map(|agent| agent.start_time)
                ])?;
            Ok(())
        })
    }

    /// Ends a session as `status` (any state but `open`) and releases its lease, keeping the
    /// reason (which comes redacted).
    ///
    /// Closing a session again in the state it already ended in succeeds and changes nothing,
    /// so every exit path may close without knowing whether another already did. Closing it
    /// in a different end state is [`StoreError::CloseConflict`].
    pub fn close_session(
        &mut self,
        id: SessionId,
        status: SessionStatus,
        reason: Option<&Redacted>,
    ) -> Result<(), StoreError> {
        self.write(CLOSE_SESSION, |transaction| {
            close(transaction, id, status, reason)
        })
    }

    /// Opens a closed session again so that it can be resumed, and gives its lease to `owner`.
    ///
    /// This is how a task continues the conversation of a session that was abandoned (its
    /// runner died), or that ended when the task failed or blocked and is now retried. A
    /// rotated session is never reopened ([`StoreError::SessionRotated`]): its successor holds
    /// the conversation. Reopening a session that is open acquires its lease, as
    /// [`Store::acquire_lease`] does.
    pub fn reopen_session(
        &mut self,
        id: SessionId,
        owner: &LeaseOwner,
        lease_ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.write(REOPEN_SESSION, |transaction| {
            reopen(transaction, id, owner, lease_ttl)
        })
    }
}

impl Batch<'_> {
    /// [`Store::open_session`], as part of the batch.
    pub fn open_session(&mut self, session: &NewSession) -> Result<Lease, StoreError> {
        self.apply(OPEN_SESSION, |transaction| open(transaction, session))
    }

    /// [`Store::close_session`], as part of the batch.
    pub fn close_session(
        &mut self,
        id: SessionId,
        status: SessionStatus,
        reason: Option<&Redacted>,
    ) -> Result<(), StoreError> {
        self.apply(CLOSE_SESSION, |transaction| {
            close(transaction, id, status, reason)
        })
    }

    /// [`Store::reopen_session`], as part of the batch.
    pub fn reopen_session(
        &mut self,
        id: SessionId,
        owner: &LeaseOwner,
        lease_ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.apply(REOPEN_SESSION, |transaction| {
            reopen(transaction, id, owner, lease_ttl)
        })
    }
}

const OPEN_SESSION: &str = "open a session";
const CLOSE_SESSION: &str = "close a session";
const REOPEN_SESSION: &str = "reopen a session";

/// Opens a session with its lease; see [`Store::open_session`].
fn open(transaction: &Write<'_>, session: &NewSession) -> Result<Lease, Failure> {
    let now = Timestamp::now();
    let lease = Lease {
        owner: session.owner.clone(),
        expires_at: now.saturating_add(session.lease_ttl),
        epoch: 1,
    };
    // The common case in one statement (a round trip on PostgreSQL): the task exists in the
    // milestone named, the policy fits it, and the id is new. A session id taken already
    // inserts nothing rather than failing, which on PostgreSQL would abort the whole batch.
    const INSERT: &str = "INSERT INTO sessions (id, task_id, milestone_id, policy, status, \
            lease_pid, lease_host, lease_start_time, lease_expires_at, started_at, \
            lease_epoch) \
        SELECT ?1, id, milestone_id, ?4, 'open', ?5, ?6, ?7, ?8, ?9, 1 FROM tasks \
        WHERE id = ?2 AND (milestone_id = ?3 OR (milestone_id IS NULL AND ?3 IS NULL)) \
        AND (?4 <> 'milestone' OR milestone_id IS NOT NULL) \
        ON CONFLICT (id) DO NOTHING";
    let values = params![
        session.id.to_string(),
        session.task,
        session.milestone,
        session.policy,
        lease.owner.pid,
        lease.owner.host,
        lease.owner.start_time,
        lease.expires_at,
        now,
    ];
    if transaction.deferring() {
        // Sent with the batch's commit: a refusal runs the batch again, and this says why.
        static REFUSING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "WITH inserted AS ({INSERT} RETURNING 1) \
                 SELECT baton_refuse('open a session') \
                 WHERE NOT EXISTS (SELECT 1 FROM inserted)"
            )
        });
        transaction.defer(&REFUSING, values)?;
        return Ok(lease);
    }
    if transaction.prepare_cached(INSERT)?.execute(values)? == 1 {
        return Ok(lease);
    }
    Err(open_refused(transaction, session)?)
}

/// Why a session that [`open`] did not insert was refused.
fn open_refused(transaction: &Write<'_>, session: &NewSession) -> Result<Failure, Failure> {
    let milestone = task_milestone(transaction, session.task)?;
    Ok(if milestone != session.milestone {
        StoreError::MilestoneMismatch {
            task: session.task,
            task_milestone: milestone,
            expected: session.milestone,
        }
    } else if session.policy == SessionPolicy::Milestone && milestone.is_none() {
        StoreError::Invalid {
            field: "session policy",
            reason: format!(
                "task {} is in no milestone, so it cannot open a session with the milestone policy",
                session.task
            ),
        }
    } else {
        StoreError::SessionExists { id: session.id }
    }
    .into())
}

/// Ends a session; see [`Store::close_session`].
fn close(
    transaction: &Write<'_>,
    id: SessionId,
    status: SessionStatus,
    reason: Option<&Redacted>,
) -> Result<(), Failure> {
    if status.is_open() {
        return Err(StoreError::Invalid {
            field: "session end state",
            reason: String::from(
                "open is not an end state; close as completed, failed, abandoned or rotated",
            ),
        }
        .into());
    }
    let text = id.to_string();
    let now = Timestamp::now();
    // The common case in one statement: the session is open and closes now.
    const UPDATE: &str = "UPDATE sessions SET status = ?2, ended_at = ?3, end_reason = ?4, \
            lease_pid = NULL, lease_host = NULL, lease_start_time = NULL, \
            lease_expires_at = NULL \
        WHERE id = ?1 AND status = 'open'";
    let values = params![text, status, now, reason.map(Redacted::as_str)];
    if transaction.deferring() {
        // Sent with the batch's commit, refusing where the long way below would: a session
        // that is neither open nor closed as asked already.
        static REFUSING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "WITH closed AS ({UPDATE} RETURNING 1) \
                 SELECT baton_refuse('close a session') \
                 WHERE NOT EXISTS (SELECT 1 FROM closed) \
                 AND NOT EXISTS (SELECT 1 FROM sessions WHERE id = ?1 AND status = ?2)"
            )
        });
        transaction.defer(&REFUSING, values)?;
        return Ok(());
    }
    let closed = transaction.prepare_cached(UPDATE)?.execute(values)?;
    if closed == 0 {
        let current = session_status(transaction, id, &text)?;
        if current != status {
            return Err(StoreError::CloseConflict {
                id,
                current,
                requested: status,
            }
            .into());
        }
    }
    Ok(())
}

/// Opens a closed session again for `owner`; see [`Store::reopen_session`].
fn reopen(
    transaction: &Write<'_>,
    id: SessionId,
    owner: &LeaseOwner,
    lease_ttl: Duration,
) -> Result<Lease, Failure> {
    let text = id.to_string();
    let state = session_state(transaction, id, &text)?;
    let now = Timestamp::now();
    match state.status {
        SessionStatus::Open => {
            lease::acquire(transaction, id, &text, &state, owner, lease_ttl, now)
        }
        SessionStatus::Rotated => Err(StoreError::SessionRotated { id }.into()),
        SessionStatus::Completed | SessionStatus::Failed | SessionStatus::Abandoned => {
            let lease = Lease {
                owner: owner.clone(),
                expires_at: now.saturating_add(lease_ttl),
                epoch: state.epoch + 1,
            };
            // The row is about to forget how the session ended; the event keeps it.
            let (ended_at, end_reason): (Option<Timestamp>, Option<String>) = transaction
                .prepare_cached("SELECT ended_at, end_reason FROM sessions WHERE id = ?1")?
                .query_row([&text], |row| Ok((row.get(0)?, row.get(1)?)))?;
            transaction
                    .prepare_cached(
                        "UPDATE sessions SET status = 'open', ended_at = NULL, \
                         end_reason = NULL, agent_pid = NULL, agent_start_time = NULL, lease_pid = ?2, \
                         lease_host = ?3, lease_start_time = ?4, lease_expires_at = ?5, \
                         lease_epoch = ?6 WHERE id = ?1",
                    )?
                    .execute(params![
                        text,
                        owner.pid,
                        owner.host,
                        owner.start_time,
                        lease.expires_at,
                        lease.epoch
                    ])?;
            let detail = json!({
                "was": state.status.as_str(),
                "ended_at": ended_at.map(Timestamp::as_millis),
                "end_reason": end_reason,
                "owner": owner_json(owner),
            });
            insert_event(
                transaction,
                now,
                Some(state.task),
                Some(&text),
                event_kind::SESSION_REOPENED,
                detail,
            )?;
            Ok(lease)
        }
    }
}

/// What the store needs to know about a session to change it.
#[derive(Debug)]
pub(crate) struct SessionState {
    pub(crate) task: TaskId,
    pub(crate) status: SessionStatus,
    pub(crate) lease: Option<Lease>,
    /// The lease epoch, kept when the lease is cleared.
    pub(crate) epoch: u64,
}

/// Reads a session's state, or fails with [`StoreError::NotFound`].
pub(crate) fn session_state(
    connection: &Connection,
    id: SessionId,
    text: &str,
) -> Result<SessionState, Failure> {
    connection
        .prepare_cached(
            "SELECT task_id, status, lease_pid, lease_host, lease_start_time, lease_expires_at, \
             lease_epoch FROM sessions WHERE id = ?1",
        )?
        .query_row([text], |row| {
            Ok(SessionState {
                task: row.get(0)?,
                status: row.get(1)?,
                lease: lease_at(row, 2, 6)?,
                epoch: row.get(6)?,
            })
        })
        .optional()?
        .ok_or_else(|| StoreError::NotFound(Missing::Session(id)).into())
}

/// Reads the four lease columns starting at `first`, and the epoch at `epoch`: a lease when
/// they are set.
fn lease_at(row: &Row<'_>, first: usize, epoch: usize) -> crate::db::Result<Option<Lease>> {
    let pid: Option<u32> = row.get(first)?;
    let Some(pid) = pid else {
        return Ok(None);
    };
    Ok(Some(Lease {
        owner: LeaseOwner {
            pid,
            host: row.get(first + 1)?,
            start_time: row.get(first + 2)?,
        },
        expires_at: row.get(first + 3)?,
        epoch: row.get(epoch)?,
    }))
}

fn session_from_row(row: &Row<'_>) -> crate::db::Result<Session> {
    Ok(Session {
        id: session_id_at(row, 0)?,
        task: row.get(1)?,
        milestone: row.get(2)?,
        policy: row.get(3)?,
        status: row.get(4)?,
        lease: lease_at(row, 5, 14)?,
        agent: agent_at(row, 9, 13)?,
        started_at: row.get(10)?,
        ended_at: row.get(11)?,
        end_reason: row.get(12)?,
        totals: totals_at(row, SESSION_TOTALS_AT)?,
    })
}

/// Reads an agent process from its pid and start-time columns.
pub(crate) fn agent_at(
    row: &Row<'_>,
    pid_at: usize,
    start_time_at: usize,
) -> crate::db::Result<Option<AgentProcess>> {
    let pid: Option<u32> = row.get(pid_at)?;
    let start_time: Option<u64> = row.get(start_time_at)?;
    Ok(pid.map(|pid| AgentProcess {
        pid,
        start_time: start_time.unwrap_or(0),
    }))
}

/// A lease owner as it appears in event details.
fn owner_json(owner: &LeaseOwner) -> serde_json::Value {
    json!({ "pid": owner.pid, "host": owner.host, "start_time": owner.start_time })
}
