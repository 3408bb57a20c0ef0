//! Faults: baton killed or interrupted, agents that misbehave, two runs on one ledger, a
//! ledger that is locked, unwritable, full or too new, and a working directory that vanished.
//! Each scenario checks what baton did and that nothing was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::chaos::lab::{Binaries, Lab, Ran};

/// The longest a scenario waits for something it set in motion.
const WAIT: Duration = Duration::from_secs(30);

/// `baton` gets SIGKILL while its agent is mid-call: the agent dies with it, the next run
/// abandons the dead session and completes the task, and the ledger keeps every call that
/// finished before the kill and nothing of the one that did not.
pub fn sigkill_mid_call(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    // Call 0 passes no check; call 1 (the feedback) never finishes; call 2 does the work.
    lab.agent_plays(&json!({"steps": [
        {"result": "not yet"},
        {"outcome": "hang"},
        {"result": "done", "files": {"done.txt": "ok\n"}},
    ]}))?;
    lab.add_task(&["Killed mid-call", "--verify", "test -f done.txt"])?;
    let run = lab.spawn(lab.command(&["run"]))?;
    lab.wait_for_agent_call(2, WAIT)?;
    let agent = lab.live_agent_calls();
    run.signal(libc::SIGKILL)?;
    let killed = run.wait(WAIT)?;
    ensure!(killed.signal == Some(libc::SIGKILL), "{}", killed.status());
    lab.expect_no_live_agents(Duration::from_secs(5))
        .context("the agent child must die with baton")?;
    let session = first_session(&lab)?;
    let calls_before = lab.count("SELECT count(*) FROM agent_calls")?;
    ensure!(
        calls_before == 1,
        "{calls_before} calls recorded before the kill; expected the one that finished"
    );
    let status: String = lab.ledger()?.query_row(
        "SELECT status FROM sessions WHERE id = ?1",
        [&session],
        |row| row.get(0),
    )?;
    ensure!(status == "open", "the killed run's session is `{status}`");

    let rerun = lab.baton(&["run"])?;
    rerun.expect_code(0)?;
    lab.expect_intact()?;
    let task = lab.json(&["task", "show", "1"])?;
    ensure!(task["status"] == "completed", "task: {}", task["status"]);
    // The sweep marks the dead session abandoned; the transcript exists, so the task goes on
    // by resuming that same session (DESIGN.md, "Every session ends").
    let swept = lab.count(&format!(
        "SELECT count(*) FROM events WHERE kind = 'session_swept' AND session_id = '{session}'"
    ))?;
    ensure!(swept == 1, "the dead session was swept {swept} times");
    let reopened_from: String = lab.ledger()?.query_row(
        "SELECT json_extract(detail, '$.was') FROM events WHERE kind = 'session_reopened' AND session_id = ?1",
        [&session],
        |row| row.get(0),
    ).context("the dead session was not resumed")?;
    ensure!(
        reopened_from == "abandoned",
        "the session was reopened from `{reopened_from}`"
    );
    let plans: Vec<String> = lab
        .agent_calls()?
        .iter()
        .map(|call| call["plan"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure!(
        plans == ["start", "resume", "resume"],
        "the agent calls were {plans:?}"
    );
    let kept = lab.count(&format!(
        "SELECT count(*) FROM agent_calls WHERE session_id = '{session}' AND id = 1"
    ))?;
    ensure!(kept == 1, "the call recorded before the kill is gone");
    let unfinished =
        lab.count("SELECT count(*) FROM agent_calls WHERE outcome = '' OR ended_at < started_at")?;
    ensure!(unfinished == 0, "{unfinished} calls are half-recorded");
    expect_totals_match_calls(&lab)?;
    let calls = lab.count("SELECT count(*) FROM agent_calls")?;
    Ok(format!(
        "SIGKILL: agent {agent:?} died too; 1 finished call kept, none half-written; next run: session swept as abandoned, resumed (same id), task completed ({calls} calls)"
    ))
}

/// SIGINT or SIGTERM mid-call: baton stops the agent, closes the session as abandoned, puts the
/// task back to pending, exits 130 or 143, and the next run completes it.
pub fn interrupted_mid_call(bins: &Binaries, signal: i32) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.agent_plays(&json!({"steps": [{"outcome": "hang"}, {"result": "done"}]}))?;
    lab.add_task(&["Interrupted"])?;
    let run = lab.spawn(lab.command(&["run"]))?;
    // The call itself, not the `claude --version` probe that `baton run` makes first.
    lab.wait_for_agent_call(1, WAIT)?;
    run.signal(signal)?;
    let stopped = run.wait(WAIT)?;
    let expected = 128 + signal;
    stopped.expect_code(expected)?;
    lab.expect_no_live_agents(Duration::from_secs(5))?;
    let session = first_session(&lab)?;
    let (status, task_status): (String, String) = lab.ledger()?.query_row(
        "SELECT s.status, t.status FROM sessions s JOIN tasks t ON t.id = s.task_id WHERE s.id = ?1",
        [&session],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    ensure!(status == "abandoned", "session `{status}` after the signal");
    ensure!(
        task_status == "pending",
        "task `{task_status}` after the signal"
    );
    lab.baton(&["run"])?.expect_code(0)?;
    let task = lab.json(&["task", "show", "1"])?;
    ensure!(task["status"] == "completed", "task: {}", task["status"]);
    lab.expect_intact()?;
    Ok(format!(
        "exit {expected}; agent stopped; session abandoned, task pending; next run completed it"
    ))
}

/// How an agent misbehaves, as a `mock-claude` step.
pub struct Misbehaviour {
    pub step: Value,
    /// Config lines added under `[agent]`.
    pub agent_config: &'static str,
    /// How the task must end: `failed`, or `completed` when the misbehaviour is survivable.
    pub task_ends: &'static str,
    /// Words the failed task's reason must contain.
    pub reason: &'static [&'static str],
    /// The most resident memory baton may reach, in MiB.
    pub max_rss_mib: u64,
    /// How the ledger must record the call (its `outcome`).
    pub outcome: &'static str,
    /// The answer the call must record; `None`: it must record none, as the agent gave none.
    pub answer: Option<&'static str>,
}

/// An agent that misbehaves on one task: that task fails with a reason that says what
/// happened, the call is recorded with its outcome, no agent process is left behind, baton's
/// memory stays bounded, and the next task still runs.
pub fn agent_misbehaves(bins: &Binaries, fault: &Misbehaviour) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.agent_plays(&json!({
        "when": [{"prompt_contains": "MISBEHAVE", "step": fault.step}],
        "steps": [{"result": "done"}],
    }))?;
    if !fault.agent_config.is_empty() {
        lab.edit_config("[agent]\n", &format!("[agent]\n{}\n", fault.agent_config))?;
    }
    lab.add_task(&["Faulty", "--prompt", "MISBEHAVE", "--max-iterations", "1"])?;
    lab.add_task(&["Healthy"])?;
    let ran = lab.baton(&["run"])?;
    ran.expect_code(if fault.task_ends == "completed" { 0 } else { 1 })?;
    lab.expect_no_live_agents(Duration::from_secs(5))?;
    lab.expect_intact()?;
    let faulty = lab.json(&["task", "show", "1"])?;
    let healthy = lab.json(&["task", "show", "2"])?;
    ensure!(
        faulty["status"] == fault.task_ends,
        "faulty task: {}, expected {}",
        faulty["status"],
        fault.task_ends
    );
    ensure!(
        healthy["status"] == "completed",
        "the next task: {}",
        healthy["status"]
    );
    let reason = faulty["failure_reason"].as_str().unwrap_or_default();
    for word in fault.reason {
        ensure!(
            reason.contains(word),
            "the failure reason `{reason}` does not say `{word}`"
        );
    }
    let calls = faulty["calls"].as_array().context("calls")?;
    ensure!(
        calls.len() == 1,
        "the faulty task's one iteration recorded {} calls",
        calls.len()
    );
    let outcome = calls[0]["outcome"].as_str().unwrap_or_default().to_owned();
    ensure!(
        outcome == fault.outcome,
        "the faulty call was recorded as `{outcome}`, not `{}`",
        fault.outcome
    );
    let answer = calls[0]["result_text"].as_str();
    ensure!(
        answer == fault.answer,
        "the faulty call recorded the answer {answer:?}; the agent answered {:?}",
        fault.answer
    );
    let healthy_calls = healthy["calls"].as_array().context("calls")?;
    ensure!(
        healthy_calls.len() == 1
            && healthy_calls[0]["outcome"] == "success"
            && healthy_calls[0]["result_text"] == "done",
        "the next task's call was not recorded as a success answering `done`: {healthy_calls:?}"
    );
    let rss_mib = ran.max_rss_kib / 1024;
    ensure!(
        rss_mib <= fault.max_rss_mib,
        "baton peaked at {rss_mib} MiB (limit {} MiB)",
        fault.max_rss_mib
    );
    expect_totals_match_calls(&lab)?;
    let ended = if reason.is_empty() {
        format!("task {}", fault.task_ends)
    } else {
        format!(
            "task {}: \"{}\"",
            fault.task_ends,
            shorten(cause(reason), 80)
        )
    };
    let answered = answer.map_or_else(String::new, |answer| format!(" answering \"{answer}\""));
    Ok(format!(
        "{ended}; call recorded as `{outcome}`{answered}; no agent left; next task completed; baton peak RSS {rss_mib} MiB"
    ))
}

