//! One task's loop: iterations of an agent call followed by verification, until a decision
//! ends the task.
//!
//! The loop owns the task's session for as long as it runs. It opens (or reopens) the session
//! and commits its lease before any agent call, passes the session explicitly on every call
//! (`Start` for the first call in it, `Resume` for every later one), records each call whole,
//! and closes the session on every way out.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use agent::{
    AgentCall, AgentError, AgentEvent, AgentReply, CancellationToken, ErrorKind, EventSink,
    ExitInfo, SessionId, SessionPlan, Usage,
};
use session_store::{
    CallOutcome, Cost, NewAgentCall, NewSession, NewVerification, Session, SessionFilter,
    SessionPolicy, SessionStatus, StoreError, Task, TaskId, TaskStatus, Timestamp,
};
use tokio::sync::mpsc;

use crate::error::OrchestratorError;
use crate::event::RunEvent;
use crate::history;
use crate::prompt::{self, FailedCheck, SeedReason, TaskBrief};
use crate::run::Inner;
use crate::verify::{self, VerifyError};

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

/// Claims `task_id` and runs it to an end under `policy`. `None` when the task could not be
/// claimed: another runner took it first, or it is no longer ready.
pub(crate) async fn run_task(
    inner: Arc<Inner>,
    task_id: TaskId,
    policy: SessionPolicy,
    cancel: CancellationToken,
) -> Result<Option<TaskReport>, OrchestratorError> {
    let owner = inner.owner.clone();
    // The claim and the look for a session to continue share one trip to the ledger.
    let claimed = inner
        .db
        .run(move |store| {
            let task = store.claim_task(task_id, &owner)?;
            let sessions = store.sessions(&continued_sessions(policy, &task))?;
            Ok((task, sessions))
        })
        .await;
    let (task, known_sessions) = match claimed {
        Ok(claimed) => claimed,
        Err(StoreError::InvalidTransition { .. } | StoreError::DependenciesUnmet { .. }) => {
            return Ok(None);
        }
        Err(err) => return Err(err.into()),
    };
    inner.events.emit(RunEvent::TaskStarted {
        task: task.id,
        title: task.title.clone(),
    });
    let mut run = TaskRun {
        max_turns: task.max_turns.or(inner.config.max_turns),
        guidance: task.guidance.clone(),
        inner,
        task,
        policy,
        cancel,
        session: None,
        next_session: NewSessionReason::First,
        called: false,
        known_sessions: Some(known_sessions),
    };
    let end = run.drive().await;
    run.finish(end).await.map(Some)
}

/// The sessions a task may continue under `policy`: its own (the `task` and `fresh`
/// policies), or its milestone's (the `milestone` policy).
fn continued_sessions(policy: SessionPolicy, task: &Task) -> SessionFilter {
    match policy {
        SessionPolicy::Milestone => SessionFilter {
            milestone: task.milestone,
            ..SessionFilter::default()
        },
        SessionPolicy::Task | SessionPolicy::Fresh => SessionFilter {
            task: Some(task.id),
            ..SessionFilter::default()
        },
    }
}

/// Where the task's loop stands.
struct TaskRun {
    inner: Arc<Inner>,
    task: Task,
    policy: SessionPolicy,
    cancel: CancellationToken,
    /// The session calls go to, once one is open.
    session: Option<ActiveSession>,
    /// Why the next session to open is new, which decides its first prompt.
    next_session: NewSessionReason,
    /// The turn budget of the next call; grows when the agent runs out of turns.
    max_turns: Option<u32>,
    /// A person's guidance not yet delivered to the agent.
    guidance: Option<String>,
    /// Whether this run has recorded an agent call for the task.
    called: bool,
    /// The sessions the task could continue, read when it was claimed; used once.
    known_sessions: Option<Vec<Session>>,
}

