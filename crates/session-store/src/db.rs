//! One SQL interface over the two databases a ledger can live in: a SQLite file (rusqlite) or
//! a PostgreSQL server (rust-postgres).
//!
//! The store's operations are written once, against [`Connection`], [`Statement`] and [`Row`],
//! in SQL that both databases accept (`?1`-style parameters, `RETURNING`, `ON CONFLICT`, no
//! SQLite-only functions). Values cross the boundary as [`Value`]s: integers, reals, text and
//! NULL, which is all the ledger stores. What differs between the two (placeholders, column
//! types, transactions, errors) stays inside `db/sqlite.rs` and `db/postgres.rs`.

mod postgres;
mod sqlite;

use std::fmt;

pub(crate) use self::postgres::{
    CONNECT_TIMEOUT, PgConnection, PgTarget, WRITE_LOCK, task_lock_keys,
};
pub(crate) use self::sqlite::is_busy;

/// The SQLSTATE `baton_refuse` raises (migration 8).
const DEFERRED_REFUSAL: &str = "BT001";

/// A value passed to or read from SQL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
}

/// A column's value, as [`FromSql`] reads it.
pub(crate) type ValueRef<'a> = Value<'a>;

impl<'a> Value<'a> {
    /// The text, or a conversion error for any other kind of value.
    pub(crate) fn as_str(self) -> FromSqlResult<&'a str> {
        match self {
            Value::Text(text) => Ok(text),
            other => Err(FromSqlError::InvalidType(other.kind())),
        }
    }

    /// The text, `None` for NULL, or a conversion error for any other kind of value.
    pub(crate) fn as_str_or_null(self) -> FromSqlResult<Option<&'a str>> {
        match self {
            Value::Null => Ok(None),
            other => other.as_str().map(Some),
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "an integer",
            Value::Real(_) => "a real number",
            Value::Text(_) => "text",
        }
    }
}

/// A Rust value that can be passed as a SQL parameter.
pub(crate) trait ToSql {
    fn to_sql(&self) -> Value<'_>;
}

/// Why a column could not become the Rust value asked for.
#[derive(Debug)]
pub(crate) enum FromSqlError {
    /// The column holds another kind of value (its kind named).
    InvalidType(&'static str),
    /// An integer that does not fit the Rust type.
    OutOfRange(i64),
    /// Any other reason, in words.
    Other(String),
}

impl fmt::Display for FromSqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromSqlError::InvalidType(kind) => write!(f, "unexpected {kind}"),
            FromSqlError::OutOfRange(number) => write!(f, "{number} is out of range"),
            FromSqlError::Other(reason) => f.write_str(reason),
        }
    }
}

pub(crate) type FromSqlResult<T> = std::result::Result<T, FromSqlError>;

/// A Rust value that a column can be read as.
pub(crate) trait FromSql: Sized {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self>;
}

/// A failure of the database underneath, or of reading what it returned.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed, or the connection to it did.
    #[error(transparent)]
    Postgres(#[from] ::postgres::Error),
    /// A connection with TLS failed, or one without it was refused for the lack of it.
    #[error(transparent)]
    Tls(crate::tls::TlsError),
    /// A query that must return a row returned none.
    #[error("the query returned no row")]
    NoRows,
    /// A column could not become the value asked for.
    #[error("column {index}: {reason}")]
    Conversion { index: usize, reason: String },
    /// A value read could not become the Rust value asked for.
    #[error("{0}")]
    Value(String),
    /// An operation of a batch failed in the database and the batch's body went on: the
    /// transaction is rolled back rather than committed without it. It keeps what failed, and
    /// whether the connection went (so that a caller waiting out an outage tries again).
    #[error("the batch was rolled back: could not {operation}: {reason}")]
    Broken {
        operation: &'static str,
        reason: String,
        connection_lost: bool,
    },
    /// A statement of a batch sent with its commit refused (`Connection::defer`): the
    /// batch runs again one statement at a time, which says what refused.
    #[error("a statement sent with the batch's commit refused")]
    DeferredRefusal,
    /// The connection to PostgreSQL was lost earlier and could not be made again.
    #[error("the connection to the PostgreSQL server is closed")]
    Closed,
}

impl DatabaseError {
    /// Another writer held the lock for longer than the busy timeout: SQLite's busy or
    /// locked, PostgreSQL's lock timeout.
    pub(crate) fn is_busy(&self) -> bool {
        match self {
            DatabaseError::Sqlite(error) => sqlite::is_busy(error),
            DatabaseError::Postgres(error) => {
                error.code() == Some(&::postgres::error::SqlState::LOCK_NOT_AVAILABLE)
            }
            _ => false,
        }
    }

