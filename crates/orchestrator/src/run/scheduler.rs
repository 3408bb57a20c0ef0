//! The scheduler of one run: picks ready tasks of the selection, runs up to `concurrency` of
//! them at once (tasks sharing a milestone session take turns), and collects how each ended,
//! a panic in a task's loop included.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use agent::CancellationToken;
use session_store::{
    MilestoneId, SessionFilter, SessionPolicy, SessionStatus, Task, TaskId, TaskStatus,
};
use tokio::task::{JoinError, JoinSet};

use super::Selection;
use crate::context::RunContext;
use crate::error::OrchestratorError;
use crate::event::RunEvent;
use crate::task::{self, Assignment, TaskOutcome, TaskReport};

/// What a task's loop returns to the scheduler.
type Joined = Result<Option<TaskReport>, OrchestratorError>;

/// One run's scheduling state.
pub(super) struct Scheduler<'run> {
    context: Arc<RunContext>,
    selection: &'run Selection,
    cancel: &'run CancellationToken,
    /// Ready tasks fetched but not started yet; refilled from the ledger when none of them
    /// can start, so a long queue is read once rather than after every task.
    queue: VecDeque<Task>,
    running: JoinSet<Joined>,
    /// The running tasks, and the milestone whose shared session each one uses.
    in_flight: HashMap<tokio::task::Id, (TaskId, Option<MilestoneId>)>,
    /// Every task the run took up, so that none is taken up twice.
    attempted: HashSet<TaskId>,
    /// Milestones' session policies, read once each.
    policies: HashMap<MilestoneId, Option<SessionPolicy>>,
    /// What stopped the run, when something did; running tasks still wind down.
    failure: Option<OrchestratorError>,
    /// How each task the run took up ended, in the order they ended.
    finished: Vec<TaskReport>,
}

/// What the scheduler did.
pub(super) struct Scheduled {
    pub(super) finished: Vec<TaskReport>,
    pub(super) attempted: HashSet<TaskId>,
}

