//! Runs a task's verification commands: the one place Baton runs a shell, by design.
//!
//! Each command runs as `sh -c COMMAND` in the task's working directory, in its own process
//! group, with stdin closed and stdout and stderr joined into one pipe, of which only the
//! tail is kept. A command that runs past its timeout, or is cancelled, has its whole group
//! stopped (TERM, a grace period, KILL) and is always reaped.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use agent::CancellationToken;
use tokio::process::Command;

/// How long a stopped command's group gets between TERM and KILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long output may keep flowing after the command itself exited (a background child
/// holding the pipe), before the group is stopped.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// The most output kept from one command, in bytes: its tail.
pub const OUTPUT_TAIL_BYTES: usize = 16 * 1024;

/// What one verification command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub command: String,
    /// The exit code, or `None` when the command was killed.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// The end of its combined stdout and stderr, lossily decoded.
    pub output_tail: String,
    pub duration: Duration,
}

impl CheckOutcome {
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// Why a verification command could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the working directory `{}` does not exist", path.display())]
    WorkingDirMissing { path: std::path::PathBuf },
    #[error("could not start the verification command `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o with the verification command `{command}` failed")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the verification command `{command}` was cancelled")]
    Cancelled { command: String },
}

/// Runs one verification command to completion, timeout or cancellation, calling `on_start`
/// with the pid of the check's process group leader once it runs and before waiting on it:
/// the loop records it, so that recovery can stop a check that outlived a killed Baton.
pub async fn run_check_observed<OnStart, Recorded>(
    command: &str,
    working_dir: &Path,
    timeout: Duration,
    cancel: &CancellationToken,
    on_start: OnStart,
) -> Result<CheckOutcome, VerifyError>
where
    OnStart: FnOnce(u32) -> Recorded,
    Recorded: std::future::Future<Output = ()>,
{
    if !working_dir.is_dir() {
        return Err(VerifyError::WorkingDirMissing {
            path: working_dir.to_path_buf(),
        });
    }
    let io_error = |source| VerifyError::Io {
        command: command.to_owned(),
        source,
    };
    let started = Instant::now();
    let (mut child, reader) = spawn_check(command, working_dir)?;
    let group = child.id().map(|pid| pid as libc::pid_t);
    if let Some(pid) = child.id() {
        on_start(pid).await;
    }
    let drain = tokio::task::spawn_blocking(move || read_tail(reader, OUTPUT_TAIL_BYTES));

    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let (status, timed_out, cancelled) = tokio::select! {
        status = child.wait() => (Some(status.map_err(io_error)?), false, false),
        () = &mut deadline => (None, true, false),
        () = cancel.cancelled() => (None, false, true),
    };
    let status = match status {
        Some(status) => status,
        None => stop_group(&mut child, group).await.map_err(io_error)?,
    };

    let tail = drained(drain, group).await.map_err(io_error)?;

    if cancelled {
        return Err(VerifyError::Cancelled {
            command: command.to_owned(),
        });
    }
    Ok(CheckOutcome {
        command: command.to_owned(),
        exit_code: if timed_out { None } else { status.code() },
        timed_out,
        output_tail: String::from_utf8_lossy(&tail).into_owned(),
        duration: started.elapsed(),
    })
}

/// Starts `sh -c command` in a process group of its own, stdin closed, stdout and stderr into
/// one pipe, whose read end is returned with the child.
fn spawn_check(
    command: &str,
    working_dir: &Path,
) -> Result<(tokio::process::Child, std::io::PipeReader), VerifyError> {
    let io_error = |source| VerifyError::Io {
        command: command.to_owned(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(io_error)?;
    let writer_for_stderr = writer.try_clone().map_err(io_error)?;
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(working_dir)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| VerifyError::Spawn {
            command: command.to_owned(),
            source,
        })?;
    // The parent's copies of the pipe's write end went into the `Command`, which is dropped
    // with the statement above; the reader sees EOF once every process in the group lets go.
    Ok((child, reader))
}

/// The output tail `drain` read. A background process left in the group may hold the pipe
/// open; it gets a moment, then the group is killed so that the tail can be read to the end.
async fn drained(
    mut drain: tokio::task::JoinHandle<std::io::Result<Vec<u8>>>,
    group: Option<libc::pid_t>,
) -> std::io::Result<Vec<u8>> {
    let tail = match tokio::time::timeout(DRAIN_GRACE, &mut drain).await {
        Ok(joined) => joined,
        Err(_) => {
            if let Some(group) = group {
                signal_group(group, libc::SIGKILL);
            }
            drain.await
        }
    };
    tail.map_err(std::io::Error::other)?
}

/// Stops the command's process group: TERM, a grace period, KILL; always reaps the leader.
async fn stop_group(
    child: &mut tokio::process::Child,
    group: Option<libc::pid_t>,
) -> std::io::Result<ExitStatus> {
    let Some(group) = group else {
        // Already reaped: `id()` is `None` only after the child was waited for.
        return child.wait().await;
    };
    signal_group(group, libc::SIGTERM);
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => {
            // The leader is gone; anything it left in its group goes too.
            signal_group(group, libc::SIGKILL);
            status
        }
        Err(_) => {
            signal_group(group, libc::SIGKILL);
            child.wait().await
        }
    }
}

fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: killpg has no memory-safety preconditions; a stale group id only yields ESRCH.
    unsafe {
        libc::killpg(group, signal);
    }
}

/// Reads `reader` to its end, keeping only the last `max` bytes.
fn read_tail(mut reader: impl Read, max: usize) -> std::io::Result<Vec<u8>> {
    let mut tail = VecDeque::with_capacity(max.min(64 * 1024));
    let mut buffer = [0u8; 8192];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        tail.extend(&buffer[..read]);
        let excess = tail.len().saturating_sub(max);
        tail.drain(..excess);
    }
    Ok(tail.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check run with nobody watching its start.
    async fn run_check(
        command: &str,
        working_dir: &Path,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<CheckOutcome, VerifyError> {
        run_check_observed(command, working_dir, timeout, cancel, |_| async {}).await
    }

    /// Whether `pid` is a live process: it exists and is not a zombie waiting to be reaped.
    fn is_running(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        !matches!(state, Some('Z' | 'X') | None)
    }

    async fn check(command: &str, timeout: Duration) -> CheckOutcome {
        let dir = tempfile::tempdir().unwrap();
        run_check(command, dir.path(), timeout, &CancellationToken::new())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn passing_and_failing_commands() {
        let pass = check("true", Duration::from_secs(10)).await;
        assert!(pass.passed());
        let fail = check("echo out; echo err >&2; exit 3", Duration::from_secs(10)).await;
        assert!(!fail.passed());
        assert_eq!(fail.exit_code, Some(3));
        assert_eq!(fail.output_tail, "out\nerr\n");
    }

    #[tokio::test]
    async fn runs_in_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("marker"), "here").unwrap();
        let outcome = run_check(
            "cat marker",
            dir.path(),
            Duration::from_secs(10),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(outcome.output_tail, "here");
    }

    #[tokio::test]
    async fn keeps_only_the_tail_of_huge_output() {
        let outcome = check(
            "head -c 1000000 /dev/zero | tr '\\0' a; echo END",
            Duration::from_secs(30),
        )
        .await;
        assert!(outcome.passed());
        assert_eq!(outcome.output_tail.len(), OUTPUT_TAIL_BYTES);
        assert!(outcome.output_tail.ends_with("aEND\n"));
    }

    #[tokio::test]
    async fn a_hung_command_times_out_and_its_group_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let command = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
        let outcome = run_check(
            &command,
            dir.path(),
            Duration::from_millis(300),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(outcome.timed_out);
        assert_eq!(outcome.exit_code, None);
        let sleeper: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Death is delivered asynchronously; allow it a bounded moment.
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !is_running(sleeper)
        });
        assert!(gone, "the background sleep {sleeper} survived the timeout");
    }

    #[tokio::test]
    async fn a_background_child_holding_the_pipe_does_not_hang_the_check() {
        let outcome = check("sleep 300 & echo started", Duration::from_secs(60)).await;
        assert!(outcome.passed());
        assert_eq!(outcome.output_tail, "started\n");
        assert!(outcome.duration < Duration::from_secs(60));
    }

    #[tokio::test]
    async fn cancellation_stops_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        });
        let err = run_check("sleep 300", dir.path(), Duration::from_secs(60), &cancel)
            .await
            .unwrap_err();
        assert!(matches!(err, VerifyError::Cancelled { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_missing_working_directory_is_named() {
        let err = run_check(
            "true",
            Path::new("/nonexistent/baton"),
            Duration::from_secs(1),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the working directory `/nonexistent/baton` does not exist"
        );
    }
}
