//! Sessions move with their tasks, end to end: a task's first call runs on one host (a
//! `CLAUDE_CONFIG_DIR` of its own), its resume on another whose config dir is empty. With
//! transcripts mirrored, the ledger's copy is restored under the second host's config dir
//! and the same session id continues its conversation — through `mock-claude`, and through
//! the real Claude Code CLI against the stand-in, which sees the earlier conversation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent::{Agent, CancellationToken, PlanKind, SessionId};
use agent_claude::{CONFIG_DIR_VARIABLE, ClaudeAgent, ClaudeConfig, project_dir_name};
use agent_mock::scenario::{LOG_ENV, Rule, SCENARIO_ENV, Scenario, Step};
use api_standin::{Answer, ClaudeEnv, RecordedRequest, Script, StandIn};
use orchestrator::{Orchestrator, RunConfig, Selection};
use serde_json::Value;
use session_store::{NewTask, SessionStatus, Store, StoreOptions, TaskId, TaskStatus};
use tests::stress::agents::latest_user_turn;

const MOCK_CLAUDE: &str = env!("CARGO_BIN_EXE_contract-mock-claude");

/// The task's brief, which the agents answer by writing nothing.
const BRIEF: &str = "Task MOVE: write moved.txt.";
/// What the first host's agent answers.
const FIRST_ANSWER: &str = "I will write moved.txt on the next host.";

fn options() -> StoreOptions {
    StoreOptions::new(redact::Redactor::new())
}

fn config() -> RunConfig {
    let mut config = RunConfig {
        call_timeout: Duration::from_secs(90),
        verify_timeout: Duration::from_secs(30),
        mirror_transcripts: true,
        ..RunConfig::default()
    };
    config.retry.base_delay = Duration::from_millis(1);
    config
}

/// Where each host keeps Claude Code's files.
struct Hosts {
    first: PathBuf,
    second: PathBuf,
}

impl Hosts {
    fn new(root: &Path) -> Hosts {
        let hosts = Hosts {
            first: root.join("host-a"),
            second: root.join("host-b"),
        };
        std::fs::create_dir_all(&hosts.first).unwrap();
        std::fs::create_dir_all(&hosts.second).unwrap();
        hosts
    }
}

/// `config` for a host whose Claude Code keeps its files in `config_dir`.
fn on_host(config: &ClaudeConfig, config_dir: &Path) -> Arc<dyn Agent> {
    let mut config = config.clone();
    config.env.insert(
        CONFIG_DIR_VARIABLE.to_owned(),
        config_dir.to_string_lossy().into_owned(),
    );
    Arc::new(ClaudeAgent::new(config))
}

async fn run(db: &Path, agent: Arc<dyn Agent>) {
    let orchestrator =
        Orchestrator::new(Store::open_with(db, &options()).unwrap(), agent, config()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(240),
        orchestrator.run(&Selection::all(), CancellationToken::new()),
    )
    .await
    .expect("the run finishes within four minutes")
    .unwrap();
}

/// The task runs its first call on the first host and fails its check; retried, it runs on
/// the second. Returns the task's one session.
async fn move_between_hosts(
    db: &Path,
    work: &Path,
    hosts: &Hosts,
    config: &ClaudeConfig,
) -> SessionId {
    let mut store = Store::open_with(db, &options()).unwrap();
    let redactor = redact::Redactor::new();
    let mut task = NewTask::new(redactor.redact("move"), redactor.redact(BRIEF), work);
    task.max_iterations = 1;
    task.verify_commands = vec![redactor.redact("test -f moved.txt")];
    let task = store.add_task(&task).unwrap();

    run(db, on_host(config, &hosts.first)).await;
    assert_eq!(store.task(task).unwrap().status, TaskStatus::Failed);
    let session = only_session(&store, task);
    let copy = store.session_transcript(session).unwrap().unwrap();
    assert!(copy.transcript.as_str().contains(BRIEF));

    store.retry_task(task, None).unwrap();
    run(db, on_host(config, &hosts.second)).await;
    assert_eq!(store.task(task).unwrap().status, TaskStatus::Completed);
    assert_eq!(only_session(&store, task), session, "no new session");
    assert_eq!(
        store.session(session).unwrap().status,
        SessionStatus::Completed
    );
    let plans: Vec<PlanKind> = store
        .calls_for_session(session)
        .unwrap()
        .iter()
        .map(|call| call.plan)
        .collect();
    assert_eq!(plans, [PlanKind::Start, PlanKind::Resume]);

    // The second host's transcript is the restored one, continued.
    let physical = std::fs::canonicalize(work).unwrap();
    let restored = hosts
        .second
        .join("projects")
        .join(project_dir_name(&physical))
        .join(format!("{session}.jsonl"));
    let continued = std::fs::read_to_string(&restored).unwrap();
    assert!(continued.starts_with(copy.transcript.as_str()));
    // And the ledger's copy is the latest.
    let latest = store.session_transcript(session).unwrap().unwrap();
    assert_eq!(latest.transcript.as_str(), continued);
    session
}

