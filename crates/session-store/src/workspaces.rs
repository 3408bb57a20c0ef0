//! Where a task's work lives (its isolation, worktree, branch, base and head, and how it was
//! delivered) and the check processes that run for it.
//!
//! The ledger knows nothing of git: every field is a string or a number that the orchestrator
//! gives and reads back. Paths, commits and branch names are kept as given; a check's command
//! comes [`Redacted`], and the two reasons (which the orchestrator builds from git's messages)
//! pass through the redactor the store was opened with, as the texts it composes do.

use crate::db::{OptionalExtension, Row, params};
use redact::Redacted;

use crate::error::{Failure, StoreError};
use crate::ids::TaskId;
use crate::lookup::ensure_task;
use crate::process::{AgentProcess, this_host};
use crate::store::{Batch, Store, Write};
use crate::units::Timestamp;

/// A task's workspace as the ledger holds it. Every field is `None` until it is known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskWorkspace {
    /// `worktree` or `none`.
    pub isolation: Option<String>,
    /// Why that isolation, in words a person reads.
    pub isolation_reason: Option<String>,
    /// The repository's main worktree (its top level).
    pub repository: Option<String>,
    /// The task's directory relative to the top level; empty at the top.
    pub subdirectory: Option<String>,
    /// Fixed for the life of the task's sessions once set.
    pub worktree_path: Option<String>,
    pub branch: Option<String>,
    /// The revision a person named at `task add`, until the first claim resolves it.
    pub base_revision: Option<String>,
    pub base_commit: Option<String>,
    pub base_branch: Option<String>,
    pub head_commit: Option<String>,
    pub files_changed: Option<u64>,
    pub insertions: Option<u64>,
    pub deletions: Option<u64>,
    /// `pending`, `branch`, `merged`, `conflict` or `skipped`.
    pub delivery: Option<String>,
    pub delivery_reason: Option<String>,
    /// The URL of the repository's remote, credentials left out; `None` when it has none.
    /// A runner on another host finds its own clone through it.
    pub remote_url: Option<String>,
    /// The host whose directories `repository` and `worktree_path` are, once known.
    pub host: Option<String>,
}

/// A check command's process group while it runs: the pid of its leader (the group's id),
/// when that process started, and on which host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckProcess {
    pub task: TaskId,
    pub pid: u32,
    /// Clock ticks since boot (Linux); 0 where unknown.
    pub start_time: u64,
    pub host: String,
    pub command: String,
    pub started_at: Timestamp,
}

impl CheckProcess {
    /// Whether this very process still runs on this machine; a process recorded on another
    /// host is never reported running, since it cannot be stopped from here.
    pub fn is_running_here(&self) -> bool {
        match this_host() {
            Ok(host) if host == self.host => {}
            _ => return false,
        }
        AgentProcess {
            pid: self.pid,
            start_time: self.start_time,
        }
        .is_running()
    }
}

const WORKSPACE_COLUMNS: &str = "isolation, isolation_reason, repository, subdirectory, \
     worktree_path, branch, base_revision, base_commit, base_branch, head_commit, \
     files_changed, insertions, deletions, delivery, delivery_reason, remote_url, host";

const SET_WORKSPACE: &str = "record a task's workspace";

