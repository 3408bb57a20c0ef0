//! The shapes of well-known tokens, found in one pass of one compiled regex.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

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
    // Only the token after `Bearer ` is redacted; see `spans`.
    (
        "a bearer token",
        r"(?i:bearer)[ \t]+[A-Za-z0-9._~+/\-]{16,}=*",
    ),
];

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

/// Where the token shapes match in `text`, in order and without overlaps. For a bearer token
/// only the token is a span, not the word `Bearer`, so that redacted text still says what it
/// was.
pub(crate) fn spans(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
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
        matched.start() + skip..matched.end()
    })
}

/// What the first token in `text` is, such as "a GitHub token", when there is one.
pub(crate) fn first_kind(text: &str) -> Option<&'static str> {
    // The whole match, `Bearer` included, says which shape it is.
    let matched = ANY_TOKEN.find(text)?.as_str();
    let kind = EACH_TOKEN
        .iter()
        .find(|(_, regex)| regex.is_match(matched))
        .map_or("a token", |(kind, _)| *kind);
    Some(kind)
}
