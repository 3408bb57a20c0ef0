//! Reading Claude Code's `stream-json` output: one JSON object per line.
//!
//! The parser is pure: it takes lines and hands back events and a summary, with no I/O, so it
//! is tested over lines captured from real runs (`tests/fixtures/<version>/`).
//!
//! What it relies on (2.1.328): a `system`/`init` line with the session id and model first;
//! `assistant` lines with the model's content blocks and that response's usage (several lines
//! may share one message id, one per content block); `user` lines with tool results;
//! `rate_limit_event` lines; and the `result` line last. Anything else is tolerated and
//! skipped, and lines that are not JSON are counted, not fatal.

use std::collections::{BTreeMap, HashSet};

use agent::{AgentEvent, Usage};
use serde_json::Value;

/// The longest text kept from a bad line, for the error that reports it.
const BAD_LINE_EXCERPT: usize = 200;
/// The longest one-line summary of a tool's input.
const TOOL_SUMMARY_LEN: usize = 120;
/// How much of an assistant text block a progress event carries (the answer itself is the
/// result line's): events queue between the agent and the run, so each must stay small.
const TEXT_EVENT_LEN: usize = 1000;

/// What the `init` line said.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InitLine {
    /// The session id as printed (checked against the assigned one later).
    pub(crate) session_id: Option<String>,
    pub(crate) model: Option<String>,
}

/// The `result` line, read leniently: every field is optional, so a renamed or retyped field
/// costs that field, not the whole result.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ResultLine {
    pub(crate) subtype: Option<String>,
    pub(crate) is_error: bool,
    pub(crate) session_id: Option<String>,
    pub(crate) num_turns: Option<u32>,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) total_cost_usd: Option<f64>,
    pub(crate) usage: Usage,
    /// `modelUsage`: for a resumed session this covers the whole session so far, not just
    /// this process (observed on 2.1.328).
    pub(crate) model_usage: BTreeMap<String, ModelUsage>,
    /// `model_usage_since_last_result`: this process's figures per model. Its tokens are
    /// exact where `usage` is not: when the spending limit stops a call, `usage` misses the
    /// last response (observed on 2.1.328).
    pub(crate) model_usage_since_last_result: Option<BTreeMap<String, ModelUsage>>,
    pub(crate) permission_denials: Vec<agent::PermissionDenial>,
    pub(crate) errors: Vec<String>,
    pub(crate) result: Option<String>,
    pub(crate) terminal_reason: Option<String>,
    pub(crate) api_error_status: Option<u16>,
    pub(crate) api_error_type: Option<String>,
}

/// One model's entry in `modelUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct ModelUsage {
    pub(crate) usage: Usage,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) context_window: Option<u64>,
}

/// Everything learned from a whole stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ParsedStream {
    pub(crate) init: Option<InitLine>,
    pub(crate) result: Option<ResultLine>,
    /// Usage summed over the model responses seen (one per message id), as streamed. It is
    /// what a stopped call is known to have spent; the `result` has the exact figures.
    pub(crate) progress_usage: Usage,
    /// When a `rate_limit_event` said the limit was hit: when it resets (unix seconds).
    pub(crate) rate_limit_resets_at: Option<u64>,
    pub(crate) rate_limit_rejected: bool,
    /// Lines that were not JSON objects.
    pub(crate) bad_lines: usize,
    pub(crate) first_bad_line: Option<String>,
    /// Lines too long to keep (skipped unread).
    pub(crate) oversized_lines: usize,
}

/// Reads a stream line by line.
#[derive(Debug, Default)]
pub(crate) struct StreamParser {
    parsed: ParsedStream,
    messages_seen: HashSet<String>,
}

impl StreamParser {
    pub(crate) fn new() -> StreamParser {
        StreamParser::default()
    }

    /// Reads one line (without its newline); `emit` gets the events it carries.
    pub(crate) fn push_line(&mut self, line: &[u8], emit: &mut impl FnMut(AgentEvent)) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line) else {
            self.bad_line(line);
            return;
        };
        let object = Value::Object(object);
        match text(&object, "type") {
            Some("system") if text(&object, "subtype") == Some("init") => self.init(&object, emit),
            Some("assistant") => self.assistant(&object, emit),
            Some("user") => user(&object, emit),
            Some("rate_limit_event") => self.rate_limit_event(&object),
            Some("result") => self.parsed.result = Some(result_line(&object)),
            // `stream_event`, other `system` subtypes, and kinds added in later versions.
            _ => {}
        }
    }

    /// Notes a line that was too long to keep.
    pub(crate) fn push_oversized(&mut self) {
        self.parsed.oversized_lines += 1;
    }

    /// The usage streamed so far.
    pub(crate) fn progress_usage(&self) -> Usage {
        self.parsed.progress_usage
    }

    pub(crate) fn finish(self) -> ParsedStream {
        self.parsed
    }

    fn bad_line(&mut self, line: &[u8]) {
        self.parsed.bad_lines += 1;
        if self.parsed.first_bad_line.is_none() {
            let text = String::from_utf8_lossy(line);
            self.parsed.first_bad_line = Some(excerpt(text.trim(), BAD_LINE_EXCERPT));
        }
    }

    fn init(&mut self, object: &Value, emit: &mut impl FnMut(AgentEvent)) {
        let init = InitLine {
            session_id: text(object, "session_id").map(str::to_owned),
            model: text(object, "model").map(str::to_owned),
        };
        if let Some(session_id) = init.session_id.as_deref().and_then(|id| id.parse().ok()) {
            emit(AgentEvent::Init {
                session_id,
                model: init.model.clone(),
            });
        }
        self.parsed.init = Some(init);
    }

    fn assistant(&mut self, object: &Value, emit: &mut impl FnMut(AgentEvent)) {
        let Some(message) = object.get("message") else {
            return;
        };
        for block in blocks(message) {
            match text(block, "type") {
                Some("text") => {
                    if let Some(text) = text(block, "text").filter(|text| !text.is_empty()) {
                        emit(AgentEvent::Text {
                            text: prefix(text, TEXT_EVENT_LEN),
                        });
                    }
                }
                Some("tool_use") => emit(AgentEvent::ToolUse {
                    name: text(block, "name").unwrap_or("?").into(),
                    summary: tool_summary(block.get("input").unwrap_or(&Value::Null)),
                }),
                _ => {}
            }
        }
        // One response can arrive as several lines (one per content block) that repeat its
        // usage: count each message id once.
        let usage = message.get("usage").map(usage_of).unwrap_or_default();
        let id = text(message, "id").unwrap_or_default();
        if !usage.is_zero() && self.messages_seen.insert(id.to_owned()) {
            self.parsed.progress_usage += usage;
            emit(AgentEvent::Usage { usage });
        }
    }

    fn rate_limit_event(&mut self, object: &Value) {
        let Some(info) = object.get("rate_limit_info") else {
            return;
        };
        if text(info, "status") == Some("rejected") {
            self.parsed.rate_limit_rejected = true;
            if let Some(resets_at) = info.get("resetsAt").and_then(Value::as_f64) {
                self.parsed.rate_limit_resets_at = Some(resets_at.max(0.0) as u64);
            }
        }
    }
}

