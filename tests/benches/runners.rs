//! Runners sharing one ledger: tasks per second and ledger round trips per iteration for 1, 2
//! and 4 runners on one PostgreSQL database, against 1 runner on a SQLite file.
//!
//! Each runner is an `Orchestrator` of its own, with its own connection to the ledger, on a
//! thread of its own with a current-thread tokio runtime, as `baton run` runs in a process
//! of its own; they start together and take tasks from the one ledger until none is left.
//! N tasks with no verification, each done in one call by agent-mock's `MockAgent`, so that
//! one iteration is all a task costs: the claim, the session opened, one agent call
//! recorded, the session closed and the task completed. Each runner runs one task at a time
//! (concurrency 1): two runners are two tasks at once.
//!
//! Round trips are counted by the store ([`Store::count_round_trips`]): every exchange a
//! runner waits for — statements, the batches that begin and commit, first-use prepares —
//! summed over the runners and divided by the iterations. A runner's registration, its
//! recovery sweep, its heartbeats and its last look for work are in the sum too, spread over
//! the iterations. SQLite is in the process and has none; its commits are printed instead.
//! To show where they go, it also counts a few of an iteration's operations on their own, on
//! one connection: a look for ready tasks, a read of a task, and a claim with its session.
//!
//! The PostgreSQL server is a throw-away pg-testkit cluster (fsync off, as every test
//! server), so its commits cost no disk sync; SQLite runs at durability `normal` to match
//! (the log synced at checkpoints only). Without PostgreSQL's server programs that part is
//! skipped, and the bench says why.
//!
//! The targets are printed next to the figures with whether they are met: at most 6
//! round trips per iteration, and 4 runners at 1.5 times the rate of one or more. A miss is
//! reported, never a failure: a benchmark reports, and a loaded machine is not a regression.
//!
//! Run with `cargo bench -p tests --bench runners [-- --tasks N]` (default 400).

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use agent::{CancellationToken, SessionId};
use agent_mock::MockAgent;
use orchestrator::{Orchestrator, RunConfig, Selection};
use session_store::{
    Durability, LeaseOwner, NewSession, NewTask, SessionPolicy, Store, StoreOptions, TaskFilter,
    TaskStatus,
};

const DEFAULT_TASKS: usize = 400;

/// The runner counts measured on PostgreSQL.
const RUNNERS: [usize; 3] = [1, 2, 4];

/// Target: ledger round trips per iteration, at most.
const ROUND_TRIPS_TARGET: f64 = 6.0;

/// Target: 4 runners' rate over one runner's, at least.
const SCALING_TARGET: f64 = 1.5;

