//! `.baton/config.toml`: its keys, their validation, and the commented file `baton init`
//! writes.
//!
//! Every key is optional; an absent key takes the default (see [`Defaults`]). Unknown keys
//! and bad values are errors that name the file, the line and the key (`run.concurrency`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::PermissionMode;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use session_store::SessionPolicy;

use crate::error::{CliError, Kind};
use crate::flags::AgentKind;

/// The configuration file as written: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    pub agent: AgentSection,
    pub run: RunSection,
    pub tasks: TasksSection,
}

/// `[agent]`: which agent runs tasks and what every call is told.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    pub kind: Option<AgentKind>,
    pub claude_bin: Option<NonEmpty>,
    pub model: Option<NonEmpty>,
    pub permission_mode: Option<PermissionMode>,
    pub allowed_tools: Option<Vec<NonEmpty>>,
    pub max_turns: Option<AtLeastOne>,
    pub timeout: Option<HumanDuration>,
    pub env: BTreeMap<String, String>,
}

/// `[run]`: how `baton run` schedules tasks.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    pub concurrency: Option<Concurrency>,
    pub session_policy: Option<Policy>,
    pub context_rotation_threshold: Option<Fraction>,
    pub verify_timeout: Option<HumanDuration>,
}

/// `[tasks]`: defaults for `baton task add`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksSection {
    pub max_iterations: Option<AtLeastOne>,
}

/// The values an absent key takes. They are the orchestrator's own defaults (a test checks
/// that they agree), written here too because the commented config file shows them.
pub struct Defaults;

impl Defaults {
    pub const AGENT: AgentKind = AgentKind::Claude;
    pub const CLAUDE_BIN: &'static str = "claude";
    pub const PERMISSION_MODE: PermissionMode = PermissionMode::AcceptEdits;
    pub const MAX_TURNS: u32 = 50;
    pub const TIMEOUT: Duration = Duration::from_secs(30 * 60);
    pub const CONCURRENCY: u32 = 1;
    pub const SESSION_POLICY: SessionPolicy = SessionPolicy::Task;
    pub const CONTEXT_ROTATION_THRESHOLD: f64 = 0.8;
    pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(10 * 60);
    pub const MAX_ITERATIONS: u32 = 5;
}

/// The most tasks a run may run at once, from the configuration or `run --concurrency`.
pub const MAX_CONCURRENCY: u32 = 64;

/// A string that is not empty (after trimming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonEmpty(pub String);

/// A whole number of at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtLeastOne(pub u32);

/// How many tasks run at once: 1 to [`MAX_CONCURRENCY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency(pub u32);

/// A number above 0 and at most 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fraction(pub f64);

/// A duration written for people: `90s`, `30m`, `1h30m`, `500ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// A session policy word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy(pub SessionPolicy);

impl ConfigFile {
    /// Reads and validates the file at `path`. A missing file is the empty configuration.
    pub fn load(path: &Path) -> Result<ConfigFile, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile::default());
            }
            Err(error) => {
                return Err(CliError::new(
                    Kind::Ledger,
                    format!("could not read the configuration file `{}`", path.display()),
                )
                .with_source(error));
            }
        };
        ConfigFile::parse(&text, path)
    }

    /// Parses configuration text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, CliError> {
        toml::from_str(text).map_err(|error| config_error(text, path, &error))
    }
}

/// Turns a TOML error into one that names the file, the line and the dotted key.
fn config_error(text: &str, path: &Path, error: &toml::de::Error) -> CliError {
    let message = error.message().trim_end_matches('.');
    let location = error.span().map(|span| locate(text, span.start));
    let detail = match &location {
        Some(Location {
            line,
            key: Some(key),
        }) => {
            if let Some(rest) = message.strip_prefix("unknown field `") {
                // "unknown field `foo`, expected …": name the key with its table.
                let expected = rest.split_once("`, ").map(|(_, tail)| tail).unwrap_or("");
                if expected.is_empty() {
                    format!("line {line}: unknown key `{key}`")
                } else {
                    format!("line {line}: unknown key `{key}`, {expected}")
                }
            } else {
                format!("line {line}: bad value for `{key}`: {message}")
            }
        }
        Some(Location { line, key: None }) => format!("line {line}: {message}"),
        None => message.to_owned(),
    };
    CliError::new(
        Kind::Usage,
        format!("invalid configuration in `{}`, {detail}", path.display()),
    )
    .with_hint(
        "fix or remove that line; docs/user-guide.md lists every key, and `baton doctor` checks the file",
    )
}

