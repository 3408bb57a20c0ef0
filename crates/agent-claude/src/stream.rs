//! Reading Claude Code's `stream-json` output: one JSON object per line.
//!
//! The parser is pure: it takes lines and hands back events and a summary, with no I/O, so it
//! is tested over lines captured from real runs (`tests/fixtures/<version>/`).
//!
//! What it relies on (2.1.328): a `system`/`init` line with the session id and model first;
//! `assistant` lines with the model's content blocks and that response's usage (several lines
//! may share one message id, one per content block); `user` lines with tool results;
//! `rate_limit_event` lines; and the `result` line last. Each line is read into the serde
//! types of `line`; anything else (`stream_event`, other `system` subtypes, types and fields
//! of later versions) is tolerated and skipped, and lines that are not JSON objects are
//! counted, not fatal.
//!
//! Memory stays small whatever the agent prints: a line is dropped once read, text events
//! carry the start of a text block only, and what is kept is the init and result lines, the
//! summed usage and the ids of the messages seen.

use std::collections::HashSet;

use agent::{AgentEvent, Usage};
use serde_json::Value;

use self::line::{
    Block, Message, MessageLine, RateLimitEvent, RateLimitStatus, StreamLine, SystemLine,
};
pub(crate) use self::line::{InitLine, ResultLine};

mod lenient;
mod line;

/// The longest text kept from a bad line, for the error that reports it.
const BAD_LINE_EXCERPT: usize = 200;
/// The longest one-line summary of a tool's input.
const TOOL_SUMMARY_LEN: usize = 120;
/// How much of an assistant text block a progress event carries (the answer itself is the
/// result line's): events queue between the agent and the run, so each must stay small.
const TEXT_EVENT_LEN: usize = 1000;

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
    /// The CLI's word for the last failed API call (the `error` of its synthetic message).
    pub(crate) api_error_word: Option<String>,
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
        let Some(read) = line::read(line) else {
            self.bad_line(line);
            return;
        };
        match read {
            StreamLine::System(SystemLine::Init(init)) => self.init(init, emit),
            StreamLine::Assistant(MessageLine {
                message: Some(message),
                error,
            }) => {
                if error.is_some() {
                    self.parsed.api_error_word = error;
                }
                self.assistant(message, emit);
            }
            StreamLine::User(MessageLine {
                message: Some(message),
                ..
            }) => tool_results(&message, emit),
            StreamLine::RateLimitEvent(event) => self.rate_limit_event(event),
            StreamLine::Result(result) => self.parsed.result = Some(*result),
            StreamLine::Assistant(_)
            | StreamLine::User(_)
            | StreamLine::System(SystemLine::Other)
            | StreamLine::StreamEvent
            | StreamLine::Other => {}
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

    fn init(&mut self, init: InitLine, emit: &mut impl FnMut(AgentEvent)) {
        if let Some(session_id) = init.session_id.as_deref().and_then(|id| id.parse().ok()) {
            emit(AgentEvent::Init {
                session_id,
                model: init.model.clone(),
            });
        }
        self.parsed.init = Some(init);
    }

    fn assistant(&mut self, message: Message, emit: &mut impl FnMut(AgentEvent)) {
        for block in &message.content {
            match block {
                Block::Text { text: Some(text) } if !text.is_empty() => emit(AgentEvent::Text {
                    text: prefix(text, TEXT_EVENT_LEN),
                }),
                Block::ToolUse { name, input } => emit(AgentEvent::ToolUse {
                    name: name.clone().unwrap_or_else(|| String::from("?")),
                    summary: tool_summary(input),
                }),
                Block::Text { .. } | Block::ToolResult { .. } | Block::Other => {}
            }
        }
        // One response can arrive as several lines (one per content block) that repeat its
        // usage: count each message id once.
        let usage = message.usage;
        let id = message.id.unwrap_or_default();
        if !usage.is_zero() && self.messages_seen.insert(id) {
            self.parsed.progress_usage += usage;
            emit(AgentEvent::Usage { usage });
        }
    }

    fn rate_limit_event(&mut self, event: RateLimitEvent) {
        let Some(info) = event.rate_limit_info else {
            return;
        };
        if info.status == RateLimitStatus::Rejected {
            self.parsed.rate_limit_rejected = true;
            if let Some(resets_at) = info.resets_at {
                self.parsed.rate_limit_resets_at = Some(resets_at.max(0.0) as u64);
            }
        }
    }
}

/// The tool results a `user` message carries.
fn tool_results(message: &Message, emit: &mut impl FnMut(AgentEvent)) {
    for block in &message.content {
        if let Block::ToolResult { is_error } = block {
            emit(AgentEvent::ToolResult {
                is_error: *is_error,
            });
        }
    }
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
    .find_map(|key| input.get(key).and_then(Value::as_str));
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
