//! What `mock-claude` does on a call: the scenario file format and how a call picks its step.
//!
//! A scenario is JSON, in the file named by `MOCK_CLAUDE_SCENARIO`. It is either one step,
//! which every call follows, or an object with `steps` and/or `when`:
//!
//! ```json
//! {
//!   "when": [
//!     {"prompt_contains": "verification failed", "step": {"result": "fixed it"}},
//!     {"plan": "resume", "call": 3, "step": {"outcome": "hang"}}
//!   ],
//!   "steps": [
//!     {"outcome": "max_turns"},
//!     {"result": "done", "files": {"src/lib.rs": "// written by the mock\n"}}
//!   ]
//! }
//! ```
//!
//! Call number `n` (counted from 0 over every call that used this scenario file, kept in
//! `<scenario file>.state` beside it) takes the step of the first rule in `when` whose
//! conditions all hold, else `steps[n]`, else the last of `steps`, else a plain success.
//! Delete the state file (or write a new scenario under a new name) to start counting again.
//!
//! A step's fields, all optional (see [`Step`] for each one's meaning and default):
//! `outcome`, `result`, `usage`, `cost_usd`, `num_turns`, `model`, `context_window`,
//! `delay_ms`, `files`, `session_id`, `api_error_status`, `message`, `rate_limit_reset`,
//! `errors`, `permission_denials`, `exit_code`, `signal`, `stderr`, `huge_output_mb`,
//! `garbage_lines`, `ignore_term`.
//!
//! Environment variables override the chosen step: `MOCK_CLAUDE_OUTCOME` (an outcome word),
//! `MOCK_CLAUDE_DELAY_MS`, `MOCK_CLAUDE_RESULT`, `MOCK_CLAUDE_REPORT_SESSION_ID`. With no
//! scenario file they apply to a plain success, so a test can script one call with env alone.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use agent::{PlanKind, SessionId, Usage};
use serde::{Deserialize, Serialize};

use crate::error::ScenarioError;

/// The variable naming the scenario file.
pub const SCENARIO_ENV: &str = "MOCK_CLAUDE_SCENARIO";
/// Overrides the step's `outcome`.
pub const OUTCOME_ENV: &str = "MOCK_CLAUDE_OUTCOME";
/// Overrides the step's `delay_ms`.
pub const DELAY_MS_ENV: &str = "MOCK_CLAUDE_DELAY_MS";
/// Overrides the step's `result`.
pub const RESULT_ENV: &str = "MOCK_CLAUDE_RESULT";
/// Overrides the step's `session_id` (the id reported instead of the assigned one).
pub const REPORT_SESSION_ID_ENV: &str = "MOCK_CLAUDE_REPORT_SESSION_ID";
/// Names a file to which every call appends one JSON line: argv, cwd, prompt, call number.
pub const LOG_ENV: &str = "MOCK_CLAUDE_LOG";
/// Overrides the version `--version` prints.
pub const VERSION_ENV: &str = "MOCK_CLAUDE_VERSION";

/// How a call ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `subtype: success`, `is_error: false`, exit 0. If `--max-turns N` is given and the
    /// step takes more than N turns, the call ends as `max_turns` instead, as the real one would.
    #[default]
    Success,
    /// `subtype: error_max_turns`, `is_error: true`, `errors: ["Reached maximum number of
    /// turns (N)"]`, no `result`, exit 1 (observed).
    MaxTurns,
    /// An API error: a synthetic assistant message with the CLI's text for the status (such
    /// as `API Error: 400 <message>`; 5xx, 401/403, 404 and 413 have their own), then
    /// `subtype: success`, `is_error: true`, `terminal_reason: api_error`, `api_error_status`,
    /// exit 1 (observed on 2.1.328; older versions were reported to exit 0: set `exit_code`).
    ApiError,
    /// An API error with status 429, shaped like the real one (`error: rate_limit` on the
    /// assistant message). With `rate_limit_reset`, a `rate_limit_event` line carrying
    /// `resetsAt` comes first (reported for subscription logins; an API key shows none).
    RateLimit,
    /// `subtype: error_during_execution`, `is_error: true`, `errors` from the step, exit 1.
    ExecutionError,
    /// `subtype: error_max_budget_usd`, `is_error: true`, exit 1.
    BudgetExceeded,
    /// The process ends with no result line: exit `exit_code` (default 1), or dies from
    /// `signal` when given. `stderr` is printed first.
    Crash,
    /// Prints `garbage_lines` lines that are not JSON, and nothing else; exit 0.
    Garbage,
    /// Prints the init line, then a line that is not UTF-8, and nothing else; exit 0.
    NonUtf8,
    /// Prints the init line, writes the files, then sleeps until killed. With `ignore_term` it
    /// ignores SIGTERM, so only SIGKILL stops it.
    Hang,
    /// Prints the init line and the assistant's messages, then exits 0 with no result line.
    NoResult,
}

