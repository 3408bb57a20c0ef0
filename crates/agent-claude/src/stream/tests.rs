//! The parser and the classifier over lines captured from real runs of the CLI
//! (`tests/fixtures/2.1.328/`, made by `examples/capture_fixtures.rs`), and over damaged
//! copies of them.

use agent::{AgentError, AgentEvent, AgentReply, ErrorKind, ExitInfo, SessionId, Usage};
use serde_json::Value;

use super::*;
use crate::capture::{Line, LineSplitter};
use crate::outcome::{CallFacts, ProcessEnd, classify};

/// The pinned Claude Code version, whose fixtures these tests read: fixtures are kept per
/// version, so moving the pin means capturing new ones.
const PINNED_VERSION: &str = include_str!("../../../../claude-code.version").trim_ascii();
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A captured run: what the CLI printed and how it ended.
struct Fixture {
    stdout: Vec<u8>,
    stderr: String,
    exit: ExitInfo,
    assigned: SessionId,
    max_turns: Option<u32>,
    served: Usage,
}

fn fixture(name: &str) -> Fixture {
    let read = |suffix: &str| {
        let path = format!("{FIXTURES}/{PINNED_VERSION}/{name}.{suffix}");
        std::fs::read(&path).unwrap_or_else(|err| panic!("read {path}: {err}"))
    };
    let meta: Value = serde_json::from_slice(&read("meta.json")).unwrap();
    let args: Vec<&str> = meta["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    let max_turns = args
        .iter()
        .position(|arg| *arg == "--max-turns")
        .map(|at| args[at + 1].parse().unwrap());
    Fixture {
        stdout: read("stdout"),
        stderr: String::from_utf8(read("stderr")).unwrap(),
        exit: ExitInfo::Code(meta["exit_code"].as_i64().unwrap() as i32),
        assigned: meta["assigned_session_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        max_turns,
        served: serde_json::from_value(meta["served_usage"].clone()).unwrap(),
    }
}

struct Replay {
    events: Vec<AgentEvent>,
    stream: ParsedStream,
    outcome: Result<AgentReply, AgentError>,
}

/// Feeds `stdout` through the line splitter and the parser, in small reads as a pipe would
/// deliver it, then classifies.
fn replay(stdout: &[u8], stderr: &str, exit: ExitInfo, facts: CallFacts) -> Replay {
    let mut parser = StreamParser::new();
    let mut events = Vec::new();
    let mut splitter = LineSplitter::new(1 << 20);
    let mut feed = |line: Line<'_>| match line {
        Line::Complete(bytes) => parser.push_line(bytes, &mut |event| events.push(event)),
        Line::Oversized { .. } => parser.push_oversized(),
    };
    for chunk in stdout.chunks(777) {
        splitter.push(chunk, &mut feed);
    }
    splitter.finish(&mut feed);
    let stream = parser.finish();
    let outcome = classify(
        stream.clone(),
        facts,
        &ProcessEnd {
            exit,
            stderr: stderr.to_owned(),
        },
    );
    Replay {
        events,
        stream,
        outcome,
    }
}

fn replay_fixture(name: &str) -> (Fixture, Replay) {
    let fixture = fixture(name);
    let replay = replay(
        &fixture.stdout,
        &fixture.stderr,
        fixture.exit,
        CallFacts {
            assigned: fixture.assigned,
            max_turns: fixture.max_turns,
        },
    );
    (fixture, replay)
}

/// What the default model (`claude-opus-5-5` on 2.1.328) costs for `usage`, as the CLI
/// computes it: $4 per million input tokens, $20 per million output tokens, $0.20 per million
/// cache reads, $5 per million cache writes (observed by serving a million of each alone).
fn default_model_cost(usage: Usage) -> f64 {
    (usage.input_tokens as f64 * 4.0
        + usage.output_tokens as f64 * 20.0
        + usage.cache_read_tokens as f64 * 0.2
        + usage.cache_creation_tokens as f64 * 5.0)
        / 1_000_000.0
}

fn assert_cost(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-12,
        "cost {actual} is not {expected}"
    );
}

