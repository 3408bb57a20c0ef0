//! The operating-system account the server runs as, and running its programs as that account.
//!
//! PostgreSQL refuses to run as root. A test run as root (CI, containers) therefore runs the
//! server as a dedicated system user, made once per machine, through `runuser`; anyone else
//! runs it as themselves.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};

/// The system user that runs test servers when the tests run as root.
pub const SYSTEM_USER: &str = "baton-pg";

/// How often making the system user is tried: another test process may be making it at the
/// same moment, which makes `useradd` fail on the lock or on the name.
const USERADD_ATTEMPTS: u32 = 10;

/// Who runs the server's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Account {
    /// This process's own user, which is not root.
    Current,
    /// A system user, reached from root through `runuser`.
    System { name: String, uid: u32, gid: u32 },
}

impl Account {
    /// The account for this process: itself, or [`SYSTEM_USER`] (made if absent) under root.
    pub(crate) fn for_this_process() -> Result<Account> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Account::Current);
        }
        system_user(SYSTEM_USER)
    }

    /// A command that runs `program` as this account, with an environment holding nothing but
    /// `PATH` and a C locale, so that no `PG*` variable of the caller redirects it.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut command = match self {
            Account::Current => Command::new(program),
            Account::System { name, .. } => {
                let mut command = Command::new("runuser");
                command.args(["-u", name, "--"]).arg(program);
                command
            }
        };
        command
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        command
    }

    /// Makes `path` belong to this account, so the server can write there.
    pub(crate) fn take_ownership(&self, path: &Path) -> Result<()> {
        if let Account::System { uid, gid, .. } = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid)).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(())
    }

    /// Whether files owned by `uid` are this account's.
    pub(crate) fn owns(&self, uid: u32) -> bool {
        match self {
            // SAFETY: geteuid has no preconditions and cannot fail.
            Account::Current => uid == unsafe { libc::geteuid() },
            Account::System { uid: own, .. } => uid == *own,
        }
    }

    /// Whether this account is another user than the one running the tests, who then needs a
    /// way through every directory above the cluster's.
    pub(crate) fn is_other_user(&self) -> bool {
        matches!(self, Account::System { .. })
    }
}

/// The system user `name`, made when it does not exist yet.
///
/// Test processes start at once, and two `useradd`s running side by side have been seen to
/// lose one's entry (each rewrites `/etc/passwd`), leaving a process with the uid of a user
/// that then vanished. So the kit's processes make the user one at a time, under a lock of
/// their own, and look it up under that lock too: an entry seen half-way through `useradd` is
/// not yet one `runuser` accepts.
fn system_user(name: &str) -> Result<Account> {
    let _lock = lock_user_creation()?;
    let mut last_failure = String::new();
    for _ in 0..USERADD_ATTEMPTS {
        if let Some(account) = look_up(name)? {
            return Ok(account);
        }
        let output = run(Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args([
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "Baton test PostgreSQL",
            ])
            .arg(name))?;
        if output.status.success() {
            continue;
        }
        // Another process may hold the lock on /etc/passwd or have made the user first: look
        // again after a moment.
        last_failure = format!("useradd failed with {}: {}", output.status, text(&output));
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(Error::SystemUser {
        user: name.to_owned(),
        reason: last_failure,
    })
}

/// Holds an exclusive lock on the kit's own lock file until the returned file is dropped.
fn lock_user_creation() -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let directory = ["/run/lock", "/var/lock"]
        .into_iter()
        .map(Path::new)
        .find(|directory| directory.is_dir())
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let path = directory.join("baton-pg-useradd.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        // Never through a link someone else planted in a directory anyone may write to.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    // SAFETY: the descriptor is open for as long as `file` lives; flock only reads it.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::Io {
            path,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(file)
}

/// The user `name` as `getent passwd` knows it, if it exists.
fn look_up(name: &str) -> Result<Option<Account>> {
    let output = run(Command::new("getent").args(["passwd", name]))?;
    if !output.status.success() {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let mut fields = line.trim().split(':').skip(2);
    let parsed = fields
        .next()
        .and_then(|uid| uid.parse().ok())
        .zip(fields.next().and_then(|gid| gid.parse().ok()));
    match parsed {
        Some((uid, gid)) => Ok(Some(Account::System {
            name: name.to_owned(),
            uid,
            gid,
        })),
        None => Err(Error::SystemUser {
            user: name.to_owned(),
            reason: format!("getent printed an unreadable entry: {}", line.trim()),
        }),
    }
}

/// Runs `command` to its end and returns what it printed.
pub(crate) fn run(command: &mut Command) -> Result<Output> {
    command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })
}

/// Runs `command` and fails unless it succeeds.
pub(crate) fn run_checked(command: &mut Command) -> Result<Output> {
    let output = run(command)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Command {
            command: describe(command),
            status: output.status,
            output: text(&output),
        })
    }
}

/// A command line for a message.
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a command printed, both streams, trimmed.
pub(crate) fn text(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let errors = String::from_utf8_lossy(&output.stderr);
    if !errors.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(errors.trim());
    }
    text
}

/// Sets the permission bits of `path`.
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}
