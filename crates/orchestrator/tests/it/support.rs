//! A temp ledger, tasks in it, and a quick way to run them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::{Agent, CancellationToken, SessionId};
use agent_mock::MockAgent;
use orchestrator::{Orchestrator, RunConfig, RunEvent, RunEvents, RunReport, Selection};
use redact::{Redacted, Redactor};
use session_store::{
    LeaseOwner, NewMilestone, NewSession, NewTask, RecordedCall, Session, SessionFilter,
    SessionPolicy, SessionStatus, Store, StoreOptions, Task, TaskId,
};
use tempfile::TempDir;

/// The store's options in these tests: a redactor that knows the token shapes only.
pub fn options() -> StoreOptions {
    StoreOptions::new(Redactor::new())
}

/// A literal of the test, as the store takes text.
pub fn text(literal: &'static str) -> Redacted {
    Redacted::trusted(literal)
}

/// Text the test composed, as the store takes text.
pub fn composed(text: impl Into<String>) -> Redacted {
    Redactor::new().redact_owned(text.into())
}

pub struct Fixture {
    pub dir: TempDir,
    pub db_path: PathBuf,
    /// A connection of the test's own, for arranging and checking.
    pub store: Store,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("baton.db");
        let store = Store::open_with(&db_path, &options()).unwrap();
        Fixture {
            dir,
            db_path,
            store,
        }
    }

    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    /// A task with default limits and the given verification commands.
    pub fn task(&mut self, title: &str, verify: &[&str]) -> TaskId {
        let mut task = self.new_task(title);
        task.verify_commands = verify.iter().map(|command| composed(*command)).collect();
        self.store.add_task(&task).unwrap()
    }

    pub fn add(&mut self, task: NewTask) -> TaskId {
        self.store.add_task(&task).unwrap()
    }

    pub fn new_task(&self, title: &str) -> NewTask {
        NewTask::new(
            composed(title),
            composed(format!("Do {title}.")),
            self.workdir(),
        )
    }

    pub fn milestone(
        &mut self,
        name: &str,
        policy: Option<SessionPolicy>,
    ) -> session_store::MilestoneId {
        self.store
            .create_milestone(&NewMilestone {
                name: composed(name),
                description: text(""),
                policy,
            })
            .unwrap()
    }

    /// Opens session `id` of `task` under the task policy, leased to `owner` for `lease_ttl`,
    /// as another (perhaps dead) runner would have.
    pub fn open_task_session(
        &mut self,
        id: SessionId,
        task: TaskId,
        owner: LeaseOwner,
        lease_ttl: Duration,
    ) {
        self.store
            .open_session(&NewSession {
                id,
                task,
                milestone: None,
                policy: SessionPolicy::Task,
                owner,
                lease_ttl,
            })
            .unwrap();
    }

    pub fn get(&self, task: TaskId) -> Task {
        self.store.task(task).unwrap()
    }

    pub fn sessions_of(&self, task: TaskId) -> Vec<Session> {
        self.store
            .sessions(&SessionFilter {
                task: Some(task),
                ..SessionFilter::default()
            })
            .unwrap()
    }

    pub fn all_sessions(&self) -> Vec<Session> {
        self.store.sessions(&SessionFilter::default()).unwrap()
    }

    pub fn calls_of(&self, task: TaskId) -> Vec<RecordedCall> {
        self.store.calls_for_task(task).unwrap()
    }

    /// No session may be left open when a run returns.
    pub fn assert_no_open_session(&self) {
        let open: Vec<SessionId> = self
            .all_sessions()
            .into_iter()
            .filter(|session| session.status == SessionStatus::Open)
            .map(|session| session.id)
            .collect();
        assert!(open.is_empty(), "sessions left open: {open:?}");
    }

    pub fn orchestrator(&self, agent: Arc<dyn Agent>, config: RunConfig) -> Orchestrator {
        Orchestrator::new(
            Store::open_with(&self.db_path, &options()).unwrap(),
            agent,
            config,
        )
        .unwrap()
    }

    pub async fn run(&self, agent: &MockAgent) -> RunReport {
        self.run_with(agent, quick_config()).await
    }

    pub async fn run_with(&self, agent: &MockAgent, config: RunConfig) -> RunReport {
        let orchestrator = self.orchestrator(Arc::new(agent.clone()), config);
        bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap()
    }
}

/// The session plans of `calls`, in order: which session each used, and how.
pub fn plans(calls: &[agent::AgentCall]) -> Vec<agent::SessionPlan> {
    calls.iter().map(|call| call.plan).collect()
}

/// A configuration that waits as little as possible.
pub fn quick_config() -> RunConfig {
    let mut config = RunConfig::default();
    config.retry.base_delay = Duration::from_millis(1);
    config.retry.max_delay = Duration::from_millis(5);
    config.call_timeout = Duration::from_secs(20);
    config.verify_timeout = Duration::from_secs(20);
    config
}

/// Runs `future` with a generous bound, so a hung loop fails the test instead of hanging it.
pub async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("the run did not finish within 60 s")
}

/// Collects a run's events for assertions.
#[derive(Clone, Default)]
pub struct Recorder {
    pub events: Arc<Mutex<Vec<RunEvent>>>,
}

impl Recorder {
    pub fn sink(&self) -> RunEvents {
        let events = Arc::clone(&self.events);
        RunEvents::new(move |event| events.lock().unwrap().push(event))
    }

    pub fn decisions(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| match event {
                RunEvent::Decision { decision, .. } => Some(decision.clone()),
                _ => None,
            })
            .collect()
    }
}
