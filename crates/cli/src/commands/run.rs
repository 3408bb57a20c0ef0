//! `baton run`: run ready tasks until none is left, with live progress, a summary, and an exit
//! code that says whether everything completed.

use std::collections::{BTreeMap, HashMap};

use agent::{CancellationToken, SessionId};
use orchestrator::{Orchestrator, RunReport, Selection, TaskOutcome};
use serde_json::{Value, json};
use session_store::{NewEvent, Store, Task, TaskFilter, TaskId, TaskStatus, Totals};

use crate::agents;
use crate::error::{CliError, Outcome, Signal};
use crate::flags::{AgentKind, RunArgs};
use crate::human::{self, Align, Table};
use crate::keys;
use crate::output;
use crate::progress::{Mode, Progress};
use crate::settings::{Context, Env};
use crate::signals;
use crate::views::{self, MilestoneNames};

pub fn run(args: RunArgs, mut context: Context) -> anyhow::Result<Outcome> {
    context.settings = context.settings.clone().with_run_flags(&args);
    let mut store = context.open_store()?;
    let milestone = match &args.milestone {
        Some(name) => Some(super::milestone_named(&store, name)?.id),
        None => None,
    };
    let selection = Selection {
        tasks: args.ids.iter().copied().map(TaskId).collect(),
        milestone,
    };
    check_named_tasks(&store, &selection)?;
    let candidates: Vec<Task> = store
        .tasks(&TaskFilter {
            milestone,
            ..TaskFilter::default()
        })?
        .into_iter()
        .filter(|task| selection.tasks.is_empty() || selection.tasks.contains(&task.id))
        .filter(|task| matches!(task.status, TaskStatus::Pending | TaskStatus::Running))
        .collect();
    if candidates.is_empty() {
        if context.json {
            let nothing = Finished {
                report: RunReport::default(),
                tasks: Vec::new(),
                names: MilestoneNames::default(),
                sessions: BTreeMap::new(),
                signal: None,
            };
            output::print_json(&nothing.json());
        } else {
            output::print(
                "Nothing to run: no task is pending. `baton task list` shows where each task stands.\n",
            );
        }
        return Ok(Outcome::Success);
    }
    let budgets: HashMap<TaskId, u32> = candidates
        .iter()
        .map(|task| (task.id, task.max_iterations))
        .collect();
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let settings = &context.settings;
        let agent = agents::build(settings);
        // The agent's version goes into the ledger, so a run can be traced to the CLI that
        // did the work.
        let version = match settings.get(keys::AGENT_KIND) {
            AgentKind::Claude => Some(agents::probe(agent.as_ref(), settings).await?.version),
            AgentKind::Mock => None,
        };
        let detail = serde_json::json!({
            "agent": settings.get(keys::AGENT_KIND).as_str(),
            "agent_version": version,
            "pid": std::process::id(),
            "concurrency": settings.get(keys::RUN_CONCURRENCY),
            "policy": settings.get(keys::RUN_SESSION_POLICY).as_str(),
        });
        store.append_event(&NewEvent {
            task: None,
            session: None,
            kind: String::from("run_started"),
            detail: detail.to_string(),
        })?;
        let orchestrator = Orchestrator::new(store, agent, agents::run_config(settings))?;
        let finished = execute(
            orchestrator,
            &selection,
            budgets,
            &context.env,
            context.json,
        )
        .await?;
        Ok(finished.report(context.json))
    })
}

/// Named tasks must exist and be waiting to run.
fn check_named_tasks(store: &Store, selection: &Selection) -> anyhow::Result<()> {
    for id in &selection.tasks {
        let task = store.task(*id)?;
        if let Some(milestone) = selection.milestone
            && task.milestone != Some(milestone)
        {
            return Err(CliError::usage(format!(
                "task {id} is not in the milestone given with --milestone"
            ))
            .with_hint("drop --milestone, or name tasks of that milestone")
            .into());
        }
        let hint = match task.status {
            TaskStatus::Pending | TaskStatus::Running => continue,
            TaskStatus::Completed => String::from("it is done; add a new task for more work"),
            TaskStatus::Failed | TaskStatus::Blocked | TaskStatus::Cancelled => format!(
                "`baton task retry {id}` makes it pending again (add --message TEXT to guide the agent)"
            ),
        };
        return Err(CliError::usage(format!(
            "task {id} is {}, so there is nothing to run",
            task.status
        ))
        .with_hint(hint)
        .into());
    }
    Ok(())
}

