//! Supervision edges shown with fake agent programs (shell scripts that speak just enough of
//! the CLI's protocol): grandchildren, TERM-proof processes, floods of output, crashes, and
//! how the prompt and the environment reach the program. These need no real CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::{
    Agent, AgentCall, AgentError, AgentEvent, CancellationToken, ErrorKind, EventSink, ExitInfo,
    SessionId, SessionPlan,
};
use agent_claude::{ClaudeAgent, ClaudeConfig};

use crate::support::{assert_group_gone, assert_process_gone, recorder, spawned_pid};

/// The result line a fake agent prints; `$6` is the session id (after `-p --output-format
/// stream-json --verbose --session-id`).
const RESULT: &str = r#"printf '{"type":"result","subtype":"success","is_error":false,"session_id":"%s","num_turns":1,"result":"fake"}\n' "$6""#;

/// A temp dir holding an executable script `agent` with `body`, and a working directory.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new(body: &str) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("agent");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Fake { dir }
    }

    fn config(&self) -> ClaudeConfig {
        let mut config = ClaudeConfig::new(self.dir.path().join("agent"));
        config.grace = Duration::from_secs(1);
        config
    }

    fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn call(&self, prompt: &str) -> AgentCall {
        let mut call = AgentCall::new(
            prompt,
            SessionPlan::Start(SessionId::new_v4()),
            self.work_dir(),
        );
        call.timeout = Duration::from_secs(30);
        call
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.work_dir().join(name)).unwrap()
    }
}

