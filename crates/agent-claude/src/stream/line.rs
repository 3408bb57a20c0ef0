//! The lines of `stream-json` as serde types: one enum tagged by `type`, `system` lines tagged
//! again by `subtype`, each read leniently.
//!
//! The CLI adds line types, subtypes and fields from version to version, so tolerance is the
//! rule: an unknown `type` or `subtype` reads as an `Other` variant, unknown fields are ignored,
//! and a known field of another shape reads as absent (see `lenient`). Only a line that is not
//! a JSON object is refused ([`read`] gives `None`).
//!
//! The shapes are those of 2.1.328 (`tests/fixtures/2.1.328/`). Only what Baton uses is named;
//! the rest of each line (`uuid`, `timestamp`, the init line's tool list, …) is skipped.

use std::collections::BTreeMap;

use agent::{PermissionDenial, Usage};
use serde::Deserialize;
use serde::Deserializer;
use serde_json::Value;

use super::lenient::{self, Lenient};

/// One line of the stream.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StreamLine {
    /// `init` first; later notices such as `permission_denied`.
    System(SystemLine),
    /// One model response, or one content block of it (several lines then share a message
    /// id), with that response's usage.
    Assistant(MessageLine),
    /// What goes back to the model: tool results.
    User(MessageLine),
    /// How the call ended, last.
    Result(Box<ResultLine>),
    /// The Messages API's own events, printed only with `--include-partial-messages`, which
    /// Baton does not pass: the `assistant` lines carry the same, whole.
    StreamEvent,
    /// A subscription's rate-limit status, when the API's answer carried one.
    RateLimitEvent(RateLimitEvent),
    /// A type this adapter does not know, such as a later CLI's.
    #[serde(other)]
    Other,
}

/// A `system` line, by `subtype`.
#[derive(Debug, Deserialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub(crate) enum SystemLine {
    Init(InitLine),
    /// `permission_denied`, `api_retry`, and subtypes this adapter does not know.
    #[serde(other)]
    Other,
}

/// What the `init` line said.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct InitLine {
    /// The session id as printed (checked against the assigned one later).
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) session_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) model: Option<String>,
}

/// An `assistant` or `user` line: the message it carries.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageLine {
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) message: Option<Message>,
    /// On the CLI's synthetic message for a failed API call: its word for the failure
    /// (`authentication_failed`, `billing_error`, `model_not_found`, `server_error`, …).
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) error: Option<String>,
}

/// A Messages-API message.
#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    /// The API's message id (`msg_…`); the CLI's synthetic messages have a UUID.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) id: Option<String>,
    /// The content blocks; a string `content` (a prompt replayed) reads as none.
    #[serde(default, deserialize_with = "lenient::list")]
    pub(crate) content: Vec<Block>,
    #[serde(default, deserialize_with = "api_usage")]
    pub(crate) usage: Usage,
}

/// A content block, by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block {
    Text {
        #[serde(default, deserialize_with = "lenient::optional")]
        text: Option<String>,
    },
    ToolUse {
        #[serde(default, deserialize_with = "lenient::optional")]
        name: Option<String>,
        /// Whatever the tool takes: free-form JSON by nature.
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        #[serde(default, deserialize_with = "lenient::or_default")]
        is_error: bool,
    },
    /// `thinking`, `image`, and types this adapter does not know.
    #[serde(other)]
    Other,
}

