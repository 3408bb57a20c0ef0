//! [`Workspaces`] over the git program (`crates/git`): the one module of the loop that knows
//! git. Worktree creation takes the repository's lock inside the call and drops it before
//! returning, so the lock is never held across an `.await` of the caller.
//!
//! The operations of one process run one at a time. Git reads every registered worktree for
//! `worktree list`, `lock` and `unlock`, and fails outright ("failed to read
//! .git/worktrees/N/commondir") on one that a concurrent `worktree add` has registered but
//! not finished writing; with tasks running side by side, that race was seen. Git operations
//! are short beside an agent call, so serialising them costs nothing that matters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use git::{
    CommitId, CommitMessage, Delivery, Git, GitError, MergeOutcome, Repository, WorktreeFastForward,
};

use super::{
    BranchTaken, CommitText, Committed, Delivered, Located, Merged, Preparation, Prepared,
    WorkspaceError, Workspaces,
};

/// The real workspaces: a git driver built by the caller, which owns the environment git
/// runs with and its timeout.
#[derive(Debug, Clone)]
pub struct GitWorkspaces {
    git: Git,
    /// Held for the whole of each operation; see the module documentation.
    serial: Arc<Mutex<()>>,
    /// Held while a clone is made, so that two tasks needing the same clone at once make it
    /// once; apart from `serial`, since a clone may take minutes.
    cloning: Arc<Mutex<()>>,
    /// Whether the installed git is new enough, asked once: a task must not find out at its
    /// delivery, after the agent's work, that `merge-tree --write-tree` is missing.
    supported: Arc<OnceLock<Result<(), String>>>,
}

impl GitWorkspaces {
    pub fn new(git: Git) -> GitWorkspaces {
        GitWorkspaces {
            git,
            serial: Arc::default(),
            cloning: Arc::default(),
            supported: Arc::default(),
        }
    }

    /// This process's turn at git, until the guard drops.
    fn serial(&self) -> MutexGuard<'_, ()> {
        self.serial.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self, repository: &Path) -> Result<Repository, WorkspaceError> {
        Repository::open(&self.git, repository).map_err(failed(format!(
            "open the repository at {}",
            repository.display()
        )))
    }
}

/// Wraps a git error as "failed to `what`: cause", keeping whether a lock was in the way.
fn failed(what: String) -> impl FnOnce(GitError) -> WorkspaceError {
    move |error| WorkspaceError {
        message: format!("failed to {what}: {error}"),
        locked: error.is_locked(),
        source: Some(Box::new(error)),
    }
}

/// Brings `branch`, at `ours` here, up to the remote's `theirs` when that only adds
/// commits: in the worktree that has it checked out, with its files, or as a branch alone.
fn catch_up(
    repository: &Repository,
    branch: &str,
    ours: &CommitId,
    theirs: &CommitId,
) -> Result<BranchTaken, GitError> {
    let head = theirs.as_str().to_owned();
    let behind = repository.count_commits(ours.as_str(), theirs.as_str())?;
    if behind == 0 {
        return Ok(BranchTaken::Kept);
    }
    if !repository.is_ancestor(ours.as_str(), theirs.as_str())? {
        let ahead = repository.count_commits(theirs.as_str(), ours.as_str())?;
        return Ok(BranchTaken::Diverged {
            head,
            behind,
            ahead,
        });
    }
    // A registration whose directory is gone has no files to bring: the branch moves alone,
    // and the worktree is checked out again from it when it is prepared.
    let checked_out = repository
        .worktrees()?
        .into_iter()
        .enumerate()
        .find(|(_, worktree)| {
            worktree.branch.as_deref() == Some(branch) && worktree.prunable.is_none()
        });
    let Some((index, worktree)) = checked_out else {
        repository.fast_forward_branch(branch, theirs)?;
        return Ok(BranchTaken::FastForwarded {
            head,
            commits: behind,
            worktree: None,
        });
    };
    let blocked = |message: String| BranchTaken::Blocked {
        head: head.clone(),
        commits: behind,
        worktree: worktree.path.clone(),
        message,
    };
    // git lists the main worktree first: a person's checkout, which is not Baton's to move.
    if index == 0 {
        return Ok(blocked(String::from(
            "it is the repository's main worktree, which Baton leaves to its owner",
        )));
    }
    Ok(
        match repository.fast_forward_worktree(&worktree.path, theirs)? {
            WorktreeFastForward::Moved => BranchTaken::FastForwarded {
                head,
                commits: behind,
                worktree: Some(worktree.path),
            },
            WorktreeFastForward::Refused { message } => blocked(message.trim().to_owned()),
        },
    )
}

