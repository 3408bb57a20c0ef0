//! Runs that must stop early, and stop cleanly: an API that refuses in a way no retry fixes
//! (a bad key, an empty account), an API that is down or gone, and a run stopped the way
//! `timeout`, systemd and `docker stop` stop programs.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;

use crate::chaos::lab::{Binaries, Lab};

/// How many tasks a scenario queues: enough that failing each in turn would show.
const TASKS: usize = 10;

/// The longest a scenario waits for something it set in motion.
const WAIT: Duration = Duration::from_secs(30);

/// An API refusal as `mock-claude` plays it, and what baton must say about it.
pub struct Refused {
    pub status: u16,
    pub message: &'static str,
    /// Words the error must carry: the cause, in the CLI's words, and what to do.
    pub says: &'static [&'static str],
    /// The error kind the refused call is recorded with.
    pub kind: &'static str,
}

/// A run of ten tasks against an API that refuses them all: it stops at the first refusal with
/// exit 5 naming the cause and what to do, asks the agent once, leaves every task pending and
/// nothing open; once the cause is fixed, the next run completes them all, the refused one in
/// its original session.
pub fn refused(bins: &Binaries, refusal: &Refused) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.agent_plays(&json!({"steps": [{
        "outcome": "api_error",
        "api_error_status": refusal.status,
        "message": refusal.message,
    }]}))?;
    for n in 0..TASKS {
        lab.add_task(&[&format!("Task {n}")])?;
    }
    let started = Instant::now();
    let ran = lab.baton(&["run"])?;
    let took = started.elapsed();
    ran.expect_code(5)?.expect_stderr(refusal.says)?;
    let calls = lab.agent_calls()?.len();
    ensure!(
        calls == 1,
        "the agent was called {calls} times; expected once"
    );
    let pending = lab.count("SELECT count(*) FROM tasks WHERE status = 'pending'")?;
    ensure!(
        pending == TASKS as i64,
        "{pending} of {TASKS} tasks pending"
    );
    expect_nothing_open(&lab)?;
    let (kind, session): (String, String) = lab.ledger()?.query_row(
        "SELECT outcome, session_id FROM agent_calls ORDER BY id LIMIT 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    ensure!(
        kind.contains(refusal.kind),
        "the refused call is recorded as `{kind}`"
    );

    lab.agent_plays(&json!({}))?;
    lab.baton(&["run"])?.expect_code(0)?;
    let completed = lab.count("SELECT count(*) FROM tasks WHERE status = 'completed'")?;
    ensure!(
        completed == TASKS as i64,
        "{completed} of {TASKS} tasks completed"
    );
    let resumed = lab.agent_calls()?.iter().any(|call| {
        call["plan"] == "resume" && call["session_id"].as_str() == Some(session.as_str())
    });
    ensure!(
        resumed,
        "the refused task did not continue its session {session}"
    );
    lab.expect_intact()?;
    Ok(format!(
        "exit 5 in {:.1}s after 1 call, naming the cause; {TASKS} tasks pending, nothing open; fixed: next run completed all, the first in its own session",
        took.as_secs_f64()
    ))
}

/// No session open and no task running.
fn expect_nothing_open(lab: &Lab) -> anyhow::Result<()> {
    let open = lab.count("SELECT count(*) FROM sessions WHERE status = 'open'")?;
    ensure!(open == 0, "{open} sessions left open");
    let running = lab.count("SELECT count(*) FROM tasks WHERE status = 'running'")?;
    ensure!(running == 0, "{running} tasks left running");
    lab.expect_no_live_agents(Duration::from_secs(5))
        .context("an agent outlived the run")?;
    let _ = WAIT;
    Ok(())
}

/// Short pauses, so that an outage of a few calls passes in a second.
fn short_pauses(lab: &Lab, max_outage: &str) -> anyhow::Result<()> {
    lab.edit_config("# outage_pause = \"10s\"", "outage_pause = \"200ms\"")?;
    lab.edit_config(
        "# max_outage = \"30m\"",
        &format!("max_outage = \"{max_outage}\""),
    )?;
    lab.edit_config("# concurrency = 1", "concurrency = 3")
}

/// The API fails (529) for the first calls, then recovers: the run pauses for all its tasks
/// instead of each retrying on its own, says so, and completes every task without spending an
/// iteration on the outage; every attempt is a recorded call.
pub fn api_down_for_a_while(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    short_pauses(&lab, "1m")?;
    let overloaded =
        json!({"outcome": "api_error", "api_error_status": 529, "message": "Overloaded"});
    let mut steps: Vec<_> = (0..6).map(|_| overloaded.clone()).collect();
    steps.push(json!({"result": "done"}));
    lab.agent_plays(&json!({ "steps": steps }))?;
    for n in 0..TASKS {
        lab.add_task(&[&format!("Task {n}")])?;
    }
    let ran = lab.baton(&["run"])?;
    ran.expect_code(0)?;
    ensure!(
        ran.stdout.contains("times in a row; waiting"),
        "the pause is not shown:\n{}",
        ran.stdout
    );
    let completed = lab.count("SELECT count(*) FROM tasks WHERE status = 'completed'")?;
    ensure!(
        completed == TASKS as i64,
        "{completed} of {TASKS} tasks completed"
    );
    let burned = lab.count("SELECT count(*) FROM tasks WHERE iterations > 1")?;
    ensure!(burned == 0, "{burned} tasks spent iterations on the outage");
    let failed = lab.count("SELECT count(*) FROM agent_calls WHERE outcome = 'api_error'")?;
    ensure!(failed == 6, "{failed} failed attempts recorded; expected 6");
    expect_nothing_open(&lab)?;
    lab.expect_intact()?;
    Ok(format!(
        "6 calls failed (529), the run paused and probed; {TASKS} tasks completed, none used a second iteration"
    ))
}

