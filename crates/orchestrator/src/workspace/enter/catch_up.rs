//! A task's branch on this host catching up with what another host pushed to the remote.
//!
//! A task (or a milestone's tasks) that ran here, moved to another host, and comes back
//! finds this host's copy of its branch as it left it, while the other host pushed more
//! onto the remote's. Going on from the old copy would lose that work from the task's view,
//! and the push at the end would be refused. So whenever a task takes up a branch that
//! exists here already, the remote is fetched: a branch the remote is ahead of moves
//! forward to it (with the files of the worktree that has it checked out); one with
//! commits of this host's on top is kept; and one that diverged is kept too, saying that
//! the push will be refused until the two are merged: merging is a person's call.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use session_store::{Task, TaskWorkspace};

use super::{Refusal, blocking};
use crate::workspace::{BranchTaken, Workspaces};

/// Takes `branch` into the repository from `remote` as [`Workspaces::take_branch`] does,
/// saying what it did; whether the branch exists here now. When the remote cannot be
/// fetched, a branch that exists here is gone on with as it is, as before hosts shared
/// branches, and the run says so; without one here the task is blocked, with git's words.
pub(super) async fn take(
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    (repository, remote): (&Path, &str),
    branch: &str,
    announce: &(dyn Fn(String) + Send + Sync),
) -> Result<bool, Refusal> {
    let (at, from, name) = (repository.to_owned(), remote.to_owned(), branch.to_owned());
    let taken = match blocking(workspaces, move |w| w.take_branch(&at, &from, &name)).await {
        Ok(taken) => taken,
        Err(error) => {
            // The fetch failed: what this host has is all there is, without asking the
            // remote again.
            let (at, name) = (repository.to_owned(), branch.to_owned());
            if blocking(workspaces, move |w| w.branch_head(&at, &name))
                .await?
                .is_none()
            {
                // Nothing here, and the remote could not say whether it has the branch.
                return Err(error.into());
            }
            announce(format!(
                "isolation worktree: task {} goes on from this host's branch {branch} as it \
                 is: {}; commits another host pushed to {remote} since are not in it",
                task.id, error.message
            ));
            return Ok(true);
        }
    };
    if let Some(said) = described(task, remote, branch, &taken) {
        announce(said);
    }
    Ok(!matches!(taken, BranchTaken::Missing))
}

/// Brings the branch of a task that goes on in its recorded worktree on this host (or
/// shares the milestone's worktree here) up to the remote's: another host may have pushed
/// to it meanwhile. Nothing to do for a task that recorded no remote, or whose repository
/// here has no remote of that URL.
pub(super) async fn recorded(
    workspaces: &Arc<dyn Workspaces>,
    task: &Task,
    record: &TaskWorkspace,
    announce: &(dyn Fn(String) + Send + Sync),
) -> Result<(), Refusal> {
    let (Some(url), Some(repository), Some(branch)) = (
        record.remote_url.clone(),
        record.repository.as_deref().map(PathBuf::from),
        record.branch.clone(),
    ) else {
        return Ok(());
    };
    if !repository.is_dir() {
        // Nothing of git to catch up: preparing the worktree says what is missing.
        return Ok(());
    }
    let at = repository.clone();
    let Some(remote) = blocking(workspaces, move |w| w.remote_for(&at, &url)).await? else {
        return Ok(());
    };
    take(workspaces, task, (&repository, &remote), &branch, announce).await?;
    Ok(())
}

/// What the run is told about a branch that met the remote's, when there is something to
/// tell: it moved forward, or it did not although the remote has commits it lacks.
fn described(task: &Task, remote: &str, branch: &str, taken: &BranchTaken) -> Option<String> {
    let remotes = format!("{remote}/{branch}");
    Some(match taken {
        BranchTaken::Missing | BranchTaken::Made | BranchTaken::Kept => return None,
        BranchTaken::FastForwarded {
            head,
            commits,
            worktree,
        } => {
            let files = worktree.as_ref().map_or_else(String::new, |path| {
                format!(", and the worktree {} with it", path.display())
            });
            format!(
                "isolation worktree: brought branch {branch} up to the remote's {remotes} at \
                 {} ({} another host pushed){files}",
                short(head),
                commits_text(*commits)
            )
        }
        BranchTaken::Blocked {
            head,
            commits,
            worktree,
            message,
        } => format!(
            "isolation worktree: the remote's {remotes} at {} has {} another host pushed that \
             this host's branch {branch} lacks, but the worktree {} that has it checked out \
             cannot take them ({message}); task {} goes on without them, and its delivery push \
             will be refused until they are merged: commit or discard the changes in the way, \
             then `git merge --ff-only {remotes}` there",
            short(head),
            commits_text(*commits),
            worktree.display(),
            task.id
        ),
        BranchTaken::Diverged {
            head,
            behind,
            ahead,
        } => format!(
            "isolation worktree: branch {branch} has diverged from the remote's: {remotes} at {} \
             has {} another host pushed that this host's branch lacks, and this host's has {} \
             the remote lacks; task {} goes on from this host's branch, and its delivery push \
             will be refused until the two are merged (`git merge {remotes}` in its worktree)",
            short(head),
            commits_text(*behind),
            commits_text(*ahead),
            task.id
        ),
    })
}

/// "1 commit", "3 commits".
fn commits_text(count: usize) -> String {
    if count == 1 {
        String::from("1 commit")
    } else {
        format!("{count} commits")
    }
}

/// A commit id as people read it.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
