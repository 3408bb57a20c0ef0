//! `baton task`: add, list, show, cancel, retry, and make tasks wait for others.

use std::io::Read;
use std::path::Path;

use std::collections::BTreeMap;

use agent::SessionId;
use orchestrator::TURNS_ESCALATED;
use redact::Redacted;
use serde::Serialize;
use session_store::{
    Budget, BudgetScope, BudgetStatus, Cost, EventFilter, NewTask, RecordedCall, SessionFilter,
    Store, StoreError, Task, TaskFilter, TaskId, TaskStatus, TaskWorkspace, Totals, Verification,
};

use crate::error::{CliError, Kind, Outcome, Result};
use crate::flags::{TaskAddArgs, TaskCommand, TaskListArgs};
use crate::human::{self, Align, Fields, Table};
use crate::keys;
use crate::output::Ui;
use crate::secrets;
use crate::settings::Context;
use crate::views::{self, CallJson, MilestoneNames, TaskJson, VerificationJson, sessions_of};

/// `task add --json`.
#[derive(Debug, Serialize)]
struct Added {
    id: i64,
}

/// `task show --json`: the task, its calls and its verifications.
#[derive(Debug, Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    task: TaskJson<'a>,
    /// Each time the turn budget grew, oldest first; absent when it never did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    escalations: Vec<EscalationJson>,
    calls: Vec<CallJson<'a>>,
    verifications: Vec<VerificationJson<'a>>,
}

/// One turn escalation: a call's turn budget grew `from` → `to`.
#[derive(Debug, Serialize, serde::Deserialize)]
struct EscalationJson {
    from: u32,
    to: u32,
}

/// `task cancel --json`: the task's new state and the one it left.
#[derive(Debug, Serialize)]
struct Cancelled {
    id: i64,
    status: &'static str,
    was: &'static str,
}

/// `task retry --json`: the task's new state, the one it left, and the guidance it got.
#[derive(Debug, Serialize)]
struct Retried<'a> {
    id: i64,
    status: &'static str,
    was: &'static str,
    guidance: Option<&'a str>,
}

/// `task depend --json`.
#[derive(Debug, Serialize)]
struct Depends {
    id: i64,
    after: Vec<i64>,
}

pub fn run(command: TaskCommand, context: &Context, ui: &Ui) -> Result<Outcome> {
    match command {
        TaskCommand::Add(args) => add(args, context, ui),
        TaskCommand::List(args) => list(&args, context, ui),
        TaskCommand::Show { id } => show(TaskId(id), context, ui),
        TaskCommand::Cancel { id } => cancel(TaskId(id), context, ui),
        TaskCommand::Retry {
            id,
            message,
            max_cost,
            max_tokens,
        } => {
            let raise = Budget {
                max_cost,
                max_tokens,
            };
            retry(TaskId(id), message.as_deref(), raise, context, ui)
        }
        TaskCommand::Depend { id, on } => depend(TaskId(id), &on, context, ui),
        TaskCommand::Diff { id } => super::worktree::diff(TaskId(id), context, ui),
    }
}

