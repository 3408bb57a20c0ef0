//! `baton run`: run ready tasks until none is left (with `--watch`, until stopped), with live
//! progress, a summary, and an exit code that says whether everything completed.

mod remote;
mod report;

use std::collections::HashMap;
use std::time::Duration;

use agent::{Agent, CancellationToken};
use orchestrator::{Orchestrator, Selection};
use redact::Redacted;
use session_store::{NewEvent, Store, Task, TaskFilter, TaskId, TaskStatus};

pub use report::{Finished, RunJson};

use crate::agents;
use crate::error::{CliError, Outcome, Result};
use crate::flags::{AgentKind, RunArgs};
use crate::keys;
use crate::output::Ui;
use crate::progress::{Mode, Progress};
use crate::settings::{Context, Settings};
use crate::signals;

/// How often a watching run (`--watch`) with room for more work looks at the ledger: for tasks
/// added since, and for what dead runners left (which it sweeps first). A second is nothing
/// next to an agent call and to the lease TTL that decides when a runner is dead, while an
/// idle runner costs the ledger a few small transactions a second (the sweep, the ready
/// tasks), which SQLite and a shared PostgreSQL alike take in their stride.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub fn run(args: RunArgs, mut context: Context, ui: &Ui) -> Result<Outcome> {
    context.settings = context.settings.clone().with_run_flags(&args);
    let store = context.open_store()?;
    let selection = selection(&store, &args)?;
    check_named_tasks(&store, &selection)?;
    let candidates = candidates(&store, &selection)?;
    if candidates.is_empty() && !args.watch {
        return nothing_to_run(ui, context.json);
    }
    remote::check(&store, &candidates, &context)?;
    let budgets: HashMap<TaskId, u32> = candidates
        .iter()
        .map(|task| (task.id, task.max_iterations))
        .collect();
    let settings = &context.settings;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        // Signals are listened for before any child process starts (the agent's probe is
        // one): a signal that came before would kill baton by its default action, with no
        // session closed and no exit code of ours.
        let watch = Watch::start(ui, context.json, budgets)?;
        let agent = agents::build(settings, &context.env);
        let store = record_start(store, settings, agent.as_ref()).await?;
        let mut config = agents::run_config(settings);
        config.mirror_transcripts = agents::mirror_transcripts(settings, store.is_postgres());
        config.watch = args.watch.then_some(WATCH_INTERVAL);
        config.worktree_dir = config
            .worktree_dir
            .map(|dir| context.default_workdir().join(dir));
        config.clones = config.clones.map(|dir| context.default_workdir().join(dir));
        config.start_dir = Some(context.env.cwd.clone());
        let orchestrator = Orchestrator::new(store, agent, config)?
            .with_workspaces(crate::workspaces::workspaces(&context.env));
        let finished = execute(orchestrator, &selection, watch).await?;
        finished.report(ui, context.json)
    })
}

/// The tasks and the milestone the command line names.
fn selection(store: &Store, args: &RunArgs) -> Result<Selection> {
    let milestone = match &args.milestone {
        Some(name) => Some(super::milestone_named(store, name)?.id),
        None => None,
    };
    Ok(Selection {
        tasks: args.ids.iter().copied().map(TaskId).collect(),
        milestone,
    })
}

/// The selected tasks that are waiting to run, or were left running by a runner that is gone.
fn candidates(store: &Store, selection: &Selection) -> Result<Vec<Task>> {
    Ok(store
        .tasks(&TaskFilter {
            milestone: selection.milestone,
            ..TaskFilter::default()
        })?
        .into_iter()
        .filter(|task| selection.tasks.is_empty() || selection.tasks.contains(&task.id))
        .filter(|task| matches!(task.status, TaskStatus::Pending | TaskStatus::Running))
        .collect())
}

fn nothing_to_run(ui: &Ui, json: bool) -> Result<Outcome> {
    if json {
        ui.json(&Finished::empty().json())?;
    } else {
        ui.print(
            "Nothing to run: no task is pending. `baton task list` shows where each task stands.\n",
        );
    }
    Ok(Outcome::Success)
}

/// Named tasks must exist and be waiting to run.
fn check_named_tasks(store: &Store, selection: &Selection) -> Result<()> {
    for id in &selection.tasks {
        let task = store.task(*id)?;
        if let Some(milestone) = selection.milestone
            && task.milestone != Some(milestone)
        {
            return Err(CliError::usage(format!(
                "task {id} is not in the milestone given with --milestone"
            ))
            .with_hint("drop --milestone, or name tasks of that milestone"));
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
        .with_hint(hint));
    }
    Ok(())
}