#[test]
fn a_successful_start_fills_the_whole_reply() {
    let (fixture, replay) = replay_fixture("success_text");
    let reply = replay.outcome.unwrap();
    assert_eq!(reply.session_id, fixture.assigned);
    assert_eq!(reply.subtype, "success");
    assert_eq!(reply.result_text.as_deref(), Some("The answer is 42."));
    assert_eq!(reply.usage, fixture.served);
    assert_cost(reply.cost_usd, default_model_cost(fixture.served));
    assert_eq!(reply.turns, 1);
    assert!(reply.duration > std::time::Duration::ZERO);
    assert_eq!(reply.model.as_deref(), Some("claude-opus-5-5"));
    assert_eq!(reply.context_window, Some(1_000_000));
    assert_eq!(reply.exit_code, Some(0));
    assert!(reply.permission_denials.is_empty());
    assert_eq!(
        replay.events,
        vec![
            AgentEvent::Init {
                session_id: fixture.assigned,
                model: Some("claude-opus-5-5".into())
            },
            AgentEvent::Text {
                text: "The answer is 42.".into()
            },
            // As streamed: message_start's figures, before the final output count.
            AgentEvent::Usage {
                usage: Usage {
                    output_tokens: 1,
                    ..fixture.served
                }
            },
        ]
    );
}

#[test]
fn a_resumed_call_reports_its_own_cost_not_the_sessions() {
    let (fixture, replay) = replay_fixture("resume_text");
    let reply = replay.outcome.unwrap();
    assert_eq!(reply.usage, fixture.served);
    assert_cost(reply.cost_usd, default_model_cost(fixture.served));
    // The CLI's own total covers the whole session: both calls.
    let total = replay.stream.result.unwrap().total_cost_usd.unwrap();
    assert!(
        total > reply.cost_usd + 1e-6,
        "{total} vs {}",
        reply.cost_usd
    );
}

