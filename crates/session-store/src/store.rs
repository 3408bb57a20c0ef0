//! The [`Store`] handle: opening a ledger file with the settings it must always have, and the
//! transaction plumbing every operation goes through.

use std::fs::{DirBuilder, OpenOptions};
use std::ops::Deref;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redact::{Redacted, Redactor};
use rusqlite::OpenFlags;
use serde_json::Value;

use crate::db::is_busy;
use crate::db::{Connection, DatabaseError, PgConnection, WriteLock};
use crate::error::{Failure, StoreError};
use crate::ids::TaskId;
use crate::location::Location;
use crate::migrations::{self, MIGRATIONS};
pub use crate::options::{Durability, StoreOptions};

/// A connection to one ledger: a SQLite file, or a PostgreSQL database.
///
/// Open one `Store` per thread (it is `Send`, not `Sync`); any number of stores, in any
/// number of processes (on any number of hosts, for PostgreSQL), may share one ledger. Every
/// write is one transaction that first takes the ledger's write lock (SQLite's `BEGIN
/// IMMEDIATE`; on PostgreSQL a transaction-scoped advisory lock, which [`Store::task_batch`]
/// narrows to one task), so concurrent writers queue (up to the busy timeout) instead of
/// failing, each write sees every write committed before it that could change its answer, and
/// a reader always sees whole operations.
#[derive(Debug)]
pub struct Store {
    connection: Connection,
    /// The file, or for PostgreSQL the URL without its password: what messages name.
    path: PathBuf,
    /// Commits counted by [`Store::count_commits`] on PostgreSQL (SQLite counts in its hook).
    commits: Option<Arc<AtomicU64>>,
    /// Takes secrets out of the texts the store composes itself (free text from callers comes
    /// in as [`Redacted`] already).
    redactor: Redactor,
}

/// How many prepared statements a connection keeps. The hot paths use about a dozen; a
/// statement evicted from the cache is prepared again, which costs more than the memory.
const STATEMENT_CACHE_CAPACITY: usize = 64;

