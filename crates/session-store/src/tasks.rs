//! Tasks: what to ask the agent, where, how many times, and after which other tasks; and the
//! state machine that tracks each one.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::LazyLock;

use crate::db::{Connection, OptionalExtension, Row, params};
use redact::Redacted;
use serde_json::json;

use crate::error::{Failure, Missing, StoreError};
use crate::events::{event_kind, insert_event};
use crate::ids::{MilestoneId, TaskId};
use crate::lookup::{ensure_milestone, ensure_task};
use crate::process::LeaseOwner;
use crate::sql::{TOTALS_COLUMNS, path_text, totals_at};
use crate::status::{SessionPolicy, TaskStatus};
use crate::store::{Batch, Store, Write};
use crate::units::{Timestamp, Totals};

/// A task to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// A short name for people.
    pub title: Redacted,
    /// What the agent is asked to do.
    pub prompt: Redacted,
    pub milestone: Option<MilestoneId>,
    /// Where the agent and the verification commands run. Must be absolute: the ledger
    /// outlives the directory it was written from.
    pub working_dir: PathBuf,
    /// How many agent-then-verify rounds the task gets before it fails. At least 1.
    pub max_iterations: u32,
    /// The agent's turn budget per call; `None` leaves it to the agent.
    pub max_turns: Option<u32>,
    /// The task's session policy; `None` inherits the milestone's or the run's.
    pub policy: Option<SessionPolicy>,
    /// Shell commands that must all pass for the task to be done, in order.
    pub verify_commands: Vec<Redacted>,
    /// Tasks that must complete before this one may start.
    pub after: Vec<TaskId>,
}

/// A task as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub title: String,
    pub prompt: String,
    pub status: TaskStatus,
    pub milestone: Option<MilestoneId>,
    pub working_dir: PathBuf,
    pub max_iterations: u32,
    pub max_turns: Option<u32>,
    pub policy: Option<SessionPolicy>,
    pub verify_commands: Vec<String>,
    /// The tasks this one waits for, in id order.
    pub after: Vec<TaskId>,
    /// Why the task last failed, blocked or was cancelled; cleared when it runs again.
    pub failure_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When it first started running.
    pub started_at: Option<Timestamp>,
    /// When it last reached `completed`, `failed`, `blocked` or `cancelled`.
    pub finished_at: Option<Timestamp>,
    /// The highest iteration that recorded an agent call or a verification.
    pub iterations: u32,
    /// Everything its agent calls added up to, across all its sessions.
    pub totals: Totals,
    /// Guidance a person gave for the task's next prompt, until a prompt delivers it.
    pub guidance: Option<String>,
    /// The process that claimed it, while it is `running`.
    pub runner: Option<LeaseOwner>,
    /// How many times the task was claimed or taken back from its runner: the epoch a runner
    /// holds from its claim, which its writes for the task carry ([`Fence`](crate::Fence)).
    pub claim_epoch: u64,
}

/// Which tasks to list. Both filters apply when both are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub milestone: Option<MilestoneId>,
}

impl NewTask {
    /// What [`NewTask::new`] sets `max_iterations` to.
    pub const DEFAULT_MAX_ITERATIONS: u32 = 5;