/// The API never comes back: past `api.max_outage` the run stops with exit 5, tasks pending.
pub fn api_gone(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    short_pauses(&lab, "1s")?;
    lab.agent_plays(&json!({"steps": [{
        "outcome": "api_error", "api_error_status": 503, "message": "Service Unavailable",
    }]}))?;
    for n in 0..TASKS {
        lab.add_task(&[&format!("Task {n}")])?;
    }
    let started = Instant::now();
    let ran = lab.baton(&["run"])?;
    let took = started.elapsed();
    ran.expect_code(5)?
        .expect_stderr(&["kept failing", "api.max_outage"])?;
    let pending = lab.count("SELECT count(*) FROM tasks WHERE status = 'pending'")?;
    ensure!(
        pending == TASKS as i64,
        "{pending} of {TASKS} tasks pending"
    );
    expect_nothing_open(&lab)?;
    lab.expect_intact()?;
    Ok(format!(
        "exit 5 after {:.1}s of pauses (bound 1s), {} attempts recorded; {TASKS} tasks pending, nothing open",
        took.as_secs_f64(),
        lab.count("SELECT count(*) FROM agent_calls")?
    ))
}

/// How a run is stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoppedBy {
    /// `timeout --preserve-status 3 baton run`: SIGTERM to baton, then to its process group.
    Timeout,
    /// SIGTERM to baton, then to its process group, as `timeout` sends them.
    ProcessGroup,
    /// SIGTERM to baton and its agent at once, then SIGKILL to what is left after 10 s, as
    /// `systemctl stop` and `docker stop` do.
    Service,
}

/// The promise of a service manager's grace: everything recorded, baton gone, within it.
const GRACE: Duration = Duration::from_secs(10);

/// A run stopped mid-call the way tools stop programs: one request to stop, not "quit now";
/// baton records everything and exits 143 within the grace; nothing open or running, the task
/// pending; the next run completes it in the same session.
pub fn stopped(bins: &Binaries, how: StoppedBy) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.agent_plays(&json!({"steps": [{"outcome": "hang"}, {"result": "done"}]}))?;
    lab.add_task(&["Stopped mid-call"])?;
    let mut command = match how {
        // Long enough for baton to start its call; `timeout` then does the rest.
        StoppedBy::Timeout => lab.command_under(&["timeout", "--preserve-status", "3"], &["run"]),
        StoppedBy::ProcessGroup | StoppedBy::Service => lab.command(&["run"]),
    };
    if how == StoppedBy::ProcessGroup {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
    }
    let run = lab.spawn(command)?;
    lab.wait_for_agent_call(1, WAIT)?;
    let agents = lab.live_agent_calls();
    let stopping = Instant::now();
    match how {
        StoppedBy::Timeout => {}
        StoppedBy::ProcessGroup => {
            // What GNU `timeout` does, by hand: the program, then its whole group.
            kill(run.pid(), libc::SIGTERM)?;
            std::thread::sleep(Duration::from_millis(2));
            kill(-run.pid(), libc::SIGTERM)?;
        }
        StoppedBy::Service => {
            // The agent first, so that it dies before baton hears of the stop: the order a
            // service manager's signals happen to arrive in is not Baton's to choose.
            for agent in &agents {
                kill(*agent, libc::SIGTERM)?;
            }
            // Baton's own signal a moment later, as under a loaded service manager.
            std::thread::sleep(Duration::from_millis(200));
            kill(run.pid(), libc::SIGTERM)?;
        }
    }
    let ran = run.wait(GRACE + Duration::from_secs(5))?;
    let took = stopping.elapsed();
    ran.expect_code(143)?;
    ensure!(
        how == StoppedBy::Timeout || took < GRACE,
        "baton took {took:?} to stop; a service manager would have killed it"
    );
    ensure!(
        !ran.stderr.contains("quitting now"),
        "one request to stop was taken for two:\n{}",
        ran.stderr
    );
    expect_nothing_open(&lab)?;
    let (session, outcome): (String, String) = lab.ledger()?.query_row(
        "SELECT session_id, outcome FROM agent_calls ORDER BY id LIMIT 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    ensure!(
        outcome == "cancelled",
        "the stopped call is recorded as `{outcome}`"
    );
    let (status, task): (String, String) = lab.ledger()?.query_row(
        "SELECT s.status, t.status FROM sessions s JOIN tasks t ON t.id = s.task_id WHERE s.id = ?1",
        [&session],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    ensure!(
        status == "abandoned" && task == "pending",
        "session {status}, task {task}"
    );
    lab.baton(&["run"])?.expect_code(0)?;
    let resumed = lab.agent_calls()?.iter().any(|call| {
        call["plan"] == "resume" && call["session_id"].as_str() == Some(session.as_str())
    });
    ensure!(resumed, "the next run did not continue session {session}");
    lab.expect_intact()?;
    Ok(format!(
        "{how:?}: exit 143 in {:.1}s; the call recorded as cancelled, session abandoned, task pending; the next run resumed it and completed",
        took.as_secs_f64()
    ))
}

fn kill(pid: i32, signal: i32) -> anyhow::Result<()> {
    // SAFETY: kill(2) on a process (or group) this scenario started.
    let sent = unsafe { libc::kill(pid, signal) };
    ensure!(
        sent == 0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}