fn add(args: TaskAddArgs, context: &Context, ui: &Ui) -> Result<Outcome> {
    // The input is checked whole before the ledger is opened: a refused task writes nothing.
    if args.title.trim().is_empty() {
        return Err(CliError::usage("the task's title is empty").with_hint(
            "give the task a short name, such as `baton task add \"Fix the parser\" --prompt TEXT`",
        ));
    }
    let (prompt, prompt_from) = match (&args.prompt, &args.prompt_file) {
        (Some(prompt), _) => (prompt.clone(), String::from("the prompt")),
        (None, Some(file)) => read_prompt(file, &context.env.cwd)?,
        (None, None) => (args.title.clone(), String::from("the title")),
    };
    if prompt.trim().is_empty() {
        return Err(CliError::usage(format!("{prompt_from} is empty"))
            .with_hint("give the agent something to do with --prompt TEXT or --prompt-file FILE"));
    }
    let redactor = &context.redactor;
    let title = secrets::refuse_secret(redactor, "the title", args.title)?;
    let prompt = secrets::refuse_secret(redactor, &prompt_from, prompt)?;
    let verify_commands = args
        .verify
        .into_iter()
        .enumerate()
        .map(|(index, command)| {
            let what = format!("verification command {} (--verify)", index + 1);
            secrets::refuse_secret(redactor, &what, command)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut store = context.open_store()?;
    let milestone = match &args.milestone {
        Some(name) => Some(super::milestone_named(&store, name)?.id),
        None => None,
    };
    let working_dir = match &args.workdir {
        Some(dir) => existing_dir(&context.env.cwd.join(dir))?,
        None => context.default_workdir().to_owned(),
    };
    let workspace =
        super::worktree::requested(context, &working_dir, args.isolation, args.base.as_deref())?;
    let task = NewTask {
        title,
        prompt,
        milestone,
        working_dir,
        max_iterations: args
            .max_iterations
            .unwrap_or_else(|| context.settings.get(keys::TASKS_MAX_ITERATIONS)),
        max_turns: args.max_turns,
        policy: args.session_policy,
        verify_commands,
        after: args.after.into_iter().map(TaskId).collect(),
    };
    let budget = Budget {
        max_cost: args
            .max_cost
            .or_else(|| context.settings.get(keys::TASKS_MAX_COST)),
        max_tokens: args
            .max_tokens
            .or_else(|| context.settings.get(keys::TASKS_MAX_TOKENS)),
    };
    let id = store.add_task(&task)?;
    if let Some(workspace) = workspace {
        store.set_task_workspace(id, &workspace)?;
    }
    if !budget.is_none() {
        // Nothing is spent yet, so this cannot be refused.
        store.set_budget(BudgetScope::Task(id), budget)?;
    }
    if context.json {
        ui.json(&Added { id: id.get() })?;
    } else {
        ui.print(&format!("{id}\n"));
    }
    Ok(Outcome::Success)
}

/// Reads a prompt file (`-` is standard input), which must be text. Returns the prompt and
/// how error messages name where it came from.
fn read_prompt(file: &Path, cwd: &Path) -> Result<(String, String)> {
    if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|error| {
            CliError::usage("could not read the prompt from standard input").with_source(error)
        })?;
        let from = String::from("the prompt read from standard input");
        let hint = "a prompt must be UTF-8 text; pipe in a text file, or give the prompt with --prompt TEXT";
        return Ok((prompt_text(bytes, &from, hint)?, from));
    }
    let path = cwd.join(file);
    let bytes = std::fs::read(&path).map_err(|error| {
        let kind = if error.kind() == std::io::ErrorKind::NotFound {
            Kind::NotFound
        } else {
            Kind::Usage
        };
        CliError::new(
            kind,
            format!("could not read the prompt file `{}`", path.display()),
        )
        .with_hint("check the path (relative paths start from the current directory), or give the prompt with --prompt TEXT")
        .with_source(error)
    })?;
    let from = format!("the prompt file `{}`", path.display());
    let hint = format!(
        "a prompt must be UTF-8 text; check that `{}` is the file you meant (`file {}` says what it holds), or give the prompt with --prompt TEXT",
        file.display(),
        file.display()
    );
    Ok((prompt_text(bytes, &from, &hint)?, from))
}

/// `bytes` as a prompt: UTF-8 text without NUL bytes (which no text file holds, and which
/// would cut the prompt short on its way to the agent). The first problem is reported, at
/// its byte offset.
fn prompt_text(bytes: Vec<u8>, from: &str, hint: &str) -> Result<String, CliError> {
    let not_text =
        |problem: String| CliError::usage(format!("{from} is not text: {problem}")).with_hint(hint);
    let nul_at = |at: usize| format!("it contains a NUL byte at byte {at}");
    let nul = bytes.iter().position(|&byte| byte == 0);
    let text = String::from_utf8(bytes).map_err(|error| {
        let invalid = error.utf8_error().valid_up_to();
        not_text(match nul {
            Some(at) if at < invalid => nul_at(at),
            _ => format!("invalid UTF-8 at byte {invalid}"),
        })
    })?;
    match nul {
        Some(at) => Err(not_text(nul_at(at))),
        None => Ok(text),
    }
}

