//! Driving the iterations: each round is an agent phase (one call, with the retries and
//! continuations that stay inside the round) and then the checks; after each round the loop
//! decides whether the task is done, goes round again with feedback, or has run out of rounds.

use std::sync::Arc;
use std::time::SystemTime;

use agent::{AgentError, ErrorKind};
use session_store::SessionStatus;

use super::call::Answer;
use super::session::{ActiveSession, NewSessionReason};
use super::{Intent, Stop, TaskLoop};
use crate::halt::AgentUnavailable;
use crate::outage::AfterFailure;
use crate::prompt::FailedCheck;

/// How a round ended when the loop did not stop inside it.
enum Round {
    /// The agent replied and every check passed.
    Passed,
    /// The agent replied and this check failed.
    ChecksFailed(Vec<FailedCheck>),
    /// The call failed in a way another round may fix.
    Errored(String),
}

/// How a round's agent phase ended when the loop did not stop inside it.
enum Phase {
    /// The agent replied; the checks come next.
    Replied,
    /// The call failed in a way another round may fix.
    Errored(String),
}

/// What the loop does after a failed call.
enum AfterError {
    /// Call the agent again in this round.
    CallAgain,
    /// End the round with this error; the next round may fix it.
    EndRound(String),
}

/// The retries one round has used.
#[derive(Default)]
struct Retries {
    transient: u32,
    session_in_use: u32,
}

impl TaskLoop {
    /// Runs rounds until the loop stops. `session` holds the session between calls.
    pub(super) async fn drive(&mut self, session: &mut Option<ActiveSession>) -> Stop {
        let first = self.task.iterations.saturating_add(1);
        let last = self
            .task
            .iterations
            .saturating_add(self.task.max_iterations);
        let mut intent = Intent::Begin;
        for iteration in first..=last {
            let round = match self.round(session, iteration, intent).await {
                Ok(round) => round,
                Err(stop) => return stop,
            };
            intent = match round {
                Round::Passed => return Stop::Completed,
                Round::Errored(error) if iteration == last => {
                    return self.exhausted(format!(
                        "the agent's last attempt (iteration {iteration}) failed: {error}"
                    ));
                }
                Round::Errored(error) => {
                    self.emit_decision(
                        iteration,
                        format!("the call failed ({error}); trying again in the same session"),
                    );
                    Intent::AfterError(error)
                }
                Round::ChecksFailed(failed) if iteration == last => {
                    return self.exhausted(self.still_failing(&failed[0]));
                }
                Round::ChecksFailed(failed) => {
                    self.emit_decision(
                        iteration,
                        format!(
                            "`{}` failed; sending its output back to the agent",
                            failed[0].command
                        ),
                    );
                    Intent::Feedback(failed)
                }
            };
        }
        // Every round that is the last returns above, so only a task with no round left to
        // count gets here.
        Stop::Failed(format!(
            "the task has used all {} iterations it can count",
            self.task.iterations
        ))
    }

    /// One round: the agent phase, then, when the agent replied, the checks.
    async fn round(
        &mut self,
        session: &mut Option<ActiveSession>,
        iteration: u32,
        intent: Intent,
    ) -> Result<Round, Stop> {
        if let Phase::Errored(error) = self.agent_phase(session, iteration, intent).await? {
            return Ok(Round::Errored(error));
        }
        let failed = self.run_checks(iteration).await?;
        Ok(if failed.is_empty() {
            Round::Passed
        } else {
            Round::ChecksFailed(failed)
        })
    }

    /// One round's agent call, with the retries and continuations that stay inside it.
    async fn agent_phase(
        &mut self,
        slot: &mut Option<ActiveSession>,
        iteration: u32,
        mut intent: Intent,
    ) -> Result<Phase, Stop> {
        let mut retries = Retries::default();
        loop {
            if self.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            // While the API is out, the whole run waits here (see `outage`).
            // Held until the call's answer is reported; dropped on any other way out.
            let context = Arc::clone(&self.context);
            let _turn = tokio::select! {
                turn = context.outage.before_call() => turn,
                () = self.cancel.cancelled() => return Err(Stop::Cancelled),
            };
            let session = self.session_for_call(slot, iteration).await?;
            // What the agent is told never carries a secret: the feedback quotes check output
            // and errors, which may print one.
            let rendered = self.render(session, &intent, iteration).await?;
            let prompt = self.context.redactor.redact_owned(rendered);
            let error = match self.call_agent(session, iteration, prompt).await? {
                Answer::Replied => {
                    self.context.outage.succeeded();
                    return Ok(Phase::Replied);
                }
                Answer::Failed(error) => error,
                Answer::StoppedAtTokenLimit => {
                    // The API answered; Baton stopped the call.
                    self.context.outage.succeeded();
                    // The next reservation says whether any budget is left to go on with.
                    intent = Intent::ContinueBudget;
                    continue;
                }
            };
            if !is_outage(&error) {
                // The API answered (or was never reached for a reason of its own).
                self.context.outage.succeeded();
            }
            let next = self
                .after_error(slot, iteration, error, &mut retries, &mut intent)
                .await?;
            match next {
                AfterError::CallAgain => {}
                AfterError::EndRound(error) => return Ok(Phase::Errored(error)),
            }
        }
    }

