//! The same scenarios through `agent-claude`'s `ClaudeAgent`, once over the real CLI (with the
//! stand-in) and once over `mock-claude`: both must be classified the same way (success or the
//! same `ErrorKind`, the same session id handling, the same usage). Then the misbehaviours only
//! the mock can act out (crashes, garbage, a wrong session id), through the same process path.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use agent::{
    Agent, AgentCall, AgentError, AgentEvent, AgentReply, CancellationToken, ErrorKind, EventSink,
    ExitInfo, PermissionMode, SessionId, SessionPlan, Usage,
};
use agent_claude::{ClaudeAgent, ClaudeConfig};
use agent_mock::scenario::Step;
use agent_mock::{Outcome, Scenario};
use api_standin::{Answer, Script};

use super::side::{Kind, Side};

const USAGE: Usage = Usage {
    input_tokens: 11,
    output_tokens: 7,
    cache_read_tokens: 2,
    cache_creation_tokens: 3,
};

/// What a call came to, in the terms a caller decides on.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Success {
        session_id: SessionId,
        usage: Usage,
        turns: u32,
    },
    Failed {
        kind: ErrorKind,
        usage: Usage,
    },
}

fn verdict(outcome: &Result<AgentReply, AgentError>) -> Verdict {
    match outcome {
        Ok(reply) => Verdict::Success {
            session_id: reply.session_id,
            usage: reply.usage,
            turns: reply.turns,
        },
        Err(error) => Verdict::Failed {
            kind: error.kind(),
            usage: error.usage_spent(),
        },
    }
}

/// The mock side, and the real one when the CLI is there.
fn sides(test: &str, script: impl FnOnce(&Path) -> Script, scenario: Scenario) -> Vec<Side> {
    let mut sides = vec![Side::mock(&scenario)];
    if let Some(claude) = api_standin::require_claude(test) {
        sides.push(Side::real(&claude, script));
    }
    sides
}

fn agent_for(side: &Side) -> ClaudeAgent {
    let mut config = ClaudeConfig::new(&side.program);
    config.env = side.vars().into_iter().collect::<BTreeMap<_, _>>();
    config.grace = Duration::from_secs(1);
    ClaudeAgent::new(config)
}

fn call_in(side: &Side, prompt: &str, plan: SessionPlan) -> AgentCall {
    let mut call = AgentCall::new(prompt, plan, &side.work);
    call.timeout = Duration::from_secs(60);
    call.permission_mode = Some(PermissionMode::AcceptEdits);
    call
}

async fn run(agent: &ClaudeAgent, call: AgentCall) -> Result<AgentReply, AgentError> {
    agent
        .call(call, EventSink::none(), CancellationToken::new())
        .await
}