/// The absolute, canonical form of a directory that must exist.
fn existing_dir(path: &Path) -> Result<std::path::PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(dir) if dir.is_dir() => Ok(dir),
        Ok(_) => Err(CliError::usage(format!(
            "the working directory `{}` is not a directory",
            path.display()
        ))
        .with_hint("pass a directory to --workdir")),
        Err(error) => Err(CliError::not_found(format!(
            "the working directory `{}` does not exist",
            path.display()
        ))
        .with_hint("create it first, or pass another --workdir")
        .with_source(error)),
    }
}

fn list(args: &TaskListArgs, context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    let milestone = match &args.milestone {
        Some(name) => Some(super::milestone_named(&store, name)?.id),
        None => None,
    };
    let tasks = store.tasks(&TaskFilter {
        status: args.status,
        milestone,
    })?;
    let names = MilestoneNames::load(&store)?;
    let sessions = views::sessions_by_task(&store, &tasks)?;
    if context.json {
        let workspaces: BTreeMap<TaskId, TaskWorkspace> =
            store.task_workspaces()?.into_iter().collect();
        let budgets = views::budgets_by_task(&store, &tasks)?;
        let items: Vec<TaskJson<'_>> = TaskJson::all(&tasks, &names, &sessions)
            .into_iter()
            .zip(&tasks)
            .map(|(json, task)| {
                let json = json.with_workspace(workspaces.get(&task.id));
                match budgets.get(&task.id) {
                    Some(budget) => json.with_budget(budget),
                    None => json,
                }
            })
            .collect();
        ui.json(&items)?;
    } else if tasks.is_empty() {
        ui.print(if args.status.is_some() || args.milestone.is_some() {
            "No tasks match.\n"
        } else {
            "No tasks yet. Add one with `baton task add TITLE --prompt TEXT --verify CMD`.\n"
        });
    } else {
        ui.print(&task_table(&tasks, &names, &sessions));
        ui.print(&summary_line(&tasks));
    }
    Ok(Outcome::Success)
}

/// The table `task list` and `milestone show` print.
pub fn task_table(
    tasks: &[Task],
    names: &MilestoneNames,
    sessions: &BTreeMap<TaskId, Vec<SessionId>>,
) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Right),
        ("STATUS", Align::Left),
        ("TITLE", Align::Left),
        ("MILESTONE", Align::Left),
        ("ITER", Align::Right),
        ("SESSIONS", Align::Right),
        ("TOKENS IN/OUT", Align::Right),
        ("COST", Align::Right),
    ]);
    for task in tasks {
        table.row(vec![
            task.id.to_string(),
            task.status.to_string(),
            human::truncate(&task.title, 40),
            names.name(task.milestone).unwrap_or("-").to_owned(),
            format!("{}/{}", task.iterations, task.max_iterations),
            sessions_of(sessions, task.id).len().to_string(),
            views::tokens_cell(&task.totals),
            human::dollars(task.totals.cost),
        ]);
    }
    table.render()
}

/// `3 tasks: 1 pending, 2 completed; 12.3k tokens in, 1.2k out; $0.0123`.
pub fn summary_line(tasks: &[Task]) -> String {
    let mut totals = Totals::default();
    for task in tasks {
        totals += task.totals;
    }
    let states: Vec<String> = TaskStatus::ALL
        .iter()
        .filter_map(|status| {
            let count = tasks.iter().filter(|task| task.status == *status).count();
            (count > 0).then(|| format!("{count} {status}"))
        })
        .collect();
    format!(
        "{} {}: {}; {} tokens in, {} out; {}\n",
        tasks.len(),
        views::plural(tasks.len() as u64, "task", "tasks"),
        states.join(", "),
        human::tokens(totals.usage.prompt_tokens()),
        human::tokens(totals.usage.output_tokens),
        human::dollars(totals.cost),
    )
}