/// A task's failure reason without the "the agent's last attempt (iteration N) failed: " that
/// every one of these starts with.
fn cause(reason: &str) -> &str {
    reason
        .split_once(" failed: ")
        .map_or(reason, |(_, cause)| cause)
}

/// Two `baton run` processes over one ledger at once: every task runs exactly once (two
/// calls, the second after its check failed), every session's calls come from one process,
/// both runs do part of the work, both exit 0, and neither prints a lock error.
pub fn two_runs_one_ledger(bins: &Binaries) -> anyhow::Result<String> {
    const TASKS: usize = 24;
    let lab = Lab::with_workspace(bins)?;
    // Each call takes 50 ms at least: one run alone would need more than a second for the 48
    // calls, and the second starts a few milliseconds after the first.
    lab.agent_plays(&json!({
        "when": [{"prompt_contains": "did not pass verification",
                  "step": {"result": "fixed", "files": {"done.txt": "ok\n"}, "delay_ms": 50}}],
        "steps": [{"result": "first try", "delay_ms": 50}],
    }))?;
    for index in 0..TASKS {
        let dir = format!("t{index}");
        std::fs::create_dir(lab.work().join(&dir))?;
        lab.add_task(&[
            &format!("Task {index}"),
            "--prompt",
            &format!("job-{index}"),
            "--workdir",
            &dir,
            "--verify",
            "test -f done.txt",
        ])?;
    }
    let first = lab.spawn(lab.command(&["run", "--concurrency", "2"]))?;
    let second = lab.spawn(lab.command(&["run", "--concurrency", "2"]))?;
    let pids = [first.pid(), second.pid()];
    let first = first.wait(Duration::from_secs(120))?;
    let second = second.wait(Duration::from_secs(120))?;
    for (name, ran) in [("first", &first), ("second", &second)] {
        let said = format!("{}{}", ran.stdout, ran.stderr).to_lowercase();
        ensure!(
            !said.contains("locked") && !said.contains("busy"),
            "the {name} run printed a lock error:\n{}",
            ran.stderr
        );
        ran.expect_code(0)?;
    }
    lab.expect_intact()?;
    let completed = lab.count("SELECT count(*) FROM tasks WHERE status = 'completed'")?;
    ensure!(
        completed == TASKS as i64,
        "{completed} of {TASKS} tasks completed"
    );
    let calls = lab.agent_calls()?;
    ensure!(
        calls.len() == 2 * TASKS,
        "the agent was called {} times for {TASKS} tasks of two calls",
        calls.len()
    );
    // Per session: the runs (baton pids) that called the agent in it, and its first prompts.
    let mut sessions: BTreeMap<String, (BTreeSet<i64>, Vec<String>)> = BTreeMap::new();
    for call in &calls {
        let session = call["session_id"].as_str().unwrap_or_default().to_owned();
        let entry = sessions.entry(session).or_default();
        entry
            .0
            .insert(call["parent_pid"].as_i64().unwrap_or_default());
        entry
            .1
            .push(call["prompt"].as_str().unwrap_or_default().to_owned());
    }
    ensure!(
        sessions.len() == TASKS,
        "{} sessions for {TASKS} tasks",
        sessions.len()
    );
    let shared: Vec<&String> = sessions
        .iter()
        .filter(|(_, (runs, _))| runs.len() != 1)
        .map(|(session, _)| session)
        .collect();
    ensure!(shared.is_empty(), "sessions used by both runs: {shared:?}");
    let mut jobs: Vec<&str> = sessions
        .values()
        .map(|(_, prompts)| prompts[0].rsplit('\n').next().unwrap_or_default())
        .collect();
    jobs.sort_unstable();
    jobs.dedup();
    ensure!(jobs.len() == TASKS, "a task was started in two sessions");
    let by_run = pids.map(|pid| {
        sessions
            .values()
            .filter(|(runs, _)| runs.contains(&i64::from(pid)))
            .count()
    });
    ensure!(
        by_run.iter().sum::<usize>() == TASKS,
        "calls came from processes other than the two runs: {by_run:?}"
    );
    // Otherwise "no session used by both" would hold trivially.
    ensure!(
        by_run.iter().all(|sessions| *sessions > 0),
        "one run did all the work (sessions per run: {by_run:?})"
    );
    Ok(format!(
        "both exit 0, no lock error; {TASKS} tasks split {} + {}, {} calls, each session used by one run only",
        by_run[0],
        by_run[1],
        calls.len()
    ))
}

