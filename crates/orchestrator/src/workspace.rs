//! Where a task's work lives: its own git worktree and branch, or its directory as it is.
//!
//! The loop reaches git only through [`Workspaces`], so that its tests can use a fake and one
//! module ([`GitWorkspaces`]) knows git. Every method is synchronous and may block for
//! seconds: the loop calls them from blocking threads, never holding git's per-repository
//! lock across an `.await`. The sequence per task (decide the isolation, record the base,
//! branch and path before creating anything, prepare, lock while the task runs, commit and
//! deliver on completion, unlock) is in `workspace/enter.rs` and `workspace/leave.rs`.

pub(crate) mod enter;
mod git;
pub(crate) mod leave;

use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use self::enter::Entered;
pub use self::git::GitWorkspaces;

/// How a task's work is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// A git worktree and a branch of its own.
    Worktree,
    /// The task's working directory as it is.
    None,
}

/// What a completed task's branch becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeliverMode {
    /// The branch is the result; the person's checkout is untouched.
    #[default]
    Branch,
    /// Merged into the base branch in the main worktree when that applies cleanly.
    Merge,
    /// Pushed to the branch of the same name on the run's remote ([`RunConfig::remote`]),
    /// never forced.
    ///
    /// [`RunConfig::remote`]: crate::RunConfig::remote
    Push,
}

/// The repository a directory is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The main worktree's top level.
    pub repository: PathBuf,
    /// The directory relative to the top level; empty at the top.
    pub subdirectory: PathBuf,
    /// The commit `HEAD` names; `None` when the repository has no commit yet.
    pub head: Option<String>,
    /// The branch `HEAD` names; `None` when detached.
    pub head_branch: Option<String>,
}

/// A worktree ready to run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Absolute, symbolic links resolved.
    pub path: PathBuf,
    /// The commit checked out.
    pub head: String,
    /// How it came to be ready.
    pub preparation: Preparation,
}

/// How a worktree came to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preparation {
    Reused,
    Created,
    /// Checked out again from its branch; `repaired` when a stale registration was pruned.
    Restored {
        repaired: bool,
    },
}

/// What merging the work of several predecessors did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The worktree now holds all of their work.
    Clean,
    /// Nothing changed; these files conflict.
    Conflict { files: Vec<PathBuf> },
}

/// The completion commit: its head and what the branch changed since its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub head: String,
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
}

/// How delivery ended: the word the ledger keeps, and why when it did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// `merged`, `conflict` or `skipped` for a merge; `pushed`, `rejected` (the remote
    /// refused the branch) or `skipped` (the push could not be made) for a push.
    pub state: &'static str,
    pub reason: Option<String>,
}

/// What taking a branch from the remote did to this host's branch of that name, which the
/// remote may have moved on from since (another host pushed to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchTaken {
    /// Neither this host nor the remote has the branch.
    Missing,
    /// Made here from the remote's.
    Made,
    /// Kept as it was: the remote has no commit it lacks (the remote has no such branch, is
    /// at the same commit, or this host has commits on top that it has not pushed).
    Kept,
    /// Moved forward to the remote's, with the files of the worktree that has it checked
    /// out (`worktree`), if one does.
    FastForwarded {
        /// The remote's commit the branch is at now.
        head: String,
        /// How many commits the branch gained.
        commits: usize,
        worktree: Option<PathBuf>,
    },
    /// The remote is ahead, but the worktree that has the branch checked out refused to
    /// move (uncommitted changes in the way): branch and worktree were left as they were.
    Blocked {
        /// The remote's commit.
        head: String,
        commits: usize,
        worktree: PathBuf,
        /// git's words.
        message: String,
    },
    /// Both have commits the other lacks: this host's branch was kept, and a push of it
    /// will be refused until the two are merged.
    Diverged {
        /// The remote's commit.
        head: String,
        /// The commits the remote has that this host's branch lacks.
        behind: usize,
        /// The commits this host's branch has that the remote lacks.
        ahead: usize,
    },
}

/// A failure of the workspace's git.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WorkspaceError {
    /// What failed, in words that read after "failed to …".
    pub message: String,
    /// Whether another git process holds a lock (`index.lock`): worth trying again.
    pub locked: bool,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl WorkspaceError {
    pub fn new(message: impl Into<String>) -> WorkspaceError {
        WorkspaceError {
            message: message.into(),
            locked: false,
            source: None,
        }
    }
}