/// `column = excluded.column` for every workspace column and `updated_at`: a new record of a
/// task's workspace replaces the old one whole.
fn upsert_assignments() -> String {
    WORKSPACE_COLUMNS
        .split(',')
        .map(str::trim)
        .chain(["updated_at"])
        .map(|column| format!("{column} = excluded.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// The workspace recorded for a task, if any.
    pub fn task_workspace(&self, task: TaskId) -> Result<Option<TaskWorkspace>, StoreError> {
        self.read("read a task's workspace", |connection| {
            ensure_task(connection, task)?;
            Ok(connection
                .prepare_cached(&format!(
                    "SELECT {WORKSPACE_COLUMNS} FROM task_workspaces WHERE task_id = ?1"
                ))?
                .query_row([task], workspace_from_row)
                .optional()?)
        })
    }

    /// Every recorded workspace, by task id.
    pub fn task_workspaces(&self) -> Result<Vec<(TaskId, TaskWorkspace)>, StoreError> {
        self.read("list task workspaces", |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT task_id, {WORKSPACE_COLUMNS} FROM task_workspaces ORDER BY task_id"
            ))?;
            let rows = statement
                .query_map((), |row| Ok((row.get(0)?, workspace_from_row_at(row, 1)?)))?
                .collect::<crate::db::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Records a task's workspace whole, replacing what was recorded before. The reasons are
    /// redacted on the way in.
    pub fn set_task_workspace(
        &mut self,
        task: TaskId,
        workspace: &TaskWorkspace,
    ) -> Result<(), StoreError> {
        self.write(SET_WORKSPACE, |transaction| {
            set_workspace(transaction, task, workspace)
        })
    }

    /// Records that a check's process group runs for `task`, before Baton waits on it; the
    /// process's start time and this host are read here, while it runs.
    pub fn record_check_process(
        &mut self,
        task: TaskId,
        pid: u32,
        command: &Redacted,
    ) -> Result<(), StoreError> {
        let start_time = AgentProcess::observe(pid).start_time;
        let host = this_host().map(str::to_owned).unwrap_or_default();
        self.write("record a check process", |transaction| {
            ensure_task(transaction, task)?;
            transaction
                .prepare_cached(
                    "INSERT INTO check_processes \
                     (task_id, pid, start_time, host, command, started_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (task_id, pid) DO UPDATE SET start_time = excluded.start_time, \
                     host = excluded.host, command = excluded.command, \
                     started_at = excluded.started_at",
                )?
                .execute(params![
                    task,
                    pid,
                    i64::try_from(start_time).unwrap_or(i64::MAX),
                    host,
                    command.as_str(),
                    Timestamp::now()
                ])?;
            Ok(())
        })
    }

    /// Forgets a check process that ended (or was stopped). Forgetting one that is not
    /// recorded changes nothing.
    pub fn clear_check_process(&mut self, task: TaskId, pid: u32) -> Result<(), StoreError> {
        self.write(CLEAR_CHECK, |transaction| {
            clear_check(transaction, task, pid)
        })
    }

    /// Every check process recorded as running, oldest first.
    pub fn check_processes(&self) -> Result<Vec<CheckProcess>, StoreError> {
        self.read("list check processes", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT task_id, pid, start_time, host, command, started_at \
                 FROM check_processes ORDER BY started_at, task_id, pid",
            )?;
            let rows = statement
                .query_map((), |row| {
                    let start_time: i64 = row.get(2)?;
                    Ok(CheckProcess {
                        task: row.get(0)?,
                        pid: row.get(1)?,
                        start_time: u64::try_from(start_time).unwrap_or(0),
                        host: row.get(3)?,
                        command: row.get(4)?,
                        started_at: row.get(5)?,
                    })
                })?
                .collect::<crate::db::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

impl Batch<'_> {
    /// [`Store::clear_check_process`], as part of the batch.
    pub fn clear_check_process(&mut self, task: TaskId, pid: u32) -> Result<(), StoreError> {
        self.apply(CLEAR_CHECK, |transaction| {
            clear_check(transaction, task, pid)
        })
    }

    /// [`Store::set_task_workspace`], as part of the batch.
    pub fn set_task_workspace(
        &mut self,
        task: TaskId,
        workspace: &TaskWorkspace,
    ) -> Result<(), StoreError> {
        self.apply(SET_WORKSPACE, |transaction| {
            set_workspace(transaction, task, workspace)
        })
    }
}

const CLEAR_CHECK: &str = "forget a check process";

fn clear_check(transaction: &Write<'_>, task: TaskId, pid: u32) -> Result<(), Failure> {
    transaction
        .prepare_cached("DELETE FROM check_processes WHERE task_id = ?1 AND pid = ?2")?
        .execute(params![task, pid])?;
    Ok(())
}

fn set_workspace(
    transaction: &Write<'_>,
    task: TaskId,
    workspace: &TaskWorkspace,
) -> Result<(), Failure> {
    ensure_task(transaction, task)?;
    let count = |value: Option<u64>| value.map(|value| i64::try_from(value).unwrap_or(i64::MAX));
    transaction
        .prepare_cached(&format!(
            "INSERT INTO task_workspaces (task_id, {WORKSPACE_COLUMNS}, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) \
             ON CONFLICT (task_id) DO UPDATE SET {}",
            upsert_assignments()
        ))?
        .execute(params![
            task,
            workspace.isolation,
            workspace
                .isolation_reason
                .clone()
                .map(|reason| transaction.composed(reason).into_string()),
            workspace.repository,
            workspace.subdirectory,
            workspace.worktree_path,
            workspace.branch,
            workspace.base_revision,
            workspace.base_commit,
            workspace.base_branch,
            workspace.head_commit,
            count(workspace.files_changed),
            count(workspace.insertions),
            count(workspace.deletions),
            workspace.delivery,
            workspace
                .delivery_reason
                .clone()
                .map(|reason| transaction.composed(reason).into_string()),
            workspace.remote_url,
            workspace.host,
            Timestamp::now(),
        ])?;
    Ok(())
}

fn workspace_from_row(row: &Row<'_>) -> crate::db::Result<TaskWorkspace> {
    workspace_from_row_at(row, 0)
}

fn workspace_from_row_at(row: &Row<'_>, first: usize) -> crate::db::Result<TaskWorkspace> {
    let count = |index: usize| -> crate::db::Result<Option<u64>> {
        let value: Option<i64> = row.get(first + index)?;
        Ok(value.map(|value| u64::try_from(value).unwrap_or(0)))
    };
    Ok(TaskWorkspace {
        isolation: row.get(first)?,
        isolation_reason: row.get(first + 1)?,
        repository: row.get(first + 2)?,
        subdirectory: row.get(first + 3)?,
        worktree_path: row.get(first + 4)?,
        branch: row.get(first + 5)?,
        base_revision: row.get(first + 6)?,
        base_commit: row.get(first + 7)?,
        base_branch: row.get(first + 8)?,
        head_commit: row.get(first + 9)?,
        files_changed: count(10)?,
        insertions: count(11)?,
        deletions: count(12)?,
        delivery: row.get(first + 13)?,
        delivery_reason: row.get(first + 14)?,
        remote_url: row.get(first + 15)?,
        host: row.get(first + 16)?,
    })
}
