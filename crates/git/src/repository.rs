//! A repository found from a directory: where it is, what its refs name, whether a worktree
//! is clean, and keeping paths out of git's view through `info/exclude`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::command::{Git, argv};
use crate::error::GitError;
use crate::porcelain::{CommitId, StatusEntry, Worktree, parse_status, parse_worktrees};

/// A git repository, as found from a directory inside one of its work trees.
///
/// Repository-wide commands (refs, worktrees, merges computed in memory) run in the work
/// tree it was found from; commands about one worktree take that worktree's path.
#[derive(Debug, Clone)]
pub struct Repository {
    git: Git,
    top_level: PathBuf,
    subdirectory: PathBuf,
    common_dir: PathBuf,
    main_worktree: Option<PathBuf>,
}

impl Repository {
    /// The repository whose work tree holds `dir`, or `None` when `dir` is in no work tree
    /// (no repository at all, or inside a `.git` directory). Other failures, such as git's
    /// refusal of a repository owned by another user, are errors.
    pub fn discover(git: &Git, dir: &Path) -> Result<Option<Repository>, GitError> {
        let finished = git.run(
            dir,
            argv![
                "rev-parse",
                "--is-inside-work-tree",
                "--path-format=absolute",
                "--show-toplevel",
                "--git-common-dir",
                "--show-prefix",
            ],
        )?;
        // Inside a `.git` directory the first answer is `false`, and `--show-toplevel` fails.
        if finished.first_line().ok() == Some("false") {
            return Ok(None);
        }
        if !finished.status.success() {
            let stderr = String::from_utf8_lossy(&finished.stderr);
            if stderr.contains("not a git repository") {
                return Ok(None);
            }
            return Err(finished.into_error());
        }
        let text = finished.stdout_text()?;
        let lines: Vec<&str> = text.split('\n').collect();
        let [_, top_level, common_dir, prefix, ..] = lines[..] else {
            return Err(finished.unexpected("fewer than four lines"));
        };
        let top_level = PathBuf::from(top_level);
        let main_worktree = main_worktree(git, &top_level)?;
        Ok(Some(Repository {
            git: git.clone(),
            subdirectory: PathBuf::from(prefix.trim_end_matches('/')),
            common_dir: PathBuf::from(common_dir),
            main_worktree,
            top_level,
        }))
    }

    /// Like [`Repository::discover`], with [`GitError::NotARepository`] when there is none.
    pub fn open(git: &Git, dir: &Path) -> Result<Repository, GitError> {
        Repository::discover(git, dir)?.ok_or_else(|| GitError::NotARepository {
            path: dir.to_owned(),
        })
    }

    /// The driver this repository runs git with.
    pub fn git(&self) -> &Git {
        &self.git
    }

    /// The top level of the work tree the repository was found from (symbolic links
    /// resolved).
    pub fn top_level(&self) -> &Path {
        &self.top_level
    }

    /// Where the directory it was found from lies within that work tree: empty at the top
    /// level, else a relative path such as `crates/git`.
    pub fn subdirectory(&self) -> &Path {
        &self.subdirectory
    }

    /// The git directory all worktrees share (`.git` of the main worktree).
    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// The main worktree's top level; `None` for a bare repository.
    pub fn main_worktree(&self) -> Option<&Path> {
        self.main_worktree.as_deref()
    }

