//! The [`Redactor`]: the secret values it was given, found in text in one pass with the token
//! shapes, and replaced.

use std::cmp::Reverse;
use std::ffi::OsStr;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::names;
use crate::redacted::Redacted;
use crate::tokens::{self, TOKEN_SHAPES};

/// Values shorter than this many bytes are never treated as secrets.
pub const MIN_SECRET_LEN: usize = 8;

/// Knows which values are secret, and takes them out of text.
///
/// Built from what the caller knows — [`Redactor::from_vars`] with the process's environment,
/// [`Redactor::with_value`] for a secret from elsewhere — and never from anything it reads
/// itself. Cheap to clone: clones share the values and their automaton.
#[derive(Clone, Default)]
pub struct Redactor {
    known: Arc<Known>,
}

/// A secret found in text, as [`Redactor::find`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// The value of this variable.
    Value { name: &'a str },
    /// Text shaped like a well-known token, such as "a GitHub token".
    Token { kind: &'static str },
}

/// The values a [`Redactor`] knows, and the automaton that finds them all at once.
#[derive(Default)]
struct Known {
    /// Longest first, so that a value that contains another one is labelled with its own
    /// name; among values of one length, in the order they were added.
    values: Vec<KnownValue>,
    /// Every value, pattern `i` being `values[i]`. `None` when there are no values, or in the
    /// unlikely case that the values are too many for an automaton: then each value is
    /// searched for on its own, which is slower but finds the same.
    automaton: Option<AhoCorasick>,
}

#[derive(Clone, PartialEq, Eq)]
struct KnownValue {
    value: String,
    /// The variable it came from, which labels it: `[redacted NAME]`.
    name: String,
}

/// One stretch of text to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    /// The index of the known value, or `None` for a token shape.
    value: Option<usize>,
}

