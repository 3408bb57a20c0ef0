//! Merges, computed before anything is touched: a task's dependencies merged onto its
//! branch, and a finished branch delivered into its base in the main worktree.
//!
//! Every merge is first made in memory (`git merge-tree --write-tree`, git ≥ 2.38). A
//! conflict is then reported with its files and nothing has changed; a clean result becomes
//! a commit (`git commit-tree`), and the worktree only ever fast-forwards to it (`git merge
//! --ff-only`), which git checks whole before writing a file. So no worktree is ever left
//! mid-merge, and there is no `git merge --abort` to get right: an octopus `git merge` that
//! fails leaves no `MERGE_HEAD` to abort and does not name the conflicting files.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::command::argv;
use crate::error::{GitError, list_paths};
use crate::porcelain::CommitId;
use crate::repository::Repository;

/// What [`Repository::merge_branches`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Every branch was already merged; nothing changed.
    UpToDate { head: CommitId },
    /// The worktree's branch moved forward to the one branch it lacked.
    FastForward { head: CommitId },
    /// A merge commit was made on the worktree's branch.
    Merged { head: CommitId },
    /// The branches conflict in these files (relative to the top level); nothing changed.
    Conflict { files: Vec<PathBuf> },
}

/// What [`Repository::deliver`] did with a branch and its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The base branch fast-forwarded to the branch.
    FastForward { head: CommitId },
    /// A merge commit was made on the base branch.
    Merged { head: CommitId },
    /// The base branch already contained the branch.
    AlreadyMerged { head: CommitId },
    /// The branch and the base conflict in these files; nothing changed.
    Conflict { files: Vec<PathBuf> },
    /// The merge was not attempted, or git refused to apply it; nothing changed.
    Skipped { reason: SkipReason },
}

/// Why a delivery by merge did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The repository is bare: there is no main worktree to merge in.
    NoMainWorktree,
    /// The main worktree has another branch (or a detached HEAD) checked out.
    OtherBranch {
        base: String,
        current: Option<String>,
    },
    /// The main worktree holds uncommitted or untracked files.
    Uncommitted { files: Vec<PathBuf> },
    /// git refused to fast-forward the main worktree (it moved meanwhile, or a file in the
    /// way); git's message.
    Refused { message: String },
}

/// What [`Repository::fast_forward_worktree`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorktreeFastForward {
    /// The worktree's branch and files moved forward to the commit.
    Moved,
    /// git refused (uncommitted changes in the way, or no fast-forward); nothing changed.
    /// git's message.
    Refused { message: String },
}

/// A merge worked out in memory.
enum Plan {
    UpToDate,
    FastForward(CommitId),
    Merge {
        tree: String,
        parents: Vec<CommitId>,
    },
    Conflict(Vec<PathBuf>),
}

impl Repository {
    /// Merges `branches` into the branch checked out in `worktree` (a task after several
    /// others), as one commit with `message` whose parents are the worktree's HEAD and the
    /// branches it lacked. On a conflict nothing changes and the files are listed.
    pub fn merge_branches(
        &self,
        worktree: &Path,
        branches: &[&str],
        message: &str,
    ) -> Result<MergeOutcome, GitError> {
        let head = self.head_commit(worktree)?;
        let mut others = Vec::new();
        for branch in branches {
            others.push(
                self.branch_head(branch)?
                    .ok_or_else(|| GitError::NoSuchBranch {
                        branch: (*branch).to_owned(),
                    })?,
            );
        }
        let target = match self.plan(&head, &others)? {
            Plan::UpToDate => return Ok(MergeOutcome::UpToDate { head }),
            Plan::Conflict(files) => return Ok(MergeOutcome::Conflict { files }),
            Plan::FastForward(target) => {
                self.fast_forward(worktree, &target)?.success()?;
                return Ok(MergeOutcome::FastForward { head: target });
            }
            Plan::Merge { tree, parents } => self.commit_tree(&tree, &parents, message)?,
        };
        self.fast_forward(worktree, &target)?.success()?;
        Ok(MergeOutcome::Merged { head: target })
    }