/// The session the loop holds the lease of.
struct ActiveSession {
    id: SessionId,
    /// Whether the agent has (or may have) a transcript for it: the next call resumes.
    started: bool,
    /// Whether this task has made a call in it (a milestone session may carry other tasks).
    used_by_task: bool,
    /// The iteration it was opened in, for the `fresh` policy.
    opened_in: u32,
    /// Prompt tokens of the latest model response, and the model's window, for rotation.
    occupancy: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewSessionReason {
    /// No session yet: continue the task's (or milestone's) latest one if there is one.
    First,
    /// The `fresh` policy: every iteration gets a session of its own.
    FreshPolicy,
    /// The agent lost the old session's transcript.
    TranscriptLost,
    /// The old session's context window filled up.
    Rotated,
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
}

/// How a task's loop ended.
#[derive(Debug)]
enum End {
    Completed,
    Failed(String),
    Blocked(String),
    Cancelled,
    /// Another process took over the session; this run must touch nothing more.
    LeaseLost(String),
}

/// How an agent phase of one iteration ended.
enum Phase {
    /// The agent replied; verification comes next.
    Replied,
    /// The call failed in a way another iteration may fix.
    Errored(String),
    /// The task ends.
    End(End),
}

impl TaskRun {
    async fn drive(&mut self) -> Result<End, OrchestratorError> {
        let first = self.task.iterations.saturating_add(1);
        let last = self
            .task
            .iterations
            .saturating_add(self.task.max_iterations);
        if first > last {
            return Ok(End::Failed(format!(
                "the task has used all {} iterations it can count",
                self.task.iterations
            )));
        }
        let mut intent = Intent::Begin;
        for iteration in first..=last {
            match self.agent_phase(iteration, &mut intent).await? {
                Phase::Replied => {}
                Phase::End(end) => return Ok(end),
                Phase::Errored(error) => {
                    if iteration == last {
                        return Ok(self.exhausted(format!(
                            "the agent's last attempt (iteration {iteration}) failed: {error}"
                        )));
                    }
                    self.decide(
                        iteration,
                        format!("the call failed ({error}); trying again in the same session"),
                    );
                    intent = Intent::AfterError(error);
                    continue;
                }
            }
            let failed = match self.verify(iteration).await? {
                Ok(failed) => failed,
                Err(end) => return Ok(end),
            };
            if failed.is_empty() {
                return Ok(End::Completed);
            }
            if iteration == last {
                let check = &failed[0];
                let iterations = match self.task.max_iterations {
                    1 => String::from("1 iteration"),
                    count => format!("{count} iterations"),
                };
                return Ok(self.exhausted(format!(
                    "verification still fails after {iterations}: `{}` {}",
                    check.command,
                    describe_check(check)
                )));
            }
            self.decide(
                iteration,
                format!(
                    "`{}` failed; sending its output back to the agent",
                    failed[0].command
                ),
            );
            intent = Intent::Feedback(failed);
        }
        unreachable!(
            "invariant: a task has at least one iteration, and the last one always returns"
        )
    }

    /// One iteration's agent call, with the retries and continuations that stay inside it.
    async fn agent_phase(
        &mut self,
        iteration: u32,
        intent: &mut Intent,
    ) -> Result<Phase, OrchestratorError> {
        let retry = self.inner.config.retry.clone();
        let mut transient_retries = 0;
        let mut in_use_retries = 0;
        loop {
            if self.cancel.is_cancelled() {
                return Ok(Phase::End(End::Cancelled));
            }
            if let Err(end) = self.ensure_session(iteration).await? {
                return Ok(Phase::End(end));
            }
            // What the agent is told never carries a secret: the feedback quotes check output
            // and errors, which may print one.
            let mut prompt = self.render(intent, iteration).await?;
            self.inner.redactor.redact_in_place(&mut prompt);
            let result = match self.call_agent(iteration, prompt).await? {
                Ok(result) => result,
                Err(end) => return Ok(Phase::End(end)),
            };
            let error = match result {
                Ok(_) => return Ok(Phase::Replied),
                Err(error) => error,
            };
            match error.kind() {
                ErrorKind::MaxTurns => {
                    let cap = self.inner.config.max_turns_cap;
                    match self.max_turns {
                        Some(budget) if budget < cap => {
                            let grown = budget.saturating_mul(2).min(cap);
                            self.max_turns = Some(grown);
                            self.decide(
                                iteration,
                                format!(
                                    "the agent ran out of {budget} turns; resuming with {grown}"
                                ),
                            );
                            *intent = Intent::ContinueTurns;
                        }
                        _ => {
                            let budget = self
                                .max_turns
                                .map_or_else(|| String::from("its"), |n| n.to_string());
                            return Ok(Phase::End(End::Failed(format!(
                                "the agent ran out of turns at {budget} turns, the cap (max_turns_cap) for one call"
                            ))));
                        }
                    }
                }
                _ if error.is_transient() => {
                    transient_retries += 1;
                    if transient_retries > retry.max_retries {
                        return Ok(Phase::End(End::Failed(format!(
                            "the model API kept failing after {} retries: {error}",
                            retry.max_retries
                        ))));
                    }
                    let wait = match &error {
                        AgentError::RateLimited {
                            reset_at: Some(reset_at),
                            ..
                        } => {
                            let wait = reset_at
                                .duration_since(SystemTime::now())
                                .unwrap_or_default();
                            if wait > retry.max_rate_limit_wait {
                                return Ok(Phase::End(End::Failed(format!(
                                    "{error}; the reset is {}s away, longer than the longest wait ({}s)",
                                    wait.as_secs(),
                                    retry.max_rate_limit_wait.as_secs()
                                ))));
                            }
                            wait
                        }
                        _ => retry.backoff(transient_retries),
                    };
                    self.decide(
                        iteration,
                        format!(
                            "{error}; retry {transient_retries} of {} in {:.1}s",
                            retry.max_retries,
                            wait.as_secs_f64()
                        ),
                    );
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.cancel.cancelled() => return Ok(Phase::End(End::Cancelled)),
                    }
                }
                ErrorKind::SessionInUse => {
                    // The agent has a transcript for the id already: the session was started
                    // by a call Baton did not get to record. Resume it; never start it twice.
                    in_use_retries += 1;
                    if in_use_retries > 1 {
                        return Ok(Phase::End(End::Failed(format!(
                            "{error}, and resuming it reported the same"
                        ))));
                    }
                    if let Some(session) = &mut self.session {
                        session.started = true;
                    }
                    self.decide(
                        iteration,
                        String::from("the session exists already; resuming it"),
                    );
                }
                ErrorKind::SessionNotFound => {
                    let reason = format!("transcript lost: {error}");
                    self.close_session(SessionStatus::Failed, &reason).await?;
                    self.next_session = NewSessionReason::TranscriptLost;
                    self.decide(iteration, String::from(
                        "the agent has no transcript of the session; continuing in a new session seeded from the ledger",
                    ));
                }
                ErrorKind::Cancelled => return Ok(Phase::End(End::Cancelled)),
                ErrorKind::SessionMismatch
                | ErrorKind::CannotSpawn
                | ErrorKind::WorkingDirMissing
                | ErrorKind::BudgetExceeded
                | ErrorKind::Api
                | ErrorKind::RateLimited => {
                    return Ok(Phase::End(End::Failed(error.to_string())));
                }
                ErrorKind::Timeout
                | ErrorKind::Crashed
                | ErrorKind::MalformedOutput
                | ErrorKind::Execution
                | ErrorKind::Io => return Ok(Phase::Errored(error.to_string())),
            }
        }
    }