impl Outcome {
    pub const ALL: [Outcome; 11] = [
        Outcome::Success,
        Outcome::MaxTurns,
        Outcome::ApiError,
        Outcome::RateLimit,
        Outcome::ExecutionError,
        Outcome::BudgetExceeded,
        Outcome::Crash,
        Outcome::Garbage,
        Outcome::NonUtf8,
        Outcome::Hang,
        Outcome::NoResult,
    ];

    /// The word used in scenario files and `MOCK_CLAUDE_OUTCOME`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::MaxTurns => "max_turns",
            Outcome::ApiError => "api_error",
            Outcome::RateLimit => "rate_limit",
            Outcome::ExecutionError => "execution_error",
            Outcome::BudgetExceeded => "budget_exceeded",
            Outcome::Crash => "crash",
            Outcome::Garbage => "garbage",
            Outcome::NonUtf8 => "non_utf8",
            Outcome::Hang => "hang",
            Outcome::NoResult => "no_result",
        }
    }
}

impl FromStr for Outcome {
    type Err = ScenarioError;

    fn from_str(s: &str) -> Result<Outcome, ScenarioError> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == s)
            .ok_or_else(|| ScenarioError::UnknownOutcome { word: s.to_owned() })
    }
}

/// What one call does. Every field has a default, so `{}` is a plain success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Step {
    /// How the call ends.
    pub outcome: Outcome,
    /// The final text (`result`). Default: `Done.`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Tokens this call reports (field names as in [`agent::Usage`]). Default: 100 input,
    /// 20 output. Error outcomes that spend nothing (API errors) report zero whatever is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What this call costs. Default: 0.001.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Turns the call takes. Default: one per file written, plus one for the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_turns: Option<u32>,
    /// The model reported when `--model` is not given. Default: `claude-mock-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The `contextWindow` reported in `modelUsage`. Default: 200000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// How long the call "thinks" between the init line and what follows.
    #[serde(skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
    /// Files to write, path (relative to the working directory) to contents. Each is shown as
    /// a `Write` tool use and its result in the stream. Not written for `garbage`/`non_utf8`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Report this session id instead of the assigned one (in every line and the transcript's
    /// file name), as an agent that ignored its id would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// The HTTP status of an `api_error`. Default: 500.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_error_status: Option<u16>,
    /// The API's message for `api_error` and `rate_limit`. Default: `scripted failure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When a `rate_limit` resets, in Unix seconds; adds a `rate_limit_event` line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_reset: Option<u64>,
    /// The `errors` of `execution_error` (default `["scripted execution error"]`) and
    /// `budget_exceeded`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Tool names reported in `permission_denials` (the call still ends as its outcome says).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permission_denials: Vec<String>,
    /// The exit code, overriding the outcome's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// For `crash`: die from this signal (such as 9 or 11) instead of exiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Text printed on stderr (for every outcome).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Print this many MiB of extra output before the end: assistant text lines in
    /// `stream-json`, a longer `result` in `json` and `text`.
    #[serde(skip_serializing_if = "is_zero")]
    pub huge_output_mb: u64,
    /// How many lines `garbage` prints. Default: 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub garbage_lines: Option<u32>,
    /// For `hang`: ignore SIGTERM.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_term: bool,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl Step {
    /// A success answering `result`.
    pub fn success(result: impl Into<String>) -> Step {
        Step {
            result: Some(result.into()),
            ..Step::default()
        }
    }

    /// A step ending as `outcome`, every other field at its default.
    pub fn outcome(outcome: Outcome) -> Step {
        Step {
            outcome,
            ..Step::default()
        }
    }
}

/// One `when` rule: a step for the calls that match every condition given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    /// The prompt contains this text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_contains: Option<String>,
    /// The call was assigned this session (by `--session-id` or `--resume`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// The call starts (`--session-id`, or no session flag) or resumes (`--resume`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanKind>,
    /// The call's number, counted from 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<u64>,
    pub step: Step,
}

/// The calls of a scenario file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Steps by call number; the last one repeats.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Rules tried before `steps`, first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Rule>,
}

