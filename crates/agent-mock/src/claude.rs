//! `mock-claude`: a fake `claude` executable that keeps the part of Claude Code's CLI contract
//! Baton relies on, and plays a [scenario](crate::scenario) instead of calling a model.
//!
//! What it keeps, as observed on Claude Code 2.1.328:
//! - print mode (`-p`), `--output-format text|json|stream-json` (stream-json needs `--verbose`),
//!   `--session-id`, `--resume`/`-r`, `--max-turns`, `--model`, `--permission-mode`,
//!   `--allowedTools`, `--disallowedTools`, `--append-system-prompt`,
//!   `--dangerously-skip-permissions`, `--version`; the prompt on stdin or as arguments;
//! - the real error texts and exit code 1 for: an unknown option, a bad option value,
//!   stream-json without `--verbose`, a malformed session id, `--session-id` with `--resume`,
//!   a session id already in use, an unknown session to resume, no prompt;
//! - transcripts under `$CLAUDE_CONFIG_DIR` or `$HOME/.claude` (see [`crate::transcript`]),
//!   written as soon as a call starts, one prompt line and one answer line per call;
//! - the stream (`system`/`init`, `assistant`, `user`, `result`) and the result object's fields,
//!   including that on `--resume` `total_cost_usd` and `modelUsage` cover the whole session
//!   while `usage` covers this process only.
//!
//! It is plain `std` and starts in about a millisecond, so a test can run hundreds of calls.
//! A broken scenario or an I/O failure of the mock itself exits with [`MOCK_FAILURE_EXIT`] and a
//! `mock-claude:` message on stderr.
//!
//! This file takes a process from its command line to a call: `args` reads the command line,
//! `session` finds the session it assigns and refuses the ones the CLI refuses, and the
//! scenario picks the step. `call` then plays the step, printing what `output` shapes (the
//! JSON objects) and, for API errors, what `api_error` says the CLI reports per status. A
//! limit the CLI enforces itself (`--max-turns`) turns a step's outcome into the CLI's in
//! `call`'s `within_limits`.

pub(crate) mod api_error;
mod args;
mod call;
mod output;
mod session;

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use self::args::{Args, OutputFormat, UsageError};
use self::call::{Call, CallSetup};
use self::session::Assigned;
use crate::error::MockClaudeError;
use crate::scenario::{self, CallFacts, Outcome, Scenario};
use crate::transcript::Transcripts;

/// The exit code of `mock-claude` when it fails itself (a broken scenario, a failed write),
/// distinct from the CLI's own exit codes 0 and 1.
pub const MOCK_FAILURE_EXIT: u8 = 3;

/// The Claude Code version `mock-claude --version` reports unless `MOCK_CLAUDE_VERSION` is set:
/// the version whose behaviour it copies.
pub const IMITATED_VERSION: &str = include_str!("../../../claude-code.version").trim_ascii();

/// Runs `mock-claude` with this process's arguments, environment, stdin and stdout.
pub fn main() -> ExitCode {
    let started = Instant::now();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let args = match args::parse(argv.iter().skip(1).cloned()) {
        Ok(args) => args,
        Err(UsageError(text)) => return refuse(&text),
    };
    match run(&argv, &args, started) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let mut message = format!("mock-claude: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::from(MOCK_FAILURE_EXIT)
        }
    }
}

/// Prints a refusal on stderr, as the real CLI does, and exits 1.
fn refuse(text: &str) -> ExitCode {
    eprintln!("{text}");
    ExitCode::from(1)
}

