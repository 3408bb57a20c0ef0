//! Claims: a runner takes a pending task, with what its loop starts from (the session it
//! continues), in one statement on PostgreSQL that skips a task another writer holds.

use std::sync::LazyLock;

use agent::SessionId;
use serde_json::json;

use crate::budgets::{BudgetScope, BudgetStatus, limits_at, read_budget};
use crate::db::{Connection, OptionalExtension, Row, WriteLock, params};
use crate::error::{Failure, StoreError};
use crate::events::event_kind;
use crate::ids::TaskId;
use crate::process::LeaseOwner;
use crate::sql::{TOTALS_COLUMNS, session_id_at};
use crate::status::{SessionPolicy, SessionStatus, TaskStatus};
use crate::store::{Batch, Store, Write};
use crate::tasks::{
    Link, TASK_COLUMNS, TASK_TOTALS_AT, Task, link_at, load_links, set_links, status_and_waiting,
    task_from_row, transition_returning, unmet_dependencies,
};
use crate::units::Timestamp;

/// A task a runner claimed, and the session its loop may continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The task as the claim left it: running, under the claiming runner.
    pub task: Task,
    /// The latest session with the policy the claim asked about, in the task's scope (its own
    /// sessions under the `task` policy, its milestone's under `milestone`), with its state;
    /// `None` when there is none, or none was asked about.
    pub latest: Option<(SessionId, SessionStatus)>,
    /// The task's own budget, as [`Store::budget`] reads it, from the claim's statement: what
    /// the first call's reservation needs of the task, read with it.
    pub budget: BudgetStatus,
}

/// What a claim's errors say it could not do.
const CLAIM: &str = "claim a task";

impl Store {
    /// Claims a pending task for `runner`: it becomes `running`, with `runner` recorded as the
    /// process that runs it, and is returned as it is now.
    ///
    /// Of two runners claiming one task, exactly one succeeds; the other gets
    /// [`StoreError::InvalidTransition`] (the task is `running` already).
    pub fn claim_task(&mut self, id: TaskId, runner: &LeaseOwner) -> Result<Task, StoreError> {
        self.write(CLAIM, |transaction| {
            claim(transaction, id, runner, None).map(|claimed| claimed.task)
        })
    }

    /// Claims a pending task for `runner`, as [`Store::claim_task`] does, and runs `body`
    /// with what was claimed in the same batch (see [`Store::batch`]), to write what comes
    /// with the claim (the session it opens) in its commit. With `continuing`, the claim also
    /// finds the latest session of that policy in the task's scope ([`Claimed::latest`]).
    ///
    /// On PostgreSQL the claim, with its event, its checks and dependencies and that session,
    /// is one atomic statement that takes the task only when no other writer holds it (`FOR
    /// UPDATE SKIP LOCKED`, and its task's or milestone's lock taken without waiting):
    /// runners going for the same task never queue behind each other, and the ones that lose
    /// get [`StoreError::ClaimTaken`] at once, or [`StoreError::InvalidTransition`] when the
    /// winner committed first. Batches of other tasks run beside it, as
    /// [`Store::task_batch`]'s do. On SQLite, whose one write lock makes every claim wait its
    /// turn, this is [`Store::batch`] with [`Batch::claim_task`] first.
    pub fn claim_batch<T>(
        &mut self,
        id: TaskId,
        runner: &LeaseOwner,
        continuing: Option<SessionPolicy>,
        operation: &'static str,
        mut body: impl FnMut(&mut Batch<'_>, &Claimed) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // The claim comes first, and `body` only after it succeeded: on PostgreSQL the
        // claim's statement takes the lock the rest of the batch writes under.
        self.batch_under(WriteLock::Claim, operation, |batch| {
            let claimed = batch.apply(CLAIM, |transaction| {
                claim(transaction, id, runner, continuing)
            })?;
            body(batch, &claimed)
        })
    }
}

impl Batch<'_> {
    /// [`Store::claim_task`], as part of the batch.
    pub fn claim_task(&mut self, id: TaskId, runner: &LeaseOwner) -> Result<Task, StoreError> {
        self.apply(CLAIM, |transaction| {
            claim(transaction, id, runner, None).map(|claimed| claimed.task)
        })
    }
}