/// What `task show` shows: the task as the ledger holds it, with its record.
struct Record {
    task: Task,
    budget: BudgetStatus,
    escalations: Vec<EscalationJson>,
    names: MilestoneNames,
    sessions: Vec<SessionId>,
    calls: Vec<RecordedCall>,
    verifications: Vec<Verification>,
}

fn show(id: TaskId, context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    let task = store.task(id)?;
    let names = MilestoneNames::load(&store)?;
    let sessions = views::sessions_by_task(&store, std::slice::from_ref(&task))?;
    let workspace = store.task_workspace(id)?;
    let record = Record {
        sessions: sessions_of(&sessions, id).to_vec(),
        calls: store.calls_for_task(id)?,
        verifications: store.verifications_for_task(id)?,
        budget: store.budget(BudgetScope::Task(id))?,
        escalations: escalations(&store, id)?,
        task,
        names,
    };
    if context.json {
        ui.json(&Shown {
            task: TaskJson::new(
                &record.task,
                record.names.name(record.task.milestone),
                &record.sessions,
            )
            .with_workspace(workspace.as_ref())
            .with_budget(&record.budget.budget),
            escalations: record.escalations,
            calls: CallJson::all(&record.calls),
            verifications: VerificationJson::all(&record.verifications),
        })?;
    } else {
        let mut more = budget_and_escalations(&record);
        more.extend(super::worktree::workspace_fields(workspace.as_ref()));
        let mut out = task_fields(&record.task, &record.names, &more);
        out.push_str(&prompt_and_checks(&record.task));
        out.push_str(&sessions_and_calls(&store, &record)?);
        out.push_str(&verifications(&record.verifications));
        ui.print(&out);
    }
    Ok(Outcome::Success)
}

/// The task's title and its fields.
fn task_fields(task: &Task, names: &MilestoneNames, budget: &[(&str, String)]) -> String {
    let mut fields = Fields::new();
    fields
        .field("status", task.status.as_str())
        .field("milestone", names.name(task.milestone).unwrap_or("-"))
        .field("working dir", task.working_dir.display().to_string())
        .field(
            "iterations",
            format!("{} of {}", task.iterations, task.max_iterations),
        )
        .field(
            "max turns",
            task.max_turns
                .map_or_else(|| String::from("run default"), |n| n.to_string()),
        )
        .field(
            "policy",
            task.policy
                .map_or("inherited (milestone, then run)", |policy| policy.as_str()),
        );
    if !task.after.is_empty() {
        let after: Vec<String> = task.after.iter().map(TaskId::to_string).collect();
        fields.field("after", after.join(", "));
    }
    if let Some(reason) = &task.failure_reason {
        fields.field("reason", reason.clone());
    }
    if let Some(runner) = &task.runner {
        fields.field("runner", runner.to_string());
    }
    if let Some(guidance) = &task.guidance {
        fields.field(
            "guidance",
            format!("{guidance} (goes with the next prompt)"),
        );
    }
    fields
        .field("created", human::time(task.created_at))
        .field("started", views::time_cell(task.started_at))
        .field("finished", views::time_cell(task.finished_at))
        .field("usage", views::usage_line(&task.totals));
    for (name, value) in budget {
        fields.field(name, value.clone());
    }
    format!("Task {}: {}\n{}", task.id, task.title, fields.render())
}

