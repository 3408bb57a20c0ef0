//! The values a key takes: each kind's type and allowed range, how a value is read from the
//! configuration file and from an environment variable, and how it is written back and shown.
//!
//! Durations have one grammar everywhere, humantime's: `90s`, `30m`, `1h 30m`, `500ms`, `2days`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::time::Duration;

use session_store::{Cost, PostgresUrl};
use toml::Spanned;
use toml::de::{DeInteger, DeValue};

use super::{DefaultValue, Definition};

/// The type of a key's value, with its allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number from `min` to `max`; `unit` says what it counts, in messages.
    Count {
        min: u64,
        max: u64,
        unit: &'static str,
    },
    /// A share of something (`of`): above 0 and at most 1.
    Share { of: &'static str },
    /// An amount of US dollars above zero, such as `2.50`, kept exactly (to the nano-dollar).
    Money,
    /// A duration longer than zero.
    Duration,
    /// One of these words.
    Word(&'static [&'static str]),
    /// Text that is not empty.
    Text,
    /// A PostgreSQL URL without a password, which has no place in a file.
    LedgerUrl,
    /// A path, or a program's name.
    Path,
    /// A list of texts, none empty.
    List,
    /// Environment variables: a table of `NAME = "value"`.
    Variables,
}

/// A key's value, valid for its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Count(u64),
    Share(f64),
    Money(Cost),
    Duration(Duration),
    Word(&'static str),
    Text(String),
    Path(PathBuf),
    List(Vec<String>),
    Variables(BTreeMap<String, String>),
}

/// Why a value was refused: `found` names it (`100000`, `` `soon` ``) and `says` finishes
/// the sentence (`is too large: at most 64 tasks run at once`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub found: String,
    pub says: String,
    /// Where in the file, when narrower than the whole value (an item of a list).
    pub span: Option<Range<usize>>,
}

/// Reads a value as written in the configuration file.
pub fn from_toml(key: &Definition, value: &Spanned<DeValue<'_>>) -> Result<Value, Problem> {
    match (key.kind, value.get_ref()) {
        (Kind::Count { min, max, unit }, DeValue::Integer(integer)) => count(
            integer_of(integer)?,
            min..=max,
            unit,
            key.sources.flag_name(),
        ),
        (Kind::Share { .. }, DeValue::Integer(integer)) => {
            let number = integer_of(integer)?;
            share(key, number as f64, &number.to_string())
        }
        (Kind::Share { .. }, DeValue::Float(float)) => match float.as_str().parse::<f64>() {
            Ok(number) => share(key, number, float.as_str()),
            Err(_) => Err(Problem::new(float.as_str(), "is not a number")),
        },
        (Kind::Money, DeValue::Integer(integer)) => money(integer.as_str()),
        (Kind::Money, DeValue::Float(float)) => money(float.as_str()),
        (
            Kind::Money
            | Kind::Duration
            | Kind::Word(_)
            | Kind::Text
            | Kind::LedgerUrl
            | Kind::Path,
            DeValue::String(text),
        ) => {
            if text.trim().is_empty() {
                return Err(Problem::new(
                    "the value",
                    "is empty; remove the line to use the default",
                ));
            }
            from_text(key, text)
        }
        (Kind::List, DeValue::Array(items)) => list(items),
        (Kind::Variables, DeValue::Table(table)) => {
            let mut variables = BTreeMap::new();
            for (name, value) in table {
                match value.get_ref() {
                    DeValue::String(text) => {
                        variables.insert(name.get_ref().to_string(), text.to_string());
                    }
                    other => {
                        return Err(Problem::new(
                            format!("`{}`", name.get_ref()),
                            format!(
                                "is {}, not text: write its value in quotes",
                                described(other)
                            ),
                        )
                        .at(value.span()));
                    }
                }
            }
            Ok(Value::Variables(variables))
        }
        (kind, other) => Err(Problem::new(
            described(other),
            format!("is not {}", kind.expected()),
        )),
    }
}

