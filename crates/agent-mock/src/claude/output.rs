//! The JSON objects `mock-claude` prints, shaped like Claude Code 2.1.328's (observed).

use agent::{SessionId, Usage};
use serde_json::{Map, Value, json};

use super::api_error::ApiFailure;

/// The tools the init line lists.
const TOOLS: [&str; 8] = [
    "Task",
    "Bash",
    "Edit",
    "Glob",
    "Grep",
    "Read",
    "TodoWrite",
    "Write",
];

/// The `usage` object of a result or a message.
pub(crate) fn usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
    })
}

/// One model's entry in `modelUsage`.
pub(crate) fn model_usage(model: &str, usage: &Usage, cost_usd: f64, context_window: u64) -> Value {
    if usage.is_zero() && cost_usd == 0.0 {
        return json!({});
    }
    json!({
        model: {
            "inputTokens": usage.input_tokens,
            "outputTokens": usage.output_tokens,
            "cacheReadInputTokens": usage.cache_read_tokens,
            "cacheCreationInputTokens": usage.cache_creation_tokens,
            "webSearchRequests": 0,
            "costUSD": cost_usd,
            "contextWindow": context_window,
            "maxOutputTokens": 32000,
        }
    })
}

pub(crate) struct Init<'a> {
    pub(crate) session_id: SessionId,
    pub(crate) cwd: &'a str,
    pub(crate) model: &'a str,
    pub(crate) permission_mode: &'a str,
    pub(crate) version: &'a str,
}

pub(crate) fn init(init: &Init<'_>) -> Value {
    json!({
        "type": "system",
        "subtype": "init",
        "cwd": init.cwd,
        "session_id": init.session_id.to_string(),
        "tools": TOOLS,
        "mcp_servers": [],
        "model": init.model,
        "permissionMode": init.permission_mode,
        "slash_commands": [],
        "apiKeySource": "none",
        "claude_code_version": init.version,
        "output_style": "default",
        "agents": [],
        "skills": [],
        "plugins": [],
        "uuid": new_uuid(),
    })
}

/// An assistant message with the given content blocks.
pub(crate) fn assistant(
    session_id: SessionId,
    model: &str,
    content: Value,
    message_usage: &Usage,
) -> Value {
    json!({
        "type": "assistant",
        "message": {
            "id": format!("msg_{}", uuid::Uuid::new_v4().simple()),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(message_usage),
        },
        "parent_tool_use_id": null,
        "session_id": session_id.to_string(),
        "uuid": new_uuid(),
    })
}

pub(crate) fn text_block(text: &str) -> Value {
    json!([{"type": "text", "text": text}])
}

pub(crate) fn write_tool_use(tool_use_id: &str, path: &str, contents: &str) -> Value {
    json!([{
        "type": "tool_use",
        "id": tool_use_id,
        "name": "Write",
        "input": {"file_path": path, "content": contents},
    }])
}

/// The user message that carries a `Write` tool's result.
pub(crate) fn write_tool_result(
    session_id: SessionId,
    tool_use_id: &str,
    path: &str,
    contents: &str,
) -> Value {
    json!({
        "type": "user",
        "message": {
            "role": "user",
            "content": [{
                "tool_use_id": tool_use_id,
                "type": "tool_result",
                "content": format!("File created successfully at: {path}"),
            }],
        },
        "parent_tool_use_id": null,
        "session_id": session_id.to_string(),
        "uuid": new_uuid(),
        "tool_use_result": {"type": "create", "filePath": path, "content": contents},
    })
}

/// The synthetic assistant message the CLI prints when the API fails.
pub(crate) fn api_error_message(session_id: SessionId, failure: &ApiFailure) -> Value {
    json!({
        "type": "assistant",
        "message": {
            "id": new_uuid(),
            "type": "message",
            "role": "assistant",
            "model": "<synthetic>",
            "content": [{"type": "text", "text": failure.text}],
            "stop_reason": "stop_sequence",
            "stop_sequence": "",
            "usage": usage(&Usage::ZERO),
        },
        "parent_tool_use_id": null,
        "session_id": session_id.to_string(),
        "uuid": new_uuid(),
        "error": failure.error,
        "is_api_error_message": true,
        "api_error_status": failure.status,
        "api_error_type": failure.error_type,
    })
}

/// A `rate_limit_event` line (reported shape; the CLI prints it for subscription logins).
pub(crate) fn rate_limit_event(session_id: SessionId, resets_at: u64) -> Value {
    json!({
        "type": "rate_limit_event",
        "rate_limit_info": {
            "status": "rejected",
            "resetsAt": resets_at,
            "rateLimitType": "five_hour",
        },
        "session_id": session_id.to_string(),
        "uuid": new_uuid(),
    })
}

/// Everything a `result` object reports.
pub(crate) struct ResultFields<'a> {
    pub(crate) subtype: &'a str,
    pub(crate) is_error: bool,
    pub(crate) session_id: SessionId,
    pub(crate) duration_ms: u64,
    pub(crate) duration_api_ms: u64,
    pub(crate) num_turns: u32,
    pub(crate) result: Option<&'a str>,
    pub(crate) stop_reason: Option<&'a str>,
    pub(crate) terminal_reason: Option<&'a str>,
    pub(crate) errors: Option<&'a [String]>,
    pub(crate) api_error: Option<(u16, &'a str)>,
    /// This process's usage.
    pub(crate) usage: Usage,
    /// The session's cost so far, this call included: the CLI restores it on `--resume`.
    pub(crate) total_cost_usd: f64,
    /// The session's `modelUsage` so far, this call included.
    pub(crate) model_usage: Value,
    /// This call's `modelUsage`, printed in `stream-json` only (as observed).
    pub(crate) model_usage_since_last_result: Option<Value>,
    pub(crate) permission_denials: &'a [String],
}

pub(crate) fn result(fields: &ResultFields<'_>) -> Value {
    let mut object = Map::new();
    let mut put = |key: &str, value: Value| {
        object.insert(key.to_owned(), value);
    };
    put("type", json!("result"));
    put("subtype", json!(fields.subtype));
    put("is_error", json!(fields.is_error));
    put("duration_ms", json!(fields.duration_ms));
    put("duration_api_ms", json!(fields.duration_api_ms));
    put("num_turns", json!(fields.num_turns));
    if let Some(result) = fields.result {
        put("result", json!(result));
    }
    put("stop_reason", json!(fields.stop_reason));
    put("session_id", json!(fields.session_id.to_string()));
    put("total_cost_usd", json!(fields.total_cost_usd));
    put("usage", usage(&fields.usage));
    put("modelUsage", fields.model_usage.clone());
    let denials: Vec<Value> = fields
        .permission_denials
        .iter()
        .enumerate()
        .map(|(index, tool)| {
            json!({
                "tool_name": tool,
                "tool_use_id": format!("toolu_denied_{index}"),
                "tool_input": {},
            })
        })
        .collect();
    put("permission_denials", Value::Array(denials));
    if let Some(reason) = fields.terminal_reason {
        put("terminal_reason", json!(reason));
    }
    match fields.api_error {
        Some((status, error_type)) => {
            put("api_error_status", json!(status));
            put("api_error_type", json!(error_type));
        }
        None if fields.subtype == "success" => put("api_error_status", Value::Null),
        None => {}
    }
    if let Some(errors) = fields.errors {
        put("errors", json!(errors));
    }
    put("uuid", json!(new_uuid()));
    if let Some(since) = &fields.model_usage_since_last_result {
        put("model_usage_since_last_result", since.clone());
    }
    Value::Object(object)
}

pub(crate) fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
