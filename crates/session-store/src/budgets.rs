//! Spending limits on tasks and milestones, and what is left of them.
//!
//! A budget is a most-cost and a most-tokens, either or both. What it is measured against is
//! not kept apart: it is the running totals the same task row (or, for a milestone, its
//! tasks' rows) already keeps, written in the transaction that records each agent call. So a
//! budget and its spend are read in one snapshot and can never disagree with the ledger.
//!
//! Tokens are counted as the ledger counts them: input, output, cache read and cache
//! creation together.

use std::fmt;

use crate::db::{Connection, OptionalExtension, Row, params};
use agent::Usage;
use serde_json::json;

use crate::error::{Failure, Missing, StoreError};
use crate::events::insert_event;
use crate::ids::{MilestoneId, TaskId};
use crate::store::{Store, Write};
use crate::units::{Cost, Timestamp, Totals};

/// The event kind of a budget set: `{"max_cost_nano_usd", "max_tokens"}` as they are after the
/// change (`null` for no limit); a milestone's names no task and adds `"milestone"`.
pub const BUDGET_SET: &str = "budget_set";

/// The limits of one budget. `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Budget {
    pub max_cost: Option<Cost>,
    pub max_tokens: Option<u64>,
}

/// What a budget covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    Task(TaskId),
    Milestone(MilestoneId),
}

/// A budget and what has been spent against it, read together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStatus {
    pub budget: Budget,
    /// Everything the agent calls it covers added up to.
    pub spent: Totals,
}

impl Budget {
    /// No limit at all.
    pub const NONE: Budget = Budget {
        max_cost: None,
        max_tokens: None,
    };

    pub fn is_none(&self) -> bool {
        self.max_cost.is_none() && self.max_tokens.is_none()
    }

    /// This budget with every limit `other` sets replacing this one's.
    pub fn overridden_by(self, other: Budget) -> Budget {
        Budget {
            max_cost: other.max_cost.or(self.max_cost),
            max_tokens: other.max_tokens.or(self.max_tokens),
        }
    }
}

/// Every token a usage counts: input, output, cache read and cache creation.
pub fn total_tokens(usage: &Usage) -> u64 {
    usage
        .input_tokens
        .saturating_add(usage.output_tokens)
        .saturating_add(usage.cache_read_tokens)
        .saturating_add(usage.cache_creation_tokens)
}

impl BudgetStatus {
    /// The tokens spent, counted as budgets count them.
    pub fn spent_tokens(&self) -> u64 {
        total_tokens(&self.spent.usage)
    }

    /// What is left of the money limit (zero when spent or overspent); `None` without one.
    pub fn cost_left(&self) -> Option<Cost> {
        self.budget.max_cost.map(|limit| {
            Cost::from_nano_usd(
                limit
                    .as_nano_usd()
                    .saturating_sub(self.spent.cost.as_nano_usd())
                    .max(0),
            )
        })
    }

    /// What is left of the token limit (zero when spent); `None` without one.
    pub fn tokens_left(&self) -> Option<u64> {
        self.budget
            .max_tokens
            .map(|limit| limit.saturating_sub(self.spent_tokens()))
    }
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetScope::Task(id) => write!(f, "task {id}"),
            BudgetScope::Milestone(id) => write!(f, "milestone {id}"),
        }
    }
}

impl Store {
    /// The budget of a task or milestone and what has been spent against it.
    pub fn budget(&self, scope: BudgetScope) -> Result<BudgetStatus, StoreError> {
        match scope {
            // A task's limits and totals are one row: one statement.
            BudgetScope::Task(_) => {
                self.read_statement("read a budget", |connection| read_budget(connection, scope))
            }
            BudgetScope::Milestone(_) => {
                self.read("read a budget", |connection| read_budget(connection, scope))
            }
        }
    }

    /// Sets the limits `budget` gives on a task or milestone, keeping the ones it leaves
    /// `None`. A limit at or below what is already spent is refused
    /// ([`StoreError::Invalid`], saying what was spent): it would leave nothing to spend.
    pub fn set_budget(&mut self, scope: BudgetScope, budget: Budget) -> Result<(), StoreError> {
        self.write(SET_BUDGET, |transaction| {
            set_budget(transaction, scope, budget)
        })
    }
}

const SET_BUDGET: &str = "set a budget";

