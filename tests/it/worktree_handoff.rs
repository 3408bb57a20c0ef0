//! A task in its own git worktree, through the real Claude Code CLI against the Messages-API
//! stand-in: its check fails once, the task resumes the same session in the same worktree
//! (the stand-in sees the earlier conversation), and its branch carries the fix in a commit
//! whose `Baton-Session` trailer is the ledger's session.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agent::{CancellationToken, PlanKind};
use agent_claude::{ClaudeAgent, ClaudeConfig};
use api_standin::{Answer, ClaudeEnv, RecordedRequest, Script, StandIn};
use orchestrator::{GitWorkspaces, Orchestrator, RunConfig, Selection};
use redact::Redacted;
use session_store::{NewTask, Store};
use tests::stress::agents::latest_user_turn;

const MISSING: &str = "fix.txt is missing";
const BRIEF: &str = "Task WORKTREE";

fn git(home: &Path, dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_owned()
}

/// The brief gets a text that writes nothing; the feedback a `Write` of the missing file in
/// the worktree; a tool's result a closing text.
fn script(worktree: PathBuf) -> Script {
    Script::from_fn(move |request: &RecordedRequest| {
        let turn = latest_user_turn(request).expect("every request carries a user message");
        if turn.tool_result {
            Answer::text("Done.")
        } else if turn.text.contains(MISSING) {
            Answer::write_file(worktree.join("fix.txt"), "fixed\n")
        } else {
            Answer::text("I will write fix.txt later.")
        }
    })
}

#[tokio::test]
async fn a_failed_check_resumes_in_the_same_worktree_and_the_branch_carries_the_fix() {
    let Some(claude) = api_standin::require_claude(
        "a_failed_check_resumes_in_the_same_worktree_and_the_branch_carries_the_fix",
    ) else {
        return;
    };
    let env = ClaudeEnv::for_base_url("http://127.0.0.1:9");
    let work = env.work_dir("repository").canonicalize().unwrap();
    let home = env.home();
    git(&home, &work, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(work.join("README"), "base\n").unwrap();
    git(&home, &work, &["add", "README"]);
    git(
        &home,
        &work,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.com",
            "commit",
            "--quiet",
            "-m",
            "base",
        ],
    );
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("baton.db");
    let redactor = redact::Redactor::new();
    let mut task = NewTask::new(
        Redacted::trusted("fix it"),
        redactor.redact(&format!("{BRIEF}: write fix.txt.")),
        &work,
    );
    task.verify_commands = vec![redactor.redact(&format!(
        "test -f fix.txt || {{ echo '{MISSING}'; exit 1; }}"
    ))];
    let id = open(&db).add_task(&task).unwrap();
    // The path is fixed before the task runs: `.baton/worktrees/<id>` under the top level.
    let worktree = work.join(".baton/worktrees").join(id.to_string());

    let standin = StandIn::start(script(worktree.clone()));
    let mut config = ClaudeConfig::new(&claude);
    config.env = env.vars();
    config
        .env
        .insert("ANTHROPIC_BASE_URL".to_owned(), standin.base_url());
    let mut run_config = RunConfig {
        call_timeout: Duration::from_secs(90),
        verify_timeout: Duration::from_secs(30),
        ..RunConfig::default()
    };
    run_config.retry.base_delay = Duration::from_millis(1);
    let git_driver = git::Git::new()
        .with_inherited(std::env::vars_os())
        .with_env("HOME", &home)
        .with_env("GIT_CONFIG_NOSYSTEM", "1");
    let orchestrator = Orchestrator::new(open(&db), Arc::new(ClaudeAgent::new(config)), run_config)
        .unwrap()
        .with_workspaces(Arc::new(GitWorkspaces::new(git_driver)));
    let report = tokio::time::timeout(
        Duration::from_secs(240),
        orchestrator.run(&Selection::all(), CancellationToken::new()),
    )
    .await
    .expect("the run finishes within four minutes")
    .unwrap();
    assert!(report.all_completed(), "{report:?}");

    let store = open(&db);
    let workspace = store.task_workspace(id).unwrap().unwrap();
    assert_eq!(
        workspace.worktree_path.as_deref(),
        Some(worktree.to_str().unwrap())
    );
    let calls = store.calls_for_task(id).unwrap();
    let plans: Vec<PlanKind> = calls.iter().map(|call| call.plan).collect();
    assert_eq!(plans, [PlanKind::Start, PlanKind::Resume]);
    let session = calls[0].session;
    assert_eq!(calls[1].session, session);
    // The resumed call carried the whole earlier conversation, under the same session.
    let requests = standin.message_requests();
    for request in &requests {
        assert_eq!(request.session_id(), Some(session.to_string().as_str()));
    }
    assert!(requests[1].messages_contain(BRIEF));
    assert!(requests[1].messages_contain("I will write fix.txt later."));
    // The transcript sits in the worktree's project dir: the path the session knows.
    assert!(
        env.transcript_path(&worktree, &session.to_string())
            .exists()
    );

    let branch = workspace.branch.unwrap();
    assert_eq!(
        git(&home, &work, &["show", &format!("{branch}:fix.txt")]),
        "fixed"
    );
    let message = git(&home, &work, &["log", "-1", "--format=%B", &branch]);
    assert!(
        message.contains(&format!("Baton-Session: {session}")),
        "{message}"
    );
    assert!(message.contains(&format!("Baton-Task: {id}")), "{message}");
    assert_eq!(
        workspace.head_commit.unwrap(),
        git(&home, &work, &["rev-parse", &branch])
    );
    // The person's checkout is untouched.
    assert_eq!(git(&home, &work, &["status", "--porcelain"]), "");
    assert!(!work.join("fix.txt").exists());
}

/// The ledger at `db`, opened as the tests open it: with a redactor that knows no secret.
fn open(db: &std::path::Path) -> Store {
    Store::open_with(
        db,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .unwrap()
}