    /// A task with no milestone, dependencies or verification, and default limits.
    pub fn new(title: Redacted, prompt: Redacted, working_dir: impl Into<PathBuf>) -> NewTask {
        NewTask {
            title,
            prompt,
            milestone: None,
            working_dir: working_dir.into(),
            max_iterations: NewTask::DEFAULT_MAX_ITERATIONS,
            max_turns: None,
            policy: None,
            verify_commands: Vec::new(),
            after: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        let invalid = |field, reason: &str| {
            Err(StoreError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.title.as_str().trim().is_empty() {
            return invalid("task title", "it is empty");
        }
        if self.max_iterations == 0 {
            return invalid("max iterations", "a task needs at least one iteration");
        }
        if self.max_turns == Some(0) {
            return invalid("max turns", "a call needs at least one turn");
        }
        if !self.working_dir.is_absolute() {
            return Err(StoreError::Invalid {
                field: "working directory",
                reason: format!(
                    "`{}` is relative; give an absolute path",
                    self.working_dir.display()
                ),
            });
        }
        path_text("working directory", &self.working_dir)?;
        if let Some(position) = self
            .verify_commands
            .iter()
            .position(|command| command.as_str().trim().is_empty())
        {
            return Err(StoreError::Invalid {
                field: "verification command",
                reason: format!("command {} is empty", position + 1),
            });
        }
        Ok(())
    }
}

pub(crate) const TASK_COLUMNS: &str = "id, title, prompt, status, milestone_id, working_dir, \
                            max_iterations, max_turns, session_policy, failure_reason, \
                            created_at, updated_at, started_at, finished_at, iterations, \
                            guidance, runner_pid, runner_host, runner_start_time, claim_epoch";
/// The column at which [`TOTALS_COLUMNS`] start in a task row.
pub(crate) const TASK_TOTALS_AT: usize = 20;

impl Store {
    /// Adds a task in state `pending`, with its verification commands and dependencies.
    ///
    /// Its milestone and every task in `after` must exist ([`StoreError::NotFound`]). Its
    /// title, prompt and commands come redacted.
    pub fn add_task(&mut self, task: &NewTask) -> Result<TaskId, StoreError> {
        task.validate()?;
        self.write("add a task", |transaction| {
            if let Some(milestone) = task.milestone {
                ensure_milestone(transaction, milestone)?;
            }
            for prerequisite in &task.after {
                ensure_task(transaction, *prerequisite)?;
            }
            let now = Timestamp::now();
            let title = task.title.as_str();
            let id = transaction
                .prepare_cached(
                    "INSERT INTO tasks (title, prompt, status, milestone_id, working_dir, \
                     max_iterations, max_turns, session_policy, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) RETURNING id",
                )?
                .query_row(
                    params![
                        title,
                        task.prompt.as_str(),
                        TaskStatus::Pending,
                        task.milestone,
                        path_text("working directory", &task.working_dir)?,
                        task.max_iterations,
                        task.max_turns,
                        task.policy,
                        now,
                    ],
                    |row| row.get(0),
                )?;
            let id = TaskId(id);

            let mut insert_command = transaction.prepare_cached(
                "INSERT INTO task_verify_commands (task_id, ordinal, command) VALUES (?1, ?2, ?3)",
            )?;
            for (ordinal, command) in task.verify_commands.iter().enumerate() {
                insert_command.execute(params![id, ordinal, command.as_str()])?;
            }
            // A new task has no dependents yet, so its dependencies cannot close a cycle.
            let mut insert_dependency = transaction.prepare_cached(
                "INSERT INTO task_dependencies (task_id, depends_on) VALUES (?1, ?2) \
                 ON CONFLICT DO NOTHING",
            )?;
            for prerequisite in &task.after {
                insert_dependency.execute(params![id, prerequisite])?;
            }
            let detail = json!({ "title": title });
            insert_event(
                transaction,
                now,
                Some(id),
                None,
                event_kind::TASK_ADDED,
                detail,
            )?;
            Ok(id)
        })
    }

    /// Makes `task` wait for `on` to complete.
    ///
    /// Refused with [`StoreError::DependencyCycle`], naming the cycle, when `on` already
    /// waits (directly or not) for `task`. Adding a dependency that exists is a no-op.
    pub fn add_dependency(&mut self, task: TaskId, on: TaskId) -> Result<(), StoreError> {
        self.write("add a task dependency", |transaction| {
            ensure_task(transaction, task)?;
            ensure_task(transaction, on)?;
            if let Some(path) = dependency_path(transaction, on, task)? {
                let mut cycle = Vec::with_capacity(path.len() + 1);
                cycle.push(task);
                cycle.extend(path);
                return Err(StoreError::DependencyCycle { task, on, cycle }.into());
            }
            let added = transaction
                .prepare_cached(
                    "INSERT INTO task_dependencies (task_id, depends_on) VALUES (?1, ?2) \
                 ON CONFLICT DO NOTHING",
                )?
                .execute(params![task, on])?;
            if added > 0 {
                let detail = json!({ "on": on.get() });
                insert_event(
                    transaction,
                    Timestamp::now(),
                    Some(task),
                    None,
                    event_kind::DEPENDENCY_ADDED,
                    detail,
                )?;
            }
            Ok(())
        })
    }

    /// The task with this id.
    pub fn task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.read("read a task", |connection| read_task(connection, id))
    }

    /// The tasks that match `filter`, in the order they were added.
    pub fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.read("list tasks", |connection| {
            if let Some(milestone) = filter.milestone {
                ensure_milestone(connection, milestone)?;
            }
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS}, {TOTALS_COLUMNS} FROM tasks \
                 WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) \
                 AND (CAST(?2 AS BIGINT) IS NULL OR milestone_id = ?2) \
                 ORDER BY id"
            ))?;
            let mut tasks = statement
                .query_map(params![filter.status, filter.milestone], task_from_row)?
                .collect::<crate::db::Result<Vec<_>>>()?;
            load_all_links(connection, &mut tasks)?;
            Ok(tasks)
        })
    }

    /// The tasks that may start now: pending, with every dependency completed. In the order
    /// they were added.
    pub fn ready_tasks(&self) -> Result<Vec<Task>, StoreError> {
        // One statement, the tasks with their links (a round trip on PostgreSQL, where a
        // scheduler looks at the queue again after each claim it lost): a task's row comes
        // once for each of its checks and dependencies, in order, or once with none.
        static READY: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {TASK_COLUMNS}, {TOTALS_COLUMNS}, link.kind, link.position, \
                     link.command \
                 FROM tasks AS task \
                 LEFT JOIN ( \
                     SELECT task_id, 0 AS kind, ordinal AS position, command \
                     FROM task_verify_commands \
                     UNION ALL \
                     SELECT task_id, 1, depends_on, NULL FROM task_dependencies \
                 ) AS link ON link.task_id = task.id \
                 WHERE status = 'pending' AND NOT EXISTS ( \
                     SELECT 1 FROM task_dependencies AS dependency \
                     JOIN tasks AS prerequisite ON prerequisite.id = dependency.depends_on \
                     WHERE dependency.task_id = task.id AND prerequisite.status <> 'completed') \
                 ORDER BY task.id, link.kind, link.position"
            )
        });
        self.read_statement("list ready tasks", |connection| {
            let mut last = None;
            let rows = connection.prepare_cached(&READY)?.query_map((), |row| {
                let id: TaskId = row.get(0)?;
                let task = if last == Some(id) {
                    None
                } else {
                    last = Some(id);
                    Some(task_from_row(row)?)
                };
                Ok((task, link_at(row, TASK_TOTALS_AT + 7)?))
            })?;
            let mut tasks: Vec<Task> = Vec::new();
            for row in rows {
                let (task, link) = row?;
                tasks.extend(task);
                if let (Some(link), Some(task)) = (link, tasks.last_mut()) {
                    add_link(task, link);
                }
            }
            Ok(tasks)
        })
    }

    /// Moves a task to state `to`, if the state machine allows it (see [`TaskStatus`]), and
    /// logs the change. Returns the state it left.
    ///
    /// `reason` (which comes redacted) is kept as the task's failure reason when `to` is `failed`,
    /// `blocked` or `cancelled`, and in the event log in every case. A task may only become `running` once
    /// all its dependencies completed ([`StoreError::DependenciesUnmet`]). To run a task, a
    /// runner claims it with [`Store::claim_task`], which also records who runs it.
    pub fn set_task_status(
        &mut self,
        id: TaskId,
        to: TaskStatus,
        reason: Option<&Redacted>,
    ) -> Result<TaskStatus, StoreError> {
        self.write(SET_STATUS, |transaction| {
            transition(transaction, id, to, reason, None)
        })
    }

    /// Makes a failed, blocked or cancelled task pending again, with `guidance` (when given;
    /// it comes redacted) for the next prompt. The task then continues its session where the policy allows.
    pub fn retry_task(
        &mut self,
        id: TaskId,
        guidance: Option<&Redacted>,
    ) -> Result<(), StoreError> {
        self.write("retry a task", |transaction| {
            let from = task_status(transaction, id)?;
            if !matches!(
                from,
                TaskStatus::Failed | TaskStatus::Blocked | TaskStatus::Cancelled
            ) {
                return Err(StoreError::InvalidTransition {
                    task: id,
                    from,
                    to: TaskStatus::Pending,
                }
                .into());
            }
            // Composed, so redacted whole: the guidance's end and the prefix could make a
            // secret the guidance alone did not show.
            let reason = match guidance {
                Some(text) => transaction.composed(format!("retried with guidance: {text}")),
                None => Redacted::trusted("retried"),
            };
            transition(transaction, id, TaskStatus::Pending, Some(&reason), None)?;
            if let Some(text) = guidance {
                set_guidance(transaction, id, Some(text))?;
            }
            Ok(())
        })
    }

    /// Sets (or, with `None`, clears) the guidance for a task's next prompt; it comes redacted.
    pub fn set_task_guidance(
        &mut self,
        id: TaskId,
        guidance: Option<&Redacted>,
    ) -> Result<(), StoreError> {
        self.write(SET_GUIDANCE, |transaction| {
            ensure_task(transaction, id)?;
            set_guidance(transaction, id, guidance)
        })
    }

    /// Puts back to `pending` every running task whose recorded runner is gone, as decided
    /// by `is_runner_alive` ([`LeaseOwner::is_alive`] is the usual choice), and returns them.
    /// A task with no recorded runner is left alone: nobody can say it was abandoned.
    pub fn requeue_orphaned_tasks(
        &mut self,
        is_runner_alive: impl Fn(&LeaseOwner) -> bool,
    ) -> Result<Vec<TaskId>, StoreError> {
        self.write("requeue orphaned tasks", |transaction| {
            let running: Vec<(TaskId, Option<LeaseOwner>)> = transaction
                .prepare_cached(
                    "SELECT id, runner_pid, runner_host, runner_start_time FROM tasks \
                     WHERE status = 'running' ORDER BY id",
                )?
                .query_map((), |row| Ok((row.get(0)?, runner_at(row, 1)?)))?
                .collect::<crate::db::Result<_>>()?;
            let mut requeued = Vec::new();
            for (id, runner) in running {
                let Some(runner) = runner else { continue };
                if is_runner_alive(&runner) {
                    continue;
                }
                let reason = transaction.composed(format!("its runner, {runner}, is gone"));
                transition(transaction, id, TaskStatus::Pending, Some(&reason), None)?;
                requeued.push(id);
            }
            Ok(requeued)
        })
    }
}

