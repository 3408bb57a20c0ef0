//! The scheduler: picks ready tasks, runs up to `concurrency` of them at once, and reports
//! how each ended.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use agent::{Agent, CancellationToken, SessionId};
use session_store::{
    LeaseOwner, MilestoneId, Redactor, SessionFilter, SessionPolicy, SessionStatus, Store, Task,
    TaskFilter, TaskId, TaskStatus,
};
use tokio::task::JoinSet;

use crate::config::RunConfig;
use crate::db::Db;
use crate::error::OrchestratorError;
use crate::event::{RunEvent, RunEvents};
use crate::recovery::{self, Recovered};
use crate::task::{self, TaskOutcome, TaskReport};

/// Which tasks a run considers. Empty means every pending task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only these tasks, when not empty.
    pub tasks: Vec<TaskId>,
    /// Only tasks of this milestone, when set.
    pub milestone: Option<MilestoneId>,
}

impl Selection {
    pub fn all() -> Selection {
        Selection::default()
    }

    fn contains(&self, task: &Task) -> bool {
        (self.tasks.is_empty() || self.tasks.contains(&task.id))
            && (self.milestone.is_none() || task.milestone == self.milestone)
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunReport {
    /// Stale sessions recovery abandoned before the run started.
    pub recovered: Vec<Recovered>,
    /// Every task the run took up, in the order they ended.
    pub tasks: Vec<TaskReport>,
    /// Selected tasks left pending, with why they could not run.
    pub not_run: Vec<(TaskId, String)>,
    /// Whether the run was cancelled before it ran out of work.
    pub cancelled: bool,
}

impl RunReport {
    /// Whether every task the run took up completed, and nothing was left behind.
    pub fn all_completed(&self) -> bool {
        !self.cancelled
            && self.not_run.is_empty()
            && self
                .tasks
                .iter()
                .all(|report| report.outcome == TaskOutcome::Completed)
    }
}

/// Runs tasks through an agent and keeps the ledger.
pub struct Orchestrator {
    inner: Arc<Inner>,
}

/// What every task's loop shares.
pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) agent: Arc<dyn Agent>,
    pub(crate) config: RunConfig,
    /// This process, as named in the leases it takes.
    pub(crate) owner: LeaseOwner,
    pub(crate) events: RunEvents,
    /// The store's redactor: what the loop sends to the agent and reports in events passes
    /// through it, as everything the store writes does.
    pub(crate) redactor: Redactor,
    /// Sessions with an agent call under way in this process: the in-process half of "one
    /// live process per session" (the store's lease is the half across processes).
    pub(crate) live_sessions: Mutex<HashSet<SessionId>>,
}