    /// Decides what a failed call leads to: another call in this round (with a larger turn
    /// budget, after a wait, resuming, or in a new session), the end of the round, or the end
    /// of the loop.
    async fn after_error(
        &mut self,
        slot: &mut Option<ActiveSession>,
        iteration: u32,
        error: AgentError,
        retries: &mut Retries,
        intent: &mut Intent,
    ) -> Result<AfterError, Stop> {
        match error.kind() {
            ErrorKind::MaxTurns => {
                let (from, to) = self.grow_turns(iteration)?;
                self.record_escalation(from, to).await?;
                *intent = Intent::ContinueTurns;
            }
            // The call reached the money limit Baton gave it: the next reservation says
            // whether any budget is left to go on with.
            ErrorKind::BudgetExceeded if self.call_had_cost_limit() => {
                *intent = Intent::ContinueBudget;
            }
            _ if error.is_transient() => self.wait_to_retry(iteration, &error, retries).await?,
            ErrorKind::SessionInUse => {
                // The agent has a transcript for the id already: the session was started by a
                // call Baton did not get to record. Resume it; never start it twice.
                retries.session_in_use += 1;
                if retries.session_in_use > 1 {
                    return Err(Stop::Failed(format!(
                        "{error}, and resuming it reported the same"
                    )));
                }
                if let Some(session) = slot {
                    session.started = true;
                }
                self.emit_decision(
                    iteration,
                    String::from("the session exists already; resuming it"),
                );
            }
            ErrorKind::SessionNotFound => {
                let reason = format!("transcript lost: {error}");
                self.close_session(slot, SessionStatus::Failed, &reason)
                    .await?;
                self.next_session = NewSessionReason::TranscriptLost;
                self.emit_decision(iteration, String::from(
                    "the agent has no transcript of the session; continuing in a new session seeded from the ledger",
                ));
            }
            ErrorKind::Cancelled => return Err(Stop::Cancelled),
            ErrorKind::Authentication
            | ErrorKind::Permission
            | ErrorKind::Billing
            | ErrorKind::ModelUnavailable => return Err(self.halt_run(iteration, &error)),
            ErrorKind::SessionMismatch
            | ErrorKind::CannotSpawn
            | ErrorKind::WorkingDirMissing
            | ErrorKind::BudgetExceeded
            | ErrorKind::Api
            | ErrorKind::RateLimited => return Err(Stop::Failed(error.to_string())),
            ErrorKind::Timeout
            | ErrorKind::Crashed
            | ErrorKind::MalformedOutput
            | ErrorKind::Execution
            | ErrorKind::Io => return Ok(AfterError::EndRound(error.to_string())),
        }
        Ok(AfterError::CallAgain)
    }

    /// The API refused in a way no retry fixes: every task would fail the same way, so the
    /// whole run stops, with the cause in the API's words and what to do about it.
    fn halt_run(&self, iteration: u32, error: &AgentError) -> Stop {
        let cause = match error {
            AgentError::Refused {
                message, status, ..
            } => match status {
                Some(status) => format!("{message} (HTTP {status})"),
                None => message.clone(),
            },
            other => other.to_string(),
        };
        let what_to_do = error.refusal().map_or("", |refusal| refusal.what_to_do());
        self.halt(iteration, error.kind(), cause, what_to_do)
    }

    /// Stops the whole run because the agent cannot work; this task stays pending.
    fn halt(&self, iteration: u32, kind: ErrorKind, cause: String, what_to_do: &str) -> Stop {
        let first = self.context.halt.stop(AgentUnavailable {
            kind,
            cause: cause.clone(),
            what_to_do: what_to_do.to_owned(),
            task: self.task.id,
        });
        if first {
            self.emit_decision(
                iteration,
                format!(
                    "{cause}; no retry can fix that, so the run stops and its tasks stay pending"
                ),
            );
        }
        Stop::Halted(cause)
    }

    /// The agent ran out of turns: the next call resumes with twice the budget, up to the
    /// cap, past which the task fails.
    fn grow_turns(&mut self, iteration: u32) -> Result<(u32, u32), Stop> {
        let cap = self.context.config.max_turns_cap;
        match self.max_turns {
            Some(budget) if budget < cap => {
                let grown = budget.saturating_mul(2).min(cap);
                self.max_turns = Some(grown);
                self.emit_decision(
                    iteration,
                    format!("the agent ran out of {budget} turns; resuming with {grown}"),
                );
                Ok((budget, grown))
            }
            _ => {
                let budget = self
                    .max_turns
                    .map_or_else(|| String::from("its"), |n| n.to_string());
                Err(Stop::Failed(format!(
                    "the agent ran out of turns at {budget} turns, the cap (max_turns_cap) for one call"
                )))
            }
        }
    }

