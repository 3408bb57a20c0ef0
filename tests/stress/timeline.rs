//! What a stress run saw as it happened: the orchestrator's events and every agent call as
//! the agent saw it, stamped on one clock, and the orchestrator's overhead per call read
//! from them.
//!
//! The [`Witness`] sits between the orchestrator and the agent. When a call is handed over
//! it reads the call's session through a connection of its own, which sees only committed
//! rows, so "the session was committed before the call started" is observed, not inferred.
//!
//! **Overhead per call.** A task's time from `TaskStarted` (right after it is claimed) to
//! `TaskFinished` is split into agent time (from the hand-over of a call to the agent until
//! the agent returns, as the witness sees it), verification time (each command's duration,
//! as the verification runner measured it), deliberate waits (the back-off before retrying a
//! transient failure: from the retry decision to the next `CallStarted`), and the rest, which
//! is the orchestrator's own work: claiming, opening and closing sessions, building prompts,
//! recording calls and verifications, scheduling, and waiting for the ledger. Each call's
//! sample is the rest between the previous call's return (or the task's start) and its
//! hand-over; the last call of a task also gets the rest after it, until the task finishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use agent::{
    Agent, AgentCall, AgentError, AgentInfo, AgentReply, CancellationToken, ErrorKind, EventSink,
    PlanKind, SessionId, Usage,
};
use orchestrator::{RunEvent, RunEvents};
use session_store::{CallOutcome, SessionStatus, Store, TaskId};

/// One thing that happened, on the run's clock.
#[derive(Debug, Clone)]
pub enum Mark {
    /// An orchestrator event (progress events of the agent are left out).
    Run(RunEvent),
    /// The orchestrator handed a call to the agent; `seen` is what the witness's own
    /// connection found in the ledger for the call's session at that moment.
    Handover {
        session: SessionId,
        plan: PlanKind,
        seen: Seen,
    },
    /// The agent returned from a call.
    Returned {
        session: SessionId,
        /// The session id the agent said it used, when it said.
        reported: Option<SessionId>,
        outcome: CallOutcome,
        usage: Usage,
        cost_usd: f64,
    },
}

/// What the ledger held for a session when its call was handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Open,
    Closed(SessionStatus),
    Missing,
    /// The ledger could not be read.
    Unreadable(String),
}

/// Every mark of a run, in the order they were recorded, each stamped with the moment it
/// happened (for a hand-over, the moment before the witness's look-up). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    marks: Arc<Mutex<Vec<(Instant, Mark)>>>,
}

impl Timeline {
    /// Stamps and keeps `mark`. The time is taken under the lock, so that marks recorded
    /// this way are in the order of their times.
    pub fn push(&self, mark: Mark) {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        marks.push((Instant::now(), mark));
    }

    /// Keeps `mark`, stamped `at`.
    fn push_at(&self, at: Instant, mark: Mark) {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        marks.push((at, mark));
    }

    /// The run's events go here.
    pub fn run_events(&self) -> RunEvents {
        let timeline = self.clone();
        RunEvents::new(move |event| {
            if !matches!(event, RunEvent::Agent { .. }) {
                timeline.push(Mark::Run(event));
            }
        })
    }

