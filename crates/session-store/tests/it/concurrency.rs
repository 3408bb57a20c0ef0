//! Many writers on one ledger file: threads with their own stores, and separate processes.
//!
//! The process tests run this test binary again as their workers: a test starts it with
//! `--exact concurrency::<its own name>` and a job in the environment, and the test, finding
//! the job, does it instead of its checks (see [`as_worker`]). No test exists only to be a
//! worker, so none passes without checking anything. This works the same under `cargo test`
//! and `cargo nextest run`, because both run the same libtest binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use agent::SessionId;
use session_store::{
    LeaseOwner, NewSession, SCHEMA_VERSION, SessionPolicy, SessionStatus, Store, StoreError,
    TaskFilter, TaskId, Totals,
};

use crate::common::{Backend, add_task, call, fake_owner, new_session, raw_text, temp_store};

/// Checks the whole ledger: every session's totals equal the sum of its calls, every task's
/// the sum of its calls, and the call count is `expected_calls` exactly.
fn assert_ledger_adds_up(location: &Path, expected_calls: u64) {
    let calls: u64 = raw_text(location, "SELECT CAST(count(*) AS TEXT) FROM agent_calls")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        calls, expected_calls,
        "every call was recorded exactly once"
    );

    for (table, key) in [("sessions", "session_id"), ("tasks", "task_id")] {
        let mismatches = raw_text(
            location,
            &format!(
                "SELECT CAST(count(*) AS TEXT) FROM {table} AS owner LEFT JOIN ( \
                     SELECT {key} AS id, count(*) AS calls, sum(turns) AS turns, \
                     sum(input_tokens) AS input, sum(output_tokens) AS output, \
                     sum(cache_read_tokens) AS cache_read, \
                     sum(cache_creation_tokens) AS cache_creation, \
                     sum(cost_nano_usd) AS cost \
                     FROM agent_calls GROUP BY {key}) AS summed ON summed.id = owner.id \
                 WHERE owner.agent_calls IS DISTINCT FROM coalesce(summed.calls, 0) \
                    OR owner.turns IS DISTINCT FROM coalesce(summed.turns, 0) \
                    OR owner.input_tokens IS DISTINCT FROM coalesce(summed.input, 0) \
                    OR owner.output_tokens IS DISTINCT FROM coalesce(summed.output, 0) \
                    OR owner.cache_read_tokens IS DISTINCT FROM coalesce(summed.cache_read, 0) \
                    OR owner.cache_creation_tokens IS DISTINCT FROM coalesce(summed.cache_creation, 0) \
                    OR owner.cost_nano_usd IS DISTINCT FROM coalesce(summed.cost, 0)"
            ),
        )
        .unwrap();
        assert_eq!(
            mismatches, "0",
            "{table} totals equal the sums of their calls"
        );
    }
}

/// The totals that calls with seeds `seeds` add up to, computed without the store.
fn expected_totals(seeds: impl IntoIterator<Item = u64>) -> Totals {
    let mut totals = Totals::default();
    for seed in seeds {
        let call = call(SessionId::new_v4(), TaskId(0), seed);
        totals += Totals {
            agent_calls: 1,
            turns: u64::from(call.turns),
            usage: call.usage,
            cost: call.cost,
        };
    }
    totals
}

/// The environment variable that turns the `worker` test into a worker, and carries its job.
const WORKER_JOB: &str = "SESSION_STORE_IT_WORKER_JOB";

/// One worker's job, passed through the environment as `test|database|directory|index|arg`.
#[derive(Debug, Clone)]
struct Job {
    /// The test whose worker this is.
    test: String,
    database: PathBuf,
    /// Where the ready and go files of the start barrier live.
    directory: PathBuf,
    index: u64,
    argument: String,
}

