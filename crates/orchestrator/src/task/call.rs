//! The agent call: the prompt for what the loop wants, the call itself (its progress taken in
//! and its session's lease renewed while it runs), and its record in the ledger.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{
    AgentCall, AgentError, AgentEvent, AgentReply, EventSink, ExitInfo, SessionId, SessionPlan,
    Transcript, Usage,
};
use redact::{Redacted, Redactor};
use session_store::{CallOutcome, Cost, NewAgentCall, StoreError, TaskId, Timestamp, total_tokens};
use tokio::sync::mpsc;

use super::session::{ActiveSession, LeaseClaim, LeaseKept, NewSessionReason};
use super::unwritten::CallRecord;
use super::{Intent, Stop, TaskLoop};
use crate::budget::Amount;
use crate::event::RunEvent;
use crate::history;
use crate::prompt::{self, SeedReason, TaskBrief};

/// What the agent answered, once the call is recorded.
pub(super) enum Answer {
    Replied,
    Failed(AgentError),
    /// Baton stopped the call when its streamed usage passed the token limit it was given.
    StoppedAtTokenLimit,
}

/// What a call's progress events showed, besides its answer.
#[derive(Default)]
struct Progress {
    /// The usage of the latest model response.
    last_usage: Option<Usage>,
    /// Every model response's usage added up.
    streamed: Usage,
    /// Whether Baton stopped the call for passing its token limit.
    over_token_limit: bool,
}

/// A call that ran to its end, before it is recorded.
struct Finished {
    result: Result<AgentReply, AgentError>,
    progress: Progress,
    elapsed: Duration,
}

/// What the ledger row of a call is made of, besides the agent's answer.
struct CallFacts {
    task: TaskId,
    session: SessionId,
    iteration: u32,
    plan: SessionPlan,
    /// The prompt as the agent got it, redacted once on its way out.
    prompt: Redacted,
    started_at: Timestamp,
}

impl TaskLoop {
    /// The prompt for `intent` in `session`, the session the call goes to.
    pub(super) async fn render(
        &self,
        session: &ActiveSession,
        intent: &Intent,
        iteration: u32,
    ) -> Result<String, StoreError> {
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
                Intent::ContinueBudget => prompt::continue_after_spending_limit(guidance),
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
            self.context
                .ledger(move |store| history::load(store, task))
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

    /// Calls the agent in `session` and records the call whole.
    pub(super) async fn call_agent(
        &mut self,
        session: &mut ActiveSession,
        iteration: u32,
        prompt: Redacted,
    ) -> Result<Answer, Stop> {
        let reservation = self.reserve_budget(iteration).await?;
        let mut call = self.agent_call(session, prompt.as_str().to_owned());
        call.max_cost_usd = reservation.max_cost.map(Cost::as_usd);
        self.reservation = Some(reservation);
        let facts = CallFacts {
            task: self.task.id,
            session: session.id,
            iteration,
            plan: call.plan,
            prompt,
            started_at: Timestamp::now(),
        };
        let context = Arc::clone(&self.context);
        let Some(_live) = context.live_sessions.enter(facts.session) else {
            return Err(Stop::Failed(format!(
                "session {} already has an agent call under way in this process",
                facts.session
            )));
        };
        self.restore_transcript(&call, iteration).await?;
        // The call, kept to find its transcript after it, when transcripts are mirrored.
        let mirrored = context.config.mirror_transcripts.then(|| call.clone());
        context.events.emit(RunEvent::CallStarted {
            task: facts.task,
            session: facts.session,
            iteration,
            plan: facts.plan.kind(),
        });
        let mut finished = self.watch_call(facts.session, call).await?;
        finished.result = self
            .within_shutdown(finished.result, finished.progress.streamed)
            .await;
        // Verify, don't trust: the session the agent reports must be the one it was given.
        let result = match finished.result {
            Ok(reply) if reply.session_id != facts.session => Err(AgentError::SessionMismatch {
                assigned: facts.session,
                reported: reply.session_id,
                reply: Some(Box::new(reply)),
            }),
            other => other,
        };
        let record = facts.record(
            &context.redactor,
            &result,
            finished.progress.streamed,
            finished.elapsed,
        );
        let spent = Amount {
            cost: record.cost,
            tokens: total_tokens(&record.usage),
        };
        let transcript = self
            .transcript_after(mirrored.as_ref(), record.outcome, iteration)
            .await;
        self.record_call(record, &result, finished.elapsed, transcript)
            .await?;
        self.settle_budget(spent);
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(error) => CallOutcome::Failed(error.kind()),
        };
        session.after_call(outcome, result.as_ref().ok(), finished.progress.last_usage);
        Ok(match result {
            Ok(_) => Answer::Replied,
            Err(AgentError::Cancelled { .. })
                if finished.progress.over_token_limit && !self.cancel.is_cancelled() =>
            {
                Answer::StoppedAtTokenLimit
            }
            Err(error) => Answer::Failed(error),
        })
    }

