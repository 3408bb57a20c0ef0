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
