//! Budgets in the task's loop: a reservation before each call (or the stop a spent budget
//! calls for), the call's limits taken from it, and turn escalations written down.

use redact::Redacted;
use session_store::{NewEvent, total_tokens};

use super::{Stop, TaskLoop};
use crate::budget::{Amount, Reservation, Reserved, TURNS_ESCALATED};

impl TaskLoop {
    /// Reserves what the next call may spend under every budget that covers it. A spent
    /// task or milestone budget blocks the task; a spent run budget stops the run's work on
    /// it; while calls in flight hold all that is left, waits for one to give some back.
    pub(super) async fn reserve_budget(&mut self, iteration: u32) -> Result<Reservation, Stop> {
        // The previous call is in the ledger by now: give back what it held.
        self.reservation = None;
        // What the claim read of the task's own budget is as fresh as a read now, for the
        // first call: only this loop spends from it, and it has not called yet.
        let mut claimed = self.claimed_budget.take();
        loop {
            let budgets = self.context.budgets.clone();
            let released = budgets.released();
            tokio::pin!(released);
            released.as_mut().enable();
            let reader = budgets.clone();
            let (task, milestone) = (self.task.id, self.task.milestone);
            let reserved = self
                .context
                .ledger(move |store| reader.reserve(store, task, milestone, claimed))
                .await?;
            // A wait for calls in flight ends in a read of what they spent.
            claimed = None;
            match reserved {
                Reserved::Granted(reservation) => {
                    // Say once per run of the task what its budgets leave it, so that a
                    // person watching sees the limit before it bites.
                    if !self.called
                        && let Some(limit) = describe_limit(&reservation)
                    {
                        self.emit_decision(iteration, format!("within budget: {limit}"));
                    }
                    return Ok(reservation);
                }
                Reserved::Spent(spent) => {
                    return Err(if spent.run {
                        self.emit_decision(
                            iteration,
                            format!("{}; the run starts no new call", spent.reason),
                        );
                        Stop::RunBudget(spent.reason)
                    } else {
                        self.emit_decision(
                            iteration,
                            format!(
                                "{}; raise it with `baton task retry {task} --max-cost USD` (or --max-tokens) to continue",
                                spent.reason
                            ),
                        );
                        Stop::Blocked(spent.reason)
                    });
                }
                Reserved::Wait => {
                    tokio::select! {
                        () = released => {}
                        () = self.cancel.cancelled() => return Err(Stop::Cancelled),
                    }
                }
            }
        }
    }

    /// Whether the streamed usage of the call under way passed its token limit.
    pub(super) fn over_token_limit(&self, streamed: &agent::Usage) -> bool {
        self.reservation
            .as_ref()
            .and_then(|reservation| reservation.max_tokens)
            .is_some_and(|limit| total_tokens(streamed) > limit)
    }

    /// Counts what the recorded call spent against the budgets that cover it.
    pub(super) fn settle_budget(&mut self, spent: Amount) {
        if let Some(reservation) = &mut self.reservation {
            reservation.settle(spent);
        }
    }

    /// Whether the call under way had a money limit from a budget.
    pub(super) fn call_had_cost_limit(&self) -> bool {
        self.reservation
            .as_ref()
            .is_some_and(|reservation| reservation.max_cost.is_some())
    }

    /// Writes down that the turn budget grew from `from` to `to`.
    pub(super) async fn record_escalation(&self, from: u32, to: u32) -> Result<(), Stop> {
        let task = self.task.id;
        let detail = self
            .context
            .redactor
            .redact_owned(format!("{{\"from\":{from},\"to\":{to}}}"));
        self.context
            .ledger(move |store| {
                store.append_event(&NewEvent {
                    task: Some(task),
                    session: None,
                    kind: Redacted::trusted(TURNS_ESCALATED),
                    detail: detail.clone(),
                })
            })
            .await?;
        Ok(())
    }
}

/// `this call may spend up to $0.05 and 10k tokens`; `None` when no budget limits it.
fn describe_limit(reservation: &Reservation) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(cost) = reservation.max_cost {
        parts.push(session_store::usd(cost));
    }
    if let Some(tokens) = reservation.max_tokens {
        parts.push(format!("{tokens} tokens"));
    }
    (!parts.is_empty()).then(|| format!("this call may spend up to {}", parts.join(" and ")))
}
