//! Baton's own record of a task's conversation, read back from the ledger to seed a new
//! session when the agent's transcript is lost or too long.

use std::collections::BTreeMap;

use agent::ExitInfo;
use session_store::{CallOutcome, Store, StoreError, TaskId};

use crate::prompt::{FailedCheck, IterationRecord};

/// The task's iterations as the ledger recorded them, oldest first: how each iteration's last
/// agent call ended and which checks failed after it.
pub fn load(store: &Store, task: TaskId) -> Result<Vec<IterationRecord>, StoreError> {
    let mut iterations: BTreeMap<u32, IterationRecord> = BTreeMap::new();
    for call in store.calls_for_task(task)? {
        let record = iterations
            .entry(call.iteration)
            .or_insert_with(|| empty(call.iteration));
        record.outcome = match call.outcome {
            CallOutcome::Success => String::from("success"),
            CallOutcome::Failed(kind) => kind.as_str().to_owned(),
        };
        if call.result_text.is_some() {
            record.result_text = call.result_text;
        }
    }
    for verification in store.verifications_for_task(task)? {
        if verification.passed() {
            continue;
        }
        let record = iterations
            .entry(verification.iteration)
            .or_insert_with(|| empty(verification.iteration));
        record.failed_checks.push(FailedCheck {
            command: verification.command,
            exit_code: match verification.exit {
                Some(ExitInfo::Code(code)) => Some(code),
                _ => None,
            },
            timed_out: verification.timed_out,
            output_tail: verification.output_tail,
        });
    }
    Ok(iterations.into_values().collect())
}

fn empty(iteration: u32) -> IterationRecord {
    IterationRecord {
        iteration,
        outcome: String::from("no agent call recorded"),
        result_text: None,
        failed_checks: Vec::new(),
    }
}
