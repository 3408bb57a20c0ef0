//! Orchestrated iterations per second with the in-process mock agent: the orchestrator's
//! whole overhead per iteration, the ledger included.
//!
//! N tasks with no verification, each done in one call by agent-mock's `MockAgent` (which
//! answers at once), run by `Orchestrator::run` on a current-thread tokio runtime as
//! `baton run` runs them, at concurrency 1 and 4. One iteration is all a task costs here:
//! the scheduler's look for ready tasks, the claim, the session opened, one agent call
//! recorded, the session closed and the task completed.
//!
//! It runs under both ledger durabilities: `normal` (the log synced at checkpoints only) and
//! `full` (the default: every commit waits for the disk). It counts the ledger's commits with
//! the store's commit counter and prints them per iteration: under `full` a commit costs one
//! sync of the disk, which it also times, so commits per iteration times one sync bounds the
//! rate. `full` runs the small ledger only, which is enough to show that bound.
//!
//! It runs a small ledger (100 tasks) and a large one (N): the scheduler looks for ready
//! tasks once per task finished, and each look reads every pending task, so the rate falls as
//! the ledger grows. To show what bounds it, it also prints the CPU time per iteration next
//! to the wall time, and times on their own: the ledger writes an iteration makes (on one
//! thread, without the orchestrator), one look for ready tasks with N pending, and one round
//! trip to tokio's blocking pool, which is how the orchestrator reaches the ledger for each
//! of its operations.
//!
//! Run with `cargo bench -p tests --bench orchestrated [-- --tasks N]` (default 2000).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent::{
    Agent, AgentCall, AgentError, AgentInfo, AgentReply, CancellationToken, EventSink, PlanKind,
    SessionId, Usage,
};
use agent_mock::MockAgent;
use orchestrator::{Orchestrator, RunConfig, Selection};
use session_store::{
    CallOutcome, Cost, Durability, LeaseOwner, NewAgentCall, NewSession, NewTask, SessionPolicy,
    SessionStatus, Store, StoreOptions, TaskStatus, Timestamp,
};

const DEFAULT_TASKS: usize = 2000;

/// The small ledger's size.
const SMALL: usize = 100;

fn main() {
    let tasks = tasks_from_args();
    let runs = [
        (AgentChoice::Mock, Durability::Normal, SMALL),
        (AgentChoice::Mock, Durability::Normal, tasks),
        (AgentChoice::Instant, Durability::Normal, SMALL),
        (AgentChoice::Mock, Durability::Full, SMALL),
    ];
    for (choice, durability, size) in runs {
        for concurrency in [1, 4] {
            let run = orchestrated(choice, durability, size, concurrency);
            let per_iteration = |total: f64| total / run.iterations as f64;
            println!(
                "orchestrated iterations ({}, durability {}, {size} tasks, concurrency \
                 {concurrency}): {:.0} iterations/s ({} in {:.2} s; per iteration {:.0} µs \
                 wall, {:.0} µs CPU)",
                choice.describe(),
                durability.as_str(),
                run.iterations as f64 / run.elapsed.as_secs_f64(),
                run.iterations,
                run.elapsed.as_secs_f64(),
                per_iteration(run.elapsed.as_secs_f64() * 1e6),
                per_iteration(run.cpu.as_secs_f64() * 1e6),
            );
            println!(
                "  ledger commits per iteration: {:.2} (the run's recovery adds two in all)",
                per_iteration(run.commits as f64),
            );
        }
    }
    println!(
        "  for comparison, one sync of the disk the ledger is on (durability full waits for \
         one per commit): {:.2} ms",
        disk_sync().as_secs_f64() * 1000.0
    );
    let (writes, elapsed) = ledger_writes_alone(tasks);
    println!(
        "  and the ledger writes of an iteration alone (the claim with the session opened; the \
         call with the close and the finish: {writes} commits), durability normal, on one \
         thread: {:.0} iterations/s ({:.0} µs each)",
        tasks as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / tasks as f64,
    );
    let scan = ready_scan(tasks);
    println!(
        "  and one look for ready tasks with {tasks} pending (the scheduler looks once per task \
         finished): {:.2} ms",
        scan.as_secs_f64() * 1000.0
    );
    println!(
        "  and one round trip to tokio's blocking pool (the orchestrator makes one per ledger \
         operation, two per iteration here): {:.1} µs",
        blocking_round_trip().as_secs_f64() * 1e6
    );
}

/// The mean time of one write and sync of a 4 KiB page to a file in a temporary directory,
/// where the benchmark's ledgers are.
fn disk_sync() -> Duration {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut file = std::fs::File::create(dir.path().join("sync")).expect("a file");
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        file.write_all(&[0; 4096]).expect("written");
        file.sync_data().expect("synced");
    }
    started.elapsed() / rounds
}

