//! `.baton/config.toml`: reading it against the key definitions ([`keys::ALL`]), and the
//! commented file `baton init` writes, made from the same definitions.
//!
//! Every key is optional; an absent key takes its default. Unknown keys, keys the file may
//! not set and bad values are errors that name the file, the line and the key
//! (`run.concurrency`).

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::error::{CliError, Kind};
use crate::keys::{self, Definition, Value};

/// The values the configuration file sets, each valid for its key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    values: BTreeMap<&'static str, Value>,
}

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
        let document = DeTable::parse(text).map_err(|error| syntax_error(text, path, &error))?;
        let values = read(document.get_ref()).map_err(|refusal| {
            let line = line_of(text, refusal.at);
            invalid(path, &format!("line {line}: {}", refusal.detail))
        })?;
        Ok(ConfigFile { values })
    }

    /// The value the file gives the key named `name`, if it gives one.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
}

/// A part of the file that is refused: where it starts, and what is wrong with it.
struct Refusal {
    at: usize,
    detail: String,
}

/// The tables of the file, in the order the definitions first name them.
fn sections() -> Vec<&'static str> {
    let mut sections: Vec<&'static str> = Vec::new();
    for key in keys::ALL.iter().filter(|key| key.sources.file) {
        if !sections.contains(&key.section()) {
            sections.push(key.section());
        }
    }
    sections
}

