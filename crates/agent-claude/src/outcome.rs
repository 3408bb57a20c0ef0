//! Deciding how a call ended, from the parsed stream, the exit and stderr.
//!
//! The `result` line decides (`subtype`, `is_error`, `terminal_reason`, `api_error_status`,
//! `errors`), never the exit code alone: the CLI exits 1 for an API error that it reports as
//! `subtype: "success"` with `is_error: true`, and a process that printed no result crashed
//! whatever its exit code. Only without a result does stderr get a say, for the two session
//! errors the CLI reports there.

use std::time::{Duration, SystemTime};

use agent::{AgentError, AgentReply, ExitInfo, SessionId, Usage};

use crate::stream::{ParsedStream, ResultLine};

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
    let reported_at_init = stream
        .init
        .as_ref()
        .and_then(|init| init.session_id.clone());
    let Some(result) = stream.result.clone() else {
        if let Some(reported) = reported_at_init.as_deref().and_then(parse_id)
            && reported != facts.assigned
        {
            return Err(AgentError::SessionMismatch {
                assigned: facts.assigned,
                reported,
                reply: None,
            });
        }
        return Err(without_result(&stream, end));
    };

    let reply = reply(&stream, &result, end)?;
    let reported_ids = [reported_at_init.as_deref(), result.session_id.as_deref()];
    for reported in reported_ids.into_iter().flatten() {
        let Some(reported) = parse_id(reported) else {
            return Err(AgentError::MalformedOutput {
                detail: format!(
                    "the agent reported `{reported}` as its session id, which is not a UUID"
                ),
            });
        };
        if reported != facts.assigned {
            return Err(AgentError::SessionMismatch {
                assigned: facts.assigned,
                reported,
                reply: Some(Box::new(reply)),
            });
        }
    }

    let subtype = result.subtype.as_deref().unwrap_or_default();
    let api_failed =
        result.api_error_status.is_some() || result.terminal_reason.as_deref() == Some("api_error");
    match subtype {
        "success" if !result.is_error => Ok(reply),
        "error_max_turns" => Err(AgentError::MaxTurns {
            max_turns: facts.max_turns,
            reply: Box::new(reply),
        }),
        "error_max_budget_usd" => Err(AgentError::BudgetExceeded {
            reply: Box::new(reply),
        }),
        _ if is_rate_limit(&stream, &result) => Err(AgentError::RateLimited {
            reset_at: stream
                .rate_limit_resets_at
                .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            message: message(&result),
            reply: Some(Box::new(reply)),
        }),
        // An API failure arrives as `success` + `is_error` with `terminal_reason: api_error`;
        // a bare `success` + `is_error` is read the same way, as the CLI's docs describe it.
        _ if api_failed || subtype == "success" => Err(AgentError::Api {
            status: result.api_error_status,
            message: message(&result),
            reply: Some(Box::new(reply)),
        }),
        "error_during_execution" => Err(AgentError::Execution {
            errors: result.errors.clone(),
            reply: Box::new(reply),
        }),
        // A subtype this adapter does not know (`error_max_structured_output_retries`, or one
        // from a later CLI): an execution error that names it.
        other => {
            let mut errors = vec![format!("the agent ended with `{other}`")];
            errors.extend(result.errors.iter().cloned());
            Err(AgentError::Execution {
                errors,
                reply: Box::new(reply),
            })
        }
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
    let Some(session_id) = parse_id(session_text) else {
        return Err(AgentError::MalformedOutput {
            detail: format!(
                "the agent reported `{session_text}` as its session id, which is not a UUID"
            ),
        });
    };
    // This process's own figures, from `model_usage_since_last_result`. `modelUsage` and
    // `total_cost_usd` cover the whole session when it was resumed, and `usage` can miss the
    // last response, so they are the fallback only, for a CLI that does not report it.
    let this_process = result
        .model_usage_since_last_result
        .as_ref()
        .unwrap_or(&result.model_usage);
    let (usage, cost_usd) = match &result.model_usage_since_last_result {
        Some(models) => (
            models
                .values()
                .fold(Usage::ZERO, |sum, figures| sum + figures.usage),
            models.values().filter_map(|figures| figures.cost_usd).sum(),
        ),
        None => (result.usage, result.total_cost_usd.unwrap_or(0.0)),
    };
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
    Ok(AgentReply {
        session_id,
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

/// The error for a process that printed no result (and no session error).
fn without_result(stream: &ParsedStream, end: &ProcessEnd) -> AgentError {
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

fn parse_id(text: &str) -> Option<SessionId> {
    text.parse().ok()
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
