//! A temp ledger on the running test's backend, tasks in it, and a quick way to run them.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agent::{Agent, CancellationToken, SessionId};
use agent_mock::MockAgent;
use orchestrator::{Orchestrator, RunConfig, RunEvent, RunEvents, RunReport, Selection};
use pg_testkit::TestDatabase;
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

/// A ledger of the running test's backend ([`on_both_backends!`]; SQLite outside it) and a
/// temporary directory for the tasks' files.
pub struct Fixture {
    pub dir: TempDir,
    /// Where the ledger is, as `Store::open_with` takes it: a file in `dir`, or the URL of a
    /// PostgreSQL database of the test's own.
    pub db_path: PathBuf,
    /// A connection of the test's own, for arranging and checking ([`Fixture::ledger`]).
    store: Mutex<Store>,
    /// The PostgreSQL database, dropped with the fixture.
    database: Option<TestDatabase>,
}

impl Fixture {
    /// A fixture on the running test's backend. Call it on the test's own thread (not in a
    /// spawned task): the backend is the thread's.
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let database = match BACKEND.get() {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PREPARED.take().unwrap_or_else(|| {
                let name = TEST_NAME.with_borrow(Clone::clone);
                blocking(|| TestDatabase::create(&name))
                    .expect("the server that was there when the test started is still there")
            })),
        };
        let db_path = match &database {
            Some(database) => PathBuf::from(database.url()),
            None => dir.path().join("baton.db"),
        };
        let store = blocking(|| Store::open_with(&db_path, &options()).unwrap());
        Fixture {
            dir,
            db_path,
            store: Mutex::new(store),
            database,
        }
    }

    /// Runs `operation` on the test's own connection to the ledger.
    pub fn ledger<R: Send>(&self, operation: impl FnOnce(&mut Store) -> R + Send) -> R {
        blocking(|| {
            let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            operation(&mut store)
        })
    }

    /// A new connection to the ledger, opened with `options`.
    pub fn open_with(&self, options: &StoreOptions) -> Store {
        blocking(|| Store::open_with(&self.db_path, options).unwrap())
    }

    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    /// A task with default limits and the given verification commands.
    pub fn task(&mut self, title: &str, verify: &[&str]) -> TaskId {
        let mut task = self.new_task(title);
        task.verify_commands = verify.iter().map(|command| composed(*command)).collect();
        self.add(task)
    }

    pub fn add(&mut self, task: NewTask) -> TaskId {
        self.ledger(|store| store.add_task(&task)).unwrap()
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
        let milestone = NewMilestone {
            name: composed(name),
            description: text(""),
            policy,
        };
        self.ledger(|store| store.create_milestone(&milestone))
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
        let session = NewSession {
            id,
            task,
            milestone: None,
            policy: SessionPolicy::Task,
            owner,
            lease_ttl,
        };
        self.ledger(|store| store.open_session(&session)).unwrap();
    }

    pub fn get(&self, task: TaskId) -> Task {
        self.ledger(|store| store.task(task)).unwrap()
    }

    pub fn sessions_of(&self, task: TaskId) -> Vec<Session> {
        let filter = SessionFilter {
            task: Some(task),
            ..SessionFilter::default()
        };
        self.ledger(|store| store.sessions(&filter)).unwrap()
    }

    pub fn all_sessions(&self) -> Vec<Session> {
        self.ledger(|store| store.sessions(&SessionFilter::default()))
            .unwrap()
    }

    pub fn calls_of(&self, task: TaskId) -> Vec<RecordedCall> {
        self.ledger(|store| store.calls_for_task(task)).unwrap()
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
        Orchestrator::new(self.open_with(&options()), agent, config).unwrap()
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

impl Drop for Fixture {
    fn drop(&mut self) {
        // Dropping the database blocks on rust-postgres as opening it did.
        if let Some(database) = self.database.take() {
            blocking(move || drop(database));
        }
    }
}

/// Runs `operation` on a thread of its own and waits for it. rust-postgres's client blocks on
/// a runtime of its own, which panics on a thread that drives the test's runtime; the loop
/// itself moves its ledger work to blocking threads the same way.
pub fn blocking<R: Send>(operation: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        scope
            .spawn(operation)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The two ledgers the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
    /// The running test's name, which its PostgreSQL databases are named after.
    static TEST_NAME: RefCell<String> = const { RefCell::new(String::new()) };
    /// The database made when the test started, for its first fixture.
    static PREPARED: Cell<Option<TestDatabase>> = const { Cell::new(None) };
}

impl Backend {
    /// Puts the test `name`, running on this thread, on this backend. Whether it goes on:
    /// on PostgreSQL without a server it skips (after saying why), or fails where a server is
    /// required.
    pub fn enter(self, name: &str) -> bool {
        TEST_NAME.set(name.to_owned());
        if self == Backend::Postgres {
            let Some(database) = blocking(|| TestDatabase::create(name)) else {
                return false;
            };
            PREPARED.set(Some(database));
        }
        BACKEND.set(self);
        true
    }
}

/// Declares tests that run once on each backend from one source, as `sqlite::name` and
/// `postgres::name`: `#[tokio::test] async fn` and `#[test] fn` items, attributes and all.
macro_rules! on_both_backends {
    (@on $backend:ident) => {};
    (@on $backend:ident $(#[$meta:meta])* async fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        async fn $name() {
            let name = concat!(module_path!(), "::", stringify!($name));
            if !$crate::support::Backend::$backend.enter(name) {
                return;
            }
            $body
        }
        on_both_backends!(@on $backend $($rest)*);
    };
    (@on $backend:ident $(#[$meta:meta])* fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        fn $name() {
            let name = concat!(module_path!(), "::", stringify!($name));
            if !$crate::support::Backend::$backend.enter(name) {
                return;
            }
            $body
        }
        on_both_backends!(@on $backend $($rest)*);
    };
    ($($items:tt)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            on_both_backends!(@on Sqlite $($items)*);
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            on_both_backends!(@on Postgres $($items)*);
        }
    };
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
