//! `baton usage`: what the agent calls cost, by task, milestone or session.

use serde::Serialize;
use session_store::{Budget, BudgetScope, SessionFilter, Store, Task, TaskFilter, Totals, usd};

use crate::error::{Outcome, Result};
use crate::flags::UsageBy;
use crate::human::{self, Align, Table};
use crate::output::Ui;
use crate::settings::Context;
use crate::views::{BudgetJson, MilestoneNames, TotalsJson};

/// `usage --json`: the grouping, a row per group, and the grand total.
#[derive(Debug, Serialize)]
struct Usage<'a> {
    by: &'static str,
    rows: Vec<RowJson<'a>>,
    total: TotalsJson,
}

/// A row of `usage --json`: what it is, its state when it has one, and its figures.
#[derive(Debug, Serialize)]
struct RowJson<'a> {
    #[serde(flatten)]
    key: &'a Key,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(flatten)]
    totals: TotalsJson,
    /// `max_cost_usd` and `max_tokens`, when the task or milestone has a budget.
    #[serde(flatten)]
    budget: BudgetJson,
}

/// What a row counts, as its JSON names it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Key {
    Task {
        task_id: i64,
        title: String,
    },
    /// `None` for the tasks in no milestone.
    Milestone {
        milestone: Option<String>,
    },
    Session {
        session_id: String,
        task_id: i64,
        milestone: Option<String>,
    },
}

/// One row of the usage table: what it is, and its figures.
struct Row {
    key: Key,
    label: String,
    status: Option<String>,
    totals: Totals,
    budget: Budget,
}

pub fn run(by: UsageBy, context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    let tasks = store.tasks(&TaskFilter::default())?;
    let rows = match by {
        UsageBy::Task => task_rows(&store, &tasks)?,
        UsageBy::Milestone => milestone_rows(&store, &tasks)?,
        UsageBy::Session => session_rows(&store)?,
    };
    // Every call belongs to exactly one task, so the tasks' totals are the grand total
    // whatever the grouping.
    let mut total = Totals::default();
    for task in &tasks {
        total += task.totals;
    }
    let by_word = match by {
        UsageBy::Task => "task",
        UsageBy::Milestone => "milestone",
        UsageBy::Session => "session",
    };
    if context.json {
        ui.json(&Usage {
            by: by_word,
            rows: rows
                .iter()
                .map(|row| RowJson {
                    key: &row.key,
                    status: row.status.as_deref(),
                    totals: TotalsJson::new(&row.totals),
                    budget: BudgetJson::new(&row.budget),
                })
                .collect(),
            total: TotalsJson::new(&total),
        })?;
    } else if rows.is_empty() {
        ui.print("Nothing recorded yet: `baton run` runs tasks and records what they use.\n");
    } else {
        ui.print(&table(by_word, &rows, total));
    }
    Ok(Outcome::Success)
}

fn task_rows(store: &Store, tasks: &[Task]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for task in tasks {
        rows.push(Row {
            key: Key::Task {
                task_id: task.id.get(),
                title: task.title.clone(),
            },
            label: format!("{}  {}", task.id, human::truncate(&task.title, 40)),
            status: Some(task.status.to_string()),
            totals: task.totals,
            budget: store.budget(BudgetScope::Task(task.id))?.budget,
        });
    }
    Ok(rows)
}

/// A row per milestone, then one for the tasks in none, when there are such tasks.
fn milestone_rows(store: &Store, tasks: &[Task]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for milestone in store.milestones()? {
        rows.push(Row {
            label: milestone.name.clone(),
            key: Key::Milestone {
                milestone: Some(milestone.name),
            },
            status: None,
            totals: store.milestone_usage(milestone.id)?,
            budget: store.budget(BudgetScope::Milestone(milestone.id))?.budget,
        });
    }
    let outside: Vec<&Task> = tasks
        .iter()
        .filter(|task| task.milestone.is_none())
        .collect();
    if !outside.is_empty() {
        let mut totals = Totals::default();
        for task in outside {
            totals += task.totals;
        }
        rows.push(Row {
            key: Key::Milestone { milestone: None },
            label: String::from("(no milestone)"),
            status: None,
            totals,
            budget: Budget::NONE,
        });
    }
    Ok(rows)
}

fn session_rows(store: &Store) -> Result<Vec<Row>> {
    let names = MilestoneNames::load(store)?;
    Ok(store
        .sessions(&SessionFilter::default())?
        .into_iter()
        .map(|session| Row {
            key: Key::Session {
                session_id: session.id.to_string(),
                task_id: session.task.get(),
                milestone: names.name(session.milestone).map(str::to_owned),
            },
            label: format!("{}  task {}", session.id, session.task),
            status: Some(session.status.to_string()),
            totals: session.totals,
            budget: Budget::NONE,
        })
        .collect())
}

/// The rows as a table, with the total under them; a BUDGET column when a row has one.
fn table(by_word: &str, rows: &[Row], total: Totals) -> String {
    let budgets = rows.iter().any(|row| !row.budget.is_none());
    let by_title = by_word.to_uppercase();
    let mut columns = vec![
        (by_title.as_str(), Align::Left),
        ("STATUS", Align::Left),
        ("CALLS", Align::Right),
        ("TURNS", Align::Right),
        ("INPUT", Align::Right),
        ("OUTPUT", Align::Right),
        ("CACHE READ", Align::Right),
        ("CACHE WRITE", Align::Right),
        ("COST", Align::Right),
    ];
    if budgets {
        columns.push(("BUDGET", Align::Right));
    }
    let mut table = Table::new(&columns);
    let figures = rows
        .iter()
        .map(|row| {
            let budget = &row.budget;
            (
                row.label.as_str(),
                row.status.as_deref(),
                &row.totals,
                *budget,
            )
        })
        .chain(std::iter::once(("total", None, &total, Budget::NONE)));
    for (label, status, totals, budget) in figures {
        let usage = &totals.usage;
        let mut cells = vec![
            label.to_owned(),
            status.unwrap_or_default().to_owned(),
            totals.agent_calls.to_string(),
            totals.turns.to_string(),
            human::tokens(usage.input_tokens),
            human::tokens(usage.output_tokens),
            human::tokens(usage.cache_read_tokens),
            human::tokens(usage.cache_creation_tokens),
            human::dollars(totals.cost),
        ];
        if budgets {
            cells.push(budget_cell(&budget));
        }
        table.row(cells);
    }
    table.render()
}

/// `$2.00`, `500k tokens`, both, or `-`.
fn budget_cell(budget: &Budget) -> String {
    let mut parts = Vec::new();
    if let Some(cost) = budget.max_cost {
        parts.push(usd(cost));
    }
    if let Some(tokens) = budget.max_tokens {
        parts.push(format!("{} tokens", human::tokens(tokens)));
    }
    if parts.is_empty() {
        String::from("-")
    } else {
        parts.join(", ")
    }
}
