//! What the stand-in answers: a queue of [`Answer`]s, or a function of the request.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use agent::Usage;
use serde_json::Value;

use crate::request::RecordedRequest;

/// The usage an answer reports unless told otherwise: small, non-zero in every field that a
/// test is likely to check, and different per field so a swapped field shows.
pub(crate) const DEFAULT_USAGE: Usage = Usage {
    input_tokens: 12,
    output_tokens: 5,
    cache_read_tokens: 0,
    cache_creation_tokens: 0,
};

/// One content block of a scripted message.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text, streamed as one `text_delta`.
    Text(String),
    /// A tool call, its input streamed as one `input_json_delta`. The id is filled in by the
    /// stand-in (`toolu_standin_N`), unique within one stand-in.
    ToolUse { name: String, input: Value },
}

/// What the stand-in does with one streaming `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub(crate) kind: AnswerKind,
    pub(crate) usage: Usage,
    /// Waited before the response headers go out.
    pub(crate) delay: Duration,
    /// Waited after `message_start`, before the first content block.
    pub(crate) mid_stream_pause: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnswerKind {
    Message {
        blocks: Vec<Block>,
        stop_reason: String,
    },
    Error {
        status: u16,
        error_type: String,
        message: String,
        headers: Vec<(String, String)>,
    },
    /// Never answer: the request stays open until the stand-in stops.
    Hang,
}

impl Answer {
    /// A message with one text block that ends the turn (`stop_reason: end_turn`).
    pub fn text(text: impl Into<String>) -> Answer {
        Answer::message(vec![Block::Text(text.into())], "end_turn")
    }

    /// A message with one `tool_use` block (`stop_reason: tool_use`): the CLI runs the tool
    /// and sends its result in the next request.
    pub fn tool_use(name: impl Into<String>, input: Value) -> Answer {
        Answer::message(
            vec![Block::ToolUse {
                name: name.into(),
                input,
            }],
            "tool_use",
        )
    }

    /// A `Write` tool call that creates `file_path` (absolute) with `content`.
    pub fn write_file(
        file_path: impl AsRef<std::path::Path>,
        content: impl Into<String>,
    ) -> Answer {
        Answer::tool_use(
            "Write",
            serde_json::json!({
                "file_path": file_path.as_ref().to_string_lossy(),
                "content": content.into(),
            }),
        )
    }

    /// A message made of any blocks, with the given `stop_reason`.
    pub fn message(blocks: Vec<Block>, stop_reason: impl Into<String>) -> Answer {
        Answer::new(AnswerKind::Message {
            blocks,
            stop_reason: stop_reason.into(),
        })
    }

    /// An HTTP error with the API's JSON error body
    /// (`{"type":"error","error":{"type":…,"message":…}}`).
    pub fn error(status: u16, error_type: impl Into<String>, message: impl Into<String>) -> Answer {
        Answer::new(AnswerKind::Error {
            status,
            error_type: error_type.into(),
            message: message.into(),
            headers: Vec::new(),
        })
    }

    /// `500 api_error`.
    pub fn server_error() -> Answer {
        Answer::error(500, "api_error", "Internal server error")
    }

    /// `529 overloaded_error`, as the API answers when it is overloaded.
    pub fn overloaded() -> Answer {
        Answer::error(529, "overloaded_error", "Overloaded")
    }

    /// `429 rate_limit_error` with the hints the API gives: `retry-after` in seconds, and
    /// `anthropic-ratelimit-requests-reset` / `anthropic-ratelimit-tokens-reset` as RFC 3339
    /// times that far from now.
    pub fn rate_limited(retry_after: Duration) -> Answer {
        let reset = crate::rfc3339::from_now(retry_after);
        Answer::error(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization",
        )
        .with_header("retry-after", retry_after.as_secs().to_string())
        .with_header("anthropic-ratelimit-requests-reset", reset.clone())
        .with_header("anthropic-ratelimit-tokens-reset", reset)
    }

    /// An answer that never comes: the request is held open until the stand-in stops.
    pub fn hang() -> Answer {
        Answer::new(AnswerKind::Hang)
    }

    /// Sets the usage the message reports (`message_start` carries the input side,
    /// `message_delta` the final figures). Ignored by errors and hangs, which cost nothing.
    pub fn with_usage(mut self, usage: Usage) -> Answer {
        self.usage = usage;
        self
    }

    /// Waits this long before sending the response headers.
    pub fn with_delay(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }

    /// Waits this long in the middle of the stream: after `message_start`, before the content.
    pub fn with_mid_stream_pause(mut self, pause: Duration) -> Answer {
        self.mid_stream_pause = pause;
        self
    }