#[test]
fn a_written_file_shows_as_tool_use_and_result() {
    let (fixture, replay) = replay_fixture("write_tool");
    let reply = replay.outcome.unwrap();
    assert_eq!(reply.usage, fixture.served);
    assert_eq!(reply.turns, 2);
    assert!(reply.permission_denials.is_empty());
    let tool_use = replay
        .events
        .iter()
        .find_map(|event| match event {
            AgentEvent::ToolUse { name, summary } => Some((name.clone(), summary.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(tool_use.0, "Write");
    assert!(tool_use.1.ends_with("/work/w/target.txt"), "{}", tool_use.1);
    assert!(
        replay
            .events
            .contains(&AgentEvent::ToolResult { is_error: false })
    );
    // Two responses, each counted once.
    let streamed: Vec<_> = replay
        .events
        .iter()
        .filter(|event| matches!(event, AgentEvent::Usage { .. }))
        .collect();
    assert_eq!(streamed.len(), 2);
}

#[test]
fn a_denied_tool_is_listed_and_the_call_still_succeeds() {
    let (_, replay) = replay_fixture("permission_denied");
    let reply = replay.outcome.unwrap();
    assert_eq!(reply.permission_denials.len(), 1);
    let denial = &reply.permission_denials[0];
    assert_eq!(denial.tool_name, "Write");
    assert!(denial.tool_use_id.is_some());
    let input: Value = serde_json::from_str(denial.tool_input.as_deref().unwrap()).unwrap();
    assert_eq!(input["file_path"], "/nonexistent/denied.txt");
    assert!(
        replay
            .events
            .contains(&AgentEvent::ToolResult { is_error: true })
    );
}

#[test]
fn max_turns_keeps_the_usage() {
    let (fixture, replay) = replay_fixture("max_turns");
    let err = replay.outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MaxTurns);
    let AgentError::MaxTurns { max_turns, reply } = &err else {
        unreachable!()
    };
    assert_eq!(*max_turns, Some(2));
    assert_eq!(reply.usage, fixture.served);
    assert_eq!(reply.subtype, "error_max_turns");
    assert_eq!(reply.exit_code, Some(1));
    assert_cost(reply.cost_usd, default_model_cost(fixture.served));
    assert_eq!(err.usage_spent(), fixture.served);
    assert_eq!(
        err.to_string(),
        "the agent reached its limit of 2 turns before finishing"
    );
}

#[test]
fn the_budget_limit_is_its_own_error() {
    let (fixture, replay) = replay_fixture("max_budget");
    let err = replay.outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExceeded);
    assert_eq!(err.usage_spent(), fixture.served);
    assert_cost(
        err.reply().unwrap().cost_usd,
        default_model_cost(fixture.served),
    );
    // The result's own `usage` misses the response that went over the limit.
    let result = replay.stream.result.unwrap();
    assert!(result.usage.input_tokens < fixture.served.input_tokens);
}

#[test]
fn server_errors_are_api_errors_with_their_status() {
    for (name, status) in [("api_500", 500), ("api_529", 529)] {
        let (_, replay) = replay_fixture(name);
        let err = replay.outcome.unwrap_err();
        let AgentError::Api {
            status: seen,
            message,
            reply,
        } = &err
        else {
            panic!("{name}: expected an API error, got {err:?}");
        };
        assert_eq!(*seen, Some(status), "{name}");
        assert!(
            message.contains(&format!("API Error: {status}")),
            "{message}"
        );
        assert_eq!(reply.as_ref().unwrap().usage, Usage::ZERO);
        assert!(err.is_transient(), "{name}");
    }
}

#[test]
fn refusals_no_retry_fixes_have_their_own_kinds() {
    for (name, kind, status, words) in [
        (
            "api_401",
            ErrorKind::Authentication,
            Some(401),
            "Invalid API key",
        ),
        (
            "api_403",
            ErrorKind::Permission,
            Some(403),
            "does not have permission",
        ),
        (
            "api_400_credit",
            ErrorKind::Billing,
            Some(400),
            "Credit balance is too low",
        ),
        (
            "api_404_model",
            ErrorKind::ModelUnavailable,
            Some(404),
            "issue with the selected model",
        ),
        (
            "not_logged_in",
            ErrorKind::Authentication,
            None,
            "Not logged in",
        ),
    ] {
        let (_, replay) = replay_fixture(name);
        let err = replay.outcome.unwrap_err();
        assert_eq!(err.kind(), kind, "{name}: {err:?}");
        let AgentError::Refused {
            status: seen,
            message,
            ..
        } = &err
        else {
            panic!("{name}: expected a refusal, got {err:?}");
        };
        assert_eq!(*seen, status, "{name}");
        assert!(message.contains(words), "{name}: {message}");
        assert!(!err.is_transient(), "{name}");
        assert_eq!(err.usage_spent(), Usage::ZERO, "{name}");
    }
}

#[test]
fn a_refused_connection_is_a_transient_api_error() {
    let (_, replay) = replay_fixture("connection_refused");
    let err = replay.outcome.unwrap_err();
    let AgentError::Api {
        status, message, ..
    } = &err
    else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(*status, None);
    assert!(message.contains("ECONNREFUSED"), "{message}");
    assert!(err.is_transient());
}

#[test]
fn a_429_is_a_rate_limit() {
    let (_, replay) = replay_fixture("api_429");
    let err = replay.outcome.unwrap_err();
    let AgentError::RateLimited {
        reset_at, message, ..
    } = &err
    else {
        panic!("expected a rate limit, got {err:?}");
    };
    // With an API key the CLI passes on no reset time (it only reads the subscription's
    // `anthropic-ratelimit-unified-reset`, into a `rate_limit_event`).
    assert_eq!(*reset_at, None);
    assert!(message.contains("429"), "{message}");
}

#[test]
fn a_rejected_rate_limit_event_gives_the_reset_time() {
    // Hand-made after the shape 2.1.328 builds (`type`, `rate_limit_info` with `status`,
    // `resetsAt`, `rateLimitType`): the stand-in cannot make the CLI emit it with an API key.
    let (fixture, _) = replay_fixture("api_429");
    let event = r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1900000000,"rateLimitType":"five_hour","isUsingOverage":false},"uuid":"u","session_id":"s"}"#;
    let mut stdout = event.as_bytes().to_vec();
    stdout.push(b'\n');
    stdout.extend_from_slice(&fixture.stdout);
    let replay = replay(
        &stdout,
        "",
        fixture.exit,
        CallFacts {
            assigned: fixture.assigned,
            max_turns: None,
        },
    );
    let AgentError::RateLimited { reset_at, .. } = replay.outcome.unwrap_err() else {
        panic!("expected a rate limit");
    };
    assert_eq!(
        reset_at,
        Some(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_000))
    );
}

