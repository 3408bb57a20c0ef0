//! Entering a task's workspace at its claim: decide the isolation, record the base, branch and
//! path before creating anything, prepare the worktree (reusing or repairing what an earlier
//! run left), merge the work of several predecessors, and lock it while the task runs.

mod catch_up;
mod clones;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use session_store::{SessionPolicy, StoreError, Task, TaskFilter, TaskId, TaskWorkspace};

use super::git::list_files;
use super::{Isolation, Located, Merged, Preparation, Prepared, WorkspaceError, Workspaces};
use crate::context::RunContext;

/// A task's worktree, entered and locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entered {
    pub(crate) repository: PathBuf,
    /// The worktree's path: fixed for the life of the task's sessions.
    pub(crate) path: PathBuf,
    /// Where the agent and the checks run: the task's subdirectory of the worktree.
    pub(crate) working_dir: PathBuf,
    pub(crate) branch: String,
    pub(crate) base_commit: String,
    pub(crate) base_branch: Option<String>,
    /// The repository's name for the remote a push goes to: the one whose URL the task
    /// recorded, else `run.remote`; looked up only when the run pushes (`run.remote` else).
    pub(crate) remote: String,
    /// The record as written, which completion adds to.
    pub(crate) record: TaskWorkspace,
}

/// Why a task could not enter its workspace.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A person must act; the reason says what.
    Blocked(String),
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Refusal {
        Refusal::Store(error)
    }
}

impl From<WorkspaceError> for Refusal {
    fn from(error: WorkspaceError) -> Refusal {
        Refusal::Blocked(error.message)
    }
}

/// How many times an operation that met another git process's lock is tried again.
const LOCKED_RETRIES: u32 = 3;

/// Runs a workspace operation on a blocking thread, trying again with a backoff while another
/// git process holds a lock in the repository.
pub(crate) async fn blocking<T: Send + 'static>(
    workspaces: &Arc<dyn Workspaces>,
    operation: impl Fn(&dyn Workspaces) -> Result<T, WorkspaceError> + Send + Sync + 'static,
) -> Result<T, WorkspaceError> {
    let operation = Arc::new(operation);
    let mut attempt = 0;
    loop {
        let (workspaces, operation) = (Arc::clone(workspaces), Arc::clone(&operation));
        let result = tokio::task::spawn_blocking(move || operation(workspaces.as_ref()))
            .await
            .unwrap_or_else(|join| Err(WorkspaceError::new(format!("git call failed: {join}"))));
        match result {
            Err(error) if error.locked && attempt < LOCKED_RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(attempt)).await;
            }
            other => return other,
        }
    }
}

/// Enters the task's workspace: `None` under isolation `none` (the task runs in its directory
/// as it is). `announce` tells the run which isolation and why.
pub(crate) async fn enter(
    context: &RunContext,
    task: &Task,
    policy: SessionPolicy,
    announce: &(dyn Fn(String) + Send + Sync),
) -> Result<Option<Entered>, Refusal> {
    let Some(workspaces) = context.workspaces.clone() else {
        return Ok(None);
    };
    let id = task.id;
    let mut record = context
        .ledger(move |store| store.task_workspace(id))
        .await?
        .unwrap_or_default();
    let asked = record
        .isolation
        .as_deref()
        .and_then(Isolation::parse)
        .or(context.config.isolation);
    if asked == Some(Isolation::None) {
        return Ok(None);
    }
    let clone = clones::this_hosts_clone(context, &workspaces, task, &record).await?;
    if record.worktree_path.is_none() {
        let located = match clone {
            Some(clone) => clones::cloned(context, &workspaces, task, &record, &clone).await?,
            None => match here(&workspaces, task, asked).await? {
                Some(located) => located,
                None => return Ok(None),
            },
        };
        record = plan(
            context,
            &workspaces,
            task,
            policy,
            located,
            record,
            announce,
        )
        .await?;
        let (written, id) = (record.clone(), task.id);
        context
            .ledger(move |store| store.set_task_workspace(id, &written))
            .await?;
    } else if let Some(clone) = clone {
        record = clones::move_here(context, &workspaces, task, &clone, record, announce).await?;
    } else {
        announce(format!(
            "isolation worktree: continuing in {} on {}",
            record.worktree_path.as_deref().unwrap_or_default(),
            record.branch.as_deref().unwrap_or_default()
        ));
        // Recorded on this host, yet a task of its milestone on another host may have
        // pushed to the branch they share since. (A task that ran on another host has its
        // record there, and moves back here instead.) Nothing else is fetched.
        if policy == SessionPolicy::Milestone
            && worked_elsewhere(context, &milestone_workspaces(context, task).await?)
        {
            catch_up::recorded(&workspaces, task, &record, announce).await?;
        }
    }
    prepare_and_lock(context, &workspaces, task, record, announce)
        .await
        .map(Some)
}