    /// Adds a response header to an error answer (messages and hangs ignore it).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Answer {
        if let AnswerKind::Error { headers, .. } = &mut self.kind {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// The usage this answer reports when it is served, or zero for errors and hangs.
    pub fn served_usage(&self) -> Usage {
        match self.kind {
            AnswerKind::Message { .. } => self.usage,
            AnswerKind::Error { .. } | AnswerKind::Hang => Usage::ZERO,
        }
    }

    fn new(kind: AnswerKind) -> Answer {
        Answer {
            kind,
            usage: DEFAULT_USAGE,
            delay: Duration::ZERO,
            mid_stream_pause: Duration::ZERO,
        }
    }
}

type Responder = Box<dyn FnMut(&RecordedRequest) -> Answer + Send>;

/// Where the answers to streaming message requests come from.
///
/// A queue, answered in order, then a function of the request or one answer repeated forever,
/// if given. Answers can be added to the queue while the stand-in runs
/// ([`StandIn::enqueue`](crate::StandIn::enqueue)), for a test that only knows its paths once
/// the environment exists. When nothing is left to answer with, the stand-in answers `500`
/// with a message that says so, which a test sees as an API error.
pub struct Script {
    queue: VecDeque<Answer>,
    then: Option<Answer>,
    responder: Option<Responder>,
    /// The answer to non-streaming message requests, when not the stand-in's fixed text.
    pub(crate) whole_messages: Option<Answer>,
}

impl Script {
    /// These answers, in order, one per request.
    pub fn queue(answers: impl IntoIterator<Item = Answer>) -> Script {
        Script {
            queue: answers.into_iter().collect(),
            then: None,
            responder: None,
            whole_messages: None,
        }
    }

    /// The same answer to every request (endless tool use, a server that is always down).
    pub fn always(answer: Answer) -> Script {
        Script::queue([]).then_always(answer)
    }

    /// Once the queue is used up, answers every further request with `answer`.
    pub fn then_always(mut self, answer: Answer) -> Script {
        self.then = Some(answer);
        self
    }

    /// Answers each request with whatever `responder` returns for it.
    pub fn from_fn(responder: impl FnMut(&RecordedRequest) -> Answer + Send + 'static) -> Script {
        Script {
            queue: VecDeque::new(),
            then: None,
            responder: Some(Box::new(responder)),
            whole_messages: None,
        }
    }

    /// Answers non-streaming message requests with `answer` (an error) too. The CLI falls
    /// back to a non-streaming request when a streaming one is refused with 404, so a model
    /// the API does not know must be refused on both.
    pub fn with_whole_messages(mut self, answer: Answer) -> Script {
        self.whole_messages = Some(answer);
        self
    }

    /// Adds answers to the end of the queue.
    pub(crate) fn enqueue(&mut self, answers: impl IntoIterator<Item = Answer>) {
        self.queue.extend(answers);
    }

    /// The answer to the next request: the queue first, then the function, then the answer
    /// repeated forever.
    pub(crate) fn next_answer(&mut self, request: &RecordedRequest) -> Answer {
        if let Some(answer) = self.queue.pop_front() {
            return answer;
        }
        if let Some(responder) = &mut self.responder {
            return responder(request);
        }
        match &self.then {
            Some(answer) => answer.clone(),
            None => Answer::error(
                500,
                "api_error",
                "the api-standin script has no answer left for this request",
            ),
        }
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("queue", &self.queue)
            .field("then", &self.then)
            .field("responder", &self.responder.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RecordedRequest {
        RecordedRequest::for_tests("POST", "/v1/messages?beta=true", serde_json::json!({}))
    }

    #[test]
    fn queue_then_repeat_then_exhausted() {
        let mut script = Script::queue([Answer::text("a")]).then_always(Answer::overloaded());
        assert_eq!(script.next_answer(&request()), Answer::text("a"));
        assert_eq!(script.next_answer(&request()), Answer::overloaded());
        assert_eq!(script.next_answer(&request()), Answer::overloaded());

        let mut empty = Script::queue([]);
        match empty.next_answer(&request()).kind {
            AnswerKind::Error { status, .. } => assert_eq!(status, 500),
            other => panic!("expected an error answer, got {other:?}"),
        }
    }

    #[test]
    fn enqueued_answers_come_before_the_responder() {
        let mut script = Script::from_fn(|_| Answer::text("from fn"));
        script.enqueue([Answer::text("queued")]);
        assert_eq!(script.next_answer(&request()), Answer::text("queued"));
        assert_eq!(script.next_answer(&request()), Answer::text("from fn"));
    }

    #[test]
    fn responder_sees_the_request() {
        let mut script = Script::from_fn(|request| Answer::text(request.path.clone()));
        assert_eq!(
            script.next_answer(&request()),
            Answer::text("/v1/messages?beta=true")
        );
    }

    #[test]
    fn errors_cost_nothing_and_keep_their_headers() {
        let answer = Answer::rate_limited(Duration::from_secs(30));
        assert_eq!(answer.served_usage(), Usage::ZERO);
        let AnswerKind::Error { headers, .. } = &answer.kind else {
            panic!("rate_limited is an error answer");
        };
        assert!(headers.contains(&("retry-after".into(), "30".into())));
        assert!(
            headers
                .iter()
                .any(|(name, _)| name == "anthropic-ratelimit-requests-reset")
        );
        assert_eq!(Answer::text("x").served_usage(), DEFAULT_USAGE);
    }
}
