//! The Messages API's wire formats: server-sent events for a streamed message, the JSON of a
//! whole message, and the error body.

use agent::Usage;
use serde_json::{Value, json};

use crate::script::Block;

/// One server-sent event, rendered as the API sends it.
pub(crate) fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The events that open a streamed message: `message_start` (with the input side of the
/// usage, as the API reports it before generating) and a `ping`.
pub(crate) fn message_opening(id: &str, model: &str, usage: Usage) -> String {
    let start = json!({
        "type": "message_start",
        "message": {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {
                "input_tokens": usage.input_tokens,
                "cache_creation_input_tokens": usage.cache_creation_tokens,
                "cache_read_input_tokens": usage.cache_read_tokens,
                "output_tokens": 1,
            },
        },
    });
    event("message_start", &start) + &event("ping", &json!({"type": "ping"}))
}

/// The events of one content block at `index`. `tool_id` names a tool use.
pub(crate) fn content_block(index: usize, block: &Block, tool_id: &str) -> String {
    let (start, delta) = match block {
        Block::Text(text) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
        ),
        Block::ToolUse { name, input } => (
            json!({"type": "tool_use", "id": tool_id, "name": name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": input.to_string()}),
        ),
    };
    event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index, "content_block": start}),
    ) + &event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
    ) + &event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    )
}

/// The events that close a streamed message: `message_delta` with the stop reason and the
/// final usage (the API's `message_delta` usage is cumulative), then `message_stop`.
pub(crate) fn message_closing(stop_reason: &str, usage: Usage) -> String {
    event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": usage_json(usage),
        }),
    ) + &event("message_stop", &json!({"type": "message_stop"}))
}

/// A whole message, for a request that did not ask for a stream.
pub(crate) fn whole_message(id: &str, model: &str, text: &str, usage: Usage) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage_json(usage),
    })
}

/// The API's error body.
pub(crate) fn error_body(error_type: &str, message: &str, request_id: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    })
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_as_sse() {
        let text = event("ping", &json!({"type": "ping"}));
        assert_eq!(text, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
    }

    #[test]
    fn a_tool_use_block_streams_its_input_as_json() {
        let block = Block::ToolUse {
            name: "Write".into(),
            input: json!({"file_path": "/a", "content": "b"}),
        };
        let events = content_block(0, &block, "toolu_1");
        assert!(events.contains("\"id\":\"toolu_1\""));
        assert!(events.contains("input_json_delta"));
        assert!(events.contains(r#"{\"content\":\"b\",\"file_path\":\"/a\"}"#));
    }
}