#[test]
fn starting_a_used_session_is_session_in_use() {
    let (fixture, replay) = replay_fixture("session_in_use");
    assert!(fixture.stdout.is_empty());
    assert!(fixture.stderr.starts_with(&format!(
        "Error: Session ID {} is already in use.",
        fixture.assigned
    )));
    match replay.outcome.unwrap_err() {
        AgentError::SessionInUse { session_id } => assert_eq!(session_id, fixture.assigned),
        other => panic!("expected SessionInUse, got {other:?}"),
    }
}

#[test]
fn resuming_an_unknown_session_is_session_not_found_despite_its_result_line() {
    let (fixture, replay) = replay_fixture("session_not_found");
    assert_eq!(
        replay.stream.result.as_ref().unwrap().subtype.as_deref(),
        Some("error_during_execution")
    );
    match replay.outcome.unwrap_err() {
        AgentError::SessionNotFound { session_id } => assert_eq!(session_id, fixture.assigned),
        other => panic!("expected SessionNotFound, got {other:?}"),
    }
    // The result's `errors` alone are enough, without stderr.
    let without_stderr = replay_with_stderr(&fixture, "");
    assert_eq!(
        without_stderr.outcome.unwrap_err().kind(),
        ErrorKind::SessionNotFound
    );
}

fn replay_with_stderr(fixture: &Fixture, stderr: &str) -> Replay {
    replay(
        &fixture.stdout,
        stderr,
        fixture.exit,
        CallFacts {
            assigned: fixture.assigned,
            max_turns: fixture.max_turns,
        },
    )
}

#[test]
fn a_forked_session_is_a_mismatch_that_keeps_the_reply() {
    let (fixture, replay) = replay_fixture("forked_session");
    let err = replay.outcome.unwrap_err();
    let AgentError::SessionMismatch {
        assigned,
        reported,
        reply,
    } = &err
    else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(*assigned, fixture.assigned);
    assert_ne!(*reported, fixture.assigned);
    let reply = reply.as_ref().unwrap();
    assert_eq!(reply.session_id, *reported);
    assert_eq!(reply.usage, fixture.served);
}

#[test]
fn any_other_assigned_id_is_a_mismatch() {
    let fixture = fixture("success_text");
    let other = SessionId::new_v4();
    let replay = replay(
        &fixture.stdout,
        "",
        fixture.exit,
        CallFacts {
            assigned: other,
            max_turns: None,
        },
    );
    match replay.outcome.unwrap_err() {
        AgentError::SessionMismatch {
            assigned,
            reported,
            reply,
        } => {
            assert_eq!(assigned, other);
            assert_eq!(reported, fixture.assigned);
            assert_eq!(reply.unwrap().usage, fixture.served);
        }
        err => panic!("expected a mismatch, got {err:?}"),
    }
}

