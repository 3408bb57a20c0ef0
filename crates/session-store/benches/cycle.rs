//! Measures the ledger's hot path: open a session, record one agent call, close the session.
//!
//! It runs on a file in a temporary directory with the settings every store uses (WAL,
//! `synchronous=NORMAL`), and prints the rate on one line:
//!
//! ```text
//! store cycle: 23456 cycles/s (10000 cycles in 0.43 s)
//! ```
//!
//! Run it with `cargo bench -p session-store --bench cycle`. `--cycles N` changes how many
//! cycles are timed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agent::{ExitInfo, PlanKind, SessionId, Usage};
use session_store::{
    CallOutcome, Cost, LeaseOwner, NewAgentCall, NewSession, NewTask, SessionPolicy, SessionStatus,
    Store, StoreError, TaskId, Timestamp,
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
    match run(cycles) {
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

fn run(cycles: u64) -> Result<(), StoreError> {
    let directory = tempfile::tempdir().map_err(|source| StoreError::CreateDirectory {
        path: std::env::temp_dir(),
        source,
    })?;
    let mut store = Store::open(directory.path().join("bench.db"))?;
    let task = store.add_task(&NewTask::new(
        "benchmark",
        "open, record, close",
        directory.path(),
    ))?;
    let owner = LeaseOwner::current()?;

    for _ in 0..WARM_UP_CYCLES {
        cycle(&mut store, task, &owner)?;
    }
    let started = Instant::now();
    for _ in 0..cycles {
        cycle(&mut store, task, &owner)?;
    }
    let elapsed = started.elapsed();

    let rate = cycles as f64 / elapsed.as_secs_f64();
    println!(
        "store cycle: {rate:.0} cycles/s ({cycles} cycles in {:.2} s)",
        elapsed.as_secs_f64()
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
        prompt: String::from("Make the failing test pass."),
        result_text: Some(String::from("Done: the test passes now.")),
        outcome: CallOutcome::Success,
        subtype: Some(String::from("success")),
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
    })?;
    store.close_session(id, SessionStatus::Completed, Some("task completed"))
}