/// The git operations the loop needs, on the repository at `repository` (a main worktree's
/// top level). See the module's documentation for the sequence.
pub trait Workspaces: Send + Sync + 'static {
    /// The repository `dir` lies in, or `None` outside any. Keeps `/.baton/` out of git's
    /// view in the repository it finds.
    fn locate(&self, dir: &Path) -> Result<Option<Located>, WorkspaceError>;
    /// The commit `revision` names.
    fn resolve(&self, repository: &Path, revision: &str) -> Result<String, WorkspaceError>;
    /// The commit a branch points at, or `None` when there is no such branch.
    fn branch_head(
        &self,
        repository: &Path,
        branch: &str,
    ) -> Result<Option<String>, WorkspaceError>;
    /// `wanted`, or `wanted` with a suffix when a branch of that name exists.
    fn free_branch(&self, repository: &Path, wanted: &str) -> Result<String, WorkspaceError>;
    /// Makes `path` a worktree on `branch` (created at `base` when it does not exist), reusing
    /// or repairing what a previous run left.
    fn prepare(
        &self,
        repository: &Path,
        path: &Path,
        branch: &str,
        base: &str,
    ) -> Result<Prepared, WorkspaceError>;
    /// Marks the worktree as in use, with a reason naming the task.
    fn lock(&self, repository: &Path, path: &Path, reason: &str) -> Result<(), WorkspaceError>;
    fn unlock(&self, repository: &Path, path: &Path) -> Result<(), WorkspaceError>;
    /// Merges `branches` into the worktree's branch, or changes nothing on a conflict.
    fn merge(
        &self,
        repository: &Path,
        path: &Path,
        branches: &[String],
        message: &str,
    ) -> Result<Merged, WorkspaceError>;
    /// Commits whatever the worktree holds on `branch` with `message` (a title, a blank line,
    /// trailers), and measures the branch against `base`.
    fn commit(
        &self,
        repository: &Path,
        path: &Path,
        branch: &str,
        message: &CommitText,
        base: &str,
    ) -> Result<Committed, WorkspaceError>;
    /// Merges `branch` into `base_branch` in the main worktree when that is clean and applies
    /// cleanly; never leaves it mid-merge.
    fn deliver(
        &self,
        repository: &Path,
        branch: &str,
        base_branch: &str,
        message: &str,
    ) -> Result<Delivered, WorkspaceError>;
    /// The URL of the repository's remote named `remote` as configured (it may hold
    /// credentials), or `None` when it has no remote of that name.
    fn remote_url(
        &self,
        repository: &Path,
        remote: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        let _ = (repository, remote);
        Ok(None)
    }
    /// The name of the repository's remote that is the same remote as `url`, if any.
    fn remote_for(&self, repository: &Path, url: &str) -> Result<Option<String>, WorkspaceError> {
        let _ = (repository, url);
        Ok(None)
    }
    /// Clones `url` into `into`, asking no one for credentials; its remote is `origin`. A
    /// repository already at `into` is left as it is.
    fn clone_remote(&self, url: &str, into: &Path) -> Result<(), WorkspaceError> {
        let _ = into;
        Err(WorkspaceError::new(format!(
            "failed to clone {url}: these workspaces cannot clone"
        )))
    }
    /// Whether `commit` is in the repository, after fetching `remote` when it was not.
    fn fetch_commit(
        &self,
        repository: &Path,
        remote: &str,
        commit: &str,
    ) -> Result<bool, WorkspaceError> {
        let _ = (repository, remote, commit);
        Ok(true)
    }
    /// Makes the local branch `branch` from the branch of that name on `remote`, fetched,
    /// unless a local one exists; whether the branch exists now.
    fn branch_from_remote(
        &self,
        repository: &Path,
        remote: &str,
        branch: &str,
    ) -> Result<bool, WorkspaceError> {
        let _ = (repository, remote, branch);
        Ok(false)
    }
    /// [`Workspaces::branch_from_remote`], and when the branch exists here already, brings
    /// it up to the remote's (fetched) when that only adds commits: the branch, and the
    /// files of a worktree of the repository other than its main one that has it checked
    /// out. A branch with commits of its own here is kept; see [`BranchTaken`].
    fn take_branch(
        &self,
        repository: &Path,
        remote: &str,
        branch: &str,
    ) -> Result<BranchTaken, WorkspaceError> {
        Ok(if self.branch_from_remote(repository, remote, branch)? {
            BranchTaken::Kept
        } else {
            BranchTaken::Missing
        })
    }
    /// The worktree of the repository, other than its main one, that has `branch` checked
    /// out and is there on disk, if any: git checks a branch out in one worktree only.
    fn branch_worktree(
        &self,
        repository: &Path,
        branch: &str,
    ) -> Result<Option<PathBuf>, WorkspaceError> {
        let _ = (repository, branch);
        Ok(None)
    }
    /// Pushes `branch` to the branch of the same name on `remote` (a configured remote of
    /// the repository), never forced and asking no one for credentials; a refusal is
    /// `rejected` with the remote's words, and the local branch stays either way.
    fn push(
        &self,
        repository: &Path,
        branch: &str,
        remote: &str,
    ) -> Result<Delivered, WorkspaceError> {
        let _ = (repository, branch);
        Err(WorkspaceError::new(format!(
            "failed to push to {remote}: these workspaces cannot push"
        )))
    }
}

/// A commit message: a title and `Key: value` trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitText {
    pub title: String,
    pub trailers: Vec<(String, String)>,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Isolation {
    /// The word the ledger and the configuration use.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Worktree => "worktree",
            Isolation::None => "none",
        }
    }

    pub fn parse(word: &str) -> Option<Isolation> {
        match word {
            "worktree" => Some(Isolation::Worktree),
            "none" => Some(Isolation::None),
            _ => None,
        }
    }
}

impl DeliverMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliverMode::Branch => "branch",
            DeliverMode::Merge => "merge",
            DeliverMode::Push => "push",
        }
    }

    pub fn parse(word: &str) -> Option<DeliverMode> {
        match word {
            "branch" => Some(DeliverMode::Branch),
            "merge" => Some(DeliverMode::Merge),
            "push" => Some(DeliverMode::Push),
            _ => None,
        }
    }
}