/// A `rate_limit_event` line.
#[derive(Debug, Deserialize)]
pub(crate) struct RateLimitEvent {
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) rate_limit_info: Option<RateLimitInfo>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RateLimitInfo {
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub(crate) status: RateLimitStatus,
    /// When the limit resets, in Unix seconds.
    #[serde(rename = "resetsAt", default, deserialize_with = "lenient::optional")]
    pub(crate) resets_at: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RateLimitStatus {
    /// The request was refused until the reset.
    Rejected,
    /// `allowed`, `allowed_warning`, and statuses this adapter does not know.
    #[default]
    #[serde(other)]
    Other,
}

/// The `result` line. Every field is optional, so a renamed or retyped field costs that
/// field, not the whole result.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub(crate) struct ResultLine {
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) subtype: Option<String>,
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub(crate) is_error: bool,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) session_id: Option<String>,
    #[serde(default, deserialize_with = "turn_count")]
    pub(crate) num_turns: Option<u32>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) duration_ms: Option<u64>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) total_cost_usd: Option<f64>,
    #[serde(default, deserialize_with = "api_usage")]
    pub(crate) usage: Usage,
    /// `modelUsage`: for a resumed session this covers the whole session so far, not just
    /// this process (observed on 2.1.328).
    #[serde(rename = "modelUsage", default, deserialize_with = "model_usages")]
    pub(crate) model_usage: BTreeMap<String, ModelUsage>,
    /// `model_usage_since_last_result`: this process's figures per model. Its tokens are
    /// exact where `usage` is not: when the spending limit stops a call, `usage` misses the
    /// last response (observed on 2.1.328).
    #[serde(default, deserialize_with = "optional_model_usages")]
    pub(crate) model_usage_since_last_result: Option<BTreeMap<String, ModelUsage>>,
    #[serde(default, deserialize_with = "permission_denials")]
    pub(crate) permission_denials: Vec<PermissionDenial>,
    #[serde(default, deserialize_with = "error_texts")]
    pub(crate) errors: Vec<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) result: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) terminal_reason: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) api_error_status: Option<u16>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub(crate) api_error_type: Option<String>,
}

/// One model's entry in `modelUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(from = "ModelFigures")]
pub(crate) struct ModelUsage {
    pub(crate) usage: Usage,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) context_window: Option<u64>,
}

/// Reads one line (without its newline): `None` when it is not a JSON object.
pub(crate) fn read(line: &[u8]) -> Option<StreamLine> {
    match serde_json::from_slice(line) {
        Ok(line) => Some(line),
        // An object that fits no shape (no `type`, a `system` line without `subtype`) is
        // tolerated like an unknown type. Parsed whole to tell: this path is rare, and it
        // judges JSON exactly as the typed parse does (strings must be UTF-8, which skipping
        // them would not check).
        Err(_) => serde_json::from_slice::<Value>(line)
            .is_ok_and(|value| value.is_object())
            .then_some(StreamLine::Other),
    }
}

/// Usage in the Messages API's words; a count of another shape reads as 0.
#[derive(Default, Deserialize)]
struct ApiUsage {
    #[serde(default, deserialize_with = "lenient::or_default")]
    input_tokens: u64,
    #[serde(default, deserialize_with = "lenient::or_default")]
    output_tokens: u64,
    #[serde(default, deserialize_with = "lenient::or_default")]
    cache_read_input_tokens: u64,
    #[serde(default, deserialize_with = "lenient::or_default")]
    cache_creation_input_tokens: u64,
}

/// A `modelUsage` entry in the CLI's words.
#[derive(Default, Deserialize)]
struct ModelFigures {
    #[serde(
        rename = "inputTokens",
        default,
        deserialize_with = "lenient::or_default"
    )]
    input_tokens: u64,
    #[serde(
        rename = "outputTokens",
        default,
        deserialize_with = "lenient::or_default"
    )]
    output_tokens: u64,
    #[serde(
        rename = "cacheReadInputTokens",
        default,
        deserialize_with = "lenient::or_default"
    )]
    cache_read_tokens: u64,
    #[serde(
        rename = "cacheCreationInputTokens",
        default,
        deserialize_with = "lenient::or_default"
    )]
    cache_creation_tokens: u64,
    #[serde(rename = "costUSD", default, deserialize_with = "lenient::optional")]
    cost_usd: Option<f64>,
    #[serde(
        rename = "contextWindow",
        default,
        deserialize_with = "lenient::optional"
    )]
    context_window: Option<u64>,
}

/// A `permission_denials` entry.
#[derive(Default, Deserialize)]
struct Denial {
    #[serde(default, deserialize_with = "lenient::optional")]
    tool_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    tool_use_id: Option<String>,
    /// The tool's input, kept as JSON text: free-form by nature.
    #[serde(default)]
    tool_input: Option<Value>,
}

