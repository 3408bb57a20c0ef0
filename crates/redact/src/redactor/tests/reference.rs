//! The reference the one-pass search is checked against: redaction as it was before this
//! crate, searching the text once per known value, and random inputs to compare the two on,
//! from a fixed seed so that a failure repeats.

use super::*;

/// Today's redaction (session-store's `Redactor::redact` before this crate), kept as it was:
/// each value's occurrences found with `str::match_indices`, one value after another, and
/// every head and tail of it compared with the ends of the text. Only the token shapes are
/// shared with the code under test.
pub(super) fn redact(redactor: &Redactor, text: &str) -> String {
    let values = &redactor.known.values;
    let mut spans: Vec<Span> = Vec::new();
    for (index, known) in values.iter().enumerate() {
        let value = known.value.as_str();
        spans.extend(text.match_indices(value).map(|(start, matched)| Span {
            start,
            end: start + matched.len(),
            value: Some(index),
        }));
        if let Some(end) = old_cut_at_start(text, value) {
            spans.push(Span {
                start: 0,
                end,
                value: Some(index),
            });
        }
        if let Some(start) = old_cut_at_end(text, value) {
            spans.push(Span {
                start,
                end: text.len(),
                value: Some(index),
            });
        }
    }
    spans.extend(tokens::spans(text).map(|range| Span {
        start: range.start,
        end: range.end,
        value: None,
    }));
    spans.sort_by_key(|span| {
        (
            span.start,
            Reverse(span.end),
            span.value.unwrap_or(usize::MAX),
        )
    });
    let mut merged: Vec<Span> = Vec::new();
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start < last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    let mut out = String::new();
    let mut at = 0;
    for span in merged {
        out.push_str(&text[at..span.start]);
        match span.value {
            Some(index) => out.push_str(&format!("[redacted {}]", values[index].name)),
            None => out.push_str("[redacted]"),
        }
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Today's `cut_at_start`, which compares every tail whole.
fn old_cut_at_start(text: &str, value: &str) -> Option<usize> {
    (MIN_SECRET_LEN..value.len())
        .rev()
        .map(|length| value.len() - length)
        .filter(|&from| value.is_char_boundary(from))
        .find(|&from| text.starts_with(&value[from..]))
        .map(|from| value.len() - from)
}

/// Today's `cut_at_end`, which compares every head whole.
fn old_cut_at_end(text: &str, value: &str) -> Option<usize> {
    (MIN_SECRET_LEN..value.len())
        .rev()
        .filter(|&length| value.is_char_boundary(length))
        .find(|&length| text.ends_with(&value[..length]))
        .map(|length| text.len() - length)
}

/// Today's `Redactor::find`: the first known value, longest first, that the text contains.
pub(super) fn find<'a>(redactor: &'a Redactor, text: &str) -> Option<Found<'a>> {
    if let Some(known) = redactor
        .known
        .values
        .iter()
        .find(|known| text.contains(&known.value))
    {
        return Some(Found::Value { name: &known.name });
    }
    tokens::first_kind(text).map(|kind| Found::Token { kind })
}

/// `redactor`'s values without their automaton, as when one could not be built.
pub(super) fn without_automaton(redactor: &Redactor) -> Redactor {
    Redactor {
        known: Arc::new(Known {
            values: redactor.known.values.clone(),
            automaton: None,
        }),
    }
}

/// A few values over a tiny alphabet, often made from one another (a prefix, a tail, a
/// middle, an overlap), and a short text made of them, pieces of them, tokens and noise: the
/// inputs where one value hides another.
pub(super) fn small_case(random: &mut Random) -> (Redactor, String) {
    const ALPHABET: &[&str] = &["a", "b", "1", "-", "é"];
    let mut values: Vec<String> = Vec::new();
    for _ in 0..random.below(6) + 1 {
        let fresh = random.text(ALPHABET, 6, 14);
        let value = match (values.len(), random.below(5)) {
            (0, _) | (_, 0) => fresh,
            (count, 1) => format!("{}{fresh}", values[random.below(count)]),
            (count, 2) => format!("{}{fresh}", tail(&values[random.below(count)], 4)),
            (count, 3) => tail(&values[random.below(count)], 1).to_owned(),
            (count, _) => head(&values[random.below(count)], 1).to_owned(),
        };
        values.push(value);
    }
    let padded: Vec<(String, String)> = values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let padded = if random.below(4) == 0 {
                format!("  {value}\n")
            } else {
                value.clone()
            };
            (format!("V{index}_KEY"), padded)
        })
        .collect();
    let redactor = Redactor::from_vars(padded);
    let mut text = String::new();
    for _ in 0..random.below(8) {
        let value = &values[random.below(values.len())];
        match random.below(6) {
            0 => text.push_str(value),
            1 => text.push_str(head(value, 1)),
            2 => text.push_str(tail(value, 1)),
            3 => text.push_str(&token(random, ALPHABET)),
            _ => text.push_str(&random.text(ALPHABET, 0, 6)),
        }
    }
    (redactor, text)
}

/// The alphabet of the large case's secrets and tokens.
const ALNUM: &[&str] = &[
    "A", "B", "C", "K", "X", "Z", "a", "b", "c", "k", "x", "z", "0", "1", "7", "9",
];