impl Store {
    /// Opens the ledger at `path`.
    ///
    /// A new file is created readable and writable by its owner only (mode 0600), and a
    /// missing directory is created for its owner only (0700): the ledger holds prompts and
    /// results. The connection is set up with write-ahead logging, the `synchronous` setting
    /// of [`StoreOptions::durability`], foreign keys enforced and the busy timeout, then the schema is migrated. A database
    /// from a newer build is refused with [`StoreError::NewerSchema`] and left untouched.
    ///
    /// Checkpoints are SQLite's own: the commit that takes the write-ahead log past 1000
    /// pages copies it into the database, and the next write starts the log again from its
    /// beginning, so the log stays near 4 MiB. (A background checkpointer was measured and
    /// dropped: under `full` it halved the commit rate, its syncs competing with the writer's;
    /// under `normal` its gain came from a log that never restarted under a steady writer and
    /// grew to 1.9 GB over the cycle benchmark, and with the log bounded it gained nothing.)
    ///
    /// `path` may also be a PostgreSQL URL (`postgres://` or `postgresql://`, in libpq's
    /// syntax): see [`Location`]. Then the schema is created or migrated in that database,
    /// and [`StoreOptions::postgres_password`] is used when the URL carries no password.
    pub fn open_with(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Store, StoreError> {
        match Location::of(path.as_ref())? {
            Location::File(path) => Store::open_file(path, options),
            Location::Postgres(url) => Store::open_postgres(&url, options),
        }
    }

    fn open_file(path: PathBuf, options: &StoreOptions) -> Result<Store, StoreError> {
        create_private_file(&path)?;

        let open_error = |source: rusqlite::Error| {
            if is_busy(&source) {
                // Switching a new file to WAL needs a moment of exclusive access.
                StoreError::Busy {
                    operation: "open the ledger",
                    path: path.clone(),
                    source: source.into(),
                }
            } else {
                StoreError::Open {
                    path: path.clone(),
                    source: source.into(),
                }
            }
        };
        // The file exists now, so SQLite must not create it: that would bypass the mode above.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut connection =
            rusqlite::Connection::open_with_flags(&path, flags).map_err(open_error)?;
        configure(&connection, options).map_err(open_error)?;
        let journal_mode = switch_to_wal(&connection, options.busy_timeout).map_err(open_error)?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWriteAheadLog { path, journal_mode });
        }
        migrations::migrate(&mut connection, &path, MIGRATIONS)?;
        Ok(Store {
            connection: Connection::Sqlite(connection),
            path,
            commits: None,
            redactor: options.redactor.clone(),
        })
    }

    fn open_postgres(
        url: &crate::location::PostgresUrl,
        options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        let path = PathBuf::from(url.without_password());
        let target = url.target(options)?;
        let connection = PgConnection::connect(target).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        migrations::postgres::migrate(&connection, &path, migrations::postgres::MIGRATIONS)?;
        Ok(Store {
            connection: Connection::Postgres(Box::new(connection)),
            path,
            commits: Some(Arc::default()),
            redactor: options.redactor.clone(),
        })
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What this store keeps out of the ledger.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The schema version of the open database, which after a successful open is always
    /// [`SCHEMA_VERSION`](crate::SCHEMA_VERSION).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.read("read the schema version", |connection| {
            Ok(migrations::version(connection)?)
        })
    }

    /// Whether this ledger is a PostgreSQL database (rather than a SQLite file).
    pub fn is_postgres(&self) -> bool {
        self.connection.is_postgres()
    }

    /// The durability the open connection really has, read back from SQLite's `synchronous`
    /// pragma, or PostgreSQL's `synchronous_commit` setting (so a caller can show what took
    /// effect, not what it asked for). `None` for a setting Baton never makes (SQLite's `OFF`
    /// or `EXTRA`, PostgreSQL's `local` or `remote_write`).
    pub fn durability(&self) -> Result<Option<Durability>, StoreError> {
        self.read("read the durability setting", |connection| {
            Ok(match connection {
                Connection::Sqlite(sqlite) => {
                    let level: i64 =
                        sqlite.pragma_query_value(None, "synchronous", |row| row.get(0))?;
                    match level {
                        2 => Some(Durability::Full),
                        1 => Some(Durability::Normal),
                        _ => None,
                    }
                }
                Connection::Postgres(_) => {
                    let setting: String =
                        connection.query_row("SHOW synchronous_commit", (), |row| row.get(0))?;
                    match setting.as_str() {
                        "on" | "remote_apply" => Some(Durability::Full),
                        "off" => Some(Durability::Normal),
                        _ => None,
                    }
                }
            })
        })
    }

    /// Runs `body` in one write transaction holding the ledger's write lock (SQLite's `BEGIN
    /// IMMEDIATE`, PostgreSQL's advisory lock) and commits it, or rolls everything back when
    /// `body` fails. `operation` completes "could not …" in error messages.
    ///
    /// On SQLite, `BEGIN IMMEDIATE` takes the write lock up front (waiting up to the busy timeout), so a
    /// transaction never has to upgrade a read lock to a write lock, which SQLite would refuse
    /// with `SQLITE_BUSY` without waiting. This is what rusqlite's
    /// `transaction_with_behavior(TransactionBehavior::Immediate)` does, with one difference:
    /// `BEGIN` and `COMMIT` are prepared once and cached rather than parsed at every write,
    /// which is a measurable share of a short write.
    ///
    /// `body` gets the connection with the store's redactor ([`Write`]), through which every
    /// free-text value must go on its way in.
    pub(crate) fn write<T>(
        &mut self,
        operation: &'static str,
        body: impl FnOnce(&Write<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.write_under(WriteLock::Ledger, false, operation, body)
    }

    /// [`Store::write`] under `lock`; `deferring` lets the operations that can send their
    /// statements with the commit (see [`Batch`]).
    fn write_under<T>(
        &mut self,
        lock: WriteLock,
        deferring: bool,
        operation: &'static str,
        body: impl FnOnce(&Write<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let result = (|| {
            let transaction = WriteTransaction::begin(&self.connection, lock, deferring)?;
            let value = body(&Write {
                connection: &self.connection,
                redactor: &self.redactor,
                path: &self.path,
                deferring,
            })?;
            transaction.commit()?;
            if let Some(commits) = &self.commits {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Ok(value)
        })();
        result.map_err(|failure: Failure| failure.into_store_error(operation, &self.path))
    }

    /// Runs `body` with a [`Batch`]: every operation it makes is written in one write
    /// transaction (SQLite's `BEGIN IMMEDIATE`), committed once when `body` returns `Ok`, and rolled back whole
    /// when it returns `Err`, or when one of its operations failed in the database (see
    /// [`Batch`]). `operation` completes "could not …" when the transaction itself fails (it
    /// could not begin or commit).
    ///
    /// This is how writes that belong together share one commit: an agent call with what it
    /// consumed, or a task's last checks with closing its session and finishing it. A commit
    /// is the expensive part of a write (with [`Durability::Full`] it waits for the disk), so
    /// fewer, fuller commits are both faster and truer: a crash leaves all of a step or none
    /// of it.
    pub fn batch<T>(
        &mut self,
        operation: &'static str,
        body: impl FnMut(&mut Batch<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.batch_under(WriteLock::Ledger, operation, body)
    }

    /// [`Store::batch`] for a batch that writes only `task` and what is its own: its row, its
    /// sessions, calls, checks, transcripts and workspace, and its events. On PostgreSQL such
    /// batches for different tasks (of different milestones, whose tasks may share a session)
    /// run side by side: each takes the lock of its task (or of its milestone, as the task's
    /// row says), and the ledger's write lock only shared, so that a write of the whole
    /// ledger ([`Store::batch`] and every other write) still runs alone. SQLite has one write
    /// lock, and this is [`Store::batch`].
    ///
    /// It may read other rows (whether the tasks it waits on completed, say): a
    /// task that completed stays completed, so such a read cannot be made stale by a write
    /// beside it that matters.
    pub fn task_batch<T>(
        &mut self,
        task: TaskId,
        operation: &'static str,
        body: impl FnMut(&mut Batch<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.batch_under(WriteLock::Task { task: task.0 }, operation, body)
    }

    /// Runs a batch under `lock`. On PostgreSQL the batch of a task (or of a claim) first
    /// runs with its operations' statements deferred (see [`Batch`]): when one of them
    /// refuses, that try is rolled back whole and `body` runs again, one statement at a time,
    /// so that each operation refuses as it says.
    pub(crate) fn batch_under<T>(
        &mut self,
        lock: WriteLock,
        operation: &'static str,
        mut body: impl FnMut(&mut Batch<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let deferring = self.connection.is_postgres() && !matches!(lock, WriteLock::Ledger);
        if deferring {
            match self.batch_once(lock, true, operation, &mut body) {
                Err(error)
                    if error
                        .database_error()
                        .is_some_and(DatabaseError::is_deferred_refusal) => {}
                finished => return finished,
            }
        }
        self.batch_once(lock, false, operation, &mut body)
    }

    fn batch_once<T>(
        &mut self,
        lock: WriteLock,
        deferring: bool,
        operation: &'static str,
        body: &mut impl FnMut(&mut Batch<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_under(lock, deferring, operation, |write| {
            let mut batch = Batch {
                write,
                broken: None,
            };
            let value = body(&mut batch).map_err(Failure::Store)?;
            if let Some(broken) = batch.broken {
                // The body went on past a failed statement; PostgreSQL has rolled the
                // transaction back already, and SQLite may hold half an operation. A deferred
                // statement's refusal stays one, so that the batch runs again.
                return Err(broken.into());
            }
            Ok(value)
        })
    }

    /// Counts this store's commits from now on: the handle's [`CommitCounter::count`] grows
    /// by one each time a write transaction commits (reads are not counted). For benchmarks
    /// and tests that hold the ledger to a number of commits; it replaces any counter taken
    /// before.
    /// On PostgreSQL every write transaction counts, including one that changed no row.
    pub fn count_commits(&self) -> CommitCounter {
        match (&self.connection, &self.commits) {
            (Connection::Sqlite(connection), _) => {
                let counter = CommitCounter::default();
                let commits = Arc::clone(&counter.counted);
                // SQLite calls the hook for transactions that wrote; `false` lets the commit go
                // on.
                connection.commit_hook(Some(move || {
                    commits.fetch_add(1, Ordering::Relaxed);
                    false
                }));
                counter
            }
            (Connection::Postgres(_), commits) => {
                Counter::from_now(commits.clone().unwrap_or_default())
            }
        }
    }

    /// Counts this store's round trips to its PostgreSQL server from now on: the handle's
    /// [`RoundTripCounter::count`] grows by one for each exchange the store waits for — a
    /// statement sent and its answer read, a batch of statements sent as one (the `BEGIN` that
    /// takes the write lock, a `COMMIT`, a `ROLLBACK`), a statement prepared on its first use
    /// on a connection, and two for each connection made (the start-up, the session's
    /// settings). Reads count as well as writes. For benchmarks and tests that hold the ledger
    /// to a number of round trips; any number of counters may be taken, each from its moment.
    ///
    /// A SQLite ledger is in this process and has no round trips: its counter stays at zero.
    pub fn count_round_trips(&self) -> RoundTripCounter {
        match &self.connection {
            Connection::Sqlite(_) => RoundTripCounter::default(),
            Connection::Postgres(connection) => Counter::from_now(connection.round_trips()),
        }
    }

    /// Runs SQLite's quick integrity check and returns what it found wrong: nothing when the
    /// file is sound. A PostgreSQL server checks its own pages, so there this finds nothing.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.read("check the ledger's integrity", |connection| {
            let Connection::Sqlite(sqlite) = connection else {
                return Ok(Vec::new());
            };
            let findings: Vec<String> = sqlite
                .prepare("PRAGMA quick_check")?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(findings
                .into_iter()
                .filter(|finding| finding != "ok")
                .collect())
        })
    }

    /// Runs `body` in a read transaction, so that a read made of several statements sees one
    /// snapshot of the database. A read of one statement needs none: see
    /// [`Store::read_statement`].
    pub(crate) fn read<T>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&Connection) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let result = (|| {
            // A deferred transaction takes no lock until the first read, and never writes, so
            // it cannot deadlock with a writer; on PostgreSQL a read-only repeatable-read
            // transaction gives the same single snapshot.
            let transaction = ReadTransaction::begin(&self.connection)?;
            let value = body(&self.connection)?;
            transaction.commit()?;
            Ok(value)
        })();
        result.map_err(|failure: Failure| failure.into_store_error(operation, &self.path))
    }

    /// Runs `body`, a read of one statement, outside a transaction: a statement sees one
    /// snapshot by itself, so the `BEGIN` and `COMMIT` of [`Store::read`] would add two round
    /// trips on PostgreSQL and nothing else.
    pub(crate) fn read_statement<T>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&Connection) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let result = (|| {
            self.connection.ensure_connected()?;
            body(&self.connection)
        })();
        result.map_err(|failure: Failure| failure.into_store_error(operation, &self.path))
    }

    /// The SQLite connection underneath, for tests that look at its settings.
    #[cfg(test)]
    pub(crate) fn sqlite(&self) -> &rusqlite::Connection {
        self.connection.sqlite()
    }
}

