//! The schema's history: an append-only list of migrations, and the code that brings a
//! database up to the newest version.
//!
//! The version lives in SQLite's `PRAGMA user_version`: 0 is an empty file, and version `n`
//! means the first `n` migrations have been applied. A migration is never edited once it has
//! shipped; a change to the schema is a new migration at the end of [`MIGRATIONS`].

pub(crate) mod postgres;

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{StoreError, database_error};

/// One step of the schema's history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// What the step does, for error messages.
    pub(crate) description: &'static str,
    /// The SQL, run as one batch inside the upgrade's transaction.
    pub(crate) sql: &'static str,
}

/// Every migration, oldest first. Append only.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        description: "create the ledger",
        sql: include_str!("migrations/0001_create_ledger.sql"),
    },
    Migration {
        description: "record task runners, guidance and agent start times",
        sql: include_str!("migrations/0002_runners_guidance_agent_start.sql"),
    },
    Migration {
        description: "record task workspaces and running check processes",
        sql: include_str!("migrations/0003_task_workspaces_check_processes.sql"),
    },
    Migration {
        description: "keep spending limits on tasks and milestones",
        sql: include_str!("migrations/0004_budgets.sql"),
    },
    Migration {
        description: "register runners with heartbeats, and fence claims and leases with epochs",
        sql: include_str!("migrations/0005_runners_epochs.sql"),
    },
    Migration {
        description: "keep copies of session transcripts",
        sql: include_str!("migrations/0006_session_transcripts.sql"),
    },
    Migration {
        description: "record the remote of a task's repository and the host of its worktree",
        sql: include_str!("migrations/0007_task_workspace_remotes.sql"),
    },
    Migration {
        description: "let a batch's statements sent together refuse (PostgreSQL only)",
        sql: include_str!("migrations/0008_deferred_refusals.sql"),
    },
];

/// The schema version this build writes: the number of migrations it knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The `application_id` that marks a SQLite file as a Baton ledger ("Batn").
pub(crate) const APPLICATION_ID: i32 = 0x4261_746e;

/// The schema version of an open ledger, SQLite's or PostgreSQL's.
pub(crate) fn version(connection: &crate::db::Connection) -> crate::db::Result<u32> {
    match connection {
        crate::db::Connection::Sqlite(sqlite) => {
            Ok(sqlite.pragma_query_value(None, "user_version", |row| row.get(0))?)
        }
        crate::db::Connection::Postgres(_) => {
            connection.query_row("SELECT schema_version FROM baton_ledger", (), |row| {
                row.get(0)
            })
        }
    }
}

/// Brings the database at `path` up to the version of `migrations`, or explains why it cannot.
///
/// All pending migrations run in one `BEGIN IMMEDIATE` transaction, so a failure leaves the
/// database exactly as it was, and two processes opening a new database at once do not both
/// migrate it: the second waits for the write lock, then finds the work done.
pub(crate) fn migrate(
    connection: &mut Connection,
    path: &Path,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let target = u32::try_from(migrations.len()).unwrap_or(u32::MAX);
    // One read transaction, so that the version and the list of tables come from the same
    // snapshot even while another process migrates the file.
    let found = {
        let operation = "read the schema version";
        let snapshot = connection
            .unchecked_transaction()
            .map_err(|source| database_error(operation, path, source))?;
        let found = check_version(&snapshot, path, target)?;
        snapshot
            .commit()
            .map_err(|source| database_error(operation, path, source))?;
        found
    };
    if found == target {
        return Ok(());
    }

    let operation = "upgrade the schema";
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|source| database_error(operation, path, source))?;
    // Read again under the write lock: another process may have migrated since.
    let found = check_version(&transaction, path, target)?;
    for (index, migration) in migrations.iter().enumerate().skip(found as usize) {
        let version = u32::try_from(index + 1).unwrap_or(u32::MAX);
        transaction
            .execute_batch(migration.sql)
            .map_err(|source| StoreError::Migrate {
                path: path.to_owned(),
                version,
                description: migration.description,
                source: source.into(),
            })?;
    }
    transaction
        .pragma_update(None, "user_version", target)
        .and_then(|()| transaction.commit())
        .map_err(|source| database_error(operation, path, source))
}

