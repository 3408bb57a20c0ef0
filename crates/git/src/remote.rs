//! Remotes: which a repository has, where one points, and pushing one branch to one — never
//! forced, and never asking anyone for a password.
//!
//! A push runs unattended, perhaps on a host no one watches, so every way git or its helpers
//! could ask a question is closed, and an answer that needs a person becomes a failure with
//! git's message instead of a wait:
//!
//! - the push runs in a session of its own, without a controlling terminal, so nothing it
//!   starts can open `/dev/tty` (ssh asks for passphrases and host keys there);
//! - `GIT_TERMINAL_PROMPT=0` (set for every command of the driver);
//! - `GIT_ASKPASS=true`: git's last resort for a user name or password answers empty at
//!   once (it takes precedence over `core.askPass` and `SSH_ASKPASS`, which may be dialogs);
//! - `SSH_ASKPASS_REQUIRE=never`, and ssh in batch mode (`-o BatchMode=yes` after the ssh
//!   command the person configured in `GIT_SSH_COMMAND` or `core.sshCommand`, or plain
//!   `ssh`; left alone when only `GIT_SSH` names a program, which may not be ssh);
//! - `credential.interactive=false` and `GCM_INTERACTIVE=never`, which credential helpers
//!   that can show a dialog (Git Credential Manager) honour.
//!
//! Credential helpers themselves stay: `store`, `cache`, `gh auth git-credential` and
//! keychains answer without asking, and they are how a push over HTTPS authenticates.
//! Hooks stay too: a `pre-push` hook that refuses is a refusal like the remote's.

use std::ffi::OsString;

use crate::command::{Git, argv};
use crate::error::GitError;
use crate::repository::Repository;

/// What a push did to the remote's branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The remote had no branch of that name; it has one now.
    Created,
    /// The remote's branch moved forward to ours.
    Updated,
    /// The remote's branch already pointed at our commit.
    UpToDate,
}

/// The variables a push sets on top of the driver's, so that nothing asks for anything.
const UNATTENDED_VARIABLES: &[(&str, &str)] = &[
    ("GIT_ASKPASS", "true"),
    ("SSH_ASKPASS_REQUIRE", "never"),
    ("GCM_INTERACTIVE", "never"),
];

