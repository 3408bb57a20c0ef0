//! The scheduler: picks ready tasks, runs up to `concurrency` of them at once, and reports
//! how each ended.

mod scheduler;
mod watch;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use agent::{Agent, CancellationToken};
use session_store::{LeaseOwner, MilestoneId, Store, Task, TaskFilter, TaskId, TaskStatus};

use crate::budget::{Budgets, RunSpend};
use crate::config::RunConfig;
use crate::context::{LiveSessions, RunContext};
use crate::db::Db;
use crate::error::OrchestratorError;
use crate::event::{RunEvent, RunEvents};
use crate::halt::{AgentUnavailable, Halt};
use crate::heartbeat::Heartbeat;
use crate::outage::Outage;
use crate::recovery::{self, Recovered};
use crate::task::{TaskOutcome, TaskReport};
use crate::workspace::Workspaces;

use self::scheduler::Scheduler;

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

    pub(crate) fn contains(&self, task: &Task) -> bool {
        (self.tasks.is_empty() || self.tasks.contains(&task.id))
            && (self.milestone.is_none() || task.milestone == self.milestone)
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunReport {
    /// Stale sessions recovery abandoned before the run started and, in a watching run, while
    /// it looked for work.
    pub recovered: Vec<Recovered>,
    /// Every task the run took up, in the order they ended. A watching run may take a task
    /// up again (a person retried it, say); the task is here once, as it ended last.
    pub tasks: Vec<TaskReport>,
    /// Selected tasks left pending, with why they could not run.
    pub not_run: Vec<(TaskId, String)>,
    /// Whether the run was cancelled before it ran out of work.
    pub cancelled: bool,
    /// The run's budget and what its calls spent.
    pub spend: RunSpend,
    /// Why the run's budget stopped it, when it did: `budget spent: $1.00 of $1.00 (run)`.
    pub budget_stop: Option<String>,
    /// Why the run stopped early because the agent cannot work, when it did: its tasks are
    /// pending, and nothing about them was wrong.
    pub unavailable: Option<AgentUnavailable>,
}

impl RunReport {
    /// Whether every task the run took up completed, and nothing was left behind.
    pub fn all_completed(&self) -> bool {
        !self.cancelled
            && self.budget_stop.is_none()
            && self.unavailable.is_none()
            && self.not_run.is_empty()
            && self
                .tasks
                .iter()
                .all(|report| report.outcome == TaskOutcome::Completed)
    }
}

/// Runs tasks through an agent and keeps the ledger.
pub struct Orchestrator {
    context: Arc<RunContext>,
}

impl Orchestrator {
    /// An orchestrator over `store` that runs tasks through `agent`.
    ///
    /// The redactor the store was opened with also cleans what the orchestrator sends to the
    /// agent (the prompt, with its feedback from check output and errors), what it records
    /// (the agent's answers, check output, reasons: the store takes them only redacted) and
    /// every event it reports.
    pub fn new(
        store: Store,
        agent: Arc<dyn Agent>,
        config: RunConfig,
    ) -> Result<Orchestrator, OrchestratorError> {
        validate(&config)?;
        let owner = LeaseOwner::current()?;
        let redactor = store.redactor().clone();
        Ok(Orchestrator {
            context: Arc::new(RunContext {
                db: Db::new(store),
                agent,
                owner,
                events: RunEvents::none(),
                redactor,
                live_sessions: LiveSessions::default(),
                workspaces: None,
                budgets: Budgets::new(config.budget, config.concurrency),
                halt: Halt::default(),
                outage: Outage::default(),
                config,
            }),
        })
    }

    /// Sends the run's events to `events`, redacted.
    pub fn with_events(self, events: RunEvents) -> Orchestrator {
        let context = Arc::into_inner(self.context)
            .expect("invariant: nothing else holds the orchestrator before it runs");
        let events = events.redacting(context.redactor.clone());
        Orchestrator {
            context: Arc::new(RunContext { events, ..context }),
        }
    }

    /// Gives tasks git worktrees through `workspaces` (isolation `worktree` where a task's
    /// directory is in a repository with a commit; see [`RunConfig::isolation`]). Without
    /// it every task runs in its directory as it is.
    pub fn with_workspaces(self, workspaces: Arc<dyn Workspaces>) -> Orchestrator {
        let context = Arc::into_inner(self.context)
            .expect("invariant: nothing else holds the orchestrator before it runs");
        Orchestrator {
            context: Arc::new(RunContext {
                workspaces: Some(workspaces),
                ..context
            }),
        }
    }

    /// The ledger this orchestrator writes to.
    pub fn db(&self) -> &Db {
        &self.context.db
    }

    /// How long the ledger may stay out of reach before an operation on it gives up
    /// ([`RunConfig::ledger_outage`]); callers reading the ledger after a run wait as long.
    pub fn ledger_outage(&self) -> Duration {
        self.context.config.ledger_outage
    }

    /// Abandons sessions whose runner is gone, stops agent processes they left running, and
    /// makes their tasks runnable again. `run` does this first; it is here on its own for
    /// `baton recover`.
    pub async fn recover(&self) -> Result<Vec<Recovered>, OrchestratorError> {
        recover_reported(&self.context).await
    }

    /// Recovers, then runs the selected ready tasks until none is left or `cancel` fires.
    /// A watching run ([`RunConfig::watch`]) does not stop when none is left: it waits for
    /// more, rescuing what dead runners leave behind, until `cancel` fires (or its budget is
    /// spent, or the agent cannot work).
    pub async fn run(
        &self,
        selection: &Selection,
        cancel: CancellationToken,
    ) -> Result<RunReport, OrchestratorError> {
        // Registered before recovery, so that a run elsewhere sweeping at the same moment
        // sees this one alive from its first step.
        let heartbeat = Heartbeat::start(&self.context).await?;
        let recovered = self.recover().await;
        let scheduled = match recovered {
            Ok(recovered) => {
                // The run's own token: the caller's cancels it, and so does a halt, which
                // leaves the caller's alone.
                let run_cancel = cancel.child_token();
                self.context.halt.arm(run_cancel.clone());
                Scheduler::new(Arc::clone(&self.context), selection, &run_cancel)
                    .run()
                    .await
                    .map(|scheduled| (recovered, scheduled))
            }
            Err(err) => Err(err),
        };
        heartbeat.stop().await;
        let (mut recovered, scheduled) = scheduled?;
        let cancelled = cancel.is_cancelled();
        recovered.extend(scheduled.recovered);
        Ok(RunReport {
            recovered,
            tasks: scheduled.finished,
            not_run: self.not_run(selection, &scheduled.attempted).await?,
            cancelled,
            spend: self.context.budgets.spend(),
            budget_stop: self.context.budgets.run_stopped(),
            unavailable: self.context.halt.cause(),
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
            .context
            .ledger(move |store| {
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

/// Sweeps what dead runners left (see [`recovery::recover`]) and reports each abandoned
/// session as an event.
async fn recover_reported(context: &RunContext) -> Result<Vec<Recovered>, OrchestratorError> {
    let recovered = recovery::recover(&context.db, context.config.lease_ttl).await?;
    for item in &recovered {
        if let Some(session) = &item.session {
            context.events.emit(RunEvent::Recovered {
                swept: session.clone(),
                stopped_agent: item.stopped_agent,
            });
        }
    }
    Ok(recovered)
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
        || config.watch.is_some_and(|interval| interval.is_zero())
    {
        return invalid("timeouts", "must be longer than zero");
    }
    if config.deliver == crate::workspace::DeliverMode::Push && config.remote.trim().is_empty() {
        return invalid("remote", "must name a remote to push to");
    }
    Ok(())
}