#[test]
fn a_call_stopped_while_waiting_printed_no_result_and_crashed() {
    let (fixture, replay) = replay_fixture("terminated_while_waiting");
    assert!(replay.stream.init.is_some());
    match replay.outcome.unwrap_err() {
        AgentError::Crashed { exit, .. } => assert_eq!(exit, fixture.exit),
        other => panic!("expected Crashed, got {other:?}"),
    }
}

#[test]
fn no_result_line_is_a_crash_even_with_exit_zero() {
    let fixture = fixture("success_text");
    let without_result: Vec<u8> = fixture
        .stdout
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.starts_with(br#"{"duration_api_ms""#) && !line.is_empty())
        .flat_map(|line| line.iter().copied().chain([b'\n']))
        .collect();
    assert!(
        without_result.len() < fixture.stdout.len(),
        "the result line was dropped"
    );
    let replay = replay(
        &without_result,
        "boom\n",
        ExitInfo::Code(0),
        CallFacts {
            assigned: fixture.assigned,
            max_turns: None,
        },
    );
    match replay.outcome.unwrap_err() {
        AgentError::Crashed { exit, stderr_tail } => {
            assert_eq!(exit, ExitInfo::Code(0));
            assert_eq!(stderr_tail, "boom\n");
        }
        other => panic!("expected Crashed, got {other:?}"),
    }
    let empty = replay_empty(ExitInfo::Code(0));
    assert_eq!(empty.outcome.unwrap_err().kind(), ErrorKind::Crashed);
}

fn replay_empty(exit: ExitInfo) -> Replay {
    replay(
        b"",
        "",
        exit,
        CallFacts {
            assigned: SessionId::new_v4(),
            max_turns: None,
        },
    )
}

#[test]
fn garbage_unknown_types_and_non_utf8_between_lines_are_tolerated() {
    let fixture = fixture("success_text");
    let mut noisy = Vec::new();
    noisy.extend_from_slice(b"Debugger attached.\n\xff\xfe not utf-8 \xc3\x28\n[1, 2]\n\n");
    for line in fixture.stdout.split(|&byte| byte == b'\n') {
        noisy.extend_from_slice(line);
        noisy.extend_from_slice(
            b"\n{\"type\":\"a_kind_from_the_future\",\"x\":1}\n{\"no_type\":true}\n",
        );
    }
    let clean = replay_with_stderr(&fixture, "");
    let replay = replay(
        &noisy,
        "",
        fixture.exit,
        CallFacts {
            assigned: fixture.assigned,
            max_turns: None,
        },
    );
    assert_eq!(replay.outcome.unwrap(), clean.outcome.unwrap());
    assert_eq!(replay.events, clean.events);
    assert_eq!(replay.stream.bad_lines, 3);
    assert_eq!(
        replay.stream.first_bad_line.as_deref(),
        Some("Debugger attached.")
    );
}

#[test]
fn garbage_without_a_result_is_malformed_output() {
    let replay = replay(
        b"Segmentation fault\n\xff\xff\n",
        "",
        ExitInfo::Code(0),
        CallFacts {
            assigned: SessionId::new_v4(),
            max_turns: None,
        },
    );
    let err = replay.outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedOutput);
    let text = err.to_string();
    assert!(text.contains("2 line(s) that are not JSON"), "{text}");
    assert!(text.contains("`Segmentation fault`"), "{text}");
}

#[test]
fn a_result_cut_off_mid_line_is_not_a_result() {
    let fixture = fixture("success_text");
    let cut = &fixture.stdout[..fixture.stdout.len() - 40];
    let replay = replay(
        cut,
        "",
        ExitInfo::Signal(9),
        CallFacts {
            assigned: fixture.assigned,
            max_turns: None,
        },
    );
    assert!(replay.stream.result.is_none());
    assert_eq!(
        replay.outcome.unwrap_err().kind(),
        ErrorKind::MalformedOutput
    );
}