/// The task's turn escalations, from the events the loop wrote.
fn escalations(store: &Store, id: TaskId) -> Result<Vec<EscalationJson>> {
    Ok(store
        .events(&EventFilter {
            task: Some(id),
            session: None,
        })?
        .into_iter()
        .filter(|event| event.kind == TURNS_ESCALATED)
        .filter_map(|event| serde_json::from_str(&event.detail).ok())
        .collect())
}

/// The task's budget with what it spent, and each turn escalation, when it has them: fields
/// for `task show`.
fn budget_and_escalations(record: &Record) -> Vec<(&'static str, String)> {
    let mut fields = Vec::new();
    if let Some(line) = views::budget_line(&record.budget) {
        fields.push(("budget", line));
    }
    for escalation in &record.escalations {
        fields.push((
            "escalated",
            format!("from {} to {} turns", escalation.from, escalation.to),
        ));
    }
    fields
}

/// The prompt, and the commands that verify the work.
fn prompt_and_checks(task: &Task) -> String {
    let mut out = String::from("\nPrompt:\n");
    for line in task.prompt.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("\nVerification:\n");
    if task.verify_commands.is_empty() {
        out.push_str("  none: the task is done when the agent succeeds\n");
    }
    for command in &task.verify_commands {
        out.push_str(&format!("  $ {command}\n"));
    }
    out
}

/// The tables of the task's sessions and agent calls, when it has any.
fn sessions_and_calls(store: &Store, record: &Record) -> Result<String> {
    let mut out = String::new();
    if !record.sessions.is_empty() {
        let mine: Vec<_> = store
            .sessions(&SessionFilter::default())?
            .into_iter()
            .filter(|session| record.sessions.contains(&session.id))
            .collect();
        out.push_str("\nSessions:\n");
        out.push_str(&indent(&super::session::session_table(
            &mine,
            &record.names,
        )));
    }
    if !record.calls.is_empty() {
        out.push_str("\nAgent calls:\n");
        out.push_str(&indent(&super::session::call_table(&record.calls)));
    }
    Ok(out)
}

/// The table of verification runs, then the output of the failed ones (what the agent was
/// sent as feedback).
fn verifications(verifications: &[Verification]) -> String {
    if verifications.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&[
        ("ITER", Align::Right),
        ("RESULT", Align::Left),
        ("TIME", Align::Right),
        ("COMMAND", Align::Left),
    ]);
    for verification in verifications {
        table.row(vec![
            verification.iteration.to_string(),
            check_result(verification),
            human::duration(verification.duration),
            human::truncate(&verification.command, 60),
        ]);
    }
    let mut out = format!("\nVerifications:\n{}", indent(&table.render()));
    let failures: Vec<_> = verifications
        .iter()
        .filter(|verification| {
            !verification.passed() && !verification.output_tail.trim().is_empty()
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\nOutput of the failed checks (sent back to the agent as feedback):\n");
    }
    for verification in failures {
        out.push_str(&format!(
            "  iteration {}: $ {}\n",
            verification.iteration,
            human::truncate(&verification.command, 70)
        ));
        let lines: Vec<&str> = verification.output_tail.trim().lines().collect();
        for line in &lines[lines.len().saturating_sub(10)..] {
            out.push_str(&format!("    | {line}\n"));
        }
    }
    out
}

