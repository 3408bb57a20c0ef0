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

/// A second store on the lab's ledger that waits at most 200 ms for a lock.
fn impatient(lab: &Lab) -> Store {
    let options = session_store::StoreOptions {
        busy_timeout: std::time::Duration::from_millis(200),
        ..options()
    };
    Store::open_with(lab.location(), &options).unwrap()
}

/// Batches of different tasks hold different locks and run side by side; a write of the whole
/// ledger waits for them (here past its busy timeout), and so does a batch of the same task.
#[test]
fn batches_of_different_tasks_run_side_by_side_and_the_ledger_waits_for_them() {
    Backend::Postgres.run(|| {
        let lab = Lab::new().unwrap();
        let mut first = lab.open();
        let one = crate::common::add_task(&mut first, lab.path(), "one");
        let two = crate::common::add_task(&mut first, lab.path(), "two");
        let mut second = impatient(&lab);
        let guidance = crate::common::text("g");
        let (beside, same_task, whole) = first
            .task_batch(one, "hold task one", |batch| {
                batch.set_task_guidance(one, Some(&guidance))?;
                let beside = second.task_batch(two, "write task two", |batch| {
                    batch.set_task_guidance(two, Some(&guidance))
                });
                let same_task = second.task_batch(one, "write task one", |batch| {
                    batch.set_task_guidance(one, None)
                });
                let whole = second.batch("write the ledger", |batch| {
                    batch.set_task_guidance(two, None)
                });
                Ok((beside, same_task, whole))
            })
            .unwrap();
        assert!(beside.is_ok(), "{beside:?}");
        assert!(
            matches!(same_task, Err(StoreError::Busy { .. })),
            "{same_task:?}"
        );
        assert!(matches!(whole, Err(StoreError::Busy { .. })), "{whole:?}");
        assert_eq!(first.task(two).unwrap().guidance.as_deref(), Some("g"));
    });
}

/// Two tasks of one milestone may share a session, so their batches take the milestone's
/// lock, found from the task's row: one waits for the other.
#[test]
fn batches_of_two_tasks_of_one_milestone_wait_for_each_other() {
    Backend::Postgres.run(|| {
        let lab = Lab::new().unwrap();
        let mut first = lab.open();
        let milestone = crate::common::add_milestone(&mut first, "m");
        let mut in_milestone = || {
            let mut task = session_store::NewTask::new(
                crate::common::text("t"),
                crate::common::text("do t"),
                lab.path(),
            );
            task.milestone = Some(milestone);
            first.add_task(&task).unwrap()
        };
        let (one, two) = (in_milestone(), in_milestone());
        let mut second = impatient(&lab);
        let guidance = crate::common::text("g");
        let other = first
            .task_batch(one, "hold task one", |batch| {
                batch.set_task_guidance(one, Some(&guidance))?;
                Ok(second.task_batch(two, "write task two", |batch| {
                    batch.set_task_guidance(two, Some(&guidance))
                }))
            })
            .unwrap();
        assert!(matches!(other, Err(StoreError::Busy { .. })), "{other:?}");
        assert_eq!(first.task(two).unwrap().guidance, None);
    });
}

/// A claim skips a task another writer holds instead of waiting for it, as a queue's claim
/// skips a locked row: refused at once with `ClaimTaken`, the task left as it was, while a
/// task of its own is claimed beside the writer; and once the writer is done, the claim goes
/// through. A claim that waited would end in `Busy` at its busy timeout instead.
#[test]
fn a_claim_skips_a_task_another_writer_holds_without_waiting() {
    Backend::Postgres.run(|| {
        let lab = Lab::new().unwrap();
        let mut first = lab.open();
        let one = crate::common::add_task(&mut first, lab.path(), "one");
        let two = crate::common::add_task(&mut first, lab.path(), "two");
        let mut second = impatient(&lab);
        let owner = session_store::LeaseOwner::current().unwrap();
        let guidance = crate::common::text("g");
        let (held, beside) = first
            .task_batch(one, "hold task one", |batch| {
                batch.set_task_guidance(one, Some(&guidance))?;
                let held = second.claim_batch(one, &owner, None, "claim task one", |_, claimed| {
                    Ok(claimed.task.clone())
                });
                let beside =
                    second.claim_batch(two, &owner, None, "claim task two", |_, claimed| {
                        Ok(claimed.task.clone())
                    });
                Ok((held, beside))
            })
            .unwrap();
        assert!(
            matches!(held, Err(StoreError::ClaimTaken { task }) if task == one),
            "{held:?}"
        );
        assert_eq!(beside.unwrap().status, session_store::TaskStatus::Running);
        let claimed = second
            .claim_batch(one, &owner, None, "claim task one", |_, claimed| {
                Ok(claimed.task.clone())
            })
            .unwrap();
        assert_eq!(claimed.status, session_store::TaskStatus::Running);
        assert_eq!(claimed.guidance.as_deref(), Some("g"));
        assert_eq!(claimed.runner.as_ref(), Some(&owner));
    });
}
