//! Drives the Claude Code CLI (`claude -p`) as a Baton agent.
//!
//! One [`ClaudeAgent::call`] is one `claude` process: the argv from [`build_argv`]
//! (`--session-id` to start a session, `--resume` to continue it), the prompt on stdin, the
//! call's working directory, and the environment inherited plus [`ClaudeConfig::env`] plus the
//! call's own. The process runs in its own process group under supervision (see `process`),
//! its `stream-json` output is parsed line by line into [`agent::AgentEvent`]s, and the
//! `result` line decides the outcome (see `outcome`).
//!
//! The agent is stateless about sessions: everything a call needs is in its
//! [`agent::AgentCall`].
//!
//! It needs a tokio runtime with I/O and time enabled.

mod argv;
mod capture;
mod outcome;
mod process;
mod stream;
mod transcript;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agent::{
    Agent, AgentCall, AgentError, AgentEvent, AgentInfo, AgentReply, CancellationToken, EventSink,
    ExitInfo, Restored, Transcript, TranscriptError,
};
use tokio::process::Command;
use tokio::time::Instant;

pub use crate::argv::build_argv;
pub use crate::transcript::CONFIG_DIR_VARIABLE;
/// The rule lives with the contract; re-exported where callers of this agent look for it.
pub use agent::project_dir_name;

use crate::capture::Line;
use crate::outcome::{CallFacts, ProcessEnd};
use crate::process::{LineSink, RunEnd};
use crate::stream::StreamParser;
use crate::transcript::TranscriptPlace;

/// Runs file work on tokio's blocking pool: a transcript can be megabytes.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TranscriptError> + Send + 'static,
) -> Result<T, TranscriptError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|joined| std::panic::resume_unwind(joined.into_panic()))
}

/// The default time between TERM and KILL when a call is stopped.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// The default for [`ClaudeConfig::output_cap`]: 8 MiB.
pub const DEFAULT_OUTPUT_CAP: usize = 8 * 1024 * 1024;
/// The default time `claude --version` may take.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run the Claude Code CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaudeConfig {
    /// The `claude` executable: a path, or a name looked up on `PATH`.
    pub program: PathBuf,
    /// Variables added to the environment of every call (the call's own come on top).
    pub env: BTreeMap<String, String>,
    /// How long a stopped call gets between TERM and KILL.
    pub grace: Duration,
    /// The most bytes kept from each output stream: the longest stdout line that is read
    /// (longer lines are skipped and counted), and the tail of stderr. Memory per call stays
    /// within a few times this, whatever the agent prints.
    pub output_cap: usize,
    /// How long the health probe (`claude --version`) may take.
    pub probe_timeout: Duration,
    /// Baton's own values of the variables that say where Claude Code keeps its files
    /// (`CLAUDE_CONFIG_DIR`, `HOME`), which every call inherits. The adapter reads no
    /// environment itself, so the caller hands them over; without them (and without them
    /// in [`ClaudeConfig::env`] or a call's) transcripts cannot be read or restored.
    pub inherited: BTreeMap<String, String>,
}

impl ClaudeConfig {
    /// A configuration that runs `program` with the defaults.
    pub fn new(program: impl Into<PathBuf>) -> ClaudeConfig {
        ClaudeConfig {
            program: program.into(),
            env: BTreeMap::new(),
            grace: DEFAULT_GRACE,
            output_cap: DEFAULT_OUTPUT_CAP,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            inherited: BTreeMap::new(),
        }
    }
}

/// The Claude Code CLI as an [`Agent`].
#[derive(Debug, Clone)]
pub struct ClaudeAgent {
    config: ClaudeConfig,
}

impl ClaudeAgent {
    pub fn new(config: ClaudeConfig) -> ClaudeAgent {
        ClaudeAgent { config }
    }

    pub fn config(&self) -> &ClaudeConfig {
        &self.config
    }

    /// A command for `args` with the configured program and environment, ready for
    /// supervision.
    fn command(&self, args: &[String], call_env: &BTreeMap<String, String>) -> Command {
        let mut command = Command::new(&self.config.program);
        command.args(args).envs(&self.config.env).envs(call_env);
        process::prepare(&mut command);
        command
    }

    /// Where `call`'s session keeps its transcript.
    fn transcript_place(&self, call: &AgentCall) -> Result<TranscriptPlace, TranscriptError> {
        TranscriptPlace::of(call, &self.config.env, &self.config.inherited)
            .ok_or(TranscriptError::NoLocation)
    }

    fn cannot_spawn(&self, source: std::io::Error) -> AgentError {
        AgentError::CannotSpawn {
            program: self.config.program.clone(),
            source,
        }
    }

    /// What `claude auth status` prints (its JSON), supervised as every call is: own process
    /// group, bounded by the probe timeout, stopped whole. It exits 1 when not logged in,
    /// with the same JSON, so the exit code is not an error here.
    pub async fn auth_status(&self, env: &BTreeMap<String, String>) -> Result<String, AgentError> {
        let args = ["auth".to_owned(), "status".to_owned()];
        let mut child = process::spawn(self.command(&args, env), self.config.output_cap)
            .await
            .map_err(|source| self.cannot_spawn(source))?;
        let mut sink = AllLines::default();
        let end = child
            .run(
                Vec::new(),
                &mut sink,
                deadline_after(self.config.probe_timeout),
                &CancellationToken::new(),
                self.config.grace,
            )
            .await
            .map_err(AgentError::Io)?;
        match end {
            RunEnd::Exited(ExitInfo::Code(_)) => Ok(sink.text),
            RunEnd::Exited(exit) => Err(AgentError::Crashed {
                exit,
                stderr_tail: child.stderr_tail(),
            }),
            RunEnd::TimedOut | RunEnd::Cancelled => Err(AgentError::Timeout {
                after: self.config.probe_timeout,
                partial_usage: agent::Usage::ZERO,
            }),
        }
    }
}