/// The inside of a write transaction: the connection (which it dereferences to, so that
/// statements read as usual) and the redactor that the texts the store composes pass through.
pub(crate) struct Write<'store> {
    connection: &'store Connection,
    redactor: &'store Redactor,
    /// The ledger's file, which errors name.
    path: &'store Path,
    /// Whether operations that can may defer their statements to the commit: a task's batch
    /// on PostgreSQL, on its first try (see [`Batch`]).
    deferring: bool,
}

/// Writes made together, in one transaction, by [`Store::batch`].
///
/// A batch has the store's write operations, each with the name, arguments and errors of the
/// [`Store`] method it mirrors. An operation that refuses (say [`StoreError::CloseConflict`])
/// leaves nothing of itself behind, and the batch goes on: so a caller may take a refusal as
/// an answer and write the rest, or return the error from the batch's body to roll
/// everything back.
///
/// That holds without a savepoint per operation, which on PostgreSQL would cost two round
/// trips each: every operation makes all its checks before its first write, so a refusal
/// comes before anything was written (debug builds check this on SQLite). An operation that
/// fails in the database instead (a lost connection, a broken constraint) may have written
/// part of itself, and PostgreSQL aborts the transaction at a failed statement: then the
/// whole batch is rolled back, whatever the body does with the error.
///
/// On PostgreSQL a task's batch ([`Store::task_batch`], [`Store::claim_batch`]) first runs
/// with its common operations deferred: checking the fence, recording a call, opening and
/// closing a session, and a running task's finish each become one statement that makes its
/// checks itself and refuses by failing, and waits to be sent with the batch's `COMMIT`, its
/// `BEGIN` and locks, in one round trip; such an operation answers what it answers when it
/// succeeds. Any other operation sends what waits before its own statements. When a deferred
/// statement refuses, the whole try is rolled back and the body runs again, this time one
/// statement at a time, so that every operation refuses, and the body goes on, exactly as
/// described above: the body must be one that can run twice (it writes only through the
/// batch, and what it returns comes from the try that committed).
pub struct Batch<'batch> {
    write: &'batch Write<'batch>,
    /// The first operation that failed in the database, and how: the batch cannot commit.
    broken: Option<DatabaseError>,
}

