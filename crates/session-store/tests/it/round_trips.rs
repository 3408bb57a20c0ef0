//! The round-trip counter: what a PostgreSQL ledger costs in exchanges with its server, and
//! nothing on SQLite, which is in the process.

use session_store::NewTask;

use crate::common::{temp_store, text};

on_both_backends! {
    fn writes_and_reads_count_their_round_trips_on_postgres_only() {
        let (lab, mut store) = temp_store();
        let new = NewTask::new(text("t"), text("p"), lab.path());
        // The first write prepares its statements; the counter is taken after it.
        store.add_task(&new).unwrap();
        let trips = store.count_round_trips();
        let task = store.add_task(&new).unwrap();
        let write = trips.count();
        let read = store.count_round_trips();
        store.task(task).unwrap();
        if store.is_postgres() {
            // At least the BEGIN that takes the write lock, one statement, and the COMMIT.
            assert!(write >= 3, "a write took {write} round trips");
            // BEGIN, a SELECT for each of the task's parts, COMMIT.
            assert!(read.count() >= 3, "a read took {}", read.count());
            assert_eq!(trips.count(), write + read.count(), "every counter sees every trip");
            // Statements are prepared once per connection: a third write costs no more.
            let again = store.count_round_trips();
            store.add_task(&new).unwrap();
            assert_eq!(again.count(), write);
        } else {
            assert_eq!((write, read.count()), (0, 0));
        }
    }
}

/// Round trips a claim with its session may cost on PostgreSQL: the `BEGIN` that takes the
/// ledger's lock shared, the claim (one statement: the task's update, its event, its checks
/// and dependencies), and the session's insert sent with the `COMMIT`.
const CLAIM_BUDGET: u64 = 3;

/// Round trips the batch that ends a one-call task may cost: one. Its `BEGIN` with the
/// task's lock, the fence, the call (its row, and what it adds to the session's and the
/// task's totals), the session's close, the task's finish with its event and the `COMMIT`
/// are sent together, each operation refusing by failing.
const CALL_AND_FINISH_BUDGET: u64 = 1;

/// One iteration of a task's loop, as the orchestrator writes it, held to a budget of round
/// trips, so that a statement more in these paths fails here rather than slowing every
/// runner.
#[test]
fn a_claim_a_call_and_a_finish_keep_to_their_round_trips_on_postgres() {
    crate::common::Backend::Postgres.run(|| {
        let (lab, mut store) = temp_store();
        let owner = session_store::LeaseOwner::current().unwrap();
        // The first iteration prepares every statement; the second is counted.
        let mut counted = Vec::new();
        for seed in 0..2 {
            let task = crate::common::add_task(&mut store, lab.path(), "t");
            let claim = store.count_round_trips();
            let session = crate::common::new_session(task, owner.clone());
            let (claimed, lease) = store
                .claim_batch(
                    task,
                    &owner,
                    Some(session_store::SessionPolicy::Task),
                    "claim a task",
                    |batch, claimed| {
                        let lease = batch.open_session(&session)?;
                        Ok((claimed.task.clone(), lease))
                    },
                )
                .unwrap();
            let claim = claim.count();
            let fence = session_store::Fence {
                task,
                claim_epoch: claimed.claim_epoch,
                session: Some((session.id, lease.epoch)),
            };
            let mut call = crate::common::call(session.id, task, seed);
            call.key = Some(format!("call-{seed}"));
            let finish = store.count_round_trips();
            store
                .task_batch(task, "record a call and finish", |batch| {
                    batch.check_fence(&fence)?;
                    batch.record_agent_call(&call)?;
                    batch.close_session(
                        session.id,
                        session_store::SessionStatus::Completed,
                        None,
                    )?;
                    batch.set_task_status(task, session_store::TaskStatus::Completed, None)
                })
                .unwrap();
            counted.push((claim, finish.count()));
        }
        let (claim, finish) = counted[1];
        assert!(
            claim <= CLAIM_BUDGET,
            "a claim with its session took {claim} round trips (budget {CLAIM_BUDGET})"
        );
        assert!(
            finish <= CALL_AND_FINISH_BUDGET,
            "a call with the task's finish took {finish} round trips (budget \
             {CALL_AND_FINISH_BUDGET})"
        );
    });
}