impl From<ApiUsage> for Usage {
    fn from(usage: ApiUsage) -> Usage {
        Usage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_read_tokens: usage.cache_read_input_tokens,
            cache_creation_tokens: usage.cache_creation_input_tokens,
        }
    }
}

impl From<ModelFigures> for ModelUsage {
    fn from(figures: ModelFigures) -> ModelUsage {
        ModelUsage {
            usage: Usage {
                input_tokens: figures.input_tokens,
                output_tokens: figures.output_tokens,
                cache_read_tokens: figures.cache_read_tokens,
                cache_creation_tokens: figures.cache_creation_tokens,
            },
            cost_usd: figures.cost_usd,
            context_window: figures.context_window,
        }
    }
}

impl From<Denial> for PermissionDenial {
    fn from(denial: Denial) -> PermissionDenial {
        PermissionDenial {
            tool_name: denial.tool_name.unwrap_or_else(|| String::from("?")),
            tool_use_id: denial.tool_use_id,
            tool_input: denial.tool_input.map(|input| input.to_string()),
        }
    }
}

fn api_usage<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Usage, D::Error> {
    lenient::or_default::<_, ApiUsage>(deserializer).map(Usage::from)
}

/// `num_turns`, saturated at `u32::MAX`.
fn turn_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let turns = lenient::optional::<_, u64>(deserializer)?;
    Ok(turns.map(|turns| u32::try_from(turns).unwrap_or(u32::MAX)))
}

/// A `modelUsage`-shaped map; an entry of another shape counts as zero.
fn model_usages<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, ModelUsage>, D::Error> {
    optional_model_usages(deserializer).map(Option::unwrap_or_default)
}

fn optional_model_usages<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, ModelUsage>>, D::Error> {
    let models = lenient::optional::<_, BTreeMap<String, Lenient<ModelUsage>>>(deserializer)?;
    Ok(models.map(|models| {
        models
            .into_iter()
            .map(|(model, figures)| (model, figures.0.unwrap_or_default()))
            .collect()
    }))
}

/// `permission_denials`; an entry of another shape is a denial of tool `?`.
fn permission_denials<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PermissionDenial>, D::Error> {
    let denials = lenient::or_default::<_, Vec<Lenient<Denial>>>(deserializer)?;
    Ok(denials
        .into_iter()
        .map(|denial| denial.0.unwrap_or_default().into())
        .collect())
}

