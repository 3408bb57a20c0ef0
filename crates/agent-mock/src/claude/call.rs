//! One call being played: the stream (or JSON, or text) a scenario's step makes, the
//! transcript it leaves, and its exit code.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::{SessionId, Usage};
use serde_json::{Value, json};

use super::api_error::ApiFailure;
use super::args::{Args, OutputFormat};
use super::output;
use super::session::Assigned;
use crate::error::MockClaudeError;
use crate::scenario::{Outcome, Step};
use crate::transcript::{self, TranscriptWriter, Transcripts};

const DEFAULT_RESULT: &str = "Done.";
const DEFAULT_MODEL: &str = "claude-mock-1";
const DEFAULT_CONTEXT_WINDOW: u64 = 200_000;
const DEFAULT_COST_USD: f64 = 0.001;
const DEFAULT_USAGE: Usage = Usage {
    input_tokens: 100,
    output_tokens: 20,
    cache_read_tokens: 0,
    cache_creation_tokens: 0,
};

/// What a call needs to begin.
pub(crate) struct CallSetup<'a> {
    pub(crate) args: &'a Args,
    pub(crate) step: &'a Step,
    pub(crate) assigned: Assigned,
    pub(crate) cwd: &'a Path,
    pub(crate) transcripts: &'a Transcripts,
    /// The transcript a resumed session continues.
    pub(crate) resumed_from: Option<PathBuf>,
    pub(crate) prompt: &'a str,
    pub(crate) version: &'a str,
    pub(crate) started: Instant,
}

/// One call being played.
pub(crate) struct Call<'a> {
    args: &'a Args,
    step: &'a Step,
    cwd: &'a Path,
    cwd_text: String,
    /// The session id every line reports.
    reported: SessionId,
    model: String,
    version: &'a str,
    started: Instant,
    transcript_path: PathBuf,
    transcript: TranscriptWriter,
    /// The session's cost and usage before this call, from its transcript.
    previous_cost: f64,
    previous_usage: Usage,
    out: io::StdoutLock<'static>,
}