/// Checks that the agent runs, and writes the run's start into the ledger with the agent's
/// version, so that a run can be traced to the CLI that did the work.
///
/// The store is handed back: its write runs on a blocking thread, as every ledger operation
/// inside the runtime must (PostgreSQL's client blocks on a runtime of its own).
async fn record_start(mut store: Store, settings: &Settings, agent: &dyn Agent) -> Result<Store> {
    let version = match settings.get(keys::AGENT_KIND) {
        AgentKind::Claude => Some(agents::probe(agent, settings).await?.version),
        AgentKind::Mock => None,
    };
    let detail = serde_json::json!({
        "agent": settings.get(keys::AGENT_KIND).as_str(),
        "agent_version": version,
        "pid": std::process::id(),
        "concurrency": settings.get(keys::RUN_CONCURRENCY),
        "policy": settings.get(keys::RUN_SESSION_POLICY).as_str(),
        "max_cost_usd": settings.get(keys::RUN_MAX_COST).map(session_store::Cost::as_usd),
        "max_tokens": settings.get(keys::RUN_MAX_TOKENS),
    });
    // The store was opened with the context's redactor, which knows the run's secrets.
    let detail = store.redactor().redact_json_value(detail);
    let written = tokio::task::spawn_blocking(move || {
        let written = store.append_event(&NewEvent {
            task: None,
            session: None,
            kind: Redacted::trusted("run_started"),
            detail,
        });
        written.map(|_| store)
    })
    .await;
    match written {
        Ok(store) => Ok(store?),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// A run's progress on the screen and its signal handling: set up before anything starts.
pub struct Watch {
    progress: Progress,
    cancel: CancellationToken,
    received: signals::Received,
}

impl Watch {
    /// Shows the progress of a run of the tasks `budgets` names, and listens for Ctrl-C,
    /// SIGTERM and SIGHUP. Must be called inside the runtime.
    pub fn start(ui: &Ui, json: bool, budgets: HashMap<TaskId, u32>) -> Result<Watch> {
        let progress = Progress::start(ui, Mode::for_output(ui, json), budgets);
        let cancel = CancellationToken::new();
        let first = progress.notifier();
        let second = ui.clone();
        let received = signals::watch(
            cancel.clone(),
            move |signal| {
                first(format!(
                    "{}: stopping: closing sessions and putting running tasks back to pending (again to quit at once)",
                    signal.name()
                ));
            },
            move |signal| {
                second.note(&format!(
                    "{}: quitting now; `baton recover` (or the next `baton run`) cleans up what was left open\n",
                    signal.name()
                ));
            },
        )
        .map_err(|error| {
            CliError::internal("could not listen for Ctrl-C and SIGTERM").with_source(error)
        })?;
        Ok(Watch {
            progress,
            cancel,
            received,
        })
    }
}

/// Runs `selection`, shown and stopped as `watch` says, and reads back what it left.
pub async fn execute(
    orchestrator: Orchestrator,
    selection: &Selection,
    watch: Watch,
) -> Result<Finished> {
    let Watch {
        progress,
        cancel,
        received,
    } = watch;
    let orchestrator = orchestrator.with_events(progress.events());
    let result = orchestrator.run(selection, cancel).await;
    progress.finish();
    let report = result?;
    // What the run did is in the ledger; a server that went away at this moment is waited
    // for as the run waited for it, so that the summary is not lost to a restart.
    let outage = orchestrator.ledger_outage();
    record_spend(orchestrator.db(), outage, &report).await?;
    Finished::read(orchestrator.db(), outage, report, received.get()).await
}

/// Writes what a run with a budget spent, and whether the budget stopped it, into the ledger
/// beside its start (which holds the budget). A run without a budget writes nothing more.
///
/// Written again while the ledger cannot be reached, for up to `outage`: a write whose answer
/// was lost may leave the event twice, which says nothing different.
async fn record_spend(
    db: &orchestrator::Db,
    outage: Duration,
    report: &orchestrator::RunReport,
) -> Result<()> {
    let spend = report.spend;
    if spend.budget.is_none() {
        return Ok(());
    }
    let detail = serde_json::json!({
        "pid": std::process::id(),
        "max_cost_usd": spend.budget.max_cost.map(session_store::Cost::as_usd),
        "max_tokens": spend.budget.max_tokens,
        "spent_cost_usd": spend.spent.cost.as_usd(),
        "spent_tokens": spend.spent.tokens,
        "stopped": report.budget_stop,
    });
    db.run_retrying(
        outage,
        move |store| {
            // Numbers and a reason Baton wrote itself; redacted all the same, as every event
            // is, with the ledger's own redactor.
            let detail = store.redactor().redact_json_value(detail.clone());
            store.append_event(&NewEvent {
                task: None,
                session: None,
                kind: Redacted::trusted("run_spent"),
                detail,
            })
        },
        |_| {},
    )
    .await?;
    Ok(())
}