/// Paths as a short list for a reason.
pub(crate) fn list_files(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|file| file.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Workspaces for GitWorkspaces {
    fn locate(&self, dir: &Path) -> Result<Option<Located>, WorkspaceError> {
        let _serial = self.serial();
        let what = || format!("look for a git repository at {}", dir.display());
        let Some(repository) = Repository::discover(&self.git, dir).map_err(failed(what()))? else {
            return Ok(None);
        };
        let head = repository
            .try_resolve_commit("HEAD")
            .map_err(failed(what()))?
            .map(|commit| commit.as_str().to_owned());
        if head.is_some() {
            let supported = self.supported.get_or_init(|| {
                self.git
                    .check_version()
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            });
            if let Err(too_old) = supported {
                return Err(WorkspaceError {
                    message: format!(
                        "failed to use git for a worktree: {too_old}; upgrade git, or run the \
                         task where it is with `baton run --isolation none`"
                    ),
                    locked: false,
                    source: None,
                });
            }
        }
        let top = repository.top_level().to_owned();
        let head_branch = repository.current_branch(&top).map_err(failed(what()))?;
        if head.is_some() {
            // Baton's own files (the ledger, the worktrees) must not show in `git status`.
            repository.exclude("/.baton/").map_err(failed(format!(
                "keep .baton/ out of git's view in {}",
                top.display()
            )))?;
        }
        Ok(Some(Located {
            repository: repository.main_worktree().unwrap_or(&top).to_owned(),
            subdirectory: repository.subdirectory().to_owned(),
            head,
            head_branch,
        }))
    }

    fn resolve(&self, repository: &Path, revision: &str) -> Result<String, WorkspaceError> {
        let _serial = self.serial();
        let commit = self
            .open(repository)?
            .resolve_commit(revision)
            .map_err(failed(format!("resolve `{revision}`")))?;
        Ok(commit.as_str().to_owned())
    }

    fn branch_head(
        &self,
        repository: &Path,
        branch: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        let _serial = self.serial();
        let head = self
            .open(repository)?
            .branch_head(branch)
            .map_err(failed(format!("read the branch {branch}")))?;
        Ok(head.map(|commit| commit.as_str().to_owned()))
    }

    fn free_branch(&self, repository: &Path, wanted: &str) -> Result<String, WorkspaceError> {
        let _serial = self.serial();
        self.open(repository)?
            .free_branch_name(wanted)
            .map_err(failed(format!("find a free branch name for {wanted}")))
    }

    fn prepare(
        &self,
        repository: &Path,
        path: &Path,
        branch: &str,
        base: &str,
    ) -> Result<Prepared, WorkspaceError> {
        let _serial = self.serial();
        let what = || format!("prepare the worktree {} on {branch}", path.display());
        let repository = self.open(repository)?;
        let base = repository.resolve_commit(base).map_err(failed(what()))?;
        // Held only for this call: the lock guard is dropped before the caller awaits.
        let lock = repository.lock_worktrees().map_err(failed(what()))?;
        let prepared = repository
            .prepare_worktree(&lock, path, branch, &base)
            .map_err(failed(what()))?;
        drop(lock);
        Ok(Prepared {
            path: prepared.path,
            head: prepared.head.as_str().to_owned(),
            preparation: match prepared.preparation {
                git::Preparation::Reused => Preparation::Reused,
                git::Preparation::Created => Preparation::Created,
                git::Preparation::Restored { repaired } => Preparation::Restored { repaired },
            },
        })
    }

    fn lock(&self, repository: &Path, path: &Path, reason: &str) -> Result<(), WorkspaceError> {
        let _serial = self.serial();
        self.open(repository)?
            .lock_worktree(path, reason)
            .map_err(failed(format!("lock the worktree {}", path.display())))?;
        Ok(())
    }

    fn unlock(&self, repository: &Path, path: &Path) -> Result<(), WorkspaceError> {
        let _serial = self.serial();
        self.open(repository)?
            .unlock_worktree(path)
            .map_err(failed(format!("unlock the worktree {}", path.display())))?;
        Ok(())
    }

    fn merge(
        &self,
        repository: &Path,
        path: &Path,
        branches: &[String],
        message: &str,
    ) -> Result<Merged, WorkspaceError> {
        let _serial = self.serial();
        let names: Vec<&str> = branches.iter().map(String::as_str).collect();
        let outcome = self
            .open(repository)?
            .merge_branches(path, &names, message)
            .map_err(failed(format!("merge {}", names.join(", "))))?;
        Ok(match outcome {
            MergeOutcome::Conflict { files } => Merged::Conflict { files },
            MergeOutcome::UpToDate { .. }
            | MergeOutcome::FastForward { .. }
            | MergeOutcome::Merged { .. } => Merged::Clean,
        })
    }

    fn commit(
        &self,
        repository: &Path,
        path: &Path,
        branch: &str,
        message: &CommitText,
        base: &str,
    ) -> Result<Committed, WorkspaceError> {
        let _serial = self.serial();
        let what = || format!("commit the work in {} on {branch}", path.display());
        let repository = self.open(repository)?;
        let message = message.trailers.iter().fold(
            CommitMessage::new(&message.title),
            |message, (key, value)| message.with_trailer(key, value),
        );
        let outcome = repository
            .commit_all(path, branch, &message)
            .map_err(failed(what()))?;
        let head = outcome.head().as_str().to_owned();
        let stat = repository.diff_stat(base, &head).map_err(failed(what()))?;
        Ok(Committed {
            head,
            files_changed: stat.files_changed,
            insertions: stat.insertions,
            deletions: stat.deletions,
        })
    }

    fn deliver(
        &self,
        repository: &Path,
        branch: &str,
        base_branch: &str,
        message: &str,
    ) -> Result<Delivered, WorkspaceError> {
        let _serial = self.serial();
        let delivery = self
            .open(repository)?
            .deliver(branch, base_branch, message)
            .map_err(failed(format!("merge {branch} into {base_branch}")))?;
        Ok(match delivery {
            Delivery::FastForward { .. }
            | Delivery::Merged { .. }
            | Delivery::AlreadyMerged { .. } => Delivered {
                state: "merged",
                reason: None,
            },
            Delivery::Conflict { files } => Delivered {
                state: "conflict",
                reason: Some(format!("conflicting files: {}", list_files(&files))),
            },
            Delivery::Skipped { reason } => Delivered {
                state: "skipped",
                reason: Some(reason.to_string()),
            },
        })
    }

    fn remote_url(
        &self,
        repository: &Path,
        remote: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        let _serial = self.serial();
        self.open(repository)?
            .remote_url(remote)
            .map_err(failed(format!("read the URL of the remote {remote}")))
    }

    fn remote_for(&self, repository: &Path, url: &str) -> Result<Option<String>, WorkspaceError> {
        let _serial = self.serial();
        self.open(repository)?
            .remote_named_for(url)
            .map_err(failed(format!(
                "look for the remote {url} in {}",
                repository.display()
            )))
    }

    fn clone_remote(&self, url: &str, into: &Path) -> Result<(), WorkspaceError> {
        // Like a push, a clone talks to another machine: it runs outside this process's
        // turn at git, and touches no repository another task works in.
        let _cloning = self.cloning.lock().unwrap_or_else(PoisonError::into_inner);
        if into.join(".git").exists() {
            // Made by another task meanwhile, or by an earlier run: the caller checks that
            // it is a clone of `url`.
            return Ok(());
        }
        self.git
            .clone_repository(url, into)
            .map_err(failed(format!("clone {url} into {}", into.display())))?;
        Ok(())
    }

    fn fetch_commit(
        &self,
        repository: &Path,
        remote: &str,
        commit: &str,
    ) -> Result<bool, WorkspaceError> {
        let repository = {
            let _serial = self.serial();
            self.open(repository)?
        };
        let what = || format!("fetch {commit} from {remote}");
        if repository
            .try_resolve_commit(commit)
            .map_err(failed(what()))?
            .is_some()
        {
            return Ok(true);
        }
        repository.fetch(remote).map_err(failed(what()))?;
        Ok(repository
            .try_resolve_commit(commit)
            .map_err(failed(what()))?
            .is_some())
    }

    fn branch_from_remote(
        &self,
        repository: &Path,
        remote: &str,
        branch: &str,
    ) -> Result<bool, WorkspaceError> {
        let repository = {
            let _serial = self.serial();
            self.open(repository)?
        };
        let what = || format!("take the branch {branch} from {remote}");
        if repository
            .branch_head(branch)
            .map_err(failed(what()))?
            .is_some()
        {
            return Ok(true);
        }
        repository.fetch(remote).map_err(failed(what()))?;
        let fetched = repository
            .try_resolve_commit(&format!("refs/remotes/{remote}/{branch}"))
            .map_err(failed(what()))?;
        let Some(commit) = fetched else {
            return Ok(false);
        };
        let _serial = self.serial();
        repository
            .create_branch(branch, &commit)
            .map_err(failed(what()))?;
        Ok(true)
    }

    fn take_branch(
        &self,
        repository: &Path,
        remote: &str,
        branch: &str,
    ) -> Result<BranchTaken, WorkspaceError> {
        let repository = {
            let _serial = self.serial();
            self.open(repository)?
        };
        let what = || format!("take the branch {branch} from {remote}");
        // Like a push, the fetch talks to another machine, outside this process's turn.
        repository.fetch(remote).map_err(failed(what()))?;
        let _serial = self.serial();
        let fetched = repository
            .try_resolve_commit(&format!("refs/remotes/{remote}/{branch}"))
            .map_err(failed(what()))?;
        let local = repository.branch_head(branch).map_err(failed(what()))?;
        match (local, fetched) {
            (None, None) => Ok(BranchTaken::Missing),
            (None, Some(theirs)) => {
                repository
                    .create_branch(branch, &theirs)
                    .map_err(failed(what()))?;
                Ok(BranchTaken::Made)
            }
            (Some(_), None) => Ok(BranchTaken::Kept),
            (Some(ours), Some(theirs)) => {
                catch_up(&repository, branch, &ours, &theirs).map_err(failed(what()))
            }
        }
    }

    fn branch_worktree(
        &self,
        repository: &Path,
        branch: &str,
    ) -> Result<Option<PathBuf>, WorkspaceError> {
        let _serial = self.serial();
        let repository = self.open(repository)?;
        let worktrees = repository.worktrees().map_err(failed(format!(
            "list the worktrees of {}",
            repository.top_level().display()
        )))?;
        // git lists the main worktree first: a person's checkout, which is not Baton's to
        // work in. A registration whose directory is gone is pruned when a worktree is
        // prepared: the branch is free then.
        Ok(worktrees
            .into_iter()
            .skip(1)
            .find(|worktree| {
                worktree.branch.as_deref() == Some(branch)
                    && worktree.prunable.is_none()
                    && worktree.path.join(".git").exists()
            })
            .map(|worktree| worktree.path))
    }

    fn push(
        &self,
        repository: &Path,
        branch: &str,
        remote: &str,
    ) -> Result<Delivered, WorkspaceError> {
        let repository = {
            let _serial = self.serial();
            self.open(repository)?
        };
        // The push talks to another machine, for up to the driver's timeout, and lists no
        // worktree: it runs outside this process's turn at git, which other tasks need.
        let by_hand = format!(
            "the branch and its worktree stay; `git push {remote} {branch}` delivers it once the cause is gone"
        );
        match repository.push(remote, branch) {
            Ok(_) => Ok(Delivered {
                state: "pushed",
                reason: None,
            }),
            Err(GitError::PushRejected { reason, .. }) => Ok(Delivered {
                state: "rejected",
                reason: Some(format!("{remote} refused {branch}: {reason}; {by_hand}")),
            }),
            Err(error @ GitError::NoSuchRemote { .. }) => Ok(Delivered {
                state: "skipped",
                reason: Some(format!("{error}; {by_hand}")),
            }),
            Err(error) => Err(WorkspaceError {
                message: format!("failed to push {branch} to {remote}: {error}; {by_hand}"),
                locked: error.is_locked(),
                source: Some(Box::new(error)),
            }),
        }
    }
}
