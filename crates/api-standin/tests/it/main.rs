//! The stand-in and its helpers against the real `claude` CLI, run directly (no adapter).

use std::io::Write;
use std::process::{Command, Stdio};

use api_standin::{Answer, ClaudeEnv, Script, StandIn, Usage};

/// Runs `claude -p` with `prompt` on stdin in `work_dir`, bounded by `timeout`; returns its
/// stdout.
fn run_claude(
    claude: &std::path::Path,
    env: &ClaudeEnv,
    work_dir: &std::path::Path,
    args: &[&str],
    prompt: &str,
) -> String {
    let mut child = Command::new("timeout")
        .arg("60")
        .arg(claude)
        .args(["-p", "--output-format", "stream-json", "--verbose"])
        .args(args)
        .envs(env.vars())
        .current_dir(work_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run claude under timeout(1)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(prompt.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_real_cli_runs_a_tool_against_the_stand_in() {
    let Some(claude) = api_standin::require_claude("the_real_cli_runs_a_tool_against_the_stand_in")
    else {
        return;
    };
    let usage = Usage {
        input_tokens: 30,
        output_tokens: 4,
        cache_read_tokens: 2,
        cache_creation_tokens: 1,
    };
    let standin = StandIn::start(Script::queue([]));
    let env = ClaudeEnv::new(&standin);
    let work_dir = env.work_dir("w");
    standin.enqueue([
        Answer::write_file(work_dir.join("out.txt"), "written by the stand-in\n").with_usage(usage),
        Answer::text("done").with_usage(usage),
    ]);
    let env = &env;
    let session_id = "0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0f";
    let stdout = run_claude(
        &claude,
        env,
        &work_dir,
        &[
            "--session-id",
            session_id,
            "--permission-mode",
            "acceptEdits",
        ],
        "write the file",
    );
    let result = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["type"] == "result")
        .unwrap_or_else(|| panic!("no result line in: {stdout}"));
    assert_eq!(result["subtype"], "success", "{result}");
    assert_eq!(result["session_id"], session_id);
    assert_eq!(
        std::fs::read_to_string(work_dir.join("out.txt")).unwrap(),
        "written by the stand-in\n"
    );
    assert!(env.transcript_path(&work_dir, session_id).is_file());

    let requests = standin.message_requests();
    assert_eq!(requests.len(), 2);
    // In print mode 2.1.328 sends nothing but streamed message requests: no count_tokens,
    // no title or summary requests, no other path.
    assert_eq!(standin.requests().len(), 2);
    for request in &requests {
        assert_eq!(request.session_id(), Some(session_id));
        // 2.1.328 puts its environment block in a `system` message inside `messages`.
        let primary = format!("Primary working directory: {}", work_dir.display());
        assert!(request.messages_contain(&primary) || request.system_text().contains(&primary));
    }
    assert_eq!(
        requests[1].tool_result_ids(),
        vec!["toolu_standin_1_0".to_owned()]
    );
    assert!(requests[1].messages_contain("write the file"));
    assert_eq!(standin.served_usage(), usage + usage);
    assert_eq!(result["usage"]["input_tokens"], 60);
    assert_eq!(result["usage"]["output_tokens"], 8);
    assert_eq!(result["usage"]["cache_read_input_tokens"], 4);
    assert_eq!(result["usage"]["cache_creation_input_tokens"], 2);
}
