//! What a finished run says: the summary a person reads, the JSON a script reads, and how the
//! command ends.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use agent::SessionId;
use orchestrator::{AgentUnavailable, Db, RunReport, TaskOutcome};
use serde::Serialize;
use session_store::{Budget, BudgetStatus, Cost, Task, TaskId, TaskStatus, Totals};

use crate::error::{CliError, Kind, Outcome, Result, Signal};
use crate::human::{self, Align, Table};
use crate::output::Ui;
use crate::views::{self, MilestoneNames, TaskJson, TotalsJson, sessions_of};

/// A finished run: the orchestrator's report, the tasks as the ledger holds them now, and the
/// signal that stopped it, if one did.
pub struct Finished {
    pub report: RunReport,
    pub tasks: Vec<Task>,
    pub names: MilestoneNames,
    pub sessions: BTreeMap<TaskId, Vec<SessionId>>,
    /// Where each task's work lives, for the tasks that have a worktree.
    pub workspaces: BTreeMap<TaskId, session_store::TaskWorkspace>,
    /// Each task's budget.
    pub budgets: BTreeMap<TaskId, Budget>,
    pub signal: Option<Signal>,
}

/// `run --json`: whether the run completed, and every task it took up or left behind.
#[derive(Debug, Serialize)]
pub struct RunJson<'a> {
    completed: bool,
    cancelled: bool,
    interrupted_by: Option<&'static str>,
    tasks: Vec<RunTaskJson<'a>>,
    recovered: Vec<RecoveredJson>,
    total: TotalsJson,
    /// The run's budget and spend; absent for a run without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<RunBudgetJson>,
}

/// `run --json`'s budget: its limits, what the run's calls spent, and what stopped it.
#[derive(Debug, Serialize)]
struct RunBudgetJson {
    max_cost_usd: Option<f64>,
    max_tokens: Option<u64>,
    spent_cost_usd: f64,
    spent_tokens: u64,
    /// `budget spent: $1.00 of $1.00 (run)` when the budget stopped the run.
    stopped: Option<String>,
}

/// A task of the run, with how the run left it.
#[derive(Debug, Serialize)]
struct RunTaskJson<'a> {
    #[serde(flatten)]
    task: TaskJson<'a>,
    outcome: &'static str,
    outcome_reason: Option<&'a str>,
}

/// A session the run's recovery abandoned before it started.
#[derive(Debug, Serialize)]
struct RecoveredJson {
    task_id: i64,
    session_id: Option<String>,
    requeued: bool,
    stopped_agent: bool,
}

impl Finished {
    /// A run that found nothing to do.
    pub fn empty() -> Finished {
        Finished {
            report: RunReport::default(),
            tasks: Vec::new(),
            names: MilestoneNames::default(),
            sessions: BTreeMap::new(),
            workspaces: BTreeMap::new(),
            budgets: BTreeMap::new(),
            signal: None,
        }
    }

    /// The run `report` tells of, with its tasks read back from the ledger, waiting up to
    /// `outage` for a ledger that cannot be reached.
    pub async fn read(
        db: &Db,
        outage: Duration,
        report: RunReport,
        signal: Option<Signal>,
    ) -> Result<Finished> {
        let mut ids: Vec<TaskId> = report.tasks.iter().map(|report| report.task).collect();
        ids.extend(report.not_run.iter().map(|(id, _)| *id));
        let (tasks, names, sessions, workspaces, budgets) = db
            .run_retrying(
                outage,
                move |store| {
                    let tasks = ids
                        .iter()
                        .map(|id| store.task(*id))
                        .collect::<Result<Vec<_>, _>>()?;
                    let names = MilestoneNames::load(store)?;
                    let sessions = views::sessions_by_task(store, &tasks)?;
                    let mut workspaces = BTreeMap::new();
                    for task in &tasks {
                        if let Some(workspace) = store.task_workspace(task.id)? {
                            workspaces.insert(task.id, workspace);
                        }
                    }
                    let budgets = views::budgets_by_task(store, &tasks)?;
                    Ok((tasks, names, sessions, workspaces, budgets))
                },
                |_| {},
            )
            .await?;
        Ok(Finished {
            report,
            tasks,
            names,
            sessions,
            workspaces,
            budgets,
            signal,
        })
    }

    /// Prints the summary (or the JSON report) and says how the command ends.
    pub fn report(&self, ui: &Ui, json: bool) -> Result<Outcome> {
        if json {
            ui.json(&self.json())?;
        } else {
            ui.print(&self.summary());
        }
        match (&self.report.unavailable, self.signal) {
            (Some(unavailable), None) => Err(agent_unavailable(unavailable)),
            _ => Ok(self.outcome()),
        }
    }

    /// How the command ends: success only when every task the run took up completed.
    pub fn outcome(&self) -> Outcome {
        match self.signal {
            Some(signal) if self.report.cancelled => Outcome::Interrupted(signal),
            _ if self.report.all_completed() => Outcome::Success,
            _ => Outcome::TasksNotCompleted,
        }
    }