impl<'run> Scheduler<'run> {
    pub(super) fn new(
        context: Arc<RunContext>,
        selection: &'run Selection,
        cancel: &'run CancellationToken,
    ) -> Scheduler<'run> {
        Scheduler {
            context,
            selection,
            cancel,
            queue: VecDeque::new(),
            running: JoinSet::new(),
            in_flight: HashMap::new(),
            attempted: HashSet::new(),
            policies: HashMap::new(),
            failure: None,
            finished: Vec::new(),
        }
    }

    /// Runs ready tasks until none is left or the run is cancelled, then waits for every
    /// running task to record its end.
    pub(super) async fn run(mut self) -> Result<Scheduled, OrchestratorError> {
        let concurrency = self.context.config.concurrency;
        loop {
            if !self.cancel.is_cancelled()
                && self.failure.is_none()
                && self.context.budgets.run_stopped().is_none()
                && self.running.len() < concurrency
            {
                // A failure here stops dispatching but never abandons tasks already running:
                // the loop below still waits for each to close its session and record its end.
                if let Err(err) = self.dispatch().await {
                    self.stop(err);
                }
            }
            let Some(joined) = self.running.join_next_with_id().await else {
                break;
            };
            self.joined(joined).await;
        }
        match self.failure {
            Some(err) => Err(err),
            None => Ok(Scheduled {
                finished: self.finished,
                attempted: self.attempted,
            }),
        }
    }

    /// Stops the run for `err`: nothing more is dispatched, and running tasks wind down.
    fn stop(&mut self, err: OrchestratorError) {
        self.cancel.cancel();
        self.failure.get_or_insert(err);
    }

    /// Takes in how a task's loop ended.
    async fn joined(&mut self, joined: Result<(tokio::task::Id, Joined), JoinError>) {
        match joined {
            Ok((id, Ok(report))) => {
                self.in_flight.remove(&id);
                self.finished.extend(report);
            }
            Ok((id, Err(err))) => {
                // The ledger failed: stop everything, let running tasks wind down.
                self.in_flight.remove(&id);
                self.stop(err);
            }
            Err(join_error) => {
                let Some((task, shared_milestone)) = self.in_flight.remove(&join_error.id()) else {
                    return;
                };
                let message = panic_message(join_error);
                match self
                    .fail_after_panic(task, shared_milestone, &message)
                    .await
                {
                    Ok(report) => self.finished.push(report),
                    Err(err) => self.stop(err),
                }
            }
        }
    }

    /// Starts ready tasks of the selection until `concurrency` run. Tasks sharing a milestone
    /// session take turns.
    async fn dispatch(&mut self) -> Result<(), OrchestratorError> {
        let concurrency = self.context.config.concurrency;
        let mut waiting = VecDeque::new();
        let mut refilled = false;
        while self.running.len() < concurrency {
            let Some(task) = self.queue.pop_front() else {
                // Refill once per dispatch, when everything fetched earlier has started or waits
                // for its milestone: tasks that finished meanwhile may have made others ready.
                if refilled {
                    break;
                }
                refilled = true;
                let ready = self.context.db.run(|store| store.ready_tasks()).await?;
                let (selection, attempted) = (self.selection, &self.attempted);
                self.queue.extend(ready.into_iter().filter(|task| {
                    selection.contains(task)
                        && !attempted.contains(&task.id)
                        && !waiting.iter().any(|waiting: &Task| waiting.id == task.id)
                }));
                continue;
            };
            if self.attempted.contains(&task.id) {
                continue;
            }
            let policy = self.policy_of(&task).await?;
            let shared_milestone = task
                .milestone
                .filter(|_| policy == SessionPolicy::Milestone);
            if shared_milestone.is_some()
                && self
                    .in_flight
                    .values()
                    .any(|(_, busy)| *busy == shared_milestone)
            {
                waiting.push_back(task);
                continue;
            }
            self.attempted.insert(task.id);
            let assignment = Assignment {
                task: task.id,
                milestone: task.milestone,
                policy,
            };
            let handle = self.running.spawn(task::run_task(
                Arc::clone(&self.context),
                assignment,
                self.cancel.child_token(),
            ));
            self.in_flight
                .insert(handle.id(), (task.id, shared_milestone));
        }
        waiting.append(&mut self.queue);
        self.queue = waiting;
        Ok(())
    }

    /// The session policy a task runs under, most specific first: the task's own, its
    /// milestone's, the run's. A task outside any milestone has nobody to share a session
    /// with, so the milestone policy means the task policy for it.
    async fn policy_of(&mut self, task: &Task) -> Result<SessionPolicy, OrchestratorError> {
        let milestone_policy = match task.milestone {
            None => None,
            Some(milestone) => match self.policies.get(&milestone) {
                Some(policy) => *policy,
                None => {
                    let policy = self
                        .context
                        .db
                        .run(move |store| store.milestone(milestone))
                        .await?
                        .policy;
                    self.policies.insert(milestone, policy);
                    policy
                }
            },
        };
        let policy = task
            .policy
            .or(milestone_policy)
            .unwrap_or(self.context.config.policy);
        Ok(match policy {
            SessionPolicy::Milestone if task.milestone.is_none() => SessionPolicy::Task,
            policy => policy,
        })
    }

    /// A task's loop panicked (inside the agent, most likely): close what it left open and
    /// fail the task, so that no session stays open and the run goes on.
    async fn fail_after_panic(
        &self,
        task: TaskId,
        shared_milestone: Option<MilestoneId>,
        message: &str,
    ) -> Result<TaskReport, OrchestratorError> {
        let reason = self
            .context
            .redactor
            .redact_owned(format!("baton's loop for the task panicked: {message}"));
        let owner = self.context.owner.clone();
        let closing = reason.clone();
        let closed = self
            .context
            .db
            .run(move |store| {
                let open = store.sessions(&open_sessions_of(task, shared_milestone))?;
                let mut closed = Vec::new();
                for session in open
                    .into_iter()
                    .filter(|s| s.lease.as_ref().is_some_and(|lease| lease.owner == owner))
                {
                    store.close_session(session.id, SessionStatus::Failed, Some(&closing))?;
                    closed.push(session.id);
                }
                if store.task(task)?.status == TaskStatus::Running {
                    store.set_task_status(task, TaskStatus::Failed, Some(&closing))?;
                }
                Ok(closed)
            })
            .await?;
        for session in closed {
            self.context.events.emit(RunEvent::SessionClosed {
                task,
                session,
                status: SessionStatus::Failed,
                reason: reason.as_str().to_owned(),
            });
        }
        self.context.events.emit(RunEvent::TaskFinished {
            task,
            status: TaskStatus::Failed,
            reason: Some(reason.as_str().to_owned()),
        });
        Ok(TaskReport {
            task,
            outcome: TaskOutcome::Failed {
                reason: reason.into_string(),
            },
        })
    }
}

/// The open sessions a task's loop may have left: the task's own, or, under the milestone
/// policy, the milestone's session it was using (whose row names the task that opened it).
/// Tasks of a milestone take turns in this process, so an open one held here is its.
fn open_sessions_of(task: TaskId, shared_milestone: Option<MilestoneId>) -> SessionFilter {
    match shared_milestone {
        Some(milestone) => SessionFilter {
            milestone: Some(milestone),
            status: Some(SessionStatus::Open),
            ..SessionFilter::default()
        },
        None => SessionFilter {
            task: Some(task),
            status: Some(SessionStatus::Open),
            ..SessionFilter::default()
        },
    }
}

fn panic_message(join_error: tokio::task::JoinError) -> String {
    match join_error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| String::from("a panic without a message")),
        Err(join_error) => join_error.to_string(),
    }
}