impl Store {
    /// Puts back to `pending` every running task whose runner has not heartbeat since
    /// `stale_before` (now less the lease TTL), on any host, and returns them. Its claim
    /// moves on, so the silent runner, should it come back, is fenced off. The task's open
    /// sessions that runner holds are abandoned in the same transaction, so the next claim
    /// can reopen them at once instead of waiting for their leases to expire.
    pub fn requeue_tasks_of_silent_runners(
        &mut self,
        stale_before: Timestamp,
    ) -> Result<Vec<TaskId>, StoreError> {
        self.write("requeue the tasks of silent runners", |transaction| {
            let silent = crate::runners::silent_runner_tasks(transaction, stale_before)?;
            let mut requeued = Vec::new();
            for (id, runner) in silent {
                crate::runners::log_silent(transaction, id, &runner)?;
                crate::sessions::abandon_sessions_of_silent_runner(
                    transaction,
                    id,
                    &runner,
                    Timestamp::now(),
                )?;
                let reason = transaction.composed(format!(
                    "its runner, {runner}, has been silent for longer than the lease TTL"
                ));
                transition(transaction, id, TaskStatus::Pending, Some(&reason), None)?;
                requeued.push(id);
            }
            Ok(requeued)
        })
    }
}

impl Batch<'_> {
    /// [`Store::set_task_status`], as part of the batch.
    pub fn set_task_status(
        &mut self,
        id: TaskId,
        to: TaskStatus,
        reason: Option<&Redacted>,
    ) -> Result<TaskStatus, StoreError> {
        self.apply(SET_STATUS, |transaction| {
            transition(transaction, id, to, reason, None)
        })
    }

    /// [`Store::set_task_guidance`], as part of the batch.
    pub fn set_task_guidance(
        &mut self,
        id: TaskId,
        guidance: Option<&Redacted>,
    ) -> Result<(), StoreError> {
        self.apply(SET_GUIDANCE, |transaction| {
            ensure_task(transaction, id)?;
            set_guidance(transaction, id, guidance)
        })
    }
}