/// CPU time (user and system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct, and getrusage only
    // writes into the one it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |value: libc::timeval| {
        Duration::from_secs(value.tv_sec as u64) + Duration::from_micros(value.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The mean time of `spawn_blocking` of nothing, awaited, on a current-thread runtime.
fn blocking_round_trip() -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let rounds = 5_000;
    runtime.block_on(async {
        tokio::task::spawn_blocking(|| ()).await.expect("warm-up");
        let started = Instant::now();
        for _ in 0..rounds {
            tokio::task::spawn_blocking(|| ())
                .await
                .expect("the blocking task runs");
        }
        started.elapsed() / rounds
    })
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

fn open_ledger(dir: &Path, durability: Durability) -> Store {
    let options = StoreOptions {
        durability,
        ..StoreOptions::new(redact::Redactor::new())
    };
    Store::open_with(dir.join("baton.db"), &options).expect("the ledger opens")
}

/// A ledger of `tasks` pending tasks. It is filled under `normal`, which only the setup
/// pays for; every benchmark opens it again with the durability it measures.
fn ledger_with_tasks(dir: &Path, tasks: usize) -> Store {
    let mut store = open_ledger(dir, Durability::Normal);
    for number in 1..=tasks {
        store
            .add_task(&NewTask::new(
                redact::Redactor::new().redact_owned(format!("bench task {number}")),
                redact::Redacted::trusted("Answer at once."),
                dir,
            ))
            .expect("the task is added");
    }
    store
}

/// Which agent answers.
#[derive(Clone, Copy)]
enum AgentChoice {
    /// agent-mock's `MockAgent`, answering at once. It still waits on a zero-length tokio
    /// timer, which tokio rounds up to its next millisecond tick.
    Mock,
    /// A reply returned on the spot, to show the orchestrator's cost without the mock's.
    Instant,
}

impl AgentChoice {
    fn describe(self) -> &'static str {
        match self {
            AgentChoice::Mock => "in-process mock agent",
            AgentChoice::Instant => "an agent that returns at once, for comparison",
        }
    }
}

/// Answers every call at once, with the session it was given.
struct InstantAgent {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Agent for InstantAgent {
    async fn call(
        &self,
        call: AgentCall,
        _events: EventSink,
        _cancel: CancellationToken,
    ) -> Result<AgentReply, AgentError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut reply = AgentReply::empty(call.plan.session_id());
        reply.turns = 1;
        Ok(reply)
    }

    async fn probe(&self) -> Result<AgentInfo, AgentError> {
        Ok(AgentInfo {
            name: String::from("instant"),
            version: String::from("1"),
            program: None,
        })
    }
}

/// What one orchestrated run measured.
struct Run {
    /// Agent calls made.
    iterations: usize,
    elapsed: Duration,
    cpu: Duration,
    /// The ledger's commits during the run.
    commits: u64,
}

/// Runs `tasks` one-call tasks through the orchestrator.
fn orchestrated(
    choice: AgentChoice,
    durability: Durability,
    tasks: usize,
    concurrency: usize,
) -> Run {
    let dir = tempfile::tempdir().expect("a temp dir");
    drop(ledger_with_tasks(dir.path(), tasks));
    let mock = MockAgent::new();
    let instant = Arc::new(InstantAgent {
        calls: AtomicUsize::new(0),
    });
    let agent: Arc<dyn Agent> = match choice {
        AgentChoice::Mock => Arc::new(mock.clone()),
        AgentChoice::Instant => Arc::clone(&instant) as Arc<dyn Agent>,
    };
    let config = RunConfig {
        concurrency,
        ..RunConfig::default()
    };
    let store = open_ledger(dir.path(), durability);
    let commits = store.count_commits();
    let orchestrator = Orchestrator::new(store, agent, config).expect("the orchestrator is set up");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    let cpu_before = cpu_time();
    let report = runtime
        .block_on(orchestrator.run(&Selection::all(), CancellationToken::new()))
        .expect("the run succeeds");
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    assert!(report.all_completed(), "every task completes");
    Run {
        iterations: mock.calls().len() + instant.calls.load(Ordering::Relaxed),
        elapsed,
        cpu,
        commits: commits.count(),
    }
}

/// The writes one iteration makes, straight to the store, batched as the orchestrator batches
/// them; returns the commits per iteration and the time for `tasks` iterations.
fn ledger_writes_alone(tasks: usize) -> (u64, Duration) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut store = ledger_with_tasks(dir.path(), tasks);
    let ids: Vec<_> = store
        .ready_tasks()
        .expect("the tasks are listed")
        .into_iter()
        .map(|task| task.id)
        .collect();
    let owner = LeaseOwner::current().expect("this process names itself");
    let ttl = Duration::from_secs(60);
    let commits = store.count_commits();
    let started = Instant::now();
    for task in ids {
        let session = SessionId::new_v4();
        store
            .batch("claim a task", |batch| {
                batch.claim_task(task, &owner)?;
                batch.open_session(&NewSession {
                    id: session,
                    task,
                    milestone: None,
                    policy: SessionPolicy::Task,
                    owner: owner.clone(),
                    lease_ttl: ttl,
                })
            })
            .expect("claimed");
        let call = one_call(task, session);
        store
            .batch("finish a task", |batch| {
                batch.record_agent_call(&call)?;
                batch.close_session(
                    session,
                    SessionStatus::Completed,
                    Some(&redact::Redacted::trusted("task completed")),
                )?;
                batch.set_task_status(task, TaskStatus::Completed, None)
            })
            .expect("finished");
    }
    (commits.count() / tasks as u64, started.elapsed())
}

/// A successful first call in `session`, as the loop records it.
fn one_call(task: session_store::TaskId, session: SessionId) -> NewAgentCall {
    let now = Timestamp::now();
    NewAgentCall {
        session,
        task,
        iteration: 1,
        plan: PlanKind::Start,
        prompt: redact::Redacted::trusted("# Task: bench task\n\nAnswer at once."),
        result_text: Some(redact::Redacted::trusted("done")),
        outcome: CallOutcome::Success,
        subtype: Some(redact::Redacted::trusted("success")),
        error_message: None,
        reported_session: Some(session),
        usage: Usage::ZERO,
        cost: Cost::ZERO,
        turns: 1,
        duration: Duration::ZERO,
        exit: None,
        started_at: now,
        ended_at: now,
        key: None,
    }
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
