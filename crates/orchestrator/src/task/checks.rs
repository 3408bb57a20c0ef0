//! The checks: the task's verification commands, run in order after the agent replied, and
//! their records, which ride on the loop's next write.
//!
//! A round's check records are written together, in the commit of whatever the loop writes
//! next: finishing the task when the round decided it, or the lease taken (or the session
//! closed) for the next call. That write follows the last check at once, with no wait in
//! between. The checks before the last wait for the round to end: a crash in the middle of a
//! round's checks loses that unfinished round's records, and the checks run again after the
//! task's next call when it resumes.

use agent::ExitInfo;
use session_store::{Batch, NewVerification, StoreError};

use super::{Stop, TaskLoop};
use crate::event::RunEvent;
use crate::prompt::FailedCheck;
use crate::verify::{self, VerifyError};

impl TaskLoop {
    /// Runs the task's checks in order, stopping at the first that fails, and returns what
    /// failed: nothing when every check passed. The records wait in `self.checks`.
    pub(super) async fn run_checks(&mut self, iteration: u32) -> Result<Vec<FailedCheck>, Stop> {
        let timeout = self.context.config.verify_timeout;
        for command in self.task.verify_commands.clone() {
            self.context.events.emit(RunEvent::CheckStarted {
                task: self.task.id,
                iteration,
                command: command.clone(),
            });
            let run = verify::run_check(&command, &self.task.working_dir, timeout, &self.cancel);
            let mut outcome = match run.await {
                Ok(outcome) => outcome,
                Err(VerifyError::Cancelled { .. }) => return Err(Stop::Cancelled),
                Err(err) => return Err(Stop::Failed(err.to_string())),
            };
            // The output goes to the ledger, the events and the agent's next prompt; a check
            // that prints a key must not send it to any of them.
            self.context
                .redactor
                .redact_in_place(&mut outcome.output_tail);
            self.checks.push(NewVerification {
                task: self.task.id,
                iteration,
                command: command.clone(),
                exit: match (outcome.timed_out, outcome.exit_code) {
                    (false, Some(code)) => Some(ExitInfo::Code(code)),
                    _ => None,
                },
                timed_out: outcome.timed_out,
                output_tail: outcome.output_tail.clone(),
                duration: outcome.duration,
            });
            self.context.events.emit(RunEvent::CheckFinished {
                task: self.task.id,
                iteration,
                command: command.clone(),
                passed: outcome.passed(),
                duration: outcome.duration,
            });
            if !outcome.passed() {
                return Ok(vec![FailedCheck {
                    command,
                    exit_code: outcome.exit_code,
                    timed_out: outcome.timed_out,
                    output_tail: outcome.output_tail,
                }]);
            }
        }
        Ok(Vec::new())
    }

    /// Writes the check records not yet written and then `body`, in one batch: one commit.
    /// The records are forgotten once committed, and kept for the next write when it fails.
    pub(super) async fn write_with_checks<T, F>(
        &mut self,
        operation: &'static str,
        body: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let checks = self.checks.clone();
        let written = self
            .context
            .db
            .run(move |store| {
                store.batch(operation, |batch| {
                    for check in &checks {
                        batch.record_verification(check)?;
                    }
                    body(batch)
                })
            })
            .await?;
        self.checks.clear();
        Ok(written)
    }
}