fn user(object: &Value, emit: &mut impl FnMut(AgentEvent)) {
    let Some(message) = object.get("message") else {
        return;
    };
    for block in blocks(message) {
        if text(block, "type") == Some("tool_result") {
            emit(AgentEvent::ToolResult {
                is_error: block.get("is_error").and_then(Value::as_bool) == Some(true),
            });
        }
    }
}

fn result_line(object: &Value) -> ResultLine {
    let model_usage = |key: &str| {
        object.get(key).and_then(Value::as_object).map(|models| {
            models
                .iter()
                .map(|(model, figures)| {
                    let count = |key: &str| figures.get(key).and_then(Value::as_u64).unwrap_or(0);
                    let figures = ModelUsage {
                        usage: Usage {
                            input_tokens: count("inputTokens"),
                            output_tokens: count("outputTokens"),
                            cache_read_tokens: count("cacheReadInputTokens"),
                            cache_creation_tokens: count("cacheCreationInputTokens"),
                        },
                        cost_usd: figures.get("costUSD").and_then(Value::as_f64),
                        context_window: figures.get("contextWindow").and_then(Value::as_u64),
                    };
                    (model.clone(), figures)
                })
                .collect::<BTreeMap<_, _>>()
        })
    };
    ResultLine {
        subtype: text(object, "subtype").map(str::to_owned),
        is_error: object.get("is_error").and_then(Value::as_bool) == Some(true),
        session_id: text(object, "session_id").map(str::to_owned),
        num_turns: object
            .get("num_turns")
            .and_then(Value::as_u64)
            .map(|turns| u32::try_from(turns).unwrap_or(u32::MAX)),
        duration_ms: object.get("duration_ms").and_then(Value::as_u64),
        total_cost_usd: object.get("total_cost_usd").and_then(Value::as_f64),
        usage: object.get("usage").map(usage_of).unwrap_or_default(),
        model_usage: model_usage("modelUsage").unwrap_or_default(),
        model_usage_since_last_result: model_usage("model_usage_since_last_result"),
        permission_denials: object
            .get("permission_denials")
            .and_then(Value::as_array)
            .map(|denials| denials.iter().map(permission_denial).collect())
            .unwrap_or_default(),
        errors: object
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .map(|error| match error {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        result: text(object, "result").map(str::to_owned),
        terminal_reason: text(object, "terminal_reason").map(str::to_owned),
        api_error_status: object
            .get("api_error_status")
            .and_then(Value::as_u64)
            .and_then(|status| u16::try_from(status).ok()),
        api_error_type: text(object, "api_error_type").map(str::to_owned),
    }
}

fn permission_denial(denial: &Value) -> agent::PermissionDenial {
    agent::PermissionDenial {
        tool_name: text(denial, "tool_name").unwrap_or("?").into(),
        tool_use_id: text(denial, "tool_use_id").map(str::to_owned),
        tool_input: denial
            .get("tool_input")
            .filter(|input| !input.is_null())
            .map(Value::to_string),
    }
}

/// Usage in the Messages API's words (`input_tokens`, `cache_read_input_tokens`, …).
fn usage_of(usage: &Value) -> Usage {
    let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: count("input_tokens"),
        output_tokens: count("output_tokens"),
        cache_read_tokens: count("cache_read_input_tokens"),
        cache_creation_tokens: count("cache_creation_input_tokens"),
    }
}

fn blocks(message: &Value) -> &[Value] {
    message
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A short, single-line description of a tool's input: its path, command or pattern when it
/// has one, else its JSON.
fn tool_summary(input: &Value) -> String {
    let named = [
        "file_path",
        "notebook_path",
        "command",
        "pattern",
        "path",
        "url",
        "query",
        "description",
    ]
    .into_iter()
    .find_map(|key| text(input, key));
    let summary = match named {
        Some(text) => text.to_owned(),
        None => input.to_string(),
    };
    excerpt(&summary, TOOL_SUMMARY_LEN)
}

/// The first `max` characters of `text`, with `…` when it was longer. Reads no further than
/// it keeps: an agent's text block can be megabytes.
fn prefix(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => {
            let mut cut = text[..end].to_owned();
            cut.push('…');
            cut
        }
    }
}

/// `text` on one line (whitespace runs become one space), cut to `max` characters.
fn excerpt(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests;