/// The repository the task's directory lies in, on this host, for a task entering a
/// worktree for the first time; `None` when it runs where it is.
async fn here(
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    asked: Option<Isolation>,
) -> Result<Option<Located>, Refusal> {
    if !task.working_dir.is_dir() {
        // A directory that vanished fails the task as it always did, naming the
        // directory, at its first call: nothing of git to decide here.
        return Ok(None);
    }
    let dir = task.working_dir.clone();
    let located = blocking(workspaces, move |w| w.locate(&dir)).await?;
    let Some(located) = located.filter(|located| located.head.is_some()) else {
        if asked == Some(Isolation::Worktree) {
            return Err(Refusal::Blocked(format!(
                "isolation `worktree` was asked for, but {} is not inside a git repository \
                 with a commit: make a first commit there, or run it where it is \
                 (`baton run --isolation none`; a task added with `--isolation worktree` \
                 must be added again with `--isolation none`)",
                task.working_dir.display()
            )));
        }
        // Outside a repository a task runs as it always did, and the run's output reads
        // as it always did: only a worktree is announced.
        return Ok(None);
    };
    Ok(Some(located))
}

/// Decides the base, branch and path of a task entering a worktree for the first time.
async fn plan(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    policy: SessionPolicy,
    located: Located,
    mut record: TaskWorkspace,
    announce: &(dyn Fn(String) + Send + Sync),
) -> Result<TaskWorkspace, Refusal> {
    let repository = located.repository.clone();
    record.isolation = Some(String::from("worktree"));
    record.isolation_reason = Some(match &record.remote_url {
        Some(url) if Some(path_text(&repository)) != record.repository => format!(
            "the task's repository {url} has a clone on this host at {}",
            repository.display()
        ),
        _ => format!(
            "the task's directory is inside the git repository at {}",
            repository.display()
        ),
    });
    clones::record_remote(context, workspaces, &repository, &mut record).await?;
    record.repository = Some(path_text(&repository));
    record.subdirectory = Some(path_text(&located.subdirectory));
    record.delivery = Some(String::from("pending"));
    if policy == SessionPolicy::Milestone {
        let siblings = milestone_workspaces(context, task).await?;
        let here = siblings
            .iter()
            .find(|(_, sibling)| on_this_host(context, sibling));
        match (here, siblings.first()) {
            (Some((_, shared)), _) => {
                // The worktree is one of that repository's, should this host have two clones.
                record.repository = shared.repository.clone().or(record.repository);
                let record = share(shared.clone(), record, announce);
                // The milestone's tasks on another host may have pushed to its branch since;
                // with none there, nothing is fetched.
                if worked_elsewhere(context, &siblings) {
                    catch_up::recorded(workspaces, task, &record, announce).await?;
                }
                return Ok(record);
            }
            (None, Some((sibling, shared))) if record.remote_url.is_some() => {
                let shared = (*sibling, shared.clone());
                return clones::milestone_here(context, workspaces, task, shared, record, announce)
                    .await;
            }
            // Without a remote, nothing says where else the milestone's branch could come
            // from: the worktree is shared as it was before hosts were recorded.
            (None, Some((_, shared))) => return Ok(share(shared.clone(), record, announce)),
            (None, None) => {}
        }
    }
    record.base_branch = located.head_branch.clone();
    record.base_commit = Some(base_commit(context, workspaces, task, &located, &record).await?);
    let wanted = git::task_branch_name(task.id, &task.title);
    let (repo, wanted_name) = (repository.clone(), wanted.clone());
    let branch = blocking(workspaces, move |w| w.free_branch(&repo, &wanted_name)).await?;
    if branch != wanted {
        announce(format!("branch {wanted} exists; using {branch}"));
    }
    let path = worktree_path(context, &repository, task);
    announce(format!(
        "isolation worktree: {} (branch {branch} in {})",
        record.isolation_reason.as_deref().unwrap_or_default(),
        path.display()
    ));
    record.branch = Some(branch);
    record.worktree_path = Some(path_text(&path));
    Ok(record)
}