struct Location {
    /// From 1.
    line: usize,
    /// The dotted key the position belongs to, when it can be told.
    key: Option<String>,
}

/// The line of byte `offset` in `text`, and the dotted key written on it (or on the nearest
/// line above that assigns one, for values that span lines).
fn locate(text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let lines: Vec<&str> = text.lines().collect();
    let index = line - 1;
    let header = |line: &str| {
        let trimmed = line.trim();
        trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.split(']').next())
            .map(|name| name.trim_matches(|c| c == '[' || c == ' ').to_owned())
    };
    let this = lines.get(index).copied().unwrap_or("");
    if let Some(table) = header(this) {
        return Location {
            line,
            key: Some(table),
        };
    }
    let assignment = (0..=index.min(lines.len().saturating_sub(1)))
        .rev()
        .find_map(|at| {
            let candidate = lines.get(at)?;
            if header(candidate).is_some() {
                return Some(None);
            }
            let (key, _) = candidate.split_once('=')?;
            Some(Some(key.trim().trim_matches('"').to_owned()))
        })
        .flatten();
    let table = lines[..index.min(lines.len())]
        .iter()
        .rev()
        .find_map(|candidate| header(candidate));
    let key = assignment.map(|key| match table {
        Some(table) => format!("{table}.{key}"),
        None => key,
    });
    Location { line, key }
}

/// Parses `90s`, `30m`, `1h30m`, `500ms`, `2d`: one or more numbers, each with a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(String::from(
            "it is empty; write a duration such as \"90s\", \"30m\" or \"1h\"",
        ));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration: write a number and a unit, such as \"90s\", \"30m\" or \"1h30m\""
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too long a duration"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3_600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            "" => {
                return Err(format!(
                    "`{text}` has no unit: write \"{number}s\" for seconds or \"{number}m\" for minutes"
                ));
            }
            other => {
                return Err(format!(
                    "`{other}` is not a unit of time in `{text}`: use ms, s, m, h or d"
                ));
            }
        };
        total = total.saturating_add(part);
    }
    if total.is_zero() {
        return Err(String::from("it must be longer than zero"));
    }
    Ok(total)
}

/// Writes a duration the way [`parse_duration`] reads it: `30m`, `90s`, `1h30m`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1_000) {
        return format!("{millis}ms");
    }
    let mut seconds = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HumanDuration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(HumanDuration)
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for AtLeastOne {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AtLeastOne, D::Error> {
        let number = i64::deserialize(deserializer)?;
        if number < 1 {
            return Err(de::Error::custom(format!(
                "{number} is too small: it must be at least 1"
            )));
        }
        u32::try_from(number)
            .map(AtLeastOne)
            .map_err(|_| de::Error::custom(format!("{number} is too large")))
    }
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Concurrency, D::Error> {
        let AtLeastOne(number) = AtLeastOne::deserialize(deserializer)?;
        if number > MAX_CONCURRENCY {
            return Err(de::Error::custom(format!(
                "{number} is too large: at most {MAX_CONCURRENCY} tasks run at once (the limit of --concurrency too)"
            )));
        }
        Ok(Concurrency(number))
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fraction, D::Error> {
        let number = f64::deserialize(deserializer)?;
        if number > 0.0 && number <= 1.0 {
            Ok(Fraction(number))
        } else {
            Err(de::Error::custom(format!(
                "{number} is out of range: it must be above 0 and at most 1 (0.8 means 80% of the context window)"
            )))
        }
    }
}

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NonEmpty, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            Err(de::Error::custom(
                "it is empty; remove the line to use the default",
            ))
        } else {
            Ok(NonEmpty(text))
        }
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Policy, D::Error> {
        let word = String::deserialize(deserializer)?;
        SessionPolicy::parse(&word).map(Policy).ok_or_else(|| {
            de::Error::custom(format!(
                "`{word}` is not a session policy: expected one of task, fresh, milestone"
            ))
        })
    }
}

