//! Finishing: the loop stopped; close its session and move the task to the state the stop
//! calls for, with what the loop has not written yet (the last round's checks, the last call
//! when nothing ran after it), in one commit.

use redact::Redacted;
use session_store::{SessionPolicy, SessionStatus, StoreError, TaskStatus};

use super::session::ActiveSession;
use super::{Stop, TaskLoop, TaskOutcome, TaskReport};
use crate::error::OrchestratorError;
use crate::event::RunEvent;

/// Where a stop leaves the session and the task.
struct Settlement {
    session_status: SessionStatus,
    session_reason: Redacted,
    task_status: TaskStatus,
    task_reason: Option<Redacted>,
    outcome: TaskOutcome,
}

impl TaskLoop {
    /// Closes `session` (the one the loop held, if any) and moves the task to the state
    /// `stop` calls for.
    pub(super) async fn finish(
        mut self,
        stop: Stop,
        session: Option<ActiveSession>,
    ) -> Result<TaskReport, OrchestratorError> {
        let task = self.task.id;
        let stop = self
            .leave_workspace(stop, session.as_ref().map(|s| s.id))
            .await;
        // Each reason is redacted once, here, on its way to the ledger, the events and the
        // report; one composed from another is redacted whole.
        let redactor = self.context.redactor.clone();
        let settlement = match stop {
            Stop::Ledger(err) => return Err(self.after_ledger_failure(session, err).await),
            // Another process holds the session: leave it to its holder.
            Stop::LeaseLost(reason) => return self.give_back(reason).await,
            Stop::Completed => Settlement {
                session_status: SessionStatus::Completed,
                session_reason: redactor.redact_owned(if self.policy == SessionPolicy::Milestone {
                    format!("task {task} completed; the milestone's next task resumes this session")
                } else {
                    format!("task {task} completed")
                }),
                task_status: TaskStatus::Completed,
                task_reason: None,
                outcome: TaskOutcome::Completed,
            },
            Stop::Failed(reason) => Settlement {
                session_status: SessionStatus::Failed,
                session_reason: redactor.redact_owned(format!("task {task} failed: {reason}")),
                task_status: TaskStatus::Failed,
                outcome: TaskOutcome::Failed {
                    reason: redactor.redact(&reason).into_string(),
                },
                task_reason: Some(redactor.redact_owned(reason)),
            },
            Stop::Blocked(reason) => Settlement {
                session_status: SessionStatus::Failed,
                session_reason: redactor.redact_owned(format!("task {task} blocked: {reason}")),
                task_status: TaskStatus::Blocked,
                outcome: TaskOutcome::Blocked {
                    reason: redactor.redact(&reason).into_string(),
                },
                task_reason: Some(redactor.redact_owned(reason)),
            },
            // The session did nothing wrong: it was stopped before its work ended, and the
            // task continues it next run.
            Stop::Cancelled => Settlement {
                session_status: SessionStatus::Abandoned,
                session_reason: Redacted::trusted("cancelled"),
                task_status: TaskStatus::Pending,
                task_reason: Some(Redacted::trusted(
                    "the run was cancelled; the task resumes its session next run",
                )),
                outcome: TaskOutcome::Cancelled,
            },
            // Like a cancellation: the task was stopped before its work ended, and continues
            // its session in a run with budget to spend.
            Stop::RunBudget(reason) => Settlement {
                session_status: SessionStatus::Abandoned,
                session_reason: redactor.redact_owned(format!("the run stopped: {reason}")),
                task_status: TaskStatus::Pending,
                task_reason: Some(redactor.redact_owned(format!(
                    "the run stopped ({reason}); the task resumes its session next run"
                ))),
                outcome: TaskOutcome::Cancelled,
            },
            Stop::Halted(cause) => Settlement {
                session_status: SessionStatus::Abandoned,
                session_reason: redactor.redact_owned(format!("the run stopped: {cause}")),
                task_status: TaskStatus::Pending,
                task_reason: Some(redactor.redact_owned(format!(
                    "the run stopped because the agent is unavailable ({cause}); the task resumes its session next run"
                ))),
                outcome: TaskOutcome::Cancelled,
            },
        };
        self.settle(session, settlement).await
    }