fn assert_agree(what: &str, observed: &[(&'static str, Verdict)]) {
    if let [(first_side, first), rest @ ..] = observed {
        for (side, verdict) in rest {
            assert_eq!(
                verdict, first,
                "{what}: {side} is classified unlike {first_side}"
            );
        }
    }
}

/// Every verdict, with the session ids of successes replaced by a marker of whether they
/// were the assigned one, so that two sides' verdicts compare.
fn normalised(verdict: Verdict, assigned: SessionId) -> Verdict {
    match verdict {
        Verdict::Success {
            session_id,
            usage,
            turns,
        } => Verdict::Success {
            session_id: if session_id == assigned {
                SessionId::from_uuid(uuid::Uuid::nil())
            } else {
                session_id
            },
            usage,
            turns,
        },
        failed => failed,
    }
}

#[tokio::test]
async fn sessions_start_resume_and_refuse_alike() {
    let script = |_: &Path| Script::always(Answer::text("fine").with_usage(USAGE));
    let scenario = Scenario::steps([Step {
        usage: Some(USAGE),
        cost_usd: Some(0.5),
        ..Step::success("fine")
    }]);
    let mut observed = Vec::new();
    for side in sides("sessions_start_resume_and_refuse_alike", script, scenario) {
        let agent = agent_for(&side);
        let session = SessionId::new_v4();
        let start = run(&agent, call_in(&side, "first", SessionPlan::Start(session))).await;
        let resume = run(
            &agent,
            call_in(&side, "second", SessionPlan::Resume(session)),
        )
        .await;
        let again = run(&agent, call_in(&side, "third", SessionPlan::Start(session))).await;
        let unknown = SessionId::new_v4();
        let lost = run(
            &agent,
            call_in(&side, "fourth", SessionPlan::Resume(unknown)),
        )
        .await;

        let (first, second) = (
            start.as_ref().expect("start succeeds"),
            resume.as_ref().expect("resume succeeds"),
        );
        assert_eq!(first.result_text.as_deref(), Some("fine"));
        // The adapter reports each call's own cost although the CLI's `total_cost_usd` covers
        // the whole session on resume.
        assert!(
            (second.cost_usd - first.cost_usd).abs() < 1e-12,
            "{}: {} then {}",
            side.name(),
            first.cost_usd,
            second.cost_usd
        );
        assert!(
            matches!(again, Err(AgentError::SessionInUse { session_id }) if session_id == session)
        );
        assert!(
            matches!(lost, Err(AgentError::SessionNotFound { session_id }) if session_id == unknown)
        );

        let verdicts: Vec<Verdict> = [start, resume, again, lost]
            .iter()
            .map(|outcome| normalised(verdict(outcome), session))
            .collect();
        assert_eq!(
            verdicts[0],
            Verdict::Success {
                session_id: SessionId::from_uuid(uuid::Uuid::nil()),
                usage: USAGE,
                turns: 1
            },
            "{}",
            side.name()
        );
        for (index, verdict) in verdicts.into_iter().enumerate() {
            observed.push((side.name(), index, verdict));
        }
    }
    for index in 0..4 {
        let at_index: Vec<_> = observed
            .iter()
            .filter(|(_, at, _)| *at == index)
            .map(|(name, _, verdict)| (*name, verdict.clone()))
            .collect();
        assert_agree(&format!("call {index}"), &at_index);
    }
}

#[tokio::test]
async fn max_turns_api_errors_and_rate_limits_are_classified_alike() {
    type Case = (&'static str, fn(&Path) -> Script, Step, ErrorKind);
    let cases: [Case; 8] = [
        (
            "max turns",
            |work| Script::always(Answer::write_file(work.join("loop.txt"), "x").with_usage(USAGE)),
            Step {
                usage: Some(USAGE),
                files: [("loop.txt".to_owned(), "x".to_owned())].into(),
                ..Step::outcome(Outcome::MaxTurns)
            },
            ErrorKind::MaxTurns,
        ),
        (
            "overloaded",
            |_| Script::always(Answer::overloaded()),
            Step {
                api_error_status: Some(529),
                message: Some("Overloaded".into()),
                usage: Some(Usage::ZERO),
                ..Step::outcome(Outcome::ApiError)
            },
            ErrorKind::Api,
        ),
        (
            "bad request",
            |_| Script::always(Answer::error(400, "invalid_request_error", "bad")),
            Step {
                api_error_status: Some(400),
                message: Some("bad".into()),
                ..Step::outcome(Outcome::ApiError)
            },
            ErrorKind::Api,
        ),
        (
            "rate limit",
            |_| Script::always(Answer::rate_limited(Duration::from_secs(30))),
            Step::outcome(Outcome::RateLimit),
            ErrorKind::RateLimited,
        ),
        (
            "bad key",
            |_| {
                Script::always(Answer::error(
                    401,
                    "authentication_error",
                    "invalid x-api-key",
                ))
            },
            refusal_step(401, "invalid x-api-key"),
            ErrorKind::Authentication,
        ),
        (
            "no permission",
            |_| Script::always(Answer::error(403, "permission_error", "not allowed")),
            refusal_step(403, "not allowed"),
            ErrorKind::Permission,
        ),
        (
            "empty account",
            |_| {
                Script::always(Answer::error(
                    400,
                    "invalid_request_error",
                    "Your credit balance is too low to access the Anthropic API.",
                ))
            },
            refusal_step(
                400,
                "Your credit balance is too low to access the Anthropic API.",
            ),
            ErrorKind::Billing,
        ),
        (
            "unknown model",
            |_| {
                let answer = Answer::error(404, "not_found_error", "model: nonexistent");
                Script::always(answer.clone()).with_whole_messages(answer)
            },
            refusal_step(404, "model: nonexistent"),
            ErrorKind::ModelUnavailable,
        ),
    ];
    for (what, script, step, kind) in cases {
        let mut observed = Vec::new();
        for side in sides(
            "max_turns_api_errors_and_rate_limits_are_classified_alike",
            script,
            Scenario::steps([step]),
        ) {
            let agent = agent_for(&side);
            let session = SessionId::new_v4();
            let mut call = call_in(&side, "go", SessionPlan::Start(session));
            call.max_turns = Some(1);
            let outcome = run(&agent, call).await;
            let error = outcome.as_ref().expect_err(what);
            assert_eq!(error.kind(), kind, "{what}: {}: {error:?}", side.name());
            let reply = error.reply().expect("the figures were reported");
            assert_eq!(reply.session_id, session);
            match error {
                AgentError::MaxTurns { max_turns, .. } => assert_eq!(*max_turns, Some(1)),
                AgentError::Api { status, .. } | AgentError::Refused { status, .. } => {
                    assert!(status.is_some());
                }
                _ => {}
            }
            observed.push((side.name(), verdict(&outcome)));
        }
        assert_agree(what, &observed);
    }
}

/// mock-claude's step for an API that refuses with `status` and `message`.
fn refusal_step(status: u16, message: &str) -> Step {
    Step {
        api_error_status: Some(status),
        message: Some(message.into()),
        usage: Some(Usage::ZERO),
        ..Step::outcome(Outcome::ApiError)
    }
}

#[tokio::test]
async fn only_the_mock_reports_a_rate_limit_reset() {
    // A difference on purpose: with an API key the real CLI reports no reset time (the stand-in
    // sends `retry-after` and reset headers, and the result carries none of them), so
    // `reset_at` is `None`; the mock can report one, as subscription logins were reported to.
    let scenario = Scenario::steps([Step {
        rate_limit_reset: Some(1_900_000_000),
        ..Step::outcome(Outcome::RateLimit)
    }]);
    for side in sides(
        "only_the_mock_reports_a_rate_limit_reset",
        |_| Script::always(Answer::rate_limited(Duration::from_secs(30))),
        scenario,
    ) {
        let agent = agent_for(&side);
        let outcome = run(
            &agent,
            call_in(&side, "go", SessionPlan::Start(SessionId::new_v4())),
        )
        .await;
        let Err(AgentError::RateLimited { reset_at, .. }) = outcome else {
            panic!("{}: {outcome:?}", side.name())
        };
        match side.kind {
            Kind::Real => assert_eq!(reset_at, None),
            Kind::Mock => assert_eq!(
                reset_at,
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000))
            ),
        }
    }
}

#[tokio::test]
async fn a_call_that_writes_a_file_succeeds_alike() {
    let script = |work: &Path| {
        Script::queue([
            Answer::write_file(work.join("out.txt"), "hello\n").with_usage(USAGE),
            Answer::text("wrote it").with_usage(Usage::ZERO),
        ])
    };
    let scenario = Scenario::steps([Step {
        usage: Some(USAGE),
        files: [("out.txt".to_owned(), "hello\n".to_owned())].into(),
        ..Step::success("wrote it")
    }]);
    let mut observed = Vec::new();
    for side in sides("a_call_that_writes_a_file_succeeds_alike", script, scenario) {
        let agent = agent_for(&side);
        let session = SessionId::new_v4();
        let outcome = run(&agent, call_in(&side, "write", SessionPlan::Start(session))).await;
        let reply = outcome.as_ref().expect("the call succeeds");
        assert_eq!(reply.result_text.as_deref(), Some("wrote it"));
        assert_eq!(
            std::fs::read_to_string(side.work.join("out.txt")).unwrap(),
            "hello\n"
        );
        observed.push((side.name(), normalised(verdict(&outcome), session)));
    }
    assert_agree("a call that writes a file", &observed);
}

#[tokio::test]
async fn a_hanging_call_times_out_and_stays_resumable_alike() {
    let script = |_: &Path| Script::queue([Answer::hang()]).then_always(Answer::text("back"));
    let scenario = Scenario {
        when: vec![agent_mock::scenario::Rule {
            plan: Some(agent::PlanKind::Start),
            step: Step::outcome(Outcome::Hang),
            ..Default::default()
        }],
        steps: vec![Step::success("back")],
    };
    let mut observed = Vec::new();
    for side in sides(
        "a_hanging_call_times_out_and_stays_resumable_alike",
        script,
        scenario,
    ) {
        let agent = agent_for(&side);
        let session = SessionId::new_v4();
        let mut call = call_in(&side, "hang", SessionPlan::Start(session));
        call.timeout = Duration::from_secs(4);
        let outcome = run(&agent, call).await;
        assert!(
            matches!(&outcome, Err(AgentError::Timeout { after, .. }) if *after == Duration::from_secs(4)),
            "{}: {outcome:?}",
            side.name()
        );
        let resumed = run(
            &agent,
            call_in(&side, "again", SessionPlan::Resume(session)),
        )
        .await;
        let reply = resumed
            .as_ref()
            .expect("the timed-out session can be resumed");
        assert_eq!(reply.result_text.as_deref(), Some("back"));
        observed.push((side.name(), verdict(&outcome)));
    }
    assert_agree("a call that hangs", &observed);
}

#[tokio::test]
async fn a_cancelled_call_stops_alike() {
    let script = |_: &Path| Script::always(Answer::hang());
    let scenario = Scenario::steps([Step::outcome(Outcome::Hang)]);
    let mut observed = Vec::new();
    for side in sides("a_cancelled_call_stops_alike", script, scenario) {
        let agent = agent_for(&side);
        let cancel = CancellationToken::new();
        let (init_sender, mut init_seen) = tokio::sync::mpsc::unbounded_channel();
        let events = EventSink::new(move |event| {
            if matches!(event, AgentEvent::Init { .. }) {
                let _ = init_sender.send(());
            }
        });
        let call = call_in(&side, "wait", SessionPlan::Start(SessionId::new_v4()));
        let cancel_after_init = {
            let cancel = cancel.clone();
            async move {
                let seen = tokio::time::timeout(Duration::from_secs(30), init_seen.recv()).await;
                cancel.cancel();
                seen
            }
        };
        let (outcome, seen) =
            tokio::join!(agent.call(call, events, cancel.clone()), cancel_after_init);
        assert!(
            matches!(seen, Ok(Some(()))),
            "{}: no init event",
            side.name()
        );
        assert_eq!(
            outcome.as_ref().map_err(AgentError::kind).unwrap_err(),
            ErrorKind::Cancelled,
            "{}",
            side.name()
        );
        observed.push((side.name(), verdict(&outcome)));
    }
    assert_agree("a cancelled call", &observed);
}

#[tokio::test]
async fn probe_reads_the_version_alike() {
    for side in sides(
        "probe_reads_the_version_alike",
        |_| Script::queue([]),
        Scenario::default(),
    ) {
        let info = agent_for(&side).probe().await.expect("the probe answers");
        assert_eq!(info.name, "claude");
        // The pinned version, which the mock imitates.
        assert_eq!(
            info.version,
            agent_mock::claude::IMITATED_VERSION,
            "{}",
            side.name()
        );
    }
}

/// A `mock-claude` side playing `step`, and the outcome of one start through the adapter.
async fn mock_outcome(
    step: Step,
    timeout: Duration,
) -> (Side, SessionId, Result<AgentReply, AgentError>) {
    let side = Side::mock(&Scenario::steps([step]));
    let session = SessionId::new_v4();
    let mut call = call_in(&side, "go", SessionPlan::Start(session));
    call.timeout = timeout;
    let outcome = run(&agent_for(&side), call).await;
    (side, session, outcome)
}

#[tokio::test]
async fn misbehaviour_only_the_mock_can_act_out_is_classified() {
    // The real CLI cannot be made to crash, print garbage or report another session from
    // outside; `mock-claude` can, and the adapter must classify each.
    let limit = Duration::from_secs(30);

    let (_, _, crash) = mock_outcome(
        Step {
            exit_code: Some(7),
            stderr: Some("TypeError: undefined is not a function".into()),
            ..Step::outcome(Outcome::Crash)
        },
        limit,
    )
    .await;
    match crash {
        Err(AgentError::Crashed { exit, stderr_tail }) => {
            assert_eq!(exit, ExitInfo::Code(7));
            assert!(stderr_tail.contains("TypeError"), "{stderr_tail}");
        }
        other => panic!("a crash: {other:?}"),
    }

    let (_, _, killed) = mock_outcome(
        Step {
            signal: Some(9),
            ..Step::outcome(Outcome::Crash)
        },
        limit,
    )
    .await;
    assert!(
        matches!(
            killed,
            Err(AgentError::Crashed {
                exit: ExitInfo::Signal(9),
                ..
            })
        ),
        "{killed:?}"
    );

    let (_, _, quiet) = mock_outcome(Step::outcome(Outcome::NoResult), limit).await;
    assert!(
        matches!(
            quiet,
            Err(AgentError::Crashed {
                exit: ExitInfo::Code(0),
                ..
            })
        ),
        "exit 0 with no result is a crash: {quiet:?}"
    );

    for outcome in [Outcome::Garbage, Outcome::NonUtf8] {
        let (_, _, garbage) = mock_outcome(Step::outcome(outcome), limit).await;
        assert_eq!(
            garbage.as_ref().map_err(AgentError::kind).unwrap_err(),
            ErrorKind::MalformedOutput,
            "{outcome:?}: {garbage:?}"
        );
    }

    let other = SessionId::new_v4();
    let (_, assigned, mismatch) = mock_outcome(
        Step {
            session_id: Some(other),
            usage: Some(USAGE),
            ..Step::default()
        },
        limit,
    )
    .await;
    match mismatch {
        Err(AgentError::SessionMismatch {
            assigned: said,
            reported,
            reply: Some(reply),
        }) => {
            assert_eq!((said, reported), (assigned, other));
            assert_eq!(reply.usage, USAGE, "what was spent is kept");
        }
        other => panic!("a mismatch: {other:?}"),
    }

    let (_, _, huge) = mock_outcome(
        Step {
            huge_output_mb: 20,
            usage: Some(USAGE),
            ..Step::success("after a flood")
        },
        limit,
    )
    .await;
    let reply = huge.expect("20 MiB of output is read through");
    assert_eq!(reply.result_text.as_deref(), Some("after a flood"));
    assert_eq!(reply.usage, USAGE);

    let (_, _, stubborn) = mock_outcome(
        Step {
            ignore_term: true,
            ..Step::outcome(Outcome::Hang)
        },
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        stubborn.as_ref().map_err(AgentError::kind).unwrap_err(),
        ErrorKind::Timeout,
        "a call that ignores TERM is killed after the grace period"
    );
}

#[tokio::test]
async fn a_money_limit_is_classified_as_budget_exceeded_alike() {
    let usage = Usage {
        input_tokens: 1_000,
        output_tokens: 200,
        cache_read_tokens: 0,
        cache_creation_tokens: 0,
    };
    let script = move |work: &Path| {
        Script::always(Answer::write_file(work.join("loop.txt"), "x").with_usage(usage))
    };
    let scenario = Scenario::steps([Step {
        files: [("loop.txt".to_owned(), "x".to_owned())].into(),
        cost_usd: Some(0.5),
        ..Step::success("never reached")
    }]);
    for side in sides(
        "a_money_limit_is_classified_as_budget_exceeded_alike",
        script,
        scenario,
    ) {
        let agent = agent_for(&side);
        let mut call = call_in(&side, "loop", SessionPlan::Start(SessionId::new_v4()));
        call.max_cost_usd = Some(0.02);
        call.model = Some(String::from("claude-sonnet-4-5"));
        let outcome = run(&agent, call).await;
        let Err(AgentError::BudgetExceeded { reply }) = &outcome else {
            panic!("{}: expected BudgetExceeded, got {outcome:?}", side.name());
        };
        assert!(
            (0.02..0.03).contains(&reply.cost_usd),
            "{}: spent {} for a $0.02 limit",
            side.name(),
            reply.cost_usd
        );
        assert_eq!(reply.result_text, None, "{}", side.name());
        assert_eq!(reply.subtype, "error_max_budget_usd", "{}", side.name());
    }
}
