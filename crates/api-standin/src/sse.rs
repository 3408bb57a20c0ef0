//! The Messages API's wire formats: server-sent events for a streamed message, the JSON of a
//! whole message, and the error body.

use std::time::{Duration, SystemTime};

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

/// `now + after` as an RFC 3339 UTC time with whole seconds, as the API's rate-limit reset
/// headers give it.
pub(crate) fn rfc3339_from_now(after: Duration) -> String {
    let at = SystemTime::now() + after;
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default();
    rfc3339(secs)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (days to civil date after Howard Hinnant's
/// `civil_from_days`).
fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs_of_day = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_900_000_000), "2030-03-17T17:46:40Z");
    }

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
