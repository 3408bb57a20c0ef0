//! `mock-claude`'s command line: the subset of Claude Code's options Baton uses, parsed the
//! way the real CLI's parser (commander) does, with its error texts.

use std::ffi::OsString;

/// `--output-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    #[default]
    Text,
    Json,
    StreamJson,
}

/// What the command line asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Args {
    pub(crate) print: bool,
    pub(crate) version: bool,
    pub(crate) help: bool,
    pub(crate) verbose: bool,
    pub(crate) output_format: OutputFormat,
    pub(crate) session_id: Option<String>,
    pub(crate) resume: Option<String>,
    pub(crate) max_turns: Option<u32>,
    /// `--max-budget-usd`, as given (checked to be a positive number): the most this process
    /// may spend, not counting what the session spent before it.
    pub(crate) max_budget_usd: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) permission_mode: Option<String>,
    pub(crate) allowed_tools: Vec<String>,
    pub(crate) disallowed_tools: Vec<String>,
    pub(crate) append_system_prompt: Option<String>,
    pub(crate) dangerously_skip_permissions: bool,
    /// The positional arguments, joined by spaces: the prompt, when given on the command line.
    pub(crate) prompt: Option<String>,
}

impl Args {
    /// `--max-budget-usd` in dollars, when given.
    pub(crate) fn max_budget(&self) -> Option<f64> {
        self.max_budget_usd
            .as_deref()
            .and_then(|text| text.trim().parse().ok())
    }
}

/// A command line the real CLI would refuse; the text is what it prints on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

/// The permission modes the real CLI accepts (`default` is accepted though not listed).
const PERMISSION_MODES: [&str; 7] = [
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "manual",
    "dontAsk",
    "plan",
    "default",
];

/// Options that take one value, with the value's name as commander prints it.
const VALUE_OPTIONS: [(&str, &str); 8] = [
    ("--output-format", "<format>"),
    ("--session-id", "<uuid>"),
    ("--resume", "<value>"),
    ("--max-turns", "<turns>"),
    ("--max-budget-usd", "<amount>"),
    ("--model", "<model>"),
    ("--permission-mode", "<mode>"),
    ("--append-system-prompt", "<prompt>"),
];

/// Options that take every following argument that is not an option.
const LIST_OPTIONS: [&str; 4] = [
    "--allowedTools",
    "--allowed-tools",
    "--disallowedTools",
    "--disallowed-tools",
];

pub(crate) fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Args, UsageError> {
    let mut words = Words {
        argv: argv
            .into_iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect(),
        next: 0,
    };
    let mut args = Args::default();
    let mut positionals = Vec::new();
    while let Some(arg) = words.next() {
        if arg == "--" {
            positionals.extend(words.rest());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            positionals.push(arg);
            continue;
        }
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let name = match name {
            "-r" => "--resume",
            "-v" => "--version",
            "-h" => "--help",
            "--print" => "-p",
            other => other,
        };
        match name {
            "-p" => args.print = true,
            "--version" => args.version = true,
            "--help" => args.help = true,
            "--verbose" => args.verbose = true,
            "--dangerously-skip-permissions" => args.dangerously_skip_permissions = true,
            _ if LIST_OPTIONS.contains(&name) => {
                let values = words.list(inline_value);
                add_tools(&mut args, name, &values);
            }
            _ => {
                let Some((_, value_name)) = VALUE_OPTIONS.iter().find(|(known, _)| *known == name)
                else {
                    return Err(UsageError(format!("error: unknown option '{arg}'")));
                };
                let value = words.value(name, value_name, inline_value)?;
                set_value(&mut args, name, value_name, value)?;
            }
        }
    }
    if !positionals.is_empty() {
        args.prompt = Some(positionals.join(" "));
    }
    Ok(args)
}

/// The command line's words, read front to back.
struct Words {
    argv: Vec<String>,
    next: usize,
}

impl Words {
    fn next(&mut self) -> Option<String> {
        let word = self.argv.get(self.next).cloned();
        self.next += usize::from(word.is_some());
        word
    }

    /// Every word left.
    fn rest(&mut self) -> Vec<String> {
        let rest = self.argv[self.next..].to_vec();
        self.next = self.argv.len();
        rest
    }

    /// The values of a list option: the inline one, and every following word that is not an
    /// option (a prompt after them included, as the real parser takes it).
    fn list(&mut self, inline_value: Option<String>) -> Vec<String> {
        let mut values: Vec<String> = inline_value.into_iter().collect();
        while let Some(word) = self
            .argv
            .get(self.next)
            .filter(|word| !word.starts_with('-'))
        {
            values.push(word.clone());
            self.next += 1;
        }
        values
    }

    /// The value of an option that takes one: the inline one, else the next word.
    fn value(
        &mut self,
        name: &str,
        value_name: &str,
        inline_value: Option<String>,
    ) -> Result<String, UsageError> {
        inline_value.or_else(|| self.next()).ok_or_else(|| {
            UsageError(format!(
                "error: option '{name} {value_name}' argument missing"
            ))
        })
    }
}