    /// The table of the run's tasks and what to do about the ones that did not complete.
    pub fn summary(&self) -> String {
        let mut out = String::from("\n");
        if !self.tasks.is_empty() {
            out.push_str(&self.table());
            out.push('\n');
        }
        out.push_str(&self.budget_lines());
        out.push_str(&self.headline());
        out.push_str(&self.advice());
        out
    }

    /// The run's budget, spent of it, and whether it stopped the run; nothing without one.
    fn budget_lines(&self) -> String {
        let spend = self.report.spend;
        let status = BudgetStatus {
            budget: spend.budget,
            spent: Totals {
                cost: spend.spent.cost,
                usage: agent::Usage {
                    input_tokens: spend.spent.tokens,
                    ..agent::Usage::ZERO
                },
                ..Totals::default()
            },
        };
        let mut out = String::new();
        if let Some(line) = views::budget_line(&status) {
            out.push_str(&format!("Run budget: {line}.\n"));
        }
        if let Some(stop) = &self.report.budget_stop {
            out.push_str(&format!(
                "Stopped by the run's budget ({stop}): no new call was started, and unstarted tasks stay pending. `baton run --max-cost USD` continues.\n"
            ));
        }
        out
    }

    /// A row per task, and their total.
    fn table(&self) -> String {
        let mut table = Table::new(&[
            ("ID", Align::Right),
            ("STATUS", Align::Left),
            ("TITLE", Align::Left),
            ("ITER", Align::Right),
            ("CALLS", Align::Right),
            ("TOKENS IN/OUT", Align::Right),
            ("COST", Align::Right),
            ("TIME", Align::Right),
        ]);
        let mut total = Totals::default();
        for task in &self.tasks {
            total += task.totals;
            let time = match (task.started_at, task.finished_at) {
                (Some(start), Some(end)) => human::duration(human::between(start, end)),
                _ => String::from("-"),
            };
            table.row(vec![
                task.id.to_string(),
                task.status.to_string(),
                human::truncate(&task.title, 40),
                format!("{}/{}", task.iterations, task.max_iterations),
                task.totals.agent_calls.to_string(),
                views::tokens_cell(&task.totals),
                human::dollars(task.totals.cost),
                time,
            ]);
        }
        table.row(vec![
            String::new(),
            String::from("total"),
            String::new(),
            String::new(),
            total.agent_calls.to_string(),
            views::tokens_cell(&total),
            human::dollars(total.cost),
            String::new(),
        ]);
        table.render()
    }

    /// One line on how the run went as a whole.
    fn headline(&self) -> String {
        let ran = self.report.tasks.len();
        if let (Some(signal), true) = (self.signal, self.report.cancelled) {
            let pending = self
                .tasks
                .iter()
                .filter(|task| task.status == TaskStatus::Pending)
                .count() as u64;
            format!(
                "Interrupted by {}: {pending} {} pending and {} on the next `baton run`, continuing {} sessions.\n",
                signal.name(),
                views::plural(pending, "task is", "tasks are"),
                views::plural(pending, "resumes", "resume"),
                views::plural(pending, "its", "their"),
            )
        } else if self.report.all_completed() {
            format!(
                "All {ran} {} completed.\n",
                views::plural(ran as u64, "task", "tasks")
            )
        } else {
            self.not_completed()
        }
    }

    /// `2 of 4 tasks completed: 1 failed, 1 did not run.`
    fn not_completed(&self) -> String {
        let count = |outcome: fn(&TaskOutcome) -> bool| {
            self.report
                .tasks
                .iter()
                .filter(|task| outcome(&task.outcome))
                .count()
        };
        let completed = count(|outcome| *outcome == TaskOutcome::Completed);
        let parts: Vec<String> = [
            (count(|o| matches!(o, TaskOutcome::Failed { .. })), "failed"),
            (
                count(|o| matches!(o, TaskOutcome::Blocked { .. })),
                "blocked",
            ),
            (
                count(|o| matches!(o, TaskOutcome::Skipped { .. })),
                "skipped",
            ),
            (self.report.not_run.len(), "did not run"),
        ]
        .into_iter()
        .filter(|(number, _)| *number > 0)
        .map(|(number, word)| format!("{number} {word}"))
        .collect();
        let total = self.report.tasks.len() + self.report.not_run.len();
        format!(
            "{completed} of {total} {} completed: {}.\n",
            views::plural(total as u64, "task", "tasks"),
            parts.join(", ")
        )
    }

    /// What to do about each task that did not complete.
    fn advice(&self) -> String {
        let mut out = String::new();
        for task_report in &self.report.tasks {
            let id = task_report.task;
            let (word, reason) = match &task_report.outcome {
                TaskOutcome::Failed { reason } => ("failed", reason),
                TaskOutcome::Blocked { reason } => ("is blocked", reason),
                TaskOutcome::Skipped { reason } => {
                    out.push_str(&format!("  task {id} was skipped: {}\n", reason.trim()));
                    continue;
                }
                TaskOutcome::Completed => {
                    out.push_str(&self.undelivered(id));
                    continue;
                }
                TaskOutcome::Cancelled => continue,
            };
            let next = if reason.starts_with("budget spent") {
                format!("`baton task retry {id} --max-cost USD` raises its budget and continues it")
            } else {
                format!("`baton task retry {id} --message TEXT` runs it again with your guidance")
            };
            out.push_str(&format!(
                "  task {id} {word}: {}\n    `baton task show {id}` shows what happened; {next}\n",
                reason.trim()
            ));
        }
        for (id, why) in &self.report.not_run {
            out.push_str(&format!("  task {id} did not run: {why}\n"));
        }
        out
    }

