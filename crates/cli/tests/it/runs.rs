//! `baton run` with the built-in mock agent, and what the ledger shows afterwards; `baton
//! quickstart`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::snapshot;
use crate::support::World;

#[test]
fn a_run_where_every_task_completes_exits_0() {
    let world = World::with_workspace();
    world.baton(&["milestone", "add", "m"]).success();
    world.add_task(&["First", "--verify", "true", "--milestone", "m"]);
    world.add_task(&["Second", "--after", "1"]);
    let output = world.baton(&["run"]).success();
    snapshot!("run_ok", output.squeezed());

    let tasks = world.baton(&["task", "list", "--json"]).success().json();
    for task in tasks.as_array().unwrap() {
        assert_eq!(task["status"], "completed");
        assert_eq!(task["iterations"], 1);
        assert_eq!(task["sessions"].as_array().unwrap().len(), 1);
        // The built-in mock agent's fixed figures.
        assert_eq!(task["input_tokens"], 1_200);
        assert_eq!(task["output_tokens"], 300);
        assert_eq!(task["cost_usd"], 0.0105);
    }

    let sessions = world.baton(&["session", "list", "--json"]).success().json();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    for key in [
        "id",
        "task_id",
        "milestone",
        "status",
        "policy",
        "agent_calls",
        "turns",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
        "cost_usd",
        "started_at",
        "ended_at",
        "end_reason",
    ] {
        assert!(
            sessions[0].get(key).is_some(),
            "session JSON lacks `{key}`: {}",
            sessions[0]
        );
    }
    assert_eq!(sessions[0]["milestone"], "m");
    assert_eq!(sessions[0]["status"], "completed");
    assert_eq!(sessions[0]["policy"], "task");
    assert_eq!(sessions[0]["agent_calls"], 1);
    assert_eq!(sessions[0]["task_id"], 1);
    assert_eq!(tasks[0]["sessions"][0], sessions[0]["id"]);

    snapshot!(
        "session_list",
        world.baton(&["session", "list"]).success().squeezed()
    );
    let id = sessions[1]["id"].as_str().unwrap();
    snapshot!(
        "session_show",
        world.baton(&["session", "show", id]).success().squeezed()
    );
    let shown = world
        .baton(&["session", "show", id, "--json"])
        .success()
        .json();
    assert_eq!(shown["calls"].as_array().unwrap().len(), 1);
    assert_eq!(shown["calls"][0]["plan"], "start");

    snapshot!(
        "usage_by_task",
        world.baton(&["usage"]).success().normalised()
    );
    snapshot!(
        "usage_by_milestone",
        world
            .baton(&["usage", "--by", "milestone"])
            .success()
            .normalised()
    );
    snapshot!(
        "usage_by_session",
        world
            .baton(&["usage", "--by", "session"])
            .success()
            .normalised()
    );
    let usage = world
        .baton(&["usage", "--by", "milestone", "--json"])
        .success()
        .json();
    assert_eq!(usage["total"]["agent_calls"], 2);
    assert_eq!(usage["rows"][0]["milestone"], "m");
    assert_eq!(usage["rows"][1]["milestone"], serde_json::Value::Null);

    snapshot!(
        "run_nothing_left",
        world.baton(&["run"]).success().normalised()
    );
}

#[test]
fn a_run_with_a_failing_task_exits_1_and_says_what_to_do() {
    let world = World::with_workspace();
    world.add_task(&[
        "Doomed",
        "--verify",
        "echo the tests fail; exit 3",
        "--max-iterations",
        "2",
    ]);
    world.add_task(&["Waits", "--after", "1"]);
    let output = world.baton(&["run"]).code(1);
    snapshot!("run_failed", output.squeezed());
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "failed");
    assert_eq!(task["iterations"], 2);
    assert_eq!(task["verifications"].as_array().unwrap().len(), 2);
    // Both iterations ran in the task's one session: started, then resumed.
    assert_eq!(task["sessions"].as_array().unwrap().len(), 1);
    let plans: Vec<&str> = task["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| call["plan"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["start", "resume"]);
    assert!(
        task["calls"][1]["prompt"]
            .as_str()
            .unwrap()
            .contains("the tests fail")
    );
    snapshot!(
        "task_show_failed",
        world.baton(&["task", "show", "1"]).success().squeezed()
    );

    // A person steps in; the task continues in its session.
    world
        .baton(&["task", "retry", "1", "--message", "Skip the flaky test."])
        .success();
    let again = world.baton(&["run", "--json"]).code(1);
    let report = again.json();
    assert_eq!(report["completed"], false);
    assert_eq!(report["tasks"][0]["outcome"], "failed");
    assert_eq!(report["tasks"][1]["outcome"], "not_run");
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(
        task["sessions"].as_array().unwrap().len(),
        1,
        "the retry resumed the session"
    );
    let last_prompt = task["calls"][2]["prompt"].as_str().unwrap();
    assert!(
        last_prompt.contains("Skip the flaky test."),
        "{last_prompt}"
    );
}