/// A PostgreSQL URL, refused when it holds a password: the key lives in a file that is
/// shared and kept, and the password belongs in `PGPASSWORD` or `~/.pgpass`. What is refused
/// is named without the password.
fn ledger_url(text: &str) -> Result<Value, Problem> {
    let shown = || format!("`{}`", PostgresUrl::text_without_password(text));
    if !PostgresUrl::looks_like(text) {
        return Err(Problem::new(
            shown(),
            "is not a PostgreSQL URL, such as \"postgres://baton@db.internal/baton\"",
        ));
    }
    match PostgresUrl::parse(text) {
        Ok(url) if url.has_password() => Err(Problem::new(
            shown(),
            "holds a password, which must not be kept in this file: remove it, and set \
             PGPASSWORD or add a line to ~/.pgpass",
        )),
        Ok(_) => Ok(Value::Text(text.to_owned())),
        Err(error) => Err(Problem::new(
            shown(),
            format!("is not a valid URL: {error}"),
        )),
    }
}

/// Reads a value written as text: an environment variable, or a string in the file.
pub fn from_text(key: &Definition, text: &str) -> Result<Value, Problem> {
    let quoted = || format!("`{text}`");
    match key.kind {
        Kind::Count { min, max, unit } => match text.trim().parse::<i64>() {
            Ok(number) => count(number, min..=max, unit, key.sources.flag_name()),
            Err(_) => Err(Problem::new(quoted(), "is not a whole number")),
        },
        Kind::Share { .. } => match text.trim().parse::<f64>() {
            Ok(number) => share(key, number, text.trim()),
            Err(_) => Err(Problem::new(quoted(), "is not a number")),
        },
        Kind::Money => money(text),
        Kind::Duration => match humantime::parse_duration(text.trim()) {
            Ok(duration) if duration.is_zero() => Err(Problem::new(
                quoted(),
                "is zero: it must be longer than zero",
            )),
            Ok(duration) => Ok(Value::Duration(duration)),
            Err(error) => Err(Problem::new(
                quoted(),
                format!("is not a duration: {error}"),
            )),
        },
        Kind::Word(words) => match words.iter().find(|word| **word == text) {
            Some(word) => Ok(Value::Word(word)),
            None => Err(Problem::new(
                quoted(),
                format!("is not {}", key.kind.expected()),
            )),
        },
        Kind::Text if text.trim().is_empty() => Err(Problem::new("the value", "is empty")),
        Kind::Text => Ok(Value::Text(text.to_owned())),
        Kind::LedgerUrl => ledger_url(text),
        Kind::Path => Ok(Value::Path(PathBuf::from(text))),
        Kind::List => list_of_text(text),
        Kind::Variables => Err(Problem::new(
            quoted(),
            "cannot be read from text: variables are set in the file's table",
        )),
    }
}

/// Reads a value from an environment variable: a path keeps its bytes as they are.
pub fn from_os(key: &Definition, text: &OsStr) -> Result<Value, Problem> {
    match key.kind {
        Kind::Path => Ok(Value::Path(PathBuf::from(text))),
        _ => from_text(key, &text.to_string_lossy()),
    }
}

impl Kind {
    /// What a value of this kind is, to finish "… is not": `a whole number from 1 to 64`.
    pub fn expected(self) -> String {
        match self {
            Kind::Count { min, max, .. } if max >= u64::from(u32::MAX) => {
                format!("a whole number of at least {min}")
            }
            Kind::Count { min, max, .. } => format!("a whole number from {min} to {max}"),
            Kind::Share { .. } => String::from("a number above 0 and at most 1"),
            Kind::Money => String::from("an amount of dollars above 0, such as 2.50"),
            Kind::Duration => String::from("a duration such as 30s or 2m"),
            Kind::Word(words) => format!("one of {}", quoted_words(words)),
            Kind::Text => String::from("text in quotes"),
            Kind::LedgerUrl => String::from("a PostgreSQL URL in quotes"),
            Kind::Path => String::from("a path in quotes"),
            Kind::List => String::from("a list of texts, such as [\"Read\", \"Edit\"]"),
            Kind::Variables => String::from("a table of NAME = \"value\" lines"),
        }
    }
}

