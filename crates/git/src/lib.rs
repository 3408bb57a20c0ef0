//! A small, synchronous driver of the `git` program for Baton's worktrees and branches.
//!
//! Every operation runs `git` by argument vector (never a shell) through a [`Git`], which
//! removes the `GIT_*` variables that could redirect it (all but [`KEPT_GIT_VARIABLES`];
//! the list and the reasons are on [`Git`]), sets `LC_ALL=C`, closes stdin, reads both
//! pipes and stops a command that outlives its timeout. A [`Repository`] is found from a
//! directory and offers:
//!
//! - discovery: [`Repository::discover`], [`Repository::has_commits`],
//!   [`Repository::resolve_commit`], [`Repository::current_branch`],
//!   [`Repository::status`], [`Repository::exclude`];
//! - branch names: [`task_branch_name`], [`slug`], [`Repository::free_branch_name`],
//!   [`Repository::delete_branch`], [`Repository::fast_forward_branch`],
//!   [`Repository::is_ancestor`], [`Repository::count_commits`];
//! - worktrees at fixed paths: [`Repository::prepare_worktree`],
//!   [`Repository::lock_worktree`], [`Repository::remove_worktree`], under the
//!   per-repository [`WorktreeLock`];
//! - delivery: [`Repository::commit_all`], [`Repository::head_commit`],
//!   [`Repository::diff_stat`], [`Repository::merge_branches`], [`Repository::deliver`],
//!   [`Repository::diff`], [`Repository::fast_forward_worktree`];
//! - remotes: [`Repository::remotes`], [`Repository::remote_url`],
//!   [`Repository::remote_named_for`], [`Repository::fetch`], [`Git::clone_repository`],
//!   and [`Repository::push`] of one branch, never forced, asking no one for a password;
//!   [`without_credentials`] and [`same_remote`] for the URLs.
//!
//! The crate knows nothing of Baton's ledger or orchestrator; it depends on no crate of ours.

mod branch;
mod command;
mod command_line;
mod commit;
mod error;
mod lock;
mod merge;
mod porcelain;
mod remote;
mod repository;
mod worktree;

pub use branch::{
    BRANCH_PREFIX, DeletedBranch, SLUG_MAX_LENGTH, is_valid_branch_name, slug, task_branch_name,
};
pub use command::{
    DEFAULT_TIMEOUT, Git, GitVersion, KEPT_GIT_VARIABLES, MINIMUM_VERSION, STDOUT_LIMIT,
};
pub use command_line::CommandLine;
pub use commit::{
    CommitMessage, CommitOutcome, DEFAULT_AUTHOR_EMAIL, DEFAULT_AUTHOR_NAME, DiffStat,
};
pub use error::GitError;
pub use lock::{LOCK_FILE_NAME, WorktreeLock};
pub use merge::{Delivery, MergeOutcome, SkipReason, WorktreeFastForward};
pub use porcelain::{CommitId, StatusEntry, Worktree};
pub use remote::{Pushed, same_remote, without_credentials};
pub use repository::Repository;
pub use worktree::{Preparation, PreparedWorktree, Removal};
