//! The scripted in-process agent: steps, transcripts, timing, cancellation, panics, records.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use agent::{
    Agent, AgentCall, AgentError, AgentEvent, CancellationToken, ErrorKind, EventSink,
    PermissionMode, SessionId, SessionPlan, Usage,
};
use agent_mock::{MockAgent, Step, TranscriptTurn};

const USAGE: Usage = Usage {
    input_tokens: 120,
    output_tokens: 30,
    cache_read_tokens: 5,
    cache_creation_tokens: 1,
};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn start(&self, prompt: &str, session: SessionId) -> AgentCall {
        AgentCall::new(prompt, SessionPlan::Start(session), self.dir.path())
    }

    fn resume(&self, prompt: &str, session: SessionId) -> AgentCall {
        AgentCall::new(prompt, SessionPlan::Resume(session), self.dir.path())
    }
}

async fn call(agent: &MockAgent, call: AgentCall) -> Result<agent::AgentReply, AgentError> {
    agent
        .call(call, EventSink::none(), CancellationToken::new())
        .await
}

fn collecting_sink() -> (EventSink, Arc<Mutex<Vec<AgentEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let events = Arc::clone(&events);
        EventSink::new(move |event| events.lock().unwrap().push(event))
    };
    (sink, events)
}

#[tokio::test]
async fn steps_play_in_order_and_every_call_is_recorded() {
    let fixture = Fixture::new();
    let agent = MockAgent::with_steps([
        Step::succeed("first")
            .usage(USAGE)
            .cost_usd(0.25)
            .turns(4)
            .model("claude-x")
            .context_window(1_000),
        Step::max_turns().usage(USAGE),
    ]);
    let session = SessionId::new_v4();
    let mut first = fixture.start("do the task", session);
    first.max_turns = Some(8);
    first.timeout = Duration::from_secs(90);
    first.permission_mode = Some(PermissionMode::AcceptEdits);
    first.allowed_tools = vec!["Write".into()];
    let reply = call(&agent, first.clone()).await.unwrap();
    assert_eq!(reply.session_id, session);
    assert_eq!(reply.result_text.as_deref(), Some("first"));
    assert_eq!(reply.usage, USAGE);
    assert_eq!(reply.cost_usd, 0.25);
    assert_eq!(reply.turns, 4);
    assert_eq!(reply.model.as_deref(), Some("claude-x"));
    assert_eq!(reply.context_window, Some(1_000));
    assert_eq!(reply.subtype, "success");

    let mut second = fixture.resume("go on", session);
    second.max_turns = Some(3);
    second.model = Some("claude-y".into());
    let error = call(&agent, second.clone()).await.unwrap_err();
    let AgentError::MaxTurns { max_turns, reply } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*max_turns, Some(3));
    assert_eq!(reply.usage, USAGE);
    assert_eq!(reply.subtype, "error_max_turns");
    assert_eq!(
        reply.model.as_deref(),
        Some("claude-y"),
        "the call's model wins"
    );

    // The script is used up: the default answer follows.
    let third = call(&agent, fixture.resume("more", session)).await.unwrap();
    assert_eq!(third.result_text.as_deref(), Some("done"));

    assert_eq!(
        agent.calls(),
        vec![first, second, fixture.resume("more", session)]
    );
    assert_eq!(agent.calls_in(session).len(), 3);
    assert_eq!(agent.calls_in(SessionId::new_v4()), vec![]);
    assert_eq!(agent.steps_left(), 0);
}

