//! What the loop has done but not written yet, and the one way the loop writes: together with
//! it, in one commit.
//!
//! Two kinds of record wait for the loop's next write. A round's check records: that write
//! follows the last check at once (the task finished, or the lease taken or the session closed
//! for the next call); the checks before the last wait for the round to end, so a crash in the
//! middle of a round's checks loses that unfinished round's records, and the checks run again
//! after the task's next call when it resumes. And an agent call whose answer ends the task
//! with nothing run in between (it replied, and the task has no checks): it is written with
//! the task's finish. A call after which anything runs — checks, a wait before a retry — is
//! written at once, so that no call the agent paid for can be lost while Baton waits.

use std::sync::Arc;
use std::time::Duration;

use agent::Transcript;

use session_store::{Batch, LeaseOwner, NewAgentCall, NewVerification, StoreError, TaskId};

use super::TaskLoop;
use crate::event::RunEvent;

/// The loop's records not written yet.
#[derive(Debug, Clone, Default)]
pub(super) struct Unwritten {
    /// The last call, when its answer ended the task at once.
    pub(super) call: Option<CallRecord>,
    /// The last round's checks, in the order they ran.
    pub(super) checks: Vec<NewVerification>,
    /// Check processes recorded as running that have ended, to forget.
    pub(super) ended_checks: Vec<(TaskId, u32)>,
}

/// An agent call's record with what it consumed.
#[derive(Debug, Clone)]
pub(super) struct CallRecord {
    pub(super) record: NewAgentCall,
    /// The copy of the session's transcript taken after the call, when transcripts are
    /// mirrored. Shared: the unwritten records are cloned for every write that takes them.
    pub(super) transcript: Option<Arc<Transcript>>,
    /// Whether its prompt delivered the task's guidance, which is then cleared.
    pub(super) delivered_guidance: bool,
    /// Renew the session's lease for this owner, so that what follows the call starts with
    /// all of it; `None` when the session closes in the same commit.
    pub(super) renew: Option<(LeaseOwner, Duration)>,
    /// What the run is told once the call is written.
    pub(super) finished: RunEvent,
}

impl Unwritten {
    /// Writes everything in `batch`: the call (with what it consumed), then the checks.
    fn write(&self, batch: &mut Batch<'_>) -> Result<(), StoreError> {
        if let Some(call) = &self.call {
            call.write(batch)?;
        }
        for check in &self.checks {
            batch.record_verification(check)?;
        }
        for &(task, pid) in &self.ended_checks {
            batch.clear_check_process(task, pid)?;
        }
        Ok(())
    }

    /// Writes what it can in `batch`, ignoring what fails: for the way out after the ledger
    /// failed, when whatever still goes in makes the ledger truer.
    pub(super) fn write_what_goes(&self, batch: &mut Batch<'_>) {
        if let Some(call) = &self.call {
            let _ = call.write(batch);
        }
        for check in &self.checks {
            let _ = batch.record_verification(check);
        }
        for &(task, pid) in &self.ended_checks {
            let _ = batch.clear_check_process(task, pid);
        }
    }
}

impl CallRecord {
    fn write(&self, batch: &mut Batch<'_>) -> Result<(), StoreError> {
        batch.record_agent_call(&self.record)?;
        if let Some(transcript) = &self.transcript {
            // The copy is a convenience for another host, never a reason to lose the call's
            // record: refused, it leaves the previous copy (a batch's operations refuse
            // before they write) and the batch goes on.
            let _ = batch.save_session_transcript(self.record.session, transcript);
        }
        if self.delivered_guidance {
            batch.set_task_guidance(self.record.task, None)?;
        }
        let Some((owner, ttl)) = &self.renew else {
            return Ok(());
        };
        // A renewal refused here is not this write's to act on: the lease is taken again
        // before the next call, which finds out then.
        match batch.renew_lease(self.record.session, owner, *ttl) {
            Ok(_)
            | Err(
                StoreError::LeaseHeld { .. }
                | StoreError::LeaseNotHeld { .. }
                | StoreError::SessionClosed { .. },
            ) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

impl TaskLoop {
    /// Writes what is not written yet and then `body`, in one batch: one commit. What was
    /// unwritten is forgotten once committed (and a call's event sent), and kept for the next
    /// write when the write fails.
    pub(super) async fn write_with_unwritten<T, F>(
        &mut self,
        operation: &'static str,
        body: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(&mut Batch<'_>) -> Result<T, StoreError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        let (unwritten, fence) = (self.unwritten.clone(), self.fence());
        let (events, task) = (self.context.events.clone(), self.task.id);
        let iteration = self.task.iterations.saturating_add(1);
        let outage = self.context.config.ledger_outage;
        // While the database is away the loop waits here: no new call starts in the session
        // before what the last one did is written.
        let written = self
            .context
            .db
            .run_retrying(
                outage,
                move |store| {
                    store.task_batch(task, operation, |batch| {
                        // Nothing of the batch is written once another runner took over.
                        batch.check_fence(&fence)?;
                        unwritten.write(batch)?;
                        body(batch)
                    })
                },
                |err| {
                    events.emit(RunEvent::Decision {
                        task,
                        iteration,
                        decision: format!(
                            "the ledger cannot be reached ({err}); trying again for up to {}",
                            super::wording::in_words(outage)
                        ),
                    });
                },
            )
            .await?;
        if let Some(call) = std::mem::take(&mut self.unwritten).call {
            self.context.events.emit(call.finished);
        }
        Ok(written)
    }
}