impl<'a> Call<'a> {
    /// Writes the prompt to the transcript, as the real CLI does as soon as a call starts.
    pub(crate) fn begin(setup: CallSetup<'a>) -> Result<Call<'a>, MockClaudeError> {
        let reported = setup.step.session_id.unwrap_or(setup.assigned.session_id);
        // A call that reports another id keeps its transcript under that id, as an agent that
        // ignored the id it was given would.
        let transcript_path = match &setup.resumed_from {
            Some(path) if reported == setup.assigned.session_id => path.clone(),
            _ => setup.transcripts.path(setup.cwd, reported),
        };
        let (previous_cost, previous_usage) = match &setup.resumed_from {
            Some(path) => session_totals(path),
            None => (0.0, Usage::ZERO),
        };
        let transcript_error = |source| MockClaudeError::Transcript {
            path: transcript_path.clone(),
            source,
        };
        let mut transcript = TranscriptWriter::open(&transcript_path, reported, setup.cwd)
            .map_err(transcript_error)?;
        transcript.prompt(setup.prompt).map_err(transcript_error)?;
        let model = setup
            .args
            .model
            .clone()
            .or_else(|| setup.step.model.clone())
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        Ok(Call {
            args: setup.args,
            step: setup.step,
            cwd: setup.cwd,
            cwd_text: setup.cwd.to_string_lossy().into_owned(),
            reported,
            model,
            version: setup.version,
            started: setup.started,
            transcript_path,
            transcript,
            previous_cost,
            previous_usage,
            out: io::stdout().lock(),
        })
    }

    fn streaming(&self) -> bool {
        self.args.output_format == OutputFormat::StreamJson
    }

    /// Plays the step to its end, and gives the exit code.
    pub(crate) fn play(mut self) -> Result<u8, MockClaudeError> {
        let step = self.step;
        if let Some(text) = &step.stderr {
            eprint!("{text}");
            if !text.ends_with('\n') {
                eprintln!();
            }
        }
        match step.outcome {
            Outcome::Garbage => return self.garbage(),
            Outcome::NonUtf8 => return self.non_utf8(),
            // Before anything is printed, so that a caller who saw output knows TERM is ignored.
            Outcome::Hang if step.ignore_term => ignore_sigterm(),
            _ => {}
        }
        self.init_line()?;
        if step.delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(step.delay_ms));
        }
        let usage = step.usage.unwrap_or(DEFAULT_USAGE);
        self.write_files(&usage)?;
        if step.outcome == Outcome::Hang {
            hang();
        }
        self.huge_lines()?;
        let files_turns = u32::try_from(step.files.len()).unwrap_or(u32::MAX);
        let turns = step.num_turns.unwrap_or(files_turns.saturating_add(1));
        let cost = step.cost_usd.unwrap_or(DEFAULT_COST_USD);
        let outcome = within_limits(step.outcome, turns, cost, self.args);
        self.end(outcome, usage, turns)
    }

    /// Ends the call as `outcome`: its last lines and its exit code.
    fn end(mut self, outcome: Outcome, usage: Usage, turns: u32) -> Result<u8, MockClaudeError> {
        let step = self.step;
        match outcome {
            Outcome::Success => self.success(usage, turns),
            Outcome::MaxTurns => self.max_turns(usage),
            Outcome::ApiError => self.api_error(step.api_error_status.unwrap_or(500)),
            Outcome::RateLimit => self.api_error(429),
            Outcome::ExecutionError => self.failed(
                "error_during_execution",
                usage,
                turns,
                &["scripted execution error"],
            ),
            Outcome::BudgetExceeded => self.budget_exhausted(usage, turns),
            Outcome::Crash => self.crash(),
            Outcome::NoResult => {
                let text = self.result_text();
                self.assistant_text(&text, &usage)?;
                Ok(self.exit_code(0))
            }
            Outcome::Garbage | Outcome::NonUtf8 | Outcome::Hang => {
                unreachable!("garbage, non_utf8 and hang end in play")
            }
        }
    }

    /// Lines that are not JSON, and nothing else.
    fn garbage(mut self) -> Result<u8, MockClaudeError> {
        for line in 0..self.step.garbage_lines.unwrap_or(3) {
            self.raw_line(format!("this is not JSON, line {line} {{").as_bytes())?;
        }
        Ok(self.exit_code(0))
    }

    /// The init line, then a line that is not UTF-8, and nothing else.
    fn non_utf8(mut self) -> Result<u8, MockClaudeError> {
        self.init_line()?;
        self.raw_line(b"\xff\xfe not UTF-8 \xc3\x28")?;
        Ok(self.exit_code(0))
    }

    fn result_text(&self) -> String {
        let mut text = self
            .step
            .result
            .clone()
            .unwrap_or_else(|| DEFAULT_RESULT.to_owned());
        if self.step.huge_output_mb > 0 && !self.streaming() {
            text.push_str(&"x".repeat(mib(self.step.huge_output_mb)));
        }
        text
    }

    fn success(mut self, usage: Usage, turns: u32) -> Result<u8, MockClaudeError> {
        let text = self.result_text();
        // With files, the usage went with the tool calls; the answer carries none.
        let answer_usage = if self.step.files.is_empty() {
            usage
        } else {
            Usage::ZERO
        };
        self.assistant_text(&text, &answer_usage)?;
        let cost = self.step.cost_usd.unwrap_or(DEFAULT_COST_USD);
        self.record_answer(&text, &usage, cost)?;
        let result = self.result_fields(ResultParts {
            subtype: "success",
            is_error: false,
            num_turns: turns,
            result: Some(&text),
            stop_reason: Some("end_turn"),
            terminal_reason: Some("completed"),
            errors: None,
            api_error: None,
            usage,
            cost_usd: cost,
        });
        self.finish(&result, Some(&text))?;
        Ok(self.exit_code(0))
    }

    fn max_turns(mut self, usage: Usage) -> Result<u8, MockClaudeError> {
        let limit = self
            .args
            .max_turns
            .or(self.step.num_turns.map(|turns| turns.saturating_sub(1)))
            .unwrap_or(1);
        let cost = self.step.cost_usd.unwrap_or(DEFAULT_COST_USD);
        if self.step.files.is_empty() {
            // The turns went on tool calls; show one so the usage appears in the stream.
            let tool_use_id = "toolu_mock_turns";
            let content = json!([{
                "type": "tool_use", "id": tool_use_id, "name": "Bash",
                "input": {"command": "true"},
            }]);
            self.line(&output::assistant(
                self.reported,
                &self.model,
                content,
                &usage,
            ))?;
        }
        self.record_cost(&usage, cost)?;
        let errors = [format!("Reached maximum number of turns ({limit})")];
        let result = self.result_fields(ResultParts {
            subtype: "error_max_turns",
            is_error: true,
            num_turns: limit.saturating_add(1),
            result: None,
            stop_reason: Some("tool_use"),
            terminal_reason: Some("max_turns"),
            errors: Some(&errors),
            api_error: None,
            usage,
            cost_usd: cost,
        });
        self.finish(&result, None)?;
        Ok(self.exit_code(1))
    }

    /// `--max-budget-usd` was reached: the real CLI stops with no result text, having spent
    /// up to the limit (this process's spend; the session's earlier calls do not count).
    fn budget_exhausted(mut self, usage: Usage, turns: u32) -> Result<u8, MockClaudeError> {
        let scripted = self.step.cost_usd.unwrap_or(DEFAULT_COST_USD);
        let limit = self.args.max_budget();
        let cost = limit.map_or(scripted, |limit| scripted.min(limit));
        let errors: Vec<String> = match (&self.args.max_budget_usd, self.step.errors.is_empty()) {
            (_, false) => self.step.errors.clone(),
            (Some(text), true) => vec![format!(
                "Reached maximum budget (${})",
                text.trim().parse::<f64>().unwrap_or(cost)
            )],
            (None, true) => vec![String::from("Reached maximum budget")],
        };
        self.record_cost(&usage, cost)?;
        let result = self.result_fields(ResultParts {
            subtype: "error_max_budget_usd",
            is_error: true,
            num_turns: turns,
            result: None,
            stop_reason: None,
            terminal_reason: Some("budget_exhausted"),
            errors: Some(&errors),
            api_error: None,
            usage,
            cost_usd: cost,
        });
        self.finish(&result, Some(&errors.join("\n")))?;
        Ok(self.exit_code(1))
    }

    fn api_error(mut self, status: u16) -> Result<u8, MockClaudeError> {
        let message = self.step.message.as_deref().unwrap_or("scripted failure");
        let failure = ApiFailure::new(status, message, &self.model);
        if status == 429
            && let Some(resets_at) = self.step.rate_limit_reset
        {
            self.line(&output::rate_limit_event(self.reported, resets_at))?;
        }
        self.line(&output::api_error_message(self.reported, &failure))?;
        self.record_answer(&failure.text, &Usage::ZERO, 0.0)?;
        let result = self.result_fields(ResultParts {
            subtype: "success",
            is_error: true,
            num_turns: 1,
            result: Some(&failure.text),
            stop_reason: Some("stop_sequence"),
            terminal_reason: Some("api_error"),
            errors: None,
            api_error: Some((status, failure.error_type)),
            usage: Usage::ZERO,
            cost_usd: 0.0,
        });
        self.finish(&result, Some(&failure.text))?;
        Ok(self.exit_code(1))
    }

    fn failed(
        mut self,
        subtype: &str,
        usage: Usage,
        turns: u32,
        default_errors: &[&str],
    ) -> Result<u8, MockClaudeError> {
        let errors: Vec<String> = if self.step.errors.is_empty() {
            default_errors
                .iter()
                .map(|error| (*error).to_owned())
                .collect()
        } else {
            self.step.errors.clone()
        };
        let cost = self.step.cost_usd.unwrap_or(DEFAULT_COST_USD);
        self.record_cost(&usage, cost)?;
        let result = self.result_fields(ResultParts {
            subtype,
            is_error: true,
            num_turns: turns,
            result: None,
            stop_reason: None,
            terminal_reason: None,
            errors: Some(&errors),
            api_error: None,
            usage,
            cost_usd: cost,
        });
        self.finish(&result, Some(&errors.join("\n")))?;
        Ok(self.exit_code(1))
    }

    fn crash(mut self) -> Result<u8, MockClaudeError> {
        self.out.flush().map_err(MockClaudeError::Stdout)?;
        if let Some(signal) = self.step.signal {
            // The default disposition first: Rust's runtime handles SIGSEGV and SIGBUS itself
            // (to report stack overflows) and would turn the signal into an ordinary exit.
            // SAFETY: resetting a disposition and raising a signal install no handler code.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                libc::raise(signal);
            }
        }
        Ok(self.exit_code(1))
    }

    fn exit_code(&self, default: u8) -> u8 {
        match self.step.exit_code {
            // Exit codes are a byte; `exit(256 + n)` is `exit(n)` for a process too.
            Some(code) => code.rem_euclid(256) as u8,
            None => default,
        }
    }

    fn init_line(&mut self) -> Result<(), MockClaudeError> {
        if !self.streaming() {
            return Ok(());
        }
        let permission_mode = self
            .args
            .permission_mode
            .clone()
            .unwrap_or_else(|| String::from("default"));
        let init = output::init(&output::Init {
            session_id: self.reported,
            cwd: &self.cwd_text,
            model: &self.model,
            permission_mode: &permission_mode,
            version: self.version,
        });
        self.line(&init)
    }

    /// Writes the step's files, each shown as a `Write` tool use and its result. The call's
    /// usage goes on the first tool use, so that progress shows it before the call ends.
    fn write_files(&mut self, usage: &Usage) -> Result<(), MockClaudeError> {
        let files: Vec<(String, String)> = self
            .step
            .files
            .iter()
            .map(|(path, contents)| (path.clone(), contents.clone()))
            .collect();
        for (index, (relative, contents)) in files.iter().enumerate() {
            let path = self.cwd.join(relative);
            let write_error = |source| MockClaudeError::WriteFile {
                path: path.clone(),
                source,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(write_error)?;
            }
            std::fs::write(&path, contents).map_err(write_error)?;
            let tool_use_id = format!("toolu_mock_{index}");
            let path_text = path.to_string_lossy();
            let message_usage = if index == 0 { *usage } else { Usage::ZERO };
            let tool_use = output::write_tool_use(&tool_use_id, &path_text, contents);
            let assistant = output::assistant(self.reported, &self.model, tool_use, &message_usage);
            self.line(&assistant)?;
            let result =
                output::write_tool_result(self.reported, &tool_use_id, &path_text, contents);
            self.line(&result)?;
        }
        Ok(())
    }

    /// In stream-json, `huge_output_mb` MiB of assistant text lines of 64 KiB each.
    fn huge_lines(&mut self) -> Result<(), MockClaudeError> {
        if !self.streaming() || self.step.huge_output_mb == 0 {
            return Ok(());
        }
        const CHUNK: usize = 64 * 1024;
        let chunk = "y".repeat(CHUNK);
        for _ in 0..mib(self.step.huge_output_mb).div_ceil(CHUNK) {
            let line = output::assistant(
                self.reported,
                &self.model,
                output::text_block(&chunk),
                &Usage::ZERO,
            );
            self.line(&line)?;
        }
        Ok(())
    }

    fn assistant_text(&mut self, text: &str, usage: &Usage) -> Result<(), MockClaudeError> {
        if !self.streaming() {
            return Ok(());
        }
        let line = output::assistant(self.reported, &self.model, output::text_block(text), usage);
        self.line(&line)
    }

    fn record_answer(
        &mut self,
        text: &str,
        usage: &Usage,
        cost_usd: f64,
    ) -> Result<(), MockClaudeError> {
        let usage = output::usage(usage);
        let path = self.transcript_path.clone();
        self.transcript
            .answer(text, &self.model, &usage, cost_usd)
            .map_err(|source| MockClaudeError::Transcript { path, source })
    }

    /// Records a call's cost when it produced no answer text: an assistant line with an empty
    /// text block, which [`crate::transcript::read_transcript`] skips but the totals count.
    fn record_cost(&mut self, usage: &Usage, cost_usd: f64) -> Result<(), MockClaudeError> {
        self.record_answer("", usage, cost_usd)
    }

    fn result_fields(&self, parts: ResultParts<'_>) -> Value {
        let session_usage = self.previous_usage + parts.usage;
        let session_cost = self.previous_cost + parts.cost_usd;
        let context_window = self.step.context_window.unwrap_or(DEFAULT_CONTEXT_WINDOW);
        let since_last = self.streaming().then(|| {
            output::model_usage(&self.model, &parts.usage, parts.cost_usd, context_window)
        });
        output::result(&output::ResultFields {
            subtype: parts.subtype,
            is_error: parts.is_error,
            session_id: self.reported,
            duration_ms: self.started.elapsed().as_millis() as u64,
            duration_api_ms: self.step.delay_ms,
            num_turns: parts.num_turns,
            result: parts.result,
            stop_reason: parts.stop_reason,
            terminal_reason: parts.terminal_reason,
            errors: parts.errors,
            api_error: parts.api_error,
            usage: parts.usage,
            total_cost_usd: session_cost,
            model_usage: output::model_usage(
                &self.model,
                &session_usage,
                session_cost,
                context_window,
            ),
            model_usage_since_last_result: since_last,
            permission_denials: &self.step.permission_denials,
        })
    }

    /// Prints the result: the line in stream-json, the object in json, the text in text.
    fn finish(&mut self, result: &Value, text: Option<&str>) -> Result<(), MockClaudeError> {
        match self.args.output_format {
            OutputFormat::StreamJson | OutputFormat::Json => self.line(result),
            OutputFormat::Text => {
                let text = text.unwrap_or_default();
                self.raw_line(text.as_bytes())
            }
        }
    }

    fn line(&mut self, value: &Value) -> Result<(), MockClaudeError> {
        let text = value.to_string();
        self.raw_line(text.as_bytes())
    }

    /// Writes one line and flushes it, so that a reader sees it before any delay that follows.
    fn raw_line(&mut self, bytes: &[u8]) -> Result<(), MockClaudeError> {
        self.out
            .write_all(bytes)
            .and_then(|()| self.out.write_all(b"\n"))
            .and_then(|()| self.out.flush())
            .map_err(MockClaudeError::Stdout)
    }
}