/// Reads the schema version and refuses a database this build must not touch: one from a
/// newer build, or one that belongs to another application.
fn check_version(connection: &Connection, path: &Path, target: u32) -> Result<u32, StoreError> {
    let operation = "read the schema version";
    let read = |pragma: &str| -> Result<i64, StoreError> {
        connection
            .pragma_query_value(None, pragma, |row| row.get(0))
            .map_err(|source| database_error(operation, path, source))
    };
    let found = read("user_version")?;
    let application_id = read("application_id")?;

    let foreign = || StoreError::ForeignDatabase {
        path: path.to_owned(),
        application_id: i32::try_from(application_id).unwrap_or(i32::MAX),
    };
    if application_id != 0 && application_id != i64::from(APPLICATION_ID) {
        return Err(foreign());
    }
    let found = u32::try_from(found).map_err(|_| foreign())?;
    if found > target {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: target,
        });
    }
    if found == 0 {
        // A file at version 0 that already has tables is someone else's database: migrating
        // it would mix our tables into theirs.
        let tables: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(|source| database_error(operation, path, source))?;
        if tables > 0 {
            return Err(foreign());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Store;

    /// The schema as SQLite describes it: every table, index and trigger by name.
    fn schema(connection: &Connection) -> BTreeMap<String, String> {
        let mut statement = connection
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn user_version(connection: &Connection) -> u32 {
        connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    fn fresh_schema() -> BTreeMap<String, String> {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open_with(
            directory.path().join("fresh.db"),
            &crate::StoreOptions::new(redact::Redactor::new()),
        )
        .unwrap();
        schema(store.sqlite())
    }

    /// Upgrading from every older version must give exactly the schema of a fresh database.
    /// Adding migration N makes this test cover the upgrade from each of 0..N by itself.
    #[test]
    fn every_older_version_upgrades_to_the_fresh_schema() {
        let expected = fresh_schema();
        for start in 0..MIGRATIONS.len() {
            let directory = tempfile::tempdir().unwrap();
            let path = directory.path().join("old.db");
            {
                let mut connection = Connection::open(&path).unwrap();
                migrate(&mut connection, &path, &MIGRATIONS[..start]).unwrap();
                assert_eq!(user_version(&connection), start as u32);
            }
            let store = Store::open_with(&path, &crate::StoreOptions::new(redact::Redactor::new()))
                .unwrap_or_else(|err| panic!("upgrading from version {start} failed: {err}"));
            assert_eq!(user_version(store.sqlite()), SCHEMA_VERSION);
            assert_eq!(
                schema(store.sqlite()),
                expected,
                "upgrading from version {start} gave a different schema"
            );
            // Opening an up-to-date database changes nothing.
            drop(store);
            let store = Store::open_with(&path, &crate::StoreOptions::new(redact::Redactor::new()))
                .unwrap();
            assert_eq!(schema(store.sqlite()), expected);
        }
    }

    const FIRST: Migration = Migration {
        description: "first",
        sql: "CREATE TABLE one (x INTEGER) STRICT;",
    };
    const SECOND: Migration = Migration {
        description: "second",
        sql: "CREATE TABLE two (y INTEGER) STRICT; INSERT INTO one (x) VALUES (1);",
    };
    const BROKEN: Migration = Migration {
        description: "broken",
        sql: "CREATE TABLE three (z INTEGER); THIS IS NOT SQL;",
    };

    #[test]
    fn only_pending_migrations_run() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("steps.db");
        let mut connection = Connection::open(&path).unwrap();
        migrate(&mut connection, &path, &[FIRST]).unwrap();
        assert_eq!(user_version(&connection), 1);
        // If FIRST ran again, CREATE TABLE one would fail.
        migrate(&mut connection, &path, &[FIRST, SECOND]).unwrap();
        assert_eq!(user_version(&connection), 2);
        let rows: i64 = connection
            .query_row("SELECT count(*) FROM one", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        migrate(&mut connection, &path, &[FIRST, SECOND]).unwrap();
        assert_eq!(user_version(&connection), 2);
    }

    #[test]
    fn a_failed_migration_leaves_the_database_unchanged() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("broken.db");
        let mut connection = Connection::open(&path).unwrap();
        migrate(&mut connection, &path, &[FIRST]).unwrap();
        let err = migrate(&mut connection, &path, &[FIRST, SECOND, BROKEN]).unwrap_err();
        match &err {
            StoreError::Migrate {
                version,
                description,
                ..
            } => {
                assert_eq!(*version, 3);
                assert_eq!(*description, "broken");
            }
            other => panic!("expected a migration error, got {other:?}"),
        }
        assert!(err.to_string().contains("it was left unchanged"), "{err}");
        // SECOND ran in the same transaction as BROKEN, so it was rolled back too.
        assert_eq!(user_version(&connection), 1);
        assert!(!schema(&connection).contains_key("two"));
        assert!(!schema(&connection).contains_key("three"));
    }

    #[test]
    fn a_newer_database_is_refused_and_left_alone() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("newer.db");
        let mut connection = Connection::open(&path).unwrap();
        migrate(&mut connection, &path, &[FIRST, SECOND]).unwrap();
        let err = migrate(&mut connection, &path, &[FIRST]).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NewerSchema {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(user_version(&connection), 2);
    }

    #[test]
    fn the_schema_version_counts_the_migrations() {
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
        const { assert!(SCHEMA_VERSION >= 1) };
    }
}
