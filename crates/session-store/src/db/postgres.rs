//! The PostgreSQL side of [`db`](super): one client connection with its prepared statements,
//! parameters bound to whatever column type the server expects, and the connection made
//! again when the server went away between transactions.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use postgres::types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};
use postgres::{Client, Config};

use super::{DatabaseError, Result, Row, Value};

/// Where a PostgreSQL ledger is, as the store connects to it: the parsed URL, with any
/// password from the caller, and the settings each new connection gets.
#[derive(Clone)]
pub(crate) struct PgTarget {
    pub(crate) config: Config,
    /// `SET` statements run on every new connection (the durability, the lock timeout).
    pub(crate) session_settings: String,
    /// Whether and how the connection is encrypted, as the URL's `sslmode` says.
    pub(crate) tls: crate::tls::Tls,
}

/// One connection to the server, made again after it was lost.
pub(crate) struct PgConnection {
    target: PgTarget,
    state: RefCell<State>,
    /// Round trips to the server so far, read through
    /// [`Store::count_round_trips`](crate::Store::count_round_trips); shared, so that a
    /// counter handle outlives any borrow of the connection.
    round_trips: Arc<AtomicU64>,
}

struct State {
    client: Option<Client>,
    /// Statements prepared on `client`, by their SQL as the store wrote it.
    statements: HashMap<String, postgres::Statement>,
    /// Statements that go to the server with whatever is sent next, in the same round trip
    /// and before it: a write transaction's `BEGIN`, and statements of its operations that
    /// return nothing ([`PgConnection::defer`]). Each ends with `;`.
    pending: String,
    /// Whether `pending` holds the `BEGIN` of the open transaction: nothing of the
    /// transaction reached the server yet, and rolling it back is forgetting it.
    unsent_begin: bool,
}

impl State {
    /// What waits to be sent, now on its way: the transaction's `BEGIN` among it is sent.
    fn take_pending(&mut self) -> String {
        self.unsent_begin = false;
        std::mem::take(&mut self.pending)
    }
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config holds the password: show where, never how.
        let config = &self.target.config;
        f.debug_struct("PgConnection")
            .field("hosts", &config.get_hosts())
            .field("ports", &config.get_ports())
            .field("dbname", &config.get_dbname())
            .field("user", &config.get_user())
            .finish_non_exhaustive()
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        // rust-postgres says goodbye to the server by blocking on a runtime of its own, which
        // panics on a thread that drives an async runtime (a store dropped at the end of an
        // async run). A thread of its own can always block; the goodbye is a courtesy, so
        // nothing waits for it.
        if let Some(client) = self.state.get_mut().client.take() {
            let spawned = std::thread::Builder::new()
                .name(String::from("baton-pg-close"))
                .spawn(move || drop(client));
            // Without a thread, the socket closes with the process and the server notices.
            drop(spawned);
        }
    }
}

impl PgConnection {
    /// Connects to the server.
    pub(crate) fn connect(target: PgTarget) -> Result<PgConnection> {
        let connection = PgConnection {
            target,
            state: RefCell::new(State {
                client: None,
                statements: HashMap::new(),
                pending: String::new(),
                unsent_begin: false,
            }),
            round_trips: Arc::default(),
        };
        connection.ensure_connected()?;
        Ok(connection)
    }

    /// Connects again when the connection was lost. Only called between transactions: a
    /// transaction that lost its connection is gone, and its caller hears of it.
    pub(crate) fn ensure_connected(&self) -> Result<()> {
        let mut state = self.state.borrow_mut();
        if state
            .client
            .as_ref()
            .is_some_and(|client| !client.is_closed())
        {
            return Ok(());
        }
        state.client = None;
        state.statements.clear();
        state.pending.clear();
        state.unsent_begin = false;
        // The start-up exchange (however many messages authentication takes) counts as one,
        // the session's settings as another.
        self.note_round_trips(2);
        let mut client = self.target.tls.connect(&self.target.config)?;
        client.batch_execute(&self.target.session_settings)?;
        state.client = Some(client);
        Ok(())
    }

