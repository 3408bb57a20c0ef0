//! `baton run --watch`: a runner that keeps taking tasks — added from another process, or
//! left by a runner that was killed — until a signal stops it, handing back what it holds;
//! and `ledger.lease_ttl`, the lease that decides when a runner is taken for gone.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::support::World;

/// What a watching run prints when it has nothing to do.
const WAITING: &str = "waiting for work";

/// A `baton` process under way, with the lines of its progress as they come.
struct Running {
    child: Child,
    lines: Receiver<String>,
    printed: String,
}

impl Running {
    /// Starts `baton ARGS` in `work/`. Progress goes to stdout, or to stderr with `--json`.
    fn start(world: &World, args: &[&str]) -> Running {
        let mut child = world
            .command(&world.work(), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let progress: Box<dyn Read + Send> = if args.contains(&"--json") {
            Box::new(child.stderr.take().unwrap())
        } else {
            Box::new(child.stdout.take().unwrap())
        };
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(progress).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            printed: String::new(),
        }
    }

    /// Waits (at most 30 s) until the progress has said `text` `times` times in all.
    #[track_caller]
    fn wait_for(&mut self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.printed.matches(text).count() < times {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.printed.push_str(&line);
                    self.printed.push('\n');
                }
                Err(_) => panic!(
                    "baton did not say {text:?} {times} times within 30 s:\n{}",
                    self.printed
                ),
            }
        }
    }

    /// Sends `signal` (as `kill` names it) and waits, at most `within`, for the exit. Returns
    /// the exit code, what went to stdout when progress did not, and everything printed.
    fn stop(mut self, signal: &str, within: Duration) -> (Option<i32>, String, String) {
        let sent = Instant::now();
        let killed = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                sent.elapsed() < within,
                "baton did not stop within {within:?} of {signal}:\n{}",
                self.printed
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        for pipe in [
            self.child
                .stdout
                .take()
                .map(|out| Box::new(out) as Box<dyn Read>),
            self.child
                .stderr
                .take()
                .map(|err| Box::new(err) as Box<dyn Read>),
        ]
        .into_iter()
        .flatten()
        {
            let mut pipe = pipe;
            pipe.read_to_string(&mut rest).unwrap();
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.printed.push_str(&line);
            self.printed.push('\n');
        }
        (status.code(), rest, self.printed)
    }
}

fn task(world: &World, id: i64) -> serde_json::Value {
    world
        .baton(&["task", "show", &id.to_string(), "--json"])
        .success()
        .json()
}

#[test]
fn a_watching_run_takes_up_a_task_added_from_another_process_and_reports_at_the_end() {
    let world = World::with_workspace();
    let mut watcher = Running::start(&world, &["run", "--watch", "--json"]);
    watcher.wait_for(WAITING, 1);

    let id = world.add_task(&["Added later"]);
    watcher.wait_for(&format!("task {id} completed"), 1);
    watcher.wait_for(WAITING, 2);
    assert_eq!(task(&world, id)["status"], "completed");

    let (code, json, printed) = watcher.stop("-TERM", Duration::from_secs(30));
    assert_eq!(code, Some(143), "{printed}");
    let report: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|error| panic!("stdout is one JSON report ({error}):\n{json}"));
    assert_eq!(report["cancelled"], true);
    assert_eq!(report["completed"], false);
    assert_eq!(report["interrupted_by"], "SIGTERM");
    assert_eq!(report["tasks"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["tasks"][0]["id"], id);
    assert_eq!(report["tasks"][0]["outcome"], "completed");
}

#[test]
fn ctrl_c_stops_an_idle_watching_run_at_once() {
    let world = World::with_workspace();
    let mut watcher = Running::start(&world, &["run", "--watch"]);
    watcher.wait_for(WAITING, 1);
    let (code, _, printed) = watcher.stop("-INT", Duration::from_secs(10));
    assert_eq!(code, Some(130), "{printed}");
    assert!(printed.contains("Interrupted by SIGINT"), "{printed}");
}

