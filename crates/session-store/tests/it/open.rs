//! Opening a ledger: file permissions, schema versions, and refusing files that are not ours.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rusqlite::Connection;
use session_store::{NewTask, SCHEMA_VERSION, Store, StoreError, StoreOptions};

use crate::common::{add_task, temp_store};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_ledger_and_its_directories_are_private_to_their_owner() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("state").join(".baton").join("baton.db");
    let mut store = Store::open_with(&path, &crate::common::options()).unwrap();
    add_task(&mut store, root.path(), "write something");

    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&root.path().join("state")), 0o700);
    // SQLite gives the write-ahead log and its index the database file's permissions.
    for suffix in ["-wal", "-shm"] {
        let companion = path.with_file_name(format!("baton.db{suffix}"));
        assert!(companion.exists(), "{} exists", companion.display());
        assert_eq!(mode(&companion), 0o600, "{}", companion.display());
    }
}

#[test]
fn an_existing_file_keeps_the_permissions_its_owner_gave_it() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("shared.db");
    fs::write(&path, b"").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    Store::open_with(&path, &crate::common::options()).unwrap();
    assert_eq!(mode(&path), 0o640);
}

#[test]
fn reopening_keeps_the_data() {
    let (directory, mut store) = temp_store();
    let task = add_task(&mut store, directory.path(), "persist");
    let path = store.path().to_owned();
    drop(store);
    let store = Store::open_with(&path, &crate::common::options()).unwrap();
    assert_eq!(store.task(task).unwrap().title, "persist");
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_ledger_from_a_newer_build_is_refused_and_left_alone() {
    let (directory, store) = temp_store();
    let path = store.path().to_owned();
    drop(store);
    let newer = SCHEMA_VERSION + 1;
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();

    let err = Store::open_with(&path, &crate::common::options()).unwrap_err();
    match &err {
        StoreError::NewerSchema {
            path: named,
            found,
            supported,
        } => {
            assert_eq!(named, &path);
            assert_eq!(*found, newer);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("schema version {newer}")),
        "{message}"
    );
    assert!(message.contains("upgrade baton"), "{message}");

    let version: u32 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, newer);
    drop(directory);
}

#[test]
fn another_applications_database_is_refused() {
    let directory = tempfile::tempdir().unwrap();

    let tables_only = directory.path().join("other.db");
    Connection::open(&tables_only)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    let err = Store::open_with(&tables_only, &crate::common::options()).unwrap_err();
    assert!(matches!(err, StoreError::ForeignDatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("not a baton ledger"), "{err}");

    let marked = directory.path().join("marked.db");
    Connection::open(&marked)
        .unwrap()
        .pragma_update(None, "application_id", 42)
        .unwrap();
    let err = Store::open_with(&marked, &crate::common::options()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::ForeignDatabase {
                application_id: 42,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_directory_where_the_file_should_be_is_a_typed_error() {
    let directory = tempfile::tempdir().unwrap();
    let err = Store::open_with(directory.path(), &crate::common::options()).unwrap_err();
    assert!(matches!(err, StoreError::CreateFile { .. }), "{err:?}");
}

#[test]
fn a_write_lock_held_past_the_busy_timeout_is_a_typed_busy_error() {
    let (directory, store) = temp_store();
    let path = store.path().to_owned();
    drop(store);
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(50),
        ..crate::common::options()
    };
    let mut store = Store::open_with(&path, &options).unwrap();

    let blocker = Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store
        .add_task(&NewTask::new(
            redact::Redacted::trusted("blocked"),
            redact::Redacted::trusted("wait"),
            directory.path(),
        ))
        .unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    let message = err.to_string();
    assert!(message.starts_with("could not add a task"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    blocker.execute_batch("ROLLBACK").unwrap();

    // Once the lock is gone the same write goes through.
    store
        .add_task(&NewTask::new(
            redact::Redacted::trusted("unblocked"),
            redact::Redacted::trusted("go"),
            directory.path(),
        ))
        .unwrap();
}

#[test]
fn schema() {
    let (_directory, store) = temp_store();
    let connection = Connection::open(store.path()).unwrap();
    let mut statement = connection
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .unwrap();
    let statements: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    insta::assert_snapshot!(statements.join(";\n\n"));
}

#[test]
fn a_sound_ledger_passes_its_integrity_check_and_a_damaged_one_does_not() {
    let (directory, mut store) = temp_store();
    for n in 0..50 {
        add_task(&mut store, directory.path(), &format!("task {n}"));
    }
    assert_eq!(store.integrity_check().unwrap(), Vec::<String>::new());
    // Damage the file behind the store's back: garbage over a page past the schema's.
    let path = store.path().to_path_buf();
    drop(store);
    let connection = Connection::open(&path).unwrap();
    connection
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let page_size: u64 = connection
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .unwrap();
    drop(connection);
    let mut bytes = fs::read(&path).unwrap();
    let start = (2 * page_size) as usize;
    assert!(
        bytes.len() > start + 512,
        "the ledger has more than two pages"
    );
    bytes[start..start + 512].fill(0xA5);
    fs::write(&path, bytes).unwrap();
    let store = Store::open_with(&path, &crate::common::options()).unwrap();
    let findings = store.integrity_check().unwrap();
    assert!(!findings.is_empty(), "swapped index roots went unnoticed");
}
