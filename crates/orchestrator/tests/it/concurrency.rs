//! Several tasks at once, and every way a call can end early: timeout, cancellation, panic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agent::{CancellationToken, SessionId};
use agent_mock::{MockAgent, Step};
use orchestrator::{RunConfig, RunEvent, Selection, TaskOutcome};
use session_store::{SessionStatus, TaskStatus};

use crate::support::{Fixture, Recorder, bounded, quick_config};

on_both_backends! {
    #[tokio::test]
    async fn ready_tasks_run_concurrently_each_in_its_own_session() {
        let mut fixture = Fixture::new();
        let tasks: Vec<_> = (0..8)
            .map(|n| fixture.task(&format!("t{n}"), &[]))
            .collect();
        let agent =
            MockAgent::scripted(|_, _| Step::succeed("done").delay(Duration::from_millis(150)));
        let recorder = Recorder::default();
        let orchestrator = fixture
            .orchestrator(
                Arc::new(agent.clone()),
                RunConfig {
                    concurrency: 4,
                    ..quick_config()
                },
            )
            .with_events(recorder.sink());
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        assert!(report.all_completed());

        // At most four calls ran at once, and never two in one session.
        let mut running: HashMap<SessionId, u32> = HashMap::new();
        let (mut now, mut peak) = (0, 0);
        for event in recorder.events.lock().unwrap().iter() {
            match event {
                RunEvent::CallStarted { session, .. } => {
                    now += 1;
                    peak = peak.max(now);
                    let count = running.entry(*session).or_default();
                    *count += 1;
                    assert_eq!(*count, 1, "two calls at once in session {session}");
                }
                RunEvent::CallFinished { session, .. } => {
                    now -= 1;
                    *running.get_mut(session).unwrap() -= 1;
                }
                _ => {}
            }
        }
        assert!(peak > 1 && peak <= 4, "peak concurrency {peak}");
        let sessions: Vec<SessionId> = tasks
            .iter()
            .map(|task| fixture.sessions_of(*task)[0].id)
            .collect();
        let distinct: std::collections::HashSet<_> = sessions.iter().collect();
        assert_eq!(distinct.len(), tasks.len());
    }

    #[tokio::test]
    async fn dependencies_run_in_order() {
        let mut fixture = Fixture::new();
        let first = fixture.task("first", &[]);
        let mut second = fixture.new_task("second");
        second.after = vec![first];
        let second = fixture.add(second);
        // The first task is slow and there is room for both: without the dependency, the second
        // would start while the first is still running. (The report lists tasks as they finish,
        // which a fast first task would get right by luck.)
        let agent = MockAgent::scripted(|call, _| {
            let delay = if call.prompt.contains("Do first.") {
                300
            } else {
                0
            };
            Step::succeed("done").delay(Duration::from_millis(delay))
        });
        let recorder = Recorder::default();
        let orchestrator = fixture
            .orchestrator(
                Arc::new(agent.clone()),
                RunConfig {
                    concurrency: 4,
                    ..quick_config()
                },
            )
            .with_events(recorder.sink());
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        assert!(report.all_completed(), "{report:?}");

        let events = recorder.events.lock().unwrap().clone();
        let first_finished = events
            .iter()
            .position(
                |event| matches!(event, RunEvent::TaskFinished { task, .. } if *task == first),
            )
            .expect("the first task finished");
        let second_called = events
            .iter()
            .position(
                |event| matches!(event, RunEvent::CallStarted { task, .. } if *task == second),
            )
            .expect("the second task's agent was called");
        assert!(
            first_finished < second_called,
            "the second task's call started before the first task finished: {events:#?}"
        );
        // The ledger agrees: the second task's only call started once the first had completed.
        let finished_at = fixture
            .get(first)
            .finished_at
            .expect("the first task finished");
        let calls = fixture.calls_of(second);
        assert_eq!(calls.len(), 1);
        assert!(
            calls[0].started_at >= finished_at,
            "the second task's call started at {}, the first task finished at {finished_at}",
            calls[0].started_at
        );
    }

    #[tokio::test]
    async fn a_failed_dependency_leaves_its_dependents_pending_and_says_why() {
        let mut fixture = Fixture::new();
        let mut first = fixture.new_task("first");
        first.max_iterations = 1;
        first.verify_commands = vec![redact::Redacted::trusted("false")];
        let first = fixture.add(first);
        let mut second = fixture.new_task("second");
        second.after = vec![first];
        let second = fixture.add(second);
        let report = fixture.run(&MockAgent::new()).await;
        assert!(!report.all_completed());
        assert_eq!(
            report.not_run,
            [(second, format!("waits for task {first} (failed)"))]
        );
        assert_eq!(fixture.get(second).status, TaskStatus::Pending);
    }

    #[tokio::test]
    async fn a_timed_out_call_is_recorded_and_the_next_iteration_resumes() {
        let mut fixture = Fixture::new();
        let task = fixture.task("slow", &[]);
        let agent = MockAgent::with_steps([Step::hang(), Step::succeed("done")]);
        let config = RunConfig {
            call_timeout: Duration::from_millis(200),
            ..quick_config()
        };
        let report = fixture.run_with(&agent, config).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = fixture.calls_of(task);
        assert_eq!(
            calls
                .iter()
                .map(|call| call.outcome.to_string())
                .collect::<Vec<_>>(),
            ["timeout", "success"]
        );
        assert_eq!(
            calls.iter().map(|call| call.iteration).collect::<Vec<_>>(),
            [1, 2]
        );
        let prompt = &agent.calls()[1].prompt;
        assert!(
            prompt.contains("ended with an error: the agent call timed out"),
            "{prompt}"
        );
        fixture.assert_no_open_session();
    }

    #[tokio::test]
    async fn a_timeout_on_the_last_iteration_fails_the_task_and_closes_the_session() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("slow");
        task.max_iterations = 1;
        let task = fixture.add(task);
        let agent = MockAgent::with_steps([Step::hang()]);
        let config = RunConfig {
            call_timeout: Duration::from_millis(100),
            ..quick_config()
        };
        let _ = fixture.run_with(&agent, config).await;
        assert_eq!(fixture.get(task).status, TaskStatus::Failed);
        assert_eq!(fixture.sessions_of(task)[0].status, SessionStatus::Failed);
        fixture.assert_no_open_session();
    }

    #[tokio::test]
    async fn cancellation_stops_calls_closes_sessions_and_requeues_tasks() {
        let mut fixture = Fixture::new();
        let tasks: Vec<_> = (0..3)
            .map(|n| fixture.task(&format!("t{n}"), &[]))
            .collect();
        let agent = MockAgent::scripted(|_, _| Step::hang());
        let orchestrator = fixture.orchestrator(
            Arc::new(agent.clone()),
            RunConfig {
                concurrency: 2,
                ..quick_config()
            },
        );
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        // Cancelled once both slots hold a hung call: by then the ledger's work before each
        // call is done, whatever it took (a fixed 200 ms could end before the second call
        // started on a busy PostgreSQL server).
        let probe = agent.clone();
        tokio::spawn(async move {
            while probe.calls().len() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // A moment for a third call, were the run wrong enough to start one.
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let report = bounded(orchestrator.run(&Selection::all(), cancel))
            .await
            .unwrap();
        assert!(report.cancelled);
        assert!(!report.all_completed());
        assert_eq!(
            agent.calls().len(),
            2,
            "no task is dispatched after cancellation"
        );
        for task in &tasks {
            assert_eq!(fixture.get(*task).status, TaskStatus::Pending);
        }
        for session in fixture.all_sessions() {
            assert_eq!(session.status, SessionStatus::Abandoned);
            assert_eq!(session.end_reason.as_deref(), Some("cancelled"));
        }
        // The two interrupted tasks are reported as such; only the third was never started.
        let interrupted: Vec<_> = report.tasks.iter().map(|task| task.task).collect();
        assert_eq!(interrupted.len(), 2);
        let never_started: Vec<_> = tasks
            .iter()
            .copied()
            .filter(|task| !interrupted.contains(task))
            .collect();
        assert_eq!(
            report.not_run,
            [(
                never_started[0],
                String::from("not started: the run stopped first")
            )]
        );
        let cancelled_calls: usize = tasks.iter().map(|task| fixture.calls_of(*task).len()).sum();
        assert_eq!(cancelled_calls, 2, "the cancelled calls are recorded");

        // The next run resumes the sessions the cancelled tasks had.
        let agent_after = MockAgent::new();
        for session in fixture.all_sessions() {
            agent_after.seed_transcript(session.id);
        }
        let report = fixture.run(&agent_after).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent_after.calls();
        let plans: Vec<_> = calls.iter().map(|call| call.plan.kind()).collect();
        assert_eq!(
            plans
                .iter()
                .filter(|kind| **kind == agent::PlanKind::Resume)
                .count(),
            2,
            "{plans:?}"
        );
    }

    #[tokio::test]
    async fn a_panic_inside_the_agent_fails_the_task_closes_its_session_and_the_run_goes_on() {
        let mut fixture = Fixture::new();
        let doomed = fixture.task("doomed", &[]);
        let fine = fixture.task("fine", &[]);
        let agent = MockAgent::new();
        agent.then_for_prompt("Do doomed.", Step::panic("boom"));
        let report = fixture.run(&agent).await;
        let outcomes: HashMap<_, _> = report
            .tasks
            .iter()
            .map(|task| (task.task, task.outcome.clone()))
            .collect();
        assert!(
            matches!(&outcomes[&doomed], TaskOutcome::Failed { reason } if reason.contains("boom")),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[&fine], TaskOutcome::Completed);
        assert_eq!(fixture.get(doomed).status, TaskStatus::Failed);
        assert_eq!(fixture.sessions_of(doomed)[0].status, SessionStatus::Failed);
        fixture.assert_no_open_session();
    }

    #[tokio::test]
    async fn a_missing_working_directory_fails_only_its_task() {
        let mut fixture = Fixture::new();
        let gone = fixture.dir.path().join("gone");
        std::fs::create_dir(&gone).unwrap();
        let mut task = fixture.new_task("orphan");
        task.working_dir = gone.clone();
        let orphan = fixture.add(task);
        let fine = fixture.task("fine", &[]);
        std::fs::remove_dir(&gone).unwrap();
        let report = fixture.run(&MockAgent::new()).await;
        assert!(!report.all_completed());
        let reason = fixture.get(orphan).failure_reason.unwrap();
        assert!(reason.contains("does not exist"), "{reason}");
        assert_eq!(fixture.get(fine).status, TaskStatus::Completed);
    }
}