#[test]
fn result_subtypes_map_to_error_kinds() {
    let id = SessionId::new_v4();
    let result = |fields: &str| {
        format!(
            r#"{{"type":"result","session_id":"{id}","num_turns":1,"duration_ms":5,"usage":{{"input_tokens":3,"output_tokens":2}},{fields}}}"#
        )
    };
    let cases = [
        (r#""subtype":"success","is_error":false"#, None),
        (
            r#""subtype":"error_during_execution","is_error":true,"errors":["tool crashed"]"#,
            Some(ErrorKind::Execution),
        ),
        (
            r#""subtype":"error_max_structured_output_retries","is_error":true"#,
            Some(ErrorKind::Execution),
        ),
        (
            r#""subtype":"success","is_error":true,"result":"oops""#,
            Some(ErrorKind::Api),
        ),
        (
            r#""subtype":"success","is_error":true,"terminal_reason":"api_error","api_error_status":400,"result":"bad request""#,
            Some(ErrorKind::Api),
        ),
        (
            r#""subtype":"success","is_error":true,"api_error_status":500,"api_error_type":"rate_limit_error""#,
            Some(ErrorKind::RateLimited),
        ),
        (
            r#""subtype":"error_max_budget_usd","is_error":true"#,
            Some(ErrorKind::BudgetExceeded),
        ),
    ];
    for (fields, expected) in cases {
        let line = result(fields);
        let replay = replay(
            line.as_bytes(),
            "",
            ExitInfo::Code(1),
            CallFacts {
                assigned: id,
                max_turns: None,
            },
        );
        let kind = replay.outcome.as_ref().err().map(AgentError::kind);
        assert_eq!(kind, expected, "{fields}");
        let usage = match &replay.outcome {
            Ok(reply) => reply.usage,
            Err(err) => err.usage_spent(),
        };
        assert_eq!(usage.input_tokens, 3, "{fields}: the figures are kept");
    }
    let unknown = replay(
        result(r#""subtype":"error_max_structured_output_retries","is_error":true"#).as_bytes(),
        "",
        ExitInfo::Code(1),
        CallFacts {
            assigned: id,
            max_turns: None,
        },
    );
    let text = unknown.outcome.unwrap_err().to_string();
    assert!(
        text.contains("`error_max_structured_output_retries`"),
        "{text}"
    );
}

#[test]
fn a_session_id_that_is_not_a_uuid_is_malformed() {
    let line =
        r#"{"type":"result","subtype":"success","is_error":false,"session_id":"not-a-uuid"}"#;
    let replay = replay(
        line.as_bytes(),
        "",
        ExitInfo::Code(0),
        CallFacts {
            assigned: SessionId::new_v4(),
            max_turns: None,
        },
    );
    let err = replay.outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedOutput);
    assert!(err.to_string().contains("`not-a-uuid`"));
}

#[test]
fn an_oversized_line_is_counted_and_skipped() {
    let fixture = fixture("success_text");
    let mut stdout = vec![b'x'; 3 << 20];
    stdout.push(b'\n');
    stdout.extend_from_slice(&fixture.stdout);
    let replay = replay(
        &stdout,
        "",
        fixture.exit,
        CallFacts {
            assigned: fixture.assigned,
            max_turns: None,
        },
    );
    assert_eq!(replay.stream.oversized_lines, 1);
    assert_eq!(replay.stream.bad_lines, 0);
    assert!(replay.outcome.is_ok());
}

#[test]
fn tool_summaries_are_short_single_lines() {
    assert_eq!(
        tool_summary(&serde_json::json!({"command": "cargo test\n  --all", "timeout": 5})),
        "cargo test --all"
    );
    let long = tool_summary(&serde_json::json!({"content": "y".repeat(500)}));
    assert_eq!(long.chars().count(), TOOL_SUMMARY_LEN);
    assert!(long.ends_with('…'));
    assert_eq!(tool_summary(&Value::Null), "null");
}

#[test]
fn a_text_event_carries_only_the_start_of_a_huge_text_block() {
    let text = "é".repeat(64 * 1024);
    let line = serde_json::json!({
        "type": "assistant",
        "message": {"id": "m1", "content": [{"type": "text", "text": text}]},
    })
    .to_string();
    let mut parser = StreamParser::new();
    let mut events = Vec::new();
    parser.push_line(line.as_bytes(), &mut |event| events.push(event));
    let [AgentEvent::Text { text: shown }] = events.as_slice() else {
        panic!("expected one text event, got {events:?}");
    };
    assert_eq!(shown.chars().count(), TEXT_EVENT_LEN + 1);
    assert!(shown.starts_with("éé") && shown.ends_with('…'));
    let short = serde_json::json!({
        "type": "assistant",
        "message": {"id": "m2", "content": [{"type": "text", "text": "fine"}]},
    })
    .to_string();
    events.clear();
    parser.push_line(short.as_bytes(), &mut |event| events.push(event));
    assert!(matches!(events.as_slice(), [AgentEvent::Text { text }] if text == "fine"));
}

#[test]
fn lines_and_fields_of_later_versions_change_nothing() {
    let fixture = fixture("write_tool");
    let later = [
        r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":600,"error_status":529,"error":"overloaded","session_id":"s","uuid":"u"}"#,
        r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_x","usage":{"input_tokens":999}}},"session_id":"s"}"#,
        r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":1900000000,"utilization":0.9}}"#,
        r#"{"type":"assistant","message":{"id":"msg_thinking","content":[{"type":"thinking","thinking":"…"},{"type":"redacted_thinking","data":"x"}],"usage":{"input_tokens":0,"output_tokens":0}},"a_new_field":[1]}"#,
        r#"{"type":"user","message":{"role":"user","content":[{"type":"image","source":{}}]},"tool_use_result":{"new":true}}"#,
        r#"{"type":"system"}"#,
        r#"{"type":"a_kind_from_the_future","subtype":"init","session_id":"not-a-uuid"}"#,
        r#"{"type":{"nested":"type"}}"#,
    ];
    let mut noisy = Vec::new();
    for line in fixture.stdout.split(|&byte| byte == b'\n') {
        for extra in later {
            noisy.extend_from_slice(extra.as_bytes());
            noisy.push(b'\n');
        }
        noisy.extend_from_slice(line);
        noisy.push(b'\n');
    }
    let clean = replay_with_stderr(&fixture, "");
    let replay = replay_with_stderr(
        &Fixture {
            stdout: noisy,
            ..fixture
        },
        "",
    );
    assert_eq!(replay.stream.bad_lines, 0);
    assert!(!replay.stream.rate_limit_rejected);
    assert_eq!(replay.stream.progress_usage, clean.stream.progress_usage);
    assert_eq!(replay.events, clean.events);
    assert_eq!(replay.outcome.unwrap(), clean.outcome.unwrap());
}

#[test]
fn a_result_with_retyped_fields_still_decides_the_call() {
    let id = SessionId::new_v4();
    let line = format!(
        r#"{{"type":"result","subtype":"success","is_error":false,"session_id":"{id}","num_turns":"two","duration_ms":"5","total_cost_usd":0.25,"usage":{{"input_tokens":3,"output_tokens":"2"}},"modelUsage":["not","a","map"],"permission_denials":{{"Write":1}},"errors":null,"result":"ok","terminal_reason":{{"new":"shape"}}}}"#
    );
    let replay = replay(
        line.as_bytes(),
        "",
        ExitInfo::Code(0),
        CallFacts {
            assigned: id,
            max_turns: None,
        },
    );
    let reply = replay.outcome.unwrap();
    assert_eq!(reply.session_id, id);
    assert_eq!(reply.result_text.as_deref(), Some("ok"));
    assert_eq!(reply.turns, 0);
    assert_eq!(reply.duration, std::time::Duration::ZERO);
    assert_eq!(reply.usage.input_tokens, 3);
    assert_eq!(reply.usage.output_tokens, 0);
    assert_cost(reply.cost_usd, 0.25);
    assert!(reply.permission_denials.is_empty());
}
