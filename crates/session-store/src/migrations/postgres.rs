//! The schema's history on PostgreSQL: the same versions as SQLite's, each written in
//! PostgreSQL's dialect, and the code that brings a database up to the newest.
//!
//! The version lives in the one-row table `baton_ledger`, which also marks the database as a
//! Baton ledger. Every pending migration runs in one transaction under the ledger's write lock
//! (PostgreSQL's DDL is transactional), so a failure leaves the database as it was, and two
//! runners opening a new database at once do not both migrate it.

use std::path::Path;

use crate::db::{PgConnection, WRITE_LOCK};
use crate::error::{StoreError, database_error};
use crate::migrations::Migration;

/// Every migration, oldest first, version for version the PostgreSQL twin of
/// [`MIGRATIONS`](super::MIGRATIONS). Append only, and only together with SQLite's.
pub(crate) const MIGRATIONS: &[Migration] = &[
    twin(0, include_str!("postgres/0001_create_ledger.sql")),
    twin(
        1,
        include_str!("postgres/0002_runners_guidance_agent_start.sql"),
    ),
    twin(
        2,
        include_str!("postgres/0003_task_workspaces_check_processes.sql"),
    ),
    twin(3, include_str!("postgres/0004_budgets.sql")),
    twin(4, include_str!("postgres/0005_runners_epochs.sql")),
    twin(5, include_str!("postgres/0006_session_transcripts.sql")),
    twin(6, include_str!("postgres/0007_task_workspace_remotes.sql")),
    twin(7, include_str!("postgres/0008_deferred_refusals.sql")),
];

// Each SQLite migration has its twin here, and no more.
const _: () = assert!(MIGRATIONS.len() == super::MIGRATIONS.len());

/// Migration `index` in PostgreSQL's dialect: `sql`, with the description of SQLite's step
/// of the same version, written once there.
const fn twin(index: usize, sql: &'static str) -> Migration {
    Migration {
        description: super::MIGRATIONS[index].description,
        sql,
    }
}

/// Brings the database up to the version of `migrations`, or explains why it cannot: one
/// from a newer build is refused, and so is one that holds another application's tables.
pub(crate) fn migrate(
    connection: &PgConnection,
    path: &Path,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let operation = "upgrade the schema";
    let target = u32::try_from(migrations.len()).unwrap_or(u32::MAX);
    connection
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        ))
        .map_err(|source| database_error(operation, path, source))?;
    let result = migrate_locked(connection, path, migrations, target);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = connection
        .batch_execute(end)
        .map_err(|source| database_error(operation, path, source));
    result.and(ended)
}

fn migrate_locked(
    connection: &PgConnection,
    path: &Path,
    migrations: &[Migration],
    target: u32,
) -> Result<(), StoreError> {
    let found = check_version(connection, path, target)?;
    for (index, migration) in migrations.iter().enumerate().skip(found as usize) {
        let version = u32::try_from(index + 1).unwrap_or(u32::MAX);
        connection
            .batch_execute(migration.sql)
            .map_err(|source| StoreError::Migrate {
                path: path.to_owned(),
                version,
                description: migration.description,
                source,
            })?;
    }
    if found < target {
        connection
            .batch_execute(&format!(
                "DELETE FROM baton_ledger; \
                 INSERT INTO baton_ledger (application, schema_version) VALUES ('baton', {target})"
            ))
            .map_err(|source| database_error("record the schema version", path, source))?;
    }
    Ok(())
}

/// Reads the version, creating the version table in an empty database.
fn check_version(connection: &PgConnection, path: &Path, target: u32) -> Result<u32, StoreError> {
    let operation = "read the schema version";
    let (marked, tasks): (bool, bool) = connection
        .query_row(
            "SELECT to_regclass('baton_ledger') IS NOT NULL, to_regclass('tasks') IS NOT NULL",
            &[],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|source| database_error(operation, path, source))?;
    let foreign = || StoreError::ForeignTables {
        path: path.to_owned(),
    };
    if !marked {
        if tasks {
            // Someone else's `tasks` table: migrating would mix our tables into theirs.
            return Err(foreign());
        }
        connection
            .batch_execute(
                "CREATE TABLE baton_ledger (application TEXT NOT NULL, schema_version BIGINT NOT NULL); \
                 INSERT INTO baton_ledger (application, schema_version) VALUES ('baton', 0)",
            )
            .map_err(|source| database_error(operation, path, source))?;
        return Ok(0);
    }
    let (application, found): (String, i64) = connection
        .query_row(
            "SELECT application, schema_version FROM baton_ledger",
            &[],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|source| database_error(operation, path, source))?;
    if application != "baton" {
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
    Ok(found)
}