/// Another process holds the ledger's write lock: briefly, baton waits and succeeds; past the
/// busy timeout, baton says the ledger is locked (exit 4) and changes nothing.
pub fn ledger_locked(bins: &Binaries) -> anyhow::Result<String> {
    let mut lab = Lab::with_workspace(bins)?;
    lab.set("BATON_BUSY_TIMEOUT", "1s");
    let before = lab.fingerprint()?;
    let held_past = hold_write_lock(&lab, Duration::from_secs(3), || {
        lab.baton(&["task", "add", "Blocked by a lock"])
    })?;
    held_past.expect_code(4)?.expect_stderr(&["locked"])?;
    ensure!(lab.fingerprint()? == before, "the ledger changed");
    let held_briefly = hold_write_lock(&lab, Duration::from_millis(300), || {
        lab.baton(&["task", "add", "Waits for a short lock"])
    })?;
    held_briefly.expect_code(0)?;
    lab.expect_intact()?;
    Ok(format!(
        "held 3 s > BATON_BUSY_TIMEOUT 1s: exit 4 (\"{}\"), ledger unchanged; held 0.3 s: waited, added",
        shorten(hint(&held_past.stderr), 60)
    ))
}

/// Runs `action` while another connection holds the write lock for `hold`.
fn hold_write_lock(
    lab: &Lab,
    hold: Duration,
    action: impl FnOnce() -> anyhow::Result<Ran>,
) -> anyhow::Result<Ran> {
    let path = lab.db();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || -> anyhow::Result<()> {
        let connection = rusqlite::Connection::open(path)?;
        connection.execute_batch("BEGIN IMMEDIATE")?;
        locked_tx.send(()).ok();
        std::thread::sleep(hold);
        connection.execute_batch("ROLLBACK")?;
        Ok(())
    });
    locked_rx
        .recv_timeout(WAIT)
        .context("taking the write lock")?;
    let ran = action();
    holder.join().expect("the lock holder does not panic")?;
    ran
}

