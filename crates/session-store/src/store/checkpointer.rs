//! Checkpoints the write-ahead log on a background thread, so that no write pays for them;
//! for [`Durability::Normal`](crate::Durability::Normal) only.
//!
//! With `synchronous=NORMAL` a commit does not sync; the syncs happen when a checkpoint copies
//! the log back into the database file. SQLite runs that checkpoint inside whichever commit
//! pushes the log past 1000 pages, so one write in a few hundred stalls for the copy and two
//! fsyncs (measured on the cycle benchmark: checkpoints were half its time). Instead, the
//! store's connection never checkpoints (`wal_autocheckpoint=0`) and every
//! [`CHECKPOINT_EVERY`] commits wakes this thread, which runs a `PASSIVE` checkpoint on a
//! connection of its own. A passive checkpoint takes no lock that writers wait for, and one
//! that finds another process checkpointing simply returns. Durability is unchanged: a
//! committed transaction is in the log either way, and the log is synced before it is copied.
//!
//! Under `synchronous=FULL` (the default) every commit syncs the log anyway, and the
//! checkpointer measured slower, not faster: on the cycle benchmark 1,067–1,524 cycles/s with
//! it against 2,207–2,543 without (under `normal`, 10,747–11,612 with it against
//! 6,959–8,319 without). Its syncs compete with the writer's for the disk, and a log that a
//! commit's own checkpoint restarts is rewritten in place, which syncs cheaper than a log that
//! keeps growing. So under `full` the store leaves checkpoints to SQLite.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

/// How many commits the store makes between two wake-ups of the checkpointer. A commit of
/// this crate writes about three pages, so this is near SQLite's own 1000-page threshold.
pub(super) const CHECKPOINT_EVERY: u32 = 300;

/// The background checkpointer of one [`Store`](crate::Store).
#[derive(Debug)]
pub(super) struct Checkpointer {
    /// Dropped first to tell the thread to finish.
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to `path`. `None` when either cannot be
    /// had; the caller then leaves checkpoints to SQLite, as without this.
    pub(super) fn start(path: &Path) -> Option<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags).ok()?;
        // One pending wake-up is enough: a checkpoint covers every commit before it.
        let (wake, wakes) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(String::from("ledger-checkpoint"))
            .spawn(move || run(&connection, &wakes))
            .ok()?;
        Some(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint soon. Never blocks.
    pub(super) fn nudge(&self) {
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                // Full: a checkpoint is already due. Disconnected: the thread is gone, and
                // the log waits for the next open or the last close, which checkpoint too.
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            // The thread only runs checkpoints; if one panicked there is nothing to recover.
            let _ = thread.join();
        }
    }
}

fn run(connection: &Connection, wakes: &Receiver<()>) {
    while wakes.recv().is_ok() {
        // A failed checkpoint loses nothing: the log keeps every commit, and the next
        // checkpoint (or the last connection's close) copies it.
        let _ = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}