impl Batch<'_> {
    /// Runs one operation of the batch; `operation` completes "could not …" in its errors, as
    /// the [`Store`] method's does. `body` must make every check that can refuse before its
    /// first write.
    pub(crate) fn apply<T>(
        &mut self,
        operation: &'static str,
        body: impl FnOnce(&Write<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let write = self.write;
        let changes_before = write.changes_so_far();
        let result =
            body(write).map_err(|failure: Failure| failure.into_store_error(operation, write.path));
        if let Err(error) = &result {
            match error.database_error() {
                // A deferred statement refused: its own error, so that the batch runs again.
                Some(database) if self.broken.is_none() && database.is_deferred_refusal() => {
                    self.broken = Some(DatabaseError::DeferredRefusal);
                }
                // The first failure is the batch's: what failed, and whether the connection
                // went, so that a caller waiting out an outage tries the batch again.
                Some(database) if self.broken.is_none() => {
                    self.broken = Some(DatabaseError::Broken {
                        operation,
                        reason: database.to_string(),
                        connection_lost: database.is_connection_lost(),
                    });
                }
                Some(_) => {}
                None => debug_assert_eq!(
                    write.changes_so_far(),
                    changes_before,
                    "invariant: `{operation}` refused ({error}) after it had written"
                ),
            }
        }
        result
    }
}