#[tokio::test]
async fn transcripts_make_session_mistakes_fail_like_the_cli() {
    let fixture = Fixture::new();
    let agent = MockAgent::new();
    let session = SessionId::new_v4();

    let unknown = call(&agent, fixture.resume("hi", session))
        .await
        .unwrap_err();
    assert!(matches!(unknown, AgentError::SessionNotFound { session_id } if session_id == session));

    call(&agent, fixture.start("hi", session)).await.unwrap();
    let twice = call(&agent, fixture.start("hi again", session))
        .await
        .unwrap_err();
    assert!(matches!(twice, AgentError::SessionInUse { session_id } if session_id == session));

    call(&agent, fixture.resume("go on", session))
        .await
        .unwrap();
    assert_eq!(
        agent.transcript(session).unwrap(),
        vec![
            TranscriptTurn {
                prompt: "hi".into(),
                answer: Some("done".into())
            },
            TranscriptTurn {
                prompt: "go on".into(),
                answer: Some("done".into())
            },
        ]
    );

    agent.forget_transcript(session);
    let lost = call(&agent, fixture.resume("again", session))
        .await
        .unwrap_err();
    assert_eq!(lost.kind(), ErrorKind::SessionNotFound);

    let seeded = SessionId::new_v4();
    agent.seed_transcript(seeded);
    let in_use = call(&agent, fixture.start("x", seeded)).await.unwrap_err();
    assert_eq!(in_use.kind(), ErrorKind::SessionInUse);
    call(&agent, fixture.resume("x", seeded)).await.unwrap();
}

#[tokio::test]
async fn without_transcripts_any_plan_goes() {
    let fixture = Fixture::new();
    let agent = MockAgent::new().without_transcripts();
    let session = SessionId::new_v4();
    call(&agent, fixture.resume("never started", session))
        .await
        .unwrap();
    call(&agent, fixture.start("a", session)).await.unwrap();
    call(&agent, fixture.start("b", session)).await.unwrap();
    assert_eq!(agent.transcript(session), None);
}

#[tokio::test]
async fn fail_kind_makes_an_error_of_every_kind() {
    let fixture = Fixture::new();
    for kind in ErrorKind::ALL {
        let agent = MockAgent::with_steps([Step::fail_kind(kind).usage(USAGE)]);
        let session = SessionId::new_v4();
        let error = call(&agent, fixture.start("x", session)).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{error:?}");
        if let Some(reply) = error.reply() {
            assert_eq!(reply.usage, USAGE, "{kind}");
        }
        // Errors that come before a process would start leave no transcript.
        let pre_start = matches!(
            kind,
            ErrorKind::CannotSpawn
                | ErrorKind::WorkingDirMissing
                | ErrorKind::SessionInUse
                | ErrorKind::SessionNotFound
        );
        assert_eq!(agent.transcript(session).is_none(), pre_start, "{kind}");
    }
}

