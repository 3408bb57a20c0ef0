//! Conversions between Rust values and SQL values that several tables share: usage totals,
//! exit statuses, durations, paths and session ids.

use std::path::Path;
use std::time::Duration;

use crate::db::Row;
use agent::{ExitInfo, SessionId, Usage};

use crate::error::StoreError;
use crate::units::{Cost, Totals};

/// The running-total columns, in the order [`totals_at`] reads them. Tables that keep totals
/// (`tasks`, `sessions`) name them alike.
pub(crate) const TOTALS_COLUMNS: &str = "agent_calls, turns, input_tokens, output_tokens, \
                                         cache_read_tokens, cache_creation_tokens, cost_nano_usd";

/// Reads [`TOTALS_COLUMNS`] starting at column `first`.
pub(crate) fn totals_at(row: &Row<'_>, first: usize) -> crate::db::Result<Totals> {
    Ok(Totals {
        agent_calls: row.get(first)?,
        turns: row.get(first + 1)?,
        usage: usage_at(row, first + 2)?,
        cost: Cost::from_nano_usd(row.get(first + 6)?),
    })
}

/// Reads the four token counts starting at column `first`, in the order input, output, cache
/// read, cache creation.
pub(crate) fn usage_at(row: &Row<'_>, first: usize) -> crate::db::Result<Usage> {
    Ok(Usage {
        input_tokens: row.get(first)?,
        output_tokens: row.get(first + 1)?,
        cache_read_tokens: row.get(first + 2)?,
        cache_creation_tokens: row.get(first + 3)?,
    })
}

/// Reads a session id stored as text.
pub(crate) fn session_id_at(row: &Row<'_>, index: usize) -> crate::db::Result<SessionId> {
    let text = row.get_ref(index)?.as_str()?;
    text.parse()
        .map_err(|error| crate::db::DatabaseError::conversion(index, error))
}

/// Reads an optional session id stored as text.
pub(crate) fn optional_session_id_at(
    row: &Row<'_>,
    index: usize,
) -> crate::db::Result<Option<SessionId>> {
    match row.get_ref(index)?.as_str_or_null()? {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|error| crate::db::DatabaseError::conversion(index, error)),
    }
}

/// Splits an exit status into the `exit_code` and `exit_signal` columns.
pub(crate) fn exit_columns(exit: Option<ExitInfo>) -> (Option<i32>, Option<i32>) {
    match exit {
        None => (None, None),
        Some(ExitInfo::Code(code)) => (Some(code), None),
        Some(ExitInfo::Signal(signal)) => (None, Some(signal)),
    }
}

/// Reads the `exit_code` and `exit_signal` columns at `first` and `first + 1`.
pub(crate) fn exit_at(row: &Row<'_>, first: usize) -> crate::db::Result<Option<ExitInfo>> {
    let code: Option<i32> = row.get(first)?;
    let signal: Option<i32> = row.get(first + 1)?;
    Ok(match (code, signal) {
        (Some(code), _) => Some(ExitInfo::Code(code)),
        (None, Some(signal)) => Some(ExitInfo::Signal(signal)),
        (None, None) => None,
    })
}

/// A duration as whole milliseconds, saturating (a duration past 292 million years is not a
/// real measurement).
pub(crate) fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Reads a duration stored as milliseconds.
pub(crate) fn duration_at(row: &Row<'_>, index: usize) -> crate::db::Result<Duration> {
    let millis: u64 = row.get(index)?;
    Ok(Duration::from_millis(millis))
}

/// A path as the text the ledger stores. Paths are stored as text so that people can query
/// the ledger with `sqlite3`; a path that is not UTF-8 is refused rather than mangled.
pub(crate) fn path_text<'path>(
    field: &'static str,
    path: &'path Path,
) -> Result<&'path str, StoreError> {
    path.to_str().ok_or_else(|| StoreError::Invalid {
        field,
        reason: format!("`{}` is not valid UTF-8", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::db::{Connection, DatabaseError, params};

    fn in_memory() -> Connection {
        Connection::Sqlite(rusqlite::Connection::open_in_memory().unwrap())
    }

    #[test]
    fn exit_statuses_round_trip_through_their_columns() {
        let connection = in_memory();
        for exit in [
            None,
            Some(ExitInfo::Code(0)),
            Some(ExitInfo::Code(2)),
            Some(ExitInfo::Signal(9)),
        ] {
            let (code, signal) = exit_columns(exit);
            let back = connection
                .query_row("SELECT ?1, ?2", params![code, signal], |row| {
                    exit_at(row, 0)
                })
                .unwrap();
            assert_eq!(back, exit);
        }
    }

    #[test]
    fn a_malformed_session_id_is_a_conversion_error() {
        let err = in_memory()
            .query_row("SELECT 'nope'", (), |row| session_id_at(row, 0))
            .unwrap_err();
        assert!(
            matches!(err, DatabaseError::Conversion { index: 0, .. }),
            "{err:?}"
        );
    }
}
