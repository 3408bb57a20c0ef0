//! The checks: the task's verification commands, run in order after the agent replied. Their
//! records ride on the loop's next write (see the `unwritten` module).

use agent::ExitInfo;
use session_store::NewVerification;

use super::{Stop, TaskLoop};
use crate::event::RunEvent;
use crate::prompt::FailedCheck;
use crate::verify::{self, VerifyError};

impl TaskLoop {
    /// Runs the task's checks in order, stopping at the first that fails, and returns what
    /// failed: nothing when every check passed. The records wait in `self.unwritten`.
    pub(super) async fn run_checks(&mut self, iteration: u32) -> Result<Vec<FailedCheck>, Stop> {
        let timeout = self.context.config.verify_timeout;
        for command in self.task.verify_commands.clone() {
            self.context.events.emit(RunEvent::CheckStarted {
                task: self.task.id,
                iteration,
                command: command.clone(),
            });
            let (db, task) = (self.context.db.clone(), self.task.id);
            let recorded = self.context.redactor.redact(&command);
            let pid = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let seen = std::sync::Arc::clone(&pid);
            // Recorded before the wait, so that recovery can stop a check that outlives a
            // killed Baton (its `sh` does not pass a parent's death on to the command).
            let started = move |leader: u32| async move {
                seen.store(leader, std::sync::atomic::Ordering::Relaxed);
                let _ = db
                    .run(move |store| store.record_check_process(task, leader, &recorded))
                    .await;
            };
            let run = verify::run_check_observed(
                &command,
                &self.task.working_dir,
                timeout,
                &self.cancel,
                started,
            );
            let result = run.await;
            let leader = pid.load(std::sync::atomic::Ordering::Relaxed);
            if leader != 0 {
                self.unwritten.ended_checks.push((task, leader));
            }
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(VerifyError::Cancelled { .. }) => return Err(Stop::Cancelled),
                Err(err) => return Err(Stop::Failed(err.to_string())),
            };
            // The output goes to the ledger, the events and the agent's next prompt; a check
            // that prints a key must not send it to any of them.
            let passed = outcome.passed();
            let output_tail = self.context.redactor.redact_owned(outcome.output_tail);
            self.unwritten.checks.push(NewVerification {
                task: self.task.id,
                iteration,
                command: self.context.redactor.redact(&command),
                exit: match (outcome.timed_out, outcome.exit_code) {
                    (false, Some(code)) => Some(ExitInfo::Code(code)),
                    _ => None,
                },
                timed_out: outcome.timed_out,
                output_tail: output_tail.clone(),
                duration: outcome.duration,
            });
            self.context.events.emit(RunEvent::CheckFinished {
                task: self.task.id,
                iteration,
                command: command.clone(),
                passed,
                duration: outcome.duration,
            });
            if !passed {
                return Ok(vec![FailedCheck {
                    command,
                    exit_code: outcome.exit_code,
                    timed_out: outcome.timed_out,
                    output_tail: output_tail.into_string(),
                }]);
            }
        }
        Ok(Vec::new())
    }
}
