//! One side of the contract: the real `claude` against a Messages-API stand-in, or
//! `mock-claude` playing a scenario, each in its own hermetic environment of the same shape.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use agent::SessionId;
use agent_mock::Scenario;
use agent_mock::transcript::Transcripts;
use api_standin::{ClaudeEnv, Script, StandIn};
use serde_json::Value;

pub const MOCK_CLAUDE: &str = env!("CARGO_BIN_EXE_contract-mock-claude");

/// The longest one CLI run may take here. The real CLI takes about a second against the
/// stand-in; this is far above that and still bounds a test that goes wrong.
const RUN_LIMIT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Real,
    Mock,
}

/// A CLI to run, with its environment and working directory.
pub struct Side {
    pub kind: Kind,
    pub program: PathBuf,
    env: ClaudeEnv,
    /// The working directory; its name has a dot and an underscore, which the CLI mangles.
    pub work: PathBuf,
    extra_env: Vec<(String, String)>,
    standin: Option<StandIn>,
    _scenario_dir: Option<tempfile::TempDir>,
}

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Side {
    /// The real CLI at `claude`, answered by a stand-in playing the script `script` makes
    /// for the working directory (so that tool calls can name files in it).
    pub fn real(claude: &Path, script: impl FnOnce(&Path) -> Script) -> Side {
        // The environment is made first, for its working directory; its base URL is then
        // overridden with the stand-in's, which needs the script.
        let env = ClaudeEnv::for_base_url("http://127.0.0.1:9");
        let work = env.work_dir("my_proj.v1");
        let standin = StandIn::start(script(&work));
        Side {
            kind: Kind::Real,
            program: claude.to_owned(),
            env,
            work,
            extra_env: vec![("ANTHROPIC_BASE_URL".to_owned(), standin.base_url())],
            standin: Some(standin),
            _scenario_dir: None,
        }
    }

    /// `mock-claude` playing `scenario`, in the same kind of environment as the real one (its
    /// base URL points at a closed port: the mock never calls it).
    pub fn mock(scenario: &Scenario) -> Side {
        let env = ClaudeEnv::for_base_url("http://127.0.0.1:9");
        let work = env.work_dir("my_proj.v1");
        let dir = tempfile::tempdir().expect("a temp dir for the scenario");
        let path = dir.path().join("scenario.json");
        scenario.write(&path).expect("the scenario is written");
        Side {
            kind: Kind::Mock,
            program: PathBuf::from(MOCK_CLAUDE),
            env,
            work,
            extra_env: vec![(
                agent_mock::scenario::SCENARIO_ENV.to_owned(),
                path.to_string_lossy().into_owned(),
            )],
            standin: None,
            _scenario_dir: Some(dir),
        }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Real => "real claude",
            Kind::Mock => "mock-claude",
        }
    }

    pub fn standin(&self) -> Option<&StandIn> {
        self.standin.as_ref()
    }

    /// Every variable the CLI gets: the hermetic environment, `PATH` (the real CLI's tools
    /// need a shell) and, for the mock, its scenario.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self.env.vars().into_iter().collect();
        if let Ok(path) = std::env::var("PATH") {
            vars.push(("PATH".into(), path));
        }
        vars.extend(self.extra_env.iter().cloned());
        vars
    }

    pub fn transcripts(&self) -> Transcripts {
        Transcripts::in_config_dir(&self.env.home().join(".claude"))
    }

    pub fn transcript(&self, session_id: SessionId) -> PathBuf {
        self.transcripts().path(&self.work, session_id)
    }

    /// Another working directory in the same environment.
    pub fn other_dir(&self, name: &str) -> PathBuf {
        self.env.work_dir(name)
    }

    pub fn run(&self, args: &[&str], prompt: &str) -> Run {
        self.run_in(&self.work, args, prompt)
    }

    /// `-p --output-format stream-json --verbose` plus `args`.
    pub fn stream(&self, args: &[&str], prompt: &str) -> Run {
        let mut all = vec!["-p", "--output-format", "stream-json", "--verbose"];
        all.extend_from_slice(args);
        self.run(&all, prompt)
    }

    pub fn run_in(&self, dir: &Path, args: &[&str], prompt: &str) -> Run {
        let mut child = Command::new(&self.program)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .envs(self.vars())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("{} does not start: {err}", self.name()));
        let written = child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(prompt.as_bytes());
        if let Err(error) = written {
            // A call refused before it reads its prompt closes stdin early.
            assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
        }
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("the child can be waited on") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} ran past {RUN_LIMIT:?} with {args:?}", self.name());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Run {
            status,
            stdout: String::from_utf8_lossy(&stdout.join().expect("stdout is read")).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.join().expect("stderr is read")).into_owned(),
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Every stdout line, parsed as JSON.
    pub fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The last stdout line, which must be the result object.
    pub fn result(&self) -> Value {
        let result = self.lines().pop().unwrap_or_else(|| {
            panic!("no output; stderr: {}", self.stderr);
        });
        assert_eq!(result["type"], "result", "{result}");
        result
    }

    /// The types of the lines that carry the conversation, in order: `system/init`,
    /// `assistant`, `user`, `result`. Other kinds (retries, hooks, stream events) are left out:
    /// consumers must tolerate them, and the real CLI prints them as it sees fit.
    pub fn conversation(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(
                |line| match (line["type"].as_str(), line["subtype"].as_str()) {
                    (Some("system"), Some("init")) => Some("init".to_owned()),
                    (Some(kind @ ("assistant" | "user" | "result")), _) => Some(kind.to_owned()),
                    _ => None,
                },
            )
            .collect()
    }
}

/// `text` with every UUID replaced by `<id>`, so two runs' messages compare.
pub fn without_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if rest
            .get(..36)
            .is_some_and(|head| uuid::Uuid::try_parse(head).is_ok())
        {
            out.push_str("<id>");
            rest = &rest[36..];
        } else {
            let next = rest.chars().next().expect("rest is not empty");
            out.push(next);
            rest = &rest[next.len_utf8()..];
        }
    }
    out
}
