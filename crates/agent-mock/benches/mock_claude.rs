//! How many `mock-claude` calls a second this machine runs, one at a time and in parallel.
//!
//! Each call is a full process: `--session-id` with a new id, stream-json, the prompt on stdin,
//! a transcript written and the result read back. Run with
//! `cargo bench -p agent-mock --bench mock_claude [-- CALLS]` (default 400 calls per mode).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MOCK_CLAUDE: &str = env!("CARGO_BIN_EXE_mock-claude");

fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(400);
    let home = tempfile::tempdir().expect("a temp dir for HOME");
    let work = tempfile::tempdir().expect("a temp dir to work in");

    // Warm the page cache so the first mode does not pay for loading the binary.
    call(home.path(), work.path());

    let sequential = run(calls, 1, home.path(), work.path());
    report("sequential", calls, sequential);
    let threads = std::thread::available_parallelism().map_or(2, usize::from) * 2;
    let parallel = run(calls, threads, home.path(), work.path());
    report(&format!("parallel x{threads}"), calls, parallel);
}

fn run(calls: usize, threads: usize, home: &Path, work: &Path) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let share = calls / threads + usize::from(thread < calls % threads);
            scope.spawn(move || {
                for _ in 0..share {
                    call(home, work);
                }
            });
        }
    });
    started.elapsed()
}

fn call(home: &Path, work: &Path) {
    let session = uuid::Uuid::new_v4().to_string();
    let mut child = Command::new(MOCK_CLAUDE)
        .args(["-p", "--output-format", "stream-json", "--verbose"])
        .args(["--session-id", &session])
        .current_dir(work)
        .env_clear()
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mock-claude starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(b"benchmark prompt")
        .expect("the prompt is written");
    let output = child.wait_with_output().expect("mock-claude ends");
    assert!(output.status.success(), "{output:?}");
    let last = output
        .stdout
        .split(|&b| b == b'\n')
        .rfind(|line| !line.is_empty());
    assert!(
        last.is_some_and(
            |line| line.starts_with(b"{") && line.windows(8).any(|w| w == b"\"result\"")
        ),
        "no result line"
    );
}

fn report(mode: &str, calls: usize, elapsed: Duration) {
    let per_second = calls as f64 / elapsed.as_secs_f64();
    println!(
        "mock-claude {mode}: {calls} calls in {:.2}s = {per_second:.0} calls/s ({:.2} ms per call)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / calls as f64,
    );
}