/// The words of the large case's log-like text.
const WORDS: &[&str] = &[
    "compiling",
    "crate",
    "ok",
    "test",
    "passed",
    "warning:",
    "unused",
    "at",
    "src/lib.rs",
    "1.2.3",
    "-",
    "bearer",
    "sk-",
    "key",
    "token",
];

/// The large case's secrets, and how some of them relate.
struct LargeSecrets {
    secrets: Vec<String>,
    /// (a secret, another that starts with its last four bytes)
    glued: Vec<(usize, usize)>,
    /// (a secret that repeats a unit, the unit)
    periodic: Vec<(usize, String)>,
}

/// Fifty secrets (some extending another, some starting with another's tail, some repeating
/// a short unit) and over a MiB of log-like text with them, pieces of them, secrets glued
/// where one's tail is the next one's head, runs of a repeating secret and tokens strewn
/// through it; a piece of a secret at each end. Returns the secrets too.
pub(super) fn large_case(random: &mut Random) -> (Redactor, String, Vec<String>) {
    let large = large_secrets(random);
    let redactor = Redactor::from_vars(
        large
            .secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| (format!("S{index}_TOKEN"), secret.clone())),
    );
    let text = large_text(random, &large);
    assert!(
        !large.glued.is_empty() && !large.periodic.is_empty(),
        "the seed makes both"
    );
    (redactor, text, large.secrets)
}

/// The fifty secrets of [`large_case`].
fn large_secrets(random: &mut Random) -> LargeSecrets {
    let mut secrets: Vec<String> = Vec::new();
    let mut glued: Vec<(usize, usize)> = Vec::new();
    let mut periodic: Vec<(usize, String)> = Vec::new();
    while secrets.len() < 50 {
        let count = secrets.len();
        let fresh = random.text(ALNUM, 8, 48);
        let secret = match (count, random.below(10)) {
            (0, _) => fresh,
            (_, 0 | 1) => format!("{}{}", secrets[random.below(count)], &fresh[..4]),
            (_, 2) => {
                let before = random.below(count);
                glued.push((before, count));
                format!(
                    "{}{fresh}",
                    tail(&secrets[before], secrets[before].len() - 4)
                )
            }
            (_, 3) => {
                let unit = random.text(ALNUM, 2, 4);
                periodic.push((count, unit.clone()));
                unit.repeat(8 / unit.len() + 1 + random.below(3))
            }
            _ => fresh,
        };
        if secrets.contains(&secret) {
            glued.retain(|&(_, after)| after != count);
            periodic.retain(|&(index, _)| index != count);
        } else {
            secrets.push(secret);
        }
    }
    LargeSecrets {
        secrets,
        glued,
        periodic,
    }
}

/// The text of [`large_case`]: over a MiB, with the secrets strewn through it.
fn large_text(random: &mut Random, large: &LargeSecrets) -> String {
    let LargeSecrets {
        secrets,
        glued,
        periodic,
    } = large;
    let mut text = String::from(tail(&secrets[0], 3));
    while text.len() < 1 << 20 {
        let secret = &secrets[random.below(secrets.len())];
        match random.below(40) {
            0..=7 => text.push_str(secret),
            8 if !glued.is_empty() => {
                let (before, after) = glued[random.below(glued.len())];
                text.push_str(&secrets[before]);
                text.push_str(&secrets[after][4..]);
            }
            9 if !periodic.is_empty() => {
                let (index, unit) = &periodic[random.below(periodic.len())];
                let repeats = secrets[*index].len() / unit.len() + 1 + random.below(4);
                text.push_str(&unit.repeat(repeats));
            }
            10 => text.push_str(head(secret, 2)),
            11 => text.push_str(&token(random, ALNUM)),
            _ => text.push_str(WORDS[random.below(WORDS.len())]),
        }
        text.push(if random.below(8) == 0 { '\n' } else { ' ' });
    }
    text.push_str(head(&secrets[1], 3));
    text
}

/// Something shaped like a token (or nearly: too short, or without its word boundary).
fn token(random: &mut Random, alphabet: &[&str]) -> String {
    let body = random.text(alphabet, 10, 40);
    match random.below(4) {
        0 => format!("ghp_{body}"),
        1 => format!("Bearer {body}"),
        2 => format!("sk-{body}"),
        _ => format!("xsk-{body}"),
    }
}

/// `text` without its first `characters` characters.
fn tail(text: &str, characters: usize) -> &str {
    let start = text
        .char_indices()
        .nth(characters)
        .map_or(text.len(), |(at, _)| at);
    &text[start..]
}

/// `text` without its last `characters` characters.
fn head(text: &str, characters: usize) -> &str {
    let end = text
        .char_indices()
        .rev()
        .nth(characters.saturating_sub(1))
        .map_or(0, |(at, _)| at);
    &text[..end]
}

/// A small, seeded generator (SplitMix64): enough randomness for test inputs, no dependency.
pub(super) struct Random(u64);

impl Random {
    pub(super) fn new(seed: u64) -> Random {
        Random(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number below `bound`, which is not 0.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    /// Between `shortest` and `longest` characters (inclusive) drawn from `alphabet`.
    fn text(&mut self, alphabet: &[&str], shortest: usize, longest: usize) -> String {
        let length = shortest + self.below(longest - shortest + 1);
        (0..length)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}
