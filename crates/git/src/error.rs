//! What can go wrong when Baton drives git, in terms a caller can act on.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::command_line::CommandLine;

/// Why a git operation failed or was refused.
///
/// A failure of `git` itself is [`GitError::Failed`] and carries the command line and git's
/// own message (trimmed stderr), so an I/O error such as a full disk reads as git wrote it. A
/// lock file left by another git process is [`GitError::Locked`], so that a caller can say so
/// and retry. Refusals that protect work (uncommitted changes, an unmerged branch, a path that
/// is not ours) are their own variants, to be matched on.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The `git` program could not be started.
    #[error(
        "could not start `{}` in `{}`: is git installed and on PATH, and does the directory exist?",
        program.display(),
        dir.display()
    )]
    Spawn {
        program: PathBuf,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Reading git's output or waiting for it failed.
    #[error("i/o with `{command}` failed")]
    Io {
        command: CommandLine,
        #[source]
        source: io::Error,
    },

    /// git ran past the driver's timeout; its process group was stopped.
    #[error("`{command}` did not finish within {} s and was stopped", timeout.as_secs_f64())]
    Timeout {
        command: CommandLine,
        timeout: Duration,
    },

    /// git exited unsuccessfully; `stderr` is what it said, trimmed.
    #[error(
        "`{command}` exited with {}: {}",
        describe_status(status),
        describe_stderr(stderr)
    )]
    Failed {
        command: CommandLine,
        status: ExitStatus,
        stderr: String,
    },

    /// git found a lock file (`index.lock`, a ref's `.lock`): another git process is running
    /// in the repository, or one died and left the file behind.
    #[error(
        "`{command}` found `{}`: another git process is running in this repository (retry when it ends), or one died and left the file behind (remove it once no git process runs)",
        lock_file.display()
    )]
    Locked {
        command: CommandLine,
        lock_file: PathBuf,
        stderr: String,
    },

    /// git wrote more to stdout than the driver keeps.
    #[error("`{command}` wrote more than {limit} bytes of output")]
    OutputTooLarge { command: CommandLine, limit: usize },

    /// git succeeded but printed something this crate does not understand.
    #[error("`{command}` printed what was not expected: {detail}")]
    UnexpectedOutput {
        command: CommandLine,
        detail: String,
    },

    /// The installed git lacks a feature this crate relies on.
    #[error("git {found} is too old: baton needs git {required} or newer")]
    Unsupported {
        found: String,
        required: &'static str,
    },

    /// A directory that should be inside a git work tree is not.
    #[error("`{}` is not inside a git work tree", path.display())]
    NotARepository { path: PathBuf },

    /// A revision does not name a commit.
    #[error("`{revision}` does not name a commit in the repository at `{}`", repository.display())]
    UnknownRevision {
        revision: String,
        repository: PathBuf,
    },

    /// A name is not a valid branch name (`git check-ref-format --branch`).
    #[error("`{name}` is not a valid branch name")]
    InvalidBranchName { name: String },

    /// A branch that should exist does not.
    #[error("there is no branch `{branch}`")]
    NoSuchBranch { branch: String },

    /// A repository has no remote of this name.
    #[error(
        "the repository at `{}` has no remote `{remote}` ({})",
        repository.display(),
        describe_remotes(known)
    )]
    NoSuchRemote {
        remote: String,
        repository: PathBuf,
        /// The remotes it has, by name.
        known: Vec<String>,
    },

    /// A remote refused a branch: it holds a different branch of that name (a push is never
    /// forced), or a hook on either side declined. Nothing changed on the remote.
    #[error("the remote `{remote}` refused the branch `{branch}`: {reason}")]
    PushRejected {
        remote: String,
        branch: String,
        /// git's words for the refusal, with what the remote's hook said.
        reason: String,
    },

    /// Every suffixed variant of a branch name is taken.
    #[error(
        "no free branch name: `{wanted}` and its suffixed variants up to `-{last_suffix}` all exist"
    )]
    NoFreeBranchName { wanted: String, last_suffix: u32 },

    /// Deleting a branch that is not merged into its base would lose its commits.
    #[error(
        "the branch `{branch}` is not merged into `{base}`: deleting it would lose its commits (force to delete it anyway)"
    )]
    NotMerged { branch: String, base: String },

    /// A branch would move to a commit that does not contain its head: that is no
    /// fast-forward, and its commits would be lost.
    #[error("the branch `{branch}` cannot fast-forward to {target}: it has commits {target} lacks")]
    NotFastForward { branch: String, target: String },

    /// A branch is checked out in a worktree, which git does not allow twice and which must
    /// not be deleted.
    #[error("the branch `{branch}` is checked out in the worktree `{}`", path.display())]
    BranchCheckedOut { branch: String, path: PathBuf },

    /// A worktree holds changes that are not committed on its branch.
    #[error(
        "the worktree `{}` holds changes that are not on its branch: {} (commit them, or force to discard them)",
        path.display(),
        list_paths(files)
    )]
    UncommittedChanges { path: PathBuf, files: Vec<PathBuf> },

    /// A worktree's HEAD is detached at a commit that no branch contains.
    #[error(
        "the worktree `{}` is at commit {head}, which no branch contains (create a branch there, or force to discard it)",
        path.display()
    )]
    UnreachableHead { path: PathBuf, head: String },

    /// A worktree is locked (`git worktree lock`), which protects it from removal.
    #[error("the worktree `{}` is locked ({reason}): unlock it first, or force", path.display())]
    WorktreeLocked { path: PathBuf, reason: String },

    /// A worktree is not on the branch it was expected to be on.
    #[error(
        "the worktree `{}` is on {}, not on the branch `{expected}`",
        path.display(),
        found.as_deref().map_or_else(|| "a detached HEAD".to_owned(), |branch| format!("the branch `{branch}`"))
    )]
    WrongBranch {
        path: PathBuf,
        expected: String,
        found: Option<String>,
    },

    /// A path where a worktree should go holds something that is not one of this
    /// repository's worktrees; it is never deleted.
    #[error(
        "`{}` exists and is not a worktree of this repository: move it away, or choose another path",
        path.display()
    )]
    PathOccupied { path: PathBuf },

    /// A path is not one of this repository's worktrees.
    #[error("`{}` is not a worktree of this repository", path.display())]
    NotAWorktree { path: PathBuf },

    /// The per-repository lock file could not be opened or locked.
    #[error("could not take the worktree lock `{}`", path.display())]
    LockFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Another thread or process held the per-repository lock for longer than the timeout.
    #[error(
        "another baton held the worktree lock `{}` for more than {} s",
        path.display(),
        timeout.as_secs_f64()
    )]
    LockTimeout { path: PathBuf, timeout: Duration },

    /// A file in the repository (such as `info/exclude`) could not be read or written.
    #[error("could not update `{}`", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl GitError {
    /// Whether the failure was a lock file left by another git process: worth a retry.
    pub fn is_locked(&self) -> bool {
        matches!(self, GitError::Locked { .. })
    }

    /// git's own message, when git said anything.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            GitError::Failed { stderr, .. } | GitError::Locked { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// Builds the error for a git process that exited unsuccessfully: a lock file it could not