const SET_STATUS: &str = "change a task's state";

const SET_GUIDANCE: &str = "set a task's guidance";

/// Moves task `id` to `to` inside `transaction`, enforcing the state machine, recording
/// `runner` when the task starts running and forgetting it when the task stops. Returns the
/// state it left.
fn transition(
    transaction: &Write<'_>,
    id: TaskId,
    to: TaskStatus,
    reason: Option<&Redacted>,
    runner: Option<&LeaseOwner>,
) -> Result<TaskStatus, Failure> {
    if transaction.deferring()
        && runner.is_none()
        && finish_in_one_statement(transaction, id, to, reason, true)?.is_some()
    {
        return Ok(TaskStatus::Running);
    }
    transition_returning(transaction, id, to, reason, runner).map(|(from, _)| from)
}

/// [`transition`], returning the task as the change left it too (without its checks and
/// dependencies), from the update itself.
pub(crate) fn transition_returning(
    transaction: &Write<'_>,
    id: TaskId,
    to: TaskStatus,
    reason: Option<&Redacted>,
    runner: Option<&LeaseOwner>,
) -> Result<(TaskStatus, Task), Failure> {
    if transaction.is_postgres()
        && runner.is_none()
        && let Some(Some(task)) = finish_in_one_statement(transaction, id, to, reason, false)?
    {
        return Ok((TaskStatus::Running, task));
    }
    let (from, waiting) = if to == TaskStatus::Running {
        status_and_waiting(transaction, id)?
    } else {
        (task_status(transaction, id)?, false)
    };
    if !from.can_become(to) {
        return Err(StoreError::InvalidTransition { task: id, from, to }.into());
    }
    if waiting {
        let waiting_on = unmet_dependencies(transaction, id)?;
        if !waiting_on.is_empty() {
            return Err(StoreError::DependenciesUnmet {
                task: id,
                waiting_on,
            }
            .into());
        }
    }
    let now = Timestamp::now();
    let reason = reason.map(Redacted::as_str);
    let failure_reason = match to {
        TaskStatus::Failed | TaskStatus::Blocked | TaskStatus::Cancelled => reason,
        TaskStatus::Pending | TaskStatus::Running | TaskStatus::Completed => None,
    };
    let finished_at = to.is_finished().then_some(now);
    // A claim, and a running task put back, move the claim on: whoever held it before is
    // fenced off. A person's cancel does not, so the runner still records what it paid for.
    let new_claim =
        to == TaskStatus::Running || (from == TaskStatus::Running && to == TaskStatus::Pending);
    let task = transaction
        .prepare_cached(&format!(
            "UPDATE tasks SET status = ?2, failure_reason = ?3, updated_at = ?4, \
             started_at = CASE WHEN ?2 = 'running' THEN coalesce(started_at, ?4) \
                               ELSE started_at END, \
             finished_at = ?5, runner_pid = ?6, runner_host = ?7, runner_start_time = ?8, \
             claim_epoch = claim_epoch + ?9 \
             WHERE id = ?1 RETURNING {TASK_COLUMNS}, {TOTALS_COLUMNS}"
        ))?
        .query_row(
            params![
                id,
                to,
                failure_reason,
                now,
                finished_at,
                runner.map(|runner| runner.pid),
                runner.map(|runner| runner.host.as_str()),
                runner.map(|runner| runner.start_time),
                i64::from(new_claim),
            ],
            task_from_row,
        )?;
    let detail = json!({
        "from": from.as_str(),
        "to": to.as_str(),
        "reason": reason,
        "runner": runner.map(|runner| json!({ "pid": runner.pid, "host": runner.host })),
    });
    let kind = event_kind::TASK_STATUS;
    insert_event(transaction, now, Some(id), None, kind, detail)?;
    Ok((from, task))
}

