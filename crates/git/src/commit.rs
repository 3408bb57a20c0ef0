//! Committing what an agent left in a worktree, and measuring and showing what a branch
//! changed against its base.
//!
//! Commits are made for the user, unattended: their identity comes from the repository's
//! configuration, else [`DEFAULT_AUTHOR_NAME`] `<`[`DEFAULT_AUTHOR_EMAIL`]`>`, passed with
//! `-c` only for what the configuration lacks, so a machine without `user.name` never makes
//! delivery fail. Hooks (`--no-verify`) and signing (`--no-gpg-sign`) are skipped: the
//! task's checks are the gate, and a hook or a pinentry waiting for a person would hang an
//! unattended run.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use crate::command::argv;
use crate::error::GitError;
use crate::porcelain::CommitId;
use crate::repository::Repository;

/// The author and committer name when the repository's configuration has none.
pub const DEFAULT_AUTHOR_NAME: &str = "Baton";

/// The author and committer email when the repository's configuration has none.
pub const DEFAULT_AUTHOR_EMAIL: &str = "baton@localhost";

/// A commit message: a title, a blank line, then trailers (`Key: value`), which `git
/// interpret-trailers` and `git log --format=%(trailers)` read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMessage {
    title: String,
    trailers: Vec<(String, String)>,
}

/// What [`Repository::commit_all`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A commit was made; `head` is it.
    Committed { head: CommitId },
    /// The worktree held nothing to commit; `head` is the branch's commit as it was.
    NoChanges { head: CommitId },
}

/// How much a range of history changed, as `git diff --shortstat` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStat {
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
}

impl CommitMessage {
    /// A message with this title (surrounding blank space trimmed; an empty title becomes
    /// `(untitled)`).
    pub fn new(title: &str) -> CommitMessage {
        let title = title.trim();
        CommitMessage {
            title: if title.is_empty() {
                "(untitled)".to_owned()
            } else {
                title.to_owned()
            },
            trailers: Vec::new(),
        }
    }

    /// Adds a trailer. A key keeps only letters, digits and dashes; a value is put on one
    /// line. Trailers keep the order they were added in.
    pub fn with_trailer(mut self, key: &str, value: &str) -> CommitMessage {
        let key: String = key
            .trim()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        self.trailers.push((key, value));
        self
    }

    /// The whole message.
    pub fn text(&self) -> String {
        let mut text = self.title.clone();
        if !self.trailers.is_empty() {
            text.push_str("\n\n");
            for (key, value) in &self.trailers {
                text.push_str(&format!("{key}: {value}\n"));
            }
        }
        text
    }
}

impl CommitOutcome {
    /// The branch's commit after the operation.
    pub fn head(&self) -> &CommitId {
        match self {
            CommitOutcome::Committed { head } | CommitOutcome::NoChanges { head } => head,
        }
    }
}

impl Repository {
    /// Commits everything a worktree holds on its branch: `git add -A` (so `.gitignore`
    /// is respected and deletions count), then one commit with `message`, unless nothing
    /// changed, which is [`CommitOutcome::NoChanges`] and not an error. Refuses with
    /// [`GitError::WrongBranch`] when the worktree is no longer on `branch` (an agent
    /// switched), so that work never lands on the wrong branch.
    pub fn commit_all(
        &self,
        worktree: &Path,
        branch: &str,
        message: &CommitMessage,
    ) -> Result<CommitOutcome, GitError> {
        let current = self.current_branch(worktree)?;
        if current.as_deref() != Some(branch) {
            return Err(GitError::WrongBranch {
                path: worktree.to_owned(),
                expected: branch.to_owned(),
                found: current,
            });
        }
        self.git().output(worktree, argv!["add", "--all"])?;
        let staged = self.git().run(
            worktree,
            argv!["diff", "--cached", "--quiet", "--no-ext-diff"],
        )?;
        match staged.code() {
            Some(0) => {
                return Ok(CommitOutcome::NoChanges {
                    head: self.head_commit(worktree)?,
                });
            }
            Some(1) => {}
            _ => return Err(staged.into_error()),
        }
        let mut args = self.identity_args(worktree)?;
        args.extend(argv![
            "commit",
            "--quiet",
            "--no-verify",
            "--no-gpg-sign",
            // Not the configured `commit.cleanup`: `strip` would drop a title such as
            // "#12 fix" as a comment.
            "--cleanup=whitespace",
            "--message",
            message.text(),
        ]);
        self.git().output(worktree, args)?;
        Ok(CommitOutcome::Committed {
            head: self.head_commit(worktree)?,
        })
    }

