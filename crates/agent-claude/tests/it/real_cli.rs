//! The adapter driving the real `claude` CLI against the stand-in.

use std::time::Duration;

use agent::{
    Agent, AgentError, AgentEvent, CancellationToken, ErrorKind, EventSink, PermissionMode,
    SessionId, SessionPlan, Usage,
};
use agent_claude::{ClaudeAgent, ClaudeConfig};
use api_standin::{Answer, Script};
use serde_json::json;

use crate::support::{Harness, assert_group_gone, recorder, spawned_pid};

fn usage(input: u64, output: u64, cache_read: u64, cache_creation: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_creation_tokens: cache_creation,
    }
}

/// What the CLI's default model (`claude-opus-5-5` on 2.1.328) costs for `usage`, as the CLI
/// computes it: $4 / $20 / $0.20 / $5 per million input / output / cache-read / cache-write
/// tokens (observed by serving a million of each alone).
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

#[tokio::test]
async fn start_then_resume_keeps_one_session() {
    let Some(h) = Harness::new(
        "start_then_resume_keeps_one_session",
        Script::queue([
            Answer::text("I will remember ALPHA-ANSWER."),
            Answer::text("The word was PAPAYA."),
        ]),
    ) else {
        return;
    };
    let id = SessionId::new_v4();
    let (events, seen) = recorder();
    let first = h
        .agent
        .call(
            h.call("Remember the word PAPAYA.", SessionPlan::Start(id)),
            events.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(first.session_id, id);
    assert_eq!(
        first.result_text.as_deref(),
        Some("I will remember ALPHA-ANSWER.")
    );
    assert!(
        h.env
            .transcript_path(&h.work_dir, &id.to_string())
            .is_file()
    );

    let second = h
        .agent
        .call(
            h.call("Which word was it?", SessionPlan::Resume(id)),
            events,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(second.session_id, id);
    assert_eq!(second.result_text.as_deref(), Some("The word was PAPAYA."));

    let requests = h.standin.message_requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.session_id(), Some(id.to_string().as_str()));
    }
    assert!(!requests[0].messages_contain("ALPHA-ANSWER"));
    // The resumed request carries the earlier conversation, both sides of it.
    assert!(requests[1].messages_contain("Remember the word PAPAYA."));
    assert!(requests[1].messages_contain("I will remember ALPHA-ANSWER."));
    assert!(requests[1].messages_contain("Which word was it?"));

    let inits: Vec<SessionId> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            AgentEvent::Init { session_id, .. } => Some(*session_id),
            _ => None,
        })
        .collect();
    assert_eq!(inits, vec![id, id]);
}

#[tokio::test]
async fn starting_a_session_twice_is_session_in_use() {
    let Some(h) = Harness::new(
        "starting_a_session_twice_is_session_in_use",
        Script::always(Answer::text("hello")),
    ) else {
        return;
    };
    let id = SessionId::new_v4();
    let start = || h.call("hi", SessionPlan::Start(id));
    h.agent
        .call(start(), EventSink::none(), CancellationToken::new())
        .await
        .unwrap();
    let err = h
        .agent
        .call(start(), EventSink::none(), CancellationToken::new())
        .await
        .unwrap_err();
    match err {
        AgentError::SessionInUse { session_id } => assert_eq!(session_id, id),
        other => panic!("expected SessionInUse, got {other:?}"),
    }
    assert_eq!(
        h.standin.message_requests().len(),
        1,
        "the second start sent nothing"
    );
}

