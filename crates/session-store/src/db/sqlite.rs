//! The SQLite side of [`db`](super): binding [`Value`]s and reading columns with rusqlite.

use rusqlite::types::{ToSqlOutput, ValueRef as SqliteValue};

use super::{DatabaseError, Result, Row, Value};

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Value::Null => ToSqlOutput::Borrowed(SqliteValue::Null),
            Value::Integer(number) => ToSqlOutput::Borrowed(SqliteValue::Integer(number)),
            Value::Real(number) => ToSqlOutput::Borrowed(SqliteValue::Real(number)),
            Value::Text(text) => ToSqlOutput::Borrowed(SqliteValue::Text(text.as_bytes())),
        })
    }
}

/// Whether SQLite gave up waiting for another connection's lock.
pub(crate) fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The column at `index` of a SQLite row.
pub(super) fn value_at<'row>(row: &'row rusqlite::Row<'_>, index: usize) -> Result<Value<'row>> {
    Ok(match row.get_ref(index)? {
        SqliteValue::Null => Value::Null,
        SqliteValue::Integer(number) => Value::Integer(number),
        SqliteValue::Real(number) => Value::Real(number),
        SqliteValue::Text(bytes) => Value::Text(
            std::str::from_utf8(bytes).map_err(|error| DatabaseError::conversion(index, error))?,
        ),
        SqliteValue::Blob(_) => {
            return Err(DatabaseError::conversion(index, "unexpected blob"));
        }
    })
}

pub(super) fn execute(
    statement: &mut rusqlite::CachedStatement<'_>,
    values: &[Value<'_>],
) -> Result<usize> {
    Ok(statement.execute(rusqlite::params_from_iter(values))?)
}

pub(super) fn query_row<T>(
    statement: &mut rusqlite::CachedStatement<'_>,
    values: &[Value<'_>],
    map: impl FnOnce(&Row<'_>) -> Result<T>,
) -> Result<T> {
    let mut rows = statement.query(rusqlite::params_from_iter(values))?;
    match rows.next()? {
        Some(row) => map(&Row::Sqlite(row)),
        None => Err(DatabaseError::NoRows),
    }
}

pub(super) fn query_map<T>(
    statement: &mut rusqlite::CachedStatement<'_>,
    values: &[Value<'_>],
    mut map: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<Result<T>>> {
    let mut rows = statement.query(rusqlite::params_from_iter(values))?;
    let mut mapped = Vec::new();
    while let Some(row) = rows.next()? {
        mapped.push(map(&Row::Sqlite(row)));
    }
    Ok(mapped)
}
