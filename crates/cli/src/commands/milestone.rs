//! `baton milestone`: create, list and show milestones.

use serde::Serialize;
use session_store::{Budget, BudgetScope, NewMilestone, StoreError, TaskFilter, Totals};

use crate::error::{Outcome, Result};
use crate::flags::MilestoneCommand;
use crate::human::{self, Align, Fields, Table};
use crate::output::Ui;
use crate::secrets;
use crate::settings::Context;
use crate::views::{self, MilestoneJson, MilestoneNames, TaskJson, sessions_of};

/// `milestone add --json`.
#[derive(Debug, Serialize)]
struct Added<'a> {
    id: i64,
    name: &'a str,
}

/// `milestone show --json`: the milestone and its tasks.
#[derive(Debug, Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    milestone: MilestoneJson<'a>,
    tasks: Vec<TaskJson<'a>>,
}

pub fn run(command: MilestoneCommand, context: &Context, ui: &Ui) -> Result<Outcome> {
    match command {
        MilestoneCommand::Add {
            name,
            description,
            session_policy,
            max_cost,
            max_tokens,
        } => {
            let milestone = NewMilestone {
                name: secrets::refuse_secret(
                    &context.redactor,
                    "the milestone's name",
                    name.clone(),
                )?,
                description: secrets::refuse_secret(
                    &context.redactor,
                    "the milestone's description (--description)",
                    description.unwrap_or_default(),
                )?,
                policy: session_policy,
            };
            let mut store = context.open_store()?;
            let id = store.create_milestone(&milestone)?;
            let budget = Budget {
                max_cost,
                max_tokens,
            };
            if !budget.is_none() {
                store.set_budget(BudgetScope::Milestone(id), budget)?;
            }
            if context.json {
                ui.json(&Added {
                    id: id.get(),
                    name: &name,
                })?;
            } else {
                ui.print(&format!(
                    "Milestone `{name}` created. Add tasks to it with `baton task add TITLE --milestone {name}`.\n"
                ));
            }
            Ok(Outcome::Success)
        }
        MilestoneCommand::List => list(context, ui),
        MilestoneCommand::Show { name } => show(&name, context, ui),
    }
}

fn list(context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    let milestones = store.milestones()?;
    let mut rows = Vec::new();
    for milestone in &milestones {
        let tasks = store.tasks(&TaskFilter {
            milestone: Some(milestone.id),
            ..TaskFilter::default()
        })?;
        let totals = store.milestone_usage(milestone.id)?;
        let budget = store.budget(BudgetScope::Milestone(milestone.id))?.budget;
        rows.push((milestone, tasks, totals, budget));
    }
    if context.json {
        let items: Vec<MilestoneJson<'_>> = rows
            .iter()
            .map(|(milestone, tasks, totals, budget)| {
                MilestoneJson::new(milestone, tasks, totals).with_budget(budget)
            })
            .collect();
        ui.json(&items)?;
        return Ok(Outcome::Success);
    }
    if rows.is_empty() {
        ui.print("No milestones yet. Create one with `baton milestone add NAME`.\n");
        return Ok(Outcome::Success);
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("POLICY", Align::Left),
        ("DONE", Align::Right),
        ("TOKENS IN/OUT", Align::Right),
        ("COST", Align::Right),
        ("DESCRIPTION", Align::Left),
    ]);
    for (milestone, tasks, totals, _) in &rows {
        table.row(vec![
            milestone.name.clone(),
            milestone
                .policy
                .map_or("-", |policy| policy.as_str())
                .to_owned(),
            done_cell(tasks),
            views::tokens_cell(totals),
            human::dollars(totals.cost),
            human::truncate(&milestone.description, 50),
        ]);
    }
    ui.print(&table.render());
    Ok(Outcome::Success)
}

/// `2/3`: completed tasks of all tasks.
fn done_cell(tasks: &[session_store::Task]) -> String {
    let done = tasks
        .iter()
        .filter(|task| task.status == session_store::TaskStatus::Completed)
        .count();
    format!("{done}/{}", tasks.len())
}

fn show(name: &str, context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    let milestone = super::milestone_named(&store, name)?;
    let tasks = store.tasks(&TaskFilter {
        milestone: Some(milestone.id),
        ..TaskFilter::default()
    })?;
    let totals: Totals = store.milestone_usage(milestone.id)?;
    let budget = store.budget(BudgetScope::Milestone(milestone.id))?;
    let names = MilestoneNames::load(&store)?;
    let sessions = views::sessions_by_task(&store, &tasks)?;
    if context.json {
        ui.json(&Shown {
            milestone: MilestoneJson::new(&milestone, &tasks, &totals).with_budget(&budget.budget),
            tasks: tasks
                .iter()
                .map(|task| {
                    let budget = store.budget(BudgetScope::Task(task.id))?.budget;
                    Ok(
                        TaskJson::new(task, Some(&milestone.name), sessions_of(&sessions, task.id))
                            .with_budget(&budget),
                    )
                })
                .collect::<Result<Vec<_>, StoreError>>()?
                .into_iter()
                .collect(),
        })?;
        return Ok(Outcome::Success);
    }
    let mut out = format!("Milestone {}\n", milestone.name);
    let mut fields = Fields::new();
    if !milestone.description.is_empty() {
        fields.field("description", milestone.description.clone());
    }
    fields
        .field(
            "policy",
            milestone
                .policy
                .map_or("inherited from the run", |policy| policy.as_str()),
        )
        .field("done", format!("{} tasks completed", done_cell(&tasks)))
        .field("created", human::time(milestone.created_at))
        .field("usage", views::usage_line(&totals));
    if let Some(line) = views::budget_line(&budget) {
        fields.field("budget", line);
    }
    out.push_str(&fields.render());
    if tasks.is_empty() {
        out.push_str(&format!(
            "\nNo tasks yet: `baton task add TITLE --milestone {}` adds one.\n",
            milestone.name
        ));
    } else {
        out.push_str("\nTasks:\n");
        out.push_str(
            &super::task::task_table(&tasks, &names, &sessions)
                .lines()
                .map(|line| format!("  {line}\n"))
                .collect::<String>(),
        );
    }
    ui.print(&out);
    Ok(Outcome::Success)
}