    /// The call to make in `session`: `Start` the first time, `Resume` after.
    fn agent_call(&self, session: &ActiveSession, prompt: String) -> AgentCall {
        let config = &self.context.config;
        AgentCall {
            prompt,
            plan: if session.started {
                SessionPlan::Resume(session.id)
            } else {
                SessionPlan::Start(session.id)
            },
            working_dir: self.task.working_dir.clone(),
            max_turns: self.max_turns,
            // Set from the call's reservation by the caller.
            max_cost_usd: None,
            timeout: config.call_timeout,
            model: config.agent.model.clone(),
            permission_mode: config.agent.permission_mode,
            allowed_tools: config.agent.allowed_tools.clone(),
            env: config.agent.env.clone(),
        }
    }

    /// Runs `call` to its end, taking in its progress as it comes and renewing the session's
    /// lease meanwhile. A lease lost to another process cancels the call and stops the loop.
    async fn watch_call(&mut self, session: SessionId, call: AgentCall) -> Result<Finished, Stop> {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let sink = EventSink::new(move |event| {
            // The receiver lives until the call is recorded; a send can only fail after that.
            let _ = sender.send(event);
        });
        let call_cancel = self.cancel.child_token();
        let clock = Instant::now();
        let agent = Arc::clone(&self.context.agent);
        let call_future = agent.call(call, sink, call_cancel.clone());
        tokio::pin!(call_future);
        let (lease_ttl, call_timeout) = (
            self.context.config.lease_ttl,
            self.context.config.call_timeout,
        );
        let renew_every = (lease_ttl / 3).max(Duration::from_millis(10));
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        // A backstop for an agent that ignores its own timeout: cancel it a while after.
        let backstop = tokio::time::sleep(call_timeout.saturating_add(Duration::from_secs(30)));
        tokio::pin!(backstop);
        let mut progress = Progress::default();
        let mut lease_lost: Option<String> = None;
        let result = loop {
            tokio::select! {
                result = &mut call_future => break result,
                Some(event) = receiver.recv() => {
                    self.on_agent_event(session, event, &mut progress).await?;
                    // Take everything queued: one read of the agent's output can queue
                    // hundreds of events, and taking one per turn of this loop would let the
                    // queue grow for as long as the agent floods.
                    while let Ok(event) = receiver.try_recv() {
                        self.on_agent_event(session, event, &mut progress).await?;
                    }
                    // A token budget is kept from the streamed usage: the agent has no limit
                    // of its own for tokens.
                    if !progress.over_token_limit && self.over_token_limit(&progress.streamed) {
                        progress.over_token_limit = true;
                        call_cancel.cancel();
                    }
                }
                _ = renew.tick() => {
                    if let Some(reason) = self.renew_during_call(session).await? {
                        lease_lost = Some(reason);
                        call_cancel.cancel();
                    }
                }
                () = &mut backstop, if !call_cancel.is_cancelled() => call_cancel.cancel(),
            }
        };
        while let Ok(event) = receiver.try_recv() {
            self.on_agent_event(session, event, &mut progress).await?;
        }
        let elapsed = clock.elapsed();
        if let Some(reason) = lease_lost {
            return Err(Stop::LeaseLost(reason));
        }
        Ok(Finished {
            result,
            progress,
            elapsed,
        })
    }

    /// One renewal of the lease while a call runs; the reason when another process took the
    /// session over. A busy ledger is tried again at the next tick, well within the lease.
    async fn renew_during_call(
        &mut self,
        session: SessionId,
    ) -> Result<Option<String>, StoreError> {
        match self.keep_lease(session, LeaseClaim::Renew).await {
            Ok(LeaseKept::Held) | Err(StoreError::Busy { .. }) => Ok(None),
            // The database went away (a restart, a dropped connection): the call goes on, and
            // the next tick, well within the lease, tries again.
            Err(err) if err.is_connection_lost() => Ok(None),
            Ok(LeaseKept::Lost(err)) => Ok(Some(err.to_string())),
            Err(err) => Err(err),
        }
    }

