//! Deciding how a call ended, from the parsed stream, the exit and stderr.
//!
//! The `result` line decides (`subtype`, `is_error`, `terminal_reason`, `api_error_status`,
//! `errors`), never the exit code alone: the CLI exits 1 for an API error that it reports as
//! `subtype: "success"` with `is_error: true`, and a process that printed no result crashed
//! whatever its exit code. Only without a result does stderr get a say, for the two session
//! errors the CLI reports there.

mod refusal;

use std::time::{Duration, SystemTime};

use agent::{AgentError, AgentReply, ExitInfo, SessionId, Usage};

use crate::stream::{InitLine, ParsedStream, ResultLine};

/// The most stderr an error message carries.
const STDERR_TAIL_IN_ERROR: usize = 4096;

/// What the caller asked of the call that classification needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallFacts {
    pub(crate) assigned: SessionId,
    pub(crate) max_turns: Option<u32>,
}

/// How the process ended.
#[derive(Debug, Clone)]
pub(crate) struct ProcessEnd {
    pub(crate) exit: ExitInfo,
    /// The tail of stderr that was kept.
    pub(crate) stderr: String,
}

/// The outcome of a call whose process ended by itself.
pub(crate) fn classify(
    stream: ParsedStream,
    facts: CallFacts,
    end: &ProcessEnd,
) -> Result<AgentReply, AgentError> {
    let failed = stream.result.as_ref().is_none_or(|result| result.is_error);
    if failed && let Some(session_error) = session_error(&stream, facts, end) {
        return Err(session_error);
    }
    let Some(result) = &stream.result else {
        return Err(without_result(&stream, facts, end));
    };
    let reply = reply(&stream, result, end)?;
    let reply = verify_session(&stream, result, facts.assigned, reply)?;
    if Subtype::of(result) == Subtype::Success && !result.is_error {
        return Ok(reply);
    }
    Err(failure(&stream, result, facts, reply))
}

/// The `subtype`s of a result line that decide an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subtype<'a> {
    /// `success`: a success unless `is_error`, which makes it an API failure.
    Success,
    /// `error_max_turns`.
    MaxTurns,
    /// `error_max_budget_usd`: `--max-budget-usd` was spent.
    MaxBudget,
    /// `error_during_execution`.
    DuringExecution,
    /// Absent, `error_max_structured_output_retries`, or one from a later CLI.
    Other(&'a str),
}

impl Subtype<'_> {
    fn of(result: &ResultLine) -> Subtype<'_> {
        match result.subtype.as_deref().unwrap_or_default() {
            "success" => Subtype::Success,
            "error_max_turns" => Subtype::MaxTurns,
            "error_max_budget_usd" => Subtype::MaxBudget,
            "error_during_execution" => Subtype::DuringExecution,
            other => Subtype::Other(other),
        }
    }
}

/// Checks the session ids the agent reported (at `init` and in the result) against the
/// assigned one; a difference keeps the reply inside the error.
fn verify_session(
    stream: &ParsedStream,
    result: &ResultLine,
    assigned: SessionId,
    reply: AgentReply,
) -> Result<AgentReply, AgentError> {
    let at_init = stream
        .init
        .as_ref()
        .and_then(|init| init.session_id.as_deref());
    for reported in [at_init, result.session_id.as_deref()]
        .into_iter()
        .flatten()
    {
        let reported = parse_reported_id(reported)?;
        if reported != assigned {
            return Err(AgentError::SessionMismatch {
                assigned,
                reported,
                reply: Some(Box::new(reply)),
            });
        }
    }
    Ok(reply)
}

