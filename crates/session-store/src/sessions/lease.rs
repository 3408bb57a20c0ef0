//! Session leases: which process may run agent calls in a session, and the sweep that frees
//! sessions whose process is gone.
//!
//! Every lease change reads and writes the row inside one write transaction (SQLite's
//! `BEGIN IMMEDIATE`, or PostgreSQL's under the ledger's and the task's advisory locks).
//! SQLite admits one writer at a time, so of two processes racing to acquire one session the
//! second sees the first one's lease and gets [`StoreError::LeaseHeld`].

use std::time::Duration;

use crate::db::{Connection, params};
use agent::SessionId;
use serde_json::json;

use super::{Lease, SessionState, owner_json, session_state};
use crate::error::{Failure, StoreError};
use crate::events::{event_kind, insert_event};
use crate::ids::TaskId;
use crate::process::{AgentProcess, LeaseOwner, identify_current};
use crate::status::SessionStatus;
use crate::store::{Batch, Store, Write};
use crate::units::Timestamp;

/// Why a sweep abandoned a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SweepReason {
    /// The process holding the lease is gone.
    OwnerGone,
    /// The lease ran out without being renewed.
    LeaseExpired,
    /// The session was open with no lease at all, so no process was responsible for it.
    Unowned,
}

/// A session a sweep abandoned, with what the caller needs to clean up after it: the agent
/// process that may still be running, and the task to requeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptSession {
    pub id: SessionId,
    pub task: TaskId,
    /// The agent process last recorded in the session. It may still be running: stop it
    /// only if [`AgentProcess::is_running`] says this very process does.
    pub agent: Option<AgentProcess>,
    /// The lease holder, when there was one.
    pub owner: Option<LeaseOwner>,
    pub reason: SweepReason,
}

impl SweepReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            SweepReason::OwnerGone => "owner_gone",
            SweepReason::LeaseExpired => "lease_expired",
            SweepReason::Unowned => "unowned",
        }
    }
}

impl LeaseOwner {
    /// The identity of the calling process, the owner of the leases it takes.
    pub fn current() -> Result<LeaseOwner, StoreError> {
        identify_current().map_err(|source| StoreError::ProcessIdentity { source })
    }
}

impl Store {
    /// Gives the lease of an open session to `owner` for `ttl`.
    ///
    /// Succeeds when nobody holds the lease, when it expired, or when `owner` already holds it
    /// (which renews it). Fails with [`StoreError::LeaseHeld`], naming the holder, while
    /// another process holds an unexpired lease, and with [`StoreError::SessionClosed`] when
    /// the session has ended.
    pub fn acquire_lease(
        &mut self,
        id: SessionId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.write(ACQUIRE_LEASE, |transaction| {
            acquire_now(transaction, id, owner, ttl)
        })
    }

    /// Extends the lease `owner` holds on an open session to `ttl` from now.
    ///
    /// A lease that expired but was not taken over is still `owner`'s and is renewed. Fails
    /// with [`StoreError::LeaseHeld`] when another process holds the lease, and with
    /// [`StoreError::LeaseNotHeld`] when nobody does.
    pub fn renew_lease(
        &mut self,
        id: SessionId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.write(RENEW_LEASE, |transaction| {
            renew(transaction, id, owner, ttl)
        })
    }

    /// Gives up the lease `owner` holds on a session without closing it.
    ///
    /// Releasing a lease nobody holds, or that of a closed session, does nothing. Releasing
    /// another process's lease is refused. Note that [`Store::sweep_stale`] abandons open
    /// sessions that nobody holds: release a session only to hand it to another process.
    pub fn release_lease(&mut self, id: SessionId, owner: &LeaseOwner) -> Result<(), StoreError> {
        let text = id.to_string();
        self.write("release a session lease", |transaction| {
            let state = session_state(transaction, id, &text)?;
            let now = Timestamp::now();
            match state.lease {
                None => Ok(()),
                Some(lease) if lease.owner == *owner => {
                    clear_lease(transaction, &text)?;
                    let detail = json!({ "owner": owner_json(owner) });
                    insert_event(
                        transaction,
                        now,
                        Some(state.task),
                        Some(&text),
                        event_kind::LEASE_RELEASED,
                        detail,
                    )?;
                    Ok(())
                }
                Some(lease) if lease.expires_at > now => Err(StoreError::LeaseHeld {
                    id,
                    holder: lease.owner,
                    expires_at: lease.expires_at,
                }
                .into()),
                Some(_) => Err(StoreError::LeaseNotHeld {
                    id,
                    owner: owner.clone(),
                }
                .into()),
            }
        })
    }