/// The statement of a running task that completes, fails or blocks, on PostgreSQL: the one
/// state each of those can follow, so the change and its event are one statement, which
/// ends with `ending`.
fn finish_sql(ending: &str) -> String {
    format!(
        "WITH changed AS ( \
             UPDATE tasks SET status = ?2, failure_reason = ?3, updated_at = ?4, \
                 finished_at = ?4, runner_pid = NULL, runner_host = NULL, \
                 runner_start_time = NULL \
             WHERE id = ?1 AND status = 'running' \
             RETURNING {TASK_COLUMNS}, {TOTALS_COLUMNS}), \
         logged AS ( \
             INSERT INTO events (at, task_id, session_id, kind, detail) \
             SELECT ?4, id, NULL, ?5, ?6 FROM changed) \
         {ending}"
    )
}

/// A running task's finish on PostgreSQL, in one statement (see [`finish_sql`]); `None` for a
/// change that is not a finish, for which nothing was run. Run at once, it returns the task
/// as the finish left it, or `None` for a task that is not running (nothing was written:
/// [`transition_returning`] then goes the long way, which says why it refuses). `deferred`,
/// it is sent with the batch's commit, refusing there when the task is not running (the
/// batch then runs again the long way), and returns `None`.
fn finish_in_one_statement(
    transaction: &Write<'_>,
    id: TaskId,
    to: TaskStatus,
    reason: Option<&Redacted>,
    deferred: bool,
) -> Result<Option<Option<Task>>, Failure> {
    static RETURNING: LazyLock<String> = LazyLock::new(|| finish_sql("SELECT * FROM changed"));
    static REFUSING: LazyLock<String> = LazyLock::new(|| {
        finish_sql(
            "SELECT baton_refuse('change a task''s state') \
             WHERE NOT EXISTS (SELECT 1 FROM changed)",
        )
    });
    let failure_reason = match to {
        TaskStatus::Completed => None,
        TaskStatus::Failed | TaskStatus::Blocked => reason.map(Redacted::as_str),
        TaskStatus::Pending | TaskStatus::Running | TaskStatus::Cancelled => return Ok(None),
    };
    // As `transition_returning` words it.
    let detail = transaction.detail(json!({
        "from": TaskStatus::Running.as_str(),
        "to": to.as_str(),
        "reason": reason.map(Redacted::as_str),
        "runner": None::<serde_json::Value>,
    }));
    let now = Timestamp::now();
    let values = params![
        id,
        to,
        failure_reason,
        now,
        event_kind::TASK_STATUS,
        detail.as_str()
    ];
    if deferred {
        transaction.defer(&REFUSING, values)?;
        return Ok(Some(None));
    }
    Ok(Some(
        transaction
            .prepare_cached(&RETURNING)?
            .query_row(values, task_from_row)
            .optional()?,
    ))
}