    /// The counter of round trips this connection has made, shared.
    pub(crate) fn round_trips(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.round_trips)
    }

    /// Runs statements that take no parameters and return nothing (`BEGIN`, `COMMIT`, DDL),
    /// in one round trip however many there are, after whatever was deferred.
    pub(crate) fn batch_execute(&self, sql: &str) -> Result<()> {
        let mut state = self.state.borrow_mut();
        let mut text = state.take_pending();
        text.push_str(sql);
        let client = state.client.as_mut().ok_or(DatabaseError::Closed)?;
        self.note_round_trips(1);
        Ok(client.batch_execute(&text)?)
    }

    /// Begins a transaction with `begin` (its `BEGIN` and locks), to be sent with the
    /// transaction's first exchange rather than in a round trip of its own.
    pub(crate) fn defer_begin(&self, begin: &str) {
        let mut state = self.state.borrow_mut();
        state.pending.clear();
        state.pending.push_str(begin);
        state.pending.push(';');
        state.unsent_begin = true;
    }

    /// Queues `sql`, a statement that returns nothing, with its parameters written into it
    /// as literals, to be sent with the transaction's next exchange (its `COMMIT`, at the
    /// latest). Whatever it has to refuse, it refuses by failing (see `baton_refuse` in
    /// migration 8), which rolls the whole transaction back.
    pub(crate) fn defer(&self, sql: &str, values: &[Value<'_>]) -> Result<()> {
        let inlined = inline(sql, values)?;
        let mut state = self.state.borrow_mut();
        state.pending.push_str(&inlined);
        state.pending.push(';');
        Ok(())
    }

    /// Rolls back the open transaction: forgets it when none of it was sent yet, else sends
    /// `ROLLBACK`, unless the connection is gone. Errors are dropped, as
    /// [`Connection::rollback_if_open`](super::Connection::rollback_if_open) says.
    pub(crate) fn rollback(&self) {
        let unsent = {
            let mut state = self.state.borrow_mut();
            state.pending.clear();
            std::mem::take(&mut state.unsent_begin)
        };
        if !unsent && !self.is_closed() {
            let _ = self.batch_execute("ROLLBACK");
        }
    }

    /// Whether the connection is known to be gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.state
            .borrow()
            .client
            .as_ref()
            .is_none_or(Client::is_closed)
    }

    pub(crate) fn execute(&self, sql: &str, values: &[Value<'_>]) -> Result<usize> {
        self.with_statement(sql, |client, statement| {
            let parameters = parameters(values);
            let changed = client.execute(statement, &parameters)?;
            Ok(usize::try_from(changed).unwrap_or(usize::MAX))
        })
    }

    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        values: &[Value<'_>],
        map: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let rows = self.with_statement(sql, |client, statement| {
            Ok(client.query(statement, &parameters(values))?)
        })?;
        match rows.first() {
            Some(row) => map(&Row::Postgres(row)),
            None => Err(DatabaseError::NoRows),
        }
    }

    pub(crate) fn query_map<T>(
        &self,
        sql: &str,
        values: &[Value<'_>],
        mut map: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<Result<T>>> {
        let rows = self.with_statement(sql, |client, statement| {
            Ok(client.query(statement, &parameters(values))?)
        })?;
        Ok(rows.iter().map(|row| map(&Row::Postgres(row))).collect())
    }

    /// Runs `body` with the statement for `sql`, preparing it on first use.
    fn with_statement<T>(
        &self,
        sql: &str,
        body: impl FnOnce(&mut Client, &postgres::Statement) -> Result<T>,
    ) -> Result<T> {
        let mut state = self.state.borrow_mut();
        let pending = state.take_pending();
        let State {
            client, statements, ..
        } = &mut *state;
        let client = client.as_mut().ok_or(DatabaseError::Closed)?;
        if !pending.is_empty() {
            // What waits goes first: a prepared statement cannot share its round trip.
            self.note_round_trips(1);
            client.batch_execute(&pending)?;
        }
        let statement = match statements.get(sql) {
            Some(statement) => statement.clone(),
            None => {
                // Preparing is a round trip of its own, once per statement and connection.
                self.note_round_trips(1);
                let statement = client.prepare(&placeholders(sql))?;
                statements.insert(sql.to_owned(), statement.clone());
                statement
            }
        };
        // Every `body` sends one prepared statement (bind, execute, sync) and reads its answer.
        self.note_round_trips(1);
        body(client, &statement)
    }

    /// Counts `trips` exchanges with the server, as they are sent (one that fails counts too:
    /// it went to the server all the same).
    fn note_round_trips(&self, trips: u64) {
        self.round_trips.fetch_add(trips, Ordering::Relaxed);
    }
}

fn parameters<'v>(values: &'v [Value<'_>]) -> Vec<&'v (dyn PgToSql + Sync)> {
    values
        .iter()
        .map(|value| value as &(dyn PgToSql + Sync))
        .collect()
}

/// Rewrites SQLite's `?1` and `?` placeholders as PostgreSQL's `$1`, leaving quoted text alone.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(character) = chars.next() {
        match character {
            '\'' => {
                quoted = !quoted;
                out.push(character);
            }
            '?' if !quoted => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                        out.push(digit);
                    }
                } else {
                    out.push_str(&next.to_string());
                    next += 1;
                }
            }
            _ => out.push(character),
        }
    }
    out
}

