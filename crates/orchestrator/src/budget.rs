//! Budgets during a run: before each agent call, what is left of every budget that covers it
//! (its task's, its milestone's, the run's), and reservations, so that calls running at once
//! under one budget cannot together overspend it.
//!
//! What has been spent comes from the ledger: the task and milestone totals that the store
//! updates in the transaction recording each call. What calls in flight may still spend is
//! kept here, in process: a run is one process, and every call under a task's or a run's
//! budget is made by it. (Two runners sharing one milestone each reserve only their own calls;
//! the milestone's spend still comes from the ledger, so they overspend by at most the calls
//! in flight at once, as the run's concurrency does.)
//!
//! A reservation is taken in the same critical section as the ledger read it is based on, and
//! given back only after the call's record is committed, so a budget is never seen with a
//! call counted neither as spent nor as reserved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use session_store::{
    Budget, BudgetScope, BudgetStatus, Cost, MilestoneId, Store, StoreError, TaskId, usd,
};
use tokio::sync::Notify;

/// The event kind of a turn escalation: `{"from", "to"}`, the turn budgets of one call and
/// the next. `baton task show` lists them.
pub const TURNS_ESCALATED: &str = "turns_escalated";

/// The run's budget, what the run spent, and what its calls in flight have reserved.
#[derive(Clone)]
pub(crate) struct Budgets {
    shared: Arc<Shared>,
}

/// Money and tokens together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    pub cost: Cost,
    pub tokens: u64,
}

/// What a run had to spend and what it spent, for its report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSpend {
    /// The run's own budget (`baton run --max-cost/--max-tokens`); no limit when `None`.
    pub budget: Budget,
    /// What the agent calls this run recorded added up to.
    pub spent: Amount,
}

/// Why no call may start: a budget that covers it is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spent {
    /// Whether it is the run's budget (which stops the run) rather than the task's or its
    /// milestone's (which blocks the task).
    pub(crate) run: bool,
    /// `budget spent: $2.00 of $2.00 (task)`.
    pub(crate) reason: String,
}

/// What reserving found.
pub(crate) enum Reserved {
    /// The call may start, within these limits.
    Granted(Reservation),
    /// A budget is spent.
    Spent(Spent),
    /// Other calls in flight hold what is left; wait for one to give some back.
    Wait,
}

/// What one call may spend, held from before it starts until its record is committed.
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    scopes: Vec<BudgetScope>,
    /// Held against each of `scopes`.
    held: Amount,
    /// Held against the run's budget.
    held_by_run: Amount,
    /// The call's limits: `None` where no budget covers it.
    pub(crate) max_cost: Option<Cost>,
    pub(crate) max_tokens: Option<u64>,
}

struct Shared {
    budget: Budget,
    /// How many calls may run at once, which is how many shares a shared budget is cut in.
    concurrency: u64,
    state: Mutex<State>,
    released: Notify,
}

#[derive(Default)]
struct State {
    run_spent: Amount,
    run_reserved: Amount,
    reserved: HashMap<BudgetScope, Amount>,
    /// Set once the run's budget is spent: the run starts no new call.
    run_stopped: Option<String>,
}

impl Budgets {
    pub(crate) fn new(budget: Budget, concurrency: usize) -> Budgets {
        Budgets {
            shared: Arc::new(Shared {
                budget,
                concurrency: u64::try_from(concurrency.max(1)).unwrap_or(u64::MAX),
                state: Mutex::new(State::default()),
                released: Notify::new(),
            }),
        }
    }

    /// Why the run's budget stopped it, once it has.
    pub(crate) fn run_stopped(&self) -> Option<String> {
        self.shared.lock().run_stopped.clone()
    }

    pub(crate) fn spend(&self) -> RunSpend {
        RunSpend {
            budget: self.shared.budget,
            spent: self.shared.lock().run_spent,
        }
    }