/// A count the store keeps and a caller reads from the moment it took the counter: the
/// commits of [`Store::count_commits`], or the round trips of [`Store::count_round_trips`].
/// Cheap to clone: every clone reads the same count.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    counted: Arc<AtomicU64>,
    /// The count when the counter was taken.
    base: u64,
}

impl Counter {
    /// Counts on from `counted`'s current value.
    fn from_now(counted: Arc<AtomicU64>) -> Counter {
        let base = counted.load(Ordering::Relaxed);
        Counter { counted, base }
    }

    /// How many commits or round trips there were since the counter was taken (round trips
    /// stay at zero on SQLite, which is in the process).
    pub fn count(&self) -> u64 {
        self.counted.load(Ordering::Relaxed) - self.base
    }
}

/// The commits of one store; see [`Store::count_commits`].
pub type CommitCounter = Counter;

/// The round trips of one store to its PostgreSQL server; see [`Store::count_round_trips`].
pub type RoundTripCounter = Counter;

impl Write<'_> {
    /// Whether operations that can send their statements with the batch's commit do (see
    /// [`Batch`]).
    pub(crate) fn deferring(&self) -> bool {
        self.deferring
    }

    /// How many rows SQLite's connection has changed since it opened, to check that an
    /// operation refused before it wrote; `None` on PostgreSQL, which would need a round trip
    /// to tell.
    fn changes_so_far(&self) -> Option<u64> {
        match self.connection {
            Connection::Sqlite(sqlite) => Some(sqlite.total_changes()),
            Connection::Postgres(_) => None,
        }
    }

    /// A text the store composed itself (from a host name, a reason read back from a row…),
    /// redacted once, whole, with the redactor the store was opened with.
    pub(crate) fn composed(&self, text: String) -> Redacted {
        self.redactor.redact_owned(text)
    }

    /// An event detail the store composed, as JSON text with every string redacted once.
    pub(crate) fn detail(&self, detail: Value) -> Redacted {
        self.redactor.redact_json_value(detail)
    }
}

