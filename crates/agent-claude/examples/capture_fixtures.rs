//! Captures the parser's fixtures from real runs of the `claude` CLI against the stand-in.
//!
//! ```text
//! cargo run -p agent-claude --example capture_fixtures
//! ```
//!
//! Writes `tests/fixtures/<version>/<scenario>.stdout` (the CLI's stdout, byte for byte),
//! `<scenario>.stderr`, and `<scenario>.meta.json` (the session id assigned, the exit code,
//! the usage the stand-in served). Run it again when the pinned CLI version changes, and keep
//! the old directory: the fixtures record what each version printed.
//!
//! Scenario names given as arguments capture only those (`… -- api_401 api_404`), so that a
//! new scenario does not rewrite the fixtures already in the directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use api_standin::{Answer, ClaudeEnv, Script, StandIn, Usage};
use serde_json::json;

/// Every scenario's CLI arguments beyond the print-mode ones.
const PRINT_MODE: [&str; 4] = ["-p", "--output-format", "stream-json", "--verbose"];

fn main() {
    let claude = api_standin::claude_binary().unwrap_or_else(|reason| panic!("{reason}"));
    let version = String::from_utf8(
        Command::new(&claude)
            .arg("--version")
            .output()
            .expect("claude --version runs")
            .stdout,
    )
    .expect("the version is text");
    let version = version.split_whitespace().next().expect("a version word");
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version);
    std::fs::create_dir_all(&out_dir).expect("create the fixture dir");
    let only: Vec<String> = std::env::args().skip(1).collect();
    let capture = Capture {
        claude,
        out_dir,
        only,
    };

    let usage = |input, output, cache_read, cache_creation| Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_creation_tokens: cache_creation,
    };

    // A session started, then resumed in the same working directory.
    {
        let standin = StandIn::start(Script::queue([
            Answer::text("The answer is 42.").with_usage(usage(100, 7, 20, 10)),
            Answer::text("Still 42.").with_usage(usage(130, 5, 0, 0)),
            Answer::text("Forked.").with_usage(usage(150, 4, 0, 0)),
        ]));
        let env = ClaudeEnv::new(&standin);
        let work_dir = env.work_dir("w");
        let id = new_id();
        capture.run(
            "success_text",
            &standin,
            &env,
            &work_dir,
            &["--session-id", &id],
            &id,
            None,
        );
        capture.run(
            "resume_text",
            &standin,
            &env,
            &work_dir,
            &["--resume", &id],
            &id,
            None,
        );
        // Starting it again is refused.
        capture.run(
            "session_in_use",
            &standin,
            &env,
            &work_dir,
            &["--session-id", &id],
            &id,
            None,
        );
        // `--fork-session` makes the CLI continue under an id of its own: what a session
        // mismatch looks like.
        capture.run(
            "forked_session",
            &standin,
            &env,
            &work_dir,
            &["--resume", &id, "--fork-session"],
            &id,
            None,
        );
        let unknown = new_id();
        capture.run(
            "session_not_found",
            &standin,
            &env,
            &work_dir,
            &["--resume", &unknown],
            &unknown,
            None,
        );
    }

    // A tool that writes a file in the working directory, then a final text.
    {
        let standin = StandIn::start(Script::queue([]));
        let env = ClaudeEnv::new(&standin);
        let work_dir = env.work_dir("w");
        standin.enqueue([
            Answer::write_file(work_dir.join("target.txt"), "hello\n")
                .with_usage(usage(50, 9, 0, 40)),
            Answer::text("Wrote it.").with_usage(usage(70, 3, 40, 0)),
        ]);
        let id = new_id();
        capture.run(
            "write_tool",
            &standin,
            &env,
            &work_dir,
            &["--session-id", &id, "--permission-mode", "acceptEdits"],
            &id,
            None,
        );
    }

    // The same tool, denied: the default mode does not let Write run in print mode.
    {
        let standin = StandIn::start(Script::queue([
            Answer::write_file("/nonexistent/denied.txt", "no\n"),
            Answer::text("I was not allowed to write it."),
        ]));
        let env = ClaudeEnv::new(&standin);
        let work_dir = env.work_dir("w");
        let id = new_id();
        capture.run(
            "permission_denied",
            &standin,
            &env,
            &work_dir,
            &["--session-id", &id],
            &id,
            None,
        );
    }

    // Endless tool use against a turn limit.
    {
        let standin = StandIn::start(Script::always(
            Answer::tool_use("Glob", json!({"pattern": "*.nothing"}))
                .with_usage(usage(40, 6, 1, 2)),
        ));
        let env = ClaudeEnv::new(&standin);
        let work_dir = env.work_dir("w");
        let id = new_id();
        capture.run(
            "max_turns",
            &standin,
            &env,
            &work_dir,
            &["--session-id", &id, "--max-turns", "2"],
            &id,
            None,
        );
    }

    // Endless tool use against a spending limit: each answer costs $0.40 at the default
    // model's price.
    {
        let standin = StandIn::start(Script::always(
            Answer::tool_use("Glob", json!({"pattern": "*.nothing"}))
                .with_usage(usage(100_000, 0, 0, 0)),
        ));
        let env = ClaudeEnv::new(&standin);
        let work_dir = env.work_dir("w");
        let id = new_id();
        capture.run(
            "max_budget",
            &standin,
            &env,
            &work_dir,
            &["--session-id", &id, "--max-budget-usd", "0.5"],
            &id,
            None,
        );
    }

    // API failures, reported at once (ClaudeEnv sets CLAUDE_CODE_MAX_RETRIES=0).
    for (name, answer) in [
        ("api_500", Answer::server_error()),
        ("api_529", Answer::overloaded()),
        ("api_429", Answer::rate_limited(Duration::from_secs(30))),
        // The answers no retry fixes, in the API's own words.
        (
            "api_401",
            Answer::error(401, "authentication_error", "invalid x-api-key"),
        ),
        (
            "api_403",
            Answer::error(
                403,
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            ),
        ),
        (
            "api_400_credit",
            Answer::error(
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            ),
        ),
        (
            "api_404_model",
            Answer::error(404, "not_found_error", "model: claude-nonexistent-9"),
        ),
    ] {
        // The real API refuses an unknown model on the CLI's non-streaming fallback too.
        let standin = StandIn::start(Script::always(answer.clone()).with_whole_messages(answer));
        let env = ClaudeEnv::new(&standin);
        let work_dir = env.work_dir("w");
        let id = new_id();
        capture.run(
            name,
            &standin,
            &env,
            &work_dir,
            &["--session-id", &id],
            &id,
            None,
        );
    }

    // No login at all: no key, no credentials file. The CLI does not call the API.
    {
        let standin = StandIn::start(Script::always(Answer::text("unused")));
        let env = ClaudeEnv::new(&standin);
        let work_dir = env.work_dir("w");
        let mut vars = env.vars();
        vars.remove("ANTHROPIC_API_KEY");
        let id = new_id();
        capture.run_with_vars(
            "not_logged_in",
            &standin,
            vars,
            &work_dir,
            &["--session-id", &id],
            &id,
            None,
        );
    }

    // No server at all: the connection is refused.
    {
        let standin = StandIn::start(Script::always(Answer::text("unused")));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let base_url = format!("http://{}", closed.local_addr().expect("its address"));
        drop(closed);
        let env = ClaudeEnv::for_base_url(base_url);
        let work_dir = env.work_dir("w");
        let id = new_id();
        capture.run(
            "connection_refused",
            &standin,
            &env,
            &work_dir,
            &["--session-id", &id],
            &id,
            None,
        );
    }

    // A call stopped (SIGTERM) while the API never answers: no result line.
    {
        let standin = StandIn::start(Script::always(Answer::hang()));
        let env = ClaudeEnv::new(&standin);
        let work_dir = env.work_dir("w");
        let id = new_id();
        capture.run(
            "terminated_while_waiting",
            &standin,
            &env,
            &work_dir,
            &["--session-id", &id],
            &id,
            Some(Duration::from_secs(20)),
        );
    }
}

