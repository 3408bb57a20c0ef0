//! What the tests share: a harness around the stand-in and the agent, event capture, and
//! checks that no process is left behind.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::{AgentCall, AgentEvent, EventSink, SessionPlan};
use agent_claude::{ClaudeAgent, ClaudeConfig};
use api_standin::{ClaudeEnv, Script, StandIn};

/// The wall-clock limit of a call that should finish: generous, so only a hang trips it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The real CLI, a stand-in, a hermetic environment and an agent wired to them.
pub struct Harness {
    pub standin: StandIn,
    pub env: ClaudeEnv,
    pub agent: ClaudeAgent,
    pub work_dir: PathBuf,
}

impl Harness {
    /// `None` (after printing why) when the real CLI is absent; see `require_claude`.
    pub fn new(test_name: &str, script: Script) -> Option<Harness> {
        let claude = api_standin::require_claude(test_name)?;
        let standin = StandIn::start(script);
        let env = ClaudeEnv::new(&standin);
        let mut config = ClaudeConfig::new(claude);
        config.env = env.vars();
        config.grace = Duration::from_secs(2);
        let work_dir = env.work_dir("w");
        Some(Harness {
            standin,
            env,
            agent: ClaudeAgent::new(config),
            work_dir,
        })
    }

    /// A call in the harness's working directory.
    pub fn call(&self, prompt: &str, plan: SessionPlan) -> AgentCall {
        let mut call = AgentCall::new(prompt, plan, &self.work_dir);
        call.timeout = CALL_TIMEOUT;
        call
    }
}

/// An event sink that keeps every event.
pub fn recorder() -> (EventSink, Arc<Mutex<Vec<AgentEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let seen = Arc::clone(&seen);
        EventSink::new(move |event| seen.lock().unwrap().push(event))
    };
    (sink, seen)
}

/// The pid in the `Spawned` event, which must come first.
pub fn spawned_pid(events: &[AgentEvent]) -> u32 {
    match events.first() {
        Some(AgentEvent::Spawned { pid }) => *pid,
        other => panic!("the first event is not Spawned: {other:?}"),
    }
}

/// How long a killed process may take to die. `kill(2)` returns once SIGKILL is queued, not
/// once the target has exited; a process with SIGKILL pending never runs user code again, but
/// for an instant it still shows as running.
const DYING: Duration = Duration::from_secs(5);

/// Asserts that nothing runs in process group `pgid` any more.
///
/// `kill(-pgid, 0)` failing with ESRCH is the plain proof. Killed orphans that nobody has
/// reaped yet (this machine's PID 1 does not reap) stay in the group as zombies, which run
/// nothing; so members are accepted when every one is a zombie.
pub fn assert_group_gone(pgid: u32) {
    let live = || -> Vec<(u32, char)> {
        // SAFETY: kill(2) with signal 0 only checks for existence.
        let result = unsafe { libc::kill(-(pgid as libc::pid_t), 0) };
        if result == -1 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::ESRCH),
                "kill(-{pgid}, 0) failed for another reason than an empty group"
            );
            return Vec::new();
        }
        group_members(pgid)
            .into_iter()
            .filter(|(_, state)| *state != 'Z')
            .collect()
    };
    let still = wait_for_death(live);
    assert!(
        still.is_empty(),
        "processes still running in group {pgid}: {still:?}"
    );
}

/// Asserts that process `pid` is not running (gone, or a zombie).
pub fn assert_process_gone(pid: u32) {
    let still = wait_for_death(|| {
        process_state(pid)
            .filter(|state| *state != 'Z')
            .map(|state| vec![(pid, state)])
            .unwrap_or_default()
    });
    assert!(still.is_empty(), "process {pid} still runs: {still:?}");
}

/// Polls `live` until it is empty or [`DYING`] has passed; returns what it saw last.
fn wait_for_death(live: impl Fn() -> Vec<(u32, char)>) -> Vec<(u32, char)> {
    let started = std::time::Instant::now();
    loop {
        let still = live();
        if still.is_empty() || started.elapsed() > DYING {
            return still;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The members of group `pgid` with their states, from /proc.
fn group_members(pgid: u32) -> Vec<(u32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (state, group) = stat_fields(pid)?;
            (group == pgid).then_some((pid, state))
        })
        .collect()
}

fn process_state(pid: u32) -> Option<char> {
    stat_fields(pid).map(|(state, _)| state)
}

/// (state, process group) from /proc/PID/stat.
fn stat_fields(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}