#[test]
fn sigterm_during_an_agent_call_hands_the_task_back_with_its_session_resumable() {
    let mut world = World::with_workspace();
    // A `claude` that answers its version probe, and whose calls take their time.
    let claude = world.root().join("slow-claude");
    std::fs::write(
        &claude,
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '2.1.0 (Claude Code)'; exit 0; fi\nexec sleep 60\n",
    )
    .unwrap();
    std::fs::set_permissions(&claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    world.set("BATON_CLAUDE_BIN", claude.to_str().unwrap());
    let mut watcher = Running::start(&world, &["run", "--watch", "--agent", "claude"]);
    watcher.wait_for(WAITING, 1);
    let id = world.add_task(&["Held"]);
    watcher.wait_for("agent call (start", 1);

    let (code, _, printed) = watcher.stop("-TERM", Duration::from_secs(30));
    assert_eq!(code, Some(143), "{printed}");
    assert!(printed.contains("Interrupted by SIGTERM"), "{printed}");
    let held = task(&world, id);
    assert_eq!(held["status"], "pending", "{held}");
    let sessions = world.baton(&["session", "list", "--json"]).success().json();
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(sessions[0]["status"], "abandoned");

    // The next run continues the task in that very session.
    world.baton(&["run", "--agent", "mock"]).success();
    let done = task(&world, id);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["sessions"], serde_json::json!([sessions[0]["id"]]));
}

#[test]
fn a_watching_run_takes_over_the_task_of_a_run_that_was_killed() {
    let world = World::with_workspace();
    // The check holds the first run until it is killed; on the second try it passes at once.
    let id = world.add_task(&[
        "Outlives its runner",
        "--verify",
        "test -f second-try || sleep 30",
    ]);
    let mut first = Running::start(&world, &["run"]);
    first.wait_for("agent call success", 1);
    let mut watcher = Running::start(&world, &["run", "--watch"]);
    watcher.wait_for(WAITING, 1);
    assert_eq!(
        task(&world, id)["status"],
        "running",
        "a live runner's task is left to it"
    );

    std::fs::write(world.work().join("second-try"), "").unwrap();
    let (code, _, _) = first.stop("-KILL", Duration::from_secs(30));
    assert_eq!(code, None, "killed by a signal");
    watcher.wait_for("recovered: abandoned session", 1);
    watcher.wait_for(&format!("task {id} completed"), 1);
    let (code, _, printed) = watcher.stop("-INT", Duration::from_secs(30));
    assert_eq!(code, Some(130), "{printed}");
    let done = task(&world, id);
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["sessions"].as_array().unwrap().len(),
        1,
        "the killed run's session was continued: {done}"
    );
}

#[test]
fn without_watch_a_run_still_ends_when_nothing_is_ready() {
    let world = World::with_workspace();
    let output = world.baton(&["run"]).success();
    assert!(
        output.stdout.starts_with("Nothing to run"),
        "{}",
        output.stdout
    );
    world.add_task(&["One"]);
    let output = world.baton(&["run"]).success();
    assert!(!output.stdout.contains(WAITING), "{}", output.stdout);
    assert!(
        output.stdout.contains("All 1 task completed"),
        "{}",
        output.stdout
    );
}

#[test]
fn the_lease_ttl_from_the_environment_is_the_runs_lease() {
    let mut world = World::with_workspace();
    world.set("BATON_LEASE_TTL", "10m");
    world.add_task(&["Leased", "--verify", "sleep 30"]);
    let mut run = Running::start(&world, &["run"]);
    // The lease is renewed when the call is recorded, just before the check starts.
    run.wait_for("agent call success", 1);
    let sessions = world.baton(&["session", "list", "--json"]).success().json();
    let time =
        |field: &serde_json::Value| humantime::parse_rfc3339(field.as_str().unwrap()).unwrap();
    let lease = time(&sessions[0]["lease"]["expires_at"])
        .duration_since(time(&sessions[0]["started_at"]))
        .unwrap();
    assert!(
        lease > Duration::from_secs(9 * 60) && lease <= Duration::from_secs(11 * 60),
        "a lease of {lease:?}: {sessions}"
    );
    let (code, _, printed) = run.stop("-INT", Duration::from_secs(30));
    assert_eq!(code, Some(130), "{printed}");
}

#[test]
fn a_zero_lease_ttl_is_refused_naming_where_it_came_from() {
    let mut world = World::with_workspace();
    world.set("BATON_LEASE_TTL", "0s");
    let refused = world.baton(&["run"]).code(2);
    assert!(
        refused
            .stderr
            .contains("BATON_LEASE_TTL=`0s` is zero: it must be longer than zero"),
        "{}",
        refused.stderr
    );

    let world = World::with_workspace();
    let config = world.work().join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("# lease_ttl = \"1m\""),
        "the template offers it:\n{text}"
    );
    std::fs::write(
        &config,
        text.replace("# lease_ttl = \"1m\"", "lease_ttl = \"0s\""),
    )
    .unwrap();
    let refused = world.baton(&["run"]).code(2);
    assert!(
        refused.stderr.contains("ledger.lease_ttl") && refused.stderr.contains("longer than zero"),
        "{}",
        refused.stderr
    );
}
