//! How the real CLI reports a failed API request, by HTTP status: the text it shows, and the
//! `error` and `api_error_type` fields of its synthetic assistant message and result.
//!
//! One row per status family, and the 400 for an empty credit balance, which has words and an
//! `error` of its own (`billing_error`).

/// What the CLI reports for one API failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiFailure {
    pub(crate) status: u16,
    /// The assistant message's `error`, such as `rate_limit` or `authentication_failed`.
    pub(crate) error: &'static str,
    /// The API's error type, reported as `api_error_type`.
    pub(crate) error_type: &'static str,
    /// The text shown as the assistant's message and the result.
    pub(crate) text: String,
}

impl ApiFailure {
    /// The failure the CLI reports when the API answers `status` with `message`, for a call
    /// that asked for `model`.
    pub(crate) fn new(status: u16, message: &str, model: &str) -> ApiFailure {
        let credit = status == 400 && message.to_ascii_lowercase().contains("credit balance");
        let (error, error_type) = match status {
            429 => ("rate_limit", "rate_limit_error"),
            401 => ("authentication_failed", "authentication_error"),
            403 => ("authentication_failed", "permission_error"),
            404 => ("model_not_found", "not_found_error"),
            400 if credit => ("billing_error", "invalid_request_error"),
            529 => ("server_error", "overloaded_error"),
            500.. => ("server_error", "api_error"),
            _ => ("unknown", "invalid_request_error"),
        };
        ApiFailure {
            status,
            error,
            error_type,
            text: text(status, message, model, credit),
        }
    }
}

/// The text the real CLI shows for an API error with `status` (observed on 2.1.328 for 400,
/// 401, 403, 404, 413, 429, 500, 502, 503 and 529 against a gateway named by
/// `ANTHROPIC_BASE_URL`; without one the 5xx text's last sentence is a guess). A 401 that
/// names the `x-api-key` (the API's words for a bad key) says to fix the key from the
/// environment; a 400 about the credit balance is shown in the CLI's own short words.
fn text(status: u16, message: &str, model: &str, credit: bool) -> String {
    match status {
        429 => format!("API Error: Request rejected (429) · {message}"),
        401 if message.contains("x-api-key") => {
            String::from("Invalid API key · Fix external API key")
        }
        401 | 403 => format!("Failed to authenticate. API Error: {status} {message}"),
        400 if credit => String::from("Credit balance is too low"),
        404 => format!(
            "There's an issue with the selected model ({model}). It may not exist or you may \
             not have access to it. Run --model to pick a different model."
        ),
        413 => String::from(
            "Request too large (max 32MB). Accumulated images and attachments in the \
             conversation pushed the request over the limit. Remove older images or compact \
             the conversation.",
        ),
        500.. => format!(
            "API Error: {status} {message}. This is a server-side issue, usually temporary \
             — try again in a moment. If it persists, check your inference gateway \
             ({}).",
            gateway_host()
        ),
        _ => format!("API Error: {status} {message}"),
    }
}

/// The host of `ANTHROPIC_BASE_URL`, as the CLI names it in a server error's text.
fn gateway_host() -> String {
    std::env::var("ANTHROPIC_BASE_URL")
        .ok()
        .map(|url| {
            let without_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            without_scheme
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| String::from("api.anthropic.com"))
}
