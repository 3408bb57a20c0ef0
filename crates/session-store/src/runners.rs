//! Runners and fences: each `baton run` registers itself and heartbeats, so that runs on
//! other hosts can tell a live runner from a dead one; and every write a runner makes for a
//! task or a session carries the epoch of its claim or lease, so that a runner that lost
//! them (cut off past the TTL, its work rescued elsewhere) can never record a stale result.

use agent::SessionId;

use crate::db::{Row, params};
use crate::error::{Failure, Missing, StoreError};
use crate::events::{event_kind, insert_event};
use crate::ids::{RunnerId, TaskId};
use crate::process::LeaseOwner;
use crate::store::{Batch, Store, Write};
use crate::units::Timestamp;

/// A runner as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub id: RunnerId,
    pub process: LeaseOwner,
    pub started_at: Timestamp,
    /// When it last said it lives.
    pub heartbeat_at: Timestamp,
    /// When it ended cleanly; `None` while it runs, or when it died.
    pub stopped_at: Option<Timestamp>,
}

/// What a runner holds, as its writes carry it: the epoch of its claim on a task, and of its
/// lease on the session it works in. A write under a fence the ledger has moved past is
/// refused with [`StoreError::Fenced`], and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub task: TaskId,
    /// [`Task::claim_epoch`](crate::Task::claim_epoch) as the claim returned it.
    pub claim_epoch: u64,
    /// The session and [`Lease::epoch`](crate::Lease::epoch), while the runner holds one.
    pub session: Option<(SessionId, u64)>,
}

impl Store {
    /// Registers this process as a runner, heartbeating now.
    pub fn register_runner(&mut self, process: &LeaseOwner) -> Result<RunnerId, StoreError> {
        self.write("register a runner", |transaction| {
            let now = Timestamp::now();
            let id = transaction
                .prepare_cached(
                    "INSERT INTO runners (host, pid, start_time, started_at, heartbeat_at) \
                     VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
                )?
                .query_row(
                    params![process.host, process.pid, process.start_time, now],
                    |row| row.get(0),
                )?;
            Ok(id)
        })
    }

    /// Says the runner lives, now.
    pub fn heartbeat(&mut self, runner: RunnerId) -> Result<(), StoreError> {
        self.write("record a runner's heartbeat", |transaction| {
            let changed = transaction
                .prepare_cached("UPDATE runners SET heartbeat_at = ?2 WHERE id = ?1")?
                .execute(params![runner, Timestamp::now()])?;
            if changed == 0 {
                return Err(StoreError::NotFound(Missing::Runner(runner)).into());
            }
            Ok(())
        })
    }

    /// Marks the runner as ended cleanly.
    pub fn stop_runner(&mut self, runner: RunnerId) -> Result<(), StoreError> {
        self.write("record a runner's end", |transaction| {
            transaction
                .prepare_cached("UPDATE runners SET stopped_at = ?2 WHERE id = ?1")?
                .execute(params![runner, Timestamp::now()])?;
            Ok(())
        })
    }

    /// Whether the runner `process` heartbeat at `since` or later and has not stopped: alive,
    /// wherever it runs. `false` for a process that never registered.
    pub fn is_heartbeating(
        &self,
        process: &LeaseOwner,
        since: Timestamp,
    ) -> Result<bool, StoreError> {
        self.read_statement("look for a runner's heartbeat", |connection| {
            Ok(connection
                .prepare_cached(
                    "SELECT 1 FROM runners WHERE host = ?1 AND pid = ?2 AND start_time = ?3 \
                     AND heartbeat_at >= ?4 AND stopped_at IS NULL",
                )?
                .exists(params![
                    process.host,
                    process.pid,
                    process.start_time,
                    since
                ])?)
        })
    }

    /// Every runner registered, oldest first.
    pub fn runners(&self) -> Result<Vec<Runner>, StoreError> {
        self.read("list runners", |connection| {
            let runners = connection
                .prepare_cached(
                    "SELECT id, host, pid, start_time, started_at, heartbeat_at, stopped_at \
                     FROM runners ORDER BY id",
                )?
                .query_map((), runner_from_row)?
                .collect::<crate::db::Result<Vec<_>>>()?;
            Ok(runners)
        })
    }
}

impl Batch<'_> {
    /// Refuses the rest of the batch unless `fence` still holds: the task's claim epoch is
    /// the one given, and so is the session's lease epoch. Call it first, and return its error
    /// from the batch's body, so that nothing of the batch is written under a lost fence.
    /// The refusal is logged as an event in a transaction of its own by the caller, if at all:
    /// a fenced runner writes nothing.
    pub fn check_fence(&mut self, fence: &Fence) -> Result<(), StoreError> {
        self.apply("check a runner's claim", |transaction| {
            check(transaction, fence)
        })
    }
}

