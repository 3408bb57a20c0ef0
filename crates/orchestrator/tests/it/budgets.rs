//! Turn budgets, transient failures, iteration limits and context rotation.

use std::time::{Duration, SystemTime};

use agent::{ErrorKind, SessionPlan, Usage};
use agent_mock::{MockAgent, Step};
use orchestrator::{RunConfig, TaskOutcome};
use session_store::{SessionStatus, TaskStatus};

use crate::support::{Fixture, Recorder, plans, quick_config};

on_both_backends! {
    #[tokio::test]
    async fn max_turns_resumes_the_same_session_with_a_larger_budget() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("big");
        task.max_turns = Some(4);
        let task = fixture.add(task);
        let agent =
            MockAgent::with_steps([Step::max_turns(), Step::max_turns(), Step::succeed("done")]);
        let report = fixture
            .run_with(
                &agent,
                RunConfig {
                    max_turns_cap: 10,
                    ..quick_config()
                },
            )
            .await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        let id = calls[0].plan.session_id();
        assert_eq!(
            plans(&calls),
            [
                SessionPlan::Start(id),
                SessionPlan::Resume(id),
                SessionPlan::Resume(id)
            ]
        );
        assert_eq!(
            calls.iter().map(|call| call.max_turns).collect::<Vec<_>>(),
            [Some(4), Some(8), Some(10)]
        );
        assert!(
            calls[1].prompt.contains("ran out of turns"),
            "{}",
            calls[1].prompt
        );
        // Running out of turns is not a new iteration: the task was never restarted.
        assert!(
            fixture
                .calls_of(task)
                .iter()
                .all(|call| call.iteration == 1)
        );
    }

    #[tokio::test]
    async fn running_out_of_turns_at_the_cap_fails_the_task() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("endless");
        task.max_turns = Some(5);
        let task = fixture.add(task);
        let agent =
            MockAgent::with_steps([Step::max_turns(), Step::max_turns(), Step::max_turns()]);
        let report = fixture
            .run_with(
                &agent,
                RunConfig {
                    max_turns_cap: 10,
                    ..quick_config()
                },
            )
            .await;
        assert_eq!(agent.calls().len(), 2);
        let reason = fixture.get(task).failure_reason.unwrap();
        assert!(reason.contains("ran out of turns at 10 turns"), "{reason}");
        assert!(matches!(
            &report.tasks[0].outcome,
            TaskOutcome::Failed { .. }
        ));
        fixture.assert_no_open_session();
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_each_retry_is_recorded() {
        let mut fixture = Fixture::new();
        let task = fixture.task("flaky", &[]);
        let agent = MockAgent::with_steps([
            Step::api_error(529, "overloaded"),
            Step::api_error(500, "internal"),
            Step::succeed("done"),
        ]);
        let recorder = Recorder::default();
        let orchestrator = fixture
            .orchestrator(std::sync::Arc::new(agent.clone()), quick_config())
            .with_events(recorder.sink());
        let report = orchestrator
            .run(
                &orchestrator::Selection::all(),
                agent::CancellationToken::new(),
            )
            .await
            .unwrap();
        assert!(report.all_completed(), "{report:?}");
        let calls = fixture.calls_of(task);
        assert_eq!(
            calls
                .iter()
                .map(|call| call.outcome.to_string())
                .collect::<Vec<_>>(),
            ["api_error", "api_error", "success"]
        );
        // The first call made a transcript, so retries resume it.
        let plans: Vec<_> = agent.calls().iter().map(|call| call.plan.kind()).collect();
        assert_eq!(
            plans,
            [
                agent::PlanKind::Start,
                agent::PlanKind::Resume,
                agent::PlanKind::Resume
            ]
        );
        let decisions = recorder.decisions();
        assert!(
            decisions.iter().any(|d| d.contains("retry 1 of 5")),
            "{decisions:?}"
        );
        assert!(
            decisions.iter().any(|d| d.contains("retry 2 of 5")),
            "{decisions:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_api_fails_the_task_after_the_last_retry() {
        let mut fixture = Fixture::new();
        let task = fixture.task("down", &[]);
        let agent = MockAgent::scripted(|_, _| Step::api_error(503, "unavailable"));
        let mut config = quick_config();
        config.retry.max_retries = 2;
        // Without the run-wide pause (on by default, see `fail_fast`), which would wait for the
        // API instead of spending the task's retries.
        config.retry.outage_after = 0;
        let report = fixture.run_with(&agent, config).await;
        assert!(!report.all_completed());
        assert_eq!(fixture.calls_of(task).len(), 3);
        let stored = fixture.get(task);
        assert_eq!(stored.status, TaskStatus::Failed);
        assert!(
            stored
                .failure_reason
                .unwrap()
                .contains("kept failing after 2 retries")
        );
    }

    #[tokio::test]
    async fn a_rate_limit_waits_until_its_reset() {
        let mut fixture = Fixture::new();
        let task = fixture.task("limited", &[]);
        let reset = SystemTime::now() + Duration::from_millis(400);
        let agent = MockAgent::with_steps([Step::rate_limited(Some(reset)), Step::succeed("done")]);
        let mut config = quick_config();
        config.retry.base_delay = Duration::from_millis(1);
        let report = fixture.run_with(&agent, config).await;
        assert!(report.all_completed());
        let calls = fixture.calls_of(task);
        assert_eq!(calls.len(), 2);
        // The retry started no earlier than the reset (timestamps are milliseconds).
        let reset_ms = reset
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            calls[1].started_at.as_millis() >= reset_ms - 1,
            "{:?} vs {reset_ms}",
            calls[1].started_at
        );
    }

    #[tokio::test]
    async fn a_rate_limit_too_far_away_fails_the_task() {
        let mut fixture = Fixture::new();
        let task = fixture.task("limited", &[]);
        let agent = MockAgent::with_steps([Step::rate_limited(Some(
            SystemTime::now() + Duration::from_secs(7200),
        ))]);
        let _ = fixture.run(&agent).await;
        let reason = fixture.get(task).failure_reason.unwrap();
        assert!(reason.contains("longer than the longest wait"), "{reason}");
    }

    #[tokio::test]
    async fn verification_that_never_passes_exhausts_the_iterations() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("impossible");
        task.max_iterations = 3;
        task.verify_commands = vec![redact::Redacted::trusted("echo nope; exit 1")];
        let task = fixture.add(task);
        let agent = MockAgent::new();
        let _ = fixture.run(&agent).await;
        let stored = fixture.get(task);
        assert_eq!(stored.status, TaskStatus::Failed);
        assert_eq!(stored.iterations, 3);
        assert_eq!(agent.calls().len(), 3);
        assert_eq!(
            stored.failure_reason.unwrap(),
            "verification still fails after 3 iterations: `echo nope; exit 1` exited with status 1"
        );
        let verifications = fixture
            .ledger(|store| store.verifications_for_task(task))
            .unwrap();
        assert_eq!(verifications.len(), 3);
        assert!(verifications.iter().all(|v| v.output_tail == "nope\n"));
    }

    #[tokio::test]
    async fn escalation_blocks_the_task_for_a_person() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("needs a human");
        task.max_iterations = 1;
        task.verify_commands = vec![redact::Redacted::trusted("false")];
        let task = fixture.add(task);
        let agent = MockAgent::new();
        let config = RunConfig {
            escalate_when_exhausted: true,
            ..quick_config()
        };
        let report = fixture.run_with(&agent, config).await;
        assert!(matches!(
            &report.tasks[0].outcome,
            TaskOutcome::Blocked { .. }
        ));
        let stored = fixture.get(task);
        assert_eq!(stored.status, TaskStatus::Blocked);
        assert!(stored.failure_reason.unwrap().contains("baton task retry"));
        fixture.assert_no_open_session();
    }

    #[tokio::test]
    async fn a_full_context_window_rotates_to_a_new_session_with_a_handoff() {
        let mut fixture = Fixture::new();
        let task = fixture.task("long", &["test -f done.txt"]);
        let heavy = Usage {
            input_tokens: 170_000,
            output_tokens: 500,
            cache_read_tokens: 0,
            cache_creation_tokens: 0,
        };
        let agent = MockAgent::with_steps([
            Step::succeed("halfway")
                .usage(heavy)
                .context_window(200_000),
            Step::succeed("finished").write_file("done.txt", ""),
        ]);
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        let (old, new) = (calls[0].plan.session_id(), calls[1].plan.session_id());
        assert_ne!(old, new);
        assert_eq!(calls[1].plan, SessionPlan::Start(new));
        assert!(
            calls[1].prompt.contains("grew too long"),
            "{}",
            calls[1].prompt
        );
        assert!(calls[1].prompt.contains("halfway"), "{}", calls[1].prompt);
        let old_session = fixture.ledger(|store| store.session(old)).unwrap();
        assert_eq!(old_session.status, SessionStatus::Rotated);
        assert_eq!(
            fixture.ledger(|store| store.session(new)).unwrap().status,
            SessionStatus::Completed
        );
        assert_eq!(fixture.sessions_of(task).len(), 2);
    }

    #[tokio::test]
    async fn fatal_agent_errors_fail_at_once_with_an_actionable_reason() {
        let mut fixture = Fixture::new();
        let task = fixture.task("missing", &[]);
        let agent = MockAgent::with_steps([Step::fail_kind(ErrorKind::CannotSpawn)]);
        let _ = fixture.run(&agent).await;
        assert_eq!(agent.calls().len(), 1);
        let stored = fixture.get(task);
        assert_eq!(stored.status, TaskStatus::Failed);
        assert!(
            stored
                .failure_reason
                .unwrap()
                .contains("could not start the agent program")
        );
    }
}