/// A finished run: the orchestrator's report, the tasks as the ledger holds them now, and the
/// signal that stopped it, if one did.
pub struct Finished {
    pub report: RunReport,
    pub tasks: Vec<Task>,
    pub names: MilestoneNames,
    pub sessions: BTreeMap<TaskId, Vec<SessionId>>,
    pub signal: Option<Signal>,
}

/// Runs `selection` with progress shown and Ctrl-C/SIGTERM handled.
pub async fn execute(
    orchestrator: Orchestrator,
    selection: &Selection,
    budgets: HashMap<TaskId, u32>,
    env: &Env,
    json: bool,
) -> anyhow::Result<Finished> {
    let mode = if json {
        Mode::Lines { to_stderr: true }
    } else if output::stdout_is_terminal() {
        Mode::Live {
            color: !env.no_color,
            width: output::terminal_width().unwrap_or(100),
        }
    } else {
        Mode::Lines { to_stderr: false }
    };
    let progress = Progress::start(mode, budgets);
    let orchestrator = orchestrator.with_events(progress.events());
    let cancel = CancellationToken::new();
    let first = progress.notifier();
    let received = signals::watch(
        cancel.clone(),
        move |signal| {
            first(format!(
                "{}: stopping: closing sessions and putting running tasks back to pending (again to quit at once)",
                signal.name()
            ));
        },
        |signal| {
            output::note(&format!(
                "{}: quitting now; `baton recover` (or the next `baton run`) cleans up what was left open\n",
                signal.name()
            ));
        },
    )
    .map_err(|error| {
        CliError::new(crate::error::Kind::Other, "could not listen for Ctrl-C and SIGTERM")
            .with_source(error)
    })?;
    let result = orchestrator.run(selection, cancel).await;
    progress.finish();
    let report = result?;
    let mut ids: Vec<TaskId> = report.tasks.iter().map(|report| report.task).collect();
    ids.extend(report.not_run.iter().map(|(id, _)| *id));
    let (tasks, names, sessions) = orchestrator
        .db()
        .run(move |store| {
            let tasks = ids
                .iter()
                .map(|id| store.task(*id))
                .collect::<Result<Vec<_>, _>>()?;
            let names = MilestoneNames::load(store)?;
            let sessions = views::sessions_by_task(store, &tasks)?;
            Ok((tasks, names, sessions))
        })
        .await?;
    Ok(Finished {
        report,
        tasks,
        names,
        sessions,
        signal: received.get(),
    })
}