impl Deref for Write<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.connection
    }
}

/// An open write transaction, holding the ledger's write lock; rolled back when dropped
/// without a commit, so an error or a panic in the middle of a write leaves nothing half done.
struct WriteTransaction<'connection> {
    connection: &'connection Connection,
    committed: bool,
}

impl<'connection> WriteTransaction<'connection> {
    fn begin(
        connection: &'connection Connection,
        lock: WriteLock,
        deferred: bool,
    ) -> crate::db::Result<Self> {
        if let Err(error) = connection.begin_write(lock, deferred) {
            // On PostgreSQL the `BEGIN` went through when the lock then timed out: the
            // transaction stays open, aborted, until rolled back, and would refuse every
            // later statement of the connection.
            connection.rollback_if_open();
            return Err(error);
        }
        Ok(WriteTransaction {
            connection,
            committed: false,
        })
    }

    fn commit(mut self) -> crate::db::Result<()> {
        self.connection.run("COMMIT")?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for WriteTransaction<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // Nothing to report to: the error that got us here is already on its way to the
            // caller, and if the rollback fails the database rolls back when the connection
            // closes.
            self.connection.rollback_if_open();
        }
    }
}

/// An open read transaction: one snapshot for every statement of a read.
struct ReadTransaction<'connection> {
    connection: &'connection Connection,
    committed: bool,
}

impl<'connection> ReadTransaction<'connection> {
    fn begin(connection: &'connection Connection) -> crate::db::Result<Self> {
        connection.begin_read()?;
        Ok(ReadTransaction {
            connection,
            committed: false,
        })
    }

    fn commit(mut self) -> crate::db::Result<()> {
        self.connection.run("COMMIT")?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for ReadTransaction<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.connection.rollback_if_open();
        }
    }
}

fn configure(connection: &rusqlite::Connection, options: &StoreOptions) -> rusqlite::Result<()> {
    // The busy timeout first: every later statement may need to wait for a lock.
    connection.busy_timeout(options.busy_timeout)?;
    // With WAL, FULL syncs the log at every commit; NORMAL only at checkpoints, so that a
    // power cut can lose the last commits (never corrupting the file). See `Durability`.
    connection.pragma_update(None, "synchronous", options.durability.synchronous())?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(())
}