/// create is [`GitError::Locked`], anything else [`GitError::Failed`].
pub(crate) fn failure(command: CommandLine, status: ExitStatus, stderr: &[u8]) -> GitError {
    let stderr = String::from_utf8_lossy(stderr).trim().to_owned();
    match lock_file_in(&stderr) {
        Some(lock_file) => GitError::Locked {
            command,
            lock_file,
            stderr,
        },
        None => GitError::Failed {
            command,
            status,
            stderr,
        },
    }
}

/// Finds the lock file in git's "Unable to create '…/index.lock': File exists." message.
fn lock_file_in(stderr: &str) -> Option<PathBuf> {
    const OPENING: &str = "Unable to create '";
    const CLOSING: &str = "': File exists.";
    let start = stderr.find(OPENING)? + OPENING.len();
    let length = stderr[start..].find(CLOSING)?;
    let path = &stderr[start..start + length];
    path.ends_with(".lock").then(|| PathBuf::from(path))
}

fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".to_owned(),
    }
}

fn describe_remotes(known: &[String]) -> String {
    if known.is_empty() {
        String::from("it has none")
    } else {
        let names: Vec<String> = known.iter().map(|name| format!("`{name}`")).collect();
        format!("it has {}", names.join(", "))
    }
}

fn describe_stderr(stderr: &str) -> &str {
    if stderr.is_empty() {
        "(git printed no message)"
    } else {
        stderr
    }
}

/// The paths as a comma-separated list, cut short after a dozen so that a message stays
/// readable when an agent left thousands of files.
pub(crate) fn list_paths(paths: &[PathBuf]) -> String {
    const SHOWN: usize = 12;
    let mut list = paths
        .iter()
        .take(SHOWN)
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        list.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_lock_file_in_gits_message() {
        let stderr = "fatal: Unable to create '/tmp/r/.git/index.lock': File exists.\n\nAnother git process seems to be running";
        assert_eq!(
            lock_file_in(stderr),
            Some(PathBuf::from("/tmp/r/.git/index.lock"))
        );
        let reference = "fatal: cannot lock ref 'HEAD': Unable to create '/tmp/r/.git/refs/heads/main.lock': File exists.";
        assert_eq!(
            lock_file_in(reference),
            Some(PathBuf::from("/tmp/r/.git/refs/heads/main.lock"))
        );
        assert_eq!(
            lock_file_in("fatal: Unable to create '/tmp/x': File exists."),
            None
        );
        assert_eq!(lock_file_in("fatal: not a git repository"), None);
    }

    #[test]
    fn errors_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<GitError>();
    }

    #[test]
    fn long_file_lists_are_cut_short() {
        let files: Vec<PathBuf> = (0..14).map(|n| PathBuf::from(format!("f{n}"))).collect();
        let listed = list_paths(&files);
        assert!(listed.starts_with("f0, f1, "), "{listed}");
        assert!(listed.ends_with("f11 and 2 more"), "{listed}");
    }
}