/// The ledger cannot be written. With only the file read-only, reading still works and
/// writing fails with exit 4 saying the ledger is read-only; with its directory read-only too,
/// writing fails the same way (reading may too, when SQLite cannot make its shared-memory
/// file). Nothing changes.
pub fn ledger_read_only(bins: &Binaries) -> anyhow::Result<String> {
    let mut lab = Lab::with_workspace(bins)?;
    lab.add_task(&["Existing"])?;
    let before = lab.fingerprint()?;
    // File modes do not bind root: run baton as `nobody` then.
    let as_user = crate::chaos::lab::is_root();
    if as_user {
        lab.give_to(NOBODY, NOBODY)?;
        lab.run_as(NOBODY, NOBODY)?;
    }
    let dir = lab.work().join(".baton");
    lab.chmod(&lab.db(), 0o400)?;
    let listed = lab.baton(&["task", "list"])?;
    let added = lab.baton(&["task", "add", "Cannot be written"])?;
    lab.chmod(&dir, 0o500)?;
    let listed_in_read_only_dir = lab.baton(&["task", "list"])?;
    let added_in_read_only_dir = lab.baton(&["task", "add", "Cannot be written either"])?;
    lab.chmod(&dir, 0o700)?;
    lab.chmod(&lab.db(), 0o600)?;
    listed.expect_code(0)?;
    added
        .expect_code(4)?
        .expect_stderr(&["baton.db", "read-only"])?;
    added_in_read_only_dir
        .expect_code(4)?
        .expect_stderr(&["read-only"])?;
    ensure!(lab.fingerprint()? == before, "the ledger changed");
    lab.expect_intact()?;
    Ok(format!(
        "{}file 0400: list works, add exit 4 (\"{}\"); directory 0500 too: list {}, add exit 4; ledger unchanged",
        if as_user { "as nobody: " } else { "" },
        shorten(hint(&added.stderr), 60),
        listed_in_read_only_dir.status()
    ))
}