/// `sql` with its `?1` and `?` placeholders replaced by `values` written as literals, for
/// statements sent in a batch of text ([`PgConnection::defer`]), which takes no parameters.
///
/// Every value but NULL becomes a quoted literal, which the server types from where it
/// stands, as it types a parameter; text is quoted by doubling its quotes, which is the whole
/// of quoting with `standard_conforming_strings` on (every connection sets it). Text with a
/// NUL character cannot be a literal (PostgreSQL's text cannot hold one either) and is an
/// error.
pub(crate) fn inline(sql: &str, values: &[Value<'_>]) -> Result<String> {
    let numbered = placeholders(sql);
    let mut out = String::with_capacity(numbered.len() + 16 * values.len());
    let mut quoted = false;
    let mut chars = numbered.chars().peekable();
    while let Some(character) = chars.next() {
        match character {
            '\'' => {
                quoted = !quoted;
                out.push(character);
            }
            '$' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut digits = String::new();
                while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                    digits.push(digit);
                }
                let value = digits
                    .parse::<usize>()
                    .ok()
                    .and_then(|number| values.get(number.checked_sub(1)?))
                    .ok_or_else(|| {
                        DatabaseError::Value(format!("no value for parameter ${digits}"))
                    })?;
                push_literal(&mut out, *value)?;
            }
            _ => out.push(character),
        }
    }
    Ok(out)
}

/// Writes `value` as a literal.
fn push_literal(out: &mut String, value: Value<'_>) -> Result<()> {
    use std::fmt::Write as _;
    match value {
        Value::Null => out.push_str("NULL"),
        Value::Integer(number) => {
            let _ = write!(out, "'{number}'");
        }
        Value::Real(number) if number.is_nan() => out.push_str("'NaN'"),
        Value::Real(number) if number.is_infinite() => {
            out.push_str(if number > 0.0 {
                "'Infinity'"
            } else {
                "'-Infinity'"
            });
        }
        // `{:?}` writes the shortest text that reads back as the same number.
        Value::Real(number) => {
            let _ = write!(out, "'{number:?}'");
        }
        Value::Text(text) => {
            if text.contains('\0') {
                return Err(DatabaseError::Value(String::from(
                    "text with a NUL character cannot be stored",
                )));
            }
            out.push('\'');
            out.push_str(&text.replace('\'', "''"));
            out.push('\'');
        }
    }
    Ok(())
}