/// The commit a new task's branch starts from: `--base`, its one predecessor's branch head
/// (several are merged after the worktree exists), or what `HEAD` names now.
async fn base_commit(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    located: &Located,
    record: &TaskWorkspace,
) -> Result<String, Refusal> {
    let repository = located.repository.clone();
    if let Some(revision) = record.base_revision.clone() {
        return Ok(blocking(workspaces, move |w| w.resolve(&repository, &revision)).await?);
    }
    if let Some(branch) = predecessor_branches(context, task)
        .await?
        .into_iter()
        .next()
    {
        let name = branch.clone();
        let head = blocking(workspaces, move |w| w.branch_head(&repository, &name)).await?;
        return head.ok_or_else(|| {
            Refusal::Blocked(format!(
                "the branch {branch} of a predecessor no longer exists"
            ))
        });
    }
    Ok(located.head.clone().unwrap_or_default())
}

/// The branches of the task's predecessors that have one, in the order they were named.
async fn predecessor_branches(context: &RunContext, task: &Task) -> Result<Vec<String>, Refusal> {
    let after: Vec<TaskId> = task.after.clone();
    let branches = context
        .ledger(move |store| {
            let mut branches = Vec::new();
            for &predecessor in &after {
                if let Some(branch) = store.task_workspace(predecessor)?.and_then(|w| w.branch) {
                    branches.push(branch);
                }
            }
            Ok(branches)
        })
        .await?;
    Ok(branches)
}

/// The worktrees the other tasks of the task's milestone recorded, in the milestone's order.
async fn milestone_workspaces(
    context: &RunContext,
    task: &Task,
) -> Result<Vec<(TaskId, TaskWorkspace)>, Refusal> {
    let Some(milestone) = task.milestone else {
        return Ok(Vec::new());
    };
    let id = task.id;
    let siblings = context
        .ledger(move |store| {
            let tasks = store.tasks(&TaskFilter {
                status: None,
                milestone: Some(milestone),
            })?;
            let mut siblings = Vec::new();
            for other in tasks.iter().filter(|other| other.id != id) {
                if let Some(workspace) = store.task_workspace(other.id)?
                    && workspace.worktree_path.is_some()
                    && workspace.branch.is_some()
                {
                    siblings.push((other.id, workspace));
                }
            }
            Ok(siblings)
        })
        .await?;
    Ok(siblings)
}

/// Whether a recorded worktree is on this host: recorded here, or with no host at all (one
/// host, or a record older than hosts).
fn on_this_host(context: &RunContext, record: &TaskWorkspace) -> bool {
    record
        .host
        .as_deref()
        .is_none_or(|host| host == context.owner.host)
}

/// Whether a task of the milestone has its worktree on another host: the one way another
/// host comes to push to the branch the milestone's tasks share.
fn worked_elsewhere(context: &RunContext, siblings: &[(TaskId, TaskWorkspace)]) -> bool {
    siblings
        .iter()
        .any(|(_, sibling)| !on_this_host(context, sibling))
}

/// The task joins the milestone's worktree `shared` as it is: its path, branch and base.
fn share(
    shared: TaskWorkspace,
    mut record: TaskWorkspace,
    announce: &(dyn Fn(String) + Send + Sync),
) -> TaskWorkspace {
    announce(format!(
        "isolation worktree: sharing the milestone's worktree {} on {}",
        shared.worktree_path.as_deref().unwrap_or_default(),
        shared.branch.as_deref().unwrap_or_default()
    ));
    record.worktree_path = shared.worktree_path;
    record.branch = shared.branch;
    record.base_commit = shared.base_commit;
    record.base_branch = shared.base_branch;
    record
}