    pub fn marks(&self) -> Vec<(Instant, Mark)> {
        self.marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// An agent that watches another: it checks the ledger at each hand-over and marks the
/// timeline, and changes nothing of the call or its result.
pub struct Witness {
    agent: Arc<dyn Agent>,
    /// Shared with the blocking thread each look-up runs on.
    ledger: Arc<Mutex<Store>>,
    timeline: Timeline,
}

impl Witness {
    /// Watches `agent`, reading the ledger through `ledger`, which must be a connection of
    /// its own (not the orchestrator's).
    pub fn new(agent: Arc<dyn Agent>, ledger: Store, timeline: Timeline) -> Witness {
        Witness {
            agent,
            ledger: Arc::new(Mutex::new(ledger)),
            timeline,
        }
    }

    /// Reads the session from a blocking thread, as the orchestrator reads its ledger: a
    /// PostgreSQL connection blocks on a runtime of its own, which it cannot start on a thread
    /// that drives this one.
    async fn look_up(&self, session: SessionId) -> Seen {
        let ledger = Arc::clone(&self.ledger);
        let read = tokio::task::spawn_blocking(move || {
            let ledger = ledger.lock().unwrap_or_else(PoisonError::into_inner);
            match ledger.session(session) {
                Ok(found) if found.status == SessionStatus::Open => Seen::Open,
                Ok(found) => Seen::Closed(found.status),
                Err(session_store::StoreError::NotFound(_)) => Seen::Missing,
                Err(err) => Seen::Unreadable(err.to_string()),
            }
        });
        read.await
            .unwrap_or_else(|join| Seen::Unreadable(format!("the look-up failed: {join}")))
    }
}

#[async_trait::async_trait]
impl Agent for Witness {
    async fn call(
        &self,
        call: AgentCall,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<AgentReply, AgentError> {
        let session = call.plan.session_id();
        let handed_over = Instant::now();
        let seen = self.look_up(session).await;
        // Stamped with the moment of the hand-over, before the look-up, so that the witness's
        // own reading counts as agent time, not as the orchestrator's.
        self.timeline.push_at(
            handed_over,
            Mark::Handover {
                session,
                plan: call.plan.kind(),
                seen,
            },
        );
        let result = self.agent.call(call, events, cancel).await;
        let reply = match &result {
            Ok(reply) => Some(reply),
            Err(error) => error.reply(),
        };
        self.timeline.push(Mark::Returned {
            session,
            reported: reply.map(|reply| reply.session_id),
            outcome: match &result {
                Ok(_) => CallOutcome::Success,
                Err(error) => CallOutcome::Failed(error.kind()),
            },
            usage: match &result {
                Ok(reply) => reply.usage,
                Err(error) => error.usage_spent(),
            },
            cost_usd: reply.map_or(0.0, |reply| reply.cost_usd),
        });
        result
    }

    async fn probe(&self) -> Result<AgentInfo, AgentError> {
        self.agent.probe().await
    }
}

/// The orchestrator's overhead, one sample per agent call (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overhead {
    pub samples: Vec<Duration>,
    /// Agent time summed over every call.
    pub agent_time: Duration,
    /// Verification time summed over every check.
    pub check_time: Duration,
}

impl Overhead {
    /// The `percent`-th percentile (nearest rank), or zero with no samples.
    pub fn percentile(&self, percent: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn mean(&self) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        self.samples.iter().sum::<Duration>() / self.samples.len() as u32
    }

    pub fn total(&self) -> Duration {
        self.samples.iter().sum()
    }
}

/// Where one task's loop stands while the marks are read.
#[derive(Default)]
struct TaskClock {
    /// The end of the last stretch attributed: the task's start or the last call's return.
    since: Option<Instant>,
    /// Verification time since then.
    checks: Duration,
    /// When the last call failed transiently: the retry decision, which the wait follows.
    wait_from: Option<Instant>,
    last_was_transient: bool,
    call_started: Option<Instant>,
    /// The index of this task's latest sample.
    last_sample: Option<usize>,
}

/// Reads the overhead per call from a run's marks.
pub fn overhead(marks: &[(Instant, Mark)]) -> Overhead {
    let mut result = Overhead::default();
    let mut clocks: HashMap<TaskId, TaskClock> = HashMap::new();
    // The task whose `CallStarted` precedes a session's hand-over, and the task of each call
    // under way. A session has one call under way at most, so the session names the call.
    let mut starting: HashMap<SessionId, TaskId> = HashMap::new();
    let mut handed: HashMap<SessionId, (TaskId, Instant)> = HashMap::new();
    for (at, mark) in marks {
        let at = *at;
        match mark {
            Mark::Run(RunEvent::TaskStarted { task, .. }) => {
                clocks.insert(
                    *task,
                    TaskClock {
                        since: Some(at),
                        ..TaskClock::default()
                    },
                );
            }
            Mark::Run(RunEvent::CallStarted { task, session, .. }) => {
                starting.insert(*session, *task);
                clocks.entry(*task).or_default().call_started = Some(at);
            }
            Mark::Run(RunEvent::CallFinished { task, outcome, .. }) => {
                let clock = clocks.entry(*task).or_default();
                clock.last_was_transient = matches!(
                    outcome,
                    CallOutcome::Failed(ErrorKind::Api | ErrorKind::RateLimited)
                );
            }
            Mark::Run(RunEvent::Decision { task, .. }) => {
                let clock = clocks.entry(*task).or_default();
                if clock.last_was_transient {
                    clock.wait_from = Some(at);
                }
            }
            Mark::Run(RunEvent::CheckFinished { task, duration, .. }) => {
                clocks.entry(*task).or_default().checks += *duration;
                result.check_time += *duration;
            }
            Mark::Handover { session, .. } => {
                let Some(task) = starting.remove(session) else {
                    continue;
                };
                handed.insert(*session, (task, at));
                let clock = clocks.entry(task).or_default();
                let Some(since) = clock.since else {
                    continue;
                };
                let mut stretch = at.saturating_duration_since(since);
                if let (Some(wait_from), Some(call_started)) =
                    (clock.wait_from.take(), clock.call_started)
                {
                    stretch =
                        stretch.saturating_sub(call_started.saturating_duration_since(wait_from));
                }
                stretch = stretch.saturating_sub(std::mem::take(&mut clock.checks));
                clock.last_sample = Some(result.samples.len());
                result.samples.push(stretch);
            }
            Mark::Returned { session, .. } => {
                let Some((task, handed_at)) = handed.remove(session) else {
                    continue;
                };
                result.agent_time += at.saturating_duration_since(handed_at);
                let clock = clocks.entry(task).or_default();
                clock.since = Some(at);
                clock.checks = Duration::ZERO;
                clock.last_was_transient = false;
            }
            Mark::Run(RunEvent::TaskFinished { task, .. }) => {
                let Some(clock) = clocks.remove(task) else {
                    continue;
                };
                if let (Some(since), Some(index)) = (clock.since, clock.last_sample) {
                    let tail = at
                        .saturating_duration_since(since)
                        .saturating_sub(clock.checks);
                    result.samples[index] += tail;
                }
            }
            Mark::Run(_) => {}
        }
    }
    result
}

/// How long, between `start` and `end`, no task was under way (from `TaskStarted` to
/// `TaskFinished`): the scheduler's own time, looking for ready tasks and claiming them, plus
/// the run's start (recovery) and end.
pub fn outside_tasks(marks: &[(Instant, Mark)], start: Instant, end: Instant) -> Duration {
    let mut running = 0usize;
    let mut idle = Duration::ZERO;
    let mut idle_since = Some(start);
    for (at, mark) in marks {
        match mark {
            Mark::Run(RunEvent::TaskStarted { .. }) => {
                if let Some(since) = idle_since.take() {
                    idle += at.saturating_duration_since(since);
                }
                running += 1;
            }
            Mark::Run(RunEvent::TaskFinished { .. }) => {
                running = running.saturating_sub(1);
                if running == 0 {
                    idle_since = Some(*at);
                }
            }
            _ => {}
        }
    }
    if let Some(since) = idle_since {
        idle += end.saturating_duration_since(since);
    }
    idle
}
