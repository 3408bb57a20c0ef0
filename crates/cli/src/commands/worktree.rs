//! Task worktrees at the command line: what `task add --isolation/--base` records,
//! `baton worktree list` and `remove`, `baton task diff`, and the lines `task show` adds.
//!
//! Baton never deletes work that is not on a branch: removal refuses a worktree that holds
//! uncommitted changes (listing them, exit 2) unless `--force`, and a branch is deleted only
//! when asked, and only when merged into its base unless `--force`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use git::{GitError, Removal, Repository};
use serde::Serialize;
use session_store::{Task, TaskFilter, TaskId, TaskStatus, TaskWorkspace};

use crate::error::{CliError, Outcome, Result};
use crate::flags::{Isolation, WorktreeCommand};
use crate::human::{Align, Table};
use crate::output::Ui;
use crate::settings::Context;

/// The workspace a task asks for at `task add`: `None` when it asks for nothing and its
/// repository has no remote. `--base` is resolved now, so that a mistyped revision is
/// refused before anything is written, and the task starts from that very commit however
/// the revision moves later. A task that may run in a worktree records its repository's
/// remote too ([`remote_of`]), so that a runner on another host can find its own clone.
pub fn requested(
    context: &Context,
    working_dir: &Path,
    isolation: Option<Isolation>,
    base: Option<&str>,
) -> Result<Option<TaskWorkspace>> {
    let mut workspace = if isolation == Some(Isolation::None) {
        TaskWorkspace::default()
    } else {
        remote_of(context, working_dir)
    };
    if isolation.is_none() && base.is_none() && workspace.remote_url.is_none() {
        return Ok(None);
    }
    workspace = TaskWorkspace {
        isolation: isolation.map(|isolation| isolation.as_str().to_owned()),
        ..workspace
    };
    if let Some(base) = base {
        if isolation == Some(Isolation::None) {
            return Err(
                CliError::usage("--base needs a worktree, not --isolation none")
                    .with_hint("drop --base, or drop --isolation none"),
            );
        }
        let git = crate::workspaces::git(&context.env);
        let repository = Repository::discover(&git, working_dir)
            .map_err(git_failed)?
            .ok_or_else(|| {
                CliError::usage(format!(
                    "--base needs a git repository, and {} is in none",
                    working_dir.display()
                ))
                .with_hint("run the task in a repository (--workdir DIR), or drop --base")
            })?;
        let commit = repository.resolve_commit(base).map_err(|error| {
            CliError::usage(format!("--base `{base}` names no commit"))
                .with_hint("give a branch, a tag or a commit of the task's repository")
                .with_source(error)
        })?;
        workspace.base_revision = Some(commit.as_str().to_owned());
    }
    Ok(Some(workspace))
}

/// Where a new task's repository comes from, when the directory is in a repository with a
/// commit and a remote named `run.remote`: the remote's URL (credentials left out), the
/// repository and the directory within it, and the commit and branch `HEAD` names now,
/// which a runner on another host starts from (on this host the claim decides the base, as
/// it always did). Anything else, a failure of git included, records nothing: the claim
/// decides then as it always did.
fn remote_of(context: &Context, working_dir: &Path) -> TaskWorkspace {
    let git = crate::workspaces::git(&context.env);
    let remote = context.settings.get(crate::keys::RUN_REMOTE);
    let found = || -> std::result::Result<Option<TaskWorkspace>, GitError> {
        let Some(repository) = Repository::discover(&git, working_dir)? else {
            return Ok(None);
        };
        let Some(head) = repository.try_resolve_commit("HEAD")? else {
            return Ok(None);
        };
        let Some(url) = repository.remote_url(&remote)? else {
            return Ok(None);
        };
        let top = repository.top_level().to_owned();
        Ok(Some(TaskWorkspace {
            remote_url: Some(git::without_credentials(&url)),
            repository: Some(
                repository
                    .main_worktree()
                    .unwrap_or(&top)
                    .to_string_lossy()
                    .into_owned(),
            ),
            subdirectory: Some(repository.subdirectory().to_string_lossy().into_owned()),
            base_commit: Some(head.as_str().to_owned()),
            base_branch: repository.current_branch(&top)?,
            ..TaskWorkspace::default()
        }))
    };
    found().ok().flatten().unwrap_or_default()
}

