//! The driver: runs the `git` program by argument vector, never through a shell, in an
//! environment that cannot redirect it, with stdin closed, both pipes read and a timeout.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use crate::command_line::CommandLine;
use crate::error::{GitError, failure};

/// How long one git command may run before it is stopped, unless [`Git::with_timeout`] says
/// otherwise. Generous: checking out a large tree on a loaded disk takes minutes (10,000
/// files took 25 s on the machine this was written on, under load); the timeout is there so
/// that nothing waits forever, not to judge speed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The most stdout kept from one git command; more is [`GitError::OutputTooLarge`].
pub const STDOUT_LIMIT: usize = 64 * 1024 * 1024;

/// The most stderr kept from one git command: its beginning, which holds git's message.
const STDERR_LIMIT: usize = 64 * 1024;

/// How long a timed-out git gets between TERM (on which it removes its lock files) and KILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The `GIT_*` variables left in git's environment: they choose how git authenticates to and
/// trusts a remote (for a push), never which repository, configuration or identity it uses.
pub const KEPT_GIT_VARIABLES: &[&str] = &[
    "GIT_ASKPASS",
    "GIT_HTTP_USER_AGENT",
    "GIT_PROXY_COMMAND",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_SSL_CERT",
    "GIT_SSL_CERT_PASSWORD_PROTECTED",
    "GIT_SSL_KEY",
];

/// Variables every git process gets, after the scrub; see the module documentation.
const FIXED_VARIABLES: &[(&str, &str)] = &[
    ("LC_ALL", "C"),
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_EDITOR", ":"),
    ("GIT_OPTIONAL_LOCKS", "0"),
    ("GIT_ADVICE", "0"),
];

/// The oldest git this crate works with: `git merge-tree --write-tree` arrived in 2.38.
pub const MINIMUM_VERSION: GitVersion = GitVersion {
    major: 2,
    minor: 38,
    patch: 0,
};

/// How to run git: which program, for how long at most, with which environment.
///
/// Cheap to clone; every operation of a [`crate::Repository`] goes through one.
///
/// # The environment
///
/// Git starts from an empty environment: it gets only the variables the caller hands over
/// with [`Git::with_inherited`] (this crate reads no environment of its own; the program's
/// one read of it is its caller's), less the scrubbed ones below, then the fixed ones, then
/// those of [`Git::with_env`].
///
/// Every inherited variable whose name starts with `GIT_` is dropped, except the
/// few in [`KEPT_GIT_VARIABLES`], which only say how to reach and trust a remote. What goes,
/// and why it must:
///
/// - which repository and files git works on: `GIT_DIR`, `GIT_WORK_TREE`, `GIT_COMMON_DIR`,
///   `GIT_INDEX_FILE`, `GIT_OBJECT_DIRECTORY`, `GIT_ALTERNATE_OBJECT_DIRECTORIES`,
///   `GIT_CEILING_DIRECTORIES`, `GIT_DISCOVERY_ACROSS_FILESYSTEM`, `GIT_NAMESPACE`,
///   `GIT_PREFIX`, `GIT_QUARANTINE_PATH`, `GIT_SHALLOW_FILE`, `GIT_GRAFT_FILE`,
///   `GIT_REPLACE_REF_BASE`, `GIT_NO_REPLACE_OBJECTS` — a hook or an agent's shell that
///   exported one of these would otherwise make Baton read or write another repository;
/// - which configuration git reads: `GIT_CONFIG`, `GIT_CONFIG_GLOBAL`, `GIT_CONFIG_SYSTEM`,
///   `GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_PARAMETERS`, `GIT_CONFIG_COUNT` and its
///   `GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`;
/// - who commits: `GIT_AUTHOR_*`, `GIT_COMMITTER_*` (the identity comes from the
///   repository's configuration, see [`Repository::commit_all`](crate::Repository::commit_all));
/// - which programs git runs and how it parses: `GIT_EXEC_PATH`, `GIT_TEMPLATE_DIR`,
///   `GIT_EDITOR`, `GIT_SEQUENCE_EDITOR`, `GIT_PAGER`, `GIT_EXTERNAL_DIFF`,
///   `GIT_DIFF_OPTS`, `GIT_*_PATHSPECS`, `GIT_ATTR_SOURCE`, `GIT_TRACE*`, `GIT_FLUSH`,
///   `GIT_REFLOG_ACTION`, `GIT_MERGE_VERBOSITY`, and any other `GIT_*` a later git adds.
///
/// Then every git process gets `LC_ALL=C` (messages and numbers this crate parses),
/// `LANGUAGE` removed (it would override the message language), `GIT_TERMINAL_PROMPT=0` (never
/// ask for a password), `GIT_EDITOR=:` (never open an editor; `:` is git's own "keep the
/// message"), `GIT_OPTIONAL_LOCKS=0` (`git status` does not rewrite the index, so looking at
/// a user's checkout never takes its `index.lock`) and `GIT_ADVICE=0` (no hints on stderr).
/// Finally the variables given to [`Git::with_env`] are set, which is how tests give git a
/// private `HOME` and `GIT_CONFIG_NOSYSTEM=1`.
#[derive(Debug, Clone)]
pub struct Git {
    program: PathBuf,
    timeout: Duration,
    /// The caller's variables, passed on to git unless scrubbed.
    inherited: Vec<(OsString, OsString)>,
    /// Variables set after the scrub and the fixed ones.
    environment: Vec<(OsString, OsString)>,
}