struct ResultParts<'a> {
    subtype: &'a str,
    is_error: bool,
    num_turns: u32,
    result: Option<&'a str>,
    stop_reason: Option<&'a str>,
    terminal_reason: Option<&'a str>,
    errors: Option<&'a [String]>,
    api_error: Option<(u16, &'a str)>,
    usage: Usage,
    cost_usd: f64,
}

/// The outcome once the limits the command line sets apply: a call that reaches
/// `--max-budget-usd` ends as `error_max_budget_usd` whether it was going to finish or to run
/// out of turns (as `MockAgent` has it); else a success that takes more turns than
/// `--max-turns` allows ends as `max_turns`, as the real CLI's would.
fn within_limits(outcome: Outcome, turns: u32, cost_usd: f64, args: &Args) -> Outcome {
    match (outcome, args.max_turns) {
        // The real CLI checks its spend after each model response and stops once it reaches
        // the limit; a call scripted to cost at least the limit reaches it.
        (Outcome::Success | Outcome::MaxTurns, _)
            if args.max_budget().is_some_and(|limit| cost_usd >= limit) =>
        {
            Outcome::BudgetExceeded
        }
        (Outcome::Success, Some(limit)) if turns > limit => Outcome::MaxTurns,
        (outcome, _) => outcome,
    }
}

/// The cost and usage a session's earlier calls recorded in its transcript.
fn session_totals(path: &Path) -> (f64, Usage) {
    // A transcript that cannot be read counts as one with no cost: the call goes on, as the
    // real CLI's would.
    transcript::session_totals(path).unwrap_or((0.0, Usage::ZERO))
}

fn mib(count: u64) -> usize {
    usize::try_from(count.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

fn ignore_sigterm() {
    // SAFETY: setting a signal's disposition to "ignore" installs no handler code.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

/// Sleeps until the process is killed.
fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
