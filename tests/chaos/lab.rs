//! A [`Lab`]: one hermetic world for one scenario. A temp dir holds `home/` (baton's and the
//! agent's HOME), `work/` (the workspace) and `tmp/`; the environment is cleared down to PATH,
//! HOME and TMPDIR; the agent is `mock-claude`, driven by a scenario file inside the lab.
//!
//! Every run of `baton` is bounded by a deadline and measured: its exit status, what it
//! printed, and its peak resident memory (from `wait4`).

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use tempfile::TempDir;

/// The programs a lab runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `baton` program (the `tests` package builds it as `chaos-baton`).
    pub baton: PathBuf,
    /// `mock-claude` (the `tests` package builds it as `contract-mock-claude`).
    pub mock_claude: PathBuf,
}

impl Binaries {
    /// The two programs, found beside `program` (the running executable): cargo puts every
    /// binary of a build in one directory.
    pub fn beside(program: &Path) -> anyhow::Result<Binaries> {
        let dir = program
            .parent()
            .context("the running program has no directory")?;
        let binaries = Binaries {
            baton: dir.join("chaos-baton"),
            mock_claude: dir.join("contract-mock-claude"),
        };
        for path in [&binaries.baton, &binaries.mock_claude] {
            ensure!(
                path.is_file(),
                "`{}` is missing: build it with `cargo build -p tests --bins` (cargo xtask chaos does)",
                path.display()
            );
        }
        Ok(binaries)
    }
}

/// What one run of `baton` did.
#[derive(Debug)]
pub struct Ran {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set size, in KiB.
    pub max_rss_kib: u64,
}

impl Ran {
    /// Fails unless baton exited with `code`.
    pub fn expect_code(&self, code: i32) -> anyhow::Result<&Ran> {
        ensure!(
            self.code == Some(code),
            "expected exit {code}, got {}\n--- stdout\n{}--- stderr\n{}",
            self.status(),
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    /// Fails unless stderr contains every one of `parts`.
    pub fn expect_stderr(&self, parts: &[&str]) -> anyhow::Result<&Ran> {
        for part in parts {
            ensure!(
                self.stderr.contains(part),
                "stderr does not say `{part}`:\n{}",
                self.stderr
            );
        }
        Ok(self)
    }

    /// `exit N` or `signal N`.
    pub fn status(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => "no status".to_owned(),
        }
    }
}

/// A `baton` process started with [`Lab::spawn`].
pub struct Running {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// Sends `signal` to the process.
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