fn main() {
    let tasks = tasks_from_args();
    println!(
        "runners on one ledger (in-process mock agent, {tasks} one-call tasks, each runner one \
         task at a time; targets: at most {ROUND_TRIPS_TARGET} round trips per iteration, 4 \
         runners at {SCALING_TARGET}x one runner or more):"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let sqlite = measure(&dir.path().join("baton.db"), dir.path(), tasks, 1);
    println!(
        "  SQLite, 1 runner: {:.0} tasks/s ({} in {:.2} s); ledger round trips: none (SQLite \
         is in the process); commits per iteration {:.2}",
        sqlite.rate(),
        sqlite.iterations,
        sqlite.elapsed.as_secs_f64(),
        sqlite.per_iteration(sqlite.commits),
    );
    on_postgres(tasks, dir.path());
}

/// The PostgreSQL rows, or why there are none.
fn on_postgres(tasks: usize, work_dir: &Path) {
    let cluster = match pg_testkit::Cluster::start() {
        Ok(cluster) => cluster,
        Err(error) => {
            println!("  PostgreSQL: not measured: {}", pg_testkit::chain(&error));
            return;
        }
    };
    let mut rates = Vec::new();
    for runners in RUNNERS {
        let database = match cluster.create_database("bench_runners") {
            Ok(database) => database,
            Err(error) => {
                println!(
                    "  PostgreSQL: not measured: could not make a database: {}",
                    pg_testkit::chain(&error)
                );
                return;
            }
        };
        let run = measure(Path::new(&database.url()), work_dir, tasks, runners);
        let round_trips = run.per_iteration(run.round_trips);
        println!(
            "  PostgreSQL, {runners} runner{}: {:.0} tasks/s ({} in {:.2} s); ledger round trips \
             per iteration {round_trips:.2} (target at most {ROUND_TRIPS_TARGET}: {}); commits \
             per iteration {:.2}",
            if runners == 1 { "" } else { "s" },
            run.rate(),
            run.iterations,
            run.elapsed.as_secs_f64(),
            verdict(round_trips <= ROUND_TRIPS_TARGET),
            run.per_iteration(run.commits),
        );
        rates.push((runners, run.rate()));
    }
    let rate_of = |count| {
        rates
            .iter()
            .find(|(runners, _)| *runners == count)
            .map(|(_, rate)| *rate)
    };
    if let (Some(one), Some(four)) = (rate_of(1), rate_of(4)) {
        let scaling = four / one;
        println!(
            "  4 runners on PostgreSQL at {scaling:.2}x one runner (target {SCALING_TARGET}x or \
             more: {})",
            verdict(scaling >= SCALING_TARGET)
        );
    }
    if let Ok(database) = cluster.create_database("bench_runners_parts") {
        let parts = parts_of_an_iteration(Path::new(&database.url()), work_dir, tasks);
        println!(
            "  where they go, on one connection: one look for ready tasks ({tasks} pending) \
             {} round trips; one read of a task {}; the claim with its session opened (one \
             batch) {}",
            parts.ready_scan, parts.task_read, parts.claim
        );
    }
}

/// The round trips of some of an iteration's ledger operations, each on its own.
struct Parts {
    ready_scan: u64,
    task_read: u64,
    claim: u64,
}

/// Counts the round trips of a look for ready tasks, a read of one task and a claim, with
/// every statement already prepared (each is done once before it is counted).
fn parts_of_an_iteration(location: &Path, work_dir: &Path, tasks: usize) -> Parts {
    fill(location, work_dir, tasks);
    let mut store = open(location);
    let counted = |store: &mut Store, operation: &mut dyn FnMut(&mut Store)| {
        operation(store);
        let trips = store.count_round_trips();
        operation(store);
        trips.count()
    };
    let ready = store.ready_tasks().expect("the tasks are listed");
    let ready_scan = counted(&mut store, &mut |store| {
        store.ready_tasks().expect("the tasks are listed");
    });
    let task_read = counted(&mut store, &mut |store| {
        store.task(ready[0].id).expect("the task is read");
    });
    let owner = LeaseOwner::current().expect("this process names itself");
    let mut next = ready.iter().map(|task| task.id);
    let claim = counted(&mut store, &mut |store| {
        let task = next.next().expect("a task is left to claim");
        let session = SessionId::new_v4();
        store
            .claim_batch(
                task,
                &owner,
                Some(SessionPolicy::Task),
                "claim a task",
                |batch, _| {
                    batch.open_session(&NewSession {
                        id: session,
                        task,
                        milestone: None,
                        policy: SessionPolicy::Task,
                        owner: owner.clone(),
                        lease_ttl: Duration::from_secs(60),
                    })
                },
            )
            .expect("the task is claimed");
    });
    Parts {
        ready_scan,
        task_read,
        claim,
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// What one measurement of `runners` runners found.
struct Measured {
    /// Agent calls made, over every runner.
    iterations: usize,
    /// From the moment the runners started together to the last one's return.
    elapsed: Duration,
    /// Over every runner's connection.
    round_trips: u64,
    commits: u64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.iterations as f64 / self.elapsed.as_secs_f64()
    }

    fn per_iteration(&self, total: u64) -> f64 {
        total as f64 / self.iterations.max(1) as f64
    }
}

/// What one runner did.
struct RunnerFigures {
    iterations: usize,
    ended: Instant,
    round_trips: u64,
    commits: u64,
}

/// Adds `tasks` tasks to the ledger at `location`, runs `runners` runners over it together,
/// and checks that every task completed once.
fn measure(location: &Path, work_dir: &Path, tasks: usize, runners: usize) -> Measured {
    fill(location, work_dir, tasks);
    let start = Arc::new(Barrier::new(runners + 1));
    let threads: Vec<_> = (0..runners)
        .map(|_| {
            let location = location.to_owned();
            let start = Arc::clone(&start);
            std::thread::spawn(move || run_one(&location, &start))
        })
        .collect();
    start.wait();
    let started = Instant::now();
    let figures: Vec<RunnerFigures> = threads
        .into_iter()
        .map(|thread| thread.join().expect("a runner ends without a panic"))
        .collect();
    let ended = figures
        .iter()
        .map(|runner| runner.ended)
        .max()
        .unwrap_or(started);
    let measured = Measured {
        iterations: figures.iter().map(|runner| runner.iterations).sum(),
        elapsed: ended - started,
        round_trips: figures.iter().map(|runner| runner.round_trips).sum(),
        commits: figures.iter().map(|runner| runner.commits).sum(),
    };
    let completed = open(location)
        .tasks(&TaskFilter {
            status: Some(TaskStatus::Completed),
            milestone: None,
        })
        .expect("the tasks are listed")
        .len();
    assert_eq!(completed, tasks, "every task completes");
    assert_eq!(measured.iterations, tasks, "every task runs exactly once");
    measured
}

/// One runner: its own connection and orchestrator, started when every runner is ready.
fn run_one(location: &Path, start: &Barrier) -> RunnerFigures {
    let store = open(location);
    let round_trips = store.count_round_trips();
    let commits = store.count_commits();
    let mock = MockAgent::new();
    let config = RunConfig {
        concurrency: 1,
        ..RunConfig::default()
    };
    let orchestrator =
        Orchestrator::new(store, Arc::new(mock.clone()), config).expect("the runner is set up");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    start.wait();
    let report = runtime
        .block_on(orchestrator.run(&Selection::all(), CancellationToken::new()))
        .expect("the run succeeds");
    let ended = Instant::now();
    assert!(
        report.all_completed(),
        "every task a runner takes completes"
    );
    drop(orchestrator);
    RunnerFigures {
        iterations: mock.calls().len(),
        ended,
        round_trips: round_trips.count(),
        commits: commits.count(),
    }
}

fn open(location: &Path) -> Store {
    let options = StoreOptions {
        durability: Durability::Normal,
        ..StoreOptions::new(redact::Redactor::new())
    };
    Store::open_with(location, &options).expect("the ledger opens")
}

/// Adds `tasks` pending one-call tasks.
fn fill(location: &Path, work_dir: &Path, tasks: usize) {
    let mut store = open(location);
    for number in 1..=tasks {
        store
            .add_task(&NewTask::new(
                redact::Redactor::new().redact_owned(format!("bench task {number}")),
                redact::Redacted::trusted("Answer at once."),
                work_dir,
            ))
            .expect("the task is added");
    }
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