    /// Completes when some reservation is given back after it was made.
    pub(crate) fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.released.notified()
    }

    /// Reserves what a call of `task` may spend, reading the ledger under the lock so that
    /// the read and the reservation are one step. `task_budget` is the task's own budget
    /// when it was just read (with the claim), to use instead of reading it again.
    pub(crate) fn reserve(
        &self,
        store: &Store,
        task: TaskId,
        milestone: Option<MilestoneId>,
        task_budget: Option<BudgetStatus>,
    ) -> Result<Reserved, StoreError> {
        let mut scopes = vec![BudgetScope::Task(task)];
        scopes.extend(milestone.map(BudgetScope::Milestone));
        let mut statuses = Vec::with_capacity(scopes.len());
        for scope in &scopes {
            statuses.push(match (scope, task_budget) {
                (BudgetScope::Task(_), Some(status)) => status,
                _ => store.budget(*scope)?,
            });
        }
        let mut state = self.shared.lock();
        Ok(self.shared.decide(&mut state, &scopes, &statuses))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides under the lock: spent, wait, or a reservation of what the call may spend.
    fn decide(
        self: &Arc<Self>,
        state: &mut State,
        scopes: &[BudgetScope],
        statuses: &[BudgetStatus],
    ) -> Reserved {
        if let Some(reason) = &state.run_stopped {
            return Reserved::Spent(Spent {
                run: true,
                reason: reason.clone(),
            });
        }
        let mut limit = Limit::default();
        for (scope, status) in scopes.iter().zip(statuses) {
            let reserved = state.reserved.get(scope).copied().unwrap_or_default();
            let name = match scope {
                BudgetScope::Task(_) => "task",
                BudgetScope::Milestone(_) => "milestone",
            };
            // A task makes one call at a time, so its call may have all that is left; a
            // milestone's is cut in shares among the calls that may run at once.
            let shares = match scope {
                BudgetScope::Task(_) => 1,
                BudgetScope::Milestone(_) => self.concurrency,
            };
            let spent = Amount {
                cost: status.spent.cost,
                tokens: status.spent_tokens(),
            };
            if let Err(spent) = limit.narrow(status.budget, spent, reserved, shares, name) {
                return Reserved::Spent(Spent {
                    run: false,
                    reason: spent,
                });
            }
        }
        if let Err(reason) = limit.narrow(
            self.budget,
            state.run_spent,
            state.run_reserved,
            self.concurrency,
            "run",
        ) {
            state.run_stopped = Some(reason.clone());
            return Reserved::Spent(Spent { run: true, reason });
        }
        if limit.exhausted {
            return Reserved::Wait;
        }
        let held = Amount {
            cost: limit.cost.unwrap_or(Cost::ZERO),
            tokens: limit.tokens.unwrap_or(0),
        };
        for scope in scopes {
            add(state.reserved.entry(*scope).or_default(), held);
        }
        add(&mut state.run_reserved, held);
        Reserved::Granted(Reservation {
            shared: Arc::clone(self),
            scopes: scopes.to_vec(),
            held,
            held_by_run: held,
            max_cost: limit.cost,
            max_tokens: limit.tokens,
        })
    }
}

/// The narrowest of the budgets seen so far.
#[derive(Default)]
struct Limit {
    cost: Option<Cost>,
    tokens: Option<u64>,
    /// Some budget has room left, but calls in flight hold all of it.
    exhausted: bool,
}

impl Limit {
    /// Narrows the call's limits to what `budget` leaves, or says it is spent.
    fn narrow(
        &mut self,
        budget: Budget,
        spent: Amount,
        reserved: Amount,
        shares: u64,
        name: &str,
    ) -> Result<(), String> {
        if let Some(max) = budget.max_cost {
            let left = max.as_nano_usd().saturating_sub(spent.cost.as_nano_usd());
            if left <= 0 {
                return Err(format!(
                    "budget spent: {} of {} ({name})",
                    usd(spent.cost),
                    usd(max)
                ));
            }
            let free = left.saturating_sub(reserved.cost.as_nano_usd());
            // Both positive here, so the ceiling of the quotient is this.
            let shares = i64::try_from(shares).unwrap_or(i64::MAX).max(1);
            let share = (left - 1) / shares + 1;
            let grant = free.min(share);
            self.exhausted |= grant <= 0;
            let grant = Cost::from_nano_usd(grant.max(0));
            self.cost = Some(self.cost.map_or(grant, |cost| cost.min(grant)));
        }
        if let Some(max) = budget.max_tokens {
            let left = max.saturating_sub(spent.tokens);
            if left == 0 {
                return Err(format!(
                    "budget spent: {} of {max} tokens ({name})",
                    spent.tokens
                ));
            }
            let free = left.saturating_sub(reserved.tokens);
            let grant = free.min(left.div_ceil(shares.max(1)));
            self.exhausted |= grant == 0;
            self.tokens = Some(self.tokens.map_or(grant, |tokens| tokens.min(grant)));
        }
        Ok(())
    }
}

