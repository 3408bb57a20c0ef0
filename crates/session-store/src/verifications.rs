//! Verification runs: the commands that decide whether a task's work is done, and what they
//! said.

use std::time::Duration;

use crate::db::{Row, params};
use agent::ExitInfo;
use redact::Redacted;

use crate::error::{Failure, StoreError};
use crate::ids::{TaskId, VerificationId};
use crate::lookup::ensure_task;
use crate::sql::{duration_at, duration_millis, exit_at, exit_columns};
use crate::store::{Batch, Store, Write};
use crate::units::Timestamp;

/// A verification run to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVerification {
    pub task: TaskId,
    /// The iteration whose work was verified, from 1.
    pub iteration: u32,
    pub command: Redacted,
    /// How the command ended; `None` when it could not be started or was stopped.
    pub exit: Option<ExitInfo>,
    /// Whether it was stopped for running past its time limit.
    pub timed_out: bool,
    /// The end of its combined output, as much as the caller kept.
    pub output_tail: Redacted,
    pub duration: Duration,
}

/// A verification run as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub id: VerificationId,
    pub task: TaskId,
    pub iteration: u32,
    pub command: String,
    pub exit: Option<ExitInfo>,
    pub timed_out: bool,
    pub output_tail: String,
    pub duration: Duration,
    pub recorded_at: Timestamp,
}

impl Verification {
    /// Whether the command passed: it exited with code 0 in time.
    pub fn passed(&self) -> bool {
        self.exit == Some(ExitInfo::Code(0)) && !self.timed_out
    }
}

const VERIFICATION_COLUMNS: &str = "id, task_id, iteration, command, exit_code, exit_signal, \
                                    timed_out, output_tail, duration_ms, recorded_at";

impl Store {
    /// Records one verification run of a task. Its command and output come redacted.
    pub fn record_verification(
        &mut self,
        verification: &NewVerification,
    ) -> Result<VerificationId, StoreError> {
        self.write(RECORD_VERIFICATION, |transaction| {
            record(transaction, verification)
        })
    }

    /// The verification runs of a task, oldest first.
    pub fn verifications_for_task(&self, task: TaskId) -> Result<Vec<Verification>, StoreError> {
        self.read("list a task's verifications", |connection| {
            ensure_task(connection, task)?;
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE task_id = ?1 ORDER BY id"
            ))?;
            let verifications = statement
                .query_map([task], verification_from_row)?
                .collect::<crate::db::Result<Vec<_>>>()?;
            Ok(verifications)
        })
    }
}

impl Batch<'_> {
    /// [`Store::record_verification`], as part of the batch.
    pub fn record_verification(
        &mut self,
        verification: &NewVerification,
    ) -> Result<VerificationId, StoreError> {
        self.apply(RECORD_VERIFICATION, |transaction| {
            record(transaction, verification)
        })
    }
}

const RECORD_VERIFICATION: &str = "record a verification";

/// Records one verification run; see [`Store::record_verification`].
fn record(
    transaction: &Write<'_>,
    verification: &NewVerification,
) -> Result<VerificationId, Failure> {
    let (exit_code, exit_signal) = exit_columns(verification.exit);
    ensure_task(transaction, verification.task)?;
    let now = Timestamp::now();
    let id = transaction
        .prepare_cached(
            "INSERT INTO verifications (task_id, iteration, command, exit_code, \
                     exit_signal, timed_out, output_tail, duration_ms, recorded_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
        )?
        .query_row(
            params![
                verification.task,
                verification.iteration,
                verification.command.as_str(),
                exit_code,
                exit_signal,
                verification.timed_out,
                verification.output_tail.as_str(),
                duration_millis(verification.duration),
                now,
            ],
            |row| row.get(0),
        )?;
    let id = VerificationId(id);
    transaction
        .prepare_cached(
            "UPDATE tasks SET updated_at = ?3, \
                     iterations = CASE WHEN iterations > ?2 THEN iterations ELSE ?2 END \
                     WHERE id = ?1",
        )?
        .execute(params![verification.task, verification.iteration, now])?;
    Ok(id)
}

fn verification_from_row(row: &Row<'_>) -> crate::db::Result<Verification> {
    Ok(Verification {
        id: row.get(0)?,
        task: row.get(1)?,
        iteration: row.get(2)?,
        command: row.get(3)?,
        exit: exit_at(row, 4)?,
        timed_out: row.get(6)?,
        output_tail: row.get(7)?,
        duration: duration_at(row, 8)?,
        recorded_at: row.get(9)?,
    })
}
