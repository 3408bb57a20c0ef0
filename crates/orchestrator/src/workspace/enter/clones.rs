//! A task's repository on this host, found through the remote the task recorded: the
//! recorded repository when it is a clone of that remote here, else the clone the run was
//! started in, else one Baton makes under `run.clones`; and the commits the task needs,
//! fetched into it.
//!
//! A task that moves to another host after it ran (its runner died, it was retried) makes
//! a worktree of its own in this host's clone: from its branch as pushed to the remote
//! when it was, else from its base commit. Work the earlier host did not push stays there.
//! A branch this host's clone has already is brought up to what the other host pushed
//! (`catch_up`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use session_store::{Task, TaskId, TaskWorkspace};

use super::{Refusal, blocking, catch_up, path_text, predecessor_branches, worktree_path};
use crate::context::RunContext;
use crate::workspace::{Located, Workspaces};

/// This host's clone of a task's remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalClone {
    /// The clone's main worktree.
    pub(crate) repository: PathBuf,
    /// The clone's name for the task's remote.
    pub(crate) remote: String,
}

/// The clone the task works in on this host, when that is not simply where it was
/// recorded: `None` for a task that recorded no remote (it works where it recorded, as
/// before), for a new task whose directory is in a clone of its remote here, and for a
/// task that goes on where it last ran, on this host.
pub(crate) async fn this_hosts_clone(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    record: &TaskWorkspace,
) -> Result<Option<LocalClone>, Refusal> {
    let Some(url) = record.remote_url.clone() else {
        return Ok(None);
    };
    if record.worktree_path.is_some() {
        if record.host.as_deref() == Some(context.owner.host.as_str()) {
            return Ok(None);
        }
    } else if clone_at(workspaces, &task.working_dir, &url)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let candidates = [
        record.repository.as_deref().map(PathBuf::from),
        context.config.start_dir.clone(),
    ];
    for dir in candidates.into_iter().flatten() {
        if let Some(clone) = clone_at(workspaces, &dir, &url).await? {
            return Ok(Some(clone));
        }
    }
    made_clone(context, workspaces, task, &url).await.map(Some)
}

/// Makes sure `commit`, which the task needs, is in the clone: fetched from the remote
/// when it is not; blocks the task saying what is missing when the remote lacks it too.
pub(crate) async fn fetch_commit(
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    clone: &LocalClone,
    url: &str,
    commit: &str,
) -> Result<(), Refusal> {
    let (repository, remote, wanted) = (
        clone.repository.clone(),
        clone.remote.clone(),
        commit.to_owned(),
    );
    if blocking(workspaces, move |w| {
        w.fetch_commit(&repository, &remote, &wanted)
    })
    .await?
    {
        return Ok(());
    }
    Err(Refusal::Blocked(format!(
        "task {}'s base commit {commit} is neither in this host's clone at {} nor on its \
         remote {url}: push the commit to the remote from the clone that has it (the host \
         that added the task), then retry the task",
        task.id,
        clone.repository.display()
    )))
}

/// Moves a task that ran on another host into this host's clone: its worktree is made
/// here from its branch as pushed to the remote, else from its base commit, and the
/// record names this host's paths from now on. A branch that has a worktree in the clone
/// already (another task of the milestone took it here) is worked on there: git checks a
/// branch out once.
pub(crate) async fn move_here(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    clone: &LocalClone,
    mut record: TaskWorkspace,
    announce: &(dyn Fn(String) + Send + Sync),
) -> Result<TaskWorkspace, Refusal> {
    let url = record.remote_url.clone().unwrap_or_default();
    let Some(base) = record.base_commit.clone() else {
        return Err(Refusal::Blocked(format!(
            "the ledger's workspace of task {} has no base commit",
            task.id
        )));
    };
    let branch = record.branch.clone().unwrap_or_default();
    let branched = branch_here(workspaces, task, clone, (&url, &base), &branch, announce).await?;
    let (path, how) = match branch_worktree(workspaces, clone, &branch).await? {
        Some(path) => {
            let how = format!(
                "{} on {branch}, the worktree the branch has here already",
                path.display()
            );
            (path, how)
        }
        None => {
            let path = worktree_path(context, &clone.repository, task);
            let from = if branched {
                String::from("its branch as the remote has it")
            } else {
                String::from("its base commit: the earlier host pushed none of its work")
            };
            let how = format!("{} on {branch}, from {from}", path.display());
            (path, how)
        }
    };
    announce(format!(
        "isolation worktree: task {} moves to this host's clone {}: {how}",
        task.id,
        clone.repository.display(),
    ));
    record.repository = Some(path_text(&clone.repository));
    record.worktree_path = Some(path_text(&path));
    record.host = Some(context.owner.host.clone());
    let (written, id) = (record.clone(), task.id);
    context
        .ledger(move |store| store.set_task_workspace(id, &written))
        .await?;
    Ok(record)
}

