//! [`Redacted`]: text that went through a [`Redactor`], the only kind of free text that may be
//! kept or shown.

use std::fmt;

use serde::{Serialize, Serializer};

#[cfg(doc)]
use crate::Redactor;

/// Text with the secrets a [`Redactor`] knows taken out of it.
///
/// It has no public constructor but [`Redacted::trusted`]: text becomes `Redacted` by passing
/// through [`Redactor::redact`] (or its siblings), so a function that takes `Redacted` cannot
/// be handed text that skipped redaction:
///
/// ```compile_fail,E0423
/// let text = redact::Redacted(String::from("sk-ant-…")); // the field is private
/// ```
///
/// ```compile_fail,E0277
/// let prompt = String::from("deploy with my key");
/// let text: redact::Redacted = prompt.into(); // nor is there a conversion from text
/// ```
///
/// A [`Redactor`] takes `&str` or `String`, and `Redacted` is neither nor turns into one on its
/// own (no `Deref`, `AsRef<str>` or `Into<String>`), so text is not redacted twice by accident:
///
/// ```compile_fail,E0308
/// let redactor = redact::Redactor::new();
/// let once = redactor.redact("text");
/// let twice = redactor.redact(&once);
/// ```
///
/// ```compile_fail,E0308
/// let redactor = redact::Redactor::new();
/// let once = redactor.redact("text");
/// let twice = redactor.redact_owned(once);
/// ```
///
/// What it offers instead is reading: [`Redacted::as_str`], [`Redacted::into_string`],
/// `Display` and `Serialize` (as a plain string). There is deliberately no `Deserialize` and
/// no way to join or cut two `Redacted` texts: halves of a secret, each harmless on its own,
/// can make the secret again when joined, and a cut can leave the start of a secret at the end
/// of the text, where a [`Redactor`] would have caught it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Redacted(String);

impl Redacted {
    /// Fixed text that Baton writes itself and that holds no secret by construction, such as
    /// `Redacted::trusted("the lease expired")`.
    ///
    /// Only a `&'static str` is taken, so that only a literal in the program (not text that
    /// came from a person, an agent, a check or the environment) can be trusted this way:
    ///
    /// ```
    /// let reason = redact::Redacted::trusted("cancelled by the user");
    /// assert_eq!(reason.as_str(), "cancelled by the user");
    /// ```
    ///
    /// ```compile_fail,E0597
    /// let reason = format!("failed: {}", "whatever the agent said");
    /// let reason = redact::Redacted::trusted(&reason); // not 'static
    /// ```
    ///
    /// Text that is fixed apart from an id or a number is not a literal: it goes through the
    /// redactor like any other text.
    pub fn trusted(text: &'static str) -> Redacted {
        // A literal shaped like a token is a slip in Baton's own source; say so in tests.
        debug_assert!(
            crate::tokens::first_kind(text).is_none(),
            "trusted text looks like a token: {text}"
        );
        Redacted(text.to_owned())
    }

    /// Text a [`Redactor`] made: the one way in for everything but [`Redacted::trusted`].
    pub(crate) fn by_redactor(text: String) -> Redacted {
        Redacted(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, as a `String` that is no longer marked as redacted.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shown as the string it is: it holds no secret.
impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A plain JSON string.
impl Serialize for Redacted {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl PartialEq<str> for Redacted {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Redacted {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Redacted {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_text_reads_back_as_it_was_written() {
        let text = Redacted::trusted("the lease expired");
        assert_eq!(text, "the lease expired");
        assert_eq!(text.as_str(), "the lease expired");
        assert_eq!(text.to_string(), "the lease expired");
        assert_eq!(format!("{text:?}"), "\"the lease expired\"");
        assert_eq!(text.len(), 17);
        assert!(!text.is_empty());
        assert!(Redacted::trusted("").is_empty());
        assert_eq!(text.into_string(), String::from("the lease expired"));
    }

    #[test]
    fn serialises_as_a_plain_string() {
        let text = Redacted::trusted("said \"done\"");
        assert_eq!(serde_json::to_string(&text).unwrap(), r#""said \"done\"""#);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "trusted text looks like a token")]
    fn a_trusted_literal_shaped_like_a_token_is_a_slip_caught_in_tests() {
        let _ = Redacted::trusted("ghp_FAKE0123456789abcdefghijklmnopqrstu");
    }
}