    /// Delivers `branch` into `base` in the main worktree, only when that changes nothing
    /// but `base`: the main worktree must have `base` checked out and hold no uncommitted
    /// or untracked file, and the merge must be clean. Otherwise the outcome says why
    /// ([`Delivery::Conflict`], [`Delivery::Skipped`]) and nothing changed. A lock file of
    /// another git process is still an error ([`GitError::Locked`]): worth a retry.
    pub fn deliver(&self, branch: &str, base: &str, message: &str) -> Result<Delivery, GitError> {
        let skipped = |reason| Ok(Delivery::Skipped { reason });
        let Some(main) = self.main_worktree() else {
            return skipped(SkipReason::NoMainWorktree);
        };
        let current = self.current_branch(main)?;
        if current.as_deref() != Some(base) {
            return skipped(SkipReason::OtherBranch {
                base: base.to_owned(),
                current,
            });
        }
        let files = self.uncommitted_files(main)?;
        if !files.is_empty() {
            return skipped(SkipReason::Uncommitted { files });
        }
        let base_head = self.head_commit(main)?;
        let branch_head = self
            .branch_head(branch)?
            .ok_or_else(|| GitError::NoSuchBranch {
                branch: branch.to_owned(),
            })?;
        let (target, merged) = match self.plan(&base_head, &[branch_head])? {
            Plan::UpToDate => return Ok(Delivery::AlreadyMerged { head: base_head }),
            Plan::Conflict(files) => return Ok(Delivery::Conflict { files }),
            Plan::FastForward(target) => (target, false),
            Plan::Merge { tree, parents } => (self.commit_tree(&tree, &parents, message)?, true),
        };
        let finished = self.fast_forward(main, &target)?;
        if !finished.status.success() {
            let error = finished.into_error();
            return match error {
                GitError::Failed { stderr, .. } => skipped(SkipReason::Refused { message: stderr }),
                other => Err(other),
            };
        }
        Ok(if merged {
            Delivery::Merged { head: target }
        } else {
            Delivery::FastForward { head: target }
        })
    }

    /// What `status` lists in the main worktree, less the linked worktrees nested in it
    /// (`.baton/worktrees/1/` shows as an untracked directory until it is excluded): they
    /// are git's own, and no merge writes into them.
    fn uncommitted_files(&self, main: &Path) -> Result<Vec<PathBuf>, GitError> {
        let nested: Vec<PathBuf> = self
            .worktrees()?
            .into_iter()
            .map(|worktree| worktree.path)
            .filter(|path| path.starts_with(main) && path != main)
            .collect();
        Ok(self
            .status(main)?
            .into_iter()
            .filter(|entry| !(entry.code == "??" && nested.contains(&main.join(&entry.path))))
            .map(|entry| entry.path)
            .collect())
    }

    /// Works out merging `others` into `head` without touching any worktree: the ones
    /// already in `head` are dropped; one that `head` is behind is a fast-forward; the rest
    /// are merged one after another in memory, each intermediate result an unreferenced
    /// commit that only the next step reads.
    fn plan(&self, head: &CommitId, others: &[CommitId]) -> Result<Plan, GitError> {
        let mut pending: Vec<CommitId> = Vec::new();
        for other in others {
            if !pending.contains(other) && !self.is_ancestor(other.as_str(), head.as_str())? {
                pending.push(other.clone());
            }
        }
        match pending.as_slice() {
            [] => return Ok(Plan::UpToDate),
            [only] if self.is_ancestor(head.as_str(), only.as_str())? => {
                return Ok(Plan::FastForward(only.clone()));
            }
            _ => {}
        }
        let mut current = head.clone();
        let mut tree = String::new();
        for (step, other) in pending.iter().enumerate() {
            match self.merge_tree(&current, other)? {
                Ok(merged) => tree = merged,
                Err(files) => return Ok(Plan::Conflict(files)),
            }
            if step + 1 < pending.len() {
                current =
                    self.commit_tree(&tree, &[current, other.clone()], "intermediate merge")?;
            }
        }
        let mut parents = vec![head.clone()];
        parents.extend(pending);
        Ok(Plan::Merge { tree, parents })
    }

