//! The stress harness: many scripted tasks through the orchestrator, as `baton run` runs them,
//! then an audit of the ledger they leave.
//!
//! [`run`] deals a [`Plan`] from a seed (see `script`), adds its tasks to a fresh ledger in a
//! temp dir, each with its own working directory and a verification command, sets up the
//! agent (see `agents`) in a private `HOME`, and runs [`orchestrator::Orchestrator::run`] on a
//! current-thread tokio runtime, the way the `baton` binary does. A [`Witness`] between the
//! orchestrator and the agent records every call (see `timeline`). Afterwards the audit (see
//! `audit`) checks the ledger against its own invariants, against what the witness saw,
//! against each task's script, against what the agent served, and against the agent's own
//! record.
//!
//! The ledger is a new SQLite file in the run's temp dir, or an empty PostgreSQL database
//! ([`StressConfig::ledger`]): the run and the audit go through the store's one interface, so
//! both read and check either ledger the same way.

pub mod agents;
pub mod audit;
pub mod budgets;
mod report;
pub mod script;
pub mod timeline;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::CancellationToken;
use anyhow::Context;
use orchestrator::{Orchestrator, RunConfig, RunReport, Selection};
use session_store::{NewMilestone, NewTask, SessionPolicy, Store};

pub use crate::stress::agents::{AgentKind, Record, Rig};
pub use crate::stress::audit::{Invariant, Ledger, Placement, Summary, Violation};
pub use crate::stress::budgets::Budgets;
pub use crate::stress::report::render;
pub use crate::stress::script::{Kind, Mix, Plan};
pub use crate::stress::timeline::{Overhead, Timeline, Witness};

/// What a stress run does.
#[derive(Debug, Clone, PartialEq)]
pub struct StressConfig {
    pub tasks: usize,
    pub concurrency: usize,
    /// The iterations each task may take (its `max_iterations`).
    pub iterations: u32,
    pub agent: AgentKind,
    pub policy: SessionPolicy,
    pub seed: u64,
    pub mix: Mix,
    /// Whether tasks have a verification command.
    pub verify: bool,
    /// The executable of the CLI kinds: `mock-claude`, or the real `claude`.
    pub program: Option<PathBuf>,
    /// The run is cancelled when it takes longer, which the audit reports.
    pub time_limit: Duration,
    /// Keep the ledger (at this path's directory) instead of deleting it.
    pub keep_ledger: bool,
    /// Where the ledger is: `None` for a new SQLite file in the run's temp dir, or the URL
    /// (password included) of an empty PostgreSQL database, which the caller made and drops.
    pub ledger: Option<String>,
    /// Variables added to a CLI agent's environment, such as `mock-claude`'s overrides.
    pub agent_env: BTreeMap<String, String>,
    /// The budgets every task, milestone and the run get; the audit checks them.
    pub budgets: Budgets,
}

impl StressConfig {
    /// The original acceptance test: ten scripted tasks, one at a time.
    pub fn new(agent: AgentKind) -> StressConfig {
        StressConfig {
            tasks: 10,
            concurrency: 1,
            iterations: 3,
            agent,
            policy: SessionPolicy::Task,
            seed: 1,
            mix: Mix::Scripted,
            verify: true,
            program: None,
            time_limit: Duration::from_secs(30 * 60),
            keep_ledger: false,
            ledger: None,
            agent_env: BTreeMap::new(),
            budgets: Budgets::ROOMY,
        }
    }
}

/// What a stress run did and what the audit found.
#[derive(Debug, Clone)]
pub struct StressRun {
    pub config: StressConfig,
    pub plan: Plan,
    /// Where the plan's tasks and milestones landed in the ledger.
    pub placement: Placement,
    pub report: RunReport,
    pub summary: Summary,
    /// From the first task claimed to the run's return; the set-up and the audit are not in it.
    pub wall: Duration,
    pub overhead: Overhead,
    /// The part of `wall` when no task was under way: the scheduler's own time.
    pub outside_tasks: Duration,
    pub violations: Vec<Violation>,
    /// What the audit looked at: tasks, sessions, calls, and agent records compared.
    pub audited: Audited,
    /// Where the ledger was kept, when asked to keep it: the SQLite file, or the PostgreSQL
    /// database's URL without its password.
    pub kept_ledger: Option<PathBuf>,
    /// What the ledger was: "SQLite", or "PostgreSQL at" its URL without the password.
    pub ledger: String,
}

/// How much the audit checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audited {
    pub tasks: usize,
    pub sessions: usize,
    pub calls: usize,
    pub witnessed_calls: usize,
    /// What the agent's own record was compared with the ledger: transcripts, requests.
    pub agent_record: &'static str,
}

