//! The loop's side of the task's workspace: enter it after the claim (the agent and the
//! checks then run in the worktree), and leave it when the loop stops: commit and deliver on
//! completion, unlock in every case but a lost lease (the session's new holder has it).

use agent::SessionId;
use session_store::TaskStatus;

use super::{Stop, TaskLoop};
use crate::workspace::enter::{self, Refusal};
use crate::workspace::leave;

impl TaskLoop {
    /// Enters the task's workspace; under a worktree, the task's working directory becomes
    /// its subdirectory of the worktree for the rest of the loop.
    pub(super) async fn enter_workspace(&mut self) -> Result<(), Stop> {
        let (events, task, iteration) = (
            self.context.events.clone(),
            self.task.id,
            self.task.iterations.saturating_add(1),
        );
        let announce = move |decision: String| {
            events.emit(crate::event::RunEvent::Decision {
                task,
                iteration,
                decision,
            });
        };
        match enter::enter(&self.context, &self.task, self.policy, &announce).await {
            Ok(Some(entered)) => {
                self.task.working_dir = entered.working_dir.clone();
                self.workspace = Some(entered);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(Refusal::Blocked(reason)) => Err(Stop::Blocked(reason)),
            Err(Refusal::Store(error)) => Err(Stop::from(error)),
        }
    }

    /// Leaves the workspace as `stop` calls for, and returns the stop to settle: a completed
    /// task whose work could not be committed is blocked instead, its work left in place.
    /// Whether the ledger still has the task running: a person may have cancelled it while
    /// it ran, and then its work is neither committed nor delivered into their checkout (it
    /// stays in the worktree, and the finish reports the task as changed by someone else).
    /// Returns the iterations it has used then (the loop's copy of the task counts none).
    async fn still_running(&self) -> Option<u32> {
        let id = self.task.id;
        self.context
            .ledger(move |store| store.task(id))
            .await
            .ok()
            .filter(|task| task.status == TaskStatus::Running)
            .map(|task| task.iterations)
    }

    pub(super) async fn leave_workspace(&mut self, stop: Stop, current: Option<SessionId>) -> Stop {
        let (Some(entered), Some(workspaces)) =
            (self.workspace.clone(), self.context.workspaces.clone())
        else {
            return stop;
        };
        if matches!(stop, Stop::LeaseLost(_) | Stop::Ledger(_)) {
            return stop;
        }
        let mut stop = stop;
        if let Stop::Completed = stop
            && let Some(iterations) = self.still_running().await
        {
            match leave::complete(&self.context, &workspaces, &entered, &self.task, current).await {
                Ok(record) => {
                    if let Some(decision) =
                        leave::push_announcement(&self.context, &entered, &record)
                    {
                        self.emit_decision(iterations, decision);
                    }
                    let id = self.task.id;
                    let written = self
                        .context
                        .ledger(move |store| store.set_task_workspace(id, &record))
                        .await;
                    if let Err(error) = written {
                        stop = Stop::from(error);
                    }
                }
                Err(reason) => stop = Stop::Blocked(reason),
            }
        }
        if let Err(reason) = leave::release(&workspaces, &entered).await {
            self.emit_decision(
                self.task.iterations,
                format!("could not unlock the worktree: {reason}"),
            );
        }
        stop
    }
}
