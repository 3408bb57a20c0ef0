//! Keeping secrets out of the ledger: a [`Redactor`] knows the values of secret-looking
//! environment variables (and any value it is given) and the shapes of well-known tokens, and
//! replaces both in text with `[redacted NAME]` or `[redacted]`.
//!
//! The store runs every free-text value it writes through its redactor (see
//! [`StoreOptions`](crate::StoreOptions)), so a key that shows up in a prompt, an agent's
//! answer, a check's output or an error message never reaches the database file. Callers that
//! show or forward text of their own (a terminal, the next prompt) use the same redactor.
//!
//! What counts as a secret:
//!
//! - the value of an environment variable whose name has a word from [`SECRET_NAME_PARTS`]
//!   (`ANTHROPIC_API_KEY`, `GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`, …), and any value added
//!   with [`Redactor::add`]; values shorter than [`MIN_SECRET_LEN`] bytes are ignored, so that
//!   `FOO_KEY=1` does not redact every `1`;
//! - text shaped like a well-known token, whatever its source (see [`TOKEN_SHAPES`]).
//!
//! Redaction is a plain substring search per known value plus one pass of one compiled regex,
//! so it stays linear in the text: a multi-megabyte check output costs milliseconds.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::Value;

/// Words of a variable name (split at `_`, `-` and `.`) that mark its value as secret,
/// matched case-insensitively: a word that is one of these, or ends with one of the first
/// four (`APIKEY`, `PGPASSWORD`). Whole words, so that `GIT_AUTHOR_NAME` is not a secret.
pub const SECRET_NAME_PARTS: [&str; 8] = [
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
];

/// Plural and short forms of [`SECRET_NAME_PARTS`] that also count as whole words.
const SECRET_NAME_FORMS: [&str; 7] = [
    "KEYS",
    "TOKENS",
    "SECRETS",
    "PASSWORDS",
    "CREDENTIALS",
    "CREDS",
    "PASS",
];

/// Well-known variables whose names contain a secret-looking part but whose values are paths,
/// not secrets.
const NOT_SECRET_NAMES: [&str; 3] = ["SSH_AUTH_SOCK", "XAUTHORITY", "GNOME_KEYRING_CONTROL"];

/// Values shorter than this many bytes are never treated as secrets.
pub const MIN_SECRET_LEN: usize = 8;

/// The well-known token shapes, as (what it is, regex). Each pattern starts at a word
/// boundary; the list is kept small on purpose, since every entry can also match text that
/// only looks like a token.
pub const TOKEN_SHAPES: [(&str, &str); 9] = [
    ("an Anthropic API key", r"sk-ant-[A-Za-z0-9_\-]{20,}"),
    ("an OpenAI-style API key", r"sk-[A-Za-z0-9_\-]{32,}"),
    ("a GitHub token", r"gh[pousr]_[A-Za-z0-9]{30,}"),
    ("a GitHub token", r"github_pat_[A-Za-z0-9_]{22,}"),
    ("a Slack token", r"xox[abprs]-[A-Za-z0-9\-]{10,}"),
    ("an AWS access key id", r"AKIA[0-9A-Z]{16}"),
    ("a GitLab token", r"glpat-[A-Za-z0-9_\-]{20,}"),
    ("a Google API key", r"AIza[0-9A-Za-z_\-]{35}"),
    // Only the token after `Bearer ` is redacted; see `token_spans`.
    (
        "a bearer token",
        r"(?i:bearer)[ \t]+[A-Za-z0-9._~+/\-]{16,}=*",
    ),
];

/// Knows which values are secret, and takes them out of text.
///
/// Cheap to clone: clones share the list of values until one of them is changed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// The known secret values, longest first, so that a value that contains another one is
    /// labelled with its own name.
    values: Arc<Vec<KnownValue>>,
}

#[derive(Clone, PartialEq, Eq)]
struct KnownValue {
    value: String,
    /// The variable it came from, which labels it: `[redacted NAME]`.
    name: String,
}

