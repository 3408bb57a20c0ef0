//! `baton usage`: what the agent calls cost, by task, milestone or session.

use serde::Serialize;
use session_store::{SessionFilter, Store, Task, TaskFilter, Totals};

use crate::error::{Outcome, Result};
use crate::flags::UsageBy;
use crate::human::{self, Align, Table};
use crate::output::Ui;
use crate::settings::Context;
use crate::views::{MilestoneNames, TotalsJson};

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
}

pub fn run(by: UsageBy, context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    let tasks = store.tasks(&TaskFilter::default())?;
    let rows = match by {
        UsageBy::Task => task_rows(&tasks),
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

fn task_rows(tasks: &[Task]) -> Vec<Row> {
    tasks
        .iter()
        .map(|task| Row {
            key: Key::Task {
                task_id: task.id.get(),
                title: task.title.clone(),
            },
            label: format!("{}  {}", task.id, human::truncate(&task.title, 40)),
            status: Some(task.status.to_string()),
            totals: task.totals,
        })
        .collect()
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
        })
        .collect())
}

/// The rows as a table, with the total under them.
fn table(by_word: &str, rows: &[Row], total: Totals) -> String {
    let mut table = Table::new(&[
        (by_word.to_uppercase().as_str(), Align::Left),
        ("STATUS", Align::Left),
        ("CALLS", Align::Right),
        ("TURNS", Align::Right),
        ("INPUT", Align::Right),
        ("OUTPUT", Align::Right),
        ("CACHE READ", Align::Right),
        ("CACHE WRITE", Align::Right),
        ("COST", Align::Right),
    ]);
    let figures = rows
        .iter()
        .map(|row| (row.label.as_str(), row.status.as_deref(), &row.totals))
        .chain(std::iter::once(("total", None, &total)));
    for (label, status, totals) in figures {
        let usage = &totals.usage;
        table.row(vec![
            label.to_owned(),
            status.unwrap_or_default().to_owned(),
            totals.agent_calls.to_string(),
            totals.turns.to_string(),
            human::tokens(usage.input_tokens),
            human::tokens(usage.output_tokens),
            human::tokens(usage.cache_read_tokens),
            human::tokens(usage.cache_creation_tokens),
            human::dollars(totals.cost),
        ]);
    }
    table.render()
}