    /// Makes sure a session is open and leased for the next call: keeps the current one,
    /// rotates it, or opens (or reopens) one per the policy.
    async fn ensure_session(
        &mut self,
        iteration: u32,
    ) -> Result<Result<(), End>, OrchestratorError> {
        if let Some(session) = &self.session {
            let threshold = self.inner.config.rotation_threshold;
            let full = session.occupancy.is_some_and(|(used, window)| {
                window > 0 && used as f64 >= threshold * window as f64
            });
            if full {
                let (used, window) = session.occupancy.unwrap_or_default();
                let reason = format!(
                    "context window {used} of {window} tokens used; rotated to a new session"
                );
                self.decide(iteration, reason.clone());
                self.close_session(SessionStatus::Rotated, &reason).await?;
                self.next_session = NewSessionReason::Rotated;
            } else if self.policy == SessionPolicy::Fresh && session.opened_in != iteration {
                self.close_session(
                    SessionStatus::Completed,
                    "the fresh policy gives each iteration a new session",
                )
                .await?;
                self.next_session = NewSessionReason::FreshPolicy;
            } else {
                return self.hold_lease(iteration).await;
            }
        }

        if self.next_session == NewSessionReason::First
            && self.policy != SessionPolicy::Fresh
            && let Some(previous) = self.latest_session().await?
        {
            return self.reopen(previous, iteration).await;
        }
        let id = SessionId::new_v4();
        let new = NewSession {
            id,
            task: self.task.id,
            milestone: self.task.milestone,
            policy: self.policy,
            owner: self.inner.owner.clone(),
            lease_ttl: self.inner.config.lease_ttl,
        };
        self.inner
            .db
            .run(move |store| store.open_session(&new))
            .await?;
        self.inner.events.emit(RunEvent::SessionOpened {
            task: self.task.id,
            session: id,
            policy: self.policy,
            reopened: false,
        });
        self.session = Some(ActiveSession {
            id,
            started: false,
            used_by_task: false,
            opened_in: iteration,
            occupancy: None,
        });
        Ok(Ok(()))
    }

    /// The session this task continues: its own latest (the `task` policy), or its
    /// milestone's latest (the `milestone` policy). A rotated session is never continued.
    async fn latest_session(&mut self) -> Result<Option<Session>, OrchestratorError> {
        let policy = self.policy;
        let sessions = match self.known_sessions.take() {
            Some(sessions) => sessions,
            None => {
                let filter = continued_sessions(policy, &self.task);
                self.inner
                    .db
                    .run(move |store| store.sessions(&filter))
                    .await?
            }
        };
        Ok(sessions
            .into_iter()
            .rev()
            .find(|session| session.policy == policy)
            .filter(|session| session.status != SessionStatus::Rotated))
    }