/// Prepares the recorded worktree, merges several predecessors into a new one, and locks it.
async fn prepare_and_lock(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    record: TaskWorkspace,
    announce: &(dyn Fn(String) + Send + Sync),
) -> Result<Entered, Refusal> {
    let missing = |field: &str| {
        Refusal::Blocked(format!(
            "the ledger's workspace of task {} has no {field}",
            task.id
        ))
    };
    let repository = PathBuf::from(
        record
            .repository
            .clone()
            .ok_or_else(|| missing("repository"))?,
    );
    let path = PathBuf::from(
        record
            .worktree_path
            .clone()
            .ok_or_else(|| missing("worktree path"))?,
    );
    let branch = record.branch.clone().ok_or_else(|| missing("branch"))?;
    let base = record
        .base_commit
        .clone()
        .ok_or_else(|| missing("base commit"))?;
    let (repo, at, name, from) = (
        repository.clone(),
        path.clone(),
        branch.clone(),
        base.clone(),
    );
    let prepared: Prepared =
        blocking(workspaces, move |w| w.prepare(&repo, &at, &name, &from)).await?;
    if prepared.preparation == (Preparation::Restored { repaired: true }) {
        announce(format!(
            "the worktree {} was missing or stale; repaired from its branch {branch}",
            path.display()
        ));
    }
    // Every time, not only when the worktree is made: a retry after a conflict, or after a
    // crash between making the worktree and merging, must not go on without the others'
    // work. Already merged, it changes nothing.
    merge_predecessors(context, workspaces, task, &repository, &prepared.path).await?;
    let reason = format!(
        "baton task {} (pid {} on {})",
        task.id, context.owner.pid, context.owner.host
    );
    let (repo, at) = (repository.clone(), prepared.path.clone());
    blocking(workspaces, move |w| w.lock(&repo, &at, &reason)).await?;
    let subdirectory = record.subdirectory.clone().unwrap_or_default();
    let remote = clones::push_remote(context, workspaces, &repository, &record).await?;
    Ok(Entered {
        working_dir: join_subdirectory(&prepared.path, &subdirectory),
        repository,
        path: prepared.path,
        branch,
        base_commit: base,
        base_branch: record.base_branch.clone(),
        remote,
        record,
    })
}

/// With several predecessors, a new worktree (made from the first one's head) takes in the
/// others' work; a conflict blocks the task naming the files, and changes nothing.
async fn merge_predecessors(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    repository: &Path,
    path: &Path,
) -> Result<(), Refusal> {
    let branches = predecessor_branches(context, task).await?;
    if branches.len() < 2 {
        return Ok(());
    }
    let others: Vec<String> = branches[1..].to_vec();
    let ids: Vec<String> = task.after.iter().map(ToString::to_string).collect();
    let message = format!("Merge the work of tasks {}", ids.join(", "));
    let (repo, at) = (repository.to_owned(), path.to_owned());
    match blocking(workspaces, move |w| w.merge(&repo, &at, &others, &message)).await? {
        Merged::Clean => Ok(()),
        Merged::Conflict { files } => Err(Refusal::Blocked(format!(
            "the work of its predecessors ({}) conflicts in {}; merge them by hand in {}, commit, and retry",
            branches.join(", "),
            list_files(&files),
            path.display()
        ))),
    }
}

fn join_subdirectory(path: &Path, subdirectory: &str) -> PathBuf {
    if subdirectory.is_empty() {
        path.to_owned()
    } else {
        path.join(subdirectory)
    }
}

/// Where the task's worktree goes in `repository`: under `run.worktree_dir`, else under the
/// repository's `.baton/worktrees`.
fn worktree_path(context: &RunContext, repository: &Path, task: &Task) -> PathBuf {
    let root = context
        .config
        .worktree_dir
        .clone()
        .unwrap_or_else(|| repository.join(".baton").join("worktrees"));
    root.join(task.id.to_string())
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