/// The lines `task show` adds for a task with a worktree: nothing for one without.
pub fn workspace_fields(workspace: Option<&TaskWorkspace>) -> Vec<(&'static str, String)> {
    let Some(workspace) = workspace.filter(|workspace| workspace.branch.is_some()) else {
        return Vec::new();
    };
    let text = |value: &Option<String>| value.clone().unwrap_or_else(|| String::from("-"));
    let short = |value: &Option<String>| {
        value.as_deref().map_or_else(
            || String::from("-"),
            |commit| commit.chars().take(12).collect(),
        )
    };
    let mut fields = vec![
        ("branch", text(&workspace.branch)),
        ("worktree", text(&workspace.worktree_path)),
        (
            "base",
            match &workspace.base_branch {
                Some(branch) => format!("{} ({branch})", short(&workspace.base_commit)),
                None => short(&workspace.base_commit),
            },
        ),
        ("head", short(&workspace.head_commit)),
    ];
    if let (Some(files), Some(insertions), Some(deletions)) = (
        workspace.files_changed,
        workspace.insertions,
        workspace.deletions,
    ) {
        let noun = if files == 1 { "file" } else { "files" };
        fields.push((
            "diff",
            format!("{files} {noun} changed, +{insertions} -{deletions}"),
        ));
    }
    let delivery = match (&workspace.delivery, &workspace.delivery_reason) {
        (Some(delivery), Some(reason)) => format!("{delivery}: {reason}"),
        (Some(delivery), None) => delivery.clone(),
        _ => String::from("-"),
    };
    fields.push(("delivery", delivery));
    fields
}

/// Runs a `baton worktree` command.
pub fn run(command: WorktreeCommand, context: &Context, ui: &Ui) -> Result<Outcome> {
    match command {
        WorktreeCommand::List => list(context, ui),
        WorktreeCommand::Remove {
            id,
            finished,
            force,
            delete_branch,
        } => {
            let options = RemoveOptions {
                force,
                delete_branch,
            };
            remove(id.map(TaskId), finished, options, context, ui)
        }
    }
}

/// One task's worktree, as `worktree list` shows it.
#[derive(Debug, Serialize)]
struct WorktreeJson {
    task: i64,
    status: &'static str,
    branch: Option<String>,
    path: Option<String>,
    /// `present`, `missing` (deleted, or removed) or `locked` (a task runs in it).
    state: &'static str,
    /// Whether it holds changes not committed on its branch; null when it is missing.
    uncommitted: Option<bool>,
}

fn list(context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    let git = crate::workspaces::git(&context.env);
    let mut rows = Vec::new();
    for (id, workspace) in store.task_workspaces()? {
        let Some(path) = workspace.worktree_path.clone() else {
            continue;
        };
        let task = store.task(id)?;
        let (state, uncommitted) = inspect(&git, &workspace, Path::new(&path))?;
        rows.push(WorktreeJson {
            task: id.get(),
            status: task.status.as_str(),
            branch: workspace.branch.clone(),
            path: Some(path),
            state,
            uncommitted,
        });
    }
    if context.json {
        ui.json(&rows)?;
    } else if rows.is_empty() {
        ui.print("No task worktrees.\n");
    } else {
        ui.print(&list_table(&rows));
    }
    Ok(Outcome::Success)
}

fn list_table(rows: &[WorktreeJson]) -> String {
    let mut table = Table::new(&[
        ("TASK", Align::Right),
        ("STATUS", Align::Left),
        ("BRANCH", Align::Left),
        ("STATE", Align::Left),
        ("CHANGES", Align::Left),
        ("PATH", Align::Left),
    ]);
    for row in rows {
        table.row(vec![
            row.task.to_string(),
            row.status.to_owned(),
            row.branch.clone().unwrap_or_default(),
            row.state.to_owned(),
            match row.uncommitted {
                Some(true) => String::from("uncommitted"),
                Some(false) => String::from("clean"),
                None => String::from("-"),
            },
            row.path.clone().unwrap_or_default(),
        ]);
    }
    table.render()
}

/// Whether the worktree is there (and locked), and whether it holds uncommitted changes.
fn inspect(
    git: &git::Git,
    workspace: &TaskWorkspace,
    path: &Path,
) -> Result<(&'static str, Option<bool>)> {
    let Some(repository) = open_repository(git, workspace)? else {
        return Ok(("missing", None));
    };
    let found = repository.find_worktree(path).map_err(git_failed)?;
    match found {
        Some(worktree) if worktree.prunable.is_none() && path.is_dir() => {
            let clean = repository.is_clean(path).map_err(git_failed)?;
            let state = if worktree.locked.is_some() {
                "locked"
            } else {
                "present"
            };
            Ok((state, Some(!clean)))
        }
        _ => Ok(("missing", None)),
    }
}

fn open_repository(git: &git::Git, workspace: &TaskWorkspace) -> Result<Option<Repository>> {
    let Some(repository) = workspace.repository.as_deref() else {
        return Ok(None);
    };
    if !Path::new(repository).is_dir() {
        return Ok(None);
    }
    Repository::discover(git, Path::new(repository)).map_err(git_failed)
}