impl Value {
    /// The value as the configuration file writes it: `50`, `"30m"`, `["Read"]`.
    pub fn to_toml(&self) -> String {
        let string = |text: &str| toml::Value::String(text.to_owned()).to_string();
        match self {
            Value::Count(count) => count.to_string(),
            Value::Share(share) => share.to_string(),
            Value::Money(cost) => money_text(*cost),
            Value::Duration(duration) => string(&humantime::format_duration(*duration).to_string()),
            Value::Word(word) => string(word),
            Value::Text(text) => string(text),
            Value::Path(path) => string(&path.to_string_lossy()),
            Value::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|item| string(item))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Variables(variables) => variables
                .iter()
                .map(|(name, value)| format!("{name} = {}", string(value)))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The value in `--json` output. Variables show their names only: their values may be
    /// secrets.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Count(count) => json!(count),
            Value::Share(share) => json!(share),
            Value::Money(cost) => json!(cost.as_usd()),
            Value::Duration(duration) => json!(humantime::format_duration(*duration).to_string()),
            Value::Word(word) => json!(word),
            Value::Text(text) => json!(text),
            Value::Path(path) => json!(path.to_string_lossy()),
            Value::List(items) => json!(items),
            Value::Variables(variables) => json!(variables.keys().collect::<Vec<_>>()),
        }
    }
}

/// Shows a value to a person; variables by their names only (their values may be secrets).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Count(count) => write!(f, "{count}"),
            Value::Share(share) => write!(f, "{share}"),
            Value::Money(cost) => f.write_str(&money_text(*cost)),
            Value::Duration(duration) => write!(f, "{}", humantime::format_duration(*duration)),
            Value::Word(word) => f.write_str(word),
            Value::Text(text) => f.write_str(text),
            Value::Path(path) => write!(f, "{}", path.display()),
            Value::List(items) => f.write_str(&items.join(", ")),
            Value::Variables(variables) => {
                f.write_str(&variables.keys().cloned().collect::<Vec<_>>().join(", "))
            }
        }
    }
}

impl Problem {
    fn new(found: impl Into<String>, says: impl Into<String>) -> Problem {
        Problem {
            found: found.into(),
            says: says.into(),
            span: None,
        }
    }

    fn at(mut self, span: Range<usize>) -> Problem {
        self.span = Some(span);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.found, self.says)
    }
}

/// Reads an amount of dollars exactly: digits, optionally a point and up to nine more (a
/// nano-dollar is the ledger's unit), optionally after a `$`. Above zero: a budget of nothing
/// is a mistake, and a negative, `NaN` or `inf` one is not an amount.
pub fn money(text: &str) -> Result<Value, Problem> {
    let quoted = || format!("`{text}`");
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix('$').unwrap_or(trimmed);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let is_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty()
        || !is_digits(whole)
        || !is_digits(fraction)
        || digits.is_empty()
    {
        let says = if digits.starts_with('-') {
            "is negative: an amount must be above 0"
        } else {
            "is not an amount of dollars such as 2.50"
        };
        return Err(Problem::new(quoted(), says));
    }
    if fraction.len() > 9 {
        return Err(Problem::new(
            quoted(),
            "has more than nine decimals: the ledger counts nano-dollars",
        ));
    }
    let nano = (|| {
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let fraction: i64 = format!("{fraction:0<9}").parse().ok()?;
        whole.checked_mul(1_000_000_000)?.checked_add(fraction)
    })();
    match nano {
        None => Err(Problem::new(quoted(), "is too large")),
        Some(0) => Err(Problem::new(quoted(), "is zero: an amount must be above 0")),
        Some(nano) => Ok(Value::Money(Cost::from_nano_usd(nano))),
    }
}