impl NonEmpty {
    pub fn as_path(&self) -> PathBuf {
        PathBuf::from(&self.0)
    }
}

/// The configuration file `baton init` writes: every key, commented out at its default,
/// except the agent kind.
pub fn default_file(agent: AgentKind) -> String {
    format!(
        r#"# Baton's configuration for this workspace. Every key is optional: a commented-out key
# shows its default. Command-line flags win over environment variables, which win over this
# file. docs/user-guide.md ("Configuration reference") explains each key.

[agent]
# Which agent runs tasks: "claude" (Claude Code, headless) or "mock" (the built-in mock agent,
# which answers at once and changes nothing; for trying baton out).
kind = "{kind}"
# The Claude Code executable: a path, or a name looked up on PATH.
# The environment variable BATON_CLAUDE_BIN overrides it.
# claude_bin = "{claude_bin}"
# The model to use, when not Claude Code's default.
# model = "claude-sonnet-4-5"
# How the agent may use tools: "default", "acceptEdits", "plan" or "bypassPermissions".
# "bypassPermissions" lets every tool run without asking: set it only if you mean it.
# permission_mode = "{permission_mode}"
# Tools the agent may use without asking (Claude Code's --allowedTools). Empty: its default.
# allowed_tools = ["Read", "Edit", "Write", "Bash(cargo test:*)"]
# The agent's turn budget per call, for tasks that set none.
# max_turns = {max_turns}
# The wall-clock limit of one agent call, such as "90s", "30m" or "2h".
# timeout = "{timeout}"

# Variables added to the agent's environment, on top of the environment baton runs in.
[agent.env]
# RUST_BACKTRACE = "1"

[run]
# How many tasks run at once.
# concurrency = {concurrency}
# Which sessions a task's agent calls go to, for tasks and milestones that set none:
# "task" (one per task), "fresh" (one per iteration) or "milestone" (one per milestone).
# session_policy = "{policy}"
# The share of the model's context window (above 0, at most 1) past which a session is
# replaced by a new one that starts from a handoff summary.
# context_rotation_threshold = {threshold}
# The wall-clock limit of one verification command.
# verify_timeout = "{verify_timeout}"

[tasks]
# How many agent-then-verify rounds a new task gets before it fails.
# max_iterations = {max_iterations}
"#,
        kind = agent.as_str(),
        claude_bin = Defaults::CLAUDE_BIN,
        permission_mode = Defaults::PERMISSION_MODE,
        max_turns = Defaults::MAX_TURNS,
        timeout = format_duration(Defaults::TIMEOUT),
        concurrency = Defaults::CONCURRENCY,
        policy = Defaults::SESSION_POLICY,
        threshold = Defaults::CONTEXT_ROTATION_THRESHOLD,
        verify_timeout = format_duration(Defaults::VERIFY_TIMEOUT),
        max_iterations = Defaults::MAX_ITERATIONS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(text, Path::new("/w/.baton/config.toml")).map_err(|e| e.message)
    }

    #[test]
    fn the_default_file_parses_and_sets_only_the_agent() {
        let file = parse(&default_file(AgentKind::Mock)).unwrap();
        assert_eq!(
            file,
            ConfigFile {
                agent: AgentSection {
                    kind: Some(AgentKind::Mock),
                    ..AgentSection::default()
                },
                ..ConfigFile::default()
            }
        );
    }

    #[test]
    fn every_commented_default_is_a_valid_value() {
        // Uncommenting every key of the default file must give a valid file.
        let uncommented: String = default_file(AgentKind::Claude)
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.contains(':') => rest,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let file = parse(&uncommented).unwrap();
        assert_eq!(
            file.run.concurrency,
            Some(Concurrency(Defaults::CONCURRENCY))
        );
        assert_eq!(file.agent.timeout, Some(HumanDuration(Defaults::TIMEOUT)));
        assert_eq!(
            file.run.context_rotation_threshold,
            Some(Fraction(Defaults::CONTEXT_ROTATION_THRESHOLD))
        );
        assert_eq!(
            file.agent.env.get("RUST_BACKTRACE").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            file.tasks.max_iterations,
            Some(AtLeastOne(Defaults::MAX_ITERATIONS))
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_table_and_line() {
        assert_eq!(
            parse("[agent]\nkind = \"mock\"\n\n[run]\nconcurency = 2\n").unwrap_err(),
            "invalid configuration in `/w/.baton/config.toml`, line 5: unknown key `run.concurency`, expected one of `concurrency`, `session_policy`, `context_rotation_threshold`, `verify_timeout`"
        );
        assert!(
            parse("[runs]\n")
                .unwrap_err()
                .contains("line 1: unknown key `runs`"),
        );
    }

    #[test]
    fn bad_values_are_named_with_their_key() {
        let cases = [
            (
                "[run]\nconcurrency = 0\n",
                "line 2: bad value for `run.concurrency`: 0 is too small: it must be at least 1",
            ),
            (
                "[run]\nconcurrency = 100000\n",
                "line 2: bad value for `run.concurrency`: 100000 is too large: at most 64 tasks run at once (the limit of --concurrency too)",
            ),
            (
                "[run]\nconcurrency = 65\n",
                "`run.concurrency`: 65 is too large: at most 64",
            ),
            (
                "[run]\ncontext_rotation_threshold = 1.5\n",
                "`run.context_rotation_threshold`: 1.5 is out of range",
            ),
            (
                "[agent]\ntimeout = \"30\"\n",
                "`agent.timeout`: `30` has no unit",
            ),
            (
                "[agent]\ntimeout = \"3 weeks\"\n",
                "`weeks` is not a unit of time",
            ),
            (
                "[agent]\npermission_mode = \"yolo\"\n",
                "`agent.permission_mode`: unknown variant `yolo`",
            ),
            (
                "[run]\nsession_policy = \"shared\"\n",
                "`shared` is not a session policy",
            ),
            (
                "[agent]\nkind = \"gpt\"\n",
                "`agent.kind`: unknown variant `gpt`",
            ),
            (
                "[agent]\nallowed_tools = [\n  \"Read\",\n  \"\",\n]\n",
                "line 2: bad value for `agent.allowed_tools`: it is empty",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err();
            assert!(
                message.contains(expected),
                "{message}\n  does not contain: {expected}"
            );
        }
    }

    #[test]
    fn the_largest_concurrency_is_the_flags_largest() {
        let file = parse(&format!("[run]\nconcurrency = {MAX_CONCURRENCY}\n")).unwrap();
        assert_eq!(file.run.concurrency, Some(Concurrency(MAX_CONCURRENCY)));
        let flag = format!("--concurrency={MAX_CONCURRENCY}");
        let too_many = format!("--concurrency={}", MAX_CONCURRENCY + 1);
        use clap::Parser as _;
        assert!(crate::flags::Cli::try_parse_from(["baton", "run", flag.as_str()]).is_ok());
        assert!(crate::flags::Cli::try_parse_from(["baton", "run", too_many.as_str()]).is_err());
    }

    #[test]
    fn durations_read_and_write_alike() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("m").is_err());
        for duration in [
            Duration::from_secs(5_400),
            Duration::from_millis(1_500),
            Duration::from_secs(600),
        ] {
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        assert_eq!(format_duration(Duration::from_secs(1_800)), "30m");
    }
}
