//! Keeping secrets out of what Baton stores and prints: a [`Redactor`] knows the values the
//! caller says are secret and the shapes of well-known tokens, and replaces both in text with
//! `[redacted NAME]` or `[redacted]`; what comes out is [`Redacted`] text.
//!
//! This crate is pure: it reads no environment, no file and no clock. A [`Redactor`] knows only
//! what it is given — the CLI passes its environment's variables ([`Redactor::from_vars`]) and
//! the secrets of its configuration ([`Redactor::with_value`]) — so that the one read of the
//! environment stays in the CLI's settings.
//!
//! What counts as a secret:
//!
//! - the value of a variable whose name has a word from [`SECRET_NAME_PARTS`]
//!   (`ANTHROPIC_API_KEY`, `GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`, …; see
//!   [`Redactor::is_secret_name`]), and any value added with [`Redactor::with_value`]; values
//!   shorter than [`MIN_SECRET_LEN`] bytes are ignored, so that `FOO_KEY=1` does not redact
//!   every `1`;
//! - text shaped like a well-known token, whatever its source (see [`TOKEN_SHAPES`]).
//!
//! Every known value is found in one pass over the text (one Aho-Corasick automaton holds
//! them all), and every token shape in one more (one compiled regex), so redaction stays
//! linear in the text however many secrets there are: a multi-megabyte check output costs
//! milliseconds.
//!
//! [`Redacted`] is the type that makes forgetting to redact a compile error: it has no public
//! constructor except a [`Redactor`] (and [`Redacted::trusted`], for fixed text Baton writes
//! itself), so an API that takes `Redacted` can only be given text that went through one. And
//! since a [`Redactor`] takes `&str` or `String`, never `Redacted`, nothing is redacted twice.

mod json;
mod names;
mod redacted;
mod redactor;
mod tokens;

pub use crate::names::SECRET_NAME_PARTS;
pub use crate::redacted::Redacted;
pub use crate::redactor::{Found, MIN_SECRET_LEN, Redactor};
pub use crate::tokens::TOKEN_SHAPES;