/// A git version, as `git --version` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GitVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// What a git command left, whatever its exit status.
#[derive(Debug)]
pub(crate) struct Finished {
    pub command: CommandLine,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Builds an argument vector from strings and paths alike.
macro_rules! argv {
    ($($arg:expr),* $(,)?) => {
        vec![$(::std::convert::AsRef::<::std::ffi::OsStr>::as_ref(&$arg).to_owned()),*]
    };
}
pub(crate) use argv;

impl Default for Git {
    fn default() -> Self {
        Git::new()
    }
}

impl Git {
    /// `git` from `PATH`, the default timeout, no inherited and no extra variables.
    pub fn new() -> Self {
        Git {
            program: PathBuf::from("git"),
            timeout: DEFAULT_TIMEOUT,
            inherited: Vec::new(),
            environment: Vec::new(),
        }
    }

    /// Passes these variables (typically the program's own environment, which its caller
    /// read) on to git, less the scrubbed `GIT_*` ones; see [the environment](Git#the-environment).
    /// `PATH` among them is also where `git` is looked for.
    pub fn with_inherited<N, V>(mut self, vars: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<OsString>,
        V: Into<OsString>,
    {
        self.inherited.extend(
            vars.into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .filter(|(name, _)| !is_scrubbed(name)),
        );
        self
    }

    /// Runs this program instead of `git` from `PATH`.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Stops any one git command that runs longer than this.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets a variable in git's environment, after the scrub (so a `GIT_*` given here stays).
    pub fn with_env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.environment.push((name.into(), value.into()));
        self
    }

    /// The longest any one git command may run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A `Command` for git in `dir`, with the environment prepared as for every command of
    /// this crate, for a caller that streams git's output itself (a diff into a pager).
    pub fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command.current_dir(dir);
        command.env_clear();
        command.envs(self.inherited.iter().map(|(name, value)| (name, value)));
        for (name, value) in FIXED_VARIABLES {
            command.env(name, value);
        }
        for (name, value) in &self.environment {
            command.env(name, value);
        }
        command
    }

    /// The installed git's version.
    pub fn version(&self) -> Result<GitVersion, GitError> {
        let finished = self.run(Path::new("/"), argv!["--version"])?.success()?;
        let text = finished.stdout_text()?;
        GitVersion::parse(text).ok_or_else(|| finished.unexpected("no version number"))
    }

    /// The installed git's version, or [`GitError::Unsupported`] when it is older than
    /// [`MINIMUM_VERSION`].
    pub fn check_version(&self) -> Result<GitVersion, GitError> {
        let version = self.version()?;
        if version < MINIMUM_VERSION {
            return Err(GitError::Unsupported {
                found: version.to_string(),
                required: "2.38",
            });
        }
        Ok(version)
    }

    /// Runs git in `dir` and requires it to succeed; returns its stdout.
    pub(crate) fn output(&self, dir: &Path, args: Vec<OsString>) -> Result<Finished, GitError> {
        self.run(dir, args)?.success()
    }