/// The orchestrator's configuration for a stress run: the defaults `baton run` uses, with
/// the run's concurrency and policy, short retry waits, and bounded calls.
pub fn run_config(config: &StressConfig) -> RunConfig {
    let mut run_config = RunConfig {
        concurrency: config.concurrency,
        policy: config.policy,
        call_timeout: Duration::from_secs(120),
        verify_timeout: Duration::from_secs(60),
        budget: config.budgets.run_budget(),
        ..RunConfig::default()
    };
    run_config.retry.base_delay = Duration::from_millis(1);
    run_config.retry.max_delay = Duration::from_millis(10);
    run_config
}

/// Runs the stress test `config` describes and audits the ledger.
pub fn run(config: &StressConfig) -> anyhow::Result<StressRun> {
    if config.tasks == 0 || config.concurrency == 0 || config.iterations == 0 {
        anyhow::bail!("tasks, concurrency and iterations must each be at least 1");
    }
    let mut plan = Plan::new(
        config.tasks,
        config.iterations,
        config.policy,
        config.seed,
        config.mix,
    );
    plan.verify = config.verify;
    let root = tempfile::Builder::new()
        .prefix("baton-stress.")
        .tempdir()
        .context("could not create a temp dir for the run")?;
    let db_path = match &config.ledger {
        Some(url) => PathBuf::from(url),
        None => root.path().join("baton.db"),
    };
    let rig = Rig::new(
        config.agent,
        &plan,
        config.program.as_deref(),
        &config.agent_env,
        root.path(),
    )?;
    if config.ledger.is_some() {
        require_empty(&db_path)?;
    }
    let placement = place(&db_path, &plan, &rig.work_dirs)?;
    {
        let mut store = Store::open_with(
            &db_path,
            &session_store::StoreOptions::new(redact::Redactor::new()),
        )
        .context("could not open the ledger")?;
        let tasks: Vec<_> = placement.tasks.iter().map(|(id, _)| *id).collect();
        budgets::set(&mut store, &config.budgets, &tasks, &placement.milestones)
            .context("could not set the budgets")?;
    }

    let timeline = Timeline::default();
    let witness = Witness::new(
        Arc::clone(&rig.agent),
        Store::open_with(
            &db_path,
            &session_store::StoreOptions::new(redact::Redactor::new()),
        )
        .context("could not open the witness's connection")?,
        timeline.clone(),
    );
    let orchestrator = Orchestrator::new(
        Store::open_with(
            &db_path,
            &session_store::StoreOptions::new(redact::Redactor::new()),
        )
        .context("could not open the ledger")?,
        Arc::new(witness),
        run_config(config),
    )
    .context("could not set up the orchestrator")?
    .with_events(timeline.run_events());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start a tokio runtime")?;
    let started = Instant::now();
    let report = runtime.block_on(drive(&orchestrator, config.time_limit))?;
    let ended = Instant::now();
    let wall = ended - started;
    drop(orchestrator);

    let store = Store::open_with(
        &db_path,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .context("could not open the ledger for the audit")?;
    let ledger = Ledger::read(&store).context("could not read the ledger")?;
    let marks = timeline.marks();
    let mut violations = audit::check_ledger(&ledger);
    violations.extend(audit::check_witness(&ledger, &marks, config.concurrency));
    violations.extend(audit::check_script(&ledger, &plan, &placement));
    violations.extend(audit::check_served(&ledger, config.agent));
    violations.extend(left_behind(&report));
    violations.extend(
        budgets::check(&store, &ledger, config.budgets.run, config.concurrency)
            .context("could not read the budgets")?,
    );
    let agent_record = match &rig.record {
        Record::Mock(mock) => {
            violations.extend(check_mock(&ledger, mock));
            "the mock's transcripts"
        }
        Record::Cli { projects, standin } => {
            violations.extend(audit::check_transcripts(&ledger, projects));
            match standin {
                Some(standin) => {
                    violations.extend(audit::check_standin(
                        &ledger,
                        &standin.requests(),
                        standin.served_usage(),
                    ));
                    "transcripts and the stand-in's requests"
                }
                None => "transcripts",
            }
        }
    };
    let witnessed_calls = marks
        .iter()
        .filter(|(_, mark)| matches!(mark, timeline::Mark::Handover { .. }))
        .count();
    let audited = Audited {
        tasks: ledger.tasks.len(),
        sessions: ledger.sessions.len(),
        calls: ledger.calls.len(),
        witnessed_calls,
        agent_record,
    };
    let ledger_name = describe_ledger(&store);
    let kept_ledger = config
        .keep_ledger
        .then(|| kept_at(config, &store, root.path()));
    drop(store);
    if config.keep_ledger {
        // The work directories stay with the ledger, which names them.
        let _ = root.keep();
    }
    Ok(StressRun {
        config: config.clone(),
        summary: Summary::of(&ledger),
        overhead: timeline::overhead(&marks),
        outside_tasks: timeline::outside_tasks(&marks, started, ended),
        plan,
        placement,
        report,
        wall,
        violations,
        audited,
        kept_ledger,
        ledger: ledger_name,
    })
}

/// What the ledger was, for the report: SQLite, or PostgreSQL at its URL without the password.
fn describe_ledger(store: &Store) -> String {
    if store.is_postgres() {
        format!("PostgreSQL at {}", store.path().display())
    } else {
        String::from("SQLite")
    }
}

/// Where a kept ledger is: the SQLite file in the run's directory `root`, or the PostgreSQL
/// database's URL without its password.
fn kept_at(config: &StressConfig, store: &Store, root: &Path) -> PathBuf {
    match &config.ledger {
        Some(_) => store.path().to_owned(),
        None => root.join("baton.db"),
    }
}

/// Fails unless the ledger at `location` holds no task: the audit reads every task of the
/// ledger, and one the run did not place would fail it.
fn require_empty(location: &Path) -> anyhow::Result<()> {
    let store = Store::open_with(
        location,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .context("could not open the ledger")?;
    let held = store.tasks(&session_store::TaskFilter::default())?.len();
    if held > 0 {
        anyhow::bail!(
            "the ledger at {} holds {held} tasks already; a stress run needs an empty one",
            store.path().display()
        );
    }
    Ok(())
}

/// Adds the plan's milestones and tasks to a new ledger at `db_path`.
pub fn place(db_path: &Path, plan: &Plan, work_dirs: &[PathBuf]) -> anyhow::Result<Placement> {
    let mut store = Store::open_with(
        db_path,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .context("could not create the ledger")?;
    // The plan's texts hold no secret; they pass through a redactor as every text the
    // ledger takes must.
    let redactor = redact::Redactor::new();
    let mut placement = Placement::default();
    for index in 0..plan.milestones() {
        placement
            .milestones
            .push(store.create_milestone(&NewMilestone {
                name: redactor.redact_owned(format!("stress milestone {index}")),
                description: redact::Redacted::trusted("tasks that share one session"),
                policy: Some(SessionPolicy::Milestone),
            })?);
    }
    for (task, work_dir) in plan.tasks.iter().zip(work_dirs) {
        let mut new = NewTask::new(
            redactor.redact_owned(task.title()),
            redactor.redact_owned(task.prompt()),
            work_dir,
        );
        new.max_iterations = plan.iterations;
        new.max_turns = task.max_turns();
        new.milestone = task.milestone.map(|index| placement.milestones[index]);
        if plan.verify {
            new.verify_commands = vec![redactor.redact_owned(task.verify_command())];
        }
        let id = store.add_task(&new)?;
        placement.tasks.push((id, task.clone()));
    }
    Ok(placement)
}

/// Runs every task, cancelling the run at `time_limit`, and bounding the wind-down after.
async fn drive(orchestrator: &Orchestrator, time_limit: Duration) -> anyhow::Result<RunReport> {
    let cancel = CancellationToken::new();
    let timer = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(time_limit).await;
            cancel.cancel();
        })
    };
    let selection = Selection::all();
    let run = orchestrator.run(&selection, cancel);
    let report = tokio::time::timeout(time_limit + Duration::from_secs(120), run)
        .await
        .context("the run did not stop within two minutes of its time limit")?
        .context("the run failed")?;
    timer.abort();
    Ok(report)
}