/// Claims task `id` for `runner`, finding the latest session under `continuing`; see
/// [`Store::claim_batch`].
fn claim(
    transaction: &Write<'_>,
    id: TaskId,
    runner: &LeaseOwner,
    continuing: Option<SessionPolicy>,
) -> Result<Claimed, Failure> {
    if transaction.is_postgres() {
        return match in_one_statement(transaction, id, runner, continuing)? {
            Some(claimed) => Ok(claimed),
            None => Err(refused(transaction, id)?),
        };
    }
    let (_, mut task) =
        transition_returning(transaction, id, TaskStatus::Running, None, Some(runner))?;
    load_links(transaction, &mut task)?;
    let latest = match continuing {
        Some(policy) => latest_session(transaction, &task, policy)?,
        None => None,
    };
    let budget = read_budget(transaction, BudgetScope::Task(id))?;
    Ok(Claimed {
        task,
        latest,
        budget,
    })
}

/// Which of a task's sessions the latest under `policy` is taken from (`None`: no session at
/// all), as a condition on `sessions` for a task whose id and milestone are `task` and
/// `milestone`: one column each, so that its index is used.
fn scope(policy: Option<SessionPolicy>, task: &str, milestone: &str) -> String {
    match policy {
        Some(SessionPolicy::Milestone) => format!("milestone_id = {milestone}"),
        Some(SessionPolicy::Task | SessionPolicy::Fresh) => format!("task_id = {task}"),
        None => String::from("false"),
    }
}

/// What [`scope`]'s statements are made for, in the order [`scope_index`] gives them.
const SCOPES: [Option<SessionPolicy>; 3] = [
    None,
    Some(SessionPolicy::Task),
    Some(SessionPolicy::Milestone),
];

/// The index of `policy`'s statement in [`SCOPES`] (the `fresh` policy's scope is the
/// task's, as [`scope`] says).
fn scope_index(policy: Option<SessionPolicy>) -> usize {
    match policy {
        None => 0,
        Some(SessionPolicy::Task | SessionPolicy::Fresh) => 1,
        Some(SessionPolicy::Milestone) => 2,
    }
}

/// What [`scope`]'s condition compares with for `task`: its id, or its milestone's.
fn scope_key(task: &Task, policy: SessionPolicy) -> Option<i64> {
    match policy {
        SessionPolicy::Milestone => task.milestone.map(|milestone| milestone.get()),
        SessionPolicy::Task | SessionPolicy::Fresh => Some(task.id.get()),
    }
}

/// The latest session of `task`'s scope under `policy` (see [`Claimed::latest`]), newest
/// as `Store::sessions` orders them.
fn latest_session(
    connection: &Connection,
    task: &Task,
    policy: SessionPolicy,
) -> crate::db::Result<Option<(SessionId, SessionStatus)>> {
    static SQL: LazyLock<[String; 3]> = LazyLock::new(|| {
        SCOPES.map(|policy| {
            format!(
                "SELECT id, status FROM sessions WHERE policy = ?1 AND {} \
                 ORDER BY started_at DESC, id DESC LIMIT 1",
                scope(policy, "?2", "?2")
            )
        })
    });
    connection
        .prepare_cached(&SQL[scope_index(Some(policy))])?
        .query_row(params![policy, scope_key(task, policy)], |row| {
            Ok((session_id_at(row, 0)?, row.get(1)?))
        })
        .optional()
}

/// A claim on PostgreSQL, in one statement and one round trip: the task moves to `running`
/// when it is pending, waits for no task and no other writer holds it (`FOR UPDATE SKIP
/// LOCKED`, and its task's or milestone's lock taken without waiting), with its event, and
/// comes back with its checks and dependencies and the latest session under `continuing`.
/// `None` when it did not move; nothing was written then.
fn in_one_statement(
    transaction: &Write<'_>,
    id: TaskId,
    runner: &LeaseOwner,
    continuing: Option<SessionPolicy>,
) -> Result<Option<Claimed>, Failure> {
    let now = Timestamp::now();
    let detail = transaction.detail(json!({
        "from": TaskStatus::Pending.as_str(),
        "to": TaskStatus::Running.as_str(),
        "reason": None::<&str>,
        "runner": { "pid": runner.pid, "host": runner.host },
    }));
    // Every row is the task, with the latest session, and one of its links (or none, for a
    // task without any).
    let mut claimed = None;
    let links = transaction
        .prepare_cached(&CLAIM_SQL[scope_index(continuing)])?
        .query_map(
            params![
                id,
                now,
                runner.pid,
                runner.host.as_str(),
                runner.start_time,
                event_kind::TASK_STATUS,
                detail.as_str(),
                continuing,
            ],
            |row| {
                if claimed.is_none() {
                    claimed = Some(claimed_at(row)?);
                }
                link_at(row, LINKS_AT)
            },
        )?
        .filter_map(Result::transpose)
        .collect::<crate::db::Result<Vec<Link>>>()?;
    Ok(claimed.map(|mut claimed: Claimed| {
        set_links(&mut claimed.task, links);
        claimed
    }))
}

