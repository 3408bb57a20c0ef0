//! Budgets under stress: every task, milestone and the run get a budget, set so that a
//! script's calls fit in it, and the audit checks that none was spent past its budget by
//! more than the margin Baton promises — one model response per call in flight.

use std::collections::HashMap;

use session_store::{Budget, BudgetScope, Cost, MilestoneId, Store, StoreError};

use crate::stress::audit::{Invariant, Ledger, Violation};

/// The budgets a stress run sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Each task's.
    pub task: Cost,
    /// Each milestone's, shared by its tasks.
    pub milestone: Cost,
    /// The run's.
    pub run: Cost,
}

impl Budgets {
    /// Budgets the scripts' calls fit in (a scripted call costs cents at most), so that the
    /// budgets are kept on every call without changing how any task ends.
    pub const ROOMY: Budgets = Budgets {
        task: Cost::from_nano_usd(5_000_000_000),
        milestone: Cost::from_nano_usd(20_000_000_000),
        run: Cost::from_nano_usd(1_000_000_000_000),
    };

    pub fn run_budget(&self) -> Budget {
        Budget {
            max_cost: Some(self.run),
            max_tokens: None,
        }
    }
}

/// Sets the task and milestone budgets on what `place` added.
pub fn set(
    store: &mut Store,
    budgets: &Budgets,
    tasks: &[session_store::TaskId],
    milestones: &[MilestoneId],
) -> Result<(), StoreError> {
    let dollars = |cost| Budget {
        max_cost: Some(cost),
        max_tokens: None,
    };
    for task in tasks {
        store.set_budget(BudgetScope::Task(*task), dollars(budgets.task))?;
    }
    for milestone in milestones {
        store.set_budget(
            BudgetScope::Milestone(*milestone),
            dollars(budgets.milestone),
        )?;
    }
    Ok(())
}

/// No task, milestone or run spent past its budget by more than one response per call that
/// could be in flight under it (the largest recorded call stands for "one response").
pub fn check(
    store: &Store,
    ledger: &Ledger,
    run_budget: Cost,
    concurrency: usize,
) -> Result<Vec<Violation>, StoreError> {
    let mut found = Vec::new();
    let largest = ledger
        .calls
        .iter()
        .map(|call| call.cost)
        .max()
        .unwrap_or(Cost::ZERO);
    let margin = |calls: usize| Cost::from_nano_usd(largest.as_nano_usd() * calls as i64);
    let mut by_milestone: HashMap<MilestoneId, Cost> = HashMap::new();
    let mut total = Cost::ZERO;
    for task in &ledger.tasks {
        total += task.totals.cost;
        if let Some(milestone) = task.milestone {
            *by_milestone.entry(milestone).or_default() += task.totals.cost;
        }
        let status = store.budget(BudgetScope::Task(task.id))?;
        if let Some(limit) = status.budget.max_cost
            && status.spent.cost > limit + margin(1)
        {
            found.push(over("task", task.id.to_string(), status.spent.cost, limit));
        }
    }
    for (milestone, spent) in by_milestone {
        let status = store.budget(BudgetScope::Milestone(milestone))?;
        if status.spent.cost != spent {
            found.push(Violation {
                invariant: Invariant::Budget,
                detail: format!(
                    "milestone {milestone}: its budget reads {} spent, its tasks add up to {spent}",
                    status.spent.cost
                ),
            });
        }
        if let Some(limit) = status.budget.max_cost
            && spent > limit + margin(concurrency)
        {
            found.push(over("milestone", milestone.to_string(), spent, limit));
        }
    }
    if total > run_budget + margin(concurrency) {
        found.push(over("run", String::new(), total, run_budget));
    }
    Ok(found)
}

fn over(what: &str, id: String, spent: Cost, limit: Cost) -> Violation {
    Violation {
        invariant: Invariant::Budget,
        detail: format!(
            "{what} {id} spent {spent} of a {limit} budget, more than one response per call in flight past it"
        ),
    }
}
