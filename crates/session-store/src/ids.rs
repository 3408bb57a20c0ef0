//! Row ids of the ledger's tables, as distinct types so that a task id is never passed where
//! a milestone id is expected.

use std::fmt;

use crate::db::{FromSql, FromSqlResult, ToSql, Value, ValueRef};

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident, $word:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl $name {
            /// The raw row id.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> Value<'_> {
                Value::Integer(self.0)
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(value).map($name)
            }
        }

        impl $name {
            /// What the id names, as a word for messages.
            pub const NOUN: &'static str = $word;
        }
    };
}

row_id!(
    /// The id of a task.
    TaskId,
    "task"
);
row_id!(
    /// The id of a milestone.
    MilestoneId,
    "milestone"
);
row_id!(
    /// The id of one recorded agent call.
    CallId,
    "agent call"
);
row_id!(
    /// The id of one recorded verification run.
    VerificationId,
    "verification"
);
row_id!(
    /// The id of one event in the append-only log.
    EventId,
    "event"
);

row_id!(
    /// The id of a registered runner (one `baton run`).
    RunnerId,
    "runner"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_as_bare_numbers() {
        assert_eq!(TaskId(7).to_string(), "7");
        assert_eq!(MilestoneId(3).get(), 3);
        assert_eq!(TaskId::NOUN, "task");
    }
}