impl Finished {
    /// Prints the summary (or the JSON report) and says how the command ends.
    pub fn report(&self, json: bool) -> Outcome {
        if json {
            output::print_json(&self.json());
        } else {
            output::print(&self.summary());
        }
        self.outcome()
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
            out.push_str(&table.render());
            out.push('\n');
        }
        let ran = self.report.tasks.len();
        let completed = self
            .report
            .tasks
            .iter()
            .filter(|task| task.outcome == TaskOutcome::Completed)
            .count();
        if let (Some(signal), true) = (self.signal, self.report.cancelled) {
            let pending = self
                .tasks
                .iter()
                .filter(|task| task.status == TaskStatus::Pending)
                .count();
            out.push_str(&format!(
                "Interrupted by {}: {pending} {} pending and {} on the next `baton run`, continuing {} sessions.\n",
                signal.name(),
                views::plural(pending as u64, "task is", "tasks are"),
                views::plural(pending as u64, "resumes", "resume"),
                views::plural(pending as u64, "its", "their"),
            ));
        } else if self.report.all_completed() {
            out.push_str(&format!(
                "All {ran} {} completed.\n",
                views::plural(ran as u64, "task", "tasks")
            ));
        } else {
            let count = |outcome: fn(&TaskOutcome) -> bool| {
                self.report
                    .tasks
                    .iter()
                    .filter(|task| outcome(&task.outcome))
                    .count()
            };
            let mut parts = Vec::new();
            for (number, word) in [
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
            ] {
                if number > 0 {
                    parts.push(format!("{number} {word}"));
                }
            }
            let total = ran + self.report.not_run.len();
            out.push_str(&format!(
                "{completed} of {total} {} completed: {}.\n",
                views::plural(total as u64, "task", "tasks"),
                parts.join(", ")
            ));
        }
        for task_report in &self.report.tasks {
            let id = task_report.task;
            match &task_report.outcome {
                TaskOutcome::Failed { reason } | TaskOutcome::Blocked { reason } => {
                    let word = if matches!(task_report.outcome, TaskOutcome::Failed { .. }) {
                        "failed"
                    } else {
                        "is blocked"
                    };
                    out.push_str(&format!(
                        "  task {id} {word}: {}\n    `baton task show {id}` shows what happened; `baton task retry {id} --message TEXT` runs it again with your guidance\n",
                        reason.trim()
                    ));
                }
                TaskOutcome::Skipped { reason } => {
                    out.push_str(&format!("  task {id} was skipped: {}\n", reason.trim()));
                }
                TaskOutcome::Completed | TaskOutcome::Cancelled => {}
            }
        }
        for (id, why) in &self.report.not_run {
            out.push_str(&format!("  task {id} did not run: {why}\n"));
        }
        out
    }
}

impl Finished {
    /// The run as JSON: whether it completed, and every task it took up or left behind.
    pub fn json(&self) -> Value {
        let outcomes: HashMap<TaskId, &TaskOutcome> = self
            .report
            .tasks
            .iter()
            .map(|task| (task.task, &task.outcome))
            .collect();
        let not_run: HashMap<TaskId, &String> = self
            .report
            .not_run
            .iter()
            .map(|(id, why)| (*id, why))
            .collect();
        let mut total = Totals::default();
        let items: Vec<Value> = self
            .tasks
            .iter()
            .map(|task| {
                total += task.totals;
                let sessions = self
                    .sessions
                    .get(&task.id)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let mut object = views::task(task, self.names.name(task.milestone), sessions);
                let (outcome, reason) = match (outcomes.get(&task.id), not_run.get(&task.id)) {
                    (Some(TaskOutcome::Completed), _) => ("completed", None),
                    (Some(TaskOutcome::Failed { reason }), _) => ("failed", Some(reason.clone())),
                    (Some(TaskOutcome::Blocked { reason }), _) => ("blocked", Some(reason.clone())),
                    (Some(TaskOutcome::Cancelled), _) => ("interrupted", None),
                    (Some(TaskOutcome::Skipped { reason }), _) => ("skipped", Some(reason.clone())),
                    (None, Some(why)) => ("not_run", Some((*why).clone())),
                    (None, None) => ("not_run", None),
                };
                if let Value::Object(map) = &mut object {
                    map.insert("outcome".into(), Value::from(outcome));
                    map.insert("outcome_reason".into(), Value::from(reason));
                }
                object
            })
            .collect();
        let recovered: Vec<Value> = self
            .report
            .recovered
            .iter()
            .map(|item| {
                json!({
                    "task_id": item.task.get(),
                    "session_id": item.session.as_ref().map(|session| session.id.to_string()),
                    "requeued": item.requeued,
                    "stopped_agent": item.stopped_agent,
                })
            })
            .collect();
        json!({
            "completed": self.report.all_completed() && self.signal.is_none(),
            "cancelled": self.report.cancelled,
            "interrupted_by": self.signal.map(Signal::name),
            "tasks": items,
            "recovered": recovered,
            "total": views::totals(&total),
        })
    }
}
