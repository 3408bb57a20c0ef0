//! `baton usage`: what the agent calls cost, by task, milestone or session.

use serde_json::{Value, json};
use session_store::{SessionFilter, TaskFilter, Totals};

use crate::error::Outcome;
use crate::flags::UsageBy;
use crate::human::{self, Align, Table};
use crate::output;
use crate::settings::Context;
use crate::views::{self, MilestoneNames};

/// One row of the usage table: what it is, and its figures.
struct Row {
    key: Value,
    label: String,
    status: Option<String>,
    totals: Totals,
}

pub fn run(by: UsageBy, context: &Context) -> anyhow::Result<Outcome> {
    let store = context.open_store()?;
    let names = MilestoneNames::load(&store)?;
    let tasks = store.tasks(&TaskFilter::default())?;
    let rows: Vec<Row> = match by {
        UsageBy::Task => tasks
            .iter()
            .map(|task| Row {
                key: json!({ "task_id": task.id.get(), "title": task.title }),
                label: format!("{}  {}", task.id, human::truncate(&task.title, 40)),
                status: Some(task.status.to_string()),
                totals: task.totals,
            })
            .collect(),
        UsageBy::Milestone => {
            let mut rows = Vec::new();
            for milestone in store.milestones()? {
                rows.push(Row {
                    key: json!({ "milestone": milestone.name }),
                    label: milestone.name.clone(),
                    status: None,
                    totals: store.milestone_usage(milestone.id)?,
                });
            }
            let mut outside = Totals::default();
            let mut any_outside = false;
            for task in tasks.iter().filter(|task| task.milestone.is_none()) {
                outside += task.totals;
                any_outside = true;
            }
            if any_outside {
                rows.push(Row {
                    key: json!({ "milestone": null }),
                    label: String::from("(no milestone)"),
                    status: None,
                    totals: outside,
                });
            }
            rows
        }
        UsageBy::Session => store
            .sessions(&SessionFilter::default())?
            .into_iter()
            .map(|session| Row {
                key: json!({
                    "session_id": session.id.to_string(),
                    "task_id": session.task.get(),
                    "milestone": names.name(session.milestone),
                }),
                label: format!("{}  task {}", session.id, session.task),
                status: Some(session.status.to_string()),
                totals: session.totals,
            })
            .collect(),
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
        let items: Vec<Value> = rows
            .iter()
            .map(|row| {
                let mut object = row.key.clone();
                if let (Value::Object(map), Value::Object(figures)) =
                    (&mut object, views::totals(&row.totals))
                {
                    if let Some(status) = &row.status {
                        map.insert("status".into(), Value::from(status.clone()));
                    }
                    map.extend(figures);
                }
                object
            })
            .collect();
        output::print_json(
            &json!({ "by": by_word, "rows": items, "total": views::totals(&total) }),
        );
        return Ok(Outcome::Success);
    }
    if rows.is_empty() {
        output::print("Nothing recorded yet: `baton run` runs tasks and records what they use.\n");
        return Ok(Outcome::Success);
    }
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
    for row in rows.iter().chain(std::iter::once(&Row {
        key: Value::Null,
        label: String::from("total"),
        status: None,
        totals: total,
    })) {
        let usage = &row.totals.usage;
        table.row(vec![
            row.label.clone(),
            row.status.clone().unwrap_or_else(|| String::from("")),
            row.totals.agent_calls.to_string(),
            row.totals.turns.to_string(),
            human::tokens(usage.input_tokens),
            human::tokens(usage.output_tokens),
            human::tokens(usage.cache_read_tokens),
            human::tokens(usage.cache_creation_tokens),
            human::dollars(row.totals.cost),
        ]);
    }
    output::print(&table.render());
    Ok(Outcome::Success)
}
