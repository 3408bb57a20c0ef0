//! The loop under stress it must survive: a lease that lapses while the runner is busy,
//! guidance that must not be lost, calls that never reached the agent, a session held by
//! another process, and a panic inside a shared session.

use std::sync::Arc;
use std::time::Duration;

use agent::{CancellationToken, ErrorKind, SessionId, SessionPlan};
use agent_mock::{MockAgent, Step};
use orchestrator::{Orchestrator, RunConfig, Selection, TaskOutcome};
use session_store::{LeaseOwner, SessionPolicy, SessionStatus, TaskStatus};

use crate::support::{Fixture, bounded, quick_config};

on_both_backends! {
    /// A check that outlasts the lease lets another process's recovery abandon the session; the
    /// live runner keeps its task, reopens the session and finishes in it.
    #[tokio::test]
    async fn a_lease_that_lapses_during_a_long_check_is_taken_back_not_lost() {
        let mut fixture = Fixture::new();
        let task = fixture.task(
            "slow check",
            &["touch checking; sleep 1.5; rm checking; test -f done.txt"],
        );
        let agent = MockAgent::with_steps([
            Step::succeed("not yet"),
            Step::succeed("done").write_file("done.txt", ""),
        ]);
        let config = RunConfig {
            lease_ttl: Duration::from_millis(150),
            ..quick_config()
        };
        let orchestrator = fixture.orchestrator(Arc::new(agent.clone()), config);
        // The other process's connection, opened here: the ledger is opened off the runtime.
        let other = orchestrator::Db::new(fixture.open_with(&crate::support::options()));
        let checking = fixture.workdir().join("checking");
        let sweeper = tokio::spawn(async move {
            // Another `baton recover` while the first check runs, once the lease has lapsed: the
            // check marks when it runs, and the lease lasts 150 ms.
            let started = tokio::time::Instant::now();
            while !checking.exists() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the check never ran"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
            let recovered =
                orchestrator::recover(&other, orchestrator::RunConfig::default().lease_ttl)
                    .await
                    .unwrap();
            recovered.len()
        });
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        assert_eq!(sweeper.await.unwrap(), 1, "the lapsed session was swept");
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        let id = calls[0].plan.session_id();
        assert_eq!(
            calls[1].plan,
            SessionPlan::Resume(id),
            "the same session continues"
        );
        assert_eq!(fixture.get(task).status, TaskStatus::Completed);
        assert_eq!(
            fixture.ledger(|store| store.session(id)).unwrap().status,
            SessionStatus::Completed
        );
        assert_eq!(fixture.sessions_of(task).len(), 1);
    }

    /// Guidance rides on the prompt until the model gets it: a resume that finds no transcript
    /// does not use it up; the seeded session's first prompt carries it.
    #[tokio::test]
    async fn guidance_survives_a_call_that_never_reached_the_model() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("guided");
        task.max_iterations = 1;
        task.verify_commands = vec![redact::Redacted::trusted("test -f done.txt")];
        let task = fixture.add(task);
        // The first call does nothing useful; every later one writes the file.
        let agent = MockAgent::scripted(|_, n| match n {
            0 => Step::succeed("did nothing"),
            _ => Step::succeed("ok").write_file("done.txt", ""),
        });
        let _ = fixture.run(&agent).await;
        fixture
            .ledger(|store| {
                store.retry_task(task, Some(&redact::Redacted::trusted("Write done.txt.")))
            })
            .unwrap();

        let first_session = fixture.sessions_of(task)[0].id;
        agent.forget_transcript(first_session);
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        assert_eq!(calls[1].plan, SessionPlan::Resume(first_session));
        assert!(matches!(calls[2].plan, SessionPlan::Start(id) if id != first_session));
        assert!(
            calls[2].prompt.contains("Write done.txt."),
            "{}",
            calls[2].prompt
        );
        assert_eq!(fixture.get(task).guidance, None);
    }

    /// The milestone's next task hears the guidance too.
    #[tokio::test]
    async fn guidance_reaches_a_task_joining_a_milestone_session() {
        let mut fixture = Fixture::new();
        let milestone = fixture.milestone("m", Some(SessionPolicy::Milestone));
        let mut first = fixture.new_task("first");
        first.milestone = Some(milestone);
        let first = fixture.add(first);
        let mut second = fixture.new_task("second");
        second.milestone = Some(milestone);
        second.after = vec![first];
        let second = fixture.add(second);
        fixture
            .ledger(|store| {
                store.set_task_guidance(second, Some(&redact::Redacted::trusted("Keep it short.")))
            })
            .unwrap();
        let agent = MockAgent::new();
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        let prompt = &agent.calls()[1].prompt;
        assert!(
            prompt.contains("next task of this milestone") && prompt.contains("Keep it short."),
            "{prompt}"
        );
        assert_eq!(fixture.get(second).guidance, None);
    }

    /// A session whose only call could not start the agent has no transcript: the retry starts
    /// it, it does not resume it.
    #[tokio::test]
    async fn a_session_the_agent_never_saw_is_started_on_retry() {
        let mut fixture = Fixture::new();
        let task = fixture.task("no binary", &[]);
        let agent = MockAgent::with_steps([Step::fail_kind(ErrorKind::CannotSpawn)]);
        let _ = fixture.run(&agent).await;
        assert_eq!(fixture.get(task).status, TaskStatus::Failed);
        fixture
            .ledger(|store| store.retry_task(task, None))
            .unwrap();
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        let id = calls[0].plan.session_id();
        assert_eq!(calls[1].plan, SessionPlan::Start(id));
        assert_eq!(fixture.sessions_of(task).len(), 1);
    }

    /// A session another live process holds is left to it; the task goes back to pending and the
    /// run does not count it as completed.
    #[tokio::test]
    async fn a_session_held_by_another_process_is_left_alone() {
        let mut fixture = Fixture::new();
        let task = fixture.task("contended", &[]);
        let elsewhere = LeaseOwner {
            host: "another-host".into(),
            ..LeaseOwner::current().unwrap()
        };
        let session = SessionId::new_v4();
        fixture.open_task_session(session, task, elsewhere, Duration::from_secs(600));
        let agent = MockAgent::new();
        let report = fixture.run(&agent).await;
        assert!(!report.all_completed());
        assert!(
            matches!(&report.tasks[0].outcome, TaskOutcome::Skipped { reason } if reason.contains("another baton process")),
            "{report:?}"
        );
        assert!(agent.calls().is_empty());
        assert_eq!(fixture.get(task).status, TaskStatus::Pending);
        assert_eq!(
            fixture
                .ledger(|store| store.session(session))
                .unwrap()
                .status,
            SessionStatus::Open
        );
    }

    /// A panic in the second task of a milestone session closes that shared session.
    #[tokio::test]
    async fn a_panic_inside_a_shared_milestone_session_closes_it() {
        let mut fixture = Fixture::new();
        let milestone = fixture.milestone("m", Some(SessionPolicy::Milestone));
        let mut first = fixture.new_task("first");
        first.milestone = Some(milestone);
        let first = fixture.add(first);
        let mut second = fixture.new_task("second");
        second.milestone = Some(milestone);
        second.after = vec![first];
        let second = fixture.add(second);
        let agent = MockAgent::new();
        agent.then_for_prompt("Do second.", Step::panic("boom"));
        let orchestrator: Orchestrator =
            fixture.orchestrator(Arc::new(agent.clone()), quick_config());
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        assert!(!report.all_completed());
        assert_eq!(fixture.get(second).status, TaskStatus::Failed);
        fixture.assert_no_open_session();
    }
}
