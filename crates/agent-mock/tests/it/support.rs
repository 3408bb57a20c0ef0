//! Running `mock-claude` hermetically: a private HOME, a working directory, bounded waits.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use agent::SessionId;
use agent_mock::Scenario;
use agent_mock::transcript::Transcripts;
use serde_json::Value;

pub const MOCK_CLAUDE: &str = env!("CARGO_BIN_EXE_mock-claude");

/// The longest any single mock-claude run in these tests may take.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// A private HOME and a working directory whose name has characters Claude Code mangles.
pub struct Sandbox {
    root: tempfile::TempDir,
    pub home: PathBuf,
    pub work: PathBuf,
    scenario: Option<PathBuf>,
    env: Vec<(String, String)>,
}

/// What one run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let root = tempfile::tempdir().expect("a temp dir");
        // Canonical, because the CLI keys transcripts by the physical working directory.
        let base = root.path().canonicalize().expect("the temp dir has a path");
        let home = base.join("home");
        let work = base.join("my_project.v2").join("work dir");
        std::fs::create_dir_all(&home).expect("HOME is created");
        std::fs::create_dir_all(&work).expect("the working directory is created");
        Sandbox {
            root,
            home,
            work,
            scenario: None,
            env: Vec::new(),
        }
    }

    /// Another working directory in the same sandbox.
    pub fn other_dir(&self, name: &str) -> PathBuf {
        let dir = self.root.path().canonicalize().unwrap().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub fn transcripts(&self) -> Transcripts {
        Transcripts::in_home(&self.home)
    }

    pub fn transcript(&self, session_id: SessionId) -> PathBuf {
        self.transcripts().path(&self.work, session_id)
    }

    /// Writes `scenario` and makes every later run use it.
    pub fn scenario(&mut self, scenario: &Scenario) -> PathBuf {
        let path = self.root.path().join("scenario.json");
        scenario.write(&path).expect("the scenario is written");
        self.scenario = Some(path.clone());
        path
    }

    pub fn env(&mut self, name: &str, value: impl Into<String>) {
        self.env.push((name.to_owned(), value.into()));
    }

    /// A command for `mock-claude` in the working directory, with only this sandbox's
    /// environment.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(&self.work, args)
    }

    pub fn command_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(MOCK_CLAUDE);
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("HOME", &self.home)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.scenario {
            command.env(agent_mock::scenario::SCENARIO_ENV, path);
        }
        command
    }

    /// Runs `mock-claude` with `args` and `prompt` on stdin, to its end.
    pub fn run(&self, args: &[&str], prompt: &str) -> Run {
        run_to_end(self.command(args), prompt)
    }

    /// `-p --output-format stream-json --verbose` plus `args`.
    pub fn stream(&self, args: &[&str], prompt: &str) -> Run {
        let mut all = vec!["-p", "--output-format", "stream-json", "--verbose"];
        all.extend_from_slice(args);
        self.run(&all, prompt)
    }
}

pub fn run_to_end(mut command: Command, prompt: &str) -> Run {
    let mut child = command.spawn().expect("mock-claude starts");
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(prompt.as_bytes());
    // A call refused before it reads its prompt closes stdin early: that is not a failure.
    if let Err(error) = written {
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
    }
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = wait_bounded(&mut child, RUN_LIMIT).unwrap_or_else(|| {
        kill(&mut child);
        panic!("mock-claude ran past {RUN_LIMIT:?}")
    });
    Run {
        status,
        stdout: stdout.join().expect("the stdout reader ends"),
        stderr: String::from_utf8_lossy(&stderr.join().expect("the stderr reader ends"))
            .into_owned(),
    }
}

pub fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error (the child was killed) just ends what was read.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Waits for `child` at most `limit`; `None` if it is still running then.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Every stdout line, parsed as JSON.
    pub fn lines(&self) -> Vec<Value> {
        self.stdout_text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The last stdout line, which must be the result object.
    pub fn result(&self) -> Value {
        let result = self.lines().pop().expect("stdout has a line");
        assert_eq!(result["type"], "result", "{result}");
        result
    }

    pub fn of_type(&self, kind: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|line| line["type"] == kind)
            .collect()
    }
}