impl Orchestrator {
    /// An orchestrator over `store` that runs tasks through `agent`.
    ///
    /// The store's redactor (as it is now) also cleans what the orchestrator sends to the
    /// agent (feedback from check output, errors) and every event it reports.
    pub fn new(
        store: Store,
        agent: Arc<dyn Agent>,
        config: RunConfig,
    ) -> Result<Orchestrator, OrchestratorError> {
        validate(&config)?;
        let owner = LeaseOwner::current()?;
        let redactor = store.redactor().clone();
        Ok(Orchestrator {
            inner: Arc::new(Inner {
                db: Db::new(store),
                agent,
                config,
                owner,
                events: RunEvents::none(),
                redactor,
                live_sessions: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Sends the run's events to `events`, redacted.
    pub fn with_events(self, events: RunEvents) -> Orchestrator {
        let inner = Arc::into_inner(self.inner)
            .expect("invariant: nothing else holds the orchestrator before it runs");
        let events = events.redacting(inner.redactor.clone());
        Orchestrator {
            inner: Arc::new(Inner { events, ..inner }),
        }
    }

    /// The ledger this orchestrator writes to.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Abandons sessions whose runner is gone, stops agent processes they left running, and
    /// makes their tasks runnable again. `run` does this first; it is here on its own for
    /// `baton recover`.
    pub async fn recover(&self) -> Result<Vec<Recovered>, OrchestratorError> {
        let recovered = recovery::recover(&self.inner.db).await?;
        for item in &recovered {
            if let Some(session) = &item.session {
                self.inner.events.emit(RunEvent::Recovered {
                    swept: session.clone(),
                    stopped_agent: item.stopped_agent,
                });
            }
        }
        Ok(recovered)
    }

    /// Recovers, then runs the selected ready tasks until none is left or `cancel` fires.
    pub async fn run(
        &self,
        selection: &Selection,
        cancel: CancellationToken,
    ) -> Result<RunReport, OrchestratorError> {
        let mut report = RunReport {
            recovered: self.recover().await?,
            ..RunReport::default()
        };
        let concurrency = self.inner.config.concurrency;
        let mut running: JoinSet<Result<Option<TaskReport>, OrchestratorError>> = JoinSet::new();
        // Ready tasks fetched but not started yet; refilled from the ledger when none of them
        // can start, so a long queue is read once rather than after every task.
        let mut queue: VecDeque<Task> = VecDeque::new();
        let mut in_flight: HashMap<tokio::task::Id, (TaskId, Option<MilestoneId>)> = HashMap::new();
        let mut attempted: HashSet<TaskId> = HashSet::new();
        let mut policies: HashMap<MilestoneId, Option<SessionPolicy>> = HashMap::new();
        let mut failure: Option<OrchestratorError> = None;

        loop {
            if !cancel.is_cancelled() && failure.is_none() && running.len() < concurrency {
                // A failure here stops dispatching but never abandons tasks already running:
                // the loop below still waits for each to close its session and record its end.
                if let Err(err) = self
                    .dispatch(
                        selection,
                        &cancel,
                        &mut queue,
                        &mut running,
                        &mut in_flight,
                        &mut attempted,
                        &mut policies,
                    )
                    .await
                {
                    cancel.cancel();
                    failure.get_or_insert(err);
                }
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            match joined {
                Ok((id, Ok(task_report))) => {
                    in_flight.remove(&id);
                    report.tasks.extend(task_report);
                }
                Ok((id, Err(err))) => {
                    // The ledger failed: stop everything, let running tasks wind down.
                    in_flight.remove(&id);
                    cancel.cancel();
                    failure.get_or_insert(err);
                }
                Err(join_error) => {
                    let Some((task, shared_milestone)) = in_flight.remove(&join_error.id()) else {
                        continue;
                    };
                    let message = panic_message(join_error);
                    match self
                        .fail_after_panic(task, shared_milestone, &message)
                        .await
                    {
                        Ok(task_report) => report.tasks.push(task_report),
                        Err(err) => {
                            cancel.cancel();
                            failure.get_or_insert(err);
                        }
                    }
                }
            }
        }
        if let Some(err) = failure {
            return Err(err);
        }
        report.cancelled = cancel.is_cancelled();
        report.not_run = self.not_run(selection, &attempted).await?;
        Ok(report)
    }

    /// Starts ready tasks of the selection until `concurrency` run. Tasks sharing a milestone
    /// session take turns.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        selection: &Selection,
        cancel: &CancellationToken,
        queue: &mut VecDeque<Task>,
        running: &mut JoinSet<Result<Option<TaskReport>, OrchestratorError>>,
        in_flight: &mut HashMap<tokio::task::Id, (TaskId, Option<MilestoneId>)>,
        attempted: &mut HashSet<TaskId>,
        policies: &mut HashMap<MilestoneId, Option<SessionPolicy>>,
    ) -> Result<(), OrchestratorError> {
        let concurrency = self.inner.config.concurrency;
        let mut waiting = VecDeque::new();
        let mut refilled = false;
        while running.len() < concurrency {
            let Some(task) = queue.pop_front() else {
                // Refill once per dispatch, when everything fetched earlier has started or waits
                // for its milestone: tasks that finished meanwhile may have made others ready.
                if refilled {
                    break;
                }
                refilled = true;
                let ready = self.inner.db.run(|store| store.ready_tasks()).await?;
                queue.extend(ready.into_iter().filter(|task| {
                    selection.contains(task)
                        && !attempted.contains(&task.id)
                        && !waiting.iter().any(|waiting: &Task| waiting.id == task.id)
                }));
                continue;
            };
            if attempted.contains(&task.id) {
                continue;
            }
            let policy = self.policy_of(&task, policies).await?;
            let shared_milestone = task
                .milestone
                .filter(|_| policy == SessionPolicy::Milestone);
            if shared_milestone.is_some()
                && in_flight
                    .values()
                    .any(|(_, busy)| *busy == shared_milestone)
            {
                waiting.push_back(task);
                continue;
            }
            attempted.insert(task.id);
            let handle = running.spawn(task::run_task(
                Arc::clone(&self.inner),
                task.id,
                policy,
                cancel.child_token(),
            ));
            in_flight.insert(handle.id(), (task.id, shared_milestone));
        }
        waiting.append(queue);
        *queue = waiting;
        Ok(())
    }

    /// The session policy a task runs under, most specific first: the task's own, its
    /// milestone's, the run's. A task outside any milestone has nobody to share a session
    /// with, so the milestone policy means the task policy for it.
    async fn policy_of(
        &self,
        task: &Task,
        cache: &mut HashMap<MilestoneId, Option<SessionPolicy>>,
    ) -> Result<SessionPolicy, OrchestratorError> {
        let milestone_policy = match task.milestone {
            None => None,
            Some(milestone) => match cache.get(&milestone) {
                Some(policy) => *policy,
                None => {
                    let policy = self
                        .inner
                        .db
                        .run(move |store| store.milestone(milestone))
                        .await?
                        .policy;
                    cache.insert(milestone, policy);
                    policy
                }
            },
        };
        let policy = task
            .policy
            .or(milestone_policy)
            .unwrap_or(self.inner.config.policy);
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
        let reason = format!("baton's loop for the task panicked: {message}");
        let owner = self.inner.owner.clone();
        let closing = reason.clone();
        let closed = self
            .inner
            .db
            .run(move |store| {
                // The task's own sessions, or, under the milestone policy, the milestone's
                // session it was using (whose row names the task that opened it). Tasks of a
                // milestone take turns in this process, so an open one held here is its.
                let filter = match shared_milestone {
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
                };
                let open = store.sessions(&filter)?;
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
            self.inner.events.emit(RunEvent::SessionClosed {
                task,
                session,
                status: SessionStatus::Failed,
                reason: reason.clone(),
            });
        }
        self.inner.events.emit(RunEvent::TaskFinished {
            task,
            status: TaskStatus::Failed,
            reason: Some(reason.clone()),
        });
        Ok(TaskReport {
            task,
            outcome: TaskOutcome::Failed { reason },
        })
    }

    /// The selected tasks still pending after the run that it never took up, and what they
    /// wait for. (A task the run took up and that is pending again was interrupted; its
    /// report says so.)
    async fn not_run(
        &self,
        selection: &Selection,
        attempted: &HashSet<TaskId>,
    ) -> Result<Vec<(TaskId, String)>, OrchestratorError> {
        let selection = selection.clone();
        let attempted = attempted.clone();
        let left = self
            .inner
            .db
            .run(move |store| {
                let pending = store.tasks(&TaskFilter {
                    status: Some(TaskStatus::Pending),
                    milestone: selection.milestone,
                })?;
                let mut left = Vec::new();
                let never_taken_up =
                    |task: &Task| selection.contains(task) && !attempted.contains(&task.id);
                for task in pending.into_iter().filter(never_taken_up) {
                    let mut waits = Vec::new();
                    for dependency in &task.after {
                        let status = store.task(*dependency)?.status;
                        if status != TaskStatus::Completed {
                            waits.push(format!("task {dependency} ({status})"));
                        }
                    }
                    let why = if waits.is_empty() {
                        String::from("not started: the run stopped first")
                    } else {
                        format!("waits for {}", waits.join(", "))
                    };
                    left.push((task.id, why));
                }
                Ok(left)
            })
            .await?;
        Ok(left)
    }
}

fn validate(config: &RunConfig) -> Result<(), OrchestratorError> {
    let invalid = |field, reason: &str| {
        Err(OrchestratorError::Config {
            field,
            reason: reason.to_owned(),
        })
    };
    if config.concurrency == 0 {
        return invalid("concurrency", "must be at least 1");
    }
    if config.max_turns == Some(0) {
        return invalid("max_turns", "must be at least 1");
    }
    if config.max_turns_cap == 0 {
        return invalid("max_turns_cap", "must be at least 1");
    }
    if !(config.rotation_threshold > 0.0 && config.rotation_threshold <= 1.0) {
        return invalid("rotation_threshold", "must be above 0 and at most 1");
    }
    if config.call_timeout.is_zero()
        || config.verify_timeout.is_zero()
        || config.lease_ttl.is_zero()
    {
        return invalid("timeouts", "must be longer than zero");
    }
    Ok(())
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