fn only_session(store: &Store, task: TaskId) -> SessionId {
    let sessions = store
        .sessions(&session_store::SessionFilter {
            task: Some(task),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    sessions[0].id
}

#[tokio::test]
async fn a_task_resumes_its_session_on_another_host_through_mock_claude() {
    let env = ClaudeEnv::for_base_url("http://127.0.0.1:9");
    let work = env.work_dir("project");
    let scratch = tempfile::tempdir().unwrap();
    let scenario_path = scratch.path().join("scenario.json");
    let log = scratch.path().join("calls.jsonl");
    let write = Step {
        result: Some(String::from("written")),
        files: BTreeMap::from([(String::from("moved.txt"), String::from("moved\n"))]),
        ..Step::default()
    };
    Scenario {
        when: vec![Rule {
            prompt_contains: Some(String::from(BRIEF)),
            step: Step {
                result: Some(String::from(FIRST_ANSWER)),
                ..Step::default()
            },
            ..Rule::default()
        }],
        steps: vec![write],
    }
    .write(&scenario_path)
    .unwrap();
    let mut config = ClaudeConfig::new(MOCK_CLAUDE);
    config.env = env.vars();
    config.env.insert(
        SCENARIO_ENV.to_owned(),
        scenario_path.to_string_lossy().into_owned(),
    );
    config
        .env
        .insert(LOG_ENV.to_owned(), log.to_string_lossy().into_owned());
    let hosts = Hosts::new(scratch.path());

    let session =
        move_between_hosts(&scratch.path().join("baton.db"), &work, &hosts, &config).await;

    let asked: Vec<(String, String)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            (
                entry["plan"].as_str().unwrap().to_owned(),
                entry["session_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let id = session.to_string();
    assert_eq!(
        asked,
        [("start".to_owned(), id.clone()), ("resume".to_owned(), id)]
    );
}

#[tokio::test]
async fn a_task_resumes_its_session_on_another_host_through_the_real_cli() {
    let Some(claude) = api_standin::require_claude(
        "a_task_resumes_its_session_on_another_host_through_the_real_cli",
    ) else {
        return;
    };
    let env = ClaudeEnv::for_base_url("http://127.0.0.1:9");
    let work = env.work_dir("project");
    let target = work.join("moved.txt");
    // The brief gets a text that writes nothing; anything else a `Write` of the file; the
    // tool's result a closing text.
    let standin = StandIn::start(Script::from_fn(move |request: &RecordedRequest| {
        let turn = latest_user_turn(request).expect("every request carries a user message");
        if turn.tool_result {
            Answer::text("Done.")
        } else if turn.text.contains(BRIEF) {
            Answer::text(FIRST_ANSWER)
        } else {
            Answer::write_file(target.clone(), "moved\n")
        }
    }));
    let mut config = ClaudeConfig::new(claude);
    config.env = env.vars();
    config
        .env
        .insert("ANTHROPIC_BASE_URL".to_owned(), standin.base_url());
    let scratch = tempfile::tempdir().unwrap();
    let hosts = Hosts::new(scratch.path());

    let session =
        move_between_hosts(&scratch.path().join("baton.db"), &work, &hosts, &config).await;

    let requests = standin.message_requests();
    assert!(requests.len() >= 2, "{} requests", requests.len());
    for request in &requests {
        assert_eq!(request.session_id(), Some(session.to_string().as_str()));
    }
    // The second host's first request carries the first host's conversation.
    let resumed = &requests[1];
    assert!(resumed.messages_contain(BRIEF));
    assert!(resumed.messages_contain(FIRST_ANSWER));
}