fn run(argv: &[OsString], args: &Args, started: Instant) -> Result<u8, MockClaudeError> {
    let version = std::env::var(scenario::VERSION_ENV).unwrap_or_else(|_| IMITATED_VERSION.into());
    if let Some(code) = answer_without_a_call(args, &version) {
        return Ok(code);
    }
    let assigned = match session::assign(args) {
        Ok(assigned) => assigned,
        Err(UsageError(text)) => {
            eprintln!("{text}");
            return Ok(1);
        }
    };
    let transcripts = transcripts_from_env()?;
    let cwd = std::env::current_dir().map_err(MockClaudeError::WorkingDir)?;
    let (scenario, index) = scenario_and_call_number()?;
    let log = CallLog {
        argv,
        cwd: &cwd,
        index,
        assigned: &assigned,
    };
    let resumed_from = match session::check(&transcripts, &cwd, &assigned) {
        Ok(resumed_from) => resumed_from,
        Err(refusal) => {
            log.append(None, None)?;
            return refusal.report(args, assigned.session_id);
        }
    };
    let prompt = read_prompt(args)?;
    if prompt.trim().is_empty() {
        log.append(Some(&prompt), None)?;
        eprintln!(
            "Error: Input must be provided either through stdin or as a prompt argument when using --print"
        );
        return Ok(1);
    }
    let mut step = scenario.select(&CallFacts {
        index,
        prompt: &prompt,
        session_id: assigned.given.then_some(assigned.session_id),
        plan: assigned.plan,
    });
    scenario::apply_env_overrides(&mut step, |name| std::env::var(name).ok())?;
    log.append(Some(&prompt), Some(step.outcome))?;
    let call = Call::begin(CallSetup {
        args,
        step: &step,
        assigned,
        cwd: &cwd,
        transcripts: &transcripts,
        resumed_from,
        prompt: &prompt,
        version: &version,
        started,
    })?;
    call.play()
}

/// The whole answer to a command line that makes no call: `--version`, `--help`, and the
/// refusals that come before any session is looked at.
fn answer_without_a_call(args: &Args, version: &str) -> Option<u8> {
    if args.version {
        println!("{version} (Claude Code)");
        return Some(0);
    }
    if args.help {
        println!("Usage: mock-claude -p [options] [prompt]\n\nSee the agent-mock crate's docs.");
        return Some(0);
    }
    if !args.print {
        eprintln!("mock-claude: only print mode (-p) is imitated");
        return Some(1);
    }
    if args.output_format == OutputFormat::StreamJson && !args.verbose {
        eprintln!("Error: When using --print, --output-format=stream-json requires --verbose");
        return Some(1);
    }
    None
}

/// The scenario this call follows and its number in it. Every process started with a
/// scenario takes a number, refused ones included, so that "call n" means the n-th process a
/// test started.
fn scenario_and_call_number() -> Result<(Scenario, u64), MockClaudeError> {
    match std::env::var_os(scenario::SCENARIO_ENV).map(PathBuf::from) {
        Some(path) => Ok((Scenario::load(&path)?, scenario::next_call_index(&path)?)),
        None => Ok((Scenario::default(), 0)),
    }
}

/// The prompt: the positional arguments, else all of stdin.
fn read_prompt(args: &Args) -> Result<String, MockClaudeError> {
    if let Some(prompt) = &args.prompt {
        return Ok(prompt.clone());
    }
    let mut bytes = Vec::new();
    io::stdin()
        .read_to_end(&mut bytes)
        .map_err(MockClaudeError::Stdin)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn transcripts_from_env() -> Result<Transcripts, MockClaudeError> {
    if let Some(dir) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|dir| !dir.is_empty()) {
        return Ok(Transcripts::in_config_dir(Path::new(&dir)));
    }
    match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        Some(home) => Ok(Transcripts::in_home(Path::new(&home))),
        None => Err(MockClaudeError::NoHome),
    }
}

/// What `$MOCK_CLAUDE_LOG` records of a call, whatever becomes of it.
struct CallLog<'a> {
    argv: &'a [OsString],
    cwd: &'a Path,
    index: u64,
    assigned: &'a Assigned,
}

impl CallLog<'_> {
    /// Appends one line about this call to `$MOCK_CLAUDE_LOG`, when it is set: with its
    /// prompt and outcome once they are known.
    fn append(
        &self,
        prompt: Option<&str>,
        outcome: Option<Outcome>,
    ) -> Result<(), MockClaudeError> {
        let Some(path) = std::env::var_os(scenario::LOG_ENV).map(PathBuf::from) else {
            return Ok(());
        };
        let line = json!({
            "call": self.index,
            "argv": self.argv.iter().skip(1).map(|arg| arg.to_string_lossy()).collect::<Vec<_>>(),
            "cwd": self.cwd.to_string_lossy(),
            "parent_pid": std::os::unix::process::parent_id(),
            "plan": self.assigned.plan,
            "session_id": self.assigned.given.then(|| self.assigned.session_id.to_string()),
            "prompt": prompt,
            "outcome": outcome,
        });
        let log_error = |source| MockClaudeError::Log {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(log_error)?;
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(log_error)
    }
}