/// Puts the database in write-ahead-log mode and returns the journal mode it ends up in.
///
/// On a new file this needs exclusive access for a moment, and SQLite answers `SQLITE_BUSY`
/// at once, without its busy handler, when another connection is switching the same file at
/// the same time (waiting there could deadlock two readers that both want to write). So the
/// switch is retried, with short growing pauses, for up to the busy timeout. Once the file is
/// in WAL mode the statement changes nothing and succeeds at once.
fn switch_to_wal(
    connection: &rusqlite::Connection,
    busy_timeout: Duration,
) -> rusqlite::Result<String> {
    let deadline = Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match connection.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)) {
            Err(error) if is_busy(&error) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// Creates the database file with mode 0600 (and its directory with 0700) when they do not
/// exist yet. An existing file keeps the permissions its owner gave it.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        && !parent.exists()
    {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| StoreError::CreateDirectory {
                path: parent.to_owned(),
                source,
            })?;
    }
    if path.is_file() {
        // SQLite opens it, or says why not (a read-only file is read-only, not "cannot create").
        return Ok(());
    }
    // Not `create_new`: another process may create the file at the same moment, and then
    // both must go on to open it. `create` without `truncate` leaves an existing file as it is.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| StoreError::CreateFile {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(store: &Store, name: &str) -> String {
        store
            .sqlite()
            .pragma_query_value(None, name, |row| {
                Ok(match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Integer(number) => number.to_string(),
                    other => other.as_str()?.to_owned(),
                })
            })
            .unwrap()
    }

    #[test]
    fn every_connection_gets_the_documented_settings() {
        let directory = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            busy_timeout: Duration::from_millis(1234),
            ..crate::StoreOptions::new(redact::Redactor::new())
        };
        let store = Store::open_with(directory.path().join("ledger.db"), &options).unwrap();
        assert_eq!(pragma(&store, "journal_mode"), "wal");
        // 2 is FULL: a committed call survives a power cut unless the caller chose otherwise.
        assert_eq!(pragma(&store, "synchronous"), "2");
        assert_eq!(pragma(&store, "foreign_keys"), "1");
        assert_eq!(pragma(&store, "busy_timeout"), "1234");
        // SQLite checkpoints inside the commit that passes 1000 pages of log.
        assert_eq!(pragma(&store, "wal_autocheckpoint"), "1000");
        assert_eq!(
            pragma(&store, "application_id"),
            migrations::APPLICATION_ID.to_string()
        );
        assert_eq!(store.schema_version().unwrap(), crate::SCHEMA_VERSION);
    }

    #[test]
    fn the_durability_chosen_reaches_sqlite() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.db");
        for (durability, synchronous) in [(Durability::Full, "2"), (Durability::Normal, "1")] {
            let options = StoreOptions {
                durability,
                ..crate::StoreOptions::new(redact::Redactor::new())
            };
            let store = Store::open_with(&path, &options).unwrap();
            assert_eq!(pragma(&store, "synchronous"), synchronous, "{durability:?}");
        }
        assert_eq!(
            crate::StoreOptions::new(redact::Redactor::new()).durability,
            Durability::Full
        );
    }

    #[test]
    fn durability_words_read_back() {
        for durability in Durability::ALL {
            assert_eq!(Durability::parse(durability.as_str()), Some(durability));
        }
        assert_eq!(Durability::parse("off"), None);
    }

    #[test]
    fn a_batch_is_one_commit_and_reads_are_none() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open_with(
            directory.path().join("ledger.db"),
            &crate::StoreOptions::new(redact::Redactor::new()),
        )
        .unwrap();
        let task = store
            .add_task(&crate::NewTask::new(
                redact::Redacted::trusted("t"),
                redact::Redacted::trusted("p"),
                directory.path(),
            ))
            .unwrap();
        let commits = store.count_commits();
        store.task(task).unwrap();
        assert_eq!(commits.count(), 0, "a read commits nothing");
        store
            .batch("test a batch", |batch| {
                batch.set_task_guidance(task, Some(&redact::Redacted::trusted("one")))?;
                batch.set_task_guidance(task, Some(&redact::Redacted::trusted("two")))?;
                batch.set_task_status(
                    task,
                    crate::TaskStatus::Cancelled,
                    Some(&redact::Redacted::trusted("stop")),
                )
            })
            .unwrap();
        assert_eq!(commits.count(), 1, "three writes, one commit");
        let task = store.task(task).unwrap();
        assert_eq!(task.guidance.as_deref(), Some("two"));
        assert_eq!(task.status, crate::TaskStatus::Cancelled);
    }

    #[test]
    fn a_refused_operation_leaves_nothing_and_the_batch_goes_on() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open_with(
            directory.path().join("ledger.db"),
            &crate::StoreOptions::new(redact::Redactor::new()),
        )
        .unwrap();
        let task = store
            .add_task(&crate::NewTask::new(
                redact::Redacted::trusted("t"),
                redact::Redacted::trusted("p"),
                directory.path(),
            ))
            .unwrap();
        let refused = store
            .batch("test a batch", |batch| {
                // Pending cannot become completed: refused, and the batch writes the rest.
                let refused = batch.set_task_status(task, crate::TaskStatus::Completed, None);
                batch.set_task_guidance(task, Some(&redact::Redacted::trusted("kept")))?;
                Ok(refused)
            })
            .unwrap();
        assert!(
            matches!(refused, Err(StoreError::InvalidTransition { .. })),
            "{refused:?}"
        );
        let read = store.task(task).unwrap();
        assert_eq!(read.status, crate::TaskStatus::Pending);
        assert_eq!(read.guidance.as_deref(), Some("kept"));
    }

    #[test]
    fn a_batch_that_fails_writes_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open_with(
            directory.path().join("ledger.db"),
            &crate::StoreOptions::new(redact::Redactor::new()),
        )
        .unwrap();
        let task = store
            .add_task(&crate::NewTask::new(
                redact::Redacted::trusted("t"),
                redact::Redacted::trusted("p"),
                directory.path(),
            ))
            .unwrap();
        let events_before = store.events(&crate::EventFilter::default()).unwrap().len();
        let failed = store.batch("test a batch", |batch| {
            batch.set_task_guidance(task, Some(&redact::Redacted::trusted("lost")))?;
            batch.set_task_status(task, crate::TaskStatus::Cancelled, None)?;
            batch.set_task_status(task, crate::TaskStatus::Running, None)
        });
        assert!(matches!(failed, Err(StoreError::InvalidTransition { .. })));
        let read = store.task(task).unwrap();
        assert_eq!(read.status, crate::TaskStatus::Pending);
        assert_eq!(read.guidance, None);
        assert_eq!(
            store.events(&crate::EventFilter::default()).unwrap().len(),
            events_before
        );
    }

    #[test]
    fn a_store_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
    }

    #[test]
    fn writes_take_the_write_lock_up_front() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open_with(
            directory.path().join("ledger.db"),
            &crate::StoreOptions::new(redact::Redactor::new()),
        )
        .unwrap();
        let autocommit_inside = store
            .write("look at the transaction", |transaction| {
                // A deferred transaction would not hold a lock yet; an immediate one holds the
                // write lock, which another connection can observe as busy.
                let other = rusqlite::Connection::open(directory.path().join("ledger.db"))?;
                other.busy_timeout(Duration::ZERO)?;
                let busy = other
                    .execute_batch("BEGIN IMMEDIATE; COMMIT;")
                    .err()
                    .is_some_and(|error| crate::db::is_busy(&error));
                Ok((transaction.sqlite().is_autocommit(), busy))
            })
            .unwrap();
        assert_eq!(autocommit_inside, (false, true));
    }

    #[test]
    fn the_log_stays_bounded_under_a_steady_writer() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.db");
        let options = StoreOptions {
            durability: Durability::Normal,
            ..crate::StoreOptions::new(redact::Redactor::new())
        };
        let mut store = Store::open_with(&path, &options).unwrap();
        let log = directory.path().join("ledger.db-wal");
        let mut largest = 0;
        // About three pages a task: several times the 1000 pages past which SQLite
        // checkpoints and the next write starts the log again.
        for index in 0..1500 {
            store
                .add_task(&crate::NewTask::new(
                    redact::Redactor::new().redact_owned(format!("task {index}")),
                    redact::Redacted::trusted("p"),
                    directory.path(),
                ))
                .unwrap();
            largest = largest.max(std::fs::metadata(&log).unwrap().len());
        }
        assert!(
            largest < 8 << 20,
            "the log grew to {largest} bytes; it should restart near 4 MiB"
        );
    }
}