/// Takes the milestone's branch into this host's clone, for a task whose milestone's
/// worktree (`shared`, of task `sibling`) is on another host only: a worktree of the task's
/// own here, from the branch as pushed to the remote, else from the milestone's base commit;
/// or the worktree the branch has in the clone already. Work the other host did not push
/// stays there; the milestone's later tasks on this host share this worktree.
pub(super) async fn milestone_here(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    (sibling, shared): (TaskId, TaskWorkspace),
    mut record: TaskWorkspace,
    announce: &(dyn Fn(String) + Send + Sync),
) -> Result<TaskWorkspace, Refusal> {
    let url = record.remote_url.clone().unwrap_or_default();
    let repository = PathBuf::from(record.repository.clone().unwrap_or_default());
    let elsewhere = shared
        .host
        .clone()
        .unwrap_or_else(|| String::from("another host"));
    let (Some(clone), Some(branch), Some(base)) = (
        clone_at(workspaces, &repository, &url).await?,
        shared.branch.clone(),
        shared.base_commit.clone(),
    ) else {
        return Err(Refusal::Blocked(format!(
            "task {} shares the worktree of its milestone, which is on {elsewhere}, but \
             cannot take the milestone's branch from {url} into {}: run it on that host",
            task.id,
            repository.display()
        )));
    };
    let branched = branch_here(workspaces, task, &clone, (&url, &base), &branch, announce).await?;
    let (path, how) = match branch_worktree(workspaces, &clone, &branch).await? {
        Some(path) => (
            path,
            String::from("the worktree the branch has here already"),
        ),
        None if branched => (
            worktree_path(context, &clone.repository, task),
            String::from("from the milestone's branch as the remote has it"),
        ),
        None => (
            worktree_path(context, &clone.repository, task),
            format!(
                "from the milestone's base commit {base}: {elsewhere} did not push the \
                 branch, and the work there is not here"
            ),
        ),
    };
    announce(format!(
        "isolation worktree: the milestone's worktree is on {elsewhere} (task {sibling}); \
         task {} works on its branch {branch} in this host's clone {}: {}, {how}",
        task.id,
        clone.repository.display(),
        path.display()
    ));
    record.repository = Some(path_text(&clone.repository));
    record.worktree_path = Some(path_text(&path));
    record.branch = shared.branch;
    record.base_commit = shared.base_commit;
    record.base_branch = shared.base_branch;
    Ok(record)
}

/// Makes `branch` the clone's: as the remote has it when it was pushed (`true`), else it is
/// made from `base` with the worktree. `base` is fetched when the clone lacks it either way,
/// as the task needs it.
/// A branch the clone has already (the work was here before) catches up with what another
/// host pushed to the remote since, as [`catch_up::take`] says.
async fn branch_here(
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    clone: &LocalClone,
    (url, base): (&str, &str),
    branch: &str,
    announce: &(dyn Fn(String) + Send + Sync),
) -> Result<bool, Refusal> {
    // Taking the branch fetches the remote: the base is then found without a fetch more.
    let at = (clone.repository.as_path(), clone.remote.as_str());
    let taken = catch_up::take(workspaces, task, at, branch, announce).await?;
    fetch_commit(workspaces, task, clone, url, base).await?;
    Ok(taken)
}

/// The worktree `branch` has in the clone already, if any.
async fn branch_worktree(
    workspaces: &Arc<dyn Workspaces>,
    clone: &LocalClone,
    branch: &str,
) -> Result<Option<PathBuf>, Refusal> {
    let (repository, name) = (clone.repository.clone(), branch.to_owned());
    Ok(blocking(workspaces, move |w| w.branch_worktree(&repository, &name)).await?)
}

/// The task's repository as this host's clone of its remote has it, for a task entering a
/// worktree for the first time away from the repository it was added in: the commit it
/// starts from is fetched when the clone lacks it.
pub(super) async fn cloned(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    record: &TaskWorkspace,
    clone: &LocalClone,
) -> Result<Located, Refusal> {
    let url = record.remote_url.clone().unwrap_or_default();
    let Some(base) = record.base_revision.clone().or(record.base_commit.clone()) else {
        return Err(Refusal::Blocked(format!(
            "task {} was added with no base commit, and its repository is not on this host: \
             run it on the host that added it",
            task.id
        )));
    };
    fetch_commit(workspaces, task, clone, &url, &base).await?;
    // The predecessors' branches are this clone's too when they were pushed: the task starts
    // from (and merges) them as it would where they were made.
    for branch in predecessor_branches(context, task).await? {
        let (repository, remote) = (clone.repository.clone(), clone.remote.clone());
        blocking(workspaces, move |w| {
            w.branch_from_remote(&repository, &remote, &branch)
        })
        .await?;
    }
    Ok(Located {
        repository: clone.repository.clone(),
        subdirectory: PathBuf::from(record.subdirectory.clone().unwrap_or_default()),
        head: record.base_commit.clone().or(Some(base)),
        head_branch: record.base_branch.clone(),
    })
}

