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
use std::fs;
use std::path::Path;

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
        self.url_of(remote).map(Some)
    }

    /// The URL of `remote`, which `git remote` listed.
    fn url_of(&self, remote: &str) -> Result<String, GitError> {
        let finished = self
            .run_here(argv!["remote", "get-url", "--end-of-options", remote])?
            .success()?;
        Ok(finished.first_line()?.to_owned())
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

    /// The name of a remote whose URL is the same remote as `url` ([`same_remote`]), the
    /// first in `git remote`'s order; `None` when no remote is.
    pub fn remote_named_for(&self, url: &str) -> Result<Option<String>, GitError> {
        // Listed once: each remote's URL is then one `get-url`.
        for name in self.remotes()? {
            if same_remote(&self.url_of(&name)?, url) {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Fetches every branch of `remote` (its configured refspecs), asking no one anything,
    /// as a push does; what the remote lacks stays missing, and a remote that cannot be
    /// reached is [`GitError::Failed`] with git's message.
    pub fn fetch(&self, remote: &str) -> Result<(), GitError> {
        let git = self.unattended_git()?;
        git.run_detached(
            self.top_level(),
            argv![
                "-c",
                "credential.interactive=false",
                "fetch",
                "--quiet",
                "--no-tags",
                "--end-of-options",
                remote,
            ],
        )?
        .success()?;
        Ok(())
    }

    /// The driver with the variables that keep a push from asking anything.
    fn unattended_git(&self) -> Result<Git, GitError> {
        let ssh = self.git().ssh_command(self.top_level())?;
        Ok(unattended(self.git(), ssh))
    }
}

impl Git {
    /// The ssh command git would run in `dir`, to be put in batch mode: `GIT_SSH_COMMAND`,
    /// else `core.sshCommand` (the repository's, or the user's outside one), else `ssh` — or
    /// `None` when only `GIT_SSH` names a program (git runs it without a shell, and it may be
    /// no ssh that takes `-o`).
    fn ssh_command(&self, dir: &Path) -> Result<Option<OsString>, GitError> {
        if let Some(command) = self.variable("GIT_SSH_COMMAND") {
            return Ok(Some(command.to_owned()));
        }
        let finished = self.run(dir, argv!["config", "--get", "core.sshCommand"])?;
        match finished.code() {
            Some(0) => return Ok(Some(OsString::from(finished.first_line()?))),
            Some(1) => {}
            _ => return Err(finished.into_error()),
        }
        if self.variable("GIT_SSH").is_some() {
            return Ok(None);
        }
        Ok(Some(OsString::from("ssh")))
    }

    /// Clones `url` into `into` (which must not exist or be empty; its parent is made),
    /// asking no one anything, as a push does, and returns the new repository.
    pub fn clone_repository(&self, url: &str, into: &Path) -> Result<Repository, GitError> {
        let parent = into.parent().unwrap_or(into);
        fs::create_dir_all(parent).map_err(|source| GitError::File {
            path: parent.to_owned(),
            source,
        })?;
        // Outside a repository, git reads the user's and the system's `core.sshCommand`.
        let ssh = self.ssh_command(parent)?;
        unattended(self, ssh)
            .run_detached(
                parent,
                argv![
                    "-c",
                    "credential.interactive=false",
                    "clone",
                    "--quiet",
                    "--no-recurse-submodules",
                    "--end-of-options",
                    url,
                    into,
                ],
            )?
            .success()?;
        Repository::open(self, into)
    }
}

/// `git` with the variables that keep a command that talks to a remote from asking
/// anything, and `ssh` (when known) in batch mode.
fn unattended(git: &Git, ssh: Option<OsString>) -> Git {
    let mut git = git.clone();
    for (name, value) in UNATTENDED_VARIABLES {
        git = git.with_env(*name, *value);
    }
    if let Some(mut batch) = ssh {
        batch.push(" -o BatchMode=yes");
        git = git.with_env("GIT_SSH_COMMAND", batch);
    }
    git
}

/// A remote's URL with its credentials left out, fit to keep and to show: the whole user
/// part of an `http(s)://user:token@host/…` URL (a user name there is often a token
/// itself), and the password of any other `scheme://user:password@host/…`. An scp-style
/// `git@host:path` and a path have none and come back as they are.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user_part, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    if matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "ftp" | "ftps"
    ) {
        return format!("{scheme}://{host}{path}");
    }
    let user = user_part.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}@{host}{path}")
}