    /// `git merge-tree --write-tree`: the merged tree, or the conflicting files.
    fn merge_tree(
        &self,
        ours: &CommitId,
        theirs: &CommitId,
    ) -> Result<Result<String, Vec<PathBuf>>, GitError> {
        let finished = self.run_here(argv![
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            "-z",
            ours,
            theirs,
        ])?;
        let clean = match finished.code() {
            Some(0) => true,
            Some(1) => false,
            _ => return Err(finished.into_error()),
        };
        let mut fields = finished.stdout.split(|byte| *byte == 0);
        let tree = fields
            .next()
            .map(|tree| String::from_utf8_lossy(tree).into_owned())
            .filter(|tree| CommitId::parse(tree).is_some())
            .ok_or_else(|| finished.unexpected("no tree id"))?;
        if clean {
            return Ok(Ok(tree));
        }
        let mut files: Vec<PathBuf> = fields
            .filter(|file| !file.is_empty())
            .map(|file| PathBuf::from(std::ffi::OsStr::from_bytes(file)))
            .collect();
        files.dedup();
        Ok(Err(files))
    }

    /// `git commit-tree`: a commit of `tree` with these parents, made by the configured
    /// identity (else Baton's), referenced by nothing yet.
    fn commit_tree(
        &self,
        tree: &str,
        parents: &[CommitId],
        message: &str,
    ) -> Result<CommitId, GitError> {
        let mut args = self.identity_args(self.top_level())?;
        args.extend(argv!["commit-tree", "--no-gpg-sign", "-m", message]);
        for parent in parents {
            args.extend(argv!["-p", parent]);
        }
        args.extend(argv![tree]);
        let finished = self.run_here(args)?.success()?;
        let line = finished.first_line()?;
        CommitId::parse(line)
            .ok_or_else(|| finished.unexpected(format!("`{line}` is not a commit id")))
    }

    /// Fast-forwards the branch checked out in `worktree`, and its files, to `target`
    /// (`git merge --ff-only`, which checks the whole move before writing a file): a
    /// refusal, as when uncommitted changes are in the way or `target` does not contain the
    /// branch's head, changes nothing and says why. Uncommitted changes that are not in the
    /// way stay as they are.
    pub fn fast_forward_worktree(
        &self,
        worktree: &Path,
        target: &CommitId,
    ) -> Result<WorktreeFastForward, GitError> {
        let finished = self.fast_forward(worktree, target)?;
        if finished.status.success() {
            return Ok(WorktreeFastForward::Moved);
        }
        match finished.into_error() {
            GitError::Failed { stderr, .. } => Ok(WorktreeFastForward::Refused { message: stderr }),
            other => Err(other),
        }
    }

    /// Fast-forwards the branch checked out in `worktree` to `target`; the caller reads
    /// the outcome.
    fn fast_forward(
        &self,
        worktree: &Path,
        target: &CommitId,
    ) -> Result<crate::command::Finished, GitError> {
        self.git().run(
            worktree,
            argv!["merge", "--ff-only", "--quiet", "--no-verify", target],
        )
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoMainWorktree => {
                formatter.write_str("the repository is bare: there is no main worktree to merge in")
            }
            SkipReason::OtherBranch {
                base,
                current: Some(current),
            } => write!(
                formatter,
                "the main worktree has `{current}` checked out, not `{base}`"
            ),
            SkipReason::OtherBranch {
                base,
                current: None,
            } => write!(
                formatter,
                "the main worktree has a detached HEAD, not `{base}`"
            ),
            SkipReason::Uncommitted { files } => write!(
                formatter,
                "the main worktree holds uncommitted changes: {}",
                list_paths(files)
            ),
            SkipReason::Refused { message } => {
                write!(
                    formatter,
                    "git refused to update the main worktree: {message}"
                )
            }
        }
    }
}