/// `passed`, `timed out`, `failed (exit 1)`.
fn check_result(verification: &Verification) -> String {
    if verification.passed() {
        String::from("passed")
    } else if verification.timed_out {
        String::from("timed out")
    } else {
        format!(
            "failed ({})",
            verification
                .exit
                .map_or_else(|| String::from("did not run"), views::exit_text)
        )
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

fn cancel(id: TaskId, context: &Context, ui: &Ui) -> Result<Outcome> {
    let mut store = context.open_store()?;
    let task = store.task(id)?;
    if task.status == TaskStatus::Running {
        return Err(CliError::usage(format!(
            "task {id} is running: a run is working on it"
        ))
        .with_hint("stop that run first (Ctrl-C), then cancel; if its runner is gone, `baton recover` makes the task pending"));
    }
    let was = store
        .set_task_status(
            id,
            TaskStatus::Cancelled,
            Some(&Redacted::trusted("cancelled by a person")),
        )
        .map_err(|error| with_state_hint(error, id))?;
    if context.json {
        ui.json(&Cancelled {
            id: id.get(),
            status: TaskStatus::Cancelled.as_str(),
            was: was.as_str(),
        })?;
    } else {
        ui.print(&format!(
            "Task {id} is cancelled (it was {was}). `baton task retry {id}` makes it pending again.\n"
        ));
    }
    Ok(Outcome::Success)
}

fn retry(
    id: TaskId,
    message: Option<&str>,
    raise: Budget,
    context: &Context,
    ui: &Ui,
) -> Result<Outcome> {
    let guidance = message
        .map(|message| {
            let what = "the guidance (--message)";
            secrets::refuse_secret(&context.redactor, what, message.to_owned())
        })
        .transpose()?;
    let mut store = context.open_store()?;
    let was = store.task(id)?.status;
    if !matches!(
        was,
        TaskStatus::Failed | TaskStatus::Blocked | TaskStatus::Cancelled
    ) {
        let hint = match was {
            TaskStatus::Pending => "it is already waiting to run: `baton run` runs it",
            TaskStatus::Running => {
                "a run is working on it; if its runner is gone, `baton recover` makes it pending"
            }
            _ => "a completed task is final; add a new task for more work",
        };
        return Err(CliError::usage(format!(
            "task {id} is {was}: only a failed, blocked or cancelled task can be retried"
        ))
        .with_hint(hint));
    }
    if !raise.is_none() {
        // Refused, saying what was spent, when it would leave nothing to spend.
        store.set_budget(BudgetScope::Task(id), raise)?;
    }
    store
        .retry_task(id, guidance.as_ref())
        .map_err(|error| with_state_hint(error, id))?;
    if context.json {
        ui.json(&Retried {
            id: id.get(),
            status: TaskStatus::Pending.as_str(),
            was: was.as_str(),
            guidance: message,
        })?;
    } else {
        let guidance = if message.is_some() {
            ", with your message"
        } else {
            ""
        };
        ui.print(&format!(
            "Task {id} is pending again (it was {was}). The next `baton run` continues it, resuming its session if it has one{guidance}.\n"
        ));
        let budget = store.budget(BudgetScope::Task(id))?;
        if budget.cost_left() == Some(Cost::ZERO) || budget.tokens_left() == Some(0) {
            let line = views::budget_line(&budget).unwrap_or_default();
            ui.note(&format!(
                "its budget is spent ({line}): the next run blocks it again unless you raise it with `baton task retry {id} --max-cost USD` (or --max-tokens N)\n"
            ));
        }
    }
    Ok(Outcome::Success)
}

fn depend(id: TaskId, on: &[i64], context: &Context, ui: &Ui) -> Result<Outcome> {
    let mut store = context.open_store()?;
    for prerequisite in on {
        store.add_dependency(id, TaskId(*prerequisite))?;
    }
    let task = store.task(id)?;
    if context.json {
        ui.json(&Depends {
            id: id.get(),
            after: task.after.iter().map(|id| id.get()).collect(),
        })?;
    } else {
        let after: Vec<String> = task.after.iter().map(TaskId::to_string).collect();
        ui.print(&format!(
            "Task {id} now waits for {} {}.\n",
            views::plural(after.len() as u64, "task", "tasks"),
            after.join(", ")
        ));
    }
    Ok(Outcome::Success)
}

/// A state change the ledger refused, with what the person can do instead.
fn with_state_hint(error: StoreError, id: TaskId) -> CliError {
    match error {
        StoreError::InvalidTransition { .. } => CliError::usage(error.to_string())
            .with_hint(format!("`baton task show {id}` shows the task's state")),
        other => other.into(),
    }
}