/// What a scenario knows about a call when it picks its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallFacts<'a> {
    /// The call's number, counted from 0.
    pub index: u64,
    pub prompt: &'a str,
    /// The session the call was given, when it was given one.
    pub session_id: Option<SessionId>,
    pub plan: PlanKind,
}

impl Scenario {
    /// A scenario whose calls follow `steps` in order, the last one repeating.
    pub fn steps(steps: impl IntoIterator<Item = Step>) -> Scenario {
        Scenario {
            steps: steps.into_iter().collect(),
            when: Vec::new(),
        }
    }

    /// Reads a scenario file: a scenario object, or a single step.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Scenario::parse(&text).map_err(|source| ScenarioError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses a scenario object, or a single step (an object with neither `steps` nor `when`).
    pub fn parse(text: &str) -> Result<Scenario, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let is_scenario = value
            .as_object()
            .is_some_and(|object| object.contains_key("steps") || object.contains_key("when"));
        if is_scenario {
            serde_json::from_value(value)
        } else {
            Ok(Scenario::steps([serde_json::from_value::<Step>(value)?]))
        }
    }

    /// Writes the scenario as JSON to `path`, and removes the call counter beside it so that
    /// counting starts again from 0.
    pub fn write(&self, path: &Path) -> Result<(), ScenarioError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| ScenarioError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let write_error = |source| ScenarioError::Write {
            path: path.to_owned(),
            source,
        };
        std::fs::write(path, text).map_err(write_error)?;
        match std::fs::remove_file(state_path(path)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(write_error(error)),
            _ => Ok(()),
        }
    }

    /// The step a call follows.
    pub fn select(&self, facts: &CallFacts<'_>) -> Step {
        let matched = self.when.iter().find(|rule| rule.matches(facts));
        if let Some(rule) = matched {
            return rule.step.clone();
        }
        let index = usize::try_from(facts.index).unwrap_or(usize::MAX);
        self.steps
            .get(index)
            .or(self.steps.last())
            .cloned()
            .unwrap_or_default()
    }
}

impl Rule {
    fn matches(&self, facts: &CallFacts<'_>) -> bool {
        self.prompt_contains
            .as_ref()
            .is_none_or(|needle| facts.prompt.contains(needle.as_str()))
            && self
                .session_id
                .is_none_or(|id| facts.session_id == Some(id))
            && self.plan.is_none_or(|plan| plan == facts.plan)
            && self.call.is_none_or(|call| call == facts.index)
    }
}

/// The file beside a scenario that counts its calls.
pub fn state_path(scenario: &Path) -> PathBuf {
    let mut name = scenario.as_os_str().to_owned();
    name.push(".state");
    PathBuf::from(name)
}

/// Takes the next call number of `scenario`, counting from 0. Safe when many `mock-claude`
/// processes share one scenario: the counter file is locked while it is read and written.
pub fn next_call_index(scenario: &Path) -> Result<u64, ScenarioError> {
    let path = state_path(scenario);
    let state_error = |source| ScenarioError::State {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(state_error)?;
    file.lock().map_err(state_error)?;
    let index = read_counter(&mut file).map_err(state_error)?;
    write_counter(&mut file, index + 1).map_err(state_error)?;
    // Closing the file releases the lock.
    Ok(index)
}

fn read_counter(file: &mut File) -> std::io::Result<u64> {
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the call counter holds `{text}`, not a number"),
        )
    })
}

fn write_counter(file: &mut File, value: u64) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(value.to_string().as_bytes())
}

