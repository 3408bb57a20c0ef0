//! Worktrees at fixed paths: prepare one (create it, re-create it from its branch, or find
//! it ready), lock and unlock it, and remove it only when that loses no work.
//!
//! A path that holds anything git did not put there for this repository is never deleted,
//! and a branch is never moved: preparing a worktree either checks out the branch as it is,
//! or creates it at the base commit when it does not exist.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::command::argv;
use crate::error::GitError;
use crate::lock::WorktreeLock;
use crate::porcelain::{CommitId, Worktree};
use crate::repository::Repository;

/// What [`Repository::prepare_worktree`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedWorktree {
    /// The worktree's absolute path (symbolic links in existing parents resolved).
    pub path: PathBuf,
    pub branch: String,
    /// The commit checked out.
    pub head: CommitId,
    pub preparation: Preparation,
}

/// How a worktree came to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preparation {
    /// It was there, on its branch; nothing was done.
    Reused,
    /// The branch was created at the base commit, and the worktree with it.
    Created,
    /// The branch existed (a resumed task); the worktree was checked out from it again.
    /// `repaired` says a stale registration (a worktree deleted by hand, or left behind by
    /// a killed process) was pruned first.
    Restored { repaired: bool },
}

/// What [`Repository::remove_worktree`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The worktree and its directory were removed.
    Removed,
    /// The directory was already gone; its registration was pruned.
    Pruned,
    /// There was no such worktree and nothing at the path.
    Absent,
}

impl Repository {
    /// Makes `path` a worktree on `branch`, whatever state a previous run left, and returns
    /// it. When the worktree is there on its branch it is reused; when its directory was
    /// deleted (by hand, or its registration outlived a killed process) the registration is
    /// pruned and the worktree checked out again from the branch; when the branch does not
    /// exist it is created at `base`. Refuses, touching nothing, when the path holds
    /// something else, when the worktree there is on another branch, or when the branch is
    /// checked out in another live worktree.
    ///
    /// A relative `path` is taken from the repository's top level.
    pub fn prepare_worktree(
        &self,
        lock: &WorktreeLock,
        path: &Path,
        branch: &str,
        base: &CommitId,
    ) -> Result<PreparedWorktree, GitError> {
        debug_assert!(self.holds(lock), "the lock is this repository's");
        let path = self.absolute(path);
        let worktrees = self.worktrees()?;
        let mut repaired = false;
        if let Some(existing) = worktrees.iter().find(|worktree| worktree.path == path) {
            if !is_stale(existing) {
                return reuse(existing, branch);
            }
            self.clear_stale(existing)?;
            repaired = true;
        }
        if let Some(elsewhere) = worktrees
            .iter()
            .find(|worktree| worktree.branch.as_deref() == Some(branch) && worktree.path != path)
        {
            if !is_stale(elsewhere) {
                return Err(GitError::BranchCheckedOut {
                    branch: branch.to_owned(),
                    path: elsewhere.path.clone(),
                });
            }
            self.clear_stale(elsewhere)?;
            repaired = true;
        }
        if is_occupied(&path) {
            return Err(GitError::PathOccupied { path });
        }
        let (head, preparation) = match self.branch_head(branch)? {
            Some(head) => (head, Preparation::Restored { repaired }),
            None => {
                self.create_branch(branch, base)?;
                (base.clone(), Preparation::Created)
            }
        };
        self.add_worktree(lock, &path, branch)?;
        Ok(PreparedWorktree {
            path,
            branch: branch.to_owned(),
            head,
            preparation,
        })
    }