    /// Files changed, insertions and deletions from `base` to `head` (renames found).
    pub fn diff_stat(&self, base: &str, head: &str) -> Result<DiffStat, GitError> {
        let finished = self
            .run_here(argv![
                "diff",
                "--shortstat",
                "--find-renames",
                "--no-ext-diff",
                "--end-of-options",
                base,
                head,
            ])?
            .success()?;
        let line = finished.first_line()?;
        parse_shortstat(line)
            .ok_or_else(|| finished.unexpected(format!("`{line}` is not a diff stat")))
    }

    /// The patch from `base` to `head`, as `git diff` prints it (no colour).
    pub fn diff(&self, base: &str, head: &str) -> Result<Vec<u8>, GitError> {
        let finished = self.run_here(diff_args(base, head, false))?.success()?;
        Ok(finished.stdout)
    }

    /// A ready `git diff` from `base` to `head` for a caller that streams it (into a pager):
    /// the environment is prepared, stdin/stdout/stderr are the caller's to set. With
    /// `color`, git colours it as for a terminal.
    pub fn diff_command(&self, base: &str, head: &str, color: bool) -> Command {
        let mut command = self.git().command(self.top_level());
        command.args(diff_args(base, head, color));
        command
    }

    /// The commit checked out in a worktree (after an agent's own commits, say).
    pub fn head_commit(&self, worktree: &Path) -> Result<CommitId, GitError> {
        let finished = self
            .git()
            .output(worktree, argv!["rev-parse", "--verify", "HEAD^{commit}"])?;
        let line = finished.first_line()?;
        CommitId::parse(line)
            .ok_or_else(|| finished.unexpected(format!("`{line}` is not a commit id")))
    }

    /// `-c user.name=…`/`-c user.email=…` for what the configuration seen from `dir` lacks.
    pub(crate) fn identity_args(&self, dir: &Path) -> Result<Vec<OsString>, GitError> {
        let finished = self.git().run(
            dir,
            argv!["config", "--get-regexp", r"^user\.(name|email)$"],
        )?;
        let configured = match finished.code() {
            Some(0) => finished.stdout_text()?.to_owned(),
            // None of the two is set.
            Some(1) => String::new(),
            _ => return Err(finished.into_error()),
        };
        let has = |key: &str| {
            configured.lines().any(|line| {
                line.split_once(' ')
                    .is_some_and(|(name, value)| name == key && !value.trim().is_empty())
            })
        };
        let mut args = Vec::new();
        if !has("user.name") {
            args.extend(argv!["-c", format!("user.name={DEFAULT_AUTHOR_NAME}")]);
        }
        if !has("user.email") {
            args.extend(argv!["-c", format!("user.email={DEFAULT_AUTHOR_EMAIL}")]);
        }
        Ok(args)
    }
}

fn diff_args(base: &str, head: &str, color: bool) -> Vec<OsString> {
    let color = if color {
        "--color=always"
    } else {
        "--no-color"
    };
    argv![
        "diff",
        color,
        "--find-renames",
        "--no-ext-diff",
        "--end-of-options",
        base,
        head,
    ]
}

/// Reads ` 3 files changed, 10 insertions(+), 2 deletions(-)`; an empty line is no change.
fn parse_shortstat(line: &str) -> Option<DiffStat> {
    let mut stat = DiffStat::default();
    for part in line
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let (count, what) = part.split_once(' ')?;
        let count: u64 = count.parse().ok()?;
        if what.starts_with("file") {
            stat.files_changed = count;
        } else if what.starts_with("insertion") {
            stat.insertions = count;
        } else if what.starts_with("deletion") {
            stat.deletions = count;
        } else {
            return None;
        }
    }
    Some(stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortstat_lines_parse_in_every_shape() {
        let stat = |files_changed, insertions, deletions| DiffStat {
            files_changed,
            insertions,
            deletions,
        };
        let cases = [
            (
                " 3 files changed, 10 insertions(+), 2 deletions(-)",
                stat(3, 10, 2),
            ),
            (" 1 file changed, 1 insertion(+)", stat(1, 1, 0)),
            (" 1 file changed, 4 deletions(-)", stat(1, 0, 4)),
            (
                " 2 files changed, 0 insertions(+), 0 deletions(-)",
                stat(2, 0, 0),
            ),
            ("", stat(0, 0, 0)),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_shortstat(line), Some(expected), "{line:?}");
        }
        assert_eq!(parse_shortstat(" 3 fichiers modifiés"), None);
    }

    #[test]
    fn messages_put_trailers_after_a_blank_line() {
        let message = CommitMessage::new("  Fix the login bug \n")
            .with_trailer("Baton-Task", "12")
            .with_trailer("Baton Session", "a\nb");
        assert_eq!(
            message.text(),
            "Fix the login bug\n\nBaton-Task: 12\nBaton-Session: a b\n"
        );
        assert_eq!(CommitMessage::new(" ").text(), "(untitled)");
    }
}