/// A run that was cancelled or left tasks pending left work behind.
fn left_behind(report: &RunReport) -> Vec<Violation> {
    let mut found = Vec::new();
    if report.cancelled {
        found.push(Violation {
            invariant: Invariant::NothingLeftOpen,
            detail: String::from("the run was cancelled at its time limit"),
        });
    }
    for (task, why) in &report.not_run {
        found.push(Violation {
            invariant: Invariant::NothingLeftOpen,
            detail: format!("task {task} was not run: {why}"),
        });
    }
    found
}

/// The in-process mock's record: every call it was given names a session of the ledger, and
/// it holds a transcript of every session that has calls.
fn check_mock(ledger: &Ledger, mock: &agent_mock::MockAgent) -> Vec<Violation> {
    let mut found = Vec::new();
    let known: std::collections::HashSet<_> =
        ledger.sessions.iter().map(|session| session.id).collect();
    for call in mock.calls() {
        let session = call.plan.session_id();
        if !known.contains(&session) {
            found.push(Violation {
                invariant: Invariant::AgentRecord,
                detail: format!(
                    "the mock was called in session {session}, which the ledger never opened"
                ),
            });
        }
    }
    let used: std::collections::BTreeSet<_> =
        ledger.calls.iter().map(|call| call.session).collect();
    for session in used {
        if mock.transcript(session).is_none() {
            found.push(Violation {
                invariant: Invariant::AgentRecord,
                detail: format!("session {session} has calls but the mock has no transcript of it"),
            });
        }
    }
    found
}