    /// Whether HEAD names a commit (a fresh `git init` has none).
    pub fn has_commits(&self) -> Result<bool, GitError> {
        let finished = self.run_here(argv!["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])?;
        match finished.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(finished.into_error()),
        }
    }

    /// The commit a revision (`HEAD`, a branch, a tag, an id) names, seen from the work tree
    /// the repository was found from.
    pub fn resolve_commit(&self, revision: &str) -> Result<CommitId, GitError> {
        self.try_resolve_commit(revision)?
            .ok_or_else(|| GitError::UnknownRevision {
                revision: revision.to_owned(),
                repository: self.top_level.clone(),
            })
    }

    /// The commit a revision names, or `None` when it names none.
    pub fn try_resolve_commit(&self, revision: &str) -> Result<Option<CommitId>, GitError> {
        let finished = self.run_here(argv![
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            format!("{revision}^{{commit}}"),
        ])?;
        match finished.code() {
            Some(0) => {
                let line = finished.first_line()?;
                CommitId::parse(line)
                    .map(Some)
                    .ok_or_else(|| finished.unexpected(format!("`{line}` is not a commit id")))
            }
            Some(1) => Ok(None),
            _ => Err(finished.into_error()),
        }
    }

    /// The branch checked out in a worktree; `None` when its HEAD is detached.
    pub fn current_branch(&self, worktree: &Path) -> Result<Option<String>, GitError> {
        let finished = self
            .git
            .run(worktree, argv!["symbolic-ref", "--quiet", "HEAD"])?;
        match finished.code() {
            Some(0) => {
                let reference = finished.first_line()?;
                Ok(Some(
                    reference
                        .strip_prefix("refs/heads/")
                        .unwrap_or(reference)
                        .to_owned(),
                ))
            }
            Some(1) => Ok(None),
            _ => Err(finished.into_error()),
        }
    }

    /// The branch checked out in the main worktree; `None` when detached or bare.
    pub fn main_branch(&self) -> Result<Option<String>, GitError> {
        match &self.main_worktree {
            Some(main) => self.current_branch(main),
            None => Ok(None),
        }
    }

    /// What in a worktree is not committed: modified, staged, deleted and untracked files
    /// (ignored ones left out), each untracked file listed on its own.
    pub fn status(&self, worktree: &Path) -> Result<Vec<StatusEntry>, GitError> {
        let finished = self.git.output(
            worktree,
            argv![
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--ignore-submodules=none",
            ],
        )?;
        parse_status(&finished.stdout).ok_or_else(|| finished.unexpected("malformed status"))
    }

    /// Whether a worktree holds nothing uncommitted, untracked files included.
    pub fn is_clean(&self, worktree: &Path) -> Result<bool, GitError> {
        Ok(self.status(worktree)?.is_empty())
    }

    /// Whether `ancestor` is reachable from `descendant` (a commit is its own ancestor).
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        let finished = self.run_here(argv![
            "merge-base",
            "--is-ancestor",
            "--end-of-options",
            ancestor,
            descendant,
        ])?;
        match finished.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(finished.into_error()),
        }
    }

    /// How many commits `to` has that `from` lacks (`git rev-list --count from..to`).
    pub fn count_commits(&self, from: &str, to: &str) -> Result<usize, GitError> {
        let finished = self
            .run_here(argv!["rev-list", "--count", format!("{from}..{to}"), "--"])?
            .success()?;
        let line = finished.first_line()?;
        line.parse()
            .map_err(|_| finished.unexpected(format!("`{line}` is not a count")))
    }

    /// Every worktree of the repository, the main one first.
    pub fn worktrees(&self) -> Result<Vec<Worktree>, GitError> {
        list_worktrees(&self.git, &self.top_level)
    }

    /// The repository's `info/exclude`, which every worktree shares (it lives in the common
    /// git directory).
    pub fn exclude_path(&self) -> PathBuf {
        self.common_dir.join("info").join("exclude")
    }

    /// Adds a pattern to `info/exclude` unless a line already says exactly that; returns
    /// whether it was added. Nothing else in the file changes.
    pub fn exclude(&self, pattern: &str) -> Result<bool, GitError> {
        let path = self.exclude_path();
        let file_error = |source| GitError::File {
            path: path.clone(),
            source,
        };
        let existing = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(file_error(error)),
        };
        let pattern = pattern.trim();
        if existing
            .split(|byte| *byte == b'\n')
            .any(|line| line.trim_ascii() == pattern.as_bytes())
        {
            return Ok(false);
        }
        let mut addition = Vec::new();
        if !existing.is_empty() && !existing.ends_with(b"\n") {
            addition.push(b'\n');
        }
        addition.extend_from_slice(pattern.as_bytes());
        addition.push(b'\n');
        if let Some(info) = path.parent() {
            fs::create_dir_all(info).map_err(file_error)?;
        }
        // One append of whole lines: two processes adding at once at worst repeat a line.
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(&addition))
            .map_err(file_error)?;
        Ok(true)
    }

    /// Runs git in the work tree the repository was found from.
    pub(crate) fn run_here(
        &self,
        args: Vec<std::ffi::OsString>,
    ) -> Result<crate::command::Finished, GitError> {
        self.git.run(&self.top_level, args)
    }
}

/// Lists the worktrees of the repository `dir` belongs to.
pub(crate) fn list_worktrees(git: &Git, dir: &Path) -> Result<Vec<Worktree>, GitError> {
    let finished = git.output(dir, argv!["worktree", "list", "--porcelain", "-z"])?;
    parse_worktrees(&finished.stdout).ok_or_else(|| finished.unexpected("malformed worktree list"))
}

/// The main worktree's path: git lists it first, as `bare` when there is none.
fn main_worktree(git: &Git, dir: &Path) -> Result<Option<PathBuf>, GitError> {
    let worktrees = list_worktrees(git, dir)?;
    Ok(worktrees
        .into_iter()
        .next()
        .filter(|main| !main.bare)
        .map(|main| main.path))
}
