//! The scheduler of one run: picks ready tasks of the selection, runs up to `concurrency` of
//! them at once (tasks sharing a milestone session take turns), and collects how each ended,
//! a panic in a task's loop included. A watching run does not end when nothing is ready: it
//! looks at the ledger again every interval, sweeping what dead runners left first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use agent::CancellationToken;
use session_store::{
    MilestoneId, SessionFilter, SessionPolicy, SessionStatus, Task, TaskId, TaskStatus,
};
use tokio::task::{JoinError, JoinSet};

use super::Selection;
use super::watch::Watching;
use crate::context::RunContext;
use crate::error::OrchestratorError;
use crate::event::RunEvent;
use crate::recovery::Recovered;
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
    /// This runner lost a claim (to another runner, most likely): the queue is stale, and
    /// the next one is read afresh and taken from a random place.
    lost_claim: bool,
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
    /// A watching run's own state; `None` for a run that ends when nothing is ready.
    watching: Option<Watching>,
    /// What the sweeps of a watching run recovered.
    recovered: Vec<Recovered>,
}

/// What the scheduler did.
pub(super) struct Scheduled {
    pub(super) finished: Vec<TaskReport>,
    pub(super) attempted: HashSet<TaskId>,
    pub(super) recovered: Vec<Recovered>,
}

/// What the scheduler does after dispatching.
enum Next {
    /// Takes in how a task's loop ended.
    Joined(Result<(tokio::task::Id, Joined), JoinError>),
    /// A watching run looks at the ledger again.
    Look,
    /// The run was cancelled while it watched: decide again.
    Again,
    /// Nothing runs, and nothing more is started.
    Done,
}

impl<'run> Scheduler<'run> {
    pub(super) fn new(
        context: Arc<RunContext>,
        selection: &'run Selection,
        cancel: &'run CancellationToken,
    ) -> Scheduler<'run> {
        let watching = context
            .config
            .watch
            .map(|interval| Watching::new(interval, context.config.lease_ttl));
        Scheduler {
            context,
            selection,
            cancel,
            queue: VecDeque::new(),
            lost_claim: false,
            running: JoinSet::new(),
            in_flight: HashMap::new(),
            attempted: HashSet::new(),
            policies: HashMap::new(),
            failure: None,
            finished: Vec::new(),
            watching,
            recovered: Vec::new(),
        }
    }

    /// Runs ready tasks until none is left (a watching run: until it is stopped) or the run
    /// is cancelled, then waits for every running task to record its end.
    pub(super) async fn run(mut self) -> Result<Scheduled, OrchestratorError> {
        let concurrency = self.context.config.concurrency;
        loop {
            if self.may_start() && self.running.len() < concurrency {
                // A failure here stops dispatching but never abandons tasks already running:
                // the loop below still waits for each to close its session and record its end.
                if let Err(err) = self.dispatch().await {
                    self.stop(err);
                }
            }
            match self.next().await {
                Next::Joined(joined) => self.joined(joined).await,
                Next::Look => {
                    if let Err(err) = self.sweep().await {
                        self.stop(err);
                    }
                }
                Next::Again => {}
                Next::Done => break,
            }
        }
        match self.failure {
            Some(err) => Err(err),
            None => Ok(Scheduled {
                finished: self.finished,
                attempted: self.attempted,
                recovered: self.recovered,
            }),
        }
    }

    /// Whether the run may start more tasks: it is not cancelled (by a person or a halt),
    /// nothing failed, and its budget is not spent.
    fn may_start(&self) -> bool {
        !self.cancel.is_cancelled()
            && self.failure.is_none()
            && self.context.budgets.run_stopped().is_none()
    }

    /// Waits for what comes next: a task's loop ending; for a watching run that may start
    /// more, also its next look at the ledger (when it has room) and its cancellation.
    async fn next(&mut self) -> Next {
        let may_start = self.may_start();
        let next_look = match &mut self.watching {
            Some(watching) if may_start => {
                if self.running.is_empty() && watching.went_idle() {
                    self.context.events.emit(RunEvent::Waiting);
                }
                watching.next_look()
            }
            _ => {
                return match self.running.join_next_with_id().await {
                    Some(joined) => Next::Joined(joined),
                    None => Next::Done,
                };
            }
        };
        let room = self.running.len() < self.context.config.concurrency;
        tokio::select! {
            Some(joined) = self.running.join_next_with_id() => Next::Joined(joined),
            () = tokio::time::sleep_until(next_look), if room => Next::Look,
            () = self.cancel.cancelled() => Next::Again,
        }
    }

    /// A watching run's look at the ledger: keeps its own leases fresh, then sweeps what dead
    /// runners left, so that their tasks are ready for the dispatch that follows.
    async fn sweep(&mut self) -> Result<(), OrchestratorError> {
        if let Some(watching) = &mut self.watching {
            watching.looked();
        }
        super::watch::keep_own_leases(&self.context).await?;
        let recovered = super::recover_reported(&self.context).await?;
        self.recovered.extend(recovered);
        Ok(())
    }

    /// Whether the run may take `task` up now. A run that ends takes each task up once; a
    /// watching run takes a task up again once its loop has ended and it has rested (see
    /// [`Watching`]), should it be ready again.
    fn may_take(&self, task: TaskId) -> bool {
        match &self.watching {
            None => !self.attempted.contains(&task),
            Some(watching) => {
                watching.rested(task) && !self.in_flight.values().any(|(id, _)| *id == task)
            }
        }
    }

    /// Keeps how a task ended: a watching run keeps only the latest end of a task it took
    /// up more than once.
    fn ended(&mut self, task: TaskId, report: Option<TaskReport>) {
        if report.is_none() {
            // What this runner fetched, other runners are taking: read the queue again.
            self.lost_claim = true;
            self.queue.clear();
        }
        if let Some(watching) = &mut self.watching {
            watching.ended(task, report.as_ref().map(|report| &report.outcome));
            self.finished.retain(|earlier| earlier.task != task);
        }
        self.finished.extend(report);
    }

    /// After a claim this runner lost, takes the queue read afresh from a place drawn at
    /// random. Runners over one ledger read the ready tasks in the same order; without this
    /// they would all go for the same next task, one would win, and the rest would lose again,
    /// task after task (each loss a read, a `BEGIN`, a check and a rollback). A runner alone
    /// never loses a claim to another, so it keeps the queue's order.
    fn spread(&mut self) {
        use std::hash::{BuildHasher, Hasher};
        if !std::mem::take(&mut self.lost_claim) || self.queue.len() < 2 {
            return;
        }
        // Every `RandomState` is keyed afresh: a random number without another dependency.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let places = usize::try_from(random % self.queue.len() as u64).unwrap_or(0);
        self.queue.rotate_left(places);
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
                if let Some((task, _)) = self.in_flight.remove(&id) {
                    self.ended(task, report);
                }
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
                    Ok(report) => self.ended(task, Some(report)),
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
                let ready = self.context.ledger(|store| store.ready_tasks()).await?;
                let fresh: Vec<Task> = ready
                    .into_iter()
                    .filter(|task| {
                        self.selection.contains(task)
                            && self.may_take(task.id)
                            && !waiting.iter().any(|waiting: &Task| waiting.id == task.id)
                    })
                    .collect();
                self.queue.extend(fresh);
                self.spread();
                continue;
            };
            if !self.may_take(task.id) {
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
            if let Some(watching) = &mut self.watching {
                watching.started();
            }
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
                        .ledger(move |store| store.milestone(milestone))
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
