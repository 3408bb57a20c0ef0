//! Watching runs: a run with `RunConfig::watch` keeps taking work — tasks added after it
//! started, tasks a dead runner left behind, tasks a person retried — until it is cancelled,
//! and then hands back what it holds as any cancelled run does.

use std::sync::Arc;
use std::time::Duration;

use agent::{CancellationToken, SessionId, SessionPlan};
use agent_mock::{MockAgent, Step};
use orchestrator::{OrchestratorError, RunConfig, RunEvent, RunReport, Selection, TaskOutcome};
use session_store::{LeaseOwner, SessionStatus, SweepReason, TaskId, TaskStatus};
use tokio::task::JoinHandle;

use crate::support::{Fixture, Recorder, bounded, quick_config};

/// A quick configuration that watches, looking at the ledger every 50 ms.
fn watching() -> RunConfig {
    RunConfig {
        watch: Some(Duration::from_millis(50)),
        ..quick_config()
    }
}

/// A watching run under way, with the token that stops it and what it reports.
struct Watcher {
    run: JoinHandle<Result<RunReport, OrchestratorError>>,
    cancel: CancellationToken,
    recorder: Recorder,
}

impl Watcher {
    fn start(fixture: &Fixture, agent: &MockAgent, config: RunConfig) -> Watcher {
        let recorder = Recorder::default();
        let orchestrator = fixture
            .orchestrator(Arc::new(agent.clone()), config)
            .with_events(recorder.sink());
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let run = tokio::spawn(async move { orchestrator.run(&Selection::all(), token).await });
        Watcher {
            run,
            cancel,
            recorder,
        }
    }

    /// How many times the run has said it waits for work.
    fn waits(&self) -> usize {
        self.events(|event| matches!(event, RunEvent::Waiting))
    }

    fn events(&self, which: impl Fn(&RunEvent) -> bool) -> usize {
        self.recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| which(event))
            .count()
    }

    /// Cancels the run and returns its report; the run must end within 10 s.
    async fn stop(self) -> RunReport {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.run)
            .await
            .expect("the watching run ended within 10 s of its cancellation")
            .unwrap()
            .unwrap()
    }
}

/// Waits (at most 30 s) until `condition` holds.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

