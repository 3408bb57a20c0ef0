//! The per-repository lock that serialises creating and removing worktrees, between threads
//! and between processes: an `flock` on a file in the common git directory.
//!
//! git itself takes no lock around `git worktree add`: two at once may pick the same
//! administrative directory, and choosing a free branch name then creating it is a
//! check-then-act race. Every opening of the file is its own open file description, so two
//! threads of one process exclude each other just as two processes do; the file is opened
//! close-on-exec, so no git child inherits the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::GitError;
use crate::repository::Repository;

/// The lock file's name in the repository's common git directory.
pub const LOCK_FILE_NAME: &str = "baton-worktrees.lock";

/// The longest pause between two attempts to take a held lock.
const LONGEST_PAUSE: Duration = Duration::from_millis(20);

/// Proof that the holder has the repository's worktree lock; letting go of it (drop)
/// releases the lock. Operations that create or remove worktrees take it by reference.
#[derive(Debug)]
pub struct WorktreeLock {
    // Held for its flock, which closing the file releases.
    _file: File,
    path: PathBuf,
}

impl WorktreeLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Repository {
    /// Takes the repository's worktree lock, waiting while another thread or process holds
    /// it, for at most the driver's timeout ([`GitError::LockTimeout`]).
    pub fn lock_worktrees(&self) -> Result<WorktreeLock, GitError> {
        let path = self.common_dir().join(LOCK_FILE_NAME);
        let lock_error = |source| GitError::LockFile {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_error)?;
        let timeout = self.git().timeout();
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(WorktreeLock { _file: file, path }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(source)) => return Err(lock_error(source)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GitError::LockTimeout { path, timeout });
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// Whether a lock was taken in this repository (by its lock file's path).
    pub(crate) fn holds(&self, lock: &WorktreeLock) -> bool {
        lock.path == self.common_dir().join(LOCK_FILE_NAME)
    }
}