    /// Abandons every open session whose owner is gone or whose lease expired at `now`, and
    /// reports each so the caller can stop a stale agent process and requeue the task.
    ///
    /// `is_owner_alive` decides whether a lease holder still runs;
    /// [`LeaseOwner::is_alive`] is the usual choice. It is called inside the sweep's write
    /// transaction, so it must be quick. An open session without a lease is abandoned too:
    /// no process is responsible for it. Sessions are swept in the order they were opened.
    pub fn sweep_stale(
        &mut self,
        now: Timestamp,
        is_owner_alive: impl Fn(&LeaseOwner) -> bool,
    ) -> Result<Vec<SweptSession>, StoreError> {
        self.write("sweep stale sessions", |transaction| {
            let candidates = open_sessions(transaction)?;
            let mut swept = Vec::new();
            for candidate in candidates {
                let Some((reason, end_reason)) =
                    staleness(candidate.lease.as_ref(), now, &is_owner_alive)
                else {
                    continue;
                };
                transaction
                    .prepare_cached(
                        "UPDATE sessions SET status = 'abandoned', ended_at = ?2, end_reason = ?3, \
                         lease_pid = NULL, lease_host = NULL, lease_start_time = NULL, \
                         lease_expires_at = NULL \
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        candidate.text,
                        now,
                        transaction.composed(end_reason).as_str()
                    ])?;
                let owner = candidate.lease.map(|lease| lease.owner);
                let detail = json!({
                    "why": reason.as_str(),
                    "owner": owner.as_ref().map(owner_json),
                    "agent_pid": candidate.agent.map(|agent| agent.pid),
                });
                insert_event(
                    transaction,
                    now,
                    Some(candidate.task),
                    Some(&candidate.text),
                    event_kind::SESSION_SWEPT,
                    detail,
                )?;
                swept.push(SweptSession {
                    id: candidate.id,
                    task: candidate.task,
                    agent: candidate.agent,
                    owner,
                    reason,
                });
            }
            Ok(swept)
        })
    }
}

impl Batch<'_> {
    /// [`Store::renew_lease`], as part of the batch.
    pub fn renew_lease(
        &mut self,
        id: SessionId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.apply(RENEW_LEASE, |transaction| {
            renew(transaction, id, owner, ttl)
        })
    }
}

const ACQUIRE_LEASE: &str = "acquire a session lease";
const RENEW_LEASE: &str = "renew a session lease";

/// Gives the lease of session `id` to `owner`; see [`Store::acquire_lease`].
fn acquire_now(
    transaction: &Write<'_>,
    id: SessionId,
    owner: &LeaseOwner,
    ttl: Duration,
) -> Result<Lease, Failure> {
    let text = id.to_string();
    let state = session_state(transaction, id, &text)?;
    acquire(transaction, id, &text, &state, owner, ttl, Timestamp::now())
}

/// Extends the lease `owner` holds; see [`Store::renew_lease`].
fn renew(
    transaction: &Write<'_>,
    id: SessionId,
    owner: &LeaseOwner,
    ttl: Duration,
) -> Result<Lease, Failure> {
    let text = id.to_string();
    let state = session_state(transaction, id, &text)?;
    if !state.status.is_open() {
        return Err(StoreError::SessionClosed {
            id,
            status: state.status,
        }
        .into());
    }
    let now = Timestamp::now();
    match state.lease {
        Some(lease) if lease.owner == *owner => {
            let renewed = Lease {
                owner: lease.owner,
                expires_at: now.saturating_add(ttl),
                epoch: lease.epoch,
            };
            transaction
                .prepare_cached("UPDATE sessions SET lease_expires_at = ?2 WHERE id = ?1")?
                .execute(params![text, renewed.expires_at])?;
            Ok(renewed)
        }
        Some(lease) if lease.expires_at > now => Err(StoreError::LeaseHeld {
            id,
            holder: lease.owner,
            expires_at: lease.expires_at,
        }
        .into()),
        _ => Err(StoreError::LeaseNotHeld {
            id,
            owner: owner.clone(),
        }
        .into()),
    }
}

/// Why an open session with `lease` is stale at `now`, with the end reason to record; `None`
/// while its holder lives and its lease runs.
fn staleness(
    lease: Option<&Lease>,
    now: Timestamp,
    is_owner_alive: impl Fn(&LeaseOwner) -> bool,
) -> Option<(SweepReason, String)> {
    match lease {
        None => Some((
            SweepReason::Unowned,
            String::from("it was open with no lease holder"),
        )),
        Some(lease) if !is_owner_alive(&lease.owner) => Some((
            SweepReason::OwnerGone,
            format!("its lease holder, {}, is gone", lease.owner),
        )),
        Some(lease) if lease.expires_at <= now => Some((
            SweepReason::LeaseExpired,
            format!(
                "the lease of {} expired at {}",
                lease.owner, lease.expires_at
            ),
        )),
        Some(_) => None,
    }
}