#[tokio::test]
async fn resuming_an_unknown_session_is_session_not_found() {
    let Some(h) = Harness::new(
        "resuming_an_unknown_session_is_session_not_found",
        Script::always(Answer::text("hello")),
    ) else {
        return;
    };
    let id = SessionId::new_v4();
    let err = h
        .agent
        .call(
            h.call("hi", SessionPlan::Resume(id)),
            EventSink::none(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    match err {
        AgentError::SessionNotFound { session_id } => assert_eq!(session_id, id),
        other => panic!("expected SessionNotFound, got {other:?}"),
    }
    assert!(h.standin.message_requests().is_empty());
}

#[tokio::test]
async fn max_turns_is_an_error_that_keeps_the_usage_served() {
    for max_turns in [1, 2] {
        let Some(h) = Harness::new(
            "max_turns_is_an_error_that_keeps_the_usage_served",
            Script::always(
                Answer::tool_use("Glob", json!({"pattern": "*.nothing"}))
                    .with_usage(usage(40, 6, 1, 2)),
            ),
        ) else {
            return;
        };
        let mut call = h.call(
            "Look around forever.",
            SessionPlan::Start(SessionId::new_v4()),
        );
        call.max_turns = Some(max_turns);
        let err = h
            .agent
            .call(call, EventSink::none(), CancellationToken::new())
            .await
            .unwrap_err();
        let AgentError::MaxTurns {
            max_turns: reported,
            reply,
        } = &err
        else {
            panic!("expected MaxTurns, got {err:?}");
        };
        assert_eq!(*reported, Some(max_turns));
        let served = h.standin.served_usage();
        assert_eq!(h.standin.message_requests().len(), max_turns as usize);
        assert_eq!(
            served,
            usage(
                40 * u64::from(max_turns),
                6 * u64::from(max_turns),
                u64::from(max_turns),
                2 * u64::from(max_turns)
            )
        );
        assert_eq!(reply.usage, served);
        assert_eq!(err.usage_spent(), served);
        assert_cost(reply.cost_usd, default_model_cost(served));
    }
}

#[tokio::test]
async fn api_server_errors_are_errors_not_successes() {
    for (answer, status) in [(Answer::server_error(), 500), (Answer::overloaded(), 529)] {
        let Some(h) = Harness::new(
            "api_server_errors_are_errors_not_successes",
            Script::always(answer),
        ) else {
            return;
        };
        // The harness's environment sets CLAUDE_CODE_MAX_RETRIES=0: without it the CLI
        // backs off and retries for minutes.
        let err = h
            .agent
            .call(
                h.call("hi", SessionPlan::Start(SessionId::new_v4())),
                EventSink::none(),
                CancellationToken::new(),
            )
            .await
            .unwrap_err();
        let AgentError::Api {
            status: seen,
            reply,
            ..
        } = &err
        else {
            panic!("expected an API error for {status}, got {err:?}");
        };
        assert_eq!(*seen, Some(status));
        assert!(err.is_transient());
        let reply = reply.as_ref().expect("the CLI reported a result");
        assert_eq!(reply.usage, Usage::ZERO);
        assert_eq!(reply.exit_code, Some(1));
        assert_eq!(h.standin.message_requests().len(), 1);
    }
}

#[tokio::test]
async fn the_cli_retries_as_many_times_as_claude_code_max_retries_says() {
    let Some(h) = Harness::new(
        "the_cli_retries_as_many_times_as_claude_code_max_retries_says",
        Script::always(Answer::overloaded()),
    ) else {
        return;
    };
    let mut call = h.call("hi", SessionPlan::Start(SessionId::new_v4()));
    call.env
        .insert("CLAUDE_CODE_MAX_RETRIES".into(), "1".into());
    let err = h
        .agent
        .call(call, EventSink::none(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Api);
    let requests = h.standin.message_requests();
    assert_eq!(requests.len(), 2, "one try and one retry");
}

#[tokio::test]
async fn a_rate_limit_is_rate_limited() {
    let Some(h) = Harness::new(
        "a_rate_limit_is_rate_limited",
        Script::always(Answer::rate_limited(Duration::from_secs(30))),
    ) else {
        return;
    };
    let err = h
        .agent
        .call(
            h.call("hi", SessionPlan::Start(SessionId::new_v4())),
            EventSink::none(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    let AgentError::RateLimited {
        reset_at, message, ..
    } = &err
    else {
        panic!("expected RateLimited, got {err:?}");
    };
    // The CLI does not pass the API's reset headers on when it runs on an API key.
    assert_eq!(*reset_at, None);
    assert!(message.contains("429"), "{message}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_hung_call_times_out_and_leaves_no_process() {
    let Some(h) = Harness::new(
        "a_hung_call_times_out_and_leaves_no_process",
        Script::always(Answer::hang()),
    ) else {
        return;
    };
    let mut call = h.call("hi", SessionPlan::Start(SessionId::new_v4()));
    call.timeout = Duration::from_secs(3);
    let (events, seen) = recorder();
    let err = h
        .agent
        .call(call, events, CancellationToken::new())
        .await
        .unwrap_err();
    match err {
        AgentError::Timeout {
            after,
            partial_usage,
        } => {
            assert_eq!(after, Duration::from_secs(3));
            assert_eq!(partial_usage, Usage::ZERO);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(
        h.standin.message_requests().len(),
        1,
        "it was waiting on the API"
    );
    assert_group_gone(spawned_pid(&seen.lock().unwrap()));
}

#[tokio::test]
async fn a_cancelled_call_stops_leaves_no_process_and_can_be_resumed() {
    let Some(h) = Harness::new(
        "a_cancelled_call_stops_leaves_no_process_and_can_be_resumed",
        Script::queue([Answer::hang()]).then_always(Answer::text("Resumed.")),
    ) else {
        return;
    };
    let id = SessionId::new_v4();
    let cancel = CancellationToken::new();
    let (events, seen) = recorder();
    let call = h.agent.call(
        h.call("Remember KIWI.", SessionPlan::Start(id)),
        events,
        cancel.clone(),
    );
    let cancel_once_asked = async {
        assert!(
            h.standin
                .wait_for_message_requests(1, Duration::from_secs(30))
                .await,
            "the CLI never called the API"
        );
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(call, cancel_once_asked);
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Cancelled);
    assert_group_gone(spawned_pid(&seen.lock().unwrap()));

    // The transcript was written when the call started, so the session goes on.
    let reply = h
        .agent
        .call(
            h.call("Go on.", SessionPlan::Resume(id)),
            EventSink::none(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.session_id, id);
    let requests = h.standin.message_requests();
    assert!(requests.last().unwrap().messages_contain("Remember KIWI."));
}

#[tokio::test]
async fn a_file_the_stand_in_asks_for_is_written_in_the_working_directory() {
    let Some(h) = Harness::new(
        "a_file_the_stand_in_asks_for_is_written_in_the_working_directory",
        Script::queue([]),
    ) else {
        return;
    };
    let target = h.work_dir.join("hello.txt");
    h.standin.enqueue([
        Answer::write_file(&target, "Hello from the stand-in.\n"),
        Answer::text("Done."),
    ]);
    let mut call = h.call("Write hello.txt.", SessionPlan::Start(SessionId::new_v4()));
    call.permission_mode = Some(PermissionMode::AcceptEdits);
    let (events, seen) = recorder();
    let reply = h
        .agent
        .call(call, events, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "Hello from the stand-in.\n"
    );
    assert_eq!(reply.turns, 2);
    assert!(reply.permission_denials.is_empty());
    let requests = h.standin.message_requests();
    assert_eq!(
        requests[1].tool_result_ids(),
        vec!["toolu_standin_1_0".to_owned()]
    );

    let seen = seen.lock().unwrap();
    let tool = seen.iter().find_map(|event| match event {
        AgentEvent::ToolUse { name, summary } => Some((name.as_str(), summary.as_str())),
        _ => None,
    });
    assert_eq!(tool, Some(("Write", target.to_str().unwrap())));
    assert!(seen.contains(&AgentEvent::ToolResult { is_error: false }));
    assert!(seen.contains(&AgentEvent::Text {
        text: "Done.".into()
    }));
}

#[tokio::test]
async fn usage_and_cost_are_exactly_what_was_served_per_call() {
    let Some(h) = Harness::new(
        "usage_and_cost_are_exactly_what_was_served_per_call",
        Script::queue([
            Answer::text("one").with_usage(usage(1234, 56, 789, 10)),
            Answer::text("two").with_usage(usage(2000, 7, 1500, 0)),
        ]),
    ) else {
        return;
    };
    let id = SessionId::new_v4();
    let first = h
        .agent
        .call(
            h.call("one", SessionPlan::Start(id)),
            EventSink::none(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let first_served = h.standin.served_usage();
    assert_eq!(first.usage, usage(1234, 56, 789, 10));
    assert_eq!(first.usage, first_served);
    assert_cost(first.cost_usd, default_model_cost(first_served));
    assert_eq!(first.turns, 1);
    assert_eq!(first.exit_code, Some(0));
    assert_eq!(first.model.as_deref(), Some("claude-opus-5-5"));
    assert_eq!(first.context_window, Some(1_000_000));
    assert!(first.duration > Duration::ZERO);

    // A resumed call reports its own figures, although the CLI's `total_cost_usd` then
    // covers the whole session.
    let second = h
        .agent
        .call(
            h.call("two", SessionPlan::Resume(id)),
            EventSink::none(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(second.usage, usage(2000, 7, 1500, 0));
    assert_cost(second.cost_usd, default_model_cost(second.usage));
}

#[tokio::test]
async fn probe_reports_the_cli_version() {
    let Some(claude) = api_standin::require_claude("probe_reports_the_cli_version") else {
        return;
    };
    let info = ClaudeAgent::new(ClaudeConfig::new(&claude))
        .probe()
        .await
        .unwrap();
    assert_eq!(info.name, "claude");
    assert_eq!(info.program.as_deref(), Some(claude.as_path()));
    let parts: Vec<&str> = info.version.split('.').collect();
    assert_eq!(parts.len(), 3, "{}", info.version);
    assert!(
        parts.iter().all(|part| part.parse::<u32>().is_ok()),
        "{}",
        info.version
    );
}