#[tokio::test]
async fn api_and_rate_limit_errors_carry_their_details() {
    let fixture = Fixture::new();
    let reset = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let agent = MockAgent::with_steps([
        Step::api_error(529, "overloaded").usage(USAGE),
        Step::rate_limited(Some(reset)),
        Step::fail(AgentError::Execution {
            errors: vec!["boom".into()],
            reply: Box::new(agent::AgentReply::empty(SessionId::new_v4())),
        }),
    ]);
    let error = call(&agent, fixture.start("a", SessionId::new_v4()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            AgentError::Api {
                status: Some(529),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(error.usage_spent(), USAGE);
    let error = call(&agent, fixture.start("b", SessionId::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::RateLimited { reset_at: Some(at), .. } if at == reset));
    let error = call(&agent, fixture.start("c", SessionId::new_v4()))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "the agent failed while running: boom");
}

#[tokio::test(start_paused = true)]
async fn hang_ends_at_the_call_timeout_and_leaves_the_session_resumable() {
    let fixture = Fixture::new();
    let agent = MockAgent::with_steps([Step::hang()]);
    let session = SessionId::new_v4();
    let mut hanging = fixture.start("x", session);
    hanging.timeout = Duration::from_secs(600);
    let started = tokio::time::Instant::now();
    let error = call(&agent, hanging).await.unwrap_err();
    assert!(
        matches!(error, AgentError::Timeout { after, .. } if after == Duration::from_secs(600)),
        "{error:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(600));
    // Like the CLI's, the transcript was written when the call started.
    assert_eq!(agent.transcript(session).unwrap()[0].answer, None);
    call(&agent, fixture.resume("again", session))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn hang_ends_when_cancelled() {
    let fixture = Fixture::new();
    let agent = MockAgent::with_steps([Step::hang()]);
    let cancel = CancellationToken::new();
    let task = {
        let agent = agent.clone();
        let cancel = cancel.clone();
        let call = fixture.start("x", SessionId::new_v4());
        tokio::spawn(async move { agent.call(call, EventSink::none(), cancel).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!task.is_finished());
    cancel.cancel();
    let error = task.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Cancelled);
}

#[tokio::test]
async fn an_already_cancelled_call_does_not_start() {
    let fixture = Fixture::new();
    let agent = MockAgent::new();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let session = SessionId::new_v4();
    let error = agent
        .call(fixture.start("x", session), EventSink::none(), cancel)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Cancelled);
    assert_eq!(agent.transcript(session), None);
}

#[tokio::test(start_paused = true)]
async fn delay_takes_its_time_unless_the_timeout_comes_first() {
    let fixture = Fixture::new();
    let agent = MockAgent::with_steps([
        Step::succeed("slow").delay(Duration::from_secs(30)),
        Step::succeed("too slow").delay(Duration::from_secs(30)),
    ]);
    let started = tokio::time::Instant::now();
    let reply = call(&agent, fixture.start("a", SessionId::new_v4()))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(reply.duration, Duration::from_secs(30));

    let mut short = fixture.start("b", SessionId::new_v4());
    short.timeout = Duration::from_secs(10);
    let error = call(&agent, short).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(started.elapsed(), Duration::from_secs(40));
}

#[tokio::test]
async fn a_different_reported_session_is_a_mismatch_carrying_the_reply() {
    let fixture = Fixture::new();
    let other = SessionId::new_v4();
    let agent = MockAgent::with_steps([Step::succeed("ok").usage(USAGE).report_session(other)]);
    let assigned = SessionId::new_v4();
    let (sink, events) = collecting_sink();
    let error = agent
        .call(fixture.start("x", assigned), sink, CancellationToken::new())
        .await
        .unwrap_err();
    let AgentError::SessionMismatch {
        assigned: said_assigned,
        reported,
        reply: Some(reply),
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((*said_assigned, *reported), (assigned, other));
    assert_eq!(reply.session_id, other);
    assert_eq!(reply.usage, USAGE, "what was spent is not lost");
    assert_eq!(
        events.lock().unwrap()[0],
        AgentEvent::Init {
            session_id: other,
            model: None
        }
    );
    // The transcript went to the id the agent used: the assigned one is unknown.
    assert!(agent.transcript(other).is_some());
    let resume = call(&agent, fixture.resume("y", assigned))
        .await
        .unwrap_err();
    assert_eq!(resume.kind(), ErrorKind::SessionNotFound);
}

#[tokio::test]
async fn files_are_written_in_the_working_directory_and_reported() {
    let fixture = Fixture::new();
    let agent = MockAgent::with_steps([Step::succeed("wrote")
        .usage(USAGE)
        .write_file("src/lib.rs", "pub fn f() {}\n")
        .write_file("README", b"bytes".to_vec())]);
    let (sink, events) = collecting_sink();
    let session = SessionId::new_v4();
    agent
        .call(fixture.start("x", session), sink, CancellationToken::new())
        .await
        .unwrap();
    let dir = fixture.dir.path();
    assert_eq!(
        std::fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
        "pub fn f() {}\n"
    );
    assert_eq!(std::fs::read(dir.join("README")).unwrap(), b"bytes");
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            AgentEvent::Init {
                session_id: session,
                model: None
            },
            AgentEvent::ToolUse {
                name: "Write".into(),
                summary: dir.join("src/lib.rs").display().to_string()
            },
            AgentEvent::ToolResult { is_error: false },
            AgentEvent::ToolUse {
                name: "Write".into(),
                summary: dir.join("README").display().to_string()
            },
            AgentEvent::ToolResult { is_error: false },
            AgentEvent::Text {
                text: "wrote".into()
            },
            AgentEvent::Usage { usage: USAGE },
        ]
    );
}

#[tokio::test]
async fn a_panicking_step_panics_the_calling_task() {
    let fixture = Fixture::new();
    let agent = MockAgent::with_steps([Step::panic("scripted panic")]);
    let call = fixture.start("x", SessionId::new_v4());
    let task = {
        let agent = agent.clone();
        tokio::spawn(async move {
            agent
                .call(call, EventSink::none(), CancellationToken::new())
                .await
        })
    };
    let error = task.await.unwrap_err();
    assert!(error.is_panic());
    let payload = error.into_panic();
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "scripted panic");
    // The agent still works afterwards.
    let next = fixture.start("y", SessionId::new_v4());
    assert!(
        agent
            .call(next, EventSink::none(), CancellationToken::new())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_missing_working_directory_is_refused_before_anything_runs() {
    let fixture = Fixture::new();
    let agent = MockAgent::new();
    let session = SessionId::new_v4();
    let mut lost = fixture.start("x", session);
    lost.working_dir = fixture.dir.path().join("gone");
    let error = call(&agent, lost).await.unwrap_err();
    assert!(matches!(&error, AgentError::WorkingDirMissing { path } if path.ends_with("gone")));
    assert_eq!(agent.transcript(session), None);
    assert_eq!(agent.calls().len(), 1, "the call is still recorded");
}

#[tokio::test]
async fn session_queues_beat_prompt_queues_beat_the_queue_beat_the_script() {
    let fixture = Fixture::new();
    let agent = MockAgent::scripted(|call, index| {
        Step::succeed(format!("script {index}: {}", call.prompt))
    });
    let special = SessionId::new_v4();
    agent
        .then(Step::succeed("queued"))
        .then_for_prompt("verify", Step::succeed("prompt-keyed"))
        .then_for_session(special, Step::succeed("session-keyed"));

    let answer = |reply: agent::AgentReply| reply.result_text.unwrap();
    let plain = call(&agent, fixture.start("verify this", special))
        .await
        .unwrap();
    assert_eq!(answer(plain), "session-keyed");
    let by_prompt = call(&agent, fixture.start("please verify", SessionId::new_v4()))
        .await
        .unwrap();
    assert_eq!(answer(by_prompt), "prompt-keyed");
    let queued = call(&agent, fixture.start("verify again", SessionId::new_v4()))
        .await
        .unwrap();
    assert_eq!(answer(queued), "queued");
    let scripted = call(&agent, fixture.start("last", SessionId::new_v4()))
        .await
        .unwrap();
    assert_eq!(answer(scripted), "script 3: last");
}

#[tokio::test]
async fn probe_names_the_mock() {
    let info = MockAgent::new().probe().await.unwrap();
    assert_eq!(info.name, "mock");
    assert_eq!(info.program, None);
}

#[tokio::test]
async fn clones_share_script_and_records() {
    let fixture = Fixture::new();
    let agent = MockAgent::new();
    let shared: Arc<dyn Agent> = Arc::new(agent.clone());
    agent.then(Step::succeed("through the clone"));
    let reply = shared
        .call(
            fixture.start("x", SessionId::new_v4()),
            EventSink::none(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.result_text.as_deref(), Some("through the clone"));
    assert_eq!(agent.calls().len(), 1);
}

#[tokio::test]
async fn the_money_limit_turns_a_costly_success_into_budget_exceeded() {
    let fixture = Fixture::new();
    let agent = MockAgent::with_steps([
        Step::succeed("costly").cost_usd(0.5),
        Step::succeed("cheap").cost_usd(0.01),
    ]);
    let mut limited = fixture.start("go", SessionId::new_v4());
    limited.max_cost_usd = Some(0.05);
    let error = call(&agent, limited).await.unwrap_err();
    let AgentError::BudgetExceeded { reply } = &error else {
        panic!("expected BudgetExceeded, got {error:?}");
    };
    assert_eq!(reply.subtype, "error_max_budget_usd");
    assert_eq!(reply.cost_usd, 0.05, "it spent up to the limit");
    assert_eq!(reply.result_text, None);
    let mut roomy = fixture.start("go", SessionId::new_v4());
    roomy.max_cost_usd = Some(0.05);
    assert_eq!(call(&agent, roomy).await.unwrap().cost_usd, 0.01);
}
