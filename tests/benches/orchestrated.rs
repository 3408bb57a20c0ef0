//! Orchestrated iterations per second with the in-process mock agent: the orchestrator's
//! whole overhead per iteration, the ledger included.
//!
//! N tasks with no verification, each done in one call by agent-mock's `MockAgent` (which
//! answers at once), run by `Orchestrator::run` on a current-thread tokio runtime as
//! `baton run` runs them, at concurrency 1 and 4. One iteration is all a task costs here:
//! the scheduler's look for ready tasks, the claim, the session opened, one agent call
//! recorded, the session closed and the task completed.
//!
//! To show what bounds the rate it also times, on one thread and without the orchestrator,
//! the same ledger writes an iteration makes, and one scan for ready tasks with N pending.
//!
//! Run with `cargo bench -p tests --bench orchestrated [-- --tasks N]` (default 2000).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{CancellationToken, PlanKind, SessionId, Usage};
use agent_mock::MockAgent;
use orchestrator::{Orchestrator, RunConfig, Selection};
use session_store::{
    CallOutcome, Cost, LeaseOwner, NewAgentCall, NewSession, NewTask, SessionPolicy, SessionStatus,
    Store, TaskStatus, Timestamp,
};

const DEFAULT_TASKS: usize = 2000;

fn main() {
    let tasks = tasks_from_args();
    for concurrency in [1, 4] {
        let (iterations, elapsed) = orchestrated(tasks, concurrency);
        println!(
            "orchestrated iterations (in-process mock agent, concurrency {concurrency}): {:.0} iterations/s \
             ({iterations} iterations in {:.2} s, {:.0} µs each)",
            iterations as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / iterations as f64,
        );
    }
    let (writes, elapsed) = ledger_writes_alone(tasks);
    println!(
        "  for comparison, the ledger writes of an iteration alone (claim, open, record, clear \
         the agent, close, complete: {writes} commits), on one thread: {:.0} iterations/s ({:.0} µs each)",
        tasks as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / tasks as f64,
    );
    let scan = ready_scan(tasks);
    println!(
        "  and one look for ready tasks with {tasks} pending (the scheduler looks once per task \
         finished): {:.2} ms",
        scan.as_secs_f64() * 1000.0
    );
}

/// Reads `--tasks N`; cargo also passes `--bench`, which is ignored.
fn tasks_from_args() -> usize {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--tasks" {
            return args
                .next()
                .and_then(|value| value.parse().ok())
                .filter(|tasks| *tasks > 0)
                .expect("--tasks needs a positive number");
        }
    }
    DEFAULT_TASKS
}

fn ledger_with_tasks(dir: &Path, tasks: usize) -> Store {
    let mut store = Store::open(dir.join("baton.db")).expect("the ledger opens");
    for number in 1..=tasks {
        store
            .add_task(&NewTask::new(
                format!("bench task {number}"),
                "Answer at once.",
                dir,
            ))
            .expect("the task is added");
    }
    store
}

/// Runs `tasks` one-call tasks through the orchestrator; returns the calls made and the time.
fn orchestrated(tasks: usize, concurrency: usize) -> (usize, Duration) {
    let dir = tempfile::tempdir().expect("a temp dir");
    drop(ledger_with_tasks(dir.path(), tasks));
    let agent = MockAgent::new();
    let config = RunConfig {
        concurrency,
        ..RunConfig::default()
    };
    let orchestrator = Orchestrator::new(
        Store::open(dir.path().join("baton.db")).expect("the ledger opens"),
        Arc::new(agent.clone()),
        config,
    )
    .expect("the orchestrator is set up");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    let report = runtime
        .block_on(orchestrator.run(&Selection::all(), CancellationToken::new()))
        .expect("the run succeeds");
    let elapsed = started.elapsed();
    assert!(report.all_completed(), "every task completes");
    (agent.calls().len(), elapsed)
}

/// The writes one iteration makes, straight to the store; returns the commits per iteration
/// and the time for `tasks` iterations.
fn ledger_writes_alone(tasks: usize) -> (usize, Duration) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut store = ledger_with_tasks(dir.path(), tasks);
    let ids: Vec<_> = store
        .ready_tasks()
        .expect("the tasks are listed")
        .into_iter()
        .map(|task| task.id)
        .collect();
    let owner = LeaseOwner::current().expect("this process names itself");
    let started = Instant::now();
    for task in ids {
        store.claim_task(task, &owner).expect("claimed");
        let session = SessionId::new_v4();
        store
            .open_session(&NewSession {
                id: session,
                task,
                milestone: None,
                policy: SessionPolicy::Task,
                owner: owner.clone(),
                lease_ttl: Duration::from_secs(60),
            })
            .expect("opened");
        let now = Timestamp::now();
        store
            .record_agent_call(&NewAgentCall {
                session,
                task,
                iteration: 1,
                plan: PlanKind::Start,
                prompt: String::from("# Task: bench task\n\nAnswer at once."),
                result_text: Some(String::from("done")),
                outcome: CallOutcome::Success,
                subtype: Some(String::from("success")),
                error_message: None,
                reported_session: Some(session),
                usage: Usage::ZERO,
                cost: Cost::ZERO,
                turns: 1,
                duration: Duration::ZERO,
                exit: None,
                started_at: now,
                ended_at: now,
            })
            .expect("recorded");
        store.set_agent_pid(session, None).expect("cleared");
        store
            .close_session(session, SessionStatus::Completed, Some("task completed"))
            .expect("closed");
        store
            .set_task_status(task, TaskStatus::Completed, None)
            .expect("completed");
    }
    (6, started.elapsed())
}

/// One scan for ready tasks with `tasks` pending.
fn ready_scan(tasks: usize) -> Duration {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = ledger_with_tasks(dir.path(), tasks);
    store.ready_tasks().expect("warm-up scan");
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        let ready = store.ready_tasks().expect("the scan succeeds");
        assert_eq!(ready.len(), tasks);
    }
    started.elapsed() / rounds
}