/// `nobody`'s uid and gid on Debian.
const NOBODY: u32 = 65534;

/// The disk fills up while baton writes a 2 MiB prompt (RLIMIT_FSIZE stands in for a full
/// disk): exit 4 with a clear message, the ledger intact and unchanged, and baton works again
/// once there is room.
pub fn disk_full(bins: &Binaries) -> anyhow::Result<String> {
    let mut lab = Lab::with_workspace(bins)?;
    let before = lab.fingerprint()?;
    std::fs::write(lab.work().join("prompt.md"), "x".repeat(2 << 20))?;
    let size = std::fs::metadata(lab.db())?.len();
    lab.limit_file_size(Some(size + 64 * 1024));
    let full = lab.baton(&[
        "task",
        "add",
        "Too big for the disk",
        "--prompt-file",
        "prompt.md",
    ])?;
    lab.limit_file_size(None);
    full.expect_code(4)?.expect_stderr(&["full"])?;
    lab.expect_intact()?;
    ensure!(lab.fingerprint()? == before, "the ledger changed");
    lab.add_task(&["Fits now", "--prompt-file", "prompt.md"])?;
    Ok(format!(
        "exit 4 (\"{}\"); ledger intact and unchanged; the same add works with room",
        shorten(hint(&full.stderr), 70)
    ))
}