#[test]
fn run_json_reports_every_task() {
    let world = World::with_workspace();
    world.add_task(&["A", "--verify", "true"]);
    world.add_task(&["B"]);
    let output = world
        .baton(&["run", "--json", "--concurrency", "2"])
        .success();
    let report = output.json();
    assert_eq!(report["completed"], true);
    assert_eq!(report["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(report["total"]["agent_calls"], 2);
    // Progress went to stderr, as lines.
    assert!(
        output.stderr.contains("task 1 completed"),
        "{}",
        output.stderr
    );
}

#[test]
fn run_selects_tasks_by_id_and_milestone() {
    let world = World::with_workspace();
    world.baton(&["milestone", "add", "m"]).success();
    world.add_task(&["Outside"]);
    world.add_task(&["Inside", "--milestone", "m"]);
    world.add_task(&["Named"]);
    world.baton(&["run", "--milestone", "m"]).success();
    world.baton(&["run", "3"]).success();
    let tasks = world.baton(&["task", "list", "--json"]).success().json();
    let states: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "completed", "completed"]);
    let done = world.baton(&["run", "3"]).code(2);
    snapshot!("run_completed_task", done.normalised());
}

#[test]
fn recover_finds_nothing_after_a_clean_run() {
    let world = World::with_workspace();
    world.add_task(&["A"]);
    world.baton(&["run"]).success();
    let output = world.baton(&["recover", "--json"]).success();
    assert_eq!(output.json()["recovered"], serde_json::json!([]));
}

#[test]
fn quickstart_runs_the_examples_and_shows_the_ledger() {
    let world = World::new();
    let output = world.baton(&["quickstart", "--dir", "demo"]).success();
    snapshot!("quickstart", output.squeezed());
    let demo = world.work().join("demo");
    assert_eq!(
        std::fs::read_to_string(demo.join("add.sh")).unwrap(),
        "echo $(($1 + $2))\n"
    );
    let tasks = world
        .baton_in(&demo, &["task", "list", "--json"])
        .success()
        .json();
    let iterations: Vec<i64> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["iterations"].as_i64().unwrap())
        .collect();
    assert_eq!(
        iterations,
        [1, 2, 1],
        "task 2 passes on its second iteration"
    );
    // Without --dir it makes a directory of its own under TMPDIR.
    let output = world.baton(&["quickstart", "--json"]).success();
    let workspace = output.json()["workspace"].as_str().unwrap().to_owned();
    assert!(
        workspace.starts_with(world.root().join("tmp").to_str().unwrap()),
        "{workspace}"
    );
    assert_eq!(output.json()["run"]["completed"], true);
}

/// A `baton run` in progress, stopped in its first verification, which takes `check_secs`.
pub struct RunInProgress {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    printed: String,
}

