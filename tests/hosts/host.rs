//! One host of a [`super::Hosts`] world, and a `baton` it runs.
//!
//! A host's programs run as `ip netns exec NS unshare --uts --mount sh -c '…'`: the network is
//! its namespace's, the hostname its own (`hostN`), and its working tree, a copy of the
//! world's, is bind-mounted on the world's tree path inside its own mount namespace, so that
//! the path a task records names each host's own copy, as on separate machines.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::chaos::lab::{Ran, is_alive};

/// What a host's shell does before it becomes `baton`: its hostname, its tree on the shared
/// path, then `exec`, so that the process the test holds is baton itself.
const ENTER_HOST: &str =
    r#"hostname "$1" && mount --bind "$2" "$3" && cd "$3" && shift 3 && exec "$@""#;

/// A host: its name, namespace, files and environment.
#[derive(Debug)]
pub struct Host {
    /// `host1`, `host2`, …: its hostname.
    pub name: String,
    pub namespace: String,
    /// `hostN/` in the world's directory: `home/`, `tmp/`, `tree/` and the agent's files.
    pub dir: PathBuf,
    /// The world's tree path, on which this host sees its own `tree/`.
    pub shared_tree: PathBuf,
    pub baton: PathBuf,
    /// Variables of baton's environment (the agent inherits them).
    pub vars: Vec<(String, String)>,
}

impl Host {
    /// Sets a variable of baton's environment, replacing an earlier value.
    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.retain(|(old, _)| old != name);
        self.vars.push((name.to_owned(), value.to_owned()));
    }

    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    pub fn scenario_path(&self) -> PathBuf {
        self.dir.join("agent-scenario.json")
    }

    fn agent_log_path(&self) -> PathBuf {
        self.dir.join("agent-calls.jsonl")
    }

    /// Scripts this host's `mock-claude` (see agent-mock's README) and resets its counter.
    pub fn agent_plays(&self, scenario: &Value) -> anyhow::Result<()> {
        let path = self.scenario_path();
        std::fs::write(&path, serde_json::to_vec_pretty(scenario)?)?;
        let state = PathBuf::from(format!("{}.state", path.display()));
        if state.exists() {
            std::fs::remove_file(state)?;
        }
        Ok(())
    }

    /// The calls this host's `mock-claude` logged (argv, cwd, plan, session_id, prompt, …).
    pub fn agent_calls(&self) -> anyhow::Result<Vec<Value>> {
        let path = self.agent_log_path();
        if !path.exists() {
            return Ok(Vec::new());
        }
        std::fs::read_to_string(&path)?
            .lines()
            .map(|line| serde_json::from_str(line).context("a line of mock-claude's log"))
            .collect()
    }

    /// `baton ARGS` on this host, ready to spawn: in its own process group, with the
    /// environment cleared down to the host's.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .args(["unshare", "--uts", "--mount", "--propagation", "private"])
            .args(["sh", "-c", ENTER_HOST, "sh", &self.name])
            .arg(self.tree())
            .arg(&self.shared_tree)
            .arg(&self.baton)
            .args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("TMPDIR", self.dir.join("tmp"))
            .envs(self.vars.iter().map(|(name, value)| (name, value)))
            .env("MOCK_CLAUDE_SCENARIO", self.scenario_path())
            .env("MOCK_CLAUDE_LOG", self.agent_log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        command
    }

    /// Starts `baton ARGS` on this host.
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<HostRun> {
        let mut child = self
            .command(args)
            .spawn()
            .with_context(|| format!("starting baton on {}", self.name))?;
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Ok(HostRun {
            child: Some(child),
            stdout,
            stderr,
        })
    }

    /// Runs `baton ARGS` on this host and waits for it, for at most `limit`.
    pub fn baton(&self, args: &[&str], limit: Duration) -> anyhow::Result<Ran> {
        self.spawn(args)?.wait(limit)
    }

    /// Every live process of this host: those with its agent scenario in their environment,
    /// which baton and everything it starts inherit.
    pub fn processes(&self) -> Vec<i32> {
        let marker = format!("MOCK_CLAUDE_SCENARIO={}", self.scenario_path().display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                    environ
                        .split(|byte| *byte == 0)
                        .any(|var| var == marker.as_bytes())
                })
            })
            .filter(|pid| is_alive(*pid))
            .collect()
    }

    /// The live processes of this host that are agent calls (`claude -p …`), not baton.
    pub fn agent_calls_running(&self) -> Vec<i32> {
        self.processes()
            .into_iter()
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe != self.baton)
                    && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                        cmdline.split(|byte| *byte == 0).any(|arg| arg == b"-p")
                    })
            })
            .collect()
    }

    /// Kills every process of this host with SIGKILL, as a power cut would, until none is
    /// left (a process may start another while the first ones die); bounded.
    pub fn kill_everything(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let live = self.processes();
            if live.is_empty() {
                return Ok(());
            }
            for pid in &live {
                // SAFETY: kill(2); the pid carries this host's marker, so it is the test's.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            ensure!(
                Instant::now() < deadline,
                "{}'s processes {live:?} survived SIGKILL for 10 s",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Err(error) = self.kill_everything() {
            eprintln!("hosts: {error}");
        }
    }
}

/// A `baton` a host runs. Dropped before it was waited for, its process group is killed.
pub struct HostRun {
    child: Option<Child>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl HostRun {
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(|child| i32::try_from(child.id()).ok())
            .unwrap_or(0)
    }

    /// Sends `signal` to baton.
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        // SAFETY: kill(2) with a pid we spawned and have not reaped.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        ensure!(
            sent == 0,
            "kill({}, {signal}) failed: {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// Whether baton has exited, without waiting.
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|child| child.try_wait().is_ok_and(|status| status.is_some()))
    }

    /// Waits for the exit, for at most `limit`; past it the process group is killed and this
    /// fails.
    pub fn wait(mut self, limit: Duration) -> anyhow::Result<Ran> {
        let mut child = self.child.take().context("baton was waited for already")?;
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                kill_group(&mut child);
                let stderr = self.stderr.take().map(join).unwrap_or_default();
                bail!("baton did not finish within {limit:?}: killed it\n--- stderr\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        Ok(Ran {
            code: status.code(),
            signal: status.signal(),
            stdout: self.stdout.take().map(join).unwrap_or_default(),
            stderr: self.stderr.take().map(join).unwrap_or_default(),
            max_rss_kib: 0,
        })
    }
}

impl Drop for HostRun {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_group(child);
        }
    }
}

/// SIGKILLs `child`'s process group (it leads one) and reaps it.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) of the group our own child leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.wait();
}

fn join(handle: std::thread::JoinHandle<String>) -> String {
    handle.join().unwrap_or_default()
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Copies the directory tree `from` into `to` (made), files and directories only.
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