    /// Runs git in `dir` and returns what it left, whatever its exit status: the caller
    /// decides what a non-zero status means.
    pub(crate) fn run(&self, dir: &Path, args: Vec<OsString>) -> Result<Finished, GitError> {
        let mut command = self.command(dir);
        // Its own group, so that a timeout stops hooks and helpers git started, too.
        command.process_group(0);
        self.run_command(command, dir, args)
    }

    /// Like [`Git::run`], in a session of its own, without a controlling terminal: for a
    /// command that talks to a remote, whose helpers (ssh, a credential helper) would
    /// otherwise open `/dev/tty` to ask for a password or a host key's approval and wait
    /// for an answer no one gives. The new session is a new process group, too.
    pub(crate) fn run_detached(
        &self,
        dir: &Path,
        args: Vec<OsString>,
    ) -> Result<Finished, GitError> {
        let mut command = self.command(dir);
        // SAFETY: between fork and exec only `setsid` runs, which is async-signal-safe and
        // touches no memory of the parent. It cannot fail: the forked child leads no group.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        self.run_command(command, dir, args)
    }

    /// The value git gets for a variable this driver passes on (set with
    /// [`Git::with_env`], else inherited and not scrubbed); `None` when git gets none.
    pub(crate) fn variable(&self, name: &str) -> Option<&OsStr> {
        fn named<'a>(list: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsStr> {
            list.iter()
                .rev()
                .find(|(variable, _)| variable.as_os_str() == OsStr::new(name))
                .map(|(_, value)| value.as_os_str())
        }
        named(&self.environment, name).or_else(|| named(&self.inherited, name))
    }

    /// Runs `command` (made by [`Git::command`]) with `args`, stdin closed, both pipes read
    /// and the timeout kept.
    fn run_command(
        &self,
        mut command: Command,
        dir: &Path,
        args: Vec<OsString>,
    ) -> Result<Finished, GitError> {
        let command_line = CommandLine::new(&self.program, dir, &args);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| GitError::Spawn {
            program: self.program.clone(),
            dir: dir.to_owned(),
            source,
        })?;
        let io_error = |source| GitError::Io {
            command: command_line.clone(),
            source,
        };
        let stdout = read_in_background(child.stdout.take(), STDOUT_LIMIT);
        let stderr = read_in_background(child.stderr.take(), STDERR_LIMIT);
        let (status, timed_out) = wait_with_timeout(child, self.timeout).map_err(io_error)?;
        let (stdout, stdout_overflowed) = join_reader(stdout).map_err(io_error)?;
        let (stderr, _) = join_reader(stderr).map_err(io_error)?;
        if timed_out {
            return Err(GitError::Timeout {
                command: command_line,
                timeout: self.timeout,
            });
        }
        if stdout_overflowed {
            return Err(GitError::OutputTooLarge {
                command: command_line,
                limit: STDOUT_LIMIT,
            });
        }
        Ok(Finished {
            command: command_line,
            status,
            stdout,
            stderr,
        })
    }
}

impl Finished {
    /// The exit code, `None` when git was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Itself when git succeeded, else the error git's exit and message make.
    pub fn success(self) -> Result<Finished, GitError> {
        if self.status.success() {
            Ok(self)
        } else {
            Err(self.into_error())
        }
    }

    /// The error for this command's failure.
    pub fn into_error(self) -> GitError {
        failure(self.command, self.status, &self.stderr)
    }

    /// Stdout as text; git's porcelain output under `LC_ALL=C` is UTF-8 unless a path is not.
    pub fn stdout_text(&self) -> Result<&str, GitError> {
        std::str::from_utf8(&self.stdout).map_err(|_| self.unexpected("output that is not UTF-8"))
    }

    /// The first line of stdout, without its line ending.
    pub fn first_line(&self) -> Result<&str, GitError> {
        Ok(self.stdout_text()?.lines().next().unwrap_or("").trim_end())
    }

    /// The error for output this crate cannot read.
    pub fn unexpected(&self, detail: impl Into<String>) -> GitError {
        GitError::UnexpectedOutput {
            command: self.command.clone(),
            detail: detail.into(),
        }
    }
}