on_both_backends! {
    #[tokio::test]
    async fn a_watching_run_takes_up_a_task_added_after_it_started() {
        let mut fixture = Fixture::new();
        let agent = MockAgent::new();
        let watcher = Watcher::start(&fixture, &agent, watching());
        until("the run waits for work", || watcher.waits() == 1).await;

        let task = fixture.task("late", &[]);
        until("the late task completed", || {
            fixture.get(task).status == TaskStatus::Completed
        })
        .await;
        until("the run waits again", || watcher.waits() == 2).await;

        let report = watcher.stop().await;
        assert!(report.cancelled);
        assert_eq!(report.tasks.len(), 1, "{report:?}");
        assert_eq!(report.tasks[0].task, task);
        assert_eq!(report.tasks[0].outcome, TaskOutcome::Completed);
        assert_eq!(agent.calls().len(), 1);
        fixture.assert_no_open_session();
    }

    #[tokio::test]
    async fn cancelling_an_idle_watching_run_ends_it_at_once() {
        let fixture = Fixture::new();
        let watcher = Watcher::start(&fixture, &MockAgent::new(), watching());
        until("the run waits for work", || watcher.waits() == 1).await;
        let report = watcher.stop().await;
        assert!(report.cancelled);
        assert!(report.tasks.is_empty() && report.not_run.is_empty());
    }

    #[tokio::test]
    async fn cancelling_a_watching_run_mid_call_hands_the_task_back_resumable() {
        let mut fixture = Fixture::new();
        let agent = MockAgent::with_steps([Step::hang()]);
        let watcher = Watcher::start(&fixture, &agent, watching());
        let task = fixture.task("held", &[]);
        until("the agent was called", || agent.calls().len() == 1).await;

        let report = watcher.stop().await;
        assert!(report.cancelled);
        assert_eq!(report.tasks[0].outcome, TaskOutcome::Cancelled);
        assert_eq!(fixture.get(task).status, TaskStatus::Pending);
        let sessions = fixture.sessions_of(task);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].status, SessionStatus::Abandoned);
        // The next run resumes that very session.
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        assert_eq!(agent.calls()[1].plan, SessionPlan::Resume(sessions[0].id));
    }

    /// A runner on this host that dies after the watching run started: its task is rescued at
    /// the next look, and continues its session.
    #[tokio::test]
    async fn a_watching_run_rescues_the_task_of_a_runner_that_died_on_this_host() {
        let mut fixture = Fixture::new();
        let task = fixture.task("orphaned", &[]);
        let mut runner = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let owner = LeaseOwner {
            pid: runner.id(),
            start_time: start_time(runner.id()),
            ..LeaseOwner::current().unwrap()
        };
        let session = SessionId::new_v4();
        fixture
            .ledger(|store| store.claim_task(task, &owner))
            .unwrap();
        fixture.open_task_session(session, task, owner, Duration::from_secs(600));
        let agent = MockAgent::new();
        let watcher = Watcher::start(&fixture, &agent, watching());
        until("the run waits for work", || watcher.waits() == 1).await;
        assert_eq!(
            fixture.get(task).status,
            TaskStatus::Running,
            "a live runner's task is left alone"
        );

        runner.kill().unwrap();
        runner.wait().unwrap();
        until("the orphaned task completed", || {
            fixture.get(task).status == TaskStatus::Completed
        })
        .await;
        let report = watcher.stop().await;
        assert_eq!(report.recovered.len(), 1, "{report:?}");
        assert_eq!(
            report.recovered[0].session.as_ref().unwrap().reason,
            SweepReason::OwnerGone
        );
        // It continues the dead runner's session (which had no recorded call, so it starts it).
        assert_eq!(agent.calls()[0].plan.session_id(), session);
        fixture.assert_no_open_session();
    }

    /// A runner on another host whose lease runs out: its task is rescued once the lease has
    /// expired, not before.
    #[tokio::test]
    async fn a_watching_run_rescues_the_task_of_another_hosts_runner_once_its_lease_expired() {
        let mut fixture = Fixture::new();
        let task = fixture.task("elsewhere", &[]);
        let elsewhere = LeaseOwner {
            host: String::from("another-host"),
            ..LeaseOwner::current().unwrap()
        };
        let session = SessionId::new_v4();
        fixture
            .ledger(|store| store.claim_task(task, &elsewhere))
            .unwrap();
        fixture.open_task_session(session, task, elsewhere, Duration::from_secs(2));
        let leased = tokio::time::Instant::now();
        let agent = MockAgent::new();
        let watcher = Watcher::start(&fixture, &agent, watching());
        until("the task completed", || {
            fixture.get(task).status == TaskStatus::Completed
        })
        .await;
        assert!(
            leased.elapsed() >= Duration::from_secs(2),
            "taken over only once the lease had expired"
        );
        let report = watcher.stop().await;
        assert_eq!(
            report.recovered[0].session.as_ref().unwrap().reason,
            SweepReason::LeaseExpired
        );
        assert_eq!(agent.calls()[0].plan.session_id(), session);
    }

    /// A check that outlasts the lease TTL does not make the watching run sweep its own session:
    /// it keeps the leases it holds fresh before each sweep.
    #[tokio::test]
    async fn a_watching_run_keeps_its_own_leases_through_a_long_check() {
        let mut fixture = Fixture::new();
        // Room for a second task, so that the run looks at the ledger while the check runs.
        let config = RunConfig {
            lease_ttl: Duration::from_millis(300),
            concurrency: 2,
            ..watching()
        };
        let task = fixture.task("slow check", &["sleep 1.5"]);
        let watcher = Watcher::start(&fixture, &MockAgent::new(), config);
        until("the task completed", || {
            fixture.get(task).status == TaskStatus::Completed
        })
        .await;
        let recovered = watcher.events(|event| matches!(event, RunEvent::Recovered { .. }));
        let report = watcher.stop().await;
        assert_eq!(recovered, 0, "{report:?}");
        assert!(report.recovered.is_empty(), "{report:?}");
        let sessions = fixture.sessions_of(task);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].status, SessionStatus::Completed);
    }

    /// A task the watching run failed and a person retried is new work: it is taken up again,
    /// and the report has it once, as it ended last.
    #[tokio::test]
    async fn a_watching_run_takes_up_a_task_a_person_retried() {
        let mut fixture = Fixture::new();
        let agent = MockAgent::new();
        let watcher = Watcher::start(&fixture, &agent, watching());
        let mut new = fixture.new_task("flaky");
        new.max_iterations = 1;
        new.verify_commands = vec![crate::support::text("test -f ok")];
        let task = fixture.add(new);
        until("the task failed", || {
            fixture.get(task).status == TaskStatus::Failed
        })
        .await;
        std::fs::write(fixture.workdir().join("ok"), "").unwrap();
        fixture
            .ledger(|store| store.retry_task(task, None))
            .unwrap();
        until("the retried task completed", || {
            fixture.get(task).status == TaskStatus::Completed
        })
        .await;
        let report = watcher.stop().await;
        assert_eq!(report.tasks.len(), 1, "{report:?}");
        assert_eq!(report.tasks[0].outcome, TaskOutcome::Completed);
    }

    /// The run's selection holds while it watches: a task of another milestone is left alone.
    #[tokio::test]
    async fn a_watching_run_keeps_to_its_selection() {
        let mut fixture = Fixture::new();
        let mine = fixture.milestone("mine", None);
        let recorder = Recorder::default();
        let agent = MockAgent::new();
        let orchestrator = fixture
            .orchestrator(Arc::new(agent.clone()), watching())
            .with_events(recorder.sink());
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let selection = Selection {
            milestone: Some(mine),
            ..Selection::default()
        };
        let run = tokio::spawn(async move { orchestrator.run(&selection, token).await });
        let other = fixture.task("not mine", &[]);
        let mut new = fixture.new_task("mine");
        new.milestone = Some(mine);
        let selected = fixture.add(new);
        until("the selected task completed", || {
            fixture.get(selected).status == TaskStatus::Completed
        })
        .await;
        // A few more looks at the ledger.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
        let report = bounded(run).await.unwrap().unwrap();
        assert_eq!(fixture.get(other).status, TaskStatus::Pending);
        let taken: Vec<TaskId> = report.tasks.iter().map(|report| report.task).collect();
        assert_eq!(taken, vec![selected]);
    }

    /// A spent run budget ends a watching run as it ends any run: no new call, exit by report.
    #[tokio::test]
    async fn a_spent_run_budget_ends_a_watching_run() {
        let mut fixture = Fixture::new();
        let mut config = watching();
        config.budget.max_cost = Some(session_store::Cost::from_usd(0.0001));
        let agent = MockAgent::scripted(|_, _| Step::succeed("done").cost_usd(0.01));
        fixture.task("spends", &[]);
        let second = fixture.task("never starts", &[]);
        let watcher = Watcher::start(&fixture, &agent, config);
        let report = bounded(watcher.run).await.unwrap().unwrap();
        assert!(report.budget_stop.is_some(), "{report:?}");
        assert!(!report.cancelled);
        assert_eq!(fixture.get(second).status, TaskStatus::Pending);
        assert_eq!(agent.calls().len(), 1);
    }

    /// An agent that cannot work ends a watching run as it ends any run: the halt, not a wait.
    #[tokio::test]
    async fn a_refusal_no_retry_fixes_ends_a_watching_run() {
        let mut fixture = Fixture::new();
        let agent = MockAgent::scripted(|_, _| Step::fail_kind(agent::ErrorKind::Authentication));
        let task = fixture.task("refused", &[]);
        let watcher = Watcher::start(&fixture, &agent, watching());
        let report = bounded(watcher.run).await.unwrap().unwrap();
        assert!(report.unavailable.is_some(), "{report:?}");
        assert!(!report.cancelled);
        assert_eq!(fixture.get(task).status, TaskStatus::Pending);
        fixture.assert_no_open_session();
    }

    /// Without `watch` a run ends as it always has when nothing it selected is ready, even with
    /// no task at all.
    #[tokio::test]
    async fn without_watching_a_run_ends_when_nothing_is_ready() {
        let fixture = Fixture::new();
        let report = fixture.run(&MockAgent::new()).await;
        assert!(!report.cancelled && report.tasks.is_empty());
    }

    #[test]
    fn a_zero_watch_interval_is_refused() {
        let fixture = Fixture::new();
        let store = fixture.open_with(&crate::support::options());
        let config = RunConfig {
            watch: Some(Duration::ZERO),
            ..RunConfig::default()
        };
        let refused = orchestrator::Orchestrator::new(store, Arc::new(MockAgent::new()), config);
        assert!(matches!(refused, Err(OrchestratorError::Config { .. })));
    }
}

/// When process `pid` started, in clock ticks since boot: field 22 of `/proc/<pid>/stat`.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(19).unwrap().parse().unwrap()
}