/// Whether two URLs name the same remote: credentials, a trailing `/` and a trailing
/// `.git` do not count, the scheme and the host are compared without case, an scp-style
/// `git@host:path` is `ssh://git@host/path`, and `file:///path` is `/path`.
pub fn same_remote(one: &str, other: &str) -> bool {
    remote_key(one) == remote_key(other)
}

/// The form of a URL that [`same_remote`] compares.
fn remote_key(url: &str) -> String {
    let url = without_credentials(url.trim());
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest.to_owned()),
        None => match scp_parts(&url) {
            Some((authority, path)) => (String::from("ssh"), format!("{authority}/{path}")),
            None => (String::from("file"), url.clone()),
        },
    };
    let rest = if scheme == "file" {
        rest
    } else {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user, host)) => format!("{user}@{}", host.to_ascii_lowercase()),
            None => authority.to_ascii_lowercase(),
        };
        format!("{authority}/{}", path.trim_start_matches('/'))
    };
    let mut path = rest.as_str();
    loop {
        let trimmed = path.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
        if trimmed == path {
            break;
        }
        path = trimmed;
    }
    format!("{scheme}://{path}")
}

/// `[user@]host` and the path of an scp-style URL (`git@host:org/repo`), as git tells one
/// from a path: a colon before any slash.
fn scp_parts(url: &str) -> Option<(&str, &str)> {
    let colon = url.find(':')?;
    let slash = url.find('/').unwrap_or(usize::MAX);
    (colon < slash && colon > 0).then(|| (&url[..colon], &url[colon + 1..]))
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
    fn credentials_are_left_out_of_urls() {
        for (url, kept) in [
            (
                "https://x-access-token:ghp_secret@github.com/org/repo.git",
                "https://github.com/org/repo.git",
            ),
            (
                "https://ghp_secret@github.com/org/repo",
                "https://github.com/org/repo",
            ),
            ("HTTP://user:pw@host:8080/r?x=1", "HTTP://host:8080/r?x=1"),
            (
                "ssh://git:hunter2@host/org/repo.git",
                "ssh://git@host/org/repo.git",
            ),
            ("ssh://git@host/org/repo.git", "ssh://git@host/org/repo.git"),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            ("/srv/git/repo.git", "/srv/git/repo.git"),
            ("https://github.com/a@b/c", "https://github.com/a@b/c"),
        ] {
            assert_eq!(without_credentials(url), kept, "{url}");
        }
    }

    #[test]
    fn the_same_remote_is_recognised_however_it_is_spelled() {
        let same = [
            (
                "git@github.com:org/repo.git",
                "ssh://git@github.com/org/repo",
            ),
            (
                "git@GitHub.com:org/repo",
                "ssh://git@github.com/org/repo.git/",
            ),
            (
                "https://token@github.com/org/repo.git",
                "https://github.com/org/repo",
            ),
            ("/srv/git/repo.git", "file:///srv/git/repo.git/"),
            ("/srv/git/repo.git", "/srv/git/repo"),
        ];
        for (one, other) in same {
            assert!(same_remote(one, other), "{one} and {other}");
        }
        let different = [
            ("git@github.com:org/repo", "https://github.com/org/repo"),
            ("git@github.com:org/repo", "git@github.com:org/other"),
            ("git@github.com:org/repo", "me@github.com:org/repo"),
            ("/srv/git/repo", "/srv/git/repo2"),
        ];
        for (one, other) in different {
            assert!(!same_remote(one, other), "{one} and {other}");
        }
    }

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