    pub(crate) fn is_disk_trouble(&self) -> bool {
        use ::postgres::error::SqlState;
        match self {
            DatabaseError::Sqlite(error) => matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure)
            ),
            DatabaseError::Postgres(error) => matches!(
                error.code(),
                Some(code) if *code == SqlState::DISK_FULL || *code == SqlState::IO_ERROR
            ),
            _ => false,
        }
    }

    pub(crate) fn is_read_only(&self) -> bool {
        match self {
            DatabaseError::Sqlite(error) => matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ReadOnly)
            ),
            DatabaseError::Postgres(error) => {
                error.code() == Some(&::postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
            }
            _ => false,
        }
    }

    /// A statement sent whole with its batch refused ([`Connection::defer`]): the batch was
    /// rolled back, and runs again one statement at a time to say what refused.
    pub(crate) fn is_deferred_refusal(&self) -> bool {
        match self {
            DatabaseError::Postgres(error) => error
                .code()
                .is_some_and(|code| code.code() == DEFERRED_REFUSAL),
            DatabaseError::DeferredRefusal => true,
            _ => false,
        }
    }

    /// The connection to the server is gone, or could not be made: class 08 (connection
    /// exception), the server shutting down or starting up (57P01–57P03), or no answer.
    pub(crate) fn is_connection_lost(&self) -> bool {
        match self {
            DatabaseError::Closed => true,
            DatabaseError::Broken {
                connection_lost, ..
            } => *connection_lost,
            DatabaseError::Tls(error) => error.is_transient(),
            DatabaseError::Postgres(error) => match error.code() {
                Some(code) => {
                    let code = code.code();
                    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
                }
                // No SQL state: the client failed (closed, I/O, a timeout), not the server.
                None => true,
            },
            _ => false,
        }
    }

    /// A column that could not be converted, with why.
    pub(crate) fn conversion(index: usize, reason: impl fmt::Display) -> DatabaseError {
        DatabaseError::Conversion {
            index,
            reason: reason.to_string(),
        }
    }
}

impl From<crate::tls::TlsError> for DatabaseError {
    fn from(error: crate::tls::TlsError) -> DatabaseError {
        match error {
            // Not about TLS at all: the same error as a connection without TLS gives.
            crate::tls::TlsError::Connection(error) => DatabaseError::Postgres(error),
            error => DatabaseError::Tls(error),
        }
    }
}

impl From<FromSqlError> for DatabaseError {
    fn from(error: FromSqlError) -> DatabaseError {
        DatabaseError::Value(error.to_string())
    }
}

pub(crate) type Result<T, E = DatabaseError> = std::result::Result<T, E>;

/// `Ok(None)` for a query that returned no row, as rusqlite's `OptionalExtension` does.
pub(crate) trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(DatabaseError::NoRows) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// The parameters of one statement, in order.
pub(crate) trait Params {
    fn values(&self) -> Vec<Value<'_>>;
}

impl Params for () {
    fn values(&self) -> Vec<Value<'_>> {
        Vec::new()
    }
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|value| value.to_sql()).collect()
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(ToSql::to_sql).collect()
    }
}

/// `params![a, b, c]`: a list of parameters of different types.
macro_rules! params {
    () => { () };
    ($($value:expr),+ $(,)?) => {
        &[$(&$value as &dyn $crate::db::ToSql),+] as &[&dyn $crate::db::ToSql]
    };
}
pub(crate) use params;

/// One row of a result.
pub(crate) enum Row<'row> {
    Sqlite(&'row rusqlite::Row<'row>),
    Postgres(&'row ::postgres::Row),
}

impl Row<'_> {
    /// The column at `index` as a `T`.
    pub(crate) fn get<T: FromSql>(&self, index: usize) -> Result<T> {
        let value = self.get_ref(index)?;
        T::column_result(value).map_err(|error| DatabaseError::conversion(index, error))
    }

    /// The column at `index` as it is.
    pub(crate) fn get_ref(&self, index: usize) -> Result<ValueRef<'_>> {
        match self {
            Row::Sqlite(row) => sqlite::value_at(row, index),
            Row::Postgres(row) => postgres::value_at(row, index),
        }
    }
}