fn read_task(connection: &Connection, id: TaskId) -> Result<Task, Failure> {
    let mut task = connection
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS}, {TOTALS_COLUMNS} FROM tasks WHERE id = ?1"
        ))?
        .query_row([id], task_from_row)
        .optional()?
        .ok_or(StoreError::NotFound(Missing::Task(id)))?;
    load_links(connection, &mut task)?;
    Ok(task)
}

fn task_status(connection: &Connection, id: TaskId) -> Result<TaskStatus, Failure> {
    Ok(connection
        .prepare_cached("SELECT status FROM tasks WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?
        .ok_or(StoreError::NotFound(Missing::Task(id)))?)
}

/// The task's state, and whether a task it depends on is not completed yet: what a claim
/// checks, in one statement (the list of those tasks is read only for a refusal).
pub(crate) fn status_and_waiting(
    connection: &Connection,
    id: TaskId,
) -> Result<(TaskStatus, bool), Failure> {
    Ok(connection
        .prepare_cached(
            "SELECT status, EXISTS (SELECT 1 FROM task_dependencies AS dependency \
                 JOIN tasks AS prerequisite ON prerequisite.id = dependency.depends_on \
                 WHERE dependency.task_id = tasks.id AND prerequisite.status <> 'completed') \
             FROM tasks WHERE id = ?1",
        )?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .ok_or(StoreError::NotFound(Missing::Task(id)))?)
}

fn set_guidance(
    transaction: &Write<'_>,
    id: TaskId,
    guidance: Option<&Redacted>,
) -> Result<(), Failure> {
    transaction
        .prepare_cached("UPDATE tasks SET guidance = ?2 WHERE id = ?1")?
        .execute(params![id, guidance.map(Redacted::as_str)])?;
    Ok(())
}

/// Reads a runner from its pid, host and start-time columns.
fn runner_at(row: &Row<'_>, first: usize) -> crate::db::Result<Option<LeaseOwner>> {
    let pid: Option<u32> = row.get(first)?;
    let Some(pid) = pid else { return Ok(None) };
    Ok(Some(LeaseOwner {
        pid,
        host: row.get(first + 1)?,
        start_time: row.get(first + 2)?,
    }))
}

/// The dependencies of a task that have not completed, in id order.
pub(crate) fn unmet_dependencies(
    connection: &Connection,
    id: TaskId,
) -> crate::db::Result<Vec<TaskId>> {
    let mut statement = connection.prepare_cached(
        "SELECT dependency.depends_on FROM task_dependencies AS dependency \
         JOIN tasks AS prerequisite ON prerequisite.id = dependency.depends_on \
         WHERE dependency.task_id = ?1 AND prerequisite.status <> 'completed' \
         ORDER BY dependency.depends_on",
    )?;
    statement.query_map([id], |row| row.get(0))?.collect()
}

/// A chain of dependencies leading from `from` to `to` (`from` waits for …, which waits for
/// `to`), both ends included, when there is one. Breadth-first, so the chain is a shortest
/// one, which makes the reported cycle as short as it can be.
fn dependency_path(
    connection: &Connection,
    from: TaskId,
    to: TaskId,
) -> crate::db::Result<Option<Vec<TaskId>>> {
    let mut statement =
        connection.prepare_cached("SELECT depends_on FROM task_dependencies WHERE task_id = ?1")?;
    // Each reached task, and the task it was reached from.
    let mut reached_from: HashMap<TaskId, Option<TaskId>> = HashMap::from([(from, None)]);
    let mut queue = VecDeque::from([from]);
    while let Some(current) = queue.pop_front() {
        if current == to {
            let mut path = vec![current];
            let mut cursor = current;
            while let Some(Some(previous)) = reached_from.get(&cursor) {
                path.push(*previous);
                cursor = *previous;
            }
            path.reverse();
            return Ok(Some(path));
        }
        let next: Vec<TaskId> = statement
            .query_map([current], |row| row.get(0))?
            .collect::<crate::db::Result<_>>()?;
        for task in next {
            reached_from.entry(task).or_insert_with(|| {
                queue.push_back(task);
                Some(current)
            });
        }
    }
    Ok(None)
}

pub(crate) fn task_from_row(row: &Row<'_>) -> crate::db::Result<Task> {
    let working_dir: String = row.get(5)?;
    Ok(Task {
        id: row.get(0)?,
        title: row.get(1)?,
        prompt: row.get(2)?,
        status: row.get(3)?,
        milestone: row.get(4)?,
        working_dir: PathBuf::from(working_dir),
        max_iterations: row.get(6)?,
        max_turns: row.get(7)?,
        policy: row.get(8)?,
        failure_reason: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        started_at: row.get(12)?,
        finished_at: row.get(13)?,
        iterations: row.get(14)?,
        guidance: row.get(15)?,
        runner: runner_at(row, 16)?,
        claim_epoch: row.get(19)?,
        totals: totals_at(row, TASK_TOTALS_AT)?,
        verify_commands: Vec::new(),
        after: Vec::new(),
    })
}

/// Fills in the verification commands and dependencies of every task of `tasks` (ordered by
/// id), in two queries whatever their number: one a task would cost two round trips to a
/// PostgreSQL server each. The tables are read between the first task's id and the last's,
/// so that a filtered list reads no further than it reaches.
fn load_all_links(connection: &Connection, tasks: &mut [Task]) -> crate::db::Result<()> {
    let (Some(first), Some(last)) = (tasks.first(), tasks.last()) else {
        return Ok(());
    };
    let range = [first.id, last.id];
    let commands: Vec<(TaskId, String)> = connection
        .prepare_cached(
            "SELECT task_id, command FROM task_verify_commands WHERE task_id BETWEEN ?1 AND ?2 \
             ORDER BY task_id, ordinal",
        )?
        .query_map(range, |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<crate::db::Result<_>>()?;
    let dependencies: Vec<(TaskId, TaskId)> = connection
        .prepare_cached(
            "SELECT task_id, depends_on FROM task_dependencies WHERE task_id BETWEEN ?1 AND ?2 \
             ORDER BY task_id, depends_on",
        )?
        .query_map(range, |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<crate::db::Result<_>>()?;
    let position = |tasks: &[Task], id: TaskId| tasks.binary_search_by_key(&id, |task| task.id);
    for (id, command) in commands {
        if let Ok(index) = position(tasks, id) {
            tasks[index].verify_commands.push(command);
        }
    }
    for (id, on) in dependencies {
        if let Ok(index) = position(tasks, id) {
            tasks[index].after.push(on);
        }
    }
    Ok(())
}

/// Fills in a task's verification commands and dependencies, which live in their own tables.
pub(crate) fn load_links(connection: &Connection, task: &mut Task) -> crate::db::Result<()> {
    // Both lists in one statement (each statement is a round trip on PostgreSQL): the checks
    // in their order, then the tasks it waits on.
    let links = connection
        .prepare_cached(
            "SELECT 0, ordinal, command FROM task_verify_commands WHERE task_id = ?1 \
             UNION ALL \
             SELECT 1, depends_on, NULL FROM task_dependencies WHERE task_id = ?1 \
             ORDER BY 1, 2",
        )?
        .query_map([task.id], |row| link_at(row, 0))?
        .filter_map(Result::transpose)
        .collect::<crate::db::Result<Vec<_>>>()?;
    set_links(task, links);
    Ok(())
}

/// The link in the three columns from `first` (whether it is a dependency, its position or
/// task, its command); `None` where they are NULL (a task without links, outer-joined).
pub(crate) fn link_at(row: &Row<'_>, first: usize) -> crate::db::Result<Option<Link>> {
    let is_dependency: Option<bool> = row.get(first)?;
    Ok(match is_dependency {
        None => None,
        Some(true) => Some(Link::After(row.get(first + 1)?)),
        Some(false) => Some(Link::Check(row.get(first + 2)?)),
    })
}

/// Sets the task's checks and dependencies from its links, in their order.
pub(crate) fn set_links(task: &mut Task, links: Vec<Link>) {
    task.verify_commands = Vec::new();
    task.after = Vec::new();
    for link in links {
        add_link(task, link);
    }
}

/// Adds one of the task's links after those it has.
fn add_link(task: &mut Task, link: Link) {
    match link {
        Link::Check(command) => task.verify_commands.push(command),
        Link::After(id) => task.after.push(id),
    }
}

/// One row of [`load_links`].
pub(crate) enum Link {
    Check(String),
    After(TaskId),
}