impl Redactor {
    /// A redactor that knows no values, only the token shapes.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// A redactor that knows the values of the variables in `vars` whose names look secret
    /// (see [`Redactor::is_secret_name`]); the CLI passes its environment. Names or values
    /// that are not UTF-8 are skipped: they cannot appear in the text Baton keeps.
    pub fn from_vars<N, V>(vars: impl IntoIterator<Item = (N, V)>) -> Redactor
    where
        N: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        Redactor::new().with_vars(vars)
    }

    /// This redactor, knowing also the values of the variables in `vars` whose names look
    /// secret, as [`Redactor::from_vars`] picks them.
    #[must_use = "the redactor that knows the new values is the one returned"]
    pub fn with_vars<N, V>(self, vars: impl IntoIterator<Item = (N, V)>) -> Redactor
    where
        N: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let secrets = vars.into_iter().filter_map(|(name, value)| {
            let (name, value) = (name.as_ref().to_str()?, value.as_ref().to_str()?);
            names::is_secret_name(name).then(|| KnownValue::new(name, value))
        });
        self.with_known(secrets)
    }

    /// This redactor, treating also `value` as a secret labelled `name`, whatever the name
    /// looks like. Surrounding whitespace is ignored; a value shorter than [`MIN_SECRET_LEN`]
    /// is not added, and a value known already keeps its first name.
    #[must_use = "the redactor that knows the new values is the one returned"]
    pub fn with_value(self, name: &str, value: &str) -> Redactor {
        self.with_known([KnownValue::new(name, value)])
    }

    /// Whether a variable's name says its value is a secret: one of its words is one of
    /// [`SECRET_NAME_PARTS`](crate::SECRET_NAME_PARTS) (or ends with `KEY`, `TOKEN`, `SECRET`
    /// or `PASSWORD`), ignoring case, and it is not a well-known path variable such as
    /// `SSH_AUTH_SOCK`.
    pub fn is_secret_name(name: &str) -> bool {
        names::is_secret_name(name)
    }

    /// The names of the variables whose values it knows, longest value first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.known.values.iter().map(|known| known.name.as_str())
    }

    /// A secret in `text`, when there is one: a known value (the longest, when several are
    /// there) before a token shape.
    pub fn find(&self, text: &str) -> Option<Found<'_>> {
        if let Some(index) = self.longest_value_in(text) {
            let name = &self.known.values[index].name;
            return Some(Found::Value { name });
        }
        tokens::first_kind(text).map(|kind| Found::Token { kind })
    }

    /// `text` with every secret in it replaced: a known value by `[redacted NAME]`, a token
    /// by `[redacted]`. Overlapping secrets become one replacement, labelled by the one that
    /// starts first (the longest, among those that start together).
    ///
    /// A known value cut off at the very start or end of `text` (the text is the tail of some
    /// output, or was truncated) is replaced too, when at least [`MIN_SECRET_LEN`] bytes of it
    /// are there.
    pub fn redact(&self, text: &str) -> Redacted {
        let redacted = self.replaced(text).unwrap_or_else(|| text.to_owned());
        Redacted::by_redactor(redacted)
    }

    /// [`Redactor::redact`] for text the caller owns, which is kept, not copied, when there is
    /// nothing to replace.
    pub fn redact_owned(&self, text: String) -> Redacted {
        Redacted::by_redactor(self.replaced(&text).unwrap_or(text))
    }

    /// `text` with its secrets replaced, or `None` when it holds none.
    pub(crate) fn replaced(&self, text: &str) -> Option<String> {
        let spans = self.spans(text);
        if spans.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for span in spans {
            out.push_str(&text[at..span.start]);
            match span.value {
                Some(index) => {
                    out.push_str("[redacted ");
                    out.push_str(&self.known.values[index].name);
                    out.push(']');
                }
                None => out.push_str("[redacted]"),
            }
            at = span.end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// Whether [`Redactor::redact`] would change `text`.
    pub(crate) fn has_secret(&self, text: &str) -> bool {
        !self.spans(text).is_empty()
    }

    /// The stretches of `text` to replace, in order, without overlaps.
    fn spans(&self, text: &str) -> Vec<Span> {
        let mut spans = self.value_spans(text);
        spans.extend(tokens::spans(text).map(|range| Span {
            start: range.start,
            end: range.end,
            value: None,
        }));
        merge(spans)
    }

    /// Where the known values are in `text`: every occurrence of each value (leftmost first,
    /// without overlapping another occurrence of the same value), plus a value cut off at
    /// either end of the text.
    fn value_spans(&self, text: &str) -> Vec<Span> {
        let values = &self.known.values;
        let mut spans = Vec::new();
        match &self.known.automaton {
            Some(automaton) => {
                // One pass finds every occurrence of every value, those inside or across
                // another included. Matches come in the order they end, so for each value they
                // come in the order they start, and keeping those that start after the last
                // one kept is what `str::match_indices` would find for that value alone.
                let mut next_start: Vec<usize> = Vec::new();
                // The automaton is built with `MatchKind::Standard`, which overlapping search
                // needs; with another kind this call would panic.
                for found in automaton.find_overlapping_iter(text) {
                    if next_start.is_empty() {
                        next_start.resize(values.len(), 0);
                    }
                    let index = found.pattern().as_usize();
                    if found.start() >= next_start[index] {
                        next_start[index] = found.end();
                        spans.push(Span {
                            start: found.start(),
                            end: found.end(),
                            value: Some(index),
                        });
                    }
                }
            }
            None => {
                for (index, known) in values.iter().enumerate() {
                    spans.extend(
                        text.match_indices(&known.value)
                            .map(|(start, matched)| Span {
                                start,
                                end: start + matched.len(),
                                value: Some(index),
                            }),
                    );
                }
            }
        }
        // The ends of the text are looked at once per value, whatever the text's length.
        for (index, known) in values.iter().enumerate() {
            spans.extend(cut_spans(text, &known.value, index));
        }
        spans
    }

    /// The index of the longest known value in `text` (the first added, among values of one
    /// length).
    fn longest_value_in(&self, text: &str) -> Option<usize> {
        let values = &self.known.values;
        let Some(automaton) = &self.known.automaton else {
            return values.iter().position(|known| text.contains(&known.value));
        };
        let mut longest: Option<usize> = None;
        for found in automaton.find_overlapping_iter(text) {
            let index = found.pattern().as_usize();
            if index == 0 {
                return Some(0);
            }
            longest = Some(longest.map_or(index, |longest| longest.min(index)));
        }
        longest
    }

    /// This redactor, knowing also `candidates` (trimmed; too short or known already, they are
    /// skipped). The automaton is built once for all of them.
    fn with_known(self, candidates: impl IntoIterator<Item = KnownValue>) -> Redactor {
        let mut values = self.known.values.clone();
        let known_before = values.len();
        for candidate in candidates {
            if candidate.value.len() >= MIN_SECRET_LEN
                && !values.iter().any(|known| known.value == candidate.value)
            {
                values.push(candidate);
            }
        }
        if values.len() == known_before {
            return self;
        }
        // Longest first; a stable sort keeps the order values were added in among equals.
        values.sort_by_key(|known| Reverse(known.value.len()));
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(values.iter().map(|known| &known.value))
            .ok();
        Redactor {
            known: Arc::new(Known { values, automaton }),
        }
    }
}

impl KnownValue {
    fn new(name: &str, value: &str) -> KnownValue {
        KnownValue {
            value: value.trim().to_owned(),
            name: name.to_owned(),
        }
    }
}

/// `spans` in order, overlapping ones made one: earliest first; among spans that start
/// together the longest, then a known value (whose name says more) before a token shape. A
/// merged span keeps the label of the one that came first.
fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    if spans.len() < 2 {
        return spans;
    }
    spans.sort_by_key(|span| {
        (
            span.start,
            Reverse(span.end),
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

/// What is left of `value` (the value at `index`) cut off by the start or the end of `text`.
fn cut_spans(text: &str, value: &str, index: usize) -> impl Iterator<Item = Span> {
    let at_start = cut_at_start(text, value).map(|end| Span {
        start: 0,
        end,
        value: Some(index),
    });
    let at_end = cut_at_end(text, value).map(|start| Span {
        start,
        end: text.len(),
        value: Some(index),
    });
    at_start.into_iter().chain(at_end)
}

/// The end of the longest proper tail of `value`, at least [`MIN_SECRET_LEN`] bytes, that
/// `text` starts with: what is left of a secret cut off by the start of the text.
fn cut_at_start(text: &str, value: &str) -> Option<usize> {
    let (text_bytes, value_bytes) = (text.as_bytes(), value.as_bytes());
    let first = *text_bytes.first()?;
    // Every redaction looks at every value here, so a tail is compared whole only once its
    // first byte and the byte the text would have at its end agree.
    (MIN_SECRET_LEN..value.len().min(text.len() + 1))
        .rev()
        .map(|length| value.len() - length)
        .filter(|&from| {
            value_bytes[from] == first
                && text_bytes[value.len() - from - 1] == value_bytes[value.len() - 1]
        })
        .filter(|&from| value.is_char_boundary(from))
        .find(|&from| text.starts_with(&value[from..]))
        .map(|from| value.len() - from)
}

/// The start of the longest proper head of `value`, at least [`MIN_SECRET_LEN`] bytes, that
/// `text` ends with: what is left of a secret cut off by the end of the text.
fn cut_at_end(text: &str, value: &str) -> Option<usize> {
    let (text_bytes, value_bytes) = (text.as_bytes(), value.as_bytes());
    let last = *text_bytes.last()?;
    // As in `cut_at_start`: the last byte and the first must agree before the whole head is
    // compared.
    (MIN_SECRET_LEN..value.len().min(text.len() + 1))
        .rev()
        .filter(|&length| {
            value_bytes[length - 1] == last && text_bytes[text.len() - length] == value_bytes[0]
        })
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

/// Two redactors are equal when they know the same values, by the same names, in the same
/// order (the automaton follows from the values).
impl PartialEq for Redactor {
    fn eq(&self, other: &Redactor) -> bool {
        self.known.values == other.known.values
    }
}

impl Eq for Redactor {}

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
mod tests;