/// What a write transaction locks on PostgreSQL. SQLite has one write lock, which every
/// write transaction takes whole.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WriteLock {
    /// The whole ledger: no other write runs beside it.
    Ledger,
    /// One task and its sessions (its milestone's, when it has one): writes of other tasks
    /// run beside it, writes of the whole ledger wait for it.
    Task { task: i64 },
    /// The ledger's lock shared, and nothing else yet: a claim, whose one statement takes
    /// its task's lock without waiting, skipping a task another writer holds (see
    /// [`Store::claim_batch`](crate::Store::claim_batch)).
    Claim,
}

/// A connection to one ledger database.
pub(crate) enum Connection {
    Sqlite(rusqlite::Connection),
    /// Boxed: its configuration and statement cache are several times a SQLite handle.
    Postgres(Box<PgConnection>),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Sqlite(connection) => fmt::Debug::fmt(connection, f),
            Connection::Postgres(connection) => fmt::Debug::fmt(connection, f),
        }
    }
}

impl Connection {
    /// A statement to run; SQLite keeps it prepared in its cache, PostgreSQL prepares it on
    /// first use and keeps it for the connection's life.
    pub(crate) fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(match self {
            Connection::Sqlite(connection) => Statement::Sqlite(
                connection
                    .prepare_cached(sql)
                    .map_err(DatabaseError::from)?,
            ),
            Connection::Postgres(connection) => Statement::Postgres {
                connection,
                sql: sql.to_owned(),
            },
        })
    }

    /// Runs a query that returns one row and maps it; [`DatabaseError::NoRows`] without one.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, map)
    }

    /// The SQLite connection, for tests of SQLite's own settings.
    #[cfg(test)]
    pub(crate) fn sqlite(&self) -> &rusqlite::Connection {
        match self {
            Connection::Sqlite(connection) => connection,
            Connection::Postgres(_) => panic!("a test asked a PostgreSQL ledger for SQLite"),
        }
    }

    /// Whether this is a PostgreSQL connection (for the few statements that differ).
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Connection::Postgres(_))
    }

    /// Runs one statement that takes no parameters and returns no rows (`COMMIT`,
    /// `BEGIN IMMEDIATE`).
    pub(crate) fn run(&self, sql: &str) -> Result<()> {
        match self {
            Connection::Sqlite(connection) => {
                connection.prepare_cached(sql)?.execute([])?;
                Ok(())
            }
            Connection::Postgres(connection) => connection.batch_execute(sql),
        }
    }

    /// Begins a write transaction holding the ledger's write lock, waiting for it up to the
    /// busy timeout: SQLite's `BEGIN IMMEDIATE`, or on PostgreSQL transaction-scoped advisory
    /// locks that every writer of the database takes first: [`WriteLock::Ledger`] alone, or
    /// the ledger's lock shared and one task's exclusive ([`WriteLock::Task`]). Writers of the
    /// same rows so run one at a time on both, and each sees every such write committed
    /// before it: the store's read-then-write operations (a claim, a lease, a transition)
    /// need nothing more.
    ///
    /// On PostgreSQL a connection lost since the last transaction is made again first.
    ///
    /// With `deferred`, PostgreSQL's `BEGIN` and locks wait to go with the transaction's
    /// first exchange (see [`Connection::defer`]).
    pub(crate) fn begin_write(&self, lock: WriteLock, deferred: bool) -> Result<()> {
        match self {
            Connection::Sqlite(_) => self.run("BEGIN IMMEDIATE"),
            Connection::Postgres(connection) => {
                connection.ensure_connected()?;
                let task_begin;
                let begin = match lock {
                    WriteLock::Ledger => postgres::BEGIN_WRITE,
                    WriteLock::Task { task } => {
                        task_begin = postgres::begin_task_write(task);
                        &task_begin
                    }
                    WriteLock::Claim => postgres::BEGIN_SHARED_WRITE,
                };
                if deferred {
                    connection.defer_begin(begin);
                    Ok(())
                } else {
                    connection.batch_execute(begin)
                }
            }
        }
    }

    /// Queues `sql`, a statement that returns nothing, to be sent with the PostgreSQL
    /// transaction's next exchange (its `COMMIT` at the latest), in the same round trip. Such
    /// a statement must refuse by failing (`baton_refuse`), for nothing answers it before the
    /// commit. Only a PostgreSQL batch defers (see `Write::deferring`); SQLite, in the
    /// process, has nothing to gain and no `baton_refuse`.
    pub(crate) fn defer(&self, sql: &str, params: impl Params) -> Result<()> {
        match self {
            Connection::Sqlite(_) => Err(DatabaseError::Value(String::from(
                "invariant: only a PostgreSQL batch defers its statements",
            ))),
            Connection::Postgres(connection) => connection.defer(sql, &params.values()),
        }
    }

    /// Makes a PostgreSQL connection lost since the last transaction again, before a read
    /// that runs outside a transaction; nothing to do on SQLite.
    pub(crate) fn ensure_connected(&self) -> Result<()> {
        match self {
            Connection::Sqlite(_) => Ok(()),
            Connection::Postgres(connection) => connection.ensure_connected(),
        }
    }

    /// Begins a read transaction: one snapshot for every statement in it.
    pub(crate) fn begin_read(&self) -> Result<()> {
        match self {
            Connection::Sqlite(_) => self.run("BEGIN"),
            Connection::Postgres(connection) => {
                connection.ensure_connected()?;
                connection.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            }
        }
    }

    /// Rolls back the open transaction, if there is one and the connection still stands.
    /// Errors are dropped: this runs on the way out of a failure that is being reported.
    pub(crate) fn rollback_if_open(&self) {
        match self {
            Connection::Sqlite(connection) => {
                if !connection.is_autocommit() {
                    let _ = connection.execute_batch("ROLLBACK");
                }
            }
            Connection::Postgres(connection) => connection.rollback(),
        }
    }
}