    /// Closes the session and sets the task's state in one commit, with what is not written
    /// yet. The task's state is set even when the close fails, so that it is not left
    /// running.
    async fn settle(
        &mut self,
        session: Option<ActiveSession>,
        settlement: Settlement,
    ) -> Result<TaskReport, OrchestratorError> {
        let task = self.task.id;
        let session = session.map(|session| session.id);
        let Settlement {
            session_status,
            session_reason,
            task_status,
            task_reason,
            outcome,
        } = settlement;
        let (close_reason, reason) = (session_reason.clone(), task_reason.clone());
        let (closed, moved) = self
            .write_with_unwritten("finish a task", move |batch| {
                let closed = session.map(|id| {
                    match batch.close_session(id, session_status, Some(&close_reason)) {
                        // Something else ended it first (a sweep while this runner stalled).
                        Err(StoreError::CloseConflict { .. }) => Ok(false),
                        other => other.map(|()| true),
                    }
                });
                let moved = batch.set_task_status(task, task_status, reason.as_ref());
                Ok((closed, moved))
            })
            .await?;
        if let (Some(closed), Some(id)) = (closed, session)
            && closed?
        {
            self.context.events.emit(RunEvent::SessionClosed {
                task,
                session: id,
                status: session_status,
                reason: session_reason.into_string(),
            });
        }
        match moved {
            Ok(_) => {}
            // The fence held, so no other runner claimed the task since: already in the state
            // this settlement sets, it was set so by this write's first attempt, which
            // committed before the ledger went away with the answer (a server restarting
            // mid-commit), and the ledger holds what this runner meant to write.
            Err(StoreError::InvalidTransition { from, to, .. }) if from == to => {}
            // A person cancelled it meanwhile: their word stands.
            Err(StoreError::InvalidTransition { .. }) => {
                return Ok(TaskReport {
                    task,
                    outcome: TaskOutcome::Skipped {
                        reason: String::from("its state was changed by someone else while it ran"),
                    },
                });
            }
            Err(err) => return Err(err.into()),
        }
        self.context.events.emit(RunEvent::TaskFinished {
            task,
            status: task_status,
            reason: task_reason.map(Redacted::into_string),
        });
        Ok(TaskReport { task, outcome })
    }

    /// Another process took the session over: give the task back, so that a later run can
    /// take it up, and leave the session to its holder.
    async fn give_back(&mut self, reason: String) -> Result<TaskReport, OrchestratorError> {
        let task = self.task.id;
        let reason = self.context.redactor.redact_owned(reason);
        let requeue = reason.clone();
        let moved = self
            .write_with_unwritten("give a task back", move |batch| {
                Ok(batch.set_task_status(task, TaskStatus::Pending, Some(&requeue)))
            })
            .await;
        match moved {
            // Another runner holds the task now: it is theirs to finish, and this runner
            // wrote nothing.
            Ok(Ok(_) | Err(StoreError::InvalidTransition { .. }))
            | Err(StoreError::Fenced { .. }) => {}
            Ok(Err(err)) | Err(err) => return Err(err.into()),
        }
        Ok(TaskReport {
            task,
            outcome: TaskOutcome::Skipped {
                reason: reason.into_string(),
            },
        })
    }

    /// The loop itself failed (most likely the ledger). Leaves the ledger as truthful as it
    /// can be made — the session closed and the task failed, each as far as it goes — and
    /// returns the error.
    async fn after_ledger_failure(
        &mut self,
        session: Option<ActiveSession>,
        err: OrchestratorError,
    ) -> OrchestratorError {
        let reason = self
            .context
            .redactor
            .redact_owned(format!("baton failed while running the task: {err}"));
        let (task, unwritten) = (self.task.id, std::mem::take(&mut self.unwritten));
        let session = session.map(|session| session.id);
        let closing = reason.clone();
        let fence = self.fence();
        let closed = self
            .context
            .db
            .run(move |store| {
                store.task_batch(task, "fail a task", |batch| {
                    // A runner that lost its claim fails nothing it no longer owns.
                    batch.check_fence(&fence)?;
                    unwritten.write_what_goes(batch);
                    let closed = session.filter(|&id| {
                        batch
                            .close_session(id, SessionStatus::Failed, Some(&closing))
                            .is_ok()
                    });
                    let _ = batch.set_task_status(task, TaskStatus::Failed, Some(&closing));
                    Ok(closed)
                })
            })
            .await;
        if let Ok(Some(id)) = closed {
            self.context.events.emit(RunEvent::SessionClosed {
                task,
                session: id,
                status: SessionStatus::Failed,
                reason: reason.into_string(),
            });
        }
        err
    }
}