/// The error of a call whose result line says it did not succeed.
fn failure(
    stream: &ParsedStream,
    result: &ResultLine,
    facts: CallFacts,
    reply: AgentReply,
) -> AgentError {
    let reply = Box::new(reply);
    match Subtype::of(result) {
        Subtype::MaxTurns => AgentError::MaxTurns {
            max_turns: facts.max_turns,
            reply,
        },
        Subtype::MaxBudget => AgentError::BudgetExceeded { reply },
        _ if is_rate_limit(stream, result) => AgentError::RateLimited {
            reset_at: stream
                .rate_limit_resets_at
                .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            message: message(result),
            reply: Some(reply),
        },
        // An API failure arrives as `success` + `is_error` with `terminal_reason: api_error`;
        // a bare `success` + `is_error` is read the same way, as the CLI's docs describe it.
        Subtype::Success => api_failure(stream, result, reply),
        _ if is_api_failure(result) => api_failure(stream, result, reply),
        Subtype::DuringExecution => AgentError::Execution {
            errors: result.errors.clone(),
            reply,
        },
        // A subtype this adapter does not know: an execution error that names it.
        Subtype::Other(other) => {
            let mut errors = vec![format!("the agent ended with `{other}`")];
            errors.extend(result.errors.iter().cloned());
            AgentError::Execution { errors, reply }
        }
    }
}

fn is_api_failure(result: &ResultLine) -> bool {
    result.api_error_status.is_some() || result.terminal_reason.as_deref() == Some("api_error")
}

/// The error for a model API that refused or failed (a rate limit aside). Its status, type,
/// the CLI's word and the text tell a failure that passes (5xx, 529, a dropped connection)
/// from one no retry fixes (401, 403, a 400 for an empty balance, a 404 model, no login).
fn api_failure(stream: &ParsedStream, result: &ResultLine, reply: Box<AgentReply>) -> AgentError {
    let message = message(result);
    let text = format!("{message}\n{}", result.errors.join("\n"));
    let facts = refusal::ApiFailureFacts {
        status: result.api_error_status,
        error_type: result.api_error_type.as_deref(),
        word: stream.api_error_word.as_deref(),
        text: &text,
    };
    match refusal::refusal(facts) {
        Some(refusal) => AgentError::Refused {
            refusal,
            status: result.api_error_status,
            message,
            reply: Some(reply),
        },
        None => AgentError::Api {
            status: result.api_error_status,
            message,
            reply: Some(reply),
        },
    }
}

/// The reply the result line describes.
fn reply(
    stream: &ParsedStream,
    result: &ResultLine,
    end: &ProcessEnd,
) -> Result<AgentReply, AgentError> {
    let init = stream.init.as_ref();
    let session_text = result
        .session_id
        .as_deref()
        .or(init.and_then(|init| init.session_id.as_deref()));
    let Some(session_text) = session_text else {
        return Err(AgentError::MalformedOutput {
            detail: String::from("the result line names no session id"),
        });
    };
    let (usage, cost_usd) = call_figures(result);
    let (model, context_window) = model_and_window(init, result);
    Ok(AgentReply {
        session_id: parse_reported_id(session_text)?,
        result_text: result.result.clone(),
        subtype: result
            .subtype
            .clone()
            .unwrap_or_else(|| String::from("unknown")),
        usage,
        cost_usd,
        turns: result.num_turns.unwrap_or(0),
        duration: Duration::from_millis(result.duration_ms.unwrap_or(0)),
        model,
        context_window,
        permission_denials: result.permission_denials.clone(),
        exit_code: match end.exit {
            ExitInfo::Code(code) => Some(code),
            ExitInfo::Signal(_) => None,
        },
    })
}

/// This process's own usage and cost, from `model_usage_since_last_result`. `modelUsage` and
/// `total_cost_usd` cover the whole session when it was resumed, and `usage` can miss the
/// last response, so they are the fallback only, for a CLI that does not report it.
fn call_figures(result: &ResultLine) -> (Usage, f64) {
    match &result.model_usage_since_last_result {
        Some(models) => (
            models
                .values()
                .fold(Usage::ZERO, |sum, figures| sum + figures.usage),
            models.values().filter_map(|figures| figures.cost_usd).sum(),
        ),
        None => (result.usage, result.total_cost_usd.unwrap_or(0.0)),
    }
}