fn check(transaction: &Write<'_>, fence: &Fence) -> Result<(), Failure> {
    if transaction.deferring() {
        return check_deferred(transaction, fence);
    }
    // Both epochs in one statement: on PostgreSQL each statement is a round trip, and this one
    // comes first in every write of a task's loop.
    let session = fence.session.map(|(session, _)| session.to_string());
    let (current, lease_epoch): (u64, Option<u64>) = transaction
        .prepare_cached(
            "SELECT claim_epoch, (SELECT lease_epoch FROM sessions WHERE id = ?2) \
             FROM tasks WHERE id = ?1",
        )?
        .query_row(params![fence.task, session], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .map_err(|error| match error {
            crate::db::DatabaseError::NoRows => {
                Failure::Store(StoreError::NotFound(Missing::Task(fence.task)))
            }
            other => other.into(),
        })?;
    if current != fence.claim_epoch {
        return Err(StoreError::Fenced {
            what: format!("task {}", fence.task),
            held: fence.claim_epoch,
            current,
        }
        .into());
    }
    if let Some((session, held)) = fence.session {
        let current = lease_epoch.ok_or(StoreError::NotFound(Missing::Session(session)))?;
        if current != held {
            return Err(StoreError::Fenced {
                what: format!("session {session}"),
                held,
                current,
            }
            .into());
        }
    }
    Ok(())
}

/// [`check`], sent with the batch's commit: refusing, the batch runs again, and [`check`]
/// says which claim moved on.
fn check_deferred(transaction: &Write<'_>, fence: &Fence) -> Result<(), Failure> {
    let task_moved = "NOT EXISTS (SELECT 1 FROM tasks WHERE id = ?1 AND claim_epoch = ?2)";
    match fence.session {
        None => transaction.defer(
            &format!("SELECT baton_refuse('check a runner''s claim') WHERE {task_moved}"),
            params![fence.task, fence.claim_epoch],
        )?,
        Some((session, held)) => transaction.defer(
            &format!(
                "SELECT baton_refuse('check a runner''s claim') WHERE {task_moved} \
                 OR NOT EXISTS (SELECT 1 FROM sessions WHERE id = ?3 AND lease_epoch = ?4)"
            ),
            params![fence.task, fence.claim_epoch, session.to_string(), held],
        )?,
    }
    Ok(())
}

/// Runs that have not heartbeat since `stale_before`, with the running tasks they hold:
/// what [`Store::requeue_orphaned_tasks`] takes back on another host's behalf.
pub(crate) fn silent_runner_tasks(
    transaction: &Write<'_>,
    stale_before: Timestamp,
) -> crate::db::Result<Vec<(TaskId, LeaseOwner)>> {
    transaction
        .prepare_cached(
            "SELECT tasks.id, tasks.runner_pid, tasks.runner_host, tasks.runner_start_time \
             FROM tasks JOIN runners ON runners.host = tasks.runner_host \
                 AND runners.pid = tasks.runner_pid \
                 AND runners.start_time = tasks.runner_start_time \
             WHERE tasks.status = 'running' AND runners.heartbeat_at < ?1 \
             ORDER BY tasks.id",
        )?
        .query_map([stale_before], |row| {
            Ok((
                row.get(0)?,
                LeaseOwner {
                    pid: row.get(1)?,
                    host: row.get(2)?,
                    start_time: row.get(3)?,
                },
            ))
        })?
        .collect()
}

/// Logs that a runner was found silent, once per task it held.
pub(crate) fn log_silent(
    transaction: &Write<'_>,
    task: TaskId,
    runner: &LeaseOwner,
) -> crate::db::Result<()> {
    let detail = serde_json::json!({
        "runner": { "pid": runner.pid, "host": runner.host },
        "why": "heartbeat older than the lease TTL",
    });
    insert_event(
        transaction,
        Timestamp::now(),
        Some(task),
        None,
        event_kind::RUNNER_SILENT,
        detail,
    )
    .map(drop)
}

fn runner_from_row(row: &Row<'_>) -> crate::db::Result<Runner> {
    Ok(Runner {
        id: row.get(0)?,
        process: LeaseOwner {
            host: row.get(1)?,
            pid: row.get(2)?,
            start_time: row.get(3)?,
        },
        started_at: row.get(4)?,
        heartbeat_at: row.get(5)?,
        stopped_at: row.get(6)?,
    })
}