    /// Waits for the exit, for at most `limit`; past it the process is killed and this fails.
    pub fn wait(mut self, limit: Duration) -> anyhow::Result<Ran> {
        let deadline = Instant::now() + limit;
        let pid = self.pid();
        let (status, usage) = loop {
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own child, with valid out-pointers.
            let waited = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if waited == pid {
                break (status, usage);
            }
            ensure!(
                waited == 0,
                "wait4({pid}) failed: {}",
                std::io::Error::last_os_error()
            );
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("baton did not finish within {limit:?}: killed it");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = self.stdout.take().map(join).unwrap_or_default();
        let stderr = self.stderr.take().map(join).unwrap_or_default();
        Ok(Ran {
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            stdout,
            stderr,
            max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        })
    }
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

/// How long one `baton` command may take before the scenario fails.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// One scenario's private world.
pub struct Lab {
    dir: TempDir,
    bins: Binaries,
    vars: Vec<(OsString, OsString)>,
    /// Run baton as this user and group (to make file modes bind when we are root).
    user: Option<(u32, u32)>,
    /// RLIMIT_FSIZE for baton, in bytes: writes past it fail as on a full disk.
    file_size_limit: Option<u64>,
}

impl Lab {
    pub fn new(bins: &Binaries) -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("baton-chaos.")
            .tempdir()
            .context("creating the lab's temp dir")?;
        for sub in ["home", "work", "tmp"] {
            std::fs::create_dir(dir.path().join(sub))?;
        }
        let mut lab = Lab {
            dir,
            bins: bins.clone(),
            vars: Vec::new(),
            user: None,
            file_size_limit: None,
        };
        lab.set("BATON_CLAUDE_BIN", lab.bins.mock_claude.clone());
        let scenario = lab.scenario_path();
        lab.set("MOCK_CLAUDE_SCENARIO", scenario);
        let log = lab.agent_log_path();
        lab.set("MOCK_CLAUDE_LOG", log);
        Ok(lab)
    }

    /// A lab with a workspace whose agent is `claude`, which here is `mock-claude`.
    pub fn with_workspace(bins: &Binaries) -> anyhow::Result<Lab> {
        let lab = Lab::new(bins)?;
        lab.baton(&["init", "--agent", "claude"])?.expect_code(0)?;
        lab.agent_plays(&serde_json::json!({}))?;
        Ok(lab)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn work(&self) -> PathBuf {
        self.root().join("work")
    }

    pub fn db(&self) -> PathBuf {
        self.work().join(".baton/baton.db")
    }

    pub fn config(&self) -> PathBuf {
        self.work().join(".baton/config.toml")
    }

    fn scenario_path(&self) -> PathBuf {
        self.root().join("agent-scenario.json")
    }

    fn agent_log_path(&self) -> PathBuf {
        self.root().join("agent-calls.jsonl")
    }

    /// `text` with the lab's temp dir written as `$LAB`, for reports.
    pub fn local(&self, text: &str) -> String {
        text.replace(&*self.root().to_string_lossy(), "$LAB")
    }

    /// Adds a variable to baton's environment (the agent inherits it).
    pub fn set(&mut self, name: &str, value: impl Into<OsString>) {
        self.vars.push((name.into(), value.into()));
    }

    /// Runs baton as `uid:gid` from now on.
    ///
    /// The programs are copied into the lab's `bin/` first: the build's own copies sit in the
    /// checkout, which another user may not be able to reach (a clone under a private home
    /// directory, or in a `mktemp -d` directory, mode 0700). The lab itself must be reachable,
    /// so every directory above it must let others through; when one does not, this fails
    /// naming it.
    pub fn run_as(&mut self, uid: u32, gid: u32) -> anyhow::Result<()> {
        expect_others_may_enter_above(self.root())?;
        let bin = self.root().join("bin");
        std::fs::create_dir(&bin).context("creating the lab's bin/")?;
        self.chmod(&bin, 0o755)?;
        let copy = |program: &Path, name: &str| -> anyhow::Result<PathBuf> {
            let copied = bin.join(name);
            std::fs::copy(program, &copied)
                .with_context(|| format!("copying {} into the lab", program.display()))?;
            std::fs::set_permissions(&copied, std::fs::Permissions::from_mode(0o755))?;
            Ok(copied)
        };
        self.bins = Binaries {
            baton: copy(&self.bins.baton, "baton")?,
            mock_claude: copy(&self.bins.mock_claude, "mock-claude")?,
        };
        self.vars.retain(|(name, _)| name != "BATON_CLAUDE_BIN");
        self.set("BATON_CLAUDE_BIN", self.bins.mock_claude.clone());
        self.user = Some((uid, gid));
        Ok(())
    }

    /// Limits the size of files baton writes (RLIMIT_FSIZE), so that a write past `bytes`
    /// fails as it would on a full disk; `None` lifts the limit.
    pub fn limit_file_size(&mut self, bytes: Option<u64>) {
        self.file_size_limit = bytes;
    }

    /// Scripts `mock-claude` (see agent-mock's README) and resets its call counter.
    pub fn agent_plays(&self, scenario: &Value) -> anyhow::Result<()> {
        let path = self.scenario_path();
        std::fs::write(&path, serde_json::to_vec_pretty(scenario)?)?;
        let state = PathBuf::from(format!("{}.state", path.display()));
        if state.exists() {
            std::fs::remove_file(state)?;
        }
        Ok(())
    }

    /// Appends `text` to the workspace's config file.
    pub fn configure(&self, text: &str) -> anyhow::Result<()> {
        let path = self.config();
        let mut config = std::fs::read_to_string(&path)?;
        config.push_str(text);
        std::fs::write(&path, config)?;
        Ok(())
    }

    /// Replaces `old` by `new` in the config file; `old` must be there.
    pub fn edit_config(&self, old: &str, new: &str) -> anyhow::Result<()> {
        let path = self.config();
        let config = std::fs::read_to_string(&path)?;
        ensure!(config.contains(old), "the config has no `{old}`");
        std::fs::write(&path, config.replacen(old, new, 1))?;
        Ok(())
    }

    /// The calls `mock-claude` logged, one JSON object each (argv, cwd, plan, session_id,
    /// prompt, outcome).
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

    /// `baton ARGS` in `work/`, ready to spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(&self.work(), args)
    }

    pub fn command_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bins.baton);
        command.args(args);
        self.prepare(command, dir)
    }