/// The model the call used and its context window: the model from `init` (else the first
/// one reported), and its window from `modelUsage` (else the largest one reported).
fn model_and_window(init: Option<&InitLine>, result: &ResultLine) -> (Option<String>, Option<u64>) {
    let this_process = result
        .model_usage_since_last_result
        .as_ref()
        .unwrap_or(&result.model_usage);
    let model = init
        .and_then(|init| init.model.clone())
        .or_else(|| this_process.keys().next().cloned())
        .or_else(|| result.model_usage.keys().next().cloned());
    let context_window = model
        .as_ref()
        .and_then(|model| {
            result
                .model_usage
                .get(model)
                .or_else(|| this_process.get(model))
        })
        .and_then(|figures| figures.context_window)
        .or_else(|| {
            result
                .model_usage
                .values()
                .chain(this_process.values())
                .filter_map(|figures| figures.context_window)
                .max()
        });
    (model, context_window)
}

fn is_rate_limit(stream: &ParsedStream, result: &ResultLine) -> bool {
    result.api_error_status == Some(429)
        || result.api_error_type.as_deref() == Some("rate_limit_error")
        || (result.is_error && stream.rate_limit_rejected)
}

/// What the agent said went wrong: its result text, else its errors.
fn message(result: &ResultLine) -> String {
    match &result.result {
        Some(text) if !text.trim().is_empty() => text.trim().to_owned(),
        _ if !result.errors.is_empty() => result.errors.join("; "),
        _ => String::from("the agent gave no detail"),
    }
}

/// The session errors the CLI reports in words. 2.1.328 prints
/// `Error: Session ID <id> is already in use.` on stderr (no stdout, exit 1) for a
/// `--session-id` whose transcript exists; for a `--resume` of an unknown id it prints
/// `No conversation found with session ID: <id>` on stderr *and* a result line
/// (`error_during_execution`, the same words in `errors`), exit 1.
fn session_error(stream: &ParsedStream, facts: CallFacts, end: &ProcessEnd) -> Option<AgentError> {
    let errors = stream.result.iter().flat_map(|result| &result.errors);
    let said = std::iter::once(end.stderr.as_str()).chain(errors.map(String::as_str));
    let (mut in_use, mut not_found) = (false, false);
    for text in said {
        in_use |= text.contains("Session ID") && text.contains("is already in use");
        not_found |= text.contains("No conversation found with session ID");
    }
    if in_use {
        Some(AgentError::SessionInUse {
            session_id: facts.assigned,
        })
    } else if not_found {
        Some(AgentError::SessionNotFound {
            session_id: facts.assigned,
        })
    } else {
        None
    }
}

/// The error for a process that printed no result (and no session error): a mismatch when
/// its `init` line named another session, else malformed output or a crash.
fn without_result(stream: &ParsedStream, facts: CallFacts, end: &ProcessEnd) -> AgentError {
    let reported_at_init = stream
        .init
        .as_ref()
        .and_then(|init| init.session_id.as_deref())
        .and_then(|id| id.parse::<SessionId>().ok());
    if let Some(reported) = reported_at_init
        && reported != facts.assigned
    {
        return AgentError::SessionMismatch {
            assigned: facts.assigned,
            reported,
            reply: None,
        };
    }
    if let Some(first) = &stream.first_bad_line {
        return AgentError::MalformedOutput {
            detail: format!(
                "it printed {} line(s) that are not JSON (the first: `{first}`) and no result, then ended with {}{}",
                stream.bad_lines,
                end.exit,
                stderr_note(&end.stderr)
            ),
        };
    }
    AgentError::Crashed {
        exit: end.exit,
        stderr_tail: tail(&end.stderr, STDERR_TAIL_IN_ERROR),
    }
}

fn stderr_note(stderr: &str) -> String {
    let tail = tail(stderr, STDERR_TAIL_IN_ERROR);
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr ends with: {}", tail.trim())
    }
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// A session id the agent reported, which must be a UUID.
fn parse_reported_id(text: &str) -> Result<SessionId, AgentError> {
    text.parse().map_err(|_| AgentError::MalformedOutput {
        detail: format!("the agent reported `{text}` as its session id, which is not a UUID"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_cuts_at_a_char_boundary() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }
}
