//! One task's loop: rounds of an agent call followed by the task's checks, until the loop
//! stops.
//!
//! The loop owns the task's session for as long as it runs. It opens (or reopens) the session
//! and commits its lease before any agent call, passes the session explicitly on every call
//! (`Start` for the first call in it, `Resume` for every later one), records each call whole,
//! and closes the session on every way out.
//!
//! The files follow the loop: `iterations` drives the rounds and decides after each one;
//! `session` opens, leases, reopens, rotates and closes the session; `call` builds the prompt,
//! calls the agent and records the call; `checks` runs the verification commands; `finish`
//! closes the session and moves the task to where the loop left it; `shutdown` tells an agent
//! killed by the signal stopping the run from a crash; `transcript` carries the session's
//! transcript between the agent and the ledger; `unwritten` holds what
//! the next write takes along, so that writes that belong together share one commit. Every
//! step that can end the loop returns a [`Stop`] through `?`.

mod call;
mod checks;
mod finish;
mod iterations;
mod session;
mod shutdown;
mod spend;
mod transcript;
mod unwritten;
mod wording;
mod workspace;

use std::collections::HashSet;
use std::sync::Arc;

use agent::{CancellationToken, SessionId};
use session_store::{Fence, MilestoneId, SessionPolicy, StoreError, Task, TaskId};

use crate::budget::Reservation;
use crate::context::RunContext;
use crate::error::OrchestratorError;
use crate::event::RunEvent;
use crate::prompt::FailedCheck;

use self::session::NewSessionReason;
use self::unwritten::Unwritten;

/// How a task's run ended, as reported to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    pub task: TaskId,
    pub outcome: TaskOutcome,
}

/// The state a run left a task in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    Completed,
    Failed {
        reason: String,
    },
    Blocked {
        reason: String,
    },
    /// The run was cancelled; the task is pending again and resumes its session next time.
    Cancelled,
    /// Another runner holds the task or its session; this run left it alone.
    Skipped {
        reason: String,
    },
}

/// A task the scheduler hands to a loop: which one, in which milestone, under which policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Assignment {
    pub(crate) task: TaskId,
    pub(crate) milestone: Option<MilestoneId>,
    pub(crate) policy: SessionPolicy,
}

/// Claims the assigned task and runs it to an end. `None` when the task could not be
/// claimed: another runner took it first, or it is no longer ready.
pub(crate) async fn run_task(
    context: Arc<RunContext>,
    assignment: Assignment,
    cancel: CancellationToken,
) -> Result<Option<TaskReport>, OrchestratorError> {
    let Some(session::Claim {
        task,
        first,
        budget,
    }) = session::claim(&context, assignment).await?
    else {
        return Ok(None);
    };
    context.events.emit(RunEvent::TaskStarted {
        task: task.id,
        title: task.title.clone(),
    });
    let mut task_loop = TaskLoop {
        max_turns: task.max_turns.or(context.config.max_turns),
        guidance: task.guidance.clone(),
        context,
        task,
        policy: assignment.policy,
        cancel,
        next_session: NewSessionReason::First,
        continue_first: None,
        called: false,
        unwritten: Unwritten::default(),
        workspace: None,
        reservation: None,
        claimed_budget: budget,
        transcripts_checked: HashSet::new(),
        lease: match first {
            session::FirstSession::Opened(id) => Some((id, 1)),
            session::FirstSession::Continue(_) => None,
        },
    };
    // The session the loop holds lives here, outside the loop, so that whatever way the loop
    // stops, `finish` gets it to close.
    let mut session = task_loop.start(first);
    let stop = match task_loop.enter_workspace().await {
        Ok(()) => task_loop.drive(&mut session).await,
        Err(stop) => stop,
    };
    task_loop.finish(stop, session).await.map(Some)
}