/// What `worktree remove` may do besides removing a clean worktree.
#[derive(Debug, Clone, Copy)]
struct RemoveOptions {
    force: bool,
    delete_branch: bool,
}

/// What `worktree remove` did to one task's worktree.
#[derive(Debug, Serialize)]
struct RemovedJson {
    task: i64,
    path: String,
    /// `removed`, `pruned` (its directory was already gone) or `absent`.
    worktree: &'static str,
    /// The branch deleted, and the commit it pointed at.
    deleted_branch: Option<String>,
    deleted_head: Option<String>,
}

fn remove(
    id: Option<TaskId>,
    finished: bool,
    options: RemoveOptions,
    context: &Context,
    ui: &Ui,
) -> Result<Outcome> {
    let store = context.open_store()?;
    let targets: Vec<Task> = match id {
        Some(id) => vec![store.task(id)?],
        None if finished => store.tasks(&TaskFilter {
            status: Some(TaskStatus::Completed),
            milestone: None,
        })?,
        None => {
            return Err(CliError::usage("name a task, or give --finished")
                .with_hint("`baton worktree list` shows the task worktrees"));
        }
    };
    let git = crate::workspaces::git(&context.env);
    let mut removed = Vec::new();
    for task in targets {
        let Some(workspace) = store
            .task_workspace(task.id)?
            .filter(|workspace| workspace.worktree_path.is_some())
        else {
            if id.is_some() {
                return Err(CliError::not_found(format!(
                    "task {} has no worktree",
                    task.id
                )));
            }
            continue;
        };
        if task.status == TaskStatus::Running {
            return Err(
                CliError::usage(format!("task {} is running in its worktree", task.id))
                    .with_hint("wait for its run to end, or stop it first"),
            );
        }
        let sharing = unfinished_sharers(&store, task.id, &workspace)?;
        if !sharing.is_empty() && !options.force {
            let ids: Vec<String> = sharing.iter().map(ToString::to_string).collect();
            return Err(CliError::usage(format!(
                "the worktree of task {} is shared with task {} of its milestone, not completed yet",
                task.id,
                ids.join(", ")
            ))
            .with_hint("finish those tasks first, or add --force"));
        }
        removed.push(remove_one(&git, &task, &workspace, options)?);
    }
    if context.json {
        ui.json(&removed)?;
    } else if removed.is_empty() {
        ui.print("No worktree to remove.\n");
    } else {
        ui.print(&removed_text(&removed));
    }
    Ok(Outcome::Success)
}

/// The other tasks working in the same worktree (the milestone policy shares one) that are
/// not completed: removing it would take their work away.
fn unfinished_sharers(
    store: &session_store::Store,
    task: TaskId,
    workspace: &TaskWorkspace,
) -> Result<Vec<TaskId>> {
    let mut sharing = Vec::new();
    for (other, theirs) in store.task_workspaces()? {
        if other != task
            && theirs.worktree_path == workspace.worktree_path
            && store.task(other)?.status != TaskStatus::Completed
        {
            sharing.push(other);
        }
    }
    Ok(sharing)
}

fn removed_text(removed: &[RemovedJson]) -> String {
    let mut out = String::new();
    for item in removed {
        out.push_str(&format!(
            "task {}: worktree {} {}\n",
            item.task, item.path, item.worktree
        ));
        if let (Some(branch), Some(head)) = (&item.deleted_branch, &item.deleted_head) {
            out.push_str(&format!(
                "  deleted branch {branch} (was {head}); `git branch {branch} {head}` brings it back until git gc prunes it\n"
            ));
        }
    }
    out
}

fn remove_one(
    git: &git::Git,
    task: &Task,
    workspace: &TaskWorkspace,
    options: RemoveOptions,
) -> Result<RemovedJson> {
    let path = PathBuf::from(workspace.worktree_path.clone().unwrap_or_default());
    let repository = open_repository(git, workspace)?.ok_or_else(|| {
        CliError::not_found(format!(
            "the repository of task {} ({}) is gone",
            task.id,
            workspace.repository.as_deref().unwrap_or("-")
        ))
    })?;
    // The task is not running (the caller refused that), so a lock on its worktree was left
    // by a run that was killed: it protects nothing, and uncommitted work is still refused.
    if path.is_dir() {
        let _ = repository.unlock_worktree(&path);
    }
    let lock = repository.lock_worktrees().map_err(git_failed)?;
    let removal = repository
        .remove_worktree(&lock, &path, options.force)
        .map_err(|error| refused(task.id, error))?;
    drop(lock);
    let mut json = RemovedJson {
        task: task.id.get(),
        path: path.display().to_string(),
        worktree: match removal {
            Removal::Removed => "removed",
            Removal::Pruned => "pruned",
            Removal::Absent => "absent",
        },
        deleted_branch: None,
        deleted_head: None,
    };
    if options.delete_branch
        && let Some(branch) = workspace.branch.as_deref()
    {
        let base = workspace
            .base_branch
            .clone()
            .or_else(|| workspace.base_commit.clone())
            .unwrap_or_else(|| String::from("HEAD"));
        let deleted = repository
            .delete_branch(branch, &base, options.force)
            .map_err(|error| refused(task.id, error))?;
        json.deleted_branch = Some(branch.to_owned());
        json.deleted_head = Some(deleted.head.as_str().to_owned());
    }
    Ok(json)
}