fn set_budget(transaction: &Write<'_>, scope: BudgetScope, budget: Budget) -> Result<(), Failure> {
    let status = read_budget(transaction, scope)?;
    if let Some(limit) = budget.max_cost
        && limit <= status.spent.cost
    {
        return Err(StoreError::Invalid {
            field: "max cost",
            reason: format!(
                "{scope} has already spent {}; a budget of {} would leave nothing to spend",
                usd(status.spent.cost),
                usd(limit)
            ),
        }
        .into());
    }
    if let Some(limit) = budget.max_tokens
        && limit <= status.spent_tokens()
    {
        return Err(StoreError::Invalid {
            field: "max tokens",
            reason: format!(
                "{scope} has already spent {} tokens; a budget of {limit} would leave nothing to spend",
                status.spent_tokens()
            ),
        }
        .into());
    }
    let merged = status.budget.overridden_by(budget);
    let cost = merged.max_cost.map(Cost::as_nano_usd);
    let tokens = merged
        .max_tokens
        .map(|limit| i64::try_from(limit).unwrap_or(i64::MAX));
    match scope {
        BudgetScope::Task(id) => {
            transaction
                .prepare_cached(
                    "UPDATE tasks SET max_cost_nano_usd = ?2, max_tokens = ?3 WHERE id = ?1",
                )?
                .execute(params![id, cost, tokens])?;
            let detail = json!({"max_cost_nano_usd": cost, "max_tokens": tokens});
            insert_event(
                transaction,
                Timestamp::now(),
                Some(id),
                None,
                BUDGET_SET,
                detail,
            )?;
        }
        BudgetScope::Milestone(id) => {
            transaction
                .prepare_cached(
                    "UPDATE milestones SET max_cost_nano_usd = ?2, max_tokens = ?3 WHERE id = ?1",
                )?
                .execute(params![id, cost, tokens])?;
            // A milestone's limit changes leave a trace too; its event names no task.
            let detail =
                json!({"milestone": id.get(), "max_cost_nano_usd": cost, "max_tokens": tokens});
            insert_event(
                transaction,
                Timestamp::now(),
                None,
                None,
                BUDGET_SET,
                detail,
            )?;
        }
    }
    Ok(())
}

/// A dollar amount as people read a budget: cents, or more digits when cents would hide it.
pub fn usd(cost: Cost) -> String {
    let nano = cost.as_nano_usd();
    if nano % 10_000_000 == 0 {
        format!("${:.2}", cost.as_usd())
    } else {
        format!("${:.4}", cost.as_usd())
    }
}

pub(crate) fn read_budget(
    connection: &Connection,
    scope: BudgetScope,
) -> Result<BudgetStatus, Failure> {
    let (budget, spent) = match scope {
        // The limits and the totals are one row of `tasks`, read at once.
        BudgetScope::Task(id) => connection
            .prepare_cached(&format!(
                "SELECT max_cost_nano_usd, max_tokens, {} FROM tasks WHERE id = ?1",
                crate::sql::TOTALS_COLUMNS
            ))?
            .query_row([id], |row| {
                Ok((limits_at(row, 0)?, crate::sql::totals_at(row, 2)?))
            })
            .optional()?
            .ok_or(StoreError::NotFound(Missing::Task(id)))?,
        BudgetScope::Milestone(id) => {
            let limits = connection
                .prepare_cached(
                    "SELECT max_cost_nano_usd, max_tokens FROM milestones WHERE id = ?1",
                )?
                .query_row([id], |row| limits_at(row, 0))
                .optional()?
                .ok_or(StoreError::NotFound(Missing::Milestone(id)))?;
            (limits, crate::usage::milestone_totals(connection, id)?)
        }
    };
    Ok(BudgetStatus { budget, spent })
}

/// The limits in the two columns from `first`: the cost in nano-dollars, the tokens.
pub(crate) fn limits_at(row: &Row<'_>, first: usize) -> crate::db::Result<Budget> {
    let cost: Option<i64> = row.get(first)?;
    let tokens: Option<i64> = row.get(first + 1)?;
    Ok(Budget {
        max_cost: cost.map(Cost::from_nano_usd),
        max_tokens: tokens.map(|limit| u64::try_from(limit).unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_left_never_goes_below_zero() {
        let status = BudgetStatus {
            budget: Budget {
                max_cost: Some(Cost::from_usd(2.0)),
                max_tokens: Some(100),
            },
            spent: Totals {
                cost: Cost::from_usd(2.5),
                usage: Usage {
                    input_tokens: 60,
                    output_tokens: 10,
                    cache_read_tokens: 20,
                    cache_creation_tokens: 5,
                },
                ..Totals::default()
            },
        };
        assert_eq!(status.cost_left(), Some(Cost::ZERO));
        assert_eq!(status.spent_tokens(), 95);
        assert_eq!(status.tokens_left(), Some(5));
        assert_eq!(BudgetStatus::default().cost_left(), None);
    }

    #[test]
    fn dollars_read_as_cents_unless_that_hides_them() {
        assert_eq!(usd(Cost::from_usd(2.0)), "$2.00");
        assert_eq!(usd(Cost::from_usd(0.05)), "$0.05");
        assert_eq!(usd(Cost::from_usd(0.0123)), "$0.0123");
    }
}