impl GitVersion {
    /// Reads `git version 2.47.3` (and vendor suffixes such as `2.39.2 (Apple Git-143)` or
    /// `2.45.1.windows.1`).
    pub fn parse(text: &str) -> Option<GitVersion> {
        let number = text.trim().strip_prefix("git version ")?;
        let mut parts = number.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().and_then(|part| part.parse().ok()).unwrap_or(0);
        Some(GitVersion {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for GitVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

fn is_scrubbed(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name == "LANGUAGE" || (name.starts_with("GIT_") && !KEPT_GIT_VARIABLES.contains(&name))
}

type Reader = thread::JoinHandle<io::Result<(Vec<u8>, bool)>>;

/// Reads a pipe to its end on a thread of its own, keeping the first `limit` bytes; the
/// rest is read and dropped, so that git never blocks on a full pipe.
fn read_in_background(pipe: Option<impl Read + Send + 'static>, limit: usize) -> Reader {
    thread::spawn(move || {
        let Some(mut pipe) = pipe else {
            return Ok((Vec::new(), false));
        };
        let mut kept = Vec::new();
        let mut overflowed = false;
        let mut buffer = [0u8; 64 * 1024];
        loop {
            let read = match pipe.read(&mut buffer) {
                Ok(0) => return Ok((kept, overflowed)),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            let room = limit.saturating_sub(kept.len());
            kept.extend_from_slice(&buffer[..read.min(room)]);
            overflowed |= read > room;
        }
    })
}

fn join_reader(reader: Reader) -> io::Result<(Vec<u8>, bool)> {
    reader
        .join()
        .map_err(|_| io::Error::other("the thread reading git's output panicked"))?
}

/// Waits for git to exit; past the timeout, stops its process group (TERM, a grace period,
/// KILL) and waits for it still. Returns the exit status and whether it was stopped.
fn wait_with_timeout(mut child: Child, timeout: Duration) -> io::Result<(ExitStatus, bool)> {
    let group = child.id() as libc::pid_t;
    let (exited, exit) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = child.wait();
        // The receiver is gone only if the caller already gave up waiting.
        let _ = exited.send(());
        status
    });
    let timed_out = match exit.recv_timeout(timeout) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => false,
        Err(RecvTimeoutError::Timeout) => {
            // git removes its lock files on TERM; KILL would leave them behind.
            signal_group(group, libc::SIGTERM);
            if exit.recv_timeout(STOP_GRACE).is_err() {
                signal_group(group, libc::SIGKILL);
            }
            true
        }
    };
    let status = waiter
        .join()
        .map_err(|_| io::Error::other("the thread waiting for git panicked"))??;
    Ok((status, timed_out))
}

fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: killpg has no memory-safety preconditions. The group is git's own; should git
    // have been reaped a moment ago, the group is gone and the call yields ESRCH (a reuse of
    // the id within that moment would need the kernel to cycle through every pid).
    unsafe {
        libc::killpg(group, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_vendor_suffixes() {
        let parse = |text| GitVersion::parse(text).map(|version| version.to_string());
        assert_eq!(parse("git version 2.47.3\n").as_deref(), Some("2.47.3"));
        assert_eq!(
            parse("git version 2.39.2 (Apple Git-143)").as_deref(),
            Some("2.39.2")
        );
        assert_eq!(
            parse("git version 2.45.1.windows.1").as_deref(),
            Some("2.45.1")
        );
        assert_eq!(parse("git version 3.0").as_deref(), Some("3.0.0"));
        assert_eq!(parse("hub version 2.14.2"), None);
        assert!(GitVersion::parse("git version 2.37.9").unwrap() < MINIMUM_VERSION);
    }

    #[test]
    fn only_redirecting_variables_are_scrubbed() {
        for name in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_CONFIG_GLOBAL",
            "GIT_CONFIG_KEY_0",
            "GIT_AUTHOR_NAME",
            "GIT_EXEC_PATH",
            "LANGUAGE",
        ] {
            assert!(is_scrubbed(OsStr::new(name)), "{name}");
        }
        for name in [
            "GIT_SSH_COMMAND",
            "GIT_SSL_CAINFO",
            "HOME",
            "PATH",
            "LC_ALL",
        ] {
            assert!(!is_scrubbed(OsStr::new(name)), "{name}");
        }
    }
}