    /// `baton ARGS` in `work/` run by `wrapper` (such as `timeout 3`), ready to spawn.
    pub fn command_under(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let mut command = Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(&self.bins.baton).args(args);
        self.prepare(command, &self.work())
    }

    /// `command` with the lab's directory, environment, pipes, user and limits.
    fn prepare(&self, mut command: Command, dir: &Path) -> Command {
        command
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root().join("home"))
            .env("TMPDIR", self.root().join("tmp"))
            .envs(self.vars.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = self.user {
            // std drops the supplementary groups when root changes user.
            command.uid(uid).gid(gid);
        }
        if let Some(bytes) = self.file_size_limit {
            // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: bytes,
                        rlim_max: bytes,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Without this the kernel kills the writer (SIGXFSZ); ignored, the write
                    // fails with EFBIG, which SQLite reports as it reports a full disk.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        command
    }

    /// Starts `command` with its output drained in the background.
    pub fn spawn(&self, mut command: Command) -> anyhow::Result<Running> {
        let mut child = command.spawn().context("starting baton")?;
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Ok(Running {
            child,
            stdout,
            stderr,
        })
    }

    /// Runs `baton ARGS` in `work/` and waits for it.
    pub fn baton(&self, args: &[&str]) -> anyhow::Result<Ran> {
        self.spawn(self.command(args))?.wait(COMMAND_LIMIT)
    }

    /// Runs `baton ARGS` with `input` on its standard input.
    pub fn baton_with_input(&self, args: &[&str], input: Vec<u8>) -> anyhow::Result<Ran> {
        let mut command = self.command(args);
        command.stdin(Stdio::piped());
        let mut child = command.spawn().context("starting baton")?;
        let mut stdin = child.stdin.take().context("baton's stdin")?;
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            // baton may refuse the input before reading it all: a broken pipe is fine.
            let _ = stdin.write_all(&input);
        });
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        let ran = Running {
            child,
            stdout,
            stderr,
        }
        .wait(COMMAND_LIMIT)?;
        let _ = writer.join();
        Ok(ran)
    }

    /// Adds a task with `baton task add ARGS` and returns its id.
    pub fn add_task(&self, args: &[&str]) -> anyhow::Result<i64> {
        let mut all = vec!["task", "add"];
        all.extend_from_slice(args);
        let ran = self.baton(&all)?;
        ran.expect_code(0)?;
        ran.stdout
            .trim()
            .parse()
            .with_context(|| format!("`task add` printed `{}`, not an id", ran.stdout.trim()))
    }

    /// `baton --json ARGS`, parsed.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let ran = self.baton(&all)?;
        ran.expect_code(0)?;
        serde_json::from_str(&ran.stdout).context("baton --json printed something else")
    }

    /// The ledger, opened read-only, for checks baton's own commands do not offer.
    pub fn ledger(&self) -> anyhow::Result<Connection> {
        let connection = Connection::open_with_flags(
            self.db(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .context("opening the ledger read-only")?;
        connection.busy_timeout(Duration::from_secs(10))?;
        Ok(connection)
    }

    /// One integer from the ledger.
    pub fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(self.ledger()?.query_row(sql, [], |row| row.get(0))?)
    }

    /// Every row of every table, as text: equal fingerprints mean an unchanged ledger.
    pub fn fingerprint(&self) -> anyhow::Result<String> {
        let ledger = self.ledger()?;
        let mut tables: Vec<String> = ledger
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        tables.retain(|name| !name.starts_with("sqlite_"));
        let mut text = String::new();
        for pragma in ["user_version", "application_id"] {
            let value: i64 = ledger.query_row(&format!("PRAGMA {pragma}"), [], |row| row.get(0))?;
            text.push_str(&format!("{pragma}={value}\n"));
        }
        for table in tables {
            text.push_str(&format!("[{table}]\n"));
            let mut statement = ledger.prepare(&format!("SELECT * FROM \"{table}\""))?;
            let columns = statement.column_count();
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                for index in 0..columns {
                    let value: rusqlite::types::Value = row.get(index)?;
                    text.push_str(&format!("{value:?}|"));
                }
                text.push('\n');
            }
        }
        Ok(text)
    }

    /// Fails unless the ledger passes SQLite's integrity check.
    pub fn expect_intact(&self) -> anyhow::Result<()> {
        let verdict: String = self
            .ledger()?
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
        ensure!(verdict == "ok", "the ledger is damaged: {verdict}");
        Ok(())
    }

    /// Processes still alive (not zombies) that run with this lab's agent scenario in their
    /// environment: agents baton started and did not stop.
    pub fn live_agents(&self) -> Vec<i32> {
        let marker = format!("MOCK_CLAUDE_SCENARIO={}", self.scenario_path().display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
            else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let carries = environ
                .split(|byte| *byte == 0)
                .any(|var| var == marker.as_bytes());
            if carries && is_alive(pid) && !self.is_baton(pid) {
                pids.push(pid);
            }
        }
        pids
    }

    /// The live agents that are making a call (`claude -p …`), not answering a probe such as
    /// the `claude --version` that `baton run` makes before its first task.
    pub fn live_agent_calls(&self) -> Vec<i32> {
        self.live_agents()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.split(|byte| *byte == 0).any(|arg| arg == b"-p"))
            })
            .collect()
    }

    /// Waits until the agent's `calls`-th call has started and is still running: `mock-claude`
    /// logged it (it does so before it plays its step) and a process making a call is alive.
    /// A probe of the agent's version is neither logged nor a call, so it never counts.
    pub fn wait_for_agent_call(&self, calls: usize, limit: Duration) -> anyhow::Result<()> {
        let what = format!("agent call {calls} to start");
        self.wait_for(&what, limit, |lab| {
            Ok(lab.agent_calls()?.len() == calls && !lab.live_agent_calls().is_empty())
        })
    }

    fn is_baton(&self, pid: i32) -> bool {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == self.bins.baton)
    }

    /// Waits up to `limit` for every agent of this lab to be gone; fails naming the survivors.
    pub fn expect_no_live_agents(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let live = self.live_agents();
            if live.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                for pid in &live {
                    // SAFETY: kill(2); the pid is a process of this lab's that outlived baton.
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
                bail!("agent processes outlived baton: {live:?} (now killed)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Gives every file of the lab to `uid:gid`, for [`Lab::run_as`].
    pub fn give_to(&self, uid: u32, gid: u32) -> anyhow::Result<()> {
        chown_tree(self.root(), uid, gid)
    }

    /// Sets the mode of `path`.
    pub fn chmod(&self, path: &Path, mode: u32) -> anyhow::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {mode:o} {}", path.display()))
    }

    /// Every file under the lab whose name starts with `prefix`.
    pub fn find_files_with_prefix(&self, prefix: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    stack.push(path.clone());
                }
                if entry.file_name().to_string_lossy().starts_with(prefix) {
                    found.push(path);
                }
            }
        }
        found
    }

    /// Waits up to `limit` for `condition`, polling.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        mut condition: impl FnMut(&Lab) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !condition(self)? {
            ensure!(Instant::now() < deadline, "waited {limit:?} for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// Whether `pid` is a process that has not exited (a zombie has: PID 1 here may never reap it).
pub fn is_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Fails unless every directory above `path` lets other users through (its `x` bit for
/// others), naming the first that does not: a user other than its owner could not reach `path`.
fn expect_others_may_enter_above(path: &Path) -> anyhow::Result<()> {
    for dir in path.ancestors().skip(1) {
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("reading the mode of {}", dir.display()))?
            .permissions()
            .mode();
        ensure!(
            mode & 0o001 != 0,
            "another user cannot reach the lab at {}: {} (mode {:o}) does not let other users \
             through; run the chaos suite with TMPDIR set to a directory everyone may \
             enter, such as /tmp",
            path.display(),
            dir.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// Whether this process runs as root, for which file modes do not bind.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
