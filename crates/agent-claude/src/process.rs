//! Running one agent process under supervision: spawn it in its own process group, feed it
//! the prompt, read both pipes with a cap, and stop the whole group on a deadline or
//! cancellation (TERM, grace, KILL), always reaping it.
//!
//! # Where processes are forked
//!
//! On Linux the child asks for `SIGKILL` when its parent dies (`PR_SET_PDEATHSIG`), so a
//! killed Baton leaves no agent running. The kernel ties that signal to the *thread* that
//! forked the child, not to the process: a child forked from a thread that later exits (a
//! tokio blocking-pool thread retires after 10 s idle; a worker thread ends with its runtime)
//! would be killed with it. So every fork happens on one dedicated thread,
//! `baton-agent-spawner`, started on first use and never ended: its only exit is the process
//! exiting. Callers send it the command with their runtime's handle; it enters the runtime
//! (so the pipes and the exit watcher belong to the caller's runtime), forks, and sends the
//! child back.

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use agent::{CancellationToken, ExitInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::capture::{Line, LineSplitter, Tail};

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Where a child's stdout lines go.
pub(crate) trait LineSink {
    fn line(&mut self, line: Line<'_>);
}

/// How a supervised run ended.
#[derive(Debug)]
pub(crate) enum RunEnd {
    /// The process exited by itself.
    Exited(ExitInfo),
    /// The deadline passed; the group was stopped.
    TimedOut,
    /// The caller cancelled; the group was stopped.
    Cancelled,
}

/// A started agent process, the leader of its own process group.
pub(crate) struct Supervised {
    child: Child,
    pid: u32,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    stdout_lines: LineSplitter,
    stderr_tail: Tail,
    /// Whether the leader has been reaped (from then on its pid may be reused).
    reaped: bool,
    status: Option<ExitStatus>,
}

/// Prepares `command` for supervision: piped stdio, its own process group, a parent-death
/// signal, and kill-on-drop as a last resort.
pub(crate) fn prepare(command: &mut Command) {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    set_parent_death_signal(command);
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, and only makes
    // async-signal-safe calls (prctl, getppid, raise) on no shared state.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the signal was armed: then nobody would send it.
            if libc::getppid() as u32 != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_command: &mut Command) {}

/// Spawns `command` (see [`prepare`]) on the spawner thread, within the current runtime.
pub(crate) async fn spawn(command: Command, output_cap: usize) -> io::Result<Supervised> {
    let (reply, answer) = oneshot::channel();
    let request = SpawnRequest {
        command,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    spawner()?
        .send(request)
        .map_err(|_| io::Error::other("the agent spawner thread is gone"))?;
    let mut child = answer
        .await
        .map_err(|_| io::Error::other("the agent spawner thread dropped a request"))??;
    let pid = child.id().ok_or_else(|| {
        io::Error::other("the agent process was reaped before it could be supervised")
    })?;
    Ok(Supervised {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        pid,
        stdout_lines: LineSplitter::new(output_cap),
        stderr_tail: Tail::new(output_cap),
        reaped: false,
        status: None,
    })
}

struct SpawnRequest {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The spawner thread's queue, started on first use.
fn spawner() -> io::Result<std_mpsc::Sender<SpawnRequest>> {
    static SPAWNER: Mutex<Option<std_mpsc::Sender<SpawnRequest>>> = Mutex::new(None);
    let mut slot = SPAWNER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(sender) = &*slot {
        return Ok(sender.clone());
    }
    let (sender, requests) = std_mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("baton-agent-spawner".into())
        .spawn(move || {
            // The static keeps a sender, so this loop, and the thread, last as long as the
            // process.
            for mut request in requests {
                let child = {
                    let _runtime = request.runtime.enter();
                    request.command.spawn()
                };
                let _ = request.reply.send(child);
            }
        })?;
    *slot = Some(sender.clone());
    Ok(sender)
}

impl Supervised {
    /// The leader's pid, which is also the process group id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Writes `input` to stdin and closes it, then reads output into `sink` until the
    /// process exits, `deadline` passes or `cancel` fires. On the last two the whole group is
    /// stopped: TERM, up to `grace` for it to go, then KILL. Every way out reaps the leader
    /// and kills what is left of its group.
    pub(crate) async fn run(
        &mut self,
        input: Vec<u8>,
        sink: &mut impl LineSink,
        deadline: Instant,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> io::Result<RunEnd> {
        // The prompt is written by a task of its own, so a large prompt and a chatty child
        // cannot deadlock (the child blocked writing stdout while we are blocked writing its
        // stdin). The task ends when the write is done or the pipe breaks; it is aborted
        // below in any case.
        let writer = self.child.stdin.take().map(|mut stdin| {
            tokio::spawn(async move {
                // A child that exits without reading its input (a session error is found
                // before the prompt is read) breaks the pipe: its exit tells what happened,
                // so write errors are not errors of the call.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            })
        });
        let end = tokio::select! {
            biased;
            _ = cancel.cancelled() => RunEnd::Cancelled,
            _ = tokio::time::sleep_until(deadline) => RunEnd::TimedOut,
            exit = self.pump_until_exit(sink, grace) => RunEnd::Exited(exit?),
        };
        if let Some(writer) = writer {
            writer.abort();
        }
        if !matches!(end, RunEnd::Exited(_)) {
            self.stop(sink, grace).await?;
        }
        Ok(end)
    }

    /// Reads both pipes until the leader exits and is reaped (which kills what is left of
    /// its group), then reads on until the pipes close, or `grace` passes: a process that
    /// left the group can hold them open.
    async fn pump_until_exit(
        &mut self,
        sink: &mut impl LineSink,
        grace: Duration,
    ) -> io::Result<ExitInfo> {
        self.pump(sink, std::future::pending(), Until::Reaped)
            .await?;
        self.pump(sink, tokio::time::sleep(grace), Until::PipesClosed)
            .await?;
        Ok(self.status.map(exit_info).unwrap_or(ExitInfo::Code(-1)))
    }

    /// Stops the group: TERM, up to `grace` for the leader to exit while its output is still
    /// read, then KILL; reaps the leader.
    async fn stop(&mut self, sink: &mut impl LineSink, grace: Duration) -> io::Result<()> {
        if !self.reaped {
            self.kill_group(libc::SIGTERM);
            let _ = tokio::time::timeout(
                grace,
                self.pump(sink, std::future::pending(), Until::Reaped),
            )
            .await;
        }
        if !self.reaped {
            self.kill_group(libc::SIGKILL);
            let status = self.child.wait().await;
            self.after_reap(status?);
        }
        // Members that ignored TERM after their leader went.
        self.kill_group(libc::SIGKILL);
        Ok(())
    }

    /// Reads stdout into `sink` and stderr into the tail, and watches the leader, until
    /// `stop_when` fires or `until` is reached. Safe to drop at any await: everything it
    /// learns is kept in `self`.
    async fn pump(
        &mut self,
        sink: &mut impl LineSink,
        stop_when: impl Future<Output = ()>,
        until: Until,
    ) -> io::Result<()> {
        tokio::pin!(stop_when);
        let mut out_buf = vec![0u8; READ_CHUNK];
        let mut err_buf = vec![0u8; READ_CHUNK];
        loop {
            let pipes_closed = self.stdout.is_none() && self.stderr.is_none();
            match until {
                Until::Reaped if self.reaped => return Ok(()),
                Until::PipesClosed if pipes_closed => return Ok(()),
                _ => {}
            }
            tokio::select! {
                _ = &mut stop_when => return Ok(()),
                read = read_some(&mut self.stdout, &mut out_buf) => match read {
                    Some(n) => self.stdout_lines.push(&out_buf[..n], |line| sink.line(line)),
                    None => {
                        self.stdout = None;
                        self.stdout_lines.finish(|line| sink.line(line));
                    }
                },
                read = read_some(&mut self.stderr, &mut err_buf) => match read {
                    Some(n) => self.stderr_tail.push(&err_buf[..n]),
                    None => self.stderr = None,
                },
                exit = self.child.wait(), if !self.reaped => self.after_reap(exit?),
            }
        }
    }

    /// Records the leader's exit, and kills whatever is left of its group: nothing the agent
    /// started may outlive the call.
    fn after_reap(&mut self, status: ExitStatus) {
        self.reaped = true;
        self.status = Some(status);
        // The group id stays allocated while any member lives, so this reaches exactly the
        // stragglers; with none left it finds no group (ESRCH).
        self.kill_group(libc::SIGKILL);
    }

    fn kill_group(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-(self.pid as libc::pid_t), signal);
        }
    }

    /// The kept tail of stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        self.stderr_tail.text()
    }
}

/// What [`Supervised::pump`] waits for.
#[derive(Debug, Clone, Copy)]
enum Until {
    Reaped,
    PipesClosed,
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // The call was abandoned mid-way (its future dropped). `kill_on_drop` only kills the
        // leader; kill the whole group while the unreaped leader still holds its id.
        if !self.reaped {
            self.kill_group(libc::SIGKILL);
        }
    }
}

/// Reads once from a pipe that is still open: `Some(n)` bytes, or `None` at its end (or on a
/// read error, which ends the pipe just the same). A closed pipe never completes.
async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> Option<usize> {
    match pipe {
        Some(reader) => match reader.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

pub(crate) fn exit_info(status: ExitStatus) -> ExitInfo {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitInfo::Code(code),
        (None, Some(signal)) => ExitInfo::Signal(signal),
        (None, None) => ExitInfo::Code(-1),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Starts `sleep 30` from a thread (with a runtime of its own) that ends right after;
    /// returns the child's pid once that thread is gone. The child is leaked on purpose (no
    /// kill-on-drop): the test reaps it.
    fn spawn_from_a_thread_that_ends(through_spawner: bool) -> u32 {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut command = Command::new("sleep");
                command.arg("30");
                prepare(&mut command);
                if through_spawner {
                    let supervised = spawn(command, 1024).await.unwrap();
                    let pid = supervised.pid();
                    std::mem::forget(supervised);
                    pid
                } else {
                    let child = command.spawn().unwrap();
                    let pid = child.id().unwrap();
                    std::mem::forget(child);
                    pid
                }
            })
        })
        .join()
        .unwrap()
    }

    /// Whether `pid` still runs: it exists and is not a zombie.
    fn runs(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat[stat.rfind(')')? + 2..].chars().next()?;
                Some(state != 'Z')
            })
            .unwrap_or(false)
    }

    fn kill_and_reap(pid: u32) {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }

    /// Polls `condition` for up to `limit`.
    fn within(limit: Duration, condition: impl Fn() -> bool) -> bool {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        condition()
    }

    #[test]
    fn the_parent_death_signal_follows_the_forking_thread() {
        // The hazard is real: forked straight from a thread that then ends, the child is
        // killed with it.
        let direct = spawn_from_a_thread_that_ends(false);
        let died = within(Duration::from_secs(5), || !runs(direct));
        kill_and_reap(direct);
        assert!(
            died,
            "a child forked from an ended thread should have been killed"
        );

        // Through the spawner thread, which never ends, the child outlives the caller's
        // thread. (The signal comes as the thread exits, before `join` returns; the wait
        // only covers its delivery.)
        let spawned = spawn_from_a_thread_that_ends(true);
        let died = within(Duration::from_millis(300), || !runs(spawned));
        kill_and_reap(spawned);
        assert!(
            !died,
            "a child forked by the spawner thread must survive its caller's thread"
        );
    }
}