impl Repository {
    /// The repository's remotes, by name, as `git remote` lists them.
    pub fn remotes(&self) -> Result<Vec<String>, GitError> {
        let finished = self.run_here(argv!["remote"])?.success()?;
        Ok(finished
            .stdout_text()?
            .lines()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The URL a remote fetches from (`git remote get-url`, `insteadOf` applied), or `None`
    /// when the repository has no remote of that name. The URL is as configured: it may
    /// hold a user name and a token, so it is not for showing as it is.
    pub fn remote_url(&self, remote: &str) -> Result<Option<String>, GitError> {
        if !self.remotes()?.iter().any(|name| name == remote) {
            return Ok(None);
        }
        let finished = self
            .run_here(argv!["remote", "get-url", "--end-of-options", remote])?
            .success()?;
        Ok(Some(finished.first_line()?.to_owned()))
    }

    /// Pushes `branch` to the branch of the same name on `remote`, a configured remote (a
    /// URL or a path is refused: [`GitError::NoSuchRemote`]); never forced, without tags,
    /// within the driver's timeout, asking no one anything (see the module documentation).
    ///
    /// A refusal (the remote holds a different branch of that name, a hook declined) is
    /// [`GitError::PushRejected`] with git's reason and what the remote said; a remote that
    /// cannot be reached or will not authenticate is [`GitError::Failed`] with git's
    /// message. Either way nothing changed on the remote, and the local branch stays.
    pub fn push(&self, remote: &str, branch: &str) -> Result<Pushed, GitError> {
        let known = self.remotes()?;
        if !known.iter().any(|name| name == remote) {
            return Err(GitError::NoSuchRemote {
                remote: remote.to_owned(),
                repository: self.top_level().to_owned(),
                known,
            });
        }
        if self.branch_head(branch)?.is_none() {
            return Err(GitError::NoSuchBranch {
                branch: branch.to_owned(),
            });
        }
        let git = self.unattended_git()?;
        let reference = format!("refs/heads/{branch}");
        let finished = git.run_detached(
            self.top_level(),
            argv![
                "-c",
                "credential.interactive=false",
                "push",
                "--porcelain",
                "--no-follow-tags",
                "--end-of-options",
                remote,
                format!("{reference}:{reference}"),
            ],
        )?;
        let stdout = String::from_utf8_lossy(&finished.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&finished.stderr).into_owned();
        let status = porcelain_status(&stdout, &reference);
        let rejected = |reason: String| GitError::PushRejected {
            remote: remote.to_owned(),
            branch: branch.to_owned(),
            reason,
        };
        match status {
            Some(('*', _)) if finished.status.success() => Ok(Pushed::Created),
            Some(('=', _)) if finished.status.success() => Ok(Pushed::UpToDate),
            Some((' ' | '+', _)) if finished.status.success() => Ok(Pushed::Updated),
            Some(('!', summary)) => Err(rejected(with_remote_words(summary, &stderr))),
            // A `pre-push` hook that declines stops git before it reports any reference.
            None if finished.code() == Some(1) && stderr.contains("failed to push some refs") => {
                Err(rejected(refusal_words(&stderr)))
            }
            _ if finished.status.success() => {
                Err(finished.unexpected(format!("no status line for {reference}")))
            }
            _ => Err(finished.into_error()),
        }
    }

    /// The driver with the variables that keep a push from asking anything.
    fn unattended_git(&self) -> Result<Git, GitError> {
        let mut git = self.git().clone();
        for (name, value) in UNATTENDED_VARIABLES {
            git = git.with_env(*name, *value);
        }
        if let Some(ssh) = self.ssh_command()? {
            let mut batch = ssh;
            batch.push(" -o BatchMode=yes");
            git = git.with_env("GIT_SSH_COMMAND", batch);
        }
        Ok(git)
    }

    /// The ssh command git would run, to be put in batch mode: `GIT_SSH_COMMAND`, else
    /// `core.sshCommand`, else `ssh` — or `None` when only `GIT_SSH` names a program (git
    /// runs it without a shell, and it may be no ssh that takes `-o`).
    fn ssh_command(&self) -> Result<Option<OsString>, GitError> {
        if let Some(command) = self.git().variable("GIT_SSH_COMMAND") {
            return Ok(Some(command.to_owned()));
        }
        let finished = self.run_here(argv!["config", "--get", "core.sshCommand"])?;
        match finished.code() {
            Some(0) => return Ok(Some(OsString::from(finished.first_line()?))),
            Some(1) => {}
            _ => return Err(finished.into_error()),
        }
        if self.git().variable("GIT_SSH").is_some() {
            return Ok(None);
        }
        Ok(Some(OsString::from("ssh")))
    }
}

/// The flag and the summary of the porcelain line about `reference`:
/// `!\trefs/heads/b:refs/heads/b\t[remote rejected] (pre-receive hook declined)`.
fn porcelain_status<'a>(stdout: &'a str, reference: &str) -> Option<(char, &'a str)> {
    stdout.lines().find_map(|line| {
        let mut fields = line.splitn(3, '\t');
        let flag = fields.next()?;
        let refs = fields.next()?;
        let summary = fields.next().unwrap_or("").trim();
        let mut flag_chars = flag.chars();
        let (Some(flag), None) = (flag_chars.next(), flag_chars.next()) else {
            return None;
        };
        refs.strip_prefix(reference)
            .is_some_and(|rest| rest.starts_with(':'))
            .then_some((flag, summary))
    })
}

/// The summary git gave, and what the remote's hooks printed (its `remote:` lines).
fn with_remote_words(summary: &str, stderr: &str) -> String {
    let said: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("remote:"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if said.is_empty() {
        summary.to_owned()
    } else {
        format!("{summary}; the remote said: {}", said.join(" / "))
    }
}

/// git's words when it refused before reporting any reference (a `pre-push` hook's), less
/// its closing "failed to push some refs" line.
fn refusal_words(stderr: &str) -> String {
    let words: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.contains("failed to push some refs"))
        .collect();
    if words.is_empty() {
        String::from("a pre-push hook declined, saying nothing")
    } else {
        format!("declined before sending: {}", words.join(" / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_lines_are_read_for_the_pushed_reference_only() {
        let stdout = "To ../remote.git\n\
            !\trefs/heads/baton/1-a:refs/heads/baton/1-a\t[remote rejected] (pre-receive hook declined)\n\
            *\trefs/heads/baton/1-ab:refs/heads/baton/1-ab\t[new branch]\n\
            Done\n";
        assert_eq!(
            porcelain_status(stdout, "refs/heads/baton/1-a"),
            Some(('!', "[remote rejected] (pre-receive hook declined)"))
        );
        assert_eq!(
            porcelain_status(stdout, "refs/heads/baton/1-ab"),
            Some(('*', "[new branch]"))
        );
        assert_eq!(porcelain_status(stdout, "refs/heads/baton/1"), None);
        assert_eq!(porcelain_status("Done\n", "refs/heads/x"), None);
    }

    #[test]
    fn the_remotes_words_join_the_summary() {
        let stderr = "remote: nope: reserved        \nremote: ask the admins\nerror: failed to push some refs to '../r.git'\n";
        assert_eq!(
            with_remote_words("[remote rejected] (pre-receive hook declined)", stderr),
            "[remote rejected] (pre-receive hook declined); the remote said: nope: reserved / ask the admins"
        );
        assert_eq!(
            with_remote_words("[rejected] (fetch first)", ""),
            "[rejected] (fetch first)"
        );
        assert_eq!(
            refusal_words("local hook says no\nerror: failed to push some refs to '../r.git'\n"),
            "declined before sending: local hook says no"
        );
    }
}