impl Reservation {
    /// The call's record is written (or about to be, with the task's finish): the run counts
    /// what it spent at once, and the task's and milestone's reservations shrink to it until
    /// the reservation is dropped, by when the ledger holds it.
    pub(crate) fn settle(&mut self, spent: Amount) {
        let mut state = self.shared.lock();
        sub(&mut state.run_reserved, self.held_by_run);
        self.held_by_run = Amount::default();
        add(&mut state.run_spent, spent);
        for scope in &self.scopes {
            let entry = state.reserved.entry(*scope).or_default();
            sub(entry, self.held);
            add(entry, spent);
        }
        self.held = spent;
        drop(state);
        self.shared.released.notify_waiters();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        sub(&mut state.run_reserved, self.held_by_run);
        for scope in &self.scopes {
            if let Some(entry) = state.reserved.get_mut(scope) {
                sub(entry, self.held);
                if *entry == Amount::default() {
                    state.reserved.remove(scope);
                }
            }
        }
        drop(state);
        self.shared.released.notify_waiters();
    }
}

fn add(total: &mut Amount, amount: Amount) {
    total.cost += amount.cost;
    total.tokens = total.tokens.saturating_add(amount.tokens);
}

fn sub(total: &mut Amount, amount: Amount) {
    total.cost = Cost::from_nano_usd(
        total
            .cost
            .as_nano_usd()
            .saturating_sub(amount.cost.as_nano_usd())
            .max(0),
    );
    total.tokens = total.tokens.saturating_sub(amount.tokens);
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_store::Totals;

    fn status(max_usd: f64, spent_usd: f64) -> BudgetStatus {
        BudgetStatus {
            budget: Budget {
                max_cost: Some(Cost::from_usd(max_usd)),
                max_tokens: None,
            },
            spent: Totals {
                cost: Cost::from_usd(spent_usd),
                ..Totals::default()
            },
        }
    }

    fn decide(budgets: &Budgets, task: i64, status: BudgetStatus) -> Reserved {
        let mut state = budgets.shared.lock();
        budgets
            .shared
            .decide(&mut state, &[BudgetScope::Task(TaskId(task))], &[status])
    }

    #[test]
    fn a_spent_task_budget_says_how_much_of_how_much() {
        let budgets = Budgets::new(Budget::NONE, 1);
        let Reserved::Spent(spent) = decide(&budgets, 1, status(2.0, 2.0)) else {
            panic!("a spent budget refuses the call");
        };
        assert_eq!(spent.reason, "budget spent: $2.00 of $2.00 (task)");
        assert!(!spent.run);
        let Reserved::Granted(reservation) = decide(&budgets, 1, status(2.0, 0.5)) else {
            panic!("a budget with room grants it");
        };
        assert_eq!(reservation.max_cost, Some(Cost::from_usd(1.5)));
    }

    #[test]
    fn concurrent_calls_share_the_run_budget_and_give_back_what_they_did_not_spend() {
        let run = Budget {
            max_cost: Some(Cost::from_usd(1.0)),
            max_tokens: None,
        };
        let budgets = Budgets::new(run, 4);
        let unlimited = BudgetStatus::default();
        let mut held = Vec::new();
        for task in 1..=4 {
            let Reserved::Granted(reservation) = decide(&budgets, task, unlimited) else {
                panic!("each of four calls gets a share");
            };
            assert_eq!(reservation.max_cost, Some(Cost::from_usd(0.25)));
            held.push(reservation);
        }
        assert!(matches!(decide(&budgets, 5, unlimited), Reserved::Wait));
        let mut first = held.remove(0);
        first.settle(Amount {
            cost: Cost::from_usd(0.1),
            tokens: 0,
        });
        let Reserved::Granted(next) = decide(&budgets, 5, unlimited) else {
            panic!("what the first call did not spend is free again");
        };
        assert_eq!(next.max_cost, Some(Cost::from_usd(0.15)));
        drop(next);
        for mut reservation in held {
            reservation.settle(Amount {
                cost: Cost::from_usd(0.3),
                tokens: 0,
            });
        }
        let Reserved::Spent(spent) = decide(&budgets, 6, unlimited) else {
            panic!("the run's budget is spent");
        };
        assert!(spent.run);
        assert_eq!(spent.reason, "budget spent: $1.00 of $1.00 (run)");
        assert_eq!(budgets.spend().spent.cost, Cost::from_usd(1.0));
        assert!(budgets.run_stopped().is_some());
    }
}