/// A refusal a person can act on (exit 2, the files named), or git's failure.
fn refused(task: TaskId, error: GitError) -> CliError {
    match error {
        GitError::UncommittedChanges {
            ref path,
            ref files,
        } => {
            let files: Vec<String> = files
                .iter()
                .map(|file| file.display().to_string())
                .collect();
            CliError::usage(format!(
                "the worktree of task {task} ({}) holds changes not on its branch: {}",
                path.display(),
                files.join(", ")
            ))
            .with_hint("commit them on the task's branch, or add --force to drop them")
        }
        GitError::NotMerged {
            ref branch,
            ref base,
        } => CliError::usage(format!(
            "the branch {branch} of task {task} is not merged into {base}"
        ))
        .with_hint("merge it first, or add --force to delete it anyway"),
        GitError::WorktreeLocked { .. } => CliError::usage(format!(
            "the worktree of task {task} is locked: a run may be using it"
        ))
        .with_hint("wait for the run to end, or add --force")
        .with_source(error),
        other => git_failed(other),
    }
}

/// A git failure as the CLI reports it: what a person can fix (git missing, another git
/// process holding a lock) says what to do; anything else is Baton's own failure.
pub(crate) fn git_failed(error: GitError) -> CliError {
    let message = format!("git failed: {error}");
    match &error {
        GitError::Spawn { .. } => CliError::usage(message)
            .with_hint("install git (2.38 or newer) and make sure it is on PATH"),
        GitError::Locked { lock_file, .. } => CliError::usage(message).with_hint(format!(
            "another git process is working in this repository: let it finish, or remove `{}` if none is running",
            lock_file.display()
        )),
        _ => CliError::internal(message),
    }
    .with_source(error)
}

/// `baton task diff ID`: the branch's diff against its base, through a pager on a terminal.
pub fn diff(id: TaskId, context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    store.task(id)?;
    let workspace = store
        .task_workspace(id)?
        .filter(|workspace| workspace.branch.is_some() && workspace.base_commit.is_some())
        .ok_or_else(|| {
            CliError::not_found(format!("task {id} has no branch"))
                .with_hint("only a task that ran in a worktree has a diff")
        })?;
    let git = crate::workspaces::git(&context.env);
    let repository = open_repository(&git, &workspace)?
        .ok_or_else(|| CliError::not_found(format!("the repository of task {id} is gone")))?;
    let base = workspace.base_commit.clone().unwrap_or_default();
    let head = match workspace.branch.as_deref() {
        Some(branch)
            if repository
                .branch_head(branch)
                .map_err(git_failed)?
                .is_some() =>
        {
            branch.to_owned()
        }
        _ => workspace
            .head_commit
            .clone()
            .unwrap_or_else(|| base.clone()),
    };
    // Without colour: escape codes glued to a token would hide it from the redactor.
    let bytes = repository.diff(&base, &head).map_err(git_failed)?;
    if context.json || !ui.stdout_is_terminal() {
        if context.json {
            ui.json(&serde_json::json!({ "task": id.get(), "base_commit": base, "head": head, "diff": String::from_utf8_lossy(&bytes) }))?;
        } else {
            // Through the handle, as everything printed: a diff may show a key an agent wrote.
            ui.print(&String::from_utf8_lossy(&bytes));
        }
        return Ok(Outcome::Success);
    }
    page(&ui.printable(&String::from_utf8_lossy(&bytes)), context);
    Ok(Outcome::Success)
}

/// Shows `text` (already redacted) through the pager, `$PAGER` or else `less -R`; straight on
/// stdout when there is no pager to start. Quitting the pager early is no error.
fn page(text: &str, context: &Context) {
    let pager = context
        .env
        .pager
        .clone()
        .unwrap_or_else(|| String::from("less -R"));
    let mut words = pager.split_whitespace();
    let program = words.next().unwrap_or("less");
    let Ok(mut pager_process) = Command::new(program)
        .args(words)
        .stdin(Stdio::piped())
        .spawn()
    else {
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        return;
    };
    if let Some(mut stdin) = pager_process.stdin.take() {
        // A broken pipe means the person quit the pager before the end: nothing to report.
        let _ = stdin.write_all(text.as_bytes());
    }
    let _ = pager_process.wait();
}