    /// Makes sure this process still holds the current session's lease before a call: renews
    /// it, or, when a sweep abandoned the session while this runner was busy elsewhere (a long
    /// check, a rate-limit wait), reopens it. Another holder means the session is lost.
    async fn hold_lease(&mut self, iteration: u32) -> Result<Result<(), End>, OrchestratorError> {
        let session = self
            .session
            .as_ref()
            .expect("invariant: hold_lease is called with a session");
        let (id, owner, ttl) = (
            session.id,
            self.inner.owner.clone(),
            self.inner.config.lease_ttl,
        );
        let held = self
            .inner
            .db
            .run(move |store| match store.acquire_lease(id, &owner, ttl) {
                Err(StoreError::SessionClosed { .. }) => store.reopen_session(id, &owner, ttl),
                other => other,
            })
            .await;
        match held {
            Ok(_) => Ok(Ok(())),
            Err(StoreError::LeaseHeld { .. } | StoreError::SessionRotated { .. }) => {
                self.session = None;
                self.decide(
                    iteration,
                    format!("session {id} was taken over by another baton process"),
                );
                Ok(Err(End::LeaseLost(format!(
                    "session {id} is in use by another baton process"
                ))))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn reopen(
        &mut self,
        previous: Session,
        iteration: u32,
    ) -> Result<Result<(), End>, OrchestratorError> {
        let (id, owner, ttl) = (
            previous.id,
            self.inner.owner.clone(),
            self.inner.config.lease_ttl,
        );
        match self
            .inner
            .db
            .run(move |store| store.reopen_session(id, &owner, ttl))
            .await
        {
            Ok(_) => {}
            Err(StoreError::LeaseHeld { .. }) => {
                return Ok(Err(End::LeaseLost(format!(
                    "session {id} is in use by another baton process"
                ))));
            }
            Err(err) => return Err(err.into()),
        }
        let task = self.task.id;
        // Only calls that reached the agent can have made a transcript.
        let reached: Vec<TaskId> = self
            .inner
            .db
            .run(move |store| store.calls_for_session(id))
            .await?
            .into_iter()
            .filter(|call| reached_agent(call.outcome))
            .map(|call| call.task)
            .collect();
        let used_by_task = reached.contains(&task);
        self.inner.events.emit(RunEvent::SessionOpened {
            task: self.task.id,
            session: id,
            policy: self.policy,
            reopened: true,
        });
        self.session = Some(ActiveSession {
            id,
            // Calls that reached the agent made a transcript. Without any, the agent may still
            // have one (a call that Baton did not get to record): starting then answers "in
            // use", and the loop resumes.
            started: !reached.is_empty(),
            used_by_task,
            opened_in: iteration,
            occupancy: None,
        });
        Ok(Ok(()))
    }

    /// The prompt for `intent` in the session the call goes to.
    async fn render(
        &mut self,
        intent: &Intent,
        iteration: u32,
    ) -> Result<String, OrchestratorError> {
        let session = self
            .session
            .as_ref()
            .expect("invariant: ensure_session ran before render");
        let brief = TaskBrief {
            title: self.task.title.clone(),
            prompt: self.task.prompt.clone(),
        };
        let guidance = self.guidance.as_deref();
        if session.started && session.used_by_task {
            return Ok(match intent {
                Intent::Begin => prompt::resume_after_interruption(guidance),
                Intent::Feedback(failed) => prompt::feedback(failed, guidance),
                Intent::AfterError(error) => prompt::after_error(error, guidance),
                Intent::ContinueTurns => prompt::continue_after_max_turns(guidance),
            });
        }
        if session.started {
            // A milestone's session, which this task has not spoken in yet.
            return Ok(prompt::next_in_milestone(&brief, guidance));
        }
        let task = self.task.id;
        // A task that never ran and has made no call in this run has no history to read.
        let history = if self.task.iterations == 0 && !self.called {
            Vec::new()
        } else {
            self.inner
                .db
                .run(move |store| history::load(store, task))
                .await?
        };
        Ok(match (self.next_session, intent) {
            (NewSessionReason::TranscriptLost, _) if !history.is_empty() => {
                prompt::seed(&brief, SeedReason::TranscriptLost, &history, guidance)
            }
            (NewSessionReason::Rotated, _) if !history.is_empty() => {
                prompt::seed(&brief, SeedReason::ContextFull, &history, guidance)
            }
            (_, Intent::Feedback(failed)) => {
                prompt::fresh_attempt(&brief, iteration, failed, guidance)
            }
            (_, _) if !history.is_empty() => {
                prompt::seed(&brief, SeedReason::TranscriptLost, &history, guidance)
            }
            // A task's very first call: the task, and any guidance given before it ever ran.
            (_, _) => prompt::fresh_attempt(&brief, iteration, &[], guidance),
        })
    }

    /// Calls the agent in the current session and records the call whole.
    ///
    /// The outer `Result` is the loop's own trouble (the ledger failed, the lease was lost);
    /// the inner one is the agent's answer.
    async fn call_agent(
        &mut self,
        iteration: u32,
        prompt: String,
    ) -> Result<Result<Result<AgentReply, AgentError>, End>, OrchestratorError> {
        let session = self
            .session
            .as_ref()
            .expect("invariant: ensure_session ran before call_agent");
        let session_id = session.id;
        let plan = if session.started {
            SessionPlan::Resume(session_id)
        } else {
            SessionPlan::Start(session_id)
        };
        let config = &self.inner.config;
        let call = AgentCall {
            prompt: prompt.clone(),
            plan,
            working_dir: self.task.working_dir.clone(),
            max_turns: self.max_turns,
            timeout: config.call_timeout,
            model: config.agent.model.clone(),
            permission_mode: config.agent.permission_mode,
            allowed_tools: config.agent.allowed_tools.clone(),
            env: config.agent.env.clone(),
        };
        let task = self.task.id;
        let Some(_live) = LiveSession::enter(&self.inner, session_id) else {
            return Ok(Err(End::Failed(format!(
                "session {session_id} already has an agent call under way in this process"
            ))));
        };
        self.inner.events.emit(RunEvent::CallStarted {
            task,
            session: session_id,
            iteration,
            plan: plan.kind(),
        });

        let (sender, mut receiver) = mpsc::unbounded_channel();
        let sink = EventSink::new(move |event| {
            // The receiver lives until the call is recorded; a send can only fail after that.
            let _ = sender.send(event);
        });
        let call_cancel = self.cancel.child_token();
        let started_at = Timestamp::now();
        let clock = Instant::now();
        let agent = Arc::clone(&self.inner.agent);
        let call_future = agent.call(call, sink, call_cancel.clone());
        tokio::pin!(call_future);
        let renew_every = (config.lease_ttl / 3).max(Duration::from_millis(10));
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        // A backstop for an agent that ignores its own timeout: cancel it a while after.
        let backstop =
            tokio::time::sleep(config.call_timeout.saturating_add(Duration::from_secs(30)));
        tokio::pin!(backstop);
        let mut last_usage: Option<Usage> = None;
        let mut streamed = Usage::ZERO;
        let mut lease_lost: Option<String> = None;
        let result = loop {
            tokio::select! {
                result = &mut call_future => break result,
                Some(event) = receiver.recv() => {
                    self.on_agent_event(session_id, event, &mut last_usage, &mut streamed).await?;
                    // Take everything queued: one read of the agent's output can queue
                    // hundreds of events, and taking one per turn of this loop would let the
                    // queue grow for as long as the agent floods.
                    while let Ok(event) = receiver.try_recv() {
                        self.on_agent_event(session_id, event, &mut last_usage, &mut streamed).await?;
                    }
                }
                _ = renew.tick() => {
                    let (owner, ttl) = (self.inner.owner.clone(), config.lease_ttl);
                    // A sweep may have abandoned the session if renewals were held up (a busy
                    // ledger): while nobody else took it, it is reopened and the call goes on.
                    let renewed = self.inner.db.run(move |store| match store.renew_lease(session_id, &owner, ttl) {
                        Err(StoreError::SessionClosed { .. }) => store.reopen_session(session_id, &owner, ttl),
                        other => other,
                    }).await;
                    match renewed {
                        // A busy ledger is tried again at the next tick, well within the lease.
                        Ok(_) | Err(StoreError::Busy { .. }) => {}
                        Err(err @ (StoreError::LeaseHeld { .. } | StoreError::LeaseNotHeld { .. } | StoreError::SessionRotated { .. })) => {
                            lease_lost = Some(err.to_string());
                            call_cancel.cancel();
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
                () = &mut backstop, if !call_cancel.is_cancelled() => call_cancel.cancel(),
            }
        };
        while let Ok(event) = receiver.try_recv() {
            self.on_agent_event(session_id, event, &mut last_usage, &mut streamed)
                .await?;
        }
        let elapsed = clock.elapsed();
        if let Some(reason) = lease_lost {
            return Ok(Err(End::LeaseLost(reason)));
        }

        // Verify, don't trust: the session the agent reports must be the one it was given.
        let result = match result {
            Ok(reply) if reply.session_id != session_id => Err(AgentError::SessionMismatch {
                assigned: session_id,
                reported: reply.session_id,
                reply: Some(Box::new(reply)),
            }),
            other => other,
        };
        let record = new_call(
            task, session_id, iteration, plan, prompt, &result, streamed, started_at, elapsed,
        );
        let outcome = record.outcome;
        let (usage, cost, turns) = (record.usage, record.cost, record.turns);
        // Guidance is delivered once the model worked on the prompt that carried it; a call
        // that never got that far leaves it for the next prompt.
        let delivered_guidance = self.guidance.is_some() && model_saw_prompt(&result);
        self.inner
            .db
            .run(move |store| {
                store.record_agent_call(&record)?;
                if delivered_guidance {
                    store.set_task_guidance(task, None)?;
                }
                Ok(())
            })
            .await?;
        self.called = true;
        if delivered_guidance {
            self.guidance = None;
        }
        self.inner.events.emit(RunEvent::CallFinished {
            task,
            session: session_id,
            iteration,
            outcome,
            usage,
            cost_usd: cost.as_usd(),
            turns,
            duration: elapsed,
        });

        let session = self
            .session
            .as_mut()
            .expect("invariant: the session outlives its call");
        // Any call that reached the agent may have left a transcript; one that could not start
        // the agent did not.
        let spawned = reached_agent(outcome);
        session.started |= spawned;
        session.used_by_task |= spawned;
        if let Ok(reply) = &result {
            let used = last_usage.unwrap_or(reply.usage).prompt_tokens();
            session.occupancy = reply.context_window.map(|window| (used, window));
        }
        Ok(Ok(result))
    }

    async fn on_agent_event(
        &self,
        session: SessionId,
        event: AgentEvent,
        last_usage: &mut Option<Usage>,
        streamed: &mut Usage,
    ) -> Result<(), OrchestratorError> {
        match &event {
            AgentEvent::Spawned { pid } => {
                let pid = *pid;
                self.inner
                    .db
                    .run(move |store| store.set_agent_pid(session, Some(pid)))
                    .await?;
            }
            AgentEvent::Usage { usage } => {
                *last_usage = Some(*usage);
                *streamed += *usage;
            }
            _ => {}
        }
        self.inner.events.emit(RunEvent::Agent {
            task: self.task.id,
            session,
            event,
        });
        Ok(())
    }

    /// Runs the task's checks in order, stopping at the first that fails. The inner `Err`
    /// ends the task (cancelled, or the checks cannot run at all).
    async fn verify(
        &mut self,
        iteration: u32,
    ) -> Result<Result<Vec<FailedCheck>, End>, OrchestratorError> {
        let timeout = self.inner.config.verify_timeout;
        for command in self.task.verify_commands.clone() {
            self.inner.events.emit(RunEvent::CheckStarted {
                task: self.task.id,
                iteration,
                command: command.clone(),
            });
            let mut outcome =
                match verify::run_check(&command, &self.task.working_dir, timeout, &self.cancel)
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(VerifyError::Cancelled { .. }) => return Ok(Err(End::Cancelled)),
                    Err(err) => return Ok(Err(End::Failed(err.to_string()))),
                };
            // The output goes to the ledger, the events and the agent's next prompt; a check
            // that prints a key must not send it to any of them.
            self.inner
                .redactor
                .redact_in_place(&mut outcome.output_tail);
            let record = NewVerification {
                task: self.task.id,
                iteration,
                command: command.clone(),
                exit: match (outcome.timed_out, outcome.exit_code) {
                    (false, Some(code)) => Some(ExitInfo::Code(code)),
                    _ => None,
                },
                timed_out: outcome.timed_out,
                output_tail: outcome.output_tail.clone(),
                duration: outcome.duration,
            };
            self.inner
                .db
                .run(move |store| store.record_verification(&record))
                .await?;
            self.inner.events.emit(RunEvent::CheckFinished {
                task: self.task.id,
                iteration,
                command: command.clone(),
                passed: outcome.passed(),
                duration: outcome.duration,
            });
            if !outcome.passed() {
                return Ok(Ok(vec![FailedCheck {
                    command,
                    exit_code: outcome.exit_code,
                    timed_out: outcome.timed_out,
                    output_tail: outcome.output_tail,
                }]));
            }
        }
        Ok(Ok(Vec::new()))
    }

    /// The task ran out of iterations: failed, or blocked for a person when so configured.
    fn exhausted(&self, reason: String) -> End {
        if self.inner.config.escalate_when_exhausted {
            End::Blocked(format!(
                "{reason}; a person's guidance is needed (baton task retry {} --message …)",
                self.task.id
            ))
        } else {
            End::Failed(reason)
        }
    }

    fn decide(&self, iteration: u32, decision: String) {
        self.inner.events.emit(RunEvent::Decision {
            task: self.task.id,
            iteration,
            decision,
        });
    }

    async fn close_session(
        &mut self,
        status: SessionStatus,
        reason: &str,
    ) -> Result<(), OrchestratorError> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        let (id, reason_text) = (session.id, reason.to_owned());
        match self
            .inner
            .db
            .run(move |store| store.close_session(id, status, Some(&reason_text)))
            .await
        {
            // Forgotten only once closed, so that a failed close is tried again on the way out.
            Ok(()) => self.session = None,
            // Something else ended it first (a sweep, while this runner was stalled): it is
            // closed, which is what matters.
            Err(StoreError::CloseConflict { .. }) => {
                self.session = None;
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        }
        self.inner.events.emit(RunEvent::SessionClosed {
            task: self.task.id,
            session: id,
            status,
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// Closes the session and moves the task to the state `end` calls for.
    async fn finish(
        mut self,
        end: Result<End, OrchestratorError>,
    ) -> Result<TaskReport, OrchestratorError> {
        let end = match end {
            Ok(end) => end,
            Err(err) => {
                // The loop itself failed (most likely the ledger). Leave the ledger as
                // truthful as it can be made, then report the error.
                let reason = format!("baton failed while running the task: {err}");
                let _ = self.close_session(SessionStatus::Failed, &reason).await;
                let task = self.task.id;
                let _ = self
                    .inner
                    .db
                    .run(move |store| {
                        store.set_task_status(task, TaskStatus::Failed, Some(&reason))
                    })
                    .await;
                return Err(err);
            }
        };
        let task = self.task.id;
        let (session_status, session_reason, task_status, task_reason, outcome) = match end {
            End::LeaseLost(reason) => {
                // Another process holds the session: leave it to its holder, and give the task
                // back so that a later run can take it up.
                self.session = None;
                let requeue = reason.clone();
                match self
                    .inner
                    .db
                    .run(move |store| {
                        store.set_task_status(task, TaskStatus::Pending, Some(&requeue))
                    })
                    .await
                {
                    Ok(_) | Err(StoreError::InvalidTransition { .. }) => {}
                    Err(err) => return Err(err.into()),
                }
                return Ok(TaskReport {
                    task,
                    outcome: TaskOutcome::Skipped { reason },
                });
            }
            End::Completed => (
                SessionStatus::Completed,
                if self.policy == SessionPolicy::Milestone {
                    format!("task {task} completed; the milestone's next task resumes this session")
                } else {
                    format!("task {task} completed")
                },
                TaskStatus::Completed,
                None,
                TaskOutcome::Completed,
            ),
            End::Failed(reason) => (
                SessionStatus::Failed,
                format!("task {task} failed: {reason}"),
                TaskStatus::Failed,
                Some(reason.clone()),
                TaskOutcome::Failed { reason },
            ),
            End::Blocked(reason) => (
                SessionStatus::Failed,
                format!("task {task} blocked: {reason}"),
                TaskStatus::Blocked,
                Some(reason.clone()),
                TaskOutcome::Blocked { reason },
            ),
            // The session did nothing wrong: it was stopped before its work ended, and the
            // task continues it next run.
            End::Cancelled => (
                SessionStatus::Abandoned,
                String::from("cancelled"),
                TaskStatus::Pending,
                Some(String::from(
                    "the run was cancelled; the task resumes its session next run",
                )),
                TaskOutcome::Cancelled,
            ),
        };
        // The session is closed and the task's state set in one trip to the ledger, and the
        // task's state is set even when the close failed, so that it is not left running.
        let session = self.session.as_ref().map(|session| session.id);
        let (close_reason, reason) = (session_reason.clone(), task_reason.clone());
        let (closed, moved) = self
            .inner
            .db
            .run(move |store| {
                let closed = session.map(|id| {
                    match store.close_session(id, session_status, Some(&close_reason)) {
                        // Something else ended it first (a sweep while this runner stalled).
                        Err(StoreError::CloseConflict { .. }) => Ok(false),
                        other => other.map(|()| true),
                    }
                });
                let moved = store.set_task_status(task, task_status, reason.as_deref());
                Ok((closed, moved))
            })
            .await?;
        if let Some(closed) = closed {
            let closed_now = closed?;
            let id = self
                .session
                .take()
                .map(|session| session.id)
                .expect("invariant: a session was closed only when there was one");
            if closed_now {
                self.inner.events.emit(RunEvent::SessionClosed {
                    task,
                    session: id,
                    status: session_status,
                    reason: session_reason,
                });
            }
        }
        match moved {
            Ok(_) => {}
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
        self.inner.events.emit(RunEvent::TaskFinished {
            task,
            status: task_status,
            reason: task_reason,
        });
        Ok(TaskReport { task, outcome })
    }
}

/// Marks a session as having a call under way in this process, until dropped.
struct LiveSession<'a> {
    inner: &'a Inner,
    id: SessionId,
}

impl<'a> LiveSession<'a> {
    /// Enters `id`, or returns `None` when a call in it is already under way here.
    fn enter(inner: &'a Inner, id: SessionId) -> Option<LiveSession<'a>> {
        let inserted = inner
            .live_sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        // Built only when entered: a guard made and dropped here would remove the entry of
        // the call that holds it.
        inserted.then(|| LiveSession { inner, id })
    }
}

impl Drop for LiveSession<'_> {
    fn drop(&mut self) {
        let mut live = self
            .inner
            .live_sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        live.remove(&self.id);
    }
}

/// The ledger row for one call, from whatever the agent answered.
#[allow(clippy::too_many_arguments)]
fn new_call(
    task: TaskId,
    session: SessionId,
    iteration: u32,
    plan: SessionPlan,
    prompt: String,
    result: &Result<AgentReply, AgentError>,
    streamed: Usage,
    started_at: Timestamp,
    elapsed: Duration,
) -> NewAgentCall {
    let reply = match result {
        Ok(reply) => Some(reply),
        Err(error) => error.reply(),
    };
    let exit = match result {
        Err(AgentError::Crashed { exit, .. }) => Some(*exit),
        _ => reply.and_then(|reply| reply.exit_code).map(ExitInfo::Code),
    };
    NewAgentCall {
        session,
        task,
        iteration,
        plan: plan.kind(),
        prompt,
        result_text: reply.and_then(|reply| reply.result_text.clone()),
        outcome: match result {
            Ok(_) => CallOutcome::Success,
            Err(error) => CallOutcome::Failed(error.kind()),
        },
        subtype: reply.map(|reply| reply.subtype.clone()),
        error_message: result.as_ref().err().map(ToString::to_string),
        reported_session: reply.map(|reply| reply.session_id),
        usage: match result {
            Ok(reply) => reply.usage,
            // What the agent reported, or, for a call that ended without a report (a crash,
            // garbage output), what its progress showed: never nothing when tokens were spent.
            Err(error) if error.reply().is_some() || !error.usage_spent().is_zero() => {
                error.usage_spent()
            }
            Err(_) => streamed,
        },
        cost: Cost::from_usd(reply.map_or(0.0, |reply| reply.cost_usd)),
        turns: reply.map_or(0, |reply| reply.turns),
        duration: reply
            .map(|reply| reply.duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(elapsed),
        exit,
        started_at,
        ended_at: Timestamp::now(),
    }
}

/// Whether a call with this outcome reached the agent, which then keeps a transcript of it.
fn reached_agent(outcome: CallOutcome) -> bool {
    !matches!(
        outcome,
        CallOutcome::Failed(
            ErrorKind::CannotSpawn | ErrorKind::WorkingDirMissing | ErrorKind::SessionNotFound
        )
    )
}

/// Whether the model worked on the call's prompt: it answered, or ran until a limit stopped
/// it. A call refused before the model saw anything (a session error, an unavailable API)
/// did not deliver its prompt.
fn model_saw_prompt(result: &Result<AgentReply, AgentError>) -> bool {
    match result {
        Ok(_) => true,
        Err(error) => matches!(
            error.kind(),
            ErrorKind::MaxTurns
                | ErrorKind::BudgetExceeded
                | ErrorKind::Execution
                | ErrorKind::Timeout
                | ErrorKind::SessionMismatch
        ),
    }
}

fn describe_check(check: &FailedCheck) -> String {
    match (check.timed_out, check.exit_code) {
        (true, _) => String::from("timed out"),
        (false, Some(code)) => format!("exited with status {code}"),
        (false, None) => String::from("was killed by a signal"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use agent_mock::MockAgent;
    use session_store::{LeaseOwner, Store};

    use super::*;
    use crate::config::RunConfig;
    use crate::db::Db;
    use crate::event::RunEvents;

    #[test]
    fn a_session_takes_one_call_at_a_time_in_a_process() {
        let directory = tempfile::tempdir().unwrap();
        let inner = Inner {
            db: Db::new(Store::open(directory.path().join("baton.db")).unwrap()),
            agent: Arc::new(MockAgent::new()),
            config: RunConfig::default(),
            owner: LeaseOwner::current().unwrap(),
            events: RunEvents::none(),
            redactor: session_store::Redactor::new(),
            live_sessions: Mutex::new(HashSet::new()),
        };
        let (one, other) = (SessionId::new_v4(), SessionId::new_v4());
        let first = LiveSession::enter(&inner, one).expect("a free session can be entered");
        assert!(
            LiveSession::enter(&inner, one).is_none(),
            "a busy session cannot"
        );
        let _second = LiveSession::enter(&inner, other).expect("another session is independent");
        drop(first);
        assert!(
            LiveSession::enter(&inner, one).is_some(),
            "the session is free again"
        );
    }
}
