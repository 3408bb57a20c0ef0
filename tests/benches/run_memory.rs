//! Memory: the peak resident set size of a run of 1,000 tasks with the mock agent.
//!
//! - With `BATON_BIN` naming the `baton` binary (`cargo xtask bench` builds it and sets it):
//!   `baton init --agent mock`, 1,000 `baton task add`, then `baton run --agent mock`, whose
//!   peak RSS the kernel reports when it is reaped (`wait4`'s `ru_maxrss`).
//! - Always, in process: the same run through `Orchestrator::run` with a mock agent like
//!   `baton`'s built-in one, in this fresh process; its peak RSS is `VmHWM` from
//!   `/proc/self/status`, next to the RSS before the run.
//!
//! Run with `cargo bench -p tests --bench run_memory [-- --tasks N]` (default 1000).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use agent::{CancellationToken, Usage};
use agent_mock::{MockAgent, Step};
use orchestrator::{Orchestrator, RunConfig, Selection};
use session_store::{NewTask, Store};

const DEFAULT_TASKS: usize = 1000;

fn main() {
    let tasks = tasks_from_args();
    match std::env::var_os("BATON_BIN") {
        Some(baton) => match baton_run(Path::new(&baton), tasks) {
            Ok((peak_kib, seconds)) => println!(
                "peak RSS of `baton run --agent mock` with {tasks} tasks: {:.1} MiB \
                 (the run took {seconds:.1} s)",
                peak_kib as f64 / 1024.0
            ),
            Err(err) => println!("peak RSS of `baton run --agent mock`: not measured: {err}"),
        },
        None => println!(
            "peak RSS of `baton run --agent mock`: not measured (BATON_BIN is not set; \
             `cargo xtask bench` sets it when `baton` builds)"
        ),
    }
    let (before_kib, peak_kib) = in_process(tasks);
    println!(
        "peak RSS of the same run in process (Orchestrator::run, mock agent, {tasks} tasks): \
         {:.1} MiB (VmHWM; {:.1} MiB resident before the run)",
        peak_kib as f64 / 1024.0,
        before_kib as f64 / 1024.0
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

/// Runs `baton run --agent mock` over `tasks` tasks; returns its peak RSS in KiB and its time.
fn baton_run(baton: &Path, tasks: usize) -> Result<(i64, f64), String> {
    let workspace = tempfile::tempdir().map_err(|err| err.to_string())?;
    let home = workspace.path().join("home");
    std::fs::create_dir(&home).map_err(|err| err.to_string())?;
    let baton_command = |args: &[&str]| {
        let mut command = Command::new(baton);
        command
            .args(args)
            .current_dir(workspace.path())
            .env("HOME", &home)
            .env_remove("BATON_DB")
            .stdin(Stdio::null());
        command
    };
    let succeed = |args: &[&str]| -> Result<(), String> {
        let output = baton_command(args)
            .output()
            .map_err(|err| format!("`baton {}` did not start: {err}", args[0]))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`baton {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    };
    succeed(&["init", "--agent", "mock"])?;
    for number in 1..=tasks {
        let title = format!("task {number}");
        succeed(&["task", "add", &title, "--prompt", "Answer at once."])?;
    }
    let started = Instant::now();
    let child = baton_command(&["run", "--agent", "mock"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("`baton run` did not start: {err}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for (`child` is never waited on, and
    // dropping a `Child` does not wait); the pointers are to live locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if reaped != pid {
        return Err(format!(
            "waiting for `baton run` failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("`baton run` ended with wait status {status}"));
    }
    // Linux reports ru_maxrss in KiB.
    Ok((usage.ru_maxrss, seconds))
}

/// The run in this process; returns the RSS before it and the peak after it, in KiB.
fn in_process(tasks: usize) -> (u64, u64) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("baton.db");
    {
        let mut store = Store::open_with(
            &db,
            &session_store::StoreOptions::new(redact::Redactor::new()),
        )
        .expect("the ledger opens");
        for number in 1..=tasks {
            store
                .add_task(&NewTask::new(
                    redact::Redactor::new().redact_owned(format!("task {number}")),
                    redact::Redacted::trusted("Answer at once."),
                    dir.path(),
                ))
                .expect("the task is added");
        }
    }
    // Like `baton`'s built-in mock: fixed figures, no transcripts kept.
    let agent = MockAgent::scripted(|_, _| {
        Step::succeed("Done.")
            .usage(Usage {
                input_tokens: 1_200,
                output_tokens: 300,
                cache_read_tokens: 4_000,
                cache_creation_tokens: 800,
            })
            .cost_usd(0.0105)
            .turns(1)
    })
    .without_transcripts();
    let orchestrator = Orchestrator::new(
        Store::open_with(
            &db,
            &session_store::StoreOptions::new(redact::Redactor::new()),
        )
        .expect("the ledger opens"),
        Arc::new(agent),
        RunConfig::default(),
    )
    .expect("the orchestrator is set up");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let before = status_kib("VmRSS");
    let report = runtime
        .block_on(orchestrator.run(&Selection::all(), CancellationToken::new()))
        .expect("the run succeeds");
    assert!(report.all_completed(), "every task completes");
    (before, status_kib("VmHWM"))
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("the field is in /proc/self/status")
}