/// A secret found in text, as [`Redactor::find`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// The value of this variable.
    Value { name: &'a str },
    /// Text shaped like a well-known token, such as "a GitHub token".
    Token { kind: &'static str },
}

/// One stretch of text to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    /// The index of the known value, or `None` for a token shape.
    value: Option<usize>,
}

/// Every token shape in one regex, for a single pass over the text.
static ANY_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = TOKEN_SHAPES
        .iter()
        .map(|(_, pattern)| format!("(?:{pattern})"))
        .collect();
    // An ASCII word boundary: `task-…` holds no `sk-` token, and the Unicode-aware boundary
    // would make the regex engine slower on non-ASCII text for no gain.
    Regex::new(&format!(r"(?-u:\b)(?:{})", alternatives.join("|")))
        .expect("invariant: the token shapes are valid regexes")
});

/// Each token shape on its own, anchored, to say which one matched.
static EACH_TOKEN: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    TOKEN_SHAPES
        .iter()
        .map(|(kind, pattern)| {
            let regex = Regex::new(&format!("^(?:{pattern})$"))
                .expect("invariant: the token shapes are valid regexes");
            (*kind, regex)
        })
        .collect()
});

impl Redactor {
    /// A redactor that knows no values, only the token shapes.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// A redactor that knows the secret-looking variables of this process's environment.
    pub fn from_env() -> Redactor {
        Redactor::from_vars(std::env::vars_os())
    }