/// The column at `index` of a PostgreSQL row, by the column's type.
pub(super) fn value_at(row: &postgres::Row, index: usize) -> Result<Value<'_>> {
    let column_type = row
        .columns()
        .get(index)
        .map(|column| column.type_().clone())
        .ok_or_else(|| DatabaseError::conversion(index, "no such column"))?;
    let value = match column_type {
        Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(Value::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)?
            .map(|number| Value::Integer(number.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)?
            .map(|number| Value::Integer(number.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)?
            .map(|flag| Value::Integer(flag.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(index)?.map(Value::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(index)?
            .map(|number| Value::Real(number.into())),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
            row.try_get::<_, Option<&str>>(index)?.map(Value::Text)
        }
        other => {
            return Err(DatabaseError::conversion(
                index,
                format!("a column of type {other} (cast it to bigint or text in the query)"),
            ));
        }
    };
    Ok(value.unwrap_or(Value::Null))
}

type BoxError = Box<dyn StdError + Sync + Send>;

/// A parameter takes the type the server inferred for its placeholder: an integer binds to
/// `bigint`, `integer` or `boolean` columns alike, as SQLite's dynamic typing lets it.
impl PgToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, BoxError> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(number) => integer_to_sql(number, ty, out),
            Value::Real(number) => match *ty {
                Type::FLOAT4 => (number as f32).to_sql(ty, out),
                _ => number.to_sql(&Type::FLOAT8, out),
            },
            Value::Text(text) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
                    text.to_sql(ty, out)
                }
                ref other => Err(format!("text passed where the query expects {other}").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn integer_to_sql(
    number: i64,
    ty: &Type,
    out: &mut postgres::types::private::BytesMut,
) -> std::result::Result<IsNull, BoxError> {
    match *ty {
        Type::INT8 => number.to_sql(ty, out),
        Type::INT4 => i32::try_from(number)?.to_sql(ty, out),
        Type::INT2 => i16::try_from(number)?.to_sql(ty, out),
        Type::BOOL => (number != 0).to_sql(ty, out),
        Type::FLOAT8 => (number as f64).to_sql(ty, out),
        // An untyped placeholder (`SELECT $1`) is text to the server.
        Type::TEXT | Type::UNKNOWN => number.to_string().to_sql(&Type::TEXT, out),
        ref other => Err(format!("an integer passed where the query expects {other}").into()),
    }
}

/// How long a new connection may take before the open fails.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock every write transaction of a ledger takes first ("Batn", as SQLite's
/// application id): PostgreSQL's counterpart of SQLite's one write lock.
pub(crate) const WRITE_LOCK: i64 = 0x4261_746e;

/// Begins a write transaction and takes [`WRITE_LOCK`], in one round trip.
pub(super) const BEGIN_WRITE: &str =
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(1113683054)";

/// Begins a write transaction that takes [`WRITE_LOCK`] shared and nothing more yet, in one
/// round trip: a claim's, whose statement takes its task's lock itself.
pub(super) const BEGIN_SHARED_WRITE: &str =
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock_shared(1113683054)";

/// The first key of the advisory locks of one task ("BatT"); the second is the task's id. The
/// two-key locks are a key space apart from [`WRITE_LOCK`]'s.
const TASK_LOCK_CLASS: i32 = 0x4261_7454;

/// The first key of the advisory locks of one milestone ("BatM"), whose tasks may share
/// sessions.
const MILESTONE_LOCK_CLASS: i32 = 0x4261_744d;

/// Begins a write transaction that writes only one task and its sessions, in one round trip:
/// [`WRITE_LOCK`] shared, so that it waits for (and holds off) every write of the whole
/// ledger, and the lock of the task, or of its milestone when it has one (a milestone's tasks
/// may share a session), so that it waits for every other write of the same task. Which of the
/// two is read from the task's row, whose milestone never changes, so that no caller can name
/// the wrong one.
pub(super) fn begin_task_write(task: i64) -> String {
    format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; \
         SELECT pg_advisory_xact_lock_shared({WRITE_LOCK}); \
         SELECT pg_advisory_xact_lock({}) FROM tasks WHERE id = {task}",
        task_lock_keys("tasks")
    )
}

/// The two keys of the advisory lock that writes of the task in `row` (a name for a row of
/// `tasks`) take: its task's, or its milestone's when it has one.
pub(crate) fn task_lock_keys(row: &str) -> String {
    // Ids past 2^31 share a lock with a smaller one: that only makes them wait for each other.
    format!(
        "CASE WHEN {row}.milestone_id IS NULL THEN {TASK_LOCK_CLASS} \
              ELSE {MILESTONE_LOCK_CLASS} END, \
         (coalesce({row}.milestone_id, {row}.id) & 2147483647)::int"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_in_as_quoted_literals() {
        let sql = inline(
            "UPDATE t SET a = ?2, b = ?1, c = ?3, d = ?4 WHERE e = '?1'",
            &[
                Value::Text("it's; DROP TABLE t; --"),
                Value::Integer(-7),
                Value::Null,
                Value::Real(0.1),
            ],
        )
        .unwrap();
        assert_eq!(
            sql,
            "UPDATE t SET a = '-7', b = 'it''s; DROP TABLE t; --', c = NULL, d = '0.1' \
             WHERE e = '?1'"
        );
        assert!(inline("SELECT ?2", &[Value::Null]).is_err());
        assert!(inline("SELECT ?1", &[Value::Text("a\0b")]).is_err());
    }

    #[test]
    fn placeholders_become_dollar_numbers_outside_quotes() {
        assert_eq!(
            placeholders("SELECT ?1, ?12 FROM t WHERE a = '?' AND b = ?"),
            "SELECT $1, $12 FROM t WHERE a = '?' AND b = $1"
        );
    }
}