/// The column of a claim's row where the task's budget starts; the latest session follows
/// it, then the links.
const BUDGET_AT: usize = TASK_TOTALS_AT + 7;
const LATEST_AT: usize = BUDGET_AT + 2;
const LINKS_AT: usize = LATEST_AT + 2;

fn claimed_at(row: &Row<'_>) -> crate::db::Result<Claimed> {
    let latest = match row.get_ref(LATEST_AT)? {
        crate::db::Value::Null => None,
        _ => Some((session_id_at(row, LATEST_AT)?, row.get(LATEST_AT + 1)?)),
    };
    let task = task_from_row(row)?;
    let budget = BudgetStatus {
        budget: limits_at(row, BUDGET_AT)?,
        spent: task.totals,
    };
    Ok(Claimed {
        task,
        latest,
        budget,
    })
}

/// The statement of [`in_one_statement`], for the latest session under each of [`SCOPES`].
static CLAIM_SQL: LazyLock<[String; 3]> = LazyLock::new(|| SCOPES.map(claim_sql));

fn claim_sql(continuing: Option<SessionPolicy>) -> String {
    format!(
        "WITH claimed AS ( \
             UPDATE tasks SET status = 'running', failure_reason = NULL, updated_at = ?2, \
                 started_at = coalesce(started_at, ?2), finished_at = NULL, \
                 runner_pid = ?3, runner_host = ?4, runner_start_time = ?5, \
                 claim_epoch = claim_epoch + 1 \
             WHERE id = (SELECT candidate.id FROM tasks AS candidate \
                 WHERE candidate.id = ?1 AND candidate.status = 'pending' \
                 AND NOT EXISTS (SELECT 1 FROM task_dependencies AS dependency \
                     JOIN tasks AS prerequisite ON prerequisite.id = dependency.depends_on \
                     WHERE dependency.task_id = candidate.id \
                     AND prerequisite.status <> 'completed') \
                 AND pg_try_advisory_xact_lock({keys}) \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING {TASK_COLUMNS}, {TOTALS_COLUMNS}, max_cost_nano_usd, max_tokens), \
         logged AS ( \
             INSERT INTO events (at, task_id, session_id, kind, detail) \
             SELECT ?2, id, NULL, ?6, ?7 FROM claimed) \
         SELECT claimed.*, latest.id, latest.status, link.kind, link.position, link.command \
         FROM claimed \
         LEFT JOIN LATERAL (SELECT id, status FROM sessions WHERE policy = ?8 AND {scope} \
             ORDER BY started_at DESC, id DESC LIMIT 1) AS latest ON true \
         LEFT JOIN ( \
             SELECT 0 AS kind, ordinal AS position, command FROM task_verify_commands \
             WHERE task_id = ?1 \
             UNION ALL \
             SELECT 1, depends_on, NULL FROM task_dependencies WHERE task_id = ?1 \
         ) AS link ON true \
         ORDER BY link.kind, link.position",
        keys = crate::db::task_lock_keys("candidate"),
        scope = scope(continuing, "claimed.id", "claimed.milestone_id"),
    )
}

/// Why a claim that moved nothing was refused: the task is not pending, or waits for
/// another, or (it was ready) another runner holds it.
fn refused(transaction: &Write<'_>, id: TaskId) -> Result<Failure, Failure> {
    let to = TaskStatus::Running;
    let (from, waiting) = status_and_waiting(transaction, id)?;
    if !from.can_become(to) {
        return Ok(StoreError::InvalidTransition { task: id, from, to }.into());
    }
    let waiting_on = if waiting {
        unmet_dependencies(transaction, id)?
    } else {
        Vec::new()
    };
    Ok(if waiting_on.is_empty() {
        StoreError::ClaimTaken { task: id }
    } else {
        StoreError::DependenciesUnmet {
            task: id,
            waiting_on,
        }
    }
    .into())
}