    /// A redactor that knows the values of the variables in `vars` whose names look secret
    /// (see [`Redactor::is_secret_name`]). Names or values that are not UTF-8 are skipped:
    /// they cannot appear in the text the ledger holds.
    pub fn from_vars<N, V>(vars: impl IntoIterator<Item = (N, V)>) -> Redactor
    where
        N: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut redactor = Redactor::new();
        for (name, value) in vars {
            if let (Some(name), Some(value)) = (name.as_ref().to_str(), value.as_ref().to_str())
                && Redactor::is_secret_name(name)
            {
                redactor.add(name, value);
            }
        }
        redactor
    }

    /// Whether a variable's name says its value is a secret: one of its words is one of
    /// [`SECRET_NAME_PARTS`] (or ends with `KEY`, `TOKEN`, `SECRET` or `PASSWORD`), ignoring
    /// case, and it is not a well-known path variable such as `SSH_AUTH_SOCK`.
    pub fn is_secret_name(name: &str) -> bool {
        let upper = name.to_ascii_uppercase();
        !NOT_SECRET_NAMES.contains(&upper.as_str())
            && upper.split(['_', '-', '.']).any(|word| {
                SECRET_NAME_PARTS.contains(&word)
                    || SECRET_NAME_FORMS.contains(&word)
                    || SECRET_NAME_PARTS[..4]
                        .iter()
                        .any(|part| word.ends_with(part))
            })
    }

    /// Treats `value` as a secret, labelled with `name`, whatever the name looks like.
    /// Surrounding whitespace is ignored. Returns whether it was added: a value shorter than
    /// [`MIN_SECRET_LEN`] is not, and a value known already keeps its first name.
    pub fn add(&mut self, name: &str, value: &str) -> bool {
        let value = value.trim();
        if value.len() < MIN_SECRET_LEN || self.values.iter().any(|known| known.value == value) {
            return false;
        }
        let values = Arc::make_mut(&mut self.values);
        values.push(KnownValue {
            value: value.to_owned(),
            name: name.to_owned(),
        });
        // Longest first; a stable sort keeps the order values were added in among equals.
        values.sort_by_key(|known| std::cmp::Reverse(known.value.len()));
        true
    }

    /// The names of the variables whose values it knows, longest value first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|known| known.name.as_str())
    }

    /// A secret in `text`, when there is one: a known value (the longest, when several are
    /// there) before a token shape.
    pub fn find(&self, text: &str) -> Option<Found<'_>> {
        if let Some(known) = self.values.iter().find(|known| text.contains(&known.value)) {
            return Some(Found::Value { name: &known.name });
        }
        // The whole match, `Bearer` included, says which shape it is.
        let matched = ANY_TOKEN.find(text)?.as_str();
        let kind = EACH_TOKEN
            .iter()
            .find(|(_, regex)| regex.is_match(matched))
            .map_or("a token", |(kind, _)| *kind);
        Some(Found::Token { kind })
    }

    /// `text` with every secret in it replaced: a known value by `[redacted NAME]`, a token
    /// by `[redacted]`. Overlapping secrets become one replacement, labelled by the one that
    /// starts first (the longest, among those that start together).
    ///
    /// A known value cut off at the very start or end of `text` (the text is the tail of some
    /// output, or was truncated) is replaced too, when at least [`MIN_SECRET_LEN`] bytes of it
    /// are there.
    ///
    /// Borrows `text` back when there is nothing to replace.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let spans = self.spans(text);
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for span in spans {
            out.push_str(&text[at..span.start]);
            match span.value {
                Some(index) => {
                    out.push_str("[redacted ");
                    out.push_str(&self.values[index].name);
                    out.push(']');
                }
                None => out.push_str("[redacted]"),
            }
            at = span.end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Redacts `text` in place, keeping its allocation when there is nothing to replace.
    /// Returns whether anything changed.
    pub fn redact_in_place(&self, text: &mut String) -> bool {
        match self.redact(text) {
            Cow::Borrowed(_) => false,
            Cow::Owned(redacted) => {
                *text = redacted;
                true
            }
        }
    }

    /// [`Redactor::redact`] for an optional text.
    pub fn redact_option<'t>(&self, text: Option<&'t str>) -> Option<Cow<'t, str>> {
        text.map(|text| self.redact(text))
    }

    /// Redacts every string (and object key) inside a JSON value, in place. Returns whether
    /// anything changed.
    pub fn redact_json(&self, value: &mut Value) -> bool {
        match value {
            Value::String(text) => self.redact_in_place(text),
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.redact_json(item) | changed),
            Value::Object(map) => {
                let mut changed = false;
                if map.keys().any(|key| self.has_secret(key)) {
                    let entries = std::mem::take(map);
                    for (key, value) in entries {
                        map.insert(self.redact(&key).into_owned(), value);
                    }
                    changed = true;
                }
                map.values_mut()
                    .fold(changed, |changed, item| self.redact_json(item) | changed)
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }

    /// Redacts text that may be JSON: a JSON document has its strings redacted (so a secret
    /// written with JSON escapes is found too, and the result stays JSON), anything else is
    /// redacted as plain text.
    pub fn redact_json_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        // Without a backslash the JSON text holds every string verbatim, so a plain search
        // that finds nothing proves there is nothing to do.
        if !text.contains('\\') && !self.has_secret(text) {
            return Cow::Borrowed(text);
        }
        match serde_json::from_str::<Value>(text) {
            Ok(mut value) => {
                if self.redact_json(&mut value) {
                    Cow::Owned(value.to_string())
                } else {
                    Cow::Borrowed(text)
                }
            }
            Err(_) => self.redact(text),
        }
    }

    /// Whether `redact` would change `text`.
    fn has_secret(&self, text: &str) -> bool {
        !self.spans(text).is_empty()
    }

    /// The stretches of `text` to replace, in order, without overlaps.
    fn spans(&self, text: &str) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        for (index, known) in self.values.iter().enumerate() {
            let value = known.value.as_str();
            spans.extend(text.match_indices(value).map(|(start, matched)| Span {
                start,
                end: start + matched.len(),
                value: Some(index),
            }));
            if let Some(end) = cut_at_start(text, value) {
                spans.push(Span {
                    start: 0,
                    end,
                    value: Some(index),
                });
            }
            if let Some(start) = cut_at_end(text, value) {
                spans.push(Span {
                    start,
                    end: text.len(),
                    value: Some(index),
                });
            }
        }
        spans.extend(token_spans(text));
        if spans.len() < 2 {
            return spans;
        }
        // Earliest first; among spans that start together the longest, then a known value
        // (whose name says more) before a token shape.
        spans.sort_by_key(|span| {
            (
                span.start,
                std::cmp::Reverse(span.end),
                span.value.unwrap_or(usize::MAX),
            )
        });
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(last) if span.start < last.end => last.end = last.end.max(span.end),
                _ => merged.push(span),
            }
        }
        merged
    }
}

