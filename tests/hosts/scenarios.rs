//! The chaos scenarios of several hosts sharing one PostgreSQL ledger (see [`super::Hosts`]):
//! two hosts through 200 tasks at once, a host that dies, a host that is cut off. Each
//! returns what it observed, or which promise broke; a machine without namespaces makes each
//! a skip (see [`super::netns_required`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;

use crate::chaos::Binaries;
use crate::hosts::{Host, Hosts};
use crate::stress::audit::{Ledger, check_ledger};

/// The lease TTL of the scenarios where a host fails: short, so that the test is quick.
const SHORT_TTL: Duration = Duration::from_secs(2);

/// How long a rescue may take, at most, past the TTL: the machine is shared and slow.
pub(crate) const RESCUE_LIMIT: Duration = Duration::from_secs(90);

/// What a skipped scenario reports.
fn skipped() -> anyhow::Result<String> {
    Ok("skipped: no network namespaces here".to_owned())
}

/// The test's name for a scenario's (its name with `_`), for the skip line.
fn test_name(scenario: &str) -> String {
    scenario.replace('-', "_")
}

/// Two hosts, each `baton run --concurrency 4`, through 200 tasks at once: every task
/// completes after exactly one call, no session is used by both, both hosts took work, and
/// the stress audit passes against the PostgreSQL ledger.
pub fn two_hosts_share_a_ledger(bins: &Binaries) -> anyhow::Result<String> {
    const TASKS: usize = 200;
    let name = test_name("two-hosts-200-tasks");
    // A long TTL: here no host fails, and a slow moment of a loaded machine must not look
    // like one.
    let Some(world) = Hosts::create(bins, &name, 2, "30s")? else {
        return skipped();
    };
    for host in &world.hosts {
        host.agent_plays(&json!({"steps": [{"result": "done", "delay_ms": 20}]}))?;
    }
    world.add_tasks(TASKS, &[])?;
    let started = Instant::now();
    let runs = world
        .hosts
        .iter()
        .map(|host| host.spawn(&["run", "--concurrency", "4"]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (host, run) in world.hosts.iter().zip(runs) {
        let ran = run.wait(Duration::from_secs(600))?;
        ran.expect_code(0)
            .with_context(|| format!("{}'s run", host.name))?;
    }
    let took = started.elapsed();
    let completed = world.count("SELECT count(*) FROM tasks WHERE status = 'completed'")?;
    ensure!(
        completed == TASKS as i64,
        "{completed} of {TASKS} tasks completed"
    );
    let calls = world.count("SELECT count(*) FROM agent_calls")?;
    let tasks_called = world.count("SELECT count(DISTINCT task_id) FROM agent_calls")?;
    ensure!(
        calls == TASKS as i64 && tasks_called == TASKS as i64,
        "{calls} calls recorded for {tasks_called} tasks; expected one call for each of {TASKS}"
    );
    let per_host = sessions_per_host(&world)?;
    let counts: Vec<usize> = per_host.iter().map(BTreeSet::len).collect();
    ensure!(
        counts.iter().all(|count| *count > 0),
        "a host took no work: sessions per host {counts:?}"
    );
    let shared: Vec<&String> = per_host[0].intersection(&per_host[1]).collect();
    ensure!(shared.is_empty(), "sessions used on both hosts: {shared:?}");
    let seen: BTreeSet<String> = per_host.iter().flatten().cloned().collect();
    let recorded: BTreeSet<String> = world
        .sql()?
        .query("SELECT DISTINCT session_id FROM agent_calls", &[])?
        .iter()
        .map(|row| row.get(0))
        .collect();
    ensure!(
        seen == recorded,
        "the agents ran in {} sessions, the ledger records calls in {}",
        seen.len(),
        recorded.len()
    );
    expect_claimed_where_called(&world, &per_host, TASKS)?;
    let completed_events = completions(&world)?;
    ensure!(
        completed_events == TASKS as i64,
        "{completed_events} completions for {TASKS} tasks"
    );
    expect_runners_stopped(&world, &["host1", "host2"])?;
    expect_audit_passes(&world)?;
    Ok(format!(
        "{TASKS} tasks in {:.1}s, {} and {} sessions on the two hosts, none shared; audit clean",
        took.as_secs_f64(),
        counts[0],
        counts[1]
    ))
}

/// A host is killed (SIGKILL to every process of it, baton and agent) mid-call: once its
/// heartbeat is older than the TTL, the other host's `baton run --watch` rescues the task and
/// completes it, once.
pub fn host_dies(bins: &Binaries) -> anyhow::Result<String> {
    let Some(world) = Hosts::create(bins, &test_name("host-dies"), 2, "2s")? else {
        return skipped();
    };
    let (doomed, rescuer) = (world.host(0), world.host(1));
    let first = start_call_on_first_host(&world)?;
    let session = only_session(&world)?;
    let watch = rescuer.spawn(&["run", "--watch"])?;
    doomed.kill_everything()?;
    let killed_at = Instant::now();
    let killed = first.wait(Duration::from_secs(10))?;
    ensure!(
        killed.signal == Some(libc::SIGKILL),
        "host1's baton ended with {}",
        killed.status()
    );
    wait_for_completion(&world)?;
    let rescued_after = killed_at.elapsed();
    ensure!(
        rescued_after >= SHORT_TTL / 2,
        "the task was rescued {rescued_after:?} after the kill, before the TTL ({SHORT_TTL:?}) could pass"
    );
    stop_watch(watch)?;
    let resumed = expect_done_once_by(&world, rescuer, &session, true, 0)?;
    // Each host worked in its own tree, though both saw it at the same path.
    let made: Vec<bool> = [rescuer.tree(), doomed.tree(), world.tree()]
        .iter()
        .map(|tree| tree.join("done.txt").exists())
        .collect();
    ensure!(
        made == [true, false, false],
        "done.txt in host2's, host1's and the shared tree: {made:?}; expected only host2's"
    );
    expect_audit_passes(&world)?;
    Ok(format!(
        "rescued by host2 {:.1}s after the kill; {resumed}; one call recorded; audit clean",
        rescued_after.as_secs_f64()
    ))
}

/// A host's link goes down mid-call for longer than the TTL: the other host takes the task
/// over and completes it; when the link returns, the cut-off runner stops its agent and
/// writes nothing about the work (tasks, sessions, calls and checks unchanged).
pub fn host_cut_off(bins: &Binaries) -> anyhow::Result<String> {
    let Some(world) = Hosts::create(bins, &test_name("host-cut-off"), 2, "2s")? else {
        return skipped();
    };
    let (cut, rescuer) = (world.host(0), world.host(1));
    let first = start_call_on_first_host(&world)?;
    let session = only_session(&world)?;
    let agent = cut.agent_calls_running();
    let watch = rescuer.spawn(&["run", "--watch"])?;
    world.link(0).set_up(false)?;
    let cut_at = Instant::now();
    let taken = wait_for_completion(&world);
    let snapshot = world.work_snapshot();
    let last_event = world.count("SELECT coalesce(max(id), 0) FROM events");
    // Down for three TTLs at least, so that the cut is unmistakably longer than the TTL.
    std::thread::sleep((SHORT_TTL * 3).saturating_sub(cut_at.elapsed()));
    let still_calling = cut.agent_calls_running();
    world.link(0).set_up(true)?;
    let down_for = cut_at.elapsed();
    taken?;
    let snapshot = snapshot?;
    ensure!(
        !still_calling.is_empty(),
        "host1's agent call ended while its link was down: the cut was not mid-call"
    );
    let ran = first.wait(RESCUE_LIMIT)?;
    ran.expect_code(1)
        .context("host1's run, which lost its task")?;
    for says in ["taken over by another runner", "records nothing more"] {
        ensure!(
            ran.stdout.contains(says),
            "host1's run does not say `{says}`:\n{}",
            ran.stdout
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cut.agent_calls_running().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survivors = cut.agent_calls_running();
    ensure!(
        survivors.is_empty(),
        "host1's agent {survivors:?} (of {agent:?}) outlived its runner"
    );
    let later_events: Vec<String> = world
        .sql()?
        .query(
            "SELECT kind || ' ' || detail FROM events WHERE id > $1 AND kind NOT LIKE 'runner%' \
             ORDER BY id",
            &[&last_event?],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    ensure!(
        later_events.is_empty(),
        "events about the work after host2 completed it: {later_events:?}"
    );
    let after = world.work_snapshot()?;
    ensure!(
        after == snapshot,
        "host1 wrote to the ledger after host2 took its task over:\n--- before\n{snapshot}--- after\n{after}\n--- host1's stderr\n{}",
        ran.stderr
    );
    stop_watch(watch)?;
    let resumed = expect_done_once_by(&world, rescuer, &session, true, 0)?;
    expect_audit_passes(&world)?;
    Ok(format!(
        "link down {:.1}s; host2 took over; host1 came back, wrote nothing, stopped its agent, {}; {resumed}",
        down_for.as_secs_f64(),
        ran.status()
    ))
}

/// The server restarts while two hosts run 40 tasks: both runs complete every task, and every
/// call an agent made is recorded exactly once.
pub fn server_restarts(bins: &Binaries) -> anyhow::Result<String> {
    const TASKS: usize = 40;
    let Some(mut world) = Hosts::create(bins, &test_name("server-restarts"), 2, "30s")? else {
        return skipped();
    };
    for host in &world.hosts {
        host.agent_plays(&json!({"steps": [{"result": "done", "delay_ms": 300}]}))?;
    }
    world.add_tasks(TASKS, &[])?;
    let runs = world
        .hosts
        .iter()
        .map(|host| host.spawn(&["run", "--concurrency", "2"]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    world.wait_for(
        "a few calls before the restart",
        Duration::from_secs(120),
        |world| Ok(world.count("SELECT count(*) FROM agent_calls")? >= 6),
    )?;
    let restarted_at = Instant::now();
    world.restart_server()?;
    let restart_took = restarted_at.elapsed();
    let mut exits = Vec::new();
    for (host, run) in world.hosts.iter().zip(runs) {
        let ran = run.wait(Duration::from_secs(600))?;
        ran.expect_code(0)
            .with_context(|| format!("{}'s run across the server's restart", host.name))?;
        exits.push(ran.status());
    }
    let completed = world.count("SELECT count(*) FROM tasks WHERE status = 'completed'")?;
    ensure!(
        completed == TASKS as i64,
        "{completed} of {TASKS} tasks completed"
    );
    let mut made = 0;
    for host in &world.hosts {
        made += host.agent_calls()?.len();
    }
    let recorded = world.count("SELECT count(*) FROM agent_calls")?;
    ensure!(
        recorded == made as i64,
        "the agents made {made} calls, the ledger records {recorded}"
    );
    expect_audit_passes(&world)?;
    Ok(format!(
        "restart took {:.1}s; {TASKS} tasks completed; {made} calls made, each recorded once; runs {exits:?}",
        restart_took.as_secs_f64()
    ))
}

/// Host 1 scripted to hang in its call, host 2 to do the work; one task, checked by a file
/// only the work makes. Starts host 1's `baton run` and returns it once its call is running.
fn start_call_on_first_host(world: &Hosts) -> anyhow::Result<crate::hosts::HostRun> {
    world
        .host(0)
        .agent_plays(&json!({"steps": [{"outcome": "hang"}]}))?;
    world.host(1).agent_plays(&json!({"steps": [
        {"result": "done", "files": {"done.txt": "ok\n"}}
    ]}))?;
    world.add_tasks(1, &["test -f done.txt"])?;
    let run = world.host(0).spawn(&["run"])?;
    let host = world.host(0);
    world.wait_for("host1's agent call", Duration::from_secs(60), |_| {
        Ok(host.agent_calls()?.len() == 1 && !host.agent_calls_running().is_empty())
    })?;
    Ok(run)
}

/// The one session the ledger holds.
pub(crate) fn only_session(world: &Hosts) -> anyhow::Result<String> {
    let rows = world.sql()?.query("SELECT id FROM sessions", &[])?;
    ensure!(rows.len() == 1, "{} sessions; expected one", rows.len());
    Ok(rows[0].get(0))
}

pub(crate) fn wait_for_completion(world: &Hosts) -> anyhow::Result<()> {
    world.wait_for("the task to complete on host2", RESCUE_LIMIT, |world| {
        Ok(world.count("SELECT count(*) FROM tasks WHERE status = 'completed'")? == 1)
    })
}

/// Stops a `baton run --watch` with SIGTERM, as a service manager does: it exits 143, as
/// every run stopped by SIGTERM does.
pub(crate) fn stop_watch(watch: crate::hosts::HostRun) -> anyhow::Result<()> {
    watch.signal(libc::SIGTERM)?;
    let ran = watch.wait(Duration::from_secs(60))?;
    ran.expect_code(128 + libc::SIGTERM)
        .context("host2's `baton run --watch`")?;
    Ok(())
}

/// The task completed once (claimed by host1, then once by `rescuer`), with one call recorded,
/// made by `rescuer` in the first host's `session`; returns the plan of that call.
pub(crate) fn expect_done_once_by(
    world: &Hosts,
    rescuer: &Host,
    session: &str,
    mock: bool,
    earlier_calls: i64,
) -> anyhow::Result<String> {
    let completed = world.count("SELECT count(*) FROM tasks WHERE status = 'completed'")?;
    ensure!(completed == 1, "the task is not completed");
    let completed_events = completions(world)?;
    ensure!(
        completed_events == 1,
        "the task completed {completed_events} times"
    );
    let claimed = claims(world)?;
    // Exactly one rescue: host1's session is freed in the very step that takes its task
    // back, so the rescuer's first claim finds the session free and keeps the task.
    let by_host1_then_the_rescuer = claimed.first() == Some(&(1, "host1".to_owned()))
        && claimed.len() == 2
        && claimed[1].1 == rescuer.name;
    ensure!(
        by_host1_then_the_rescuer,
        "the task's claims were {claimed:?}; expected host1's, then {}'s",
        rescuer.name
    );
    let calls = world.count("SELECT count(*) FROM agent_calls")?;
    ensure!(
        calls == earlier_calls + 1,
        "{calls} calls recorded; expected the {earlier_calls} host1 finished and the rescuer's one (host1's last never finished)"
    );
    let recorded: String = world
        .sql()?
        .query_one(
            "SELECT session_id FROM agent_calls ORDER BY id DESC LIMIT 1",
            &[],
        )?
        .get(0);
    let sessions = world.count("SELECT count(DISTINCT session_id) FROM agent_calls")?;
    ensure!(sessions == 1, "the calls went to {sessions} sessions");
    // The session goes on under its id on the other host: resumed from the ledger's copy of
    // its transcript when host1 had finished a call in it, else started there under that id.
    ensure!(
        recorded == session,
        "host2 went on in session {recorded}, not in host1's {session}"
    );
    if !mock {
        return Ok("host2 went on in host1's session".to_owned());
    }
    // mock-claude's log on the rescuer shows the call the ledger records, made once there.
    let rescuer_calls = rescuer.agent_calls()?;
    let made = rescuer_calls
        .iter()
        .filter(|call| call["session_id"] == recorded.as_str())
        .count();
    ensure!(
        made == 1,
        "the recorded call's session {recorded} is not one host2's agent ran once in: {rescuer_calls:?}"
    );
    let plan = rescuer_calls
        .iter()
        .find(|call| call["session_id"] == recorded.as_str())
        .and_then(|call| call["plan"].as_str())
        .unwrap_or("?");
    Ok(format!("host2 went on in host1's session ({plan})"))
}

/// The ledger's side of "no session on two hosts": each of the `tasks` was claimed once, by
/// the host whose agent ran its call in that call's session.
fn expect_claimed_where_called(
    world: &Hosts,
    per_host: &[BTreeSet<String>],
    tasks: usize,
) -> anyhow::Result<()> {
    let claimed = claims(world)?;
    ensure!(
        claimed.len() == tasks,
        "{} claims for {tasks} tasks",
        claimed.len()
    );
    let by_task: std::collections::BTreeMap<i64, String> = claimed.into_iter().collect();
    for row in world
        .sql()?
        .query("SELECT task_id, session_id FROM agent_calls", &[])?
    {
        let (task, session): (i64, String) = (row.get(0), row.get(1));
        let host = by_task.get(&task).map_or("nobody", String::as_str);
        let index = world
            .hosts
            .iter()
            .position(|candidate| candidate.name == host);
        ensure!(
            index.is_some_and(|index| per_host[index].contains(&session)),
            "task {task} was claimed by {host}, but its call in session {session} ran elsewhere"
        );
    }
    Ok(())
}

/// Every claim of a task, in order: the task and the host of the runner that took it, from
/// the ledger's status events.
fn claims(world: &Hosts) -> anyhow::Result<Vec<(i64, String)>> {
    Ok(world
        .sql()?
        .query(
            "SELECT task_id, coalesce(detail::json -> 'runner' ->> 'host', '?') FROM events \
             WHERE kind = 'task_status' AND detail::json ->> 'to' = 'running' ORDER BY id",
            &[],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// How many times a task became `completed`, by the ledger's status events.
fn completions(world: &Hosts) -> anyhow::Result<i64> {
    world.count(
        "SELECT count(*) FROM events WHERE kind = 'task_status' \
         AND detail::json ->> 'to' = 'completed'",
    )
}

/// Every runner of `hosts` registered and stopped; no other runner.
fn expect_runners_stopped(world: &Hosts, hosts: &[&str]) -> anyhow::Result<()> {
    let rows = world.sql()?.query(
        "SELECT host, stopped_at IS NOT NULL FROM runners ORDER BY host",
        &[],
    )?;
    let seen: BTreeSet<String> = rows.iter().map(|row| row.get(0)).collect();
    let wanted: BTreeSet<String> = hosts.iter().map(|host| (*host).to_owned()).collect();
    ensure!(
        seen == wanted,
        "runners registered from {seen:?}; expected {wanted:?}"
    );
    let running: Vec<String> = rows
        .iter()
        .filter(|row| !row.get::<_, bool>(1))
        .map(|row| row.get(0))
        .collect();
    ensure!(running.is_empty(), "runners never stopped: {running:?}");
    Ok(())
}

/// The stress audit's ledger invariants hold: sessions opened before their calls, nothing
/// left open, no overlapping calls on a session, totals equal to the sums of their calls.
pub(crate) fn expect_audit_passes(world: &Hosts) -> anyhow::Result<()> {
    let ledger = Ledger::read(&world.store()?)?;
    let violations = check_ledger(&ledger);
    ensure!(
        violations.is_empty(),
        "the audit found {} violations:\n{}",
        violations.len(),
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// The session ids each host's agent ran calls in, host by host.
fn sessions_per_host(world: &Hosts) -> anyhow::Result<Vec<BTreeSet<String>>> {
    world
        .hosts
        .iter()
        .map(|host| {
            Ok(host
                .agent_calls()?
                .iter()
                .filter_map(|call| call["session_id"].as_str().map(str::to_owned))
                .collect())
        })
        .collect()
}