/// `errors`: texts, and anything else as its JSON.
fn error_texts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let errors = lenient::or_default::<_, Vec<Value>>(deserializer)?;
    Ok(errors
        .into_iter()
        .map(|error| match error {
            Value::String(text) => text,
            other => other.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Option<StreamLine> {
        read(text.as_bytes())
    }

    #[test]
    fn unknown_types_and_subtypes_read_as_other() {
        for text in [
            r#"{"type":"a_kind_from_the_future","x":1}"#,
            r#"{"type":"system","subtype":"api_retry","attempt":1,"retry_delay_ms":500}"#,
            r#"{"type":"system","subtype":"permission_denied","tool_name":"Write"}"#,
            r#"{"type":"system","subtype":"compact_boundary"}"#,
        ] {
            assert!(
                matches!(
                    read_text(text),
                    Some(StreamLine::Other | StreamLine::System(SystemLine::Other))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn objects_that_fit_no_shape_are_tolerated_like_unknown_types() {
        for text in [
            r#"{"no_type":true}"#,
            r#"{"type":7}"#,
            r#"{"type":null}"#,
            r#"{"type":"system"}"#,
            r#"{"type":"system","subtype":["init"]}"#,
            "{}",
        ] {
            assert!(matches!(read_text(text), Some(StreamLine::Other)), "{text}");
        }
    }

    #[test]
    fn only_what_is_not_a_json_object_is_refused() {
        for text in [
            "Debugger attached.",
            "[1, 2]",
            "\"init\"",
            "42",
            "null",
            r#"{"type":"result""#,
            r#"{"type":"result"} trailing"#,
        ] {
            assert!(read_text(text).is_none(), "{text}");
        }
        assert!(read(b"{\"type\":\"result\",\"result\":\"\xff\"}").is_none());
    }

    #[test]
    fn a_stream_event_is_recognised_and_carries_nothing() {
        let text = r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}},"session_id":"s","parent_tool_use_id":null,"uuid":"u"}"#;
        assert!(matches!(read_text(text), Some(StreamLine::StreamEvent)));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let text = r#"{"type":"system","subtype":"init","session_id":"s-1","model":"m","tools":["Bash"],"fast_mode_state":"off","a_field_from_the_future":{"deep":[1,2]}}"#;
        let Some(StreamLine::System(SystemLine::Init(init))) = read_text(text) else {
            panic!("expected an init line");
        };
        assert_eq!(init.session_id.as_deref(), Some("s-1"));
        assert_eq!(init.model.as_deref(), Some("m"));
    }

    #[test]
    fn unknown_blocks_are_skipped_and_the_others_kept() {
        let text = r#"{"type":"assistant","message":{"id":"msg_1","content":[
            {"type":"thinking","thinking":"hmm","signature":"x"},
            {"type":"server_tool_use_from_the_future"},
            "not a block",
            {"no_type":1},
            {"type":"text","text":"Hello","citations":null},
            {"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"},"caller":{"type":"direct"}}
        ],"usage":{"input_tokens":3,"output_tokens":2,"iterations":[],"speed":"standard"}}}"#;
        let Some(StreamLine::Assistant(MessageLine {
            message: Some(message),
            ..
        })) = read_text(text)
        else {
            panic!("expected an assistant message");
        };
        assert_eq!(message.id.as_deref(), Some("msg_1"));
        assert!(matches!(
            message.content.as_slice(),
            [
                Block::Other,
                Block::Other,
                Block::Text { text: Some(text) },
                Block::ToolUse { name: Some(name), input },
            ] if text == "Hello" && name == "Bash" && input["command"] == "ls"
        ));
        assert_eq!(message.usage.input_tokens, 3);
        assert_eq!(message.usage.output_tokens, 2);
    }

    #[test]
    fn a_message_of_another_shape_reads_as_absent() {
        for text in [
            r#"{"type":"assistant","message":5}"#,
            r#"{"type":"assistant","message":null}"#,
            r#"{"type":"user"}"#,
        ] {
            assert!(
                matches!(
                    read_text(text),
                    Some(
                        StreamLine::Assistant(MessageLine { message: None, .. })
                            | StreamLine::User(MessageLine { message: None, .. })
                    )
                ),
                "{text}"
            );
        }
        // A replayed prompt: `content` is a string, not blocks.
        let prompt = r#"{"type":"user","message":{"role":"user","content":"do it"}}"#;
        let Some(StreamLine::User(MessageLine {
            message: Some(message),
            ..
        })) = read_text(prompt)
        else {
            panic!("expected a user message");
        };
        assert!(message.content.is_empty());
    }

    #[test]
    fn a_rate_limit_status_this_adapter_does_not_know_is_other() {
        let read_status = |status: &str| {
            let text = format!(
                r#"{{"type":"rate_limit_event","rate_limit_info":{{"status":{status},"resetsAt":1900000000,"overageStatus":"x"}}}}"#
            );
            match read_text(&text) {
                Some(StreamLine::RateLimitEvent(RateLimitEvent {
                    rate_limit_info: Some(info),
                })) => (info.status, info.resets_at),
                _ => panic!("expected a rate limit event: {text}"),
            }
        };
        assert_eq!(
            read_status(r#""rejected""#),
            (RateLimitStatus::Rejected, Some(1.9e9))
        );
        assert_eq!(read_status(r#""allowed""#).0, RateLimitStatus::Other);
        assert_eq!(
            read_status(r#""queued_for_the_future""#).0,
            RateLimitStatus::Other
        );
        assert_eq!(read_status("3").0, RateLimitStatus::Other);
    }

    fn result_line(fields: &str) -> ResultLine {
        match read_text(&format!(r#"{{"type":"result",{fields}}}"#)) {
            Some(StreamLine::Result(result)) => *result,
            _ => panic!("expected a result line: {fields}"),
        }
    }

    #[test]
    fn a_result_reads_every_field_baton_uses() {
        let result = result_line(
            r#""subtype":"success","is_error":false,"session_id":"s","num_turns":2,
            "duration_ms":15,"total_cost_usd":0.5,"result":"done","terminal_reason":"completed",
            "api_error_status":null,"usage":{"input_tokens":1,"output_tokens":2,
            "cache_read_input_tokens":3,"cache_creation_input_tokens":4},
            "modelUsage":{"m":{"inputTokens":10,"outputTokens":20,"cacheReadInputTokens":30,
            "cacheCreationInputTokens":40,"costUSD":0.5,"contextWindow":1000,"provider":"firstParty"}},
            "model_usage_since_last_result":{"m":{"inputTokens":1,"costUSD":0.25}},
            "permission_denials":[{"tool_name":"Write","tool_use_id":"t","tool_input":{"a":1}}],
            "errors":["one",{"two":2}],"subagent_stats":{"spawned":0}"#,
        );
        assert_eq!(result.subtype.as_deref(), Some("success"));
        assert_eq!(result.num_turns, Some(2));
        assert_eq!(result.duration_ms, Some(15));
        assert_eq!(result.total_cost_usd, Some(0.5));
        assert_eq!(
            result.usage,
            Usage {
                input_tokens: 1,
                output_tokens: 2,
                cache_read_tokens: 3,
                cache_creation_tokens: 4
            }
        );
        let model = result.model_usage["m"];
        assert_eq!(model.usage.cache_creation_tokens, 40);
        assert_eq!(model.cost_usd, Some(0.5));
        assert_eq!(model.context_window, Some(1000));
        let since = result.model_usage_since_last_result.unwrap()["m"];
        assert_eq!((since.usage.input_tokens, since.cost_usd), (1, Some(0.25)));
        assert_eq!(result.permission_denials[0].tool_name, "Write");
        assert_eq!(
            result.permission_denials[0].tool_input.as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert_eq!(result.errors, ["one", r#"{"two":2}"#]);
        assert_eq!(result.api_error_status, None);
    }

    #[test]
    fn a_retyped_result_field_costs_that_field_only() {
        let result = result_line(
            r#""subtype":"success","is_error":"yes","session_id":7,"num_turns":"2",
            "duration_ms":-1,"total_cost_usd":"0.5","usage":{"input_tokens":"1","output_tokens":2},
            "modelUsage":[],"model_usage_since_last_result":{"m":5},
            "permission_denials":[5,{"tool_input":null}],"errors":"boom",
            "api_error_status":70000,"result":"still read""#,
        );
        assert_eq!(result.subtype.as_deref(), Some("success"));
        assert_eq!(result.result.as_deref(), Some("still read"));
        assert!(!result.is_error);
        assert_eq!(result.session_id, None);
        assert_eq!(result.num_turns, None);
        assert_eq!(result.duration_ms, None);
        assert_eq!(result.total_cost_usd, None);
        assert_eq!(result.usage.input_tokens, 0);
        assert_eq!(result.usage.output_tokens, 2);
        assert!(result.model_usage.is_empty());
        assert_eq!(
            result.model_usage_since_last_result.unwrap()["m"],
            ModelUsage::default()
        );
        let tools: Vec<_> = result
            .permission_denials
            .iter()
            .map(|denial| (denial.tool_name.as_str(), denial.tool_input.clone()))
            .collect();
        assert_eq!(tools, [("?", None), ("?", None)]);
        assert!(result.errors.is_empty());
        assert_eq!(result.api_error_status, None);
        // Turns past u32 saturate rather than vanish.
        assert_eq!(
            result_line(r#""num_turns":99999999999"#).num_turns,
            Some(u32::MAX)
        );
    }
}