fn pid_in(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn grandchildren_do_not_outlive_a_finished_call() {
    // The leader leaves a background process that holds stdout open. The call must end when
    // the leader does, and take the straggler with it.
    let fake = Fake::new(&format!("sleep 300 &\necho $! > grandchild.pid\n{RESULT}"));
    let (events, seen) = recorder();
    let reply = ClaudeAgent::new(fake.config())
        .call(fake.call("hi"), events, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(reply.result_text.as_deref(), Some("fake"));
    assert_process_gone(pid_in(&fake.work_dir().join("grandchild.pid")));
    assert_group_gone(spawned_pid(&seen.lock().unwrap()));
}

#[tokio::test]
async fn a_timeout_kills_a_group_that_ignores_term() {
    // Every process of the group ignores TERM (the disposition is inherited), so only the
    // KILL after the grace period stops them.
    let fake =
        Fake::new("trap '' TERM\nsleep 300 &\necho $! > grandchild.pid\nwhile :; do sleep 1; done");
    let mut call = fake.call("hi");
    call.timeout = Duration::from_millis(500);
    let (events, seen) = recorder();
    let err = ClaudeAgent::new(fake.config())
        .call(call, events, CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_process_gone(pid_in(&fake.work_dir().join("grandchild.pid")));
    assert_group_gone(spawned_pid(&seen.lock().unwrap()));
}

#[tokio::test]
async fn cancelling_stops_the_group() {
    let fake = Fake::new("sleep 300 &\necho $! > grandchild.pid\nsleep 300");
    let cancel = CancellationToken::new();
    let (events, seen) = recorder();
    let agent = ClaudeAgent::new(fake.config());
    let pid_file = fake.work_dir().join("grandchild.pid");
    let call = agent.call(fake.call("hi"), events, cancel.clone());
    let cancel_when_started = async {
        for _ in 0..500 {
            if std::fs::metadata(&pid_file).is_ok_and(|meta| meta.len() > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(call, cancel_when_started);
    assert!(
        matches!(result, Err(AgentError::Cancelled { .. })),
        "{result:?}"
    );
    assert_process_gone(pid_in(&pid_file));
    assert_group_gone(spawned_pid(&seen.lock().unwrap()));
}

/// This process's peak resident memory, from /proc (VmHWM, in bytes).
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_flood_of_output_keeps_memory_bounded() {
    // 256 MiB on stdout as one line, 64 MiB on stderr, then the result.
    let fake = Fake::new(&format!(
        "head -c 268435456 /dev/zero | tr '\\0' x\necho\nhead -c 67108864 /dev/zero | tr '\\0' e >&2\n{RESULT}"
    ));
    let mut config = fake.config();
    config.output_cap = 1 << 20;
    let reply = ClaudeAgent::new(config)
        .call(fake.call("hi"), EventSink::none(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(reply.result_text.as_deref(), Some("fake"));
    let peak = peak_memory();
    assert!(
        peak < 96 << 20,
        "peak memory {} MiB after reading 320 MiB with a 1 MiB cap",
        peak >> 20
    );
}

#[tokio::test]
async fn a_crash_without_a_result_is_crashed_with_the_stderr_tail() {
    let fake = Fake::new("echo 'about to fail' >&2\nkill -SEGV $$");
    let err = ClaudeAgent::new(fake.config())
        .call(fake.call("hi"), EventSink::none(), CancellationToken::new())
        .await
        .unwrap_err();
    match err {
        AgentError::Crashed { exit, stderr_tail } => {
            assert_eq!(exit, ExitInfo::Signal(libc::SIGSEGV));
            assert_eq!(stderr_tail, "about to fail\n");
        }
        other => panic!("expected Crashed, got {other:?}"),
    }
}

#[tokio::test]
async fn the_prompt_arrives_on_stdin_while_the_agent_writes_a_lot() {
    // The fake fills its stdout pipe before it reads stdin: writing the prompt and reading the
    // output must happen at once, or both sides block.
    let prompt = "a prompt line\n".repeat(100_000);
    let fake = Fake::new(&format!(
        "head -c 4000000 /dev/zero | tr '\\0' y\necho\ncat > prompt.txt\n{RESULT}"
    ));
    ClaudeAgent::new(fake.config())
        .call(
            fake.call(&prompt),
            EventSink::none(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(fake.read("prompt.txt"), prompt);
}

#[tokio::test]
async fn the_environment_is_inherited_then_config_then_call() {
    let fake = Fake::new(&format!(
        "echo \"$BATON_TEST_A|$BATON_TEST_B|${{PATH:+path}}\" > env.txt\n{RESULT}"
    ));
    let mut config = fake.config();
    config.env = BTreeMap::from([
        ("BATON_TEST_A".into(), "config".into()),
        ("BATON_TEST_B".into(), "config".into()),
    ]);
    let mut call = fake.call("hi");
    call.env.insert("BATON_TEST_B".into(), "call".into());
    ClaudeAgent::new(config)
        .call(call, EventSink::none(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(fake.read("env.txt"), "config|call|path\n");
}

#[tokio::test]
async fn a_missing_working_directory_is_reported_before_spawning() {
    // The program does not exist either: had it been spawned, the error would be CannotSpawn.
    let agent = ClaudeAgent::new(ClaudeConfig::new("/nonexistent/bin/claude"));
    let call = AgentCall::new(
        "hi",
        SessionPlan::Start(SessionId::new_v4()),
        "/nonexistent/work/dir",
    );
    let (events, seen) = recorder();
    let err = agent
        .call(call, events, CancellationToken::new())
        .await
        .unwrap_err();
    match &err {
        AgentError::WorkingDirMissing { path } => {
            assert_eq!(path, Path::new("/nonexistent/work/dir"));
        }
        other => panic!("expected WorkingDirMissing, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "the working directory `/nonexistent/work/dir` does not exist"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing was spawned");
}

#[tokio::test]
async fn a_missing_binary_cannot_spawn_and_names_it() {
    let work = tempfile::tempdir().unwrap();
    let agent = ClaudeAgent::new(ClaudeConfig::new("/nonexistent/bin/claude"));
    let call = AgentCall::new("hi", SessionPlan::Start(SessionId::new_v4()), work.path());
    let err = agent
        .call(call, EventSink::none(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CannotSpawn);
    assert_eq!(
        err.to_string(),
        "could not start the agent program `/nonexistent/bin/claude`"
    );
    let probe = agent.probe().await.unwrap_err();
    assert_eq!(probe.kind(), ErrorKind::CannotSpawn);
}

#[tokio::test]
async fn spawned_comes_first_with_the_group_leader_pid() {
    let fake = Fake::new(&format!("echo $$ > pid.txt\n{RESULT}"));
    let (events, seen) = recorder();
    ClaudeAgent::new(fake.config())
        .call(fake.call("hi"), events, CancellationToken::new())
        .await
        .unwrap();
    let pid: u32 = fake.read("pid.txt").trim().parse().unwrap();
    assert_eq!(
        seen.lock().unwrap().first(),
        Some(&AgentEvent::Spawned { pid })
    );
}