/// How a task's loop stops. Every step of the loop returns it with `?`; [`TaskLoop::finish`]
/// turns it into the task's state.
#[derive(Debug)]
enum Stop {
    /// Every check passed (or there were none) after the agent replied.
    Completed,
    Failed(String),
    /// A person's input is needed.
    Blocked(String),
    /// The run was cancelled.
    Cancelled,
    /// The run's budget is spent: the task goes back to `pending`, its session resumable.
    RunBudget(String),
    /// The agent cannot work (a refusal no retry fixes, an outage past its bound): the run
    /// stops, and the task, which did nothing wrong, waits for the next run.
    Halted(String),
    /// Another process took over the session; this run must touch nothing more.
    LeaseLost(String),
    /// The loop itself failed (the ledger, most likely): nothing more can be recorded, so
    /// the run stops.
    Ledger(OrchestratorError),
}

impl From<OrchestratorError> for Stop {
    fn from(error: OrchestratorError) -> Stop {
        Stop::Ledger(error)
    }
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Stop {
        match error {
            // Another runner took the task or its session over: this one touches nothing more.
            StoreError::Fenced { .. } => Stop::LeaseLost(error.to_string()),
            error => Stop::Ledger(error.into()),
        }
    }
}

/// What a task's loop keeps between its steps. The session it holds is not here: the steps
/// borrow it (see [`session::ActiveSession`]), and `run_task` keeps it for `finish`.
struct TaskLoop {
    context: Arc<RunContext>,
    task: Task,
    policy: SessionPolicy,
    cancel: CancellationToken,
    /// Why the next session to open is new, which decides its first prompt.
    next_session: NewSessionReason,
    /// The turn budget of the next call; grows when the agent runs out of turns.
    max_turns: Option<u32>,
    /// A person's guidance not yet delivered to the agent.
    guidance: Option<String>,
    /// Whether this run has recorded an agent call for the task.
    called: bool,
    /// The session to continue when the loop opens its first one, found when the task was
    /// claimed; used once.
    continue_first: Option<SessionId>,
    /// What the loop did and has not written yet, which its next write commits with it.
    unwritten: Unwritten,
    /// The task's worktree, entered at the claim; `None` under isolation `none`.
    workspace: Option<crate::workspace::Entered>,
    /// What the latest call may spend or spent, held until its record is committed.
    reservation: Option<Reservation>,
    /// The task's own budget as its claim read it, in the claim's statement: the first
    /// call's reservation takes it rather than reading it again; used once.
    claimed_budget: Option<session_store::BudgetStatus>,
    /// The session this loop holds the lease of, and that lease's epoch: with the claim's
    /// epoch, what every write of the loop is conditional on ([`Fence`]).
    lease: Option<(SessionId, u64)>,
    /// Sessions whose transcript this claim compared with the ledger's copy, at their first
    /// resume in it.
    transcripts_checked: HashSet<SessionId>,
}

impl TaskLoop {
    /// What this loop's writes are conditional on: its claim on the task, and its lease.
    fn fence(&self) -> Fence {
        Fence {
            task: self.task.id,
            claim_epoch: self.task.claim_epoch,
            session: self.lease,
        }
    }

    /// Reports what the loop decided to do next, in words. The decision itself is the
    /// caller's; this only tells whoever watches the run.
    fn emit_decision(&self, iteration: u32, decision: String) {
        self.context.events.emit(RunEvent::Decision {
            task: self.task.id,
            iteration,
            decision,
        });
    }

    /// The task ran out of iterations: failed, or blocked for a person when so configured.
    fn exhausted(&self, reason: String) -> Stop {
        if self.context.config.escalate_when_exhausted {
            Stop::Blocked(format!(
                "{reason}; a person's guidance is needed (baton task retry {} --message …)",
                self.task.id
            ))
        } else {
            Stop::Failed(reason)
        }
    }
}

/// What the next prompt must say, before it is known which session it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Intent {
    /// Start the task, or continue it after an interruption when it has history.
    Begin,
    /// The checks failed.
    Feedback(Vec<FailedCheck>),
    /// The previous call failed with this error.
    AfterError(String),
    /// The previous call ran out of turns.
    ContinueTurns,
    /// The previous call reached the spending limit Baton gave it, with budget left.
    ContinueBudget,
}