/// An amount as the file writes it and people read it: `2.5`, `0.05`.
fn money_text(cost: Cost) -> String {
    let nano = cost.as_nano_usd();
    let text = format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000);
    let text = text.trim_end_matches('0');
    let text = text.strip_suffix('.').unwrap_or(text);
    text.to_owned()
}

fn integer_of(integer: &DeInteger<'_>) -> Result<i64, Problem> {
    i64::from_str_radix(integer.as_str(), integer.radix())
        .map_err(|_| Problem::new(integer.to_string(), "is too large"))
}

/// `number` when it is within `range`; `flag` is the flag that sets the same key.
fn count(
    number: i64,
    range: RangeInclusive<u64>,
    unit: &str,
    flag: Option<&str>,
) -> Result<Value, Problem> {
    let (min, max) = (*range.start(), *range.end());
    if number < 0 || (number as u64) < min {
        return Err(Problem::new(
            number.to_string(),
            format!("is too small: it must be at least {min}"),
        ));
    }
    if number as u64 > max {
        // A key that a flag sets too has the flag's limit: say so, so nobody hunts for a
        // larger value that one of them would take.
        let limit = flag
            .map(|flag| format!(" (the limit of {flag} too)"))
            .unwrap_or_default();
        return Err(Problem::new(
            number.to_string(),
            format!("is too large: at most {max} {unit}{limit}"),
        ));
    }
    Ok(Value::Count(number as u64))
}

fn share(key: &Definition, number: f64, written: &str) -> Result<Value, Problem> {
    if number > 0.0 && number <= 1.0 {
        return Ok(Value::Share(number));
    }
    let example = match (key.kind, key.default) {
        (Kind::Share { of }, DefaultValue::Share(default)) => {
            // Rounded to a hundredth of a percent: 0.7 * 100.0 is 70.00000000000001.
            let percent = (default * 10_000.0).round() / 100.0;
            format!(" ({default} means {percent}% of {of})")
        }
        _ => String::new(),
    };
    Err(Problem::new(
        written,
        format!("is out of range: it must be above 0 and at most 1{example}"),
    ))
}

fn list(items: &[Spanned<DeValue<'_>>]) -> Result<Value, Problem> {
    let mut texts = Vec::new();
    for (number, item) in items.iter().enumerate() {
        let number = number + 1;
        match item.get_ref() {
            DeValue::String(text) if text.trim().is_empty() => {
                return Err(Problem::new(
                    format!("item {number}"),
                    "is empty; remove it, or the line to use the default",
                )
                .at(item.span()));
            }
            DeValue::String(text) => texts.push(text.to_string()),
            other => {
                return Err(Problem::new(
                    format!("item {number}"),
                    format!("is {}, not text: write it in quotes", described(other)),
                )
                .at(item.span()));
            }
        }
    }
    Ok(Value::List(texts))
}

fn list_of_text(text: &str) -> Result<Value, Problem> {
    let items: Vec<String> = text.split(',').map(|item| item.trim().to_owned()).collect();
    if items.iter().any(String::is_empty) {
        return Err(Problem::new(
            format!("`{text}`"),
            "has an empty item: separate the items with single commas",
        ));
    }
    Ok(Value::List(items))
}

/// A TOML value as a person would name it: `the string "four"`, `a list`.
fn described(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(text) => format!("the string `{text}`"),
        DeValue::Integer(integer) => format!("the number {integer}"),
        DeValue::Float(float) => format!("the number {float}"),
        DeValue::Boolean(boolean) => format!("`{boolean}`"),
        DeValue::Datetime(datetime) => format!("the date {datetime}"),
        DeValue::Array(_) => String::from("a list"),
        DeValue::Table(_) => String::from("a table"),
    }
}

fn quoted_words(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|word| format!("\"{word}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}