/// Applies the `MOCK_CLAUDE_*` overrides found through `lookup` (normally the environment).
pub fn apply_env_overrides(
    step: &mut Step,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), ScenarioError> {
    if let Some(word) = lookup(OUTCOME_ENV) {
        step.outcome = word.parse()?;
    }
    if let Some(text) = lookup(DELAY_MS_ENV) {
        step.delay_ms = text.parse().map_err(|_| ScenarioError::BadEnv {
            name: DELAY_MS_ENV,
            value: text.clone(),
        })?;
    }
    if let Some(result) = lookup(RESULT_ENV) {
        step.result = Some(result);
    }
    if let Some(text) = lookup(REPORT_SESSION_ID_ENV) {
        step.session_id = Some(text.parse().map_err(|_| ScenarioError::BadEnv {
            name: REPORT_SESSION_ID_ENV,
            value: text.clone(),
        })?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(index: u64, prompt: &str) -> CallFacts<'_> {
        CallFacts {
            index,
            prompt,
            session_id: None,
            plan: PlanKind::Start,
        }
    }

    #[test]
    fn a_bare_step_is_a_one_step_scenario() {
        let scenario = Scenario::parse(r#"{"outcome": "max_turns", "num_turns": 3}"#).unwrap();
        let step = scenario.select(&facts(7, "x"));
        assert_eq!(step.outcome, Outcome::MaxTurns);
        assert_eq!(step.num_turns, Some(3));
        assert_eq!(
            Scenario::parse("{}").unwrap().select(&facts(0, "")),
            Step::default()
        );
    }

    #[test]
    fn steps_go_in_order_and_the_last_repeats() {
        let scenario = Scenario::steps([Step::outcome(Outcome::Crash), Step::success("ok")]);
        assert_eq!(scenario.select(&facts(0, "")).outcome, Outcome::Crash);
        assert_eq!(scenario.select(&facts(1, "")).result.as_deref(), Some("ok"));
        assert_eq!(scenario.select(&facts(9, "")).result.as_deref(), Some("ok"));
        assert_eq!(Scenario::default().select(&facts(3, "")), Step::default());
    }

    #[test]
    fn rules_match_on_every_condition_given() {
        let id = SessionId::new_v4();
        let scenario: Scenario = serde_json::from_value(serde_json::json!({
            "when": [
                {"prompt_contains": "verify", "plan": "resume", "step": {"result": "resumed verify"}},
                {"session_id": id, "step": {"outcome": "hang"}},
                {"call": 2, "step": {"outcome": "garbage"}},
            ],
            "steps": [{"result": "plain"}],
        }))
        .unwrap();
        let mut call = facts(0, "please verify");
        assert_eq!(scenario.select(&call).result.as_deref(), Some("plain"));
        call.plan = PlanKind::Resume;
        assert_eq!(
            scenario.select(&call).result.as_deref(),
            Some("resumed verify")
        );
        call.session_id = Some(id);
        call.prompt = "other";
        assert_eq!(scenario.select(&call).outcome, Outcome::Hang);
        assert_eq!(scenario.select(&facts(2, "")).outcome, Outcome::Garbage);
    }

    #[test]
    fn unknown_fields_and_outcomes_are_refused() {
        assert!(Scenario::parse(r#"{"outcom": "success"}"#).is_err());
        assert!(Scenario::parse(r#"{"outcome": "explode"}"#).is_err());
        assert!(Scenario::parse(r#"{"steps": [], "stepz": []}"#).is_err());
        let err = "explode".parse::<Outcome>().unwrap_err();
        assert!(err.to_string().contains("`explode`"), "{err}");
    }

    #[test]
    fn outcome_words_round_trip() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>().unwrap(), outcome);
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
        }
    }

    #[test]
    fn scenarios_round_trip_through_files_and_reset_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scenario.json");
        let scenario = Scenario {
            steps: vec![Step {
                files: BTreeMap::from([("a.txt".into(), "A".into())]),
                usage: Some(Usage {
                    input_tokens: 5,
                    ..Usage::ZERO
                }),
                ..Step::success("x")
            }],
            when: vec![Rule {
                call: Some(1),
                step: Step::outcome(Outcome::Hang),
                ..Rule::default()
            }],
        };
        scenario.write(&path).unwrap();
        assert_eq!(next_call_index(&path).unwrap(), 0);
        assert_eq!(next_call_index(&path).unwrap(), 1);
        assert_eq!(Scenario::load(&path).unwrap(), scenario);
        scenario.write(&path).unwrap();
        assert_eq!(next_call_index(&path).unwrap(), 0);
    }

    #[test]
    fn counter_is_exact_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| next_call_index(&path).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen: Vec<u64> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn env_overrides_apply_and_bad_values_are_named() {
        let id = SessionId::new_v4();
        let env = BTreeMap::from([
            (OUTCOME_ENV, "rate_limit".to_owned()),
            (DELAY_MS_ENV, "15".to_owned()),
            (RESULT_ENV, "from env".to_owned()),
            (REPORT_SESSION_ID_ENV, id.to_string()),
        ]);
        let mut step = Step::default();
        apply_env_overrides(&mut step, |name| env.get(name).cloned()).unwrap();
        assert_eq!(step.outcome, Outcome::RateLimit);
        assert_eq!(step.delay_ms, 15);
        assert_eq!(step.result.as_deref(), Some("from env"));
        assert_eq!(step.session_id, Some(id));

        let err = apply_env_overrides(&mut step, |name| {
            (name == DELAY_MS_ENV).then(|| "soon".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("MOCK_CLAUDE_DELAY_MS"), "{err}");
    }
}
