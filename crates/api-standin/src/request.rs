//! The stand-in's record of one request it received.

use std::collections::BTreeMap;

use serde_json::Value;

/// One HTTP request as the stand-in received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path with its query, such as `/v1/messages?beta=true`.
    pub path: String,
    /// Headers by lowercase name; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON, or `Value::Null` when it was empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// The value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The session the CLI says it is in (`X-Claude-Code-Session-Id`).
    pub fn session_id(&self) -> Option<&str> {
        self.header("x-claude-code-session-id")
    }

    /// Whether this is a `POST /v1/messages` (any query), not `count_tokens` or another path.
    pub fn is_messages(&self) -> bool {
        let path = self.path.split('?').next().unwrap_or_default();
        self.method == "POST" && path == "/v1/messages"
    }

    /// Whether the request asked for a streamed answer (`"stream": true`).
    pub fn is_streaming(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The conversation sent (`messages`), empty when there is none.
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The model asked for.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Every text of the system prompt, joined with newlines (it is a string or a list of
    /// text blocks).
    pub fn system_text(&self) -> String {
        match self.body.get("system") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(blocks)) => blocks
                .iter()
                .filter_map(|block| block.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }

    /// Whether any message's content holds `needle` in a text, a tool input or a tool result.
    /// A plain substring search over the JSON of `messages`, which is what a test wants when it
    /// asks "does the resumed request carry the earlier conversation".
    pub fn messages_contain(&self, needle: &str) -> bool {
        self.messages()
            .iter()
            .any(|message| strings_in(message).iter().any(|text| text.contains(needle)))
    }

    /// The ids of the `tool_result` blocks in the last message, in order.
    pub fn tool_result_ids(&self) -> Vec<String> {
        let Some(last) = self.messages().last() else {
            return Vec::new();
        };
        last.get("content")
            .and_then(Value::as_array)
            .map(|blocks| {
                blocks
                    .iter()
                    .filter(|block| {
                        block.get("type").and_then(Value::as_str) == Some("tool_result")
                    })
                    .filter_map(|block| block.get("tool_use_id").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    #[cfg(test)]
    pub(crate) fn for_tests(method: &str, path: &str, body: Value) -> RecordedRequest {
        RecordedRequest {
            method: method.into(),
            path: path.into(),
            headers: BTreeMap::new(),
            body,
        }
    }
}

/// Every string inside a JSON value, depth first.
fn strings_in(value: &Value) -> Vec<&str> {
    let mut found = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(text) => found.push(text.as_str()),
            Value::Array(items) => stack.extend(items),
            Value::Object(fields) => stack.extend(fields.values()),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_parts_a_test_checks() {
        let mut request = RecordedRequest::for_tests(
            "POST",
            "/v1/messages?beta=true",
            json!({
                "model": "m",
                "stream": true,
                "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "remember 42"}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
                ]
            }),
        );
        request
            .headers
            .insert("x-claude-code-session-id".into(), "abc".into());
        assert!(request.is_messages());
        assert!(request.is_streaming());
        assert_eq!(request.session_id(), Some("abc"));
        assert_eq!(request.header("X-Claude-Code-Session-Id"), Some("abc"));
        assert_eq!(request.model(), Some("m"));
        assert_eq!(request.system_text(), "a\nb");
        assert!(request.messages_contain("remember 42"));
        assert!(!request.messages_contain("forget"));
        assert_eq!(request.tool_result_ids(), vec!["t1".to_owned()]);
    }

    #[test]
    fn count_tokens_is_not_a_messages_request() {
        let request =
            RecordedRequest::for_tests("POST", "/v1/messages/count_tokens?beta=true", json!({}));
        assert!(!request.is_messages());
    }
}