/// A prepared statement.
pub(crate) enum Statement<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres {
        connection: &'c PgConnection,
        sql: String,
    },
}

impl Statement<'_> {
    /// Runs the statement, returning how many rows it changed.
    pub(crate) fn execute(&mut self, params: impl Params) -> Result<usize> {
        let values = params.values();
        match self {
            Statement::Sqlite(statement) => sqlite::execute(statement, &values),
            Statement::Postgres { connection, sql } => connection.execute(sql, &values),
        }
    }

    /// Runs a query and maps its first row; [`DatabaseError::NoRows`] without one.
    pub(crate) fn query_row<T>(
        &mut self,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let values = params.values();
        match self {
            Statement::Sqlite(statement) => sqlite::query_row(statement, &values, map),
            Statement::Postgres { connection, sql } => connection.query_row(sql, &values, map),
        }
    }

    /// Runs a query and maps every row, in order.
    pub(crate) fn query_map<T>(
        &mut self,
        params: impl Params,
        map: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let values = params.values();
        let rows = match self {
            Statement::Sqlite(statement) => sqlite::query_map(statement, &values, map)?,
            Statement::Postgres { connection, sql } => connection.query_map(sql, &values, map)?,
        };
        Ok(rows.into_iter())
    }

    /// Whether the query returns at least one row.
    pub(crate) fn exists(&mut self, params: impl Params) -> Result<bool> {
        match self.query_row(params, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(DatabaseError::NoRows) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> Value<'_> {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> Value<'_> {
        match self {
            Some(value) => value.to_sql(),
            None => Value::Null,
        }
    }
}

impl ToSql for str {
    fn to_sql(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToSql for String {
    fn to_sql(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToSql for bool {
    fn to_sql(&self) -> Value<'_> {
        Value::Integer(i64::from(*self))
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

macro_rules! integer_sql {
    ($($integer:ty),*) => {$(
        impl ToSql for $integer {
            fn to_sql(&self) -> Value<'_> {
                // Every integer the ledger stores fits in i64; one past it saturates rather
                // than wrapping into a negative count.
                Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }

        impl FromSql for $integer {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                match value {
                    Value::Integer(number) => {
                        <$integer>::try_from(number).map_err(|_| FromSqlError::OutOfRange(number))
                    }
                    other => Err(FromSqlError::InvalidType(other.kind())),
                }
            }
        }
    )*};
}

integer_sql!(i32, i64, u32, u64, usize);

impl<T: FromSql> FromSql for Option<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            Value::Null => Ok(None),
            other => T::column_result(other).map(Some),
        }
    }
}

impl FromSql for String {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str().map(str::to_owned)
    }
}

impl FromSql for bool {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            Value::Integer(number) => Ok(number != 0),
            other => Err(FromSqlError::InvalidType(other.kind())),
        }
    }
}

impl FromSql for f64 {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            Value::Real(number) => Ok(number),
            // SQLite keeps a whole real as an integer.
            Value::Integer(number) => Ok(number as f64),
            other => Err(FromSqlError::InvalidType(other.kind())),
        }
    }
}