/// The repository's name for the remote a push of the task's branch goes to: the remote
/// whose URL the task recorded (clones on different hosts may name it differently), else
/// `run.remote`, whose absence the push then reports. A run that does not push never uses
/// it, and gets `run.remote` without a look.
pub(super) async fn push_remote(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    repository: &Path,
    record: &TaskWorkspace,
) -> Result<String, Refusal> {
    let configured = context.config.remote.clone();
    // Only a push goes to the remote: without one, no git process asks which it is.
    let pushing = context.config.deliver == crate::workspace::DeliverMode::Push;
    let Some(url) = record.remote_url.clone().filter(|_| pushing) else {
        return Ok(configured);
    };
    let repository = repository.to_owned();
    let found = blocking(workspaces, move |w| w.remote_for(&repository, &url)).await?;
    Ok(found.unwrap_or(configured))
}

/// Notes the host a task's worktree is made on, and the URL of its repository's remote
/// (`run.remote`, credentials left out) when `task add` did not record it: a task added
/// before its repository had a remote, or by an older Baton.
pub(super) async fn record_remote(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    repository: &Path,
    record: &mut TaskWorkspace,
) -> Result<(), Refusal> {
    record.host = Some(context.owner.host.clone());
    if record.remote_url.is_none() {
        let (repository, remote) = (repository.to_owned(), context.config.remote.clone());
        record.remote_url = blocking(workspaces, move |w| w.remote_url(&repository, &remote))
            .await?
            .map(|url| git::without_credentials(&url));
    }
    Ok(())
}

/// The clone of `url` that `dir` lies in, if it is one.
async fn clone_at(
    workspaces: &Arc<dyn Workspaces>,
    dir: &Path,
    url: &str,
) -> Result<Option<LocalClone>, Refusal> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let at = dir.to_owned();
    let Some(located) = blocking(workspaces, move |w| w.locate(&at)).await? else {
        return Ok(None);
    };
    let (repository, wanted) = (located.repository.clone(), url.to_owned());
    let remote = blocking(workspaces, move |w| w.remote_for(&repository, &wanted)).await?;
    Ok(remote.map(|remote| LocalClone {
        repository: located.repository,
        remote,
    }))
}

/// The clone of `url` under `run.clones`, made when it is not there yet.
async fn made_clone(
    context: &RunContext,
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    url: &str,
) -> Result<LocalClone, Refusal> {
    let Some(root) = context.config.clones.clone() else {
        return Err(Refusal::Blocked(format!(
            "task {}'s repository ({url}) has no clone on this host: run baton in a clone \
             of it, or set run.clones to a directory where Baton may clone it",
            task.id
        )));
    };
    let dir = root.join(clone_name(url));
    let (into, from) = (dir.clone(), url.to_owned());
    blocking(workspaces, move |w| w.clone_remote(&from, &into)).await?;
    clone_at(workspaces, &dir, url).await?.ok_or_else(|| {
        Refusal::Blocked(format!(
            "{} is not a clone of {url}, which task {} needs: move it away, or set \
             run.clones to another directory",
            dir.display(),
            task.id
        ))
    })
}

/// A directory name for a clone of `url`, readable and the same on every run: the URL
/// (credentials left out) with every run of other characters than letters, digits, `.`,
/// `_` and `-` made one `-`, and without a trailing `.git`.
fn clone_name(url: &str) -> String {
    let url = git::without_credentials(url);
    let url = url.trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    let url = url.split_once("://").map_or(url, |(_, rest)| rest);
    let mut name = String::new();
    for character in url.chars() {
        if character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-') {
            name.push(character);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_matches(['-', '.']);
    if name.is_empty() {
        String::from("repository")
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::clone_name;

    #[test]
    fn clone_names_are_readable_and_keep_no_credentials() {
        for (url, name) in [
            (
                "https://token@github.com/org/repo.git",
                "github.com-org-repo",
            ),
            ("git@github.com:org/repo.git", "git-github.com-org-repo"),
            ("ssh://git@host:22/org/repo/", "git-host-22-org-repo"),
            ("/srv/git/../repo.git", "srv-git-..-repo"),
            ("///", "repository"),
        ] {
            assert_eq!(clone_name(url), name, "{url}");
        }
    }
}