    /// A transient failure (an overloaded API, a rate limit): waits, backing off or until the
    /// rate limit's reset, before the call is made again; fails the task when the retries
    /// are used up or the reset is too far away.
    async fn wait_to_retry(
        &mut self,
        iteration: u32,
        error: &AgentError,
        retries: &mut Retries,
    ) -> Result<(), Stop> {
        let retry = &self.context.config.retry;
        if is_outage(error)
            && let Some(paused) = self.pause_for_outage(iteration, error)
        {
            return paused;
        }
        retries.transient += 1;
        if retries.transient > retry.max_retries {
            return Err(Stop::Failed(format!(
                "the model API kept failing after {} retries: {error}",
                retry.max_retries
            )));
        }
        let wait = match error {
            AgentError::RateLimited {
                reset_at: Some(reset_at),
                ..
            } => {
                let wait = reset_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                if wait > retry.max_rate_limit_wait {
                    return Err(Stop::Failed(format!(
                        "{error}; the reset is {}s away, longer than the longest wait ({}s)",
                        wait.as_secs(),
                        retry.max_rate_limit_wait.as_secs()
                    )));
                }
                wait
            }
            _ => retry.backoff(retries.transient),
        };
        let decision = match error {
            // Said once per wait, with the time: a usage limit can be hours away.
            AgentError::RateLimited {
                reset_at: Some(reset_at),
                ..
            } => format!(
                "the usage limit is reached until {} (in {}); waiting for the reset (retry {} of {})",
                utc_time_of_day(*reset_at),
                super::wording::in_words(wait),
                retries.transient,
                retry.max_retries
            ),
            _ => format!(
                "{error}; retry {} of {} in {:.1}s",
                retries.transient,
                retry.max_retries,
                wait.as_secs_f64()
            ),
        };
        self.emit_decision(iteration, decision);
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            () = self.cancel.cancelled() => Err(Stop::Cancelled),
        }
    }

    /// The run-wide pause for a failure that looks like an outage: `None` when there is no
    /// outage (yet) and the task retries on its own, else how the pause ended for this loop
    /// (go on and call again, or the run stops).
    fn pause_for_outage(&self, iteration: u32, error: &AgentError) -> Option<Result<(), Stop>> {
        match self.context.outage.failed(&self.context.config.retry) {
            AfterFailure::OwnRetry => None,
            AfterFailure::Paused {
                failures,
                wait,
                announce,
            } => {
                if announce {
                    self.emit_decision(
                        iteration,
                        format!(
                            "the API has failed {failures} times in a row; waiting {} s before trying again (the whole run pauses)",
                            wait.as_secs_f64().ceil()
                        ),
                    );
                }
                // The call is made again once the pause is over (`Outage::before_call`), and
                // counts against no retry of the task's own.
                Some(Ok(()))
            }
            AfterFailure::GiveUp { paused } => {
                let cause = format!(
                    "the model API kept failing ({error}); the run paused {} s in all, as long as api.max_outage lets it",
                    paused.as_secs()
                );
                Some(Err(self.halt(
                    iteration,
                    error.kind(),
                    cause,
                    OUTAGE_ADVICE,
                )))
            }
        }
    }

    /// Why the task failed when its last round's checks still fail.
    fn still_failing(&self, check: &FailedCheck) -> String {
        let iterations = match self.task.max_iterations {
            1 => String::from("1 iteration"),
            count => format!("{count} iterations"),
        };
        format!(
            "verification still fails after {iterations}: `{}` {}",
            check.command,
            describe_check(check)
        )
    }
}

/// `at` as a time of day in UTC, `HH:MM:SS UTC`.
fn utc_time_of_day(at: SystemTime) -> String {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
        % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// What to do when the API has been out longer than the run may wait.
const OUTAGE_ADVICE: &str = "check the API's status (status.anthropic.com) and the network to it (ANTHROPIC_BASE_URL, a proxy), or raise api.max_outage";

/// Whether a failed call says the API is failing for everyone (5xx, overloaded, no
/// connection), which the run's outage handles; a rate limit is the account's, not an outage.
fn is_outage(error: &AgentError) -> bool {
    matches!(error, AgentError::Api { .. }) && error.is_transient()
}

fn describe_check(check: &FailedCheck) -> String {
    match (check.timed_out, check.exit_code) {
        (true, _) => String::from("timed out"),
        (false, Some(code)) => format!("exited with status {code}"),
        (false, None) => String::from("was killed by a signal"),
    }
}