impl RunInProgress {
    pub fn start(world: &World, check_secs: u32) -> RunInProgress {
        let check = format!("sleep {check_secs}");
        world.add_task(&["Slow check", "--verify", &check, "--max-iterations", "2"]);
        let mut child = world
            .command(&world.work(), &["run"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut run = RunInProgress {
            child,
            lines,
            printed: String::new(),
        };
        // The agent call is recorded just before the verification starts.
        while !run.printed.contains("agent call success") {
            let line = run
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("baton printed the agent call within 30 s");
            run.printed.push_str(&line);
            run.printed.push('\n');
        }
        // Let the check start.
        std::thread::sleep(Duration::from_millis(300));
        run
    }

    /// Sends `signal` (as `kill` names it), waits for the exit, and returns the exit code and
    /// everything printed.
    pub fn signal(mut self, signal: &str) -> (Option<i32>, String) {
        let killed = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "baton did not stop within 30 s of {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.printed.push_str(&line);
            self.printed.push('\n');
        }
        (status.code(), self.printed)
    }
}

fn interrupt_a_run(world: &World, signal: &str) -> (i32, String) {
    let (code, printed) = RunInProgress::start(world, 60).signal(signal);
    (code.unwrap_or(-1), printed)
}

#[test]
fn recover_abandons_the_session_of_a_killed_run_and_requeues_its_task() {
    let world = World::with_workspace();
    // The check outlives baton (nothing is left to stop it), so keep it short.
    let (code, _) = RunInProgress::start(&world, 2).signal("-KILL");
    assert_eq!(code, None, "killed by a signal");
    let before = world.baton(&["session", "list", "--json"]).success().json();
    assert_eq!(
        before[0]["status"], "open",
        "a killed run leaves its session open"
    );
    assert_eq!(
        world
            .baton(&["task", "show", "1", "--json"])
            .success()
            .json()["status"],
        "running"
    );

    let output = world.baton(&["recover"]).success();
    snapshot!("recover", output.normalised());
    let after = world.baton(&["session", "list", "--json"]).success().json();
    assert_eq!(after[0]["status"], "abandoned");
    assert_eq!(
        world
            .baton(&["task", "show", "1", "--json"])
            .success()
            .json()["status"],
        "pending"
    );
    assert_eq!(
        world.baton(&["recover", "--json"]).success().json()["recovered"],
        serde_json::json!([]),
        "a second sweep finds nothing"
    );
}

#[test]
fn ctrl_c_stops_a_run_and_its_tasks_resume_next_time() {
    let world = World::with_workspace();
    let (code, printed) = interrupt_a_run(&world, "-INT");
    assert_eq!(code, 130, "{printed}");
    assert!(
        printed.contains(
            "Interrupted by SIGINT: 1 task is pending and resumes on the next `baton run`"
        ),
        "{printed}"
    );
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "pending");
    let sessions = world.baton(&["session", "list", "--json"]).success().json();
    assert_ne!(
        sessions[0]["status"], "open",
        "the session was closed on the way out"
    );
    // The next run picks the task up again, in the same session.
    let config = world.work().join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# verify_timeout = \"10m\"", "verify_timeout = \"1s\""),
    )
    .unwrap();
    world.baton(&["run"]).code(1);
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["sessions"].as_array().unwrap().len(), 1, "{task}");
}

#[test]
fn sigterm_stops_a_run_with_143() {
    let world = World::with_workspace();
    let (code, printed) = interrupt_a_run(&world, "-TERM");
    assert_eq!(code, 143, "{printed}");
    assert!(printed.contains("Interrupted by SIGTERM"), "{printed}");
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "pending");
}

#[test]
fn a_closed_terminal_stops_a_run_with_129() {
    let world = World::with_workspace();
    let (code, printed) = interrupt_a_run(&world, "-HUP");
    assert_eq!(code, 129, "{printed}");
    assert!(printed.contains("Interrupted by SIGHUP"), "{printed}");
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "pending");
}

#[test]
fn a_sigterm_while_the_agent_is_probed_stops_the_run_with_143() {
    let mut world = World::with_workspace();
    world.add_task(&["Never starts"]);
    // A `claude` whose `--version` says it started, then takes its time.
    let started = world.root().join("probe-started");
    let claude = world.root().join("slow-claude");
    std::fs::write(
        &claude,
        format!(
            "#!/bin/sh\ntouch '{}'\nsleep 1\necho '2.1.0 (Claude Code)'\n",
            started.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    world.set("BATON_CLAUDE_BIN", claude.to_str().unwrap());
    let child = world
        .command(&world.work(), &["run", "--agent", "claude"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the probe did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(143),
        "{:?}\n{printed}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("Interrupted by SIGTERM"), "{printed}");
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(task["status"], "pending");
    assert_eq!(task["agent_calls"], 0, "no agent call started");
}
