//! Helpers shared by the integration tests: temporary stores, fake lease owners, and calls
//! with distinct figures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::{ExitInfo, PlanKind, SessionId, Usage};
use redact::{Redacted, Redactor};
use session_store::{
    CallOutcome, Cost, LeaseOwner, MilestoneId, NewAgentCall, NewMilestone, NewSession, NewTask,
    SessionPolicy, Store, StoreOptions, TaskId, Timestamp,
};
use tempfile::TempDir;

use pg_testkit::TestDatabase;

/// The store's options in these tests: a redactor that knows the token shapes only.
pub fn options() -> StoreOptions {
    StoreOptions::new(Redactor::new())
}

/// A literal of the test, as the store takes text.
pub fn text(literal: &'static str) -> Redacted {
    Redacted::trusted(literal)
}

/// Text the test composed, as the store takes text.
pub fn composed(text: String) -> Redacted {
    Redactor::new().redact_owned(text)
}

/// A new, empty ledger of the backend the running test is on ([`on_both_backends!`]), and a
/// temporary directory for the test's files (task working directories, a SQLite file).
pub struct Lab {
    directory: TempDir,
    location: PathBuf,
    /// The PostgreSQL database, dropped with the lab.
    _database: Option<TestDatabase>,
}

impl Lab {
    /// A lab on the running test's backend, or `None` when it is PostgreSQL and no server is
    /// there (the test has said it skips).
    pub fn new() -> Option<Lab> {
        let directory = tempfile::tempdir().expect("a temporary directory can be created");
        let (location, database) = match BACKEND.get() {
            Backend::Sqlite => (directory.path().join("baton.db"), None),
            Backend::Postgres => {
                let database = PREPARED
                    .take()
                    .or_else(|| TestDatabase::create(&current_test_name()))?;
                (PathBuf::from(database.url()), Some(database))
            }
        };
        Some(Lab {
            directory,
            location,
            _database: database,
        })
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        self.directory.path()
    }

    /// Where the ledger is: a file, or a PostgreSQL URL with its password, as
    /// `Store::open_with` takes it (`Store::path` leaves the password out).
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// Where a ledger nobody opened yet is: a file in a directory that does not exist yet,
    /// or the lab's empty PostgreSQL database.
    pub fn fresh_location(&self) -> PathBuf {
        match BACKEND.get() {
            Backend::Sqlite => self.path().join("new").join("baton.db"),
            Backend::Postgres => self.location.clone(),
        }
    }

    /// Opens (another connection to) the ledger.
    pub fn open(&self) -> Store {
        Store::open_with(&self.location, &options()).expect("the lab's ledger opens")
    }
}

/// A store on a new ledger of the running test's backend, with a temporary directory that
/// lives as long as the `Lab`. Outside [`on_both_backends!`] the backend is SQLite.
pub fn temp_store() -> (Lab, Store) {
    let lab = Lab::new().expect("a lab on this backend; tests on PostgreSQL use on_both_backends!");
    let store = lab.open();
    (lab, store)
}

/// The two ledgers every conformance test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Sqlite) };
    /// The database made when the test started, for its first lab.
    static PREPARED: std::cell::Cell<Option<TestDatabase>> = const { std::cell::Cell::new(None) };
}

impl Backend {
    /// Runs `test` on this backend; on PostgreSQL without a server it skips (and says so),
    /// or fails where the server is required.
    pub fn run(self, test: impl FnOnce()) {
        if self == Backend::Postgres {
            // Without a server the test says it skips (or fails, where one is required).
            let Some(database) = TestDatabase::create(&current_test_name()) else {
                return;
            };
            PREPARED.set(Some(database));
        }
        BACKEND.set(self);
        test();
    }
}

fn current_test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a store test")
        .to_owned()
}

/// Declares tests that run once on each backend, from one source: `sqlite::name` and
/// `postgres::name`.
macro_rules! on_both_backends {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $($(#[$meta])* #[test] fn $name() {
                crate::common::Backend::Sqlite.run(|| $body)
            })*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $($(#[$meta])* #[test] fn $name() {
                crate::common::Backend::Postgres.run(|| $body)
            })*
        }
    };
}

