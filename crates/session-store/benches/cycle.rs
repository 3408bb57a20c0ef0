//! Measures the ledger's hot path: open a session, record one agent call, close the session.
//!
//! It runs on a file in a temporary directory with the settings every store uses (WAL), under
//! each durability, and prints the rate and the commits of a cycle on one line each:
//!
//! ```text
//! store cycle (durability normal): 23456 cycles/s (20000 cycles in 0.85 s, 3 commits each)
//! store cycle (durability full): 456 cycles/s (400 cycles in 0.88 s, 3 commits each)
//! ```
//!
//! Under `full` every commit waits for the disk, so it runs a fiftieth of the cycles.
//!
//! Run it with `cargo bench -p session-store --bench cycle`. `--cycles N` changes how many
//! cycles are timed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agent::{ExitInfo, PlanKind, SessionId, Usage};
use session_store::{
    CallOutcome, Cost, Durability, LeaseOwner, NewAgentCall, NewSession, NewTask, SessionPolicy,
    SessionStatus, Store, StoreError, StoreOptions, TaskId, Timestamp,
};

const DEFAULT_CYCLES: u64 = 20_000;
/// Cycles run before timing starts, so that statements are prepared and the file has grown.
const WARM_UP_CYCLES: u64 = 1_000;

fn main() -> ExitCode {
    let cycles = match cycles_from_args() {
        Ok(cycles) => cycles,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runs = [
        (Durability::Normal, cycles),
        (Durability::Full, (cycles / 50).max(100)),
    ];
    match runs
        .into_iter()
        .try_for_each(|(durability, cycles)| run(durability, cycles))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Reads `--cycles N`; cargo also passes `--bench`, which is ignored.
fn cycles_from_args() -> Result<u64, String> {
    let mut args = std::env::args().skip(1);
    let mut cycles = DEFAULT_CYCLES;
    while let Some(arg) = args.next() {
        if arg == "--cycles" {
            let value = args.next().ok_or("--cycles needs a number")?;
            cycles = value
                .parse()
                .ok()
                .filter(|cycles| *cycles > 0)
                .ok_or_else(|| format!("--cycles needs a positive number, not `{value}`"))?;
        }
    }
    Ok(cycles)
}

fn run(durability: Durability, cycles: u64) -> Result<(), StoreError> {
    let directory = tempfile::tempdir().map_err(|source| StoreError::CreateDirectory {
        path: std::env::temp_dir(),
        source,
    })?;
    let options = StoreOptions {
        durability,
        ..StoreOptions::new(redact::Redactor::new())
    };
    let mut store = Store::open_with(directory.path().join("bench.db"), &options)?;
    let task = store.add_task(&NewTask::new(
        redact::Redacted::trusted("benchmark"),
        redact::Redacted::trusted("open, record, close"),
        directory.path(),
    ))?;
    let owner = LeaseOwner::current()?;

    for _ in 0..WARM_UP_CYCLES.min(cycles) {
        cycle(&mut store, task, &owner)?;
    }
    let commits = store.count_commits();
    let started = Instant::now();
    for _ in 0..cycles {
        cycle(&mut store, task, &owner)?;
    }
    let elapsed = started.elapsed();

    let rate = cycles as f64 / elapsed.as_secs_f64();
    println!(
        "store cycle (durability {}): {rate:.0} cycles/s ({cycles} cycles in {:.2} s, {} \
         commits each)",
        durability.as_str(),
        elapsed.as_secs_f64(),
        commits.count() / cycles,
    );
    Ok(())
}

/// One session's life as the orchestrator lives it for a task that succeeds at once.
fn cycle(store: &mut Store, task: TaskId, owner: &LeaseOwner) -> Result<(), StoreError> {
    let id = SessionId::new_v4();
    store.open_session(&NewSession {
        id,
        task,
        milestone: None,
        policy: SessionPolicy::Task,
        owner: owner.clone(),
        lease_ttl: Duration::from_secs(600),
    })?;
    let started_at = Timestamp::now();
    store.record_agent_call(&NewAgentCall {
        session: id,
        task,
        iteration: 1,
        plan: PlanKind::Start,
        prompt: redact::Redacted::trusted("Make the failing test pass."),
        result_text: Some(redact::Redacted::trusted("Done: the test passes now.")),
        outcome: CallOutcome::Success,
        subtype: Some(redact::Redacted::trusted("success")),
        error_message: None,
        reported_session: Some(id),
        usage: Usage {
            input_tokens: 1_200,
            output_tokens: 350,
            cache_read_tokens: 24_000,
            cache_creation_tokens: 2_100,
        },
        cost: Cost::from_usd(0.041_786_25),
        turns: 4,
        duration: Duration::from_millis(8_300),
        exit: Some(ExitInfo::Code(0)),
        started_at,
        ended_at: started_at,
        key: None,
    })?;
    store.close_session(
        id,
        SessionStatus::Completed,
        Some(&redact::Redacted::trusted("task completed")),
    )
}