    async fn on_agent_event(
        &self,
        session: SessionId,
        event: AgentEvent,
        progress: &mut Progress,
    ) -> Result<(), StoreError> {
        match &event {
            AgentEvent::Spawned { pid } => {
                let pid = *pid;
                self.context
                    .ledger(move |store| store.set_agent_pid(session, Some(pid)))
                    .await?;
            }
            AgentEvent::Usage { usage } => {
                progress.last_usage = Some(*usage);
                progress.streamed += *usage;
            }
            _ => {}
        }
        self.context.events.emit(RunEvent::Agent {
            task: self.task.id,
            session,
            event,
        });
        Ok(())
    }

    /// Records the call with what it consumed, in one commit: the call and the figures it
    /// adds to its session's and task's totals, the copy of its session's transcript (when
    /// mirrored), the guidance its prompt delivered, and a
    /// renewal of the session's lease, so that what follows starts with all of it. A call
    /// whose answer ends the task with nothing run in between (it replied, and the task has
    /// no checks) waits instead for the task's finish, which commits it along.
    async fn record_call(
        &mut self,
        record: NewAgentCall,
        result: &Result<AgentReply, AgentError>,
        elapsed: Duration,
        transcript: Option<Arc<Transcript>>,
    ) -> Result<(), StoreError> {
        // Guidance is delivered once the model worked on the prompt that carried it; a call
        // that never got that far leaves it for the next prompt.
        let delivered_guidance = self.guidance.is_some() && model_saw_prompt(result);
        let ends_task = result.is_ok() && self.task.verify_commands.is_empty();
        self.unwritten.call = Some(CallRecord {
            finished: RunEvent::CallFinished {
                task: record.task,
                session: record.session,
                iteration: record.iteration,
                outcome: record.outcome,
                usage: record.usage,
                cost_usd: record.cost.as_usd(),
                turns: record.turns,
                duration: elapsed,
            },
            record,
            transcript,
            delivered_guidance,
            renew: (!ends_task)
                .then(|| (self.context.owner.clone(), self.context.config.lease_ttl)),
        });
        self.called = true;
        if delivered_guidance {
            self.guidance = None;
        }
        if !ends_task {
            self.write_with_unwritten("record an agent call", |_| Ok(()))
                .await?;
        }
        Ok(())
    }
}

impl CallFacts {
    /// The ledger row for the call, from whatever the agent answered. `streamed` is what its
    /// progress showed, for a call that ended without a report.
    /// The ledger row of the call; the agent's words (its answer, subtype, error) pass
    /// through `redactor` here, once.
    fn record(
        self,
        redactor: &Redactor,
        result: &Result<AgentReply, AgentError>,
        streamed: Usage,
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
            session: self.session,
            task: self.task,
            iteration: self.iteration,
            plan: self.plan.kind(),
            prompt: self.prompt,
            result_text: reply
                .and_then(|reply| reply.result_text.clone())
                .map(|text| redactor.redact_owned(text)),
            outcome: match result {
                Ok(_) => CallOutcome::Success,
                Err(error) => CallOutcome::Failed(error.kind()),
            },
            subtype: reply.map(|reply| redactor.redact(&reply.subtype)),
            error_message: result
                .as_ref()
                .err()
                .map(|error| redactor.redact_owned(error.to_string())),
            reported_session: reply.map(|reply| reply.session_id),
            usage: match result {
                Ok(reply) => reply.usage,
                // What the agent reported, or, for a call that ended without a report (a
                // crash, garbage output), what its progress showed: never nothing when tokens
                // were spent.
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
            started_at: self.started_at,
            ended_at: Timestamp::now(),
            // Minted once: the record may be written more than once when the database goes
            // away mid-commit, and the ledger keeps it once.
            key: Some(uuid::Uuid::new_v4().to_string()),
        }
    }
}

/// Whether the model worked on the call's prompt: it answered, or ran until a limit stopped
/// it. A call refused before the model saw anything (a session error, an unavailable API)
/// did not deliver its prompt.
fn model_saw_prompt(result: &Result<AgentReply, AgentError>) -> bool {
    match result {
        Ok(_) => true,
        Err(error) => matches!(
            error.kind(),
            agent::ErrorKind::MaxTurns
                | agent::ErrorKind::BudgetExceeded
                | agent::ErrorKind::Execution
                | agent::ErrorKind::Timeout
                | agent::ErrorKind::SessionMismatch
        ),
    }
}
