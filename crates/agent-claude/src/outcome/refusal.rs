//! Telling an API failure no retry fixes (credentials, permission, billing, the model) from
//! one that passes, from what the CLI reports.
//!
//! Observed on 2.1.328 with `CLAUDE_CODE_MAX_RETRIES=0` (docs/claude-cli-observed.md): each
//! refusal is a result line `success` + `is_error` + `terminal_reason: api_error` with
//! `api_error_status` and `api_error_type`, after a synthetic assistant message whose `error`
//! is the CLI's word for it. A missing login never reaches the API: no status, the word
//! `authentication_failed`, and the text "Not logged in · Please run /login".

use agent::Refusal;

/// What the CLI said about a failed API call.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiFailureFacts<'a> {
    pub(crate) status: Option<u16>,
    /// The API's error type (`authentication_error`, `permission_error`, …).
    pub(crate) error_type: Option<&'a str>,
    /// The CLI's word for it (`authentication_failed`, `billing_error`, `model_not_found`).
    pub(crate) word: Option<&'a str>,
    /// The result text and the errors.
    pub(crate) text: &'a str,
}

/// The refusal these facts describe, if they describe one. The status decides first (the CLI
/// says `authentication_failed` for a 403 too), then the API's type, then the CLI's word, and
/// the text only for what has neither: a missing or expired login.
pub(crate) fn refusal(facts: ApiFailureFacts<'_>) -> Option<Refusal> {
    let text = facts.text.to_ascii_lowercase();
    let about_credit = text.contains("credit balance");
    match facts.status {
        Some(401) => return Some(Refusal::Authentication),
        Some(403) => return Some(Refusal::Permission),
        Some(404) => return Some(Refusal::ModelUnavailable),
        Some(400) if about_credit || facts.word == Some("billing_error") => {
            return Some(Refusal::Billing);
        }
        Some(_) => return None,
        None => {}
    }
    match (facts.error_type, facts.word) {
        (Some("authentication_error"), _) | (_, Some("authentication_failed")) => {
            Some(Refusal::Authentication)
        }
        (Some("permission_error"), _) => Some(Refusal::Permission),
        (_, Some("billing_error")) => Some(Refusal::Billing),
        (Some("not_found_error"), _) | (_, Some("model_not_found")) => {
            Some(Refusal::ModelUnavailable)
        }
        _ if text.contains("not logged in")
            || text.contains("invalid api key")
            || text.contains("oauth token has expired") =>
        {
            Some(Refusal::Authentication)
        }
        _ if about_credit => Some(Refusal::Billing),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        status: Option<u16>,
        error_type: Option<&str>,
        word: Option<&str>,
        text: &str,
    ) -> Option<Refusal> {
        refusal(ApiFailureFacts {
            status,
            error_type,
            word,
            text,
        })
    }

    #[test]
    fn statuses_no_retry_fixes_are_refusals() {
        let table = [
            (
                Some(401),
                None,
                "Invalid API key · Fix external API key",
                Some(Refusal::Authentication),
            ),
            (
                Some(403),
                Some("authentication_failed"),
                "Failed to authenticate.",
                Some(Refusal::Permission),
            ),
            (
                Some(400),
                Some("billing_error"),
                "Credit balance is too low",
                Some(Refusal::Billing),
            ),
            (
                Some(400),
                None,
                "Your credit balance is too low to access the API",
                Some(Refusal::Billing),
            ),
            (Some(400), None, "prompt is too long", None),
            (
                Some(404),
                Some("model_not_found"),
                "There's an issue with the selected model",
                Some(Refusal::ModelUnavailable),
            ),
            (
                Some(529),
                Some("server_error"),
                "API Error: 529 Overloaded",
                None,
            ),
            (Some(500), None, "API Error: 500", None),
            (
                None,
                Some("authentication_failed"),
                "Not logged in · Please run /login",
                Some(Refusal::Authentication),
            ),
            (
                None,
                None,
                "OAuth token has expired. Please run /login",
                Some(Refusal::Authentication),
            ),
            (
                None,
                Some("server_error"),
                "API Error: Connection refused (ECONNREFUSED)",
                None,
            ),
        ];
        for (status, word, text, expected) in table {
            assert_eq!(
                check(status, None, word, text),
                expected,
                "{status:?} {word:?} {text}"
            );
        }
    }

    #[test]
    fn the_api_type_decides_without_a_status() {
        assert_eq!(
            check(None, Some("permission_error"), None, ""),
            Some(Refusal::Permission)
        );
        assert_eq!(
            check(None, Some("not_found_error"), None, ""),
            Some(Refusal::ModelUnavailable)
        );
        assert_eq!(check(None, Some("overloaded_error"), None, ""), None);
    }
}