/// Adds the tools a list option names (separated by commas or spaces).
fn add_tools(args: &mut Args, name: &str, values: &[String]) {
    let tools = values
        .iter()
        .flat_map(|value| value.split([',', ' ']))
        .filter(|tool| !tool.is_empty())
        .map(str::to_owned);
    if name.to_ascii_lowercase().starts_with("--allowed") {
        args.allowed_tools.extend(tools);
    } else {
        args.disallowed_tools.extend(tools);
    }
}

fn set_value(
    args: &mut Args,
    name: &str,
    value_name: &str,
    value: String,
) -> Result<(), UsageError> {
    let invalid = |value: &str, why: &str| {
        UsageError(format!(
            "error: option '{name} {value_name}' argument '{value}' is invalid. {why}"
        ))
    };
    match name {
        "--output-format" => {
            args.output_format = match value.as_str() {
                "text" => OutputFormat::Text,
                "json" => OutputFormat::Json,
                "stream-json" => OutputFormat::StreamJson,
                other => {
                    return Err(invalid(
                        other,
                        "Allowed choices are text, json, stream-json.",
                    ));
                }
            }
        }
        "--session-id" => args.session_id = Some(value),
        "--resume" => args.resume = Some(value),
        "--max-turns" => {
            args.max_turns = Some(
                value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(&value, "must be a number"))?,
            )
        }
        "--max-budget-usd" => {
            match value.trim().parse::<f64>() {
                Ok(amount) if amount > 0.0 && amount.is_finite() => {}
                _ => return Err(invalid(&value, "must be a positive number")),
            }
            args.max_budget_usd = Some(value);
        }
        "--model" => args.model = Some(value),
        "--permission-mode" => {
            if !PERMISSION_MODES.contains(&value.as_str()) {
                return Err(invalid(
                    &value,
                    "Allowed choices are acceptEdits, auto, bypassPermissions, manual, dontAsk, plan.",
                ));
            }
            args.permission_mode = Some(value);
        }
        "--append-system-prompt" => args.append_system_prompt = Some(value),
        _ => unreachable!("every name in VALUE_OPTIONS is handled"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Args, UsageError> {
        parse(line.split_whitespace().map(OsString::from))
    }

    #[test]
    fn parses_the_flags_baton_uses() {
        let args = parse_str(
            "-p --output-format stream-json --verbose --session-id S --max-turns 7 \
             --model m1 --permission-mode acceptEdits --allowedTools Read,Write Bash",
        )
        .unwrap();
        assert!(args.print && args.verbose);
        assert_eq!(args.output_format, OutputFormat::StreamJson);
        assert_eq!(args.session_id.as_deref(), Some("S"));
        assert_eq!(args.max_turns, Some(7));
        assert_eq!(args.model.as_deref(), Some("m1"));
        assert_eq!(args.permission_mode.as_deref(), Some("acceptEdits"));
        assert_eq!(args.allowed_tools, ["Read", "Write", "Bash"]);
        assert_eq!(args.prompt, None);
    }

    #[test]
    fn accepts_inline_values_short_names_and_a_positional_prompt() {
        let args =
            parse_str("--print --output-format=json -r R --max-turns=2 hello there").unwrap();
        assert!(args.print);
        assert_eq!(args.output_format, OutputFormat::Json);
        assert_eq!(args.resume.as_deref(), Some("R"));
        assert_eq!(args.max_turns, Some(2));
        assert_eq!(args.prompt.as_deref(), Some("hello there"));
        assert_eq!(
            parse_str("-p -- --not-an-option")
                .unwrap()
                .prompt
                .as_deref(),
            Some("--not-an-option")
        );
    }

    #[test]
    fn a_tool_list_swallows_a_following_prompt_like_the_real_parser() {
        let args = parse_str("-p --allowedTools Read Write hi").unwrap();
        assert_eq!(args.allowed_tools, ["Read", "Write", "hi"]);
        assert_eq!(args.prompt, None);
    }

    #[test]
    fn refuses_with_the_real_texts() {
        let cases = [
            ("-p --bogus-flag hi", "error: unknown option '--bogus-flag'"),
            (
                "-p --output-format xml hi",
                "error: option '--output-format <format>' argument 'xml' is invalid. Allowed choices are text, json, stream-json.",
            ),
            (
                "-p --max-turns abc",
                "error: option '--max-turns <turns>' argument 'abc' is invalid. must be a number",
            ),
            (
                "-p --permission-mode yolo hi",
                "error: option '--permission-mode <mode>' argument 'yolo' is invalid. Allowed choices are acceptEdits, auto, bypassPermissions, manual, dontAsk, plan.",
            ),
            (
                "-p --model",
                "error: option '--model <model>' argument missing",
            ),
        ];
        for (line, text) in cases {
            assert_eq!(parse_str(line), Err(UsageError(text.to_owned())), "{line}");
        }
        assert!(parse_str("-p --permission-mode default x").is_ok());
    }
}