#[async_trait::async_trait]
impl Agent for ClaudeAgent {
    async fn call(
        &self,
        call: AgentCall,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<AgentReply, AgentError> {
        let deadline = deadline_after(call.timeout);
        // One stat(2): too quick to be worth a blocking-pool hop.
        let is_dir = std::fs::metadata(&call.working_dir).is_ok_and(|metadata| metadata.is_dir());
        if !is_dir {
            return Err(AgentError::WorkingDirMissing {
                path: call.working_dir.clone(),
            });
        }
        let mut command = self.command(&build_argv(&call), &call.env);
        command.current_dir(&call.working_dir);
        let mut child = process::spawn(command, self.config.output_cap)
            .await
            .map_err(|source| self.cannot_spawn(source))?;
        events.emit(AgentEvent::Spawned { pid: child.pid() });

        let mut sink = StreamSink {
            parser: StreamParser::new(),
            events: &events,
        };
        let end = child
            .run(
                call.prompt.into_bytes(),
                &mut sink,
                deadline,
                &cancel,
                self.config.grace,
            )
            .await
            .map_err(AgentError::Io)?;
        let partial_usage = sink.parser.progress_usage();
        match end {
            RunEnd::TimedOut => Err(AgentError::Timeout {
                after: call.timeout,
                partial_usage,
            }),
            RunEnd::Cancelled => Err(AgentError::Cancelled { partial_usage }),
            RunEnd::Exited(exit) => outcome::classify(
                sink.parser.finish(),
                CallFacts {
                    assigned: call.plan.session_id(),
                    max_turns: call.max_turns,
                },
                &ProcessEnd {
                    exit,
                    stderr: child.stderr_tail(),
                },
            ),
        }
    }

    async fn probe(&self) -> Result<AgentInfo, AgentError> {
        let command = self.command(&["--version".to_owned()], &BTreeMap::new());
        let mut child = process::spawn(command, self.config.output_cap)
            .await
            .map_err(|source| self.cannot_spawn(source))?;
        let mut sink = FirstLine::default();
        let end = child
            .run(
                Vec::new(),
                &mut sink,
                deadline_after(self.config.probe_timeout),
                &CancellationToken::new(),
                self.config.grace,
            )
            .await
            .map_err(AgentError::Io)?;
        match end {
            RunEnd::Exited(ExitInfo::Code(0)) => {}
            RunEnd::Exited(exit) => {
                return Err(AgentError::Crashed {
                    exit,
                    stderr_tail: child.stderr_tail(),
                });
            }
            RunEnd::TimedOut | RunEnd::Cancelled => {
                return Err(AgentError::Timeout {
                    after: self.config.probe_timeout,
                    partial_usage: agent::Usage::ZERO,
                });
            }
        }
        // `claude --version` prints `2.1.328 (Claude Code)`.
        let version = sink
            .line
            .as_deref()
            .and_then(|line| line.split_whitespace().next())
            .filter(|word| word.starts_with(|c: char| c.is_ascii_digit()))
            .ok_or_else(|| AgentError::MalformedOutput {
                detail: format!(
                    "`{} --version` printed `{}`, not a version",
                    self.config.program.display(),
                    sink.line.as_deref().unwrap_or_default()
                ),
            })?;
        Ok(AgentInfo {
            name: String::from("claude"),
            version: version.to_owned(),
            program: Some(self.config.program.clone()),
        })
    }

    async fn read_transcript(
        &self,
        call: &AgentCall,
    ) -> Result<Option<Transcript>, TranscriptError> {
        let place = self.transcript_place(call)?;
        blocking(move || place.read()).await
    }

    async fn has_transcript(&self, call: &AgentCall) -> Result<bool, TranscriptError> {
        let place = self.transcript_place(call)?;
        blocking(move || Ok(place.find().is_some())).await
    }

    async fn restore_transcript(
        &self,
        call: &AgentCall,
        transcript: &Transcript,
    ) -> Result<Restored, TranscriptError> {
        let place = self.transcript_place(call)?;
        let transcript = transcript.clone();
        blocking(move || place.restore(&transcript)).await
    }
}

/// `now + after`, or a far-off instant when that overflows (a timeout of `Duration::MAX`).
fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 3600))
}

/// Feeds stdout lines to the stream parser and its events to the caller.
struct StreamSink<'a> {
    parser: StreamParser,
    events: &'a EventSink,
}

impl LineSink for StreamSink<'_> {
    fn line(&mut self, line: Line<'_>) {
        match line {
            Line::Complete(bytes) => self
                .parser
                .push_line(bytes, &mut |event| self.events.emit(event)),
            Line::Oversized { .. } => self.parser.push_oversized(),
        }
    }
}

/// Keeps every whole stdout line.
#[derive(Default)]
struct AllLines {
    text: String,
}

impl LineSink for AllLines {
    fn line(&mut self, line: Line<'_>) {
        if let Line::Complete(bytes) = line {
            self.text.push_str(&String::from_utf8_lossy(bytes));
            self.text.push('\n');
        }
    }
}

/// Keeps the first non-empty stdout line.
#[derive(Default)]
struct FirstLine {
    line: Option<String>,
}

impl LineSink for FirstLine {
    fn line(&mut self, line: Line<'_>) {
        if let (None, Line::Complete(bytes)) = (&self.line, line) {
            let text = String::from_utf8_lossy(bytes).trim().to_owned();
            if !text.is_empty() {
                self.line = Some(text);
            }
        }
    }
}