/// Where the token shapes match in `text`. For a bearer token only the token is a span, not
/// the word `Bearer`, so that redacted text still says what it was.
fn token_spans(text: &str) -> impl Iterator<Item = Span> + '_ {
    ANY_TOKEN.find_iter(text).map(|matched| {
        let found = matched.as_str();
        let skip = if found
            .get(..6)
            .is_some_and(|word| word.eq_ignore_ascii_case("bearer"))
        {
            found[6..]
                .find(|c: char| c != ' ' && c != '\t')
                .map_or(0, |offset| 6 + offset)
        } else {
            0
        };
        Span {
            start: matched.start() + skip,
            end: matched.end(),
            value: None,
        }
    })
}

/// The end of the longest proper tail of `value`, at least [`MIN_SECRET_LEN`] bytes, that
/// `text` starts with: what is left of a secret cut off by the start of the text.
fn cut_at_start(text: &str, value: &str) -> Option<usize> {
    (MIN_SECRET_LEN..value.len())
        .rev()
        .map(|length| value.len() - length)
        .filter(|&from| value.is_char_boundary(from))
        .find(|&from| text.starts_with(&value[from..]))
        .map(|from| value.len() - from)
}

/// The start of the longest proper head of `value`, at least [`MIN_SECRET_LEN`] bytes, that
/// `text` ends with: what is left of a secret cut off by the end of the text.
fn cut_at_end(text: &str, value: &str) -> Option<usize> {
    (MIN_SECRET_LEN..value.len())
        .rev()
        .filter(|&length| value.is_char_boundary(length))
        .find(|&length| text.ends_with(&value[..length]))
        .map(|length| text.len() - length)
}

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Value { name } => write!(f, "the value of {name}"),
            Found::Token { kind } => write!(f, "what looks like {kind}"),
        }
    }
}

