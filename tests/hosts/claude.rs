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

/// Host 1's CLI is killed, with its host, while the stand-in holds its first request; host 2's
/// `baton run --watch` rescues the task past the TTL and its CLI goes on in the same session
/// id, writes the file the check wants, and the task completes once.
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
    // The first message request (host 1's) is held until the stand-in stops; later ones write
    // the file, then say they are done.
    let standin = StandIn::start(Script::from_fn(move |request| {
        if !held.swap(true, Ordering::SeqCst) {
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
    world.wait_for("host1's CLI to ask the API", RESCUE_LIMIT, |_| {
        Ok(!standin.message_requests().is_empty() && !doomed.agent_calls_running().is_empty())
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
    expect_done_once_by(&world, rescuer, &session, false)?;
    let requests = standin.message_requests();
    let sessions: std::collections::BTreeSet<String> = requests
        .iter()
        .map(|request| request.session_id().unwrap_or("none").to_owned())
        .collect();
    ensure!(
        sessions.len() == 1 && sessions.contains(&session),
        "the stand-in saw the sessions {sessions:?}; expected only {session}"
    );
    expect_audit_passes(&world)?;
    // Whether host 2's requests carry host 1's conversation is not asserted: host 1's
    // transcript stays on host 1 until transcripts travel with their sessions.
    Ok(format!(
        "rescued by host2 {:.1}s after the kill; the stand-in saw {} requests, all in session {session}",
        rescued_after.as_secs_f64(),
        requests.len()
    ))
}
