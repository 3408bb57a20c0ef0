//! "A host dies" through the real Claude Code CLI: each host's CLI reaches the Messages-API
//! stand-in through a [`Relay`] on its veth address, in a hermetic environment of its own
//! (api-standin's `ClaudeEnv`: `HOME`, `CLAUDE_CONFIG_DIR`, no traffic but the API).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use api_standin::{Answer, ClaudeEnv, Script, StandIn};

use crate::chaos::Binaries;
use crate::hosts::Hosts;
use crate::hosts::relay::Relay;
use crate::hosts::scenarios::{
    RESCUE_LIMIT, expect_audit_passes, expect_done_once_by, only_session, stop_watch,
    wait_for_completion,
};

/// What host 1's first call answers: host 2's requests carry it once the conversation moved.
const EARLIER_ANSWER: &str = "EARLIER-ANSWER-FROM-HOST-1";

/// Host 1's first call answers without the file its check wants; its CLI is killed, with its
/// host, while the stand-in holds its second request. Host 2's `baton run --watch` rescues the
/// task past the TTL, restores the session's transcript from the ledger, and its CLI resumes
/// the same session id with host 1's conversation, writes the file, and the task completes
/// once.
pub fn host_dies_with_claude(
    bins: &Binaries,
    claude: &Path,
    test_name: &str,
) -> anyhow::Result<String> {
    let Some(mut world) = Hosts::create(bins, test_name, 2, "2s")? else {
        return Ok("skipped: no network namespaces here".to_owned());
    };
    let done = world.tree().join("done.txt");
    let held = Arc::new(AtomicBool::new(false));
    // Host 1's first call is answered without the file, so its check fails and it resumes
    // the session; that resume (the first request that carries the earlier answer) is held
    // until the stand-in stops. Later requests — host 2's, in the same session — write the
    // file, then say they are done.
    let standin = StandIn::start(Script::from_fn(move |request| {
        if !request.messages_contain(EARLIER_ANSWER) {
            Answer::text(format!("{EARLIER_ANSWER}: not yet."))
        } else if !held.swap(true, Ordering::SeqCst) {
            Answer::hang()
        } else if request.tool_result_ids().is_empty() {
            Answer::write_file(&done, "ok\n")
        } else {
            Answer::text("Done.")
        }
    }));
    let mut relays = Vec::new();
    let mut environments = Vec::new();
    for index in 0..world.hosts.len() {
        let relay = Relay::start(IpAddr::V4(world.link(index).server_address), standin.addr())
            .context("starting the stand-in's relay")?;
        let environment = ClaudeEnv::for_base_url(format!("http://{}", relay.address()));
        let host = &mut world.hosts[index];
        host.set("BATON_CLAUDE_BIN", &claude.display().to_string());
        for (name, value) in environment.vars() {
            host.set(&name, &value);
        }
        relays.push(relay);
        environments.push(environment);
    }
    world.add_tasks(1, &["test -f done.txt"])?;
    let (doomed, rescuer) = (world.host(0), world.host(1));
    let first = doomed.spawn(&["run"])?;
    world.wait_for("host1's second call to ask the API", RESCUE_LIMIT, |_| {
        let resumed = standin
            .message_requests()
            .iter()
            .any(|request| request.messages_contain(EARLIER_ANSWER));
        Ok(resumed && !doomed.agent_calls_running().is_empty())
    })?;
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
    stop_watch(watch)?;
    expect_done_once_by(&world, rescuer, &session, false, 1)?;
    let requests = standin.message_requests();
    let sessions: std::collections::BTreeSet<String> = requests
        .iter()
        .map(|request| request.session_id().unwrap_or("none").to_owned())
        .collect();
    ensure!(
        sessions.len() == 1 && sessions.contains(&session),
        "the stand-in saw the sessions {sessions:?}; expected only {session}"
    );
    // Host 2 resumed host 1's conversation: after the held request, the session's requests
    // still carry host 1's first answer, which only host 1's transcript (copied into the
    // ledger after that call, restored on host 2) holds as an assistant turn.
    let with_history = requests
        .iter()
        .filter(|request| request.messages_contain(EARLIER_ANSWER))
        .count();
    ensure!(
        with_history >= 2,
        "only {with_history} request(s) carried host1's earlier answer; host2 did not resume its conversation"
    );
    expect_audit_passes(&world)?;
    Ok(format!(
        "rescued by host2 {:.1}s after the kill; the stand-in saw {} requests, all in session {session}",
        rescued_after.as_secs_f64(),
        requests.len()
    ))
}