    /// For a completed task whose branch was to be merged or pushed and was not, what
    /// stopped it; nothing otherwise. The task stays completed: its work is done and
    /// committed on its branch, and only the delivery waits for a person.
    fn undelivered(&self, id: TaskId) -> String {
        let Some(workspace) = self.workspaces.get(&id) else {
            return String::new();
        };
        let (Some(state @ ("conflict" | "skipped" | "rejected")), Some(branch)) =
            (workspace.delivery.as_deref(), workspace.branch.as_deref())
        else {
            return String::new();
        };
        let reason = workspace
            .delivery_reason
            .as_deref()
            .unwrap_or("no reason recorded");
        format!(
            "  task {id} completed, but its branch {branch} was not delivered ({state}): {}\n    `baton task show {id}` shows the delivery\n",
            reason.trim()
        )
    }

    /// The run as JSON.
    pub fn json(&self) -> RunJson<'_> {
        let mut total = Totals::default();
        for task in &self.tasks {
            total += task.totals;
        }
        let mut outcomes: HashMap<TaskId, (&'static str, Option<&str>)> = HashMap::new();
        for report in &self.report.tasks {
            outcomes.insert(report.task, outcome_json(&report.outcome));
        }
        for (id, why) in &self.report.not_run {
            outcomes
                .entry(*id)
                .or_insert(("not_run", Some(why.as_str())));
        }
        RunJson {
            completed: self.report.all_completed() && self.signal.is_none(),
            cancelled: self.report.cancelled,
            interrupted_by: self.signal.map(Signal::name),
            tasks: self
                .tasks
                .iter()
                .map(|task| self.task_json(task, &outcomes))
                .collect(),
            recovered: self
                .report
                .recovered
                .iter()
                .map(|item| RecoveredJson {
                    task_id: item.task.get(),
                    session_id: item.session.as_ref().map(|session| session.id.to_string()),
                    requeued: item.requeued,
                    stopped_agent: item.stopped_agent,
                })
                .collect(),
            total: TotalsJson::new(&total),
            budget: (!self.report.spend.budget.is_none()).then(|| RunBudgetJson {
                max_cost_usd: self.report.spend.budget.max_cost.map(Cost::as_usd),
                max_tokens: self.report.spend.budget.max_tokens,
                spent_cost_usd: self.report.spend.spent.cost.as_usd(),
                spent_tokens: self.report.spend.spent.tokens,
                stopped: self.report.budget_stop.clone(),
            }),
        }
    }

    /// A task of the run, with how the run left it (`outcomes`, by task).
    fn task_json<'a>(
        &'a self,
        task: &'a Task,
        outcomes: &HashMap<TaskId, (&'static str, Option<&'a str>)>,
    ) -> RunTaskJson<'a> {
        let (outcome, outcome_reason) =
            outcomes.get(&task.id).copied().unwrap_or(("not_run", None));
        RunTaskJson {
            task: TaskJson::new(
                task,
                self.names.name(task.milestone),
                sessions_of(&self.sessions, task.id),
            )
            .with_workspace(self.workspaces.get(&task.id))
            .with_budget(self.budgets.get(&task.id).unwrap_or(&Budget::NONE)),
            outcome,
            outcome_reason,
        }
    }
}

/// How the run left a task it took up, and why, as `run --json` says it.
fn outcome_json(outcome: &TaskOutcome) -> (&'static str, Option<&str>) {
    match outcome {
        TaskOutcome::Completed => ("completed", None),
        TaskOutcome::Failed { reason } => ("failed", Some(reason)),
        TaskOutcome::Blocked { reason } => ("blocked", Some(reason)),
        TaskOutcome::Cancelled => ("interrupted", None),
        TaskOutcome::Skipped { reason } => ("skipped", Some(reason)),
    }
}

/// The error a run ends with when the agent cannot work: exit 5, the cause in the API's
/// words, and what to do.
fn agent_unavailable(unavailable: &AgentUnavailable) -> CliError {
    let hint = if unavailable.what_to_do.is_empty() {
        String::from("`baton doctor` checks the agent; `baton run` continues the tasks")
    } else {
        format!(
            "{}; then `baton run` continues the tasks in their sessions",
            unavailable.what_to_do
        )
    };
    CliError::new(
        Kind::AgentUnavailable,
        format!(
            "the agent is unavailable: {} (found by task {}); the run stopped and its tasks are pending",
            unavailable.cause, unavailable.task
        ),
    )
    .with_hint(hint)
}
