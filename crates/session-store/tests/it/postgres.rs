//! What only a PostgreSQL ledger has: its schema version lives in a table, and the database
//! may hold other applications' tables.

use session_store::{Store, StoreError};

use crate::common::{Backend, Lab, options, raw_text};

#[test]
fn a_postgres_ledger_from_a_newer_build_is_refused_and_left_alone() {
    Backend::Postgres.run(|| {
        let lab = Lab::new().unwrap();
        drop(lab.open());
        raw_text(
            lab.location(),
            "UPDATE baton_ledger SET schema_version = 999",
        )
        .unwrap();
        let refused = Store::open_with(lab.location(), &options()).unwrap_err();
        assert!(
            matches!(refused, StoreError::NewerSchema { found: 999, .. }),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("upgrade baton"), "{refused}");
        assert_eq!(
            raw_text(
                lab.location(),
                "SELECT CAST(schema_version AS TEXT) FROM baton_ledger"
            )
            .unwrap(),
            "999"
        );
    });
}

#[test]
fn another_applications_tasks_table_is_refused() {
    Backend::Postgres.run(|| {
        let lab = Lab::new().unwrap();
        raw_text(lab.location(), "CREATE TABLE tasks (id BIGINT, what TEXT)").unwrap();
        let refused = Store::open_with(lab.location(), &options()).unwrap_err();
        assert!(
            matches!(refused, StoreError::ForeignTables { .. }),
            "{refused:?}"
        );
        // Nothing of the ledger was made beside it.
        assert_eq!(
            raw_text(
                lab.location(),
                "SELECT CAST(to_regclass('baton_ledger') IS NULL AS TEXT)"
            )
            .unwrap(),
            "true"
        );
    });
}