struct Capture {
    claude: PathBuf,
    out_dir: PathBuf,
    /// The scenarios to capture; empty means all.
    only: Vec<String>,
}

impl Capture {
    /// Runs one scenario and writes its files. With `terminate_after`, the CLI gets SIGTERM
    /// once the stand-in has seen a message request (or that long has passed).
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        name: &str,
        standin: &StandIn,
        env: &ClaudeEnv,
        work_dir: &Path,
        args: &[&str],
        assigned: &str,
        terminate_after: Option<Duration>,
    ) {
        self.run_with_vars(
            name,
            standin,
            env.vars(),
            work_dir,
            args,
            assigned,
            terminate_after,
        );
    }

    /// [`Capture::run`] with the CLI's environment given whole.
    #[allow(clippy::too_many_arguments)]
    fn run_with_vars(
        &self,
        name: &str,
        standin: &StandIn,
        vars: BTreeMap<String, String>,
        work_dir: &Path,
        args: &[&str],
        assigned: &str,
        terminate_after: Option<Duration>,
    ) {
        if !self.only.is_empty() && !self.only.iter().any(|wanted| wanted == name) {
            return;
        }
        let served_before = standin.served_usage();
        let requests_before = standin.message_requests().len();
        let mut child = Command::new(&self.claude)
            .args(PRINT_MODE)
            .args(args)
            .envs(vars)
            .current_dir(work_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("claude starts");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let _ = stdin.write_all(b"Please answer.");
        drop(stdin);
        if let Some(limit) = terminate_after {
            let started = Instant::now();
            while standin.message_requests().len() == requests_before && started.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: kill(2) on the pid of our own child.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let output = child.wait_with_output().expect("claude ends");
        let served = standin.served_usage();
        let served = Usage {
            input_tokens: served.input_tokens - served_before.input_tokens,
            output_tokens: served.output_tokens - served_before.output_tokens,
            cache_read_tokens: served.cache_read_tokens - served_before.cache_read_tokens,
            cache_creation_tokens: served.cache_creation_tokens
                - served_before.cache_creation_tokens,
        };
        let meta = json!({
            "assigned_session_id": assigned,
            "args": args,
            "exit_code": output.status.code(),
            "served_usage": served,
            "message_requests": standin.message_requests().len() - requests_before,
        });
        let write = |suffix: &str, bytes: &[u8]| {
            let path = self.out_dir.join(format!("{name}.{suffix}"));
            std::fs::write(&path, bytes)
                .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        };
        write("stdout", &output.stdout);
        write("stderr", &output.stderr);
        write(
            "meta.json",
            format!("{}\n", serde_json::to_string_pretty(&meta).expect("json")).as_bytes(),
        );
        eprintln!("captured {name}: exit {:?}", output.status.code());
    }
}

fn new_id() -> String {
    agent::SessionId::new_v4().to_string()
}