/// A ledger written by a newer baton (schema version 99): every command refuses it with
/// exit 4 and says to upgrade, and the file is left as it was.
pub fn newer_schema(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    rusqlite::Connection::open(lab.db())?.execute_batch("PRAGMA user_version = 99")?;
    let before = lab.fingerprint()?;
    let listed = lab.baton(&["task", "list"])?;
    listed.expect_code(4)?.expect_stderr(&["99"])?;
    lab.baton(&["task", "add", "Into a newer ledger"])?
        .expect_code(4)?;
    lab.baton(&["run"])?.expect_code(4)?;
    ensure!(lab.fingerprint()? == before, "the ledger changed");
    Ok(format!(
        "list/add/run: exit 4 (\"{}\"); file unchanged",
        shorten(&lab.local(cause_line(&listed.stderr)), 110)
    ))
}

/// A task's working directory is deleted while the task waits: that task fails saying so,
/// without an agent call; the other task completes.
pub fn workdir_deleted(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    let dir = lab.work().join("checkout");
    std::fs::create_dir(&dir)?;
    lab.add_task(&["Lost its directory", "--workdir", "checkout"])?;
    lab.add_task(&["Unaffected"])?;
    std::fs::remove_dir(&dir)?;
    lab.baton(&["run"])?.expect_code(1)?;
    let lost = lab.json(&["task", "show", "1"])?;
    let other = lab.json(&["task", "show", "2"])?;
    ensure!(lost["status"] == "failed", "task 1: {}", lost["status"]);
    ensure!(
        other["status"] == "completed",
        "task 2: {}",
        other["status"]
    );
    let reason = lost["failure_reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("checkout"),
        "the reason does not name the directory: {reason}"
    );
    let agent_saw_it = lab
        .agent_calls()?
        .iter()
        .any(|call| call["prompt"].as_str().unwrap_or_default().contains("Lost"));
    ensure!(
        !agent_saw_it,
        "the agent was started for a missing directory"
    );
    Ok(format!(
        "task 1 failed: \"{}\"; task 2 completed",
        shorten(&lab.local(reason), 80)
    ))
}

/// The text of the `hint:` line of an error baton printed.
fn hint(stderr: &str) -> &str {
    stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("hint: "))
        .unwrap_or("no hint")
}

/// The last `caused by:` line of an error baton printed, else its first line.
fn cause_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("caused by: "))
        .or_else(|| stderr.lines().next())
        .unwrap_or_default()
}

/// The id of the first session in the ledger.
fn first_session(lab: &Lab) -> anyhow::Result<String> {
    Ok(lab.ledger()?.query_row(
        "SELECT id FROM sessions ORDER BY started_at LIMIT 1",
        [],
        |row| row.get(0),
    )?)
}

/// Fails unless every session's and task's totals equal the sums of their calls.
fn expect_totals_match_calls(lab: &Lab) -> anyhow::Result<()> {
    let ledger = lab.ledger()?;
    for (table, key) in [("sessions", "session_id"), ("tasks", "task_id")] {
        let mismatched: i64 = ledger.query_row(
            &format!(
                "SELECT count(*) FROM {table} t WHERE t.agent_calls != (SELECT count(*) FROM agent_calls c WHERE c.{key} = t.id)
                 OR t.input_tokens != (SELECT coalesce(sum(input_tokens), 0) FROM agent_calls c WHERE c.{key} = t.id)
                 OR t.output_tokens != (SELECT coalesce(sum(output_tokens), 0) FROM agent_calls c WHERE c.{key} = t.id)
                 OR t.cost_nano_usd != (SELECT coalesce(sum(cost_nano_usd), 0) FROM agent_calls c WHERE c.{key} = t.id)"
            ),
            [],
            |row| row.get(0),
        )?;
        ensure!(
            mismatched == 0,
            "{mismatched} {table} have totals that are not the sum of their calls"
        );
    }
    Ok(())
}

/// `text` cut to `limit` characters, with an ellipsis when cut.
pub fn shorten(text: &str, limit: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit).collect();
    cut.push('…');
    cut
}
