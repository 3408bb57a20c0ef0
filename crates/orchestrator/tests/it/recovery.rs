//! Recovery: a run that finds a dead runner's session abandons it, stops the agent it left
//! running, and completes the task by resuming its session.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use agent::{PlanKind, SessionId, SessionPlan, Usage};
use agent_mock::MockAgent;
use session_store::{
    CallOutcome, Cost, LeaseOwner, NewAgentCall, SessionStatus, TaskStatus, Timestamp,
};

use crate::support::Fixture;

/// The identity of a process that has exited: a lease holder that is certainly gone.
fn dead_owner() -> LeaseOwner {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    LeaseOwner {
        pid,
        ..LeaseOwner::current().unwrap()
    }
}

on_both_backends! {
    /// Regression 7: a stale lease becomes `abandoned`, and the task runs to completion after,
    /// resuming the very session it had.
    #[tokio::test]
    async fn a_dead_runners_session_is_abandoned_and_its_task_completes_by_resuming_it() {
        let mut fixture = Fixture::new();
        let task = fixture.task("interrupted", &["test -f done.txt"]);
        let dead = dead_owner();
        let session = SessionId::new_v4();
        fixture
            .ledger(|store| store.claim_task(task, &dead))
            .unwrap();
        fixture.open_task_session(session, task, dead.clone(), Duration::from_secs(600));
        fixture
            .ledger(|store| {
                store.record_agent_call(&NewAgentCall {
                    session,
                    task,
                    iteration: 1,
                    plan: PlanKind::Start,
                    prompt: redact::Redacted::trusted("Do interrupted."),
                    result_text: Some(redact::Redacted::trusted("half done")),
                    outcome: CallOutcome::Success,
                    subtype: Some(redact::Redacted::trusted("success")),
                    error_message: None,
                    reported_session: Some(session),
                    usage: Usage {
                        input_tokens: 10,
                        output_tokens: 5,
                        cache_read_tokens: 0,
                        cache_creation_tokens: 0,
                    },
                    cost: Cost::from_usd(0.01),
                    turns: 1,
                    duration: Duration::from_millis(5),
                    exit: None,
                    started_at: Timestamp::now(),
                    ended_at: Timestamp::now(),
                    key: None,
                })
            })
            .unwrap();

        let agent = MockAgent::new();
        agent.seed_transcript(session);
        agent.then_for_session(
            session,
            agent_mock::Step::succeed("finished").write_file("done.txt", ""),
        );
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        assert_eq!(report.recovered.len(), 1);
        assert_eq!(report.recovered[0].task, task);
        assert!(report.recovered[0].requeued);

        let calls = agent.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].plan, SessionPlan::Resume(session));
        assert!(
            calls[0].prompt.contains("interrupted"),
            "{}",
            calls[0].prompt
        );
        let stored = fixture.ledger(|store| store.session(session)).unwrap();
        assert_eq!(stored.status, SessionStatus::Completed);
        assert_eq!(
            stored.totals.agent_calls, 2,
            "the call before the crash is still there"
        );
        assert_eq!(fixture.get(task).status, TaskStatus::Completed);
        // The abandonment is in the log.
        let swept = fixture
            .ledger(|store| {
                store.events(&session_store::EventFilter {
                    task: Some(task),
                    ..Default::default()
                })
            })
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == session_store::event_kind::SESSION_SWEPT)
            .count();
        assert_eq!(swept, 1);
    }

    /// An agent process a dead runner left behind is stopped before the task runs again.
    #[tokio::test]
    async fn a_stale_agent_process_is_stopped() {
        let mut fixture = Fixture::new();
        let task = fixture.task("orphaned agent", &[]);
        let dead = dead_owner();
        let session = SessionId::new_v4();
        fixture
            .ledger(|store| store.claim_task(task, &dead))
            .unwrap();
        fixture.open_task_session(session, task, dead, Duration::from_secs(600));
        // A stand-in for the orphaned agent: a process leading its own group, as agents do.
        let mut stale = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap();
        fixture
            .ledger(|store| store.set_agent_pid(session, Some(stale.id())))
            .unwrap();

        let agent = MockAgent::new();
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        assert!(report.recovered[0].stopped_agent);
        let status = stale.wait().unwrap();
        assert!(
            !status.success(),
            "the stale agent was stopped by a signal: {status:?}"
        );
        // It had no recorded call, so the agent may or may not have a transcript: the loop starts,
        // and would resume on "in use". The mock has none, so it starts.
        assert_eq!(agent.calls()[0].plan, SessionPlan::Start(session));
    }

    /// A lease that is merely expired (its holder may be alive elsewhere) is swept too.
    #[tokio::test]
    async fn an_expired_lease_is_swept() {
        let mut fixture = Fixture::new();
        let task = fixture.task("expired", &[]);
        let alive_elsewhere = LeaseOwner {
            host: "another-host".into(),
            ..LeaseOwner::current().unwrap()
        };
        let session = SessionId::new_v4();
        fixture
            .ledger(|store| store.claim_task(task, &alive_elsewhere))
            .unwrap();
        fixture.open_task_session(session, task, alive_elsewhere, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(20));
        let report = fixture.run(&MockAgent::new()).await;
        assert!(report.all_completed(), "{report:?}");
        assert_eq!(report.recovered.len(), 1);
        assert_eq!(
            fixture
                .ledger(|store| store.session(session))
                .unwrap()
                .status,
            SessionStatus::Completed
        );
    }

    /// A task claimed by a runner that died before opening a session is requeued too.
    #[tokio::test]
    async fn a_task_orphaned_before_its_session_opened_is_requeued() {
        let mut fixture = Fixture::new();
        let task = fixture.task("claimed", &[]);
        fixture
            .ledger(|store| store.claim_task(task, &dead_owner()))
            .unwrap();
        let report = fixture.run(&MockAgent::new()).await;
        assert!(report.all_completed(), "{report:?}");
        assert_eq!(report.recovered.len(), 1);
        assert!(report.recovered[0].session.is_none());
        assert_eq!(fixture.get(task).status, TaskStatus::Completed);
    }

    /// A live runner's task and session are left alone.
    #[tokio::test]
    async fn a_live_runners_work_is_left_alone() {
        let mut fixture = Fixture::new();
        let task = fixture.task("busy", &[]);
        let me = LeaseOwner::current().unwrap();
        let session = SessionId::new_v4();
        fixture.ledger(|store| store.claim_task(task, &me)).unwrap();
        fixture.open_task_session(session, task, me, Duration::from_secs(600));
        let agent = MockAgent::new();
        let report = fixture.run(&agent).await;
        assert!(report.recovered.is_empty());
        assert!(agent.calls().is_empty());
        assert_eq!(fixture.get(task).status, TaskStatus::Running);
        assert_eq!(
            fixture
                .ledger(|store| store.session(session))
                .unwrap()
                .status,
            SessionStatus::Open
        );
    }

    #[tokio::test]
    async fn recovery_stops_a_check_that_outlived_its_runner() {
        let mut fixture = Fixture::new();
        let task = fixture.task("checked", &["sleep 60"]);
        // What a killed Baton leaves: `sh` leading its own group, with the command as its child.
        let mut check = std::process::Command::new("sh")
            .args(["-c", "sleep 60; true"])
            .process_group(0)
            .spawn()
            .unwrap();
        fixture
            .ledger(|store| {
                store.record_check_process(task, check.id(), &redact::Redacted::trusted("sleep 60"))
            })
            .unwrap();
        let orchestrator = fixture.orchestrator(
            std::sync::Arc::new(MockAgent::new()),
            crate::support::quick_config(),
        );
        orchestrator.recover().await.unwrap();
        let status = check.wait().unwrap();
        assert!(!status.success(), "the check was stopped: {status:?}");
        assert_eq!(
            fixture.ledger(|store| store.check_processes()).unwrap(),
            vec![]
        );
        // The group is gone: its `sleep` child was stopped with it.
        // SAFETY: signal 0 only checks for existence.
        let group_left = unsafe { libc::killpg(check.id() as libc::pid_t, 0) } == 0;
        assert!(!group_left, "no process of the check's group is left");
    }
}