/// Checks every table and key of the document against the definitions, in the order they
/// are written, so that the first mistake in the file is the one reported.
fn read(document: &DeTable<'_>) -> Result<BTreeMap<&'static str, Value>, Refusal> {
    let sections = sections();
    let mut values = BTreeMap::new();
    for (section, table) in in_file_order(document) {
        let name = section.get_ref().as_ref();
        if !sections.contains(&name) {
            return Err(Refusal {
                at: section.span().start,
                detail: format!(
                    "unknown key `{name}`, expected one of {}",
                    listed(&sections)
                ),
            });
        }
        let DeValue::Table(table) = table.get_ref() else {
            return Err(Refusal {
                at: table.span().start,
                detail: format!("bad value for `{name}`: it must be a table, such as [{name}]"),
            });
        };
        for (key, value) in in_file_order(table) {
            let definition = definition(name, key)?;
            match keys::from_toml(definition, value) {
                // An empty table of variables (the template's `[agent.env]`) adds nothing.
                Ok(Value::Variables(variables)) if variables.is_empty() => {}
                Ok(value) => {
                    values.insert(definition.name, value);
                }
                Err(problem) => {
                    return Err(Refusal {
                        at: problem.span.clone().unwrap_or(value.span()).start,
                        detail: format!("bad value for `{}`: {problem}", definition.name),
                    });
                }
            }
        }
    }
    Ok(values)
}

/// The definition of `key` in the table `section`, which the file must be allowed to set.
fn definition(section: &str, key: &Spanned<DeString<'_>>) -> Result<&'static Definition, Refusal> {
    let name = format!("{section}.{}", key.get_ref());
    let refused = |detail: String| Refusal {
        at: key.span().start,
        detail,
    };
    let Some(definition) = keys::ALL.iter().copied().find(|known| known.name == name) else {
        let known: Vec<&str> = keys::ALL
            .iter()
            .filter(|known| known.sources.file && known.section() == section)
            .map(|known| known.short_name())
            .collect();
        return Err(refused(format!(
            "unknown key `{name}`, expected one of {}",
            listed(&known)
        )));
    };
    if !definition.sources.file {
        let instead: Vec<String> = (definition.sources.flags.iter().copied())
            .chain(definition.sources.env)
            .map(|source| format!("`{source}`"))
            .collect();
        return Err(refused(format!(
            "`{name}` cannot be set in the configuration file; set it with {}",
            instead.join(" or ")
        )));
    }
    Ok(definition)
}

fn in_file_order<'t, 'i>(
    table: &'t DeTable<'i>,
) -> Vec<(&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// `` `a`, `b`, `c` ``
fn listed(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn invalid(path: &Path, detail: &str) -> CliError {
    CliError::new(
        Kind::Usage,
        format!("invalid configuration in `{}`, {detail}", path.display()),
    )
    .with_hint(
        "fix or remove that line; docs/user-guide.md lists every key, and `baton doctor` checks the file",
    )
}

/// Turns a TOML syntax error into one that names the file, the line and, when it can be
/// told, the dotted key.
fn syntax_error(text: &str, path: &Path, error: &toml::de::Error) -> CliError {
    let message = error.message().trim_end_matches('.');
    let detail = match error.span().map(|span| locate(text, span.start)) {
        Some(Location {
            line,
            key: Some(key),
        }) => format!("line {line}: bad value for `{key}`: {message}"),
        Some(Location { line, key: None }) => format!("line {line}: {message}"),
        None => message.to_owned(),
    };
    invalid(path, &detail)
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
    let line = line_of(text, offset);
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

const TEMPLATE_HEADER: &str = "\
# Baton's configuration for this workspace. Every key is optional: a commented-out key
# shows its default. Command-line flags win over environment variables, which win over this
# file. docs/user-guide.md (\"Configuration reference\") explains each key.
";

/// The widest comment line of the template, `# ` included.
const TEMPLATE_WIDTH: usize = 95;

/// The configuration file `baton init` writes: every key the file may set, with its help,
/// commented out at its default (or at an example, for a key with none), except the keys in
/// `chosen`, which are written as set.
pub fn template(chosen: &[(&Definition, Value)]) -> String {
    let mut out = String::from(TEMPLATE_HEADER);
    for section in sections() {
        out.push_str(&format!("\n[{section}]\n"));
        let in_section = || {
            keys::ALL
                .iter()
                .filter(move |key| key.sources.file && key.section() == section)
        };
        // Variables are a table of their own, after the section's plain keys.
        let (tables, plain): (Vec<&&Definition>, Vec<&&Definition>) =
            in_section().partition(|key| matches!(key.kind, keys::Kind::Variables));
        for key in plain {
            out.push_str(&comment(key.help));
            if let Some(variable) = key.sources.env {
                out.push_str(&format!(
                    "# The environment variable {variable} overrides it.\n"
                ));
            }
            match chosen
                .iter()
                .find(|(definition, _)| definition.name == key.name)
            {
                Some((_, value)) => {
                    out.push_str(&format!("{} = {}\n", key.short_name(), value.to_toml()))
                }
                None => out.push_str(&format!(
                    "# {} = {}\n",
                    key.short_name(),
                    key.default_in_file()
                )),
            }
        }
        for key in tables {
            out.push('\n');
            out.push_str(&comment(key.help));
            out.push_str(&format!("[{}]\n", key.name));
            for line in key.default_in_file().lines() {
                out.push_str(&format!("# {line}\n"));
            }
        }
    }
    out
}

/// `text` as comment lines of at most [`TEMPLATE_WIDTH`] columns, broken between words.
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > TEMPLATE_WIDTH && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// The file `baton init` writes for a workspace that runs tasks with `agent`.
///
/// `shared_ledger`, a PostgreSQL URL without its password, becomes `ledger.url`, so that every
/// command in the workspace finds the shared ledger `baton init --db` created.
pub fn default_file(agent: keys::AgentKind, shared_ledger: Option<&str>) -> String {
    use keys::KeyType as _;
    let chosen: Vec<(&Definition, Value)> = agent
        .into_value()
        .map(|value| (&keys::AGENT_KIND.definition, value))
        .into_iter()
        .chain(shared_ledger.map(|url| (&keys::LEDGER_URL.definition, Value::Text(url.to_owned()))))
        .collect();
    template(&chosen)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::keys::{AgentKind, MAX_CONCURRENCY};

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(text, Path::new("/w/.baton/config.toml")).map_err(|e| e.message)
    }

    #[test]
    fn the_default_file_parses_and_sets_only_the_agent() {
        let file = parse(&default_file(AgentKind::Mock, None)).unwrap();
        assert_eq!(
            file.values,
            BTreeMap::from([("agent.kind", Value::Word("mock"))])
        );
    }

    /// `name = value`, as opposed to a sentence of help.
    fn is_assignment(line: &str) -> bool {
        line.split_once(" = ")
            .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    }

    #[test]
    fn every_commented_default_is_the_default_once_uncommented() {
        let uncommented: String = default_file(AgentKind::Claude, None)
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if is_assignment(rest) => rest,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let file = parse(&uncommented).unwrap();
        for key in keys::ALL.iter().filter(|key| key.sources.file) {
            let value = file.get(key.name);
            match key.default_value() {
                Some(default) => assert_eq!(value, Some(&default), "{}", key.name),
                None => assert!(value.is_some(), "{} has no example", key.name),
            }
        }
        assert_eq!(
            file.get("agent.env"),
            Some(&Value::Variables(BTreeMap::from([(
                String::from("RUST_BACKTRACE"),
                String::from("1")
            )])))
        );
    }

    #[test]
    fn the_template_keeps_its_lines() {
        // The line numbers people (and the error snapshots) know: adding a key to a table
        // must not move the keys above it.
        let file = default_file(AgentKind::Claude, None);
        let lines: Vec<&str> = file.lines().collect();
        for (number, line) in [
            (8, "kind = \"claude\""),
            (22, "# timeout = \"30m\""),
            (25, "[agent.env]"),
            (28, "[run]"),
            (30, "# concurrency = 1"),
            (36, "# context_rotation_threshold = 0.8"),
            // Moved by the keys issues 13, 14 and 15 (`run.remote`, `run.clones`) added to
            // [run]: keys added to [run] move the tables below it.
            (65, "# max_iterations = 5"),
        ] {
            assert_eq!(lines[number - 1], line, "line {number}:\n{file}");
        }
        assert!(lines.iter().all(|line| line.len() <= TEMPLATE_WIDTH));
    }

    #[test]
    fn unknown_keys_are_named_with_their_table_and_line() {
        assert_eq!(
            parse("[agent]\nkind = \"mock\"\n\n[run]\nconcurency = 2\n").unwrap_err(),
            "invalid configuration in `/w/.baton/config.toml`, line 5: unknown key `run.concurency`, expected one of `concurrency`, `session_policy`, `context_rotation_threshold`, `verify_timeout`, `isolation`, `worktree_dir`, `deliver`, `remote`, `clones`, `max_cost`, `max_tokens`"
        );
        assert!(parse("[runs]\n").unwrap_err().contains(
            "line 1: unknown key `runs`, expected one of `agent`, `run`, `tasks`, `api`, `ledger`"
        ),);
        assert!(
            parse("[ledger]\npath = \"x.db\"\n")
                .unwrap_err()
                .contains("line 2: `ledger.path` cannot be set in the configuration file; set it with `--db` or `BATON_DB`"),
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
                "[run]\nconcurrency = \"four\"\n",
                "`run.concurrency`: the string `four` is not a whole number from 1 to 64",
            ),
            (
                "[run]\ncontext_rotation_threshold = 1.5\n",
                "`run.context_rotation_threshold`: 1.5 is out of range: it must be above 0 and at most 1 (0.8 means 80% of the context window)",
            ),
            (
                "[agent]\ntimeout = \"30\"\n",
                "`agent.timeout`: `30` is not a duration: time unit needed",
            ),
            (
                "[agent]\ntimeout = \"3 wekes\"\n",
                "unknown time unit \"wekes\"",
            ),
            ("[agent]\ntimeout = \"0s\"\n", "`0s` is zero"),
            (
                "[agent]\ntimeout = 30m\n",
                "line 2: bad value for `agent.timeout`",
            ),
            (
                "[agent]\npermission_mode = \"yolo\"\n",
                "`agent.permission_mode`: `yolo` is not one of \"default\", \"acceptEdits\", \"plan\" or \"bypassPermissions\"",
            ),
            (
                "[run]\nsession_policy = \"shared\"\n",
                "`shared` is not one of \"task\", \"fresh\" or \"milestone\"",
            ),
            (
                "[agent]\nkind = \"gpt\"\n",
                "`agent.kind`: `gpt` is not one of",
            ),
            (
                "[agent]\nmodel = \" \"\n",
                "`agent.model`: the value is empty",
            ),
            (
                "[agent]\nallowed_tools = [\n  \"Read\",\n  \"\",\n]\n",
                "line 4: bad value for `agent.allowed_tools`: item 2 is empty",
            ),
            (
                "[agent.env]\nGOOD = \"1\"\nBAD = 2\n",
                "line 3: bad value for `agent.env`: `BAD` is the number 2, not text",
            ),
            (
                "run = 3\n",
                "line 1: bad value for `run`: it must be a table",
            ),
            (
                "[ledger]\ndurability = \"off\"\n",
                "`off` is not one of \"full\" or \"normal\"",
            ),
            (
                "[run]\nconcurrency = 1\nconcurrency = 2\n",
                "line 3: bad value for `run.concurrency`: duplicate key",
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
    fn durations_take_humantimes_grammar() {
        for (written, duration) in [
            ("90s", Duration::from_secs(90)),
            ("1h30m", Duration::from_secs(5_400)),
            ("1h 30m", Duration::from_secs(5_400)),
            ("500ms", Duration::from_millis(500)),
            ("2days", Duration::from_secs(2 * 86_400)),
        ] {
            let file = parse(&format!("[agent]\ntimeout = \"{written}\"\n")).unwrap();
            assert_eq!(file.get("agent.timeout"), Some(&Value::Duration(duration)));
        }
    }

    #[test]
    fn the_largest_concurrency_is_the_flags_largest() {
        let file = parse(&format!("[run]\nconcurrency = {MAX_CONCURRENCY}\n")).unwrap();
        assert_eq!(
            file.get("run.concurrency"),
            Some(&Value::Count(u64::from(MAX_CONCURRENCY)))
        );
        let flag = format!("--concurrency={MAX_CONCURRENCY}");
        let too_many = format!("--concurrency={}", MAX_CONCURRENCY + 1);
        use clap::Parser as _;
        assert!(crate::flags::Cli::try_parse_from(["baton", "run", flag.as_str()]).is_ok());
        assert!(crate::flags::Cli::try_parse_from(["baton", "run", too_many.as_str()]).is_err());
    }
}