/// A lease owner that is not a real process: on a host of its own, so only lease expiry can
/// make it stale.
pub fn fake_owner(pid: u32) -> LeaseOwner {
    LeaseOwner {
        pid,
        host: String::from("fake-host.invalid"),
        start_time: 1000 + u64::from(pid),
    }
}

/// A lease owner on this host whose process certainly does not exist.
pub fn dead_local_owner() -> LeaseOwner {
    LeaseOwner {
        // Above the kernel's largest pid_max (2^22), so no process has it.
        pid: 1 << 23,
        ..LeaseOwner::current().expect("this process has an identity")
    }
}

/// A milestone named `name`, with no description or policy.
pub fn add_milestone(store: &mut Store, name: &str) -> MilestoneId {
    store
        .create_milestone(&NewMilestone {
            name: composed(name.to_owned()),
            description: text(""),
            policy: None,
        })
        .expect("a new milestone is created")
}

/// A task in `directory` with default settings.
pub fn add_task(store: &mut Store, directory: &Path, title: &str) -> TaskId {
    store
        .add_task(&NewTask::new(
            composed(title.to_owned()),
            composed(format!("do {title}")),
            directory,
        ))
        .expect("a valid task is added")
}

/// A session of `task` under the task policy, leased to `owner` for an hour.
pub fn new_session(task: TaskId, owner: LeaseOwner) -> NewSession {
    NewSession {
        id: SessionId::new_v4(),
        task,
        milestone: None,
        policy: SessionPolicy::Task,
        owner,
        lease_ttl: Duration::from_secs(3600),
    }
}

/// A successful call whose figures all derive from `seed`, so that different calls add up to
/// sums that catch a lost or doubled update.
pub fn call(session: SessionId, task: TaskId, seed: u64) -> NewAgentCall {
    let started_at = Timestamp::from_millis(1_700_000_000_000 + seed as i64);
    NewAgentCall {
        session,
        task,
        iteration: 1 + (seed % 3) as u32,
        plan: if seed == 0 {
            PlanKind::Start
        } else {
            PlanKind::Resume
        },
        prompt: composed(format!("prompt {seed}")),
        result_text: Some(composed(format!("result {seed}"))),
        outcome: CallOutcome::Success,
        subtype: Some(text("success")),
        error_message: None,
        reported_session: Some(session),
        usage: Usage {
            input_tokens: 100 + seed,
            output_tokens: 20 + 2 * seed,
            cache_read_tokens: 1000 + 7 * seed,
            cache_creation_tokens: 50 + seed % 11,
        },
        cost: Cost::from_nano_usd(1_234_567 + 1_001 * seed as i64),
        turns: 1 + (seed % 5) as u32,
        duration: Duration::from_millis(300 + seed),
        exit: Some(ExitInfo::Code(0)),
        started_at,
        ended_at: started_at.saturating_add(Duration::from_millis(300 + seed)),
        key: None,
    }
}

/// Runs `sql` straight on the ledger at `location`, past the store, and returns the first
/// column of its first row as text (write the query so that it is text: `CAST(… AS TEXT)`),
/// or the database's error message.
pub fn raw_text(location: &Path, sql: &str) -> Result<String, String> {
    match location.to_str() {
        Some(url) if session_store::PostgresUrl::looks_like(url) => {
            let mut client = postgres::Client::connect(url, postgres::NoTls)
                .map_err(|error| error.to_string())?;
            let rows = client.query(sql, &[]).map_err(|error| {
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_owned())
            })?;
            Ok(rows
                .first()
                .and_then(|row| row.try_get::<_, Option<String>>(0).ok().flatten())
                .unwrap_or_default())
        }
        _ => {
            let connection =
                rusqlite::Connection::open(location).map_err(|error| error.to_string())?;
            let mut statement = connection.prepare(sql).map_err(|error| error.to_string())?;
            let mut rows = statement.query([]).map_err(|error| error.to_string())?;
            match rows.next().map_err(|error| error.to_string())? {
                Some(row) => Ok(row
                    .get::<_, Option<String>>(0)
                    .map_err(|error| error.to_string())?
                    .unwrap_or_default()),
                None => Ok(String::new()),
            }
        }
    }
}