    /// Checks out an existing branch into a new worktree at `path` (absent, or an empty
    /// directory). Most callers want [`Repository::prepare_worktree`].
    pub fn add_worktree(
        &self,
        lock: &WorktreeLock,
        path: &Path,
        branch: &str,
    ) -> Result<(), GitError> {
        debug_assert!(self.holds(lock), "the lock is this repository's");
        let path = self.absolute(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| GitError::File {
                path: parent.to_owned(),
                source,
            })?;
        }
        // A short branch name, not `refs/heads/…`: given a full ref, git would detach HEAD.
        self.run_here(argv!["worktree", "add", "--quiet", &path, branch])?
            .success()?;
        Ok(())
    }

    /// The registered worktree at `path`, if any.
    pub fn find_worktree(&self, path: &Path) -> Result<Option<Worktree>, GitError> {
        let path = self.absolute(path);
        Ok(self
            .worktrees()?
            .into_iter()
            .find(|worktree| worktree.path == path))
    }

    /// Locks a worktree (`git worktree lock`) so that no prune or removal takes it, with a
    /// reason such as the task that runs in it. A lock already there (left by a killed
    /// run) is replaced; its reason is returned.
    pub fn lock_worktree(&self, path: &Path, reason: &str) -> Result<Option<String>, GitError> {
        let worktree = self.registered(path)?;
        if worktree.locked.is_some() {
            self.run_here(argv!["worktree", "unlock", &worktree.path])?
                .success()?;
        }
        self.run_here(argv![
            "worktree",
            "lock",
            "--reason",
            reason,
            &worktree.path
        ])?
        .success()?;
        Ok(worktree.locked)
    }

    /// Unlocks a worktree; returns whether it was locked.
    pub fn unlock_worktree(&self, path: &Path) -> Result<bool, GitError> {
        let worktree = self.registered(path)?;
        if worktree.locked.is_none() {
            return Ok(false);
        }
        self.run_here(argv!["worktree", "unlock", &worktree.path])?
            .success()?;
        Ok(true)
    }

    /// Drops the registrations of worktrees whose directories are gone (`git worktree
    /// prune`); locked ones stay.
    pub fn prune_worktrees(&self, lock: &WorktreeLock) -> Result<(), GitError> {
        debug_assert!(self.holds(lock), "the lock is this repository's");
        self.run_here(argv!["worktree", "prune"])?.success()?;
        Ok(())
    }

    /// Removes a worktree and its directory (its branch stays). Unless `force`, refuses when
    /// it holds uncommitted or untracked files (listed in the error), when its HEAD is
    /// detached at a commit no branch contains, and when it is locked; ignored files (build
    /// output) go with it. A worktree whose directory is already gone is pruned; a path
    /// that is not a worktree of this repository is never touched.
    pub fn remove_worktree(
        &self,
        lock: &WorktreeLock,
        path: &Path,
        force: bool,
    ) -> Result<Removal, GitError> {
        debug_assert!(self.holds(lock), "the lock is this repository's");
        let path = self.absolute(path);
        let Some(worktree) = self.find_worktree(&path)? else {
            return match fs::symlink_metadata(&path) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Removal::Absent),
                _ => Err(GitError::NotAWorktree { path }),
            };
        };
        if self.main_worktree() == Some(worktree.path.as_path()) || worktree.bare {
            return Err(GitError::NotAWorktree { path });
        }
        if is_stale(&worktree) {
            self.clear_stale(&worktree)?;
            return Ok(Removal::Pruned);
        }
        if !force {
            self.check_removable(&worktree)?;
        }
        let mut args: Vec<OsString> = argv!["worktree", "remove"];
        if force {
            // Twice: the second also overrides a lock.
            args.extend(argv!["--force", "--force"]);
        }
        args.push(worktree.path.clone().into_os_string());
        self.run_here(args)?.success()?;
        Ok(Removal::Removed)
    }

    /// The refusals of a removal without force.
    fn check_removable(&self, worktree: &Worktree) -> Result<(), GitError> {
        if let Some(reason) = &worktree.locked {
            return Err(GitError::WorktreeLocked {
                path: worktree.path.clone(),
                reason: reason.clone(),
            });
        }
        let status = self.status(&worktree.path)?;
        if !status.is_empty() {
            return Err(GitError::UncommittedChanges {
                path: worktree.path.clone(),
                files: status.into_iter().map(|entry| entry.path).collect(),
            });
        }
        if let (true, Some(head)) = (worktree.detached, &worktree.head)
            && !self.is_on_a_branch(head)?
        {
            return Err(GitError::UnreachableHead {
                path: worktree.path.clone(),
                head: head.to_string(),
            });
        }
        Ok(())
    }

    /// Whether some branch contains the commit.
    fn is_on_a_branch(&self, commit: &CommitId) -> Result<bool, GitError> {
        let finished = self
            .run_here(argv![
                "for-each-ref",
                "--count=1",
                "--format=%(refname)",
                "--contains",
                commit,
                "refs/heads",
            ])?
            .success()?;
        Ok(!finished.stdout.is_empty())
    }

    /// The registered worktree at `path`, or [`GitError::NotAWorktree`].
    fn registered(&self, path: &Path) -> Result<Worktree, GitError> {
        self.find_worktree(path)?
            .ok_or_else(|| GitError::NotAWorktree {
                path: path.to_owned(),
            })
    }

    /// Drops a stale registration: a lock would keep prune from taking it, so it goes first.
    fn clear_stale(&self, worktree: &Worktree) -> Result<(), GitError> {
        if worktree.locked.is_some() {
            self.run_here(argv!["worktree", "unlock", &worktree.path])?
                .success()?;
        }
        self.run_here(argv!["worktree", "prune"])?.success()?;
        Ok(())
    }

    /// The path as git registers it: absolute (relative paths start at the top level),
    /// with the symbolic links of its existing ancestors resolved.
    pub(crate) fn absolute(&self, path: &Path) -> PathBuf {
        let absolute = self.top_level().join(path);
        let normal: PathBuf =
            absolute
                .components()
                .fold(PathBuf::new(), |mut normal, component| {
                    match component {
                        Component::ParentDir => {
                            normal.pop();
                        }
                        Component::CurDir => {}
                        other => normal.push(other),
                    }
                    normal
                });
        // Resolve the longest existing ancestor, then put the missing rest back.
        let mut missing = Vec::new();
        let mut existing = normal.as_path();
        loop {
            if let Ok(resolved) = fs::canonicalize(existing) {
                return missing
                    .iter()
                    .rev()
                    .fold(resolved, |path, name| path.join(name));
            }
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    missing.push(name.to_owned());
                    existing = parent;
                }
                _ => return normal,
            }
        }
    }
}

/// A worktree still in use, on the expected branch, is reused as it is.
fn reuse(worktree: &Worktree, branch: &str) -> Result<PreparedWorktree, GitError> {
    if worktree.branch.as_deref() != Some(branch) {
        return Err(GitError::WrongBranch {
            path: worktree.path.clone(),
            expected: branch.to_owned(),
            found: worktree.branch.clone(),
        });
    }
    let head = worktree.head.clone().ok_or_else(|| GitError::WrongBranch {
        path: worktree.path.clone(),
        expected: branch.to_owned(),
        found: None,
    })?;
    Ok(PreparedWorktree {
        path: worktree.path.clone(),
        branch: branch.to_owned(),
        head,
        preparation: Preparation::Reused,
    })
}

/// Whether a registration outlived its directory.
fn is_stale(worktree: &Worktree) -> bool {
    worktree.prunable.is_some() || !worktree.path.join(".git").exists()
}

/// Whether something is at the path that `git worktree add` would refuse, or that is not
/// ours to replace: anything but nothing or an empty directory.
fn is_occupied(path: &Path) -> bool {
    match fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) => error.kind() != io::ErrorKind::NotFound,
    }
}