impl Job {
    fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.test,
            self.database.display(),
            self.directory.display(),
            self.index,
            self.argument
        )
    }

    fn decode(text: &str) -> Job {
        let parts: Vec<&str> = text.split('|').collect();
        assert_eq!(parts.len(), 5, "malformed worker job `{text}`");
        Job {
            test: parts[0].to_owned(),
            database: PathBuf::from(parts[1]),
            directory: PathBuf::from(parts[2]),
            index: parts[3].parse().unwrap(),
            argument: parts[4].to_owned(),
        }
    }

    /// Says this worker is ready, then waits until the parent says go, so that all workers
    /// start their writes together.
    fn ready_then_wait(&self) {
        std::fs::write(self.directory.join(format!("ready-{}", self.index)), b"").unwrap();
        wait_for(&self.directory.join("go"));
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The process tests, by name: each is also the entry point of its own workers.
const OPEN_TEST: &str = "processes_creating_one_new_ledger_at_once_all_succeed";
const WRITE_TEST: &str = "processes_writing_to_one_ledger_at_once_lose_nothing";
const LEASE_TEST: &str = "processes_racing_for_one_lease_have_exactly_one_winner";
const POSTGRES_WRITE_TEST: &str = "processes_writing_to_one_postgres_ledger_at_once_lose_nothing";
const POSTGRES_LEASE_TEST: &str = "processes_racing_for_one_postgres_lease_have_exactly_one_winner";

/// Whether this process is a worker that [`run_workers`] started for the test `test`; if so,
/// it has done its job, and the test returns at once. In the test's own process (no job in
/// the environment) it does nothing and returns `false`.
fn as_worker(test: &str) -> bool {
    let Ok(text) = std::env::var(WORKER_JOB) else {
        return false;
    };
    let job = Job::decode(&text);
    assert_eq!(job.test, test, "a worker was started for another test");
    match test {
        OPEN_TEST => {
            job.ready_then_wait();
            let mut store = Store::open_with(&job.database, &crate::common::options()).unwrap();
            add_task(&mut store, &job.directory, &format!("worker {}", job.index));
        }
        WRITE_TEST | POSTGRES_WRITE_TEST => {
            let mut store = Store::open_with(&job.database, &crate::common::options()).unwrap();
            let shared = TaskId(job.argument.parse().unwrap());
            let owner = LeaseOwner::current().unwrap();
            job.ready_then_wait();
            for session_index in 0..PROCESS_SESSIONS {
                let session = new_session(shared, owner.clone());
                store.open_session(&session).unwrap();
                for call_index in 0..PROCESS_CALLS {
                    let seed =
                        (job.index * PROCESS_SESSIONS + session_index) * PROCESS_CALLS + call_index;
                    store
                        .record_agent_call(&call(session.id, shared, seed))
                        .unwrap();
                }
                store
                    .close_session(session.id, SessionStatus::Completed, None)
                    .unwrap();
            }
        }
        LEASE_TEST | POSTGRES_LEASE_TEST => {
            let mut store = Store::open_with(&job.database, &crate::common::options()).unwrap();
            let session: SessionId = job.argument.parse().unwrap();
            let owner = LeaseOwner::current().unwrap();
            job.ready_then_wait();
            match store.acquire_lease(session, &owner, Duration::from_secs(3600)) {
                Ok(_) => println!("LEASE won {}", owner.pid),
                Err(StoreError::LeaseHeld { holder, .. }) => {
                    println!("LEASE held {}", holder.pid)
                }
                Err(other) => panic!("unexpected error racing for the lease: {other}"),
            }
        }
        other => panic!("no worker job for the test `{other}`"),
    }
    true
}

const PROCESS_SESSIONS: u64 = 4;
const PROCESS_CALLS: u64 = 25;

/// Starts `count` workers for the test `test` (this binary again, running only that test,
/// with a job in its environment), releases them together, and returns each one's standard
/// output once all have succeeded.
fn run_workers(
    test: &str,
    database: &Path,
    directory: &Path,
    count: u64,
    argument: &str,
) -> Vec<String> {
    let executable = std::env::current_exe().unwrap();
    let children: Vec<Child> = (0..count)
        .map(|index| {
            let job = Job {
                test: test.to_owned(),
                database: database.to_owned(),
                directory: directory.to_owned(),
                index,
                argument: argument.to_owned(),
            };
            Command::new(&executable)
                .args(["--exact", &format!("concurrency::{test}")])
                .args(["--nocapture", "--test-threads", "1"])
                .env(WORKER_JOB, job.encode())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for index in 0..count {
        wait_for(&directory.join(format!("ready-{index}")));
    }
    std::fs::write(directory.join("go"), b"").unwrap();

    children
        .into_iter()
        .enumerate()
        .map(|(index, child)| {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                output.status.success(),
                "worker {index} failed ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                stdout.contains("1 passed"),
                "worker {index} ran its job:\n{stdout}"
            );
            stdout
        })
        .collect()
}

#[test]
fn processes_creating_one_new_ledger_at_once_all_succeed() {
    if as_worker(OPEN_TEST) {
        return;
    }
    const WORKERS: u64 = 4;
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("new").join("baton.db");
    run_workers(OPEN_TEST, &database, directory.path(), WORKERS, "");

    let store = Store::open_with(&database, &crate::common::options()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        store.tasks(&TaskFilter::default()).unwrap().len(),
        WORKERS as usize
    );
}

#[test]
fn processes_writing_to_one_ledger_at_once_lose_nothing() {
    if as_worker(WRITE_TEST) {
        return;
    }
    processes_write_at_once(WRITE_TEST);
}

/// The same race between processes, on a PostgreSQL ledger.
#[test]
fn processes_writing_to_one_postgres_ledger_at_once_lose_nothing() {
    if as_worker(POSTGRES_WRITE_TEST) {
        return;
    }
    Backend::Postgres.run(|| processes_write_at_once(POSTGRES_WRITE_TEST));
}

fn processes_write_at_once(test: &str) {
    const WORKERS: u64 = 4;
    let (directory, mut store) = temp_store();
    let shared = add_task(&mut store, directory.path(), "shared");
    let database = directory.location().to_owned();
    run_workers(
        test,
        &database,
        directory.path(),
        WORKERS,
        &shared.to_string(),
    );

    let total_calls = WORKERS * PROCESS_SESSIONS * PROCESS_CALLS;
    assert_ledger_adds_up(&database, total_calls);
    assert_eq!(
        store.task_usage(shared).unwrap(),
        expected_totals(0..total_calls)
    );
    let sessions = store.sessions(&Default::default()).unwrap();
    assert_eq!(sessions.len() as u64, WORKERS * PROCESS_SESSIONS);
    assert!(
        sessions
            .iter()
            .all(|session| session.status == SessionStatus::Completed)
    );
    assert!(
        sessions
            .iter()
            .all(|session| session.totals.agent_calls == PROCESS_CALLS)
    );
}

#[test]
fn processes_racing_for_one_lease_have_exactly_one_winner() {
    if as_worker(LEASE_TEST) {
        return;
    }
    processes_race_for_a_lease(LEASE_TEST);
}

/// The same race between processes, on a PostgreSQL ledger.
#[test]
fn processes_racing_for_one_postgres_lease_have_exactly_one_winner() {
    if as_worker(POSTGRES_LEASE_TEST) {
        return;
    }
    Backend::Postgres.run(|| processes_race_for_a_lease(POSTGRES_LEASE_TEST));
}

fn processes_race_for_a_lease(test: &str) {
    const WORKERS: u64 = 6;
    let (directory, mut store) = temp_store();
    let task = add_task(&mut store, directory.path(), "t");
    // Opened with an already expired lease, so the lease is up for grabs.
    let session = NewSession {
        lease_ttl: Duration::ZERO,
        policy: SessionPolicy::Task,
        ..new_session(task, fake_owner(999))
    };
    store.open_session(&session).unwrap();
    let outputs = run_workers(
        test,
        directory.location(),
        directory.path(),
        WORKERS,
        &session.id.to_string(),
    );

    let mut verdicts: HashMap<&str, Vec<u32>> = HashMap::new();
    for output in &outputs {
        let line = output
            .lines()
            // libtest prints the test's name on the same line, before the worker's output.
            .find_map(|line| line.split_once("LEASE ").map(|(_, verdict)| verdict))
            .unwrap_or_else(|| panic!("a worker reported no verdict:\n{output}"));
        let (verdict, pid) = line.split_once(' ').unwrap();
        verdicts
            .entry(verdict)
            .or_default()
            .push(pid.parse().unwrap());
    }
    let winners = verdicts.get("won").cloned().unwrap_or_default();
    assert_eq!(winners.len(), 1, "{verdicts:?}");
    let losers = verdicts.get("held").cloned().unwrap_or_default();
    assert_eq!(losers.len() as u64, WORKERS - 1, "{verdicts:?}");
    // Every loser was told the winner holds the lease.
    assert!(
        losers.iter().all(|holder| *holder == winners[0]),
        "{verdicts:?}"
    );
    let lease = store.session(session.id).unwrap().lease.unwrap();
    assert_eq!(lease.owner.pid, winners[0]);
}

on_both_backends! {
    fn threads_with_their_own_stores_write_at_once_and_lose_nothing() {
        const THREADS: u64 = 4;
        const SESSIONS: u64 = 5;
        const CALLS: u64 = 20;
        let (directory, mut store) = temp_store();
        // One task that every thread records into, so its totals row is written concurrently.
        let shared = add_task(&mut store, directory.path(), "shared");
        let path = directory.location().to_owned();

        let barrier = Arc::new(Barrier::new(THREADS as usize));
        let writers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let barrier = Arc::clone(&barrier);
                let path = path.clone();
                let working_dir = directory.path().to_owned();
                std::thread::spawn(move || -> Result<(), StoreError> {
                    let mut store = Store::open_with(&path, &crate::common::options())?;
                    let own = add_task(&mut store, &working_dir, &format!("thread {thread}"));
                    barrier.wait();
                    for session_index in 0..SESSIONS {
                        for task in [shared, own] {
                            let session = new_session(task, fake_owner(thread as u32 + 1));
                            store.open_session(&session)?;
                            for call_index in 0..CALLS {
                                let seed = (thread * SESSIONS + session_index) * CALLS + call_index;
                                store.record_agent_call(&call(session.id, task, seed))?;
                            }
                            store.close_session(session.id, SessionStatus::Completed, None)?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for writer in writers {
            // No Busy (or any other) error reaches a writer.
            writer.join().unwrap().unwrap();
        }

        assert_ledger_adds_up(&path, THREADS * SESSIONS * CALLS * 2);
        let all_seeds = 0..THREADS * SESSIONS * CALLS;
        assert_eq!(
            store.task_usage(shared).unwrap(),
            expected_totals(all_seeds)
        );
    }

    /// Creating a new file races on switching it to WAL and on migrating it; both must be waited
    /// out, never reported. Repeated because each round has only a moment of overlap.
    fn threads_creating_one_new_ledger_at_once_all_succeed() {
        const ROUNDS: usize = 40;
        const THREADS: usize = 6;
        for round in 0..ROUNDS {
            let lab = crate::common::Lab::new().unwrap();
            let path = lab.fresh_location();
            let barrier = Arc::new(Barrier::new(THREADS));
            let openers: Vec<_> = (0..THREADS)
                .map(|_| {
                    let barrier = Arc::clone(&barrier);
                    let path = path.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open_with(&path, &crate::common::options()).map(drop)
                    })
                })
                .collect();
            for opener in openers {
                if let Err(err) = opener.join().unwrap() {
                    panic!("round {round}: a concurrent open failed: {err} ({err:?})");
                }
            }
            assert_eq!(
                Store::open_with(&path, &crate::common::options())
                    .unwrap()
                    .schema_version()
                    .unwrap(),
                SCHEMA_VERSION
            );
        }
    }
}
