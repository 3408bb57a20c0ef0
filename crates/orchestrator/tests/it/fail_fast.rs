//! Errors no retry fixes stop the whole run: the first refusal ends it, its tasks stay
//! pending in resumable sessions, and the next run continues them. A failing API pauses the
//! whole run instead, up to a bound.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent::{CancellationToken, ErrorKind, SessionPlan};
use agent_mock::{MockAgent, Step};
use orchestrator::{RunConfig, Selection, TaskOutcome};
use session_store::{CallOutcome, SessionStatus, TaskStatus};

use crate::support::{Fixture, Recorder, bounded, quick_config};

on_both_backends! {
    #[tokio::test]
    async fn the_first_refusal_stops_the_run_and_leaves_every_task_pending() {
        for kind in [
            ErrorKind::Authentication,
            ErrorKind::Permission,
            ErrorKind::Billing,
            ErrorKind::ModelUnavailable,
        ] {
            let mut fixture = Fixture::new();
            let tasks: Vec<_> = (0..10)
                .map(|n| fixture.task(&format!("task {n}"), &[]))
                .collect();
            // Every call is refused, as with a bad key.
            let agent = MockAgent::scripted(move |_, _| Step::fail_kind(kind));
            let config = RunConfig {
                concurrency: 2,
                ..quick_config()
            };
            let report = fixture.run_with(&agent, config).await;

            let unavailable = report
                .unavailable
                .clone()
                .expect("the run says why it stopped");
            assert_eq!(unavailable.kind, kind);
            assert!(!unavailable.what_to_do.is_empty());
            assert!(!report.all_completed());
            assert!(!report.cancelled, "a halt is not a person's Ctrl-C");
            // At most the calls already under way when the refusal came: one per running task.
            assert!(agent.calls().len() <= 2, "{} calls", agent.calls().len());
            for task in &tasks {
                assert_eq!(fixture.get(*task).status, TaskStatus::Pending, "{kind}");
            }
            assert!(
                report
                    .tasks
                    .iter()
                    .all(|task| task.outcome == TaskOutcome::Cancelled),
                "{report:?}"
            );
            fixture.assert_no_open_session();
            // Each call is recorded with the refusal's own kind, or as cancelled when the halt
            // stopped it first.
            let recorded: Vec<_> = tasks
                .iter()
                .flat_map(|task| fixture.calls_of(*task))
                .collect();
            assert!(!recorded.is_empty() && recorded.len() <= 2);
            assert_eq!(
                fixture.calls_of(unavailable.task)[0].outcome,
                CallOutcome::Failed(kind)
            );
            for call in recorded {
                assert!(
                    [
                        CallOutcome::Failed(kind),
                        CallOutcome::Failed(ErrorKind::Cancelled)
                    ]
                    .contains(&call.outcome),
                    "{:?}",
                    call.outcome
                );
            }
            for session in fixture.all_sessions() {
                assert_eq!(session.status, SessionStatus::Abandoned);
            }
        }
    }

    #[tokio::test]
    async fn after_the_cause_is_fixed_the_next_run_continues_in_the_same_sessions() {
        let mut fixture = Fixture::new();
        let tasks: Vec<_> = (0..3)
            .map(|n| fixture.task(&format!("task {n}"), &[]))
            .collect();
        let refusing = MockAgent::with_steps([Step::fail_kind(ErrorKind::Authentication)]);
        let report = fixture.run(&refusing).await;
        assert!(report.unavailable.is_some());
        let refused_task = report.unavailable.unwrap().task;
        let first_session = fixture.sessions_of(refused_task)[0].id;

        let fixed = MockAgent::with_steps([]);
        let report = fixture.run(&fixed).await;
        assert!(report.all_completed(), "{report:?}");
        for task in &tasks {
            assert_eq!(fixture.get(*task).status, TaskStatus::Completed);
        }
        let resumed = fixed.calls_in(first_session);
        assert!(
            matches!(
                resumed.first().map(|call| call.plan),
                Some(SessionPlan::Resume(_))
            ),
            "the refused task continues its session: {:?}",
            fixed.calls()
        );
    }

    #[tokio::test]
    async fn a_failing_api_pauses_the_run_once_and_every_task_completes() {
        let mut fixture = Fixture::new();
        let tasks: Vec<_> = (0..6)
            .map(|n| fixture.task(&format!("task {n}"), &[]))
            .collect();
        // The API fails the first eight calls (529, as when overloaded), then recovers.
        let agent = MockAgent::scripted(|_, n| {
            if n < 8 {
                Step::fail_kind(ErrorKind::Api)
            } else {
                Step::succeed("done")
            }
        });
        let recorder = Recorder::default();
        let orchestrator = fixture
            .orchestrator(Arc::new(agent.clone()), outage_config(3))
            .with_events(recorder.sink());
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        assert!(report.all_completed(), "{report:?}");
        for task in &tasks {
            let task = fixture.get(*task);
            assert_eq!(task.status, TaskStatus::Completed);
            assert_eq!(
                task.iterations, 1,
                "no task spends an iteration on the outage"
            );
        }
        let pauses: Vec<String> = recorder
            .decisions()
            .into_iter()
            .filter(|decision| decision.contains("times in a row"))
            .collect();
        assert!(!pauses.is_empty(), "{:?}", recorder.decisions());
        assert!(
            pauses[0].starts_with("the API has failed 3 times in a row; waiting"),
            "{pauses:?}"
        );
        // Every attempt is a recorded call.
        let calls: usize = tasks.iter().map(|task| fixture.calls_of(*task).len()).sum();
        assert_eq!(calls, agent.calls().len());
    }

    #[tokio::test]
    async fn an_outage_longer_than_the_bound_stops_the_run_with_tasks_pending() {
        let mut fixture = Fixture::new();
        let tasks: Vec<_> = (0..4)
            .map(|n| fixture.task(&format!("task {n}"), &[]))
            .collect();
        let agent = MockAgent::scripted(|_, _| Step::fail_kind(ErrorKind::Api));
        let mut config = outage_config(2);
        config.retry.max_outage = Duration::from_millis(300);
        let report = fixture.run_with(&agent, config).await;
        let unavailable = report.unavailable.expect("the run says why it stopped");
        assert_eq!(unavailable.kind, ErrorKind::Api);
        assert!(
            unavailable.cause.contains("kept failing"),
            "{}",
            unavailable.cause
        );
        assert!(unavailable.what_to_do.contains("api.max_outage"));
        for task in &tasks {
            assert_eq!(fixture.get(*task).status, TaskStatus::Pending);
        }
        fixture.assert_no_open_session();
    }

    #[tokio::test]
    async fn a_usage_limit_waits_for_its_reset_and_says_so_once_with_the_time() {
        let mut fixture = Fixture::new();
        fixture.task("limited", &[]);
        // The reset is set as the call is made, so that the ledger's work before the call
        // (slower on a PostgreSQL server) does not use the wait up; its 600 ms leave the
        // ledger's work after the call that long before the reset has passed ("in 0 s").
        let agent = MockAgent::scripted(|_, number| match number {
            0 => Step::rate_limited(Some(SystemTime::now() + Duration::from_millis(600))),
            _ => Step::succeed("done"),
        });
        let recorder = Recorder::default();
        let orchestrator = fixture
            .orchestrator(Arc::new(agent.clone()), quick_config())
            .with_events(recorder.sink());
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        assert!(report.all_completed(), "{report:?}");
        let said: Vec<String> = recorder
            .decisions()
            .into_iter()
            .filter(|decision| decision.contains("usage limit"))
            .collect();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].contains(" UTC (in 1 s); waiting for the reset"),
            "{}",
            said[0]
        );
    }
}

/// A configuration whose outage pauses are short.
fn outage_config(concurrency: usize) -> RunConfig {
    let mut config = RunConfig {
        concurrency,
        ..quick_config()
    };
    config.retry.outage_pause = Duration::from_millis(50);
    config.retry.max_delay = Duration::from_millis(200);
    config
}