/// Abandons the open sessions of task `task` whose lease `runner` holds: the runner was found
/// silent for longer than the lease TTL and its task goes back to `pending` in the same
/// transaction. Without this, the session would stay leased until its own expiry (which may be
/// later than the heartbeat's), and a rescuer claiming the task in between would find the
/// session held and have to give the task back. Reopening the session moves its lease epoch
/// on, so the silent runner, should it come back, is fenced off from it too.
pub(crate) fn abandon_sessions_of_silent_runner(
    transaction: &Write<'_>,
    task: TaskId,
    runner: &LeaseOwner,
    now: Timestamp,
) -> crate::db::Result<()> {
    let end_reason = transaction.composed(format!(
        "its lease holder, {runner}, has been silent for longer than the lease TTL"
    ));
    let abandoned: Vec<String> = transaction
        .prepare_cached(
            "UPDATE sessions SET status = 'abandoned', ended_at = ?2, end_reason = ?3, \
             lease_pid = NULL, lease_host = NULL, lease_start_time = NULL, \
             lease_expires_at = NULL \
             WHERE task_id = ?1 AND status = 'open' AND lease_pid = ?4 AND lease_host = ?5 \
             AND lease_start_time = ?6 RETURNING id",
        )?
        .query_map(
            params![
                task,
                now,
                end_reason.as_str(),
                runner.pid,
                runner.host,
                runner.start_time
            ],
            |row| row.get(0),
        )?
        .collect::<crate::db::Result<_>>()?;
    for session in abandoned {
        let detail = json!({
            "why": "runner_silent",
            "owner": owner_json(runner),
            "agent_pid": serde_json::Value::Null,
        });
        insert_event(
            transaction,
            now,
            Some(task),
            Some(&session),
            event_kind::SESSION_SWEPT,
            detail,
        )?;
    }
    Ok(())
}

/// Gives an open session's lease to `owner`, unless another process holds it unexpired.
pub(super) fn acquire(
    connection: &Write<'_>,
    id: SessionId,
    text: &str,
    state: &SessionState,
    owner: &LeaseOwner,
    ttl: Duration,
    now: Timestamp,
) -> Result<Lease, Failure> {
    if state.status != SessionStatus::Open {
        return Err(StoreError::SessionClosed {
            id,
            status: state.status,
        }
        .into());
    }
    if let Some(lease) = &state.lease
        && lease.owner != *owner
        && lease.expires_at > now
    {
        return Err(StoreError::LeaseHeld {
            id,
            holder: lease.owner.clone(),
            expires_at: lease.expires_at,
        }
        .into());
    }
    let previous = state.lease.as_ref().map(|lease| &lease.owner);
    // The same holder keeps its epoch; a new one (or the old one after a gap without a
    // lease) moves it on, fencing off whoever held it before.
    let epoch = if previous == Some(owner) {
        state.epoch
    } else {
        state.epoch + 1
    };
    let lease = Lease {
        owner: owner.clone(),
        expires_at: now.saturating_add(ttl),
        epoch,
    };
    connection
        .prepare_cached(
            "UPDATE sessions SET lease_pid = ?2, lease_host = ?3, lease_start_time = ?4, \
             lease_expires_at = ?5, lease_epoch = ?6 WHERE id = ?1",
        )?
        .execute(params![
            text,
            owner.pid,
            owner.host,
            owner.start_time,
            lease.expires_at,
            lease.epoch
        ])?;
    if previous != Some(owner) {
        let detail = json!({
            "owner": owner_json(owner),
            "previous": previous.map(owner_json),
        });
        insert_event(
            connection,
            now,
            Some(state.task),
            Some(text),
            event_kind::LEASE_ACQUIRED,
            detail,
        )?;
    }
    Ok(lease)
}

fn clear_lease(connection: &Connection, text: &str) -> crate::db::Result<()> {
    connection
        .prepare_cached(
            "UPDATE sessions SET lease_pid = NULL, lease_host = NULL, lease_start_time = NULL, \
             lease_expires_at = NULL WHERE id = ?1",
        )?
        .execute([text])?;
    Ok(())
}

/// An open session as a sweep sees it.
struct OpenSession {
    id: SessionId,
    text: String,
    task: TaskId,
    agent: Option<AgentProcess>,
    lease: Option<Lease>,
}

fn open_sessions(connection: &Connection) -> crate::db::Result<Vec<OpenSession>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, task_id, agent_pid, lease_pid, lease_host, lease_start_time, lease_expires_at, \
         agent_start_time, lease_epoch FROM sessions WHERE status = 'open' ORDER BY started_at, id",
    )?;
    statement
        .query_map((), |row| {
            Ok(OpenSession {
                id: crate::sql::session_id_at(row, 0)?,
                text: row.get(0)?,
                task: row.get(1)?,
                agent: super::agent_at(row, 2, 7)?,
                lease: super::lease_at(row, 3, 8)?,
            })
        })?
        .collect()
}