/// Names only: a redactor's values are the secrets it keeps out of logs.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("values_of", &self.names().collect::<Vec<_>>())
            .field("token_shapes", &TOKEN_SHAPES.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE_ANTHROPIC: &str = "sk-ant-api03-FAKEFAKEFAKEFAKEFAKEFAKEFAKE-0123456789abcdef";
    const FAKE_GITHUB: &str = "ghp_FAKE0123456789abcdefghijklmnopqrstu";

    fn with(vars: &[(&str, &str)]) -> Redactor {
        Redactor::from_vars(vars.iter().copied())
    }

    #[test]
    fn secret_names_are_recognised_whatever_their_case() {
        for name in [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "db_password",
            "MYSQL_PASSWD",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "private_thing",
            "OPENAI_APIKEY",
            "PGPASSWORD",
            "NPM_AUTH-TOKEN",
        ] {
            assert!(Redactor::is_secret_name(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "RUST_LOG",
            "SSH_AUTH_SOCK",
            "xauthority",
            "GIT_AUTHOR_NAME",
            "GIT_AUTHOR_EMAIL",
            "KEYBOARD_LAYOUT",
            "PASSAGE_DIR",
        ] {
            assert!(!Redactor::is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn values_of_secret_variables_are_replaced_by_their_name() {
        let redactor = with(&[
            ("ANTHROPIC_API_KEY", FAKE_ANTHROPIC),
            ("HOME", "/home/someone"),
        ]);
        let text = format!("key={FAKE_ANTHROPIC} home=/home/someone");
        assert_eq!(
            redactor.redact(&text),
            "key=[redacted ANTHROPIC_API_KEY] home=/home/someone"
        );
        assert_eq!(
            redactor.find(&text),
            Some(Found::Value {
                name: "ANTHROPIC_API_KEY"
            })
        );
        assert_eq!(
            redactor.find(&text).unwrap().to_string(),
            "the value of ANTHROPIC_API_KEY"
        );
    }

    #[test]
    fn short_values_are_ignored() {
        let redactor = with(&[("FOO_KEY", "1"), ("BAR_TOKEN", "seven77")]);
        assert_eq!(redactor.names().count(), 0);
        let text = "1 seven77 11";
        assert!(matches!(redactor.redact(text), Cow::Borrowed(_)));
        assert_eq!(redactor.find(text), None);
    }

    #[test]
    fn every_occurrence_is_replaced() {
        let redactor = with(&[("MY_SECRET", "hunter2hunter2")]);
        assert_eq!(
            redactor.redact("hunter2hunter2 and hunter2hunter2, hunter2hunter2"),
            "[redacted MY_SECRET] and [redacted MY_SECRET], [redacted MY_SECRET]"
        );
    }

    #[test]
    fn the_longer_of_overlapping_values_wins() {
        // One value inside another: the longer is labelled with its own name.
        let redactor = with(&[
            ("SHORT_TOKEN", "abcdefgh"),
            ("LONG_TOKEN", "abcdefgh-12345678"),
        ]);
        assert_eq!(
            redactor.redact("x abcdefgh-12345678 y abcdefgh z"),
            "x [redacted LONG_TOKEN] y [redacted SHORT_TOKEN] z"
        );
        // Two values that overlap without one containing the other: nothing of either is left.
        let redactor = with(&[("ONE_KEY", "aaaa1111bbbb"), ("TWO_KEY", "bbbb2222cccc")]);
        assert_eq!(
            redactor.redact("<aaaa1111bbbb2222cccc>"),
            "<[redacted ONE_KEY]>"
        );
    }

    #[test]
    fn token_shapes_are_replaced_whatever_their_source() {
        let redactor = Redactor::new();
        let cases = [
            (FAKE_ANTHROPIC, "an Anthropic API key"),
            (
                "sk-proj-FAKEfake0123456789FAKEfake0123456789",
                "an OpenAI-style API key",
            ),
            (FAKE_GITHUB, "a GitHub token"),
            (
                "github_pat_FAKE0123456789_abcdefghijklmnop",
                "a GitHub token",
            ),
            ("xoxb-0123456789-FAKEFAKE", "a Slack token"),
            ("AKIAFAKEFAKEFAKE0123", "an AWS access key id"),
            ("glpat-FAKEfake0123456789ab", "a GitLab token"),
            (
                "AIzaFAKEfake0123456789FAKEfake012345678",
                "a Google API key",
            ),
        ];
        for (token, kind) in cases {
            let text = format!("use {token} please");
            assert_eq!(redactor.redact(&text), "use [redacted] please", "{token}");
            assert_eq!(redactor.find(&text), Some(Found::Token { kind }), "{token}");
        }
        let header = "Authorization: Bearer eyJFAKE.fake0123456789.sig";
        assert_eq!(redactor.redact(header), "Authorization: Bearer [redacted]");
        assert_eq!(
            redactor.find(header),
            Some(Found::Token {
                kind: "a bearer token"
            })
        );
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let redactor = Redactor::new();
        for text in [
            "the task-runner-with-a-very-long-hyphenated-name-indeed ran",
            "sk-short",
            "a bearer of news",
            "AKIA is a prefix",
            "grep -q hello hello.txt",
        ] {
            assert!(
                matches!(redactor.redact(text), Cow::Borrowed(_)),
                "{text} was redacted: {}",
                redactor.redact(text)
            );
            assert_eq!(redactor.find(text), None, "{text}");
        }
    }

    #[test]
    fn a_value_cut_off_at_either_end_of_the_text_is_replaced() {
        let redactor = with(&[("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)]);
        let tail = &FAKE_ANTHROPIC[10..];
        assert_eq!(
            redactor.redact(&format!("{tail}\nmore output")),
            "[redacted ANTHROPIC_API_KEY]\nmore output"
        );
        let head = &FAKE_ANTHROPIC[..12];
        assert_eq!(
            redactor.redact(&format!("output\n{head}")),
            "output\n[redacted ANTHROPIC_API_KEY]"
        );
        // Fewer bytes than a secret's minimum are not a secret.
        let scrap = &FAKE_ANTHROPIC[FAKE_ANTHROPIC.len() - 5..];
        assert!(matches!(
            redactor.redact(&format!("{scrap} x")),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn multi_megabyte_text_is_redacted_throughout() {
        let redactor = with(&[("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)]);
        let filler = "compiling crate foo v1.2.3 (/src/foo) ... ok\n".repeat(100_000);
        let text = format!("{FAKE_ANTHROPIC}\n{filler}{FAKE_GITHUB}\n{filler}{FAKE_ANTHROPIC}");
        assert!(text.len() > 8_000_000);
        let redacted = redactor.redact(&text);
        assert!(!redacted.contains(FAKE_ANTHROPIC));
        assert!(!redacted.contains(FAKE_GITHUB));
        assert_eq!(redacted.matches("[redacted ANTHROPIC_API_KEY]").count(), 2);
        assert_eq!(redacted.matches("[redacted]").count(), 1);
        assert_eq!(
            redacted.len(),
            text.len() - 2 * FAKE_ANTHROPIC.len() - FAKE_GITHUB.len() + 2 * 28 + 10
        );
        // Nothing to do costs no copy.
        assert!(matches!(redactor.redact(&filler), Cow::Borrowed(_)));
    }

    #[test]
    fn json_strings_and_keys_are_redacted_even_when_escaped() {
        let mut redactor = Redactor::new();
        assert!(redactor.add("WEIRD_TOKEN", "quote\"d-secret-value"));
        let text = serde_json::json!({
            "reason": "printed quote\"d-secret-value and ghp_FAKE0123456789abcdefghijklmnopqrstu",
            "nested": [{ "quote\"d-secret-value": 1 }],
            "count": 3,
        })
        .to_string();
        assert!(!text.contains("quote\"d-secret-value"), "escaped in JSON");
        let redacted = redactor.redact_json_text(&text);
        assert!(!redacted.contains("secret-value"), "{redacted}");
        assert!(!redacted.contains("ghp_FAKE"), "{redacted}");
        let value: Value = serde_json::from_str(&redacted).unwrap();
        assert_eq!(
            value["reason"],
            "printed [redacted WEIRD_TOKEN] and [redacted]"
        );
        assert_eq!(value["nested"][0]["[redacted WEIRD_TOKEN]"], 1);
        assert_eq!(value["count"], 3);
        // Plain text, and JSON with nothing to redact, come back as they were.
        assert!(matches!(
            redactor.redact_json_text(r#"{"a": "b\n"}"#),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            redactor.redact_json_text("not json: quote\"d-secret-value"),
            "not json: [redacted WEIRD_TOKEN]"
        );
    }

    #[test]
    fn added_values_are_trimmed_and_known_once() {
        let mut redactor = Redactor::new();
        assert!(redactor.add("FIRST", "  value-one-long\n"));
        assert!(!redactor.add("SECOND", "value-one-long"));
        assert!(!redactor.add("SHORT", "tiny"));
        assert_eq!(redactor.names().collect::<Vec<_>>(), ["FIRST"]);
        assert_eq!(
            redactor.redact("a value-one-long b"),
            "a [redacted FIRST] b"
        );
    }

    #[test]
    fn debug_output_names_variables_but_never_shows_values() {
        let redactor = with(&[("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)]);
        let debug = format!("{redactor:?}");
        assert!(debug.contains("ANTHROPIC_API_KEY"), "{debug}");
        assert!(!debug.contains("FAKEFAKE"), "{debug}");
    }

    #[test]
    fn clones_share_values_until_one_changes() {
        let mut redactor = with(&[("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)]);
        let clone = redactor.clone();
        assert_eq!(clone, redactor);
        redactor.add("GITHUB_TOKEN", FAKE_GITHUB);
        assert_ne!(clone, redactor);
        assert_eq!(clone.names().count(), 1);
    }
}
