//! The session handoff end to end, through the real crates: the ledger, the orchestrator, and
//! `agent-claude`'s adapter driving `mock-claude` or the real Claude Code CLI (against the
//! Messages-API stand-in), in a private `HOME`.
//!
//! The original bug, verbatim: an orchestrator minted a session id and handed it to an agent
//! that made its own; every usage update then failed with "Session not found", and the second
//! task inherited the first task's session. Here two standalone tasks run one after the other
//! (two runs, as two `baton run`s would) in one working directory, each failing verification
//! once so that its session is started and then resumed, and the ledger must show distinct
//! sessions, every call's usage in the session it belongs to, and nothing left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::{Agent, CancellationToken, PlanKind, SessionId, Usage};
use agent_claude::{ClaudeAgent, ClaudeConfig};
use agent_mock::scenario::{Outcome, Rule, SCENARIO_ENV, Scenario, Step as ScenarioStep};
use api_standin::{Answer, ClaudeEnv, RecordedRequest, Script, StandIn};
use orchestrator::{Orchestrator, RunConfig, Selection};
use serde_json::Value;
use session_store::{CallOutcome, Cost, NewTask, SessionStatus, Store, TaskId, TaskStatus, Totals};
use tests::stress::agents::{CLI_MODEL, cli_cost, latest_user_turn};
use tests::stress::audit::{self, Ledger};

const MOCK_CLAUDE: &str = env!("CARGO_BIN_EXE_contract-mock-claude");

/// A task of the scenario: its name, and the usage of each of its two calls.
struct Standalone {
    name: &'static str,
    /// The first call, which writes nothing, and the call after the feedback, which writes
    /// the file.
    usage: [Usage; 2],
    cost_usd: [f64; 2],
}

const fn usage(input: u64, output: u64, cache_read: u64, cache_creation: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_creation_tokens: cache_creation,
    }
}

const ALPHA: Standalone = Standalone {
    name: "alpha",
    usage: [usage(101, 11, 1001, 7), usage(202, 22, 2002, 0)],
    cost_usd: [0.0011, 0.0022],
};
const BETA: Standalone = Standalone {
    name: "beta",
    usage: [usage(303, 33, 0, 13), usage(404, 44, 4004, 17)],
    cost_usd: [0.0033, 0.0044],
};

impl Standalone {
    fn file(&self) -> String {
        format!("{}.txt", self.name)
    }

    /// What its check prints when it fails; the agent's script keys on it.
    fn missing(&self) -> String {
        format!("{} is missing", self.file())
    }

    /// The text of its brief that the agent's script keys on.
    fn brief(&self) -> String {
        format!("Task {}", self.name.to_uppercase())
    }

    fn new_task(&self, work: &Path) -> NewTask {
        let redactor = redact::Redactor::new();
        let mut task = NewTask::new(
            redactor.redact(self.name),
            redactor.redact_owned(format!("{}: write {}.", self.brief(), self.file())),
            work,
        );
        task.verify_commands = vec![redactor.redact_owned(format!(
            "test -f {} || {{ echo '{}'; exit 1; }}",
            self.file(),
            self.missing()
        ))];
        task
    }
}

fn quick_config() -> RunConfig {
    let mut config = RunConfig {
        call_timeout: Duration::from_secs(90),
        verify_timeout: Duration::from_secs(30),
        ..RunConfig::default()
    };
    config.retry.base_delay = Duration::from_millis(1);
    config.retry.max_delay = Duration::from_millis(10);
    config
}

/// Adds the two tasks, then runs each on its own, one after the other, each run with a new
/// orchestrator on the ledger (as two `baton run`s would).
async fn two_tasks_in_sequence(db: &Path, work: &Path, agent: Arc<dyn Agent>) -> [TaskId; 2] {
    let mut store = Store::open_with(
        db,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .unwrap();
    let ids = [
        store.add_task(&ALPHA.new_task(work)).unwrap(),
        store.add_task(&BETA.new_task(work)).unwrap(),
    ];
    drop(store);
    for id in ids {
        let orchestrator = Orchestrator::new(
            Store::open_with(
                db,
                &session_store::StoreOptions::new(redact::Redactor::new()),
            )
            .unwrap(),
            Arc::clone(&agent),
            quick_config(),
        )
        .unwrap();
        let selection = Selection {
            tasks: vec![id],
            milestone: None,
        };
        let report = tokio::time::timeout(
            Duration::from_secs(240),
            orchestrator.run(&selection, CancellationToken::new()),
        )
        .await
        .expect("the run finishes within four minutes")
        .unwrap();
        assert!(report.all_completed(), "task {id}: {report:?}");
    }
    ids
}

/// What every variant of the scenario must show in the ledger. `expected` is each task's
/// calls' usage and cost, as the agent reported them. Returns each task's session.
fn assert_handoff(db: &Path, ids: [TaskId; 2], expected: [[(Usage, f64); 2]; 2]) -> [SessionId; 2] {
    let store = Store::open_with(
        db,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .unwrap();
    let ledger = Ledger::read(&store).unwrap();
    let violations = audit::check_ledger(&ledger);
    assert!(violations.is_empty(), "{violations:#?}");

    let mut sessions = Vec::new();
    for (id, calls_expected) in ids.into_iter().zip(expected) {
        let task = store.task(id).unwrap();
        assert_eq!(task.status, TaskStatus::Completed);
        let own: Vec<_> = ledger
            .sessions
            .iter()
            .filter(|session| session.task == id)
            .collect();
        assert_eq!(
            own.len(),
            1,
            "task {id} has one session of its own: {own:#?}"
        );
        let session = own[0];
        assert_eq!(session.status, SessionStatus::Completed);
        assert!(session.lease.is_none() && session.agent.is_none());

        // Started once, then resumed, both in its own session, each call's figures exactly
        // what the agent reported for it.
        let calls = ledger.calls_of(id);
        let plans: Vec<PlanKind> = calls.iter().map(|call| call.plan).collect();
        assert_eq!(plans, [PlanKind::Start, PlanKind::Resume]);
        let mut sum = Totals::default();
        for (call, (usage, cost_usd)) in calls.iter().zip(calls_expected) {
            assert_eq!(call.session, session.id);
            assert_eq!(call.reported_session, Some(session.id));
            assert_eq!(call.outcome, CallOutcome::Success);
            assert_eq!(call.usage, usage, "call {} of task {id}", call.id);
            assert_eq!(
                call.cost,
                Cost::from_usd(cost_usd),
                "call {} of task {id}",
                call.id
            );
            sum += Totals {
                agent_calls: 1,
                turns: u64::from(call.turns),
                usage: call.usage,
                cost: call.cost,
            };
        }
        assert_eq!(session.totals, sum);
        assert_eq!(store.session_usage(session.id).unwrap(), sum);
        assert_eq!(store.task_usage(id).unwrap(), sum);
        sessions.push(session.id);
    }
    assert_ne!(
        sessions[0], sessions[1],
        "the second task got a session of its own"
    );
    assert_eq!(ledger.sessions.len(), 2, "no other session was opened");
    [sessions[0], sessions[1]]
}

/// The transcripts under the private `HOME`, by session id: exactly the recorded sessions,
/// each once, in the working directory's project dir.
fn assert_transcripts(env: &ClaudeEnv, work: &Path, sessions: [SessionId; 2]) {
    let projects = env.home().join(".claude/projects");
    let mut found = BTreeMap::new();
    for project in std::fs::read_dir(&projects).unwrap() {
        let project = project.unwrap().path();
        for file in std::fs::read_dir(&project).unwrap() {
            let path = file.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "jsonl")
            {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                assert!(
                    found.insert(stem, path.clone()).is_none(),
                    "two transcripts of one session: {}",
                    path.display()
                );
            }
        }
    }
    let expected: BTreeSet<String> = sessions.iter().map(ToString::to_string).collect();
    assert_eq!(found.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for session in sessions {
        assert_eq!(
            found[&session.to_string()],
            env.transcript_path(work, &session.to_string()),
            "the transcript sits in the working directory's project dir"
        );
    }
}

fn scenario_step(standalone: &Standalone, call: usize, writes: bool) -> ScenarioStep {
    ScenarioStep {
        result: Some(format!("{} call {}", standalone.name, call + 1)),
        usage: Some(standalone.usage[call]),
        cost_usd: Some(standalone.cost_usd[call]),
        files: if writes {
            BTreeMap::from([(standalone.file(), format!("{}\n", standalone.name))])
        } else {
            BTreeMap::new()
        },
        ..ScenarioStep::default()
    }
}

fn rule(prompt_contains: String, step: ScenarioStep) -> Rule {
    Rule {
        prompt_contains: Some(prompt_contains),
        step,
        ..Rule::default()
    }
}

#[tokio::test]
async fn two_standalone_tasks_in_sequence_through_mock_claude() {
    let env = ClaudeEnv::for_base_url("http://127.0.0.1:9");
    let work = env.work_dir("project");
    let scratch = tempfile::tempdir().unwrap();
    let scenario_path = scratch.path().join("scenario.json");
    let log = scratch.path().join("calls.jsonl");
    // The feedback names the missing file: the agent writes it. The brief alone: it writes
    // nothing. Anything else crashes, so a prompt nobody expected shows.
    Scenario {
        when: vec![
            rule(ALPHA.missing(), scenario_step(&ALPHA, 1, true)),
            rule(BETA.missing(), scenario_step(&BETA, 1, true)),
            rule(ALPHA.brief(), scenario_step(&ALPHA, 0, false)),
            rule(BETA.brief(), scenario_step(&BETA, 0, false)),
        ],
        steps: vec![ScenarioStep {
            outcome: Outcome::Crash,
            stderr: Some(String::from(
                "mock-claude: this prompt is not in the scenario",
            )),
            ..ScenarioStep::default()
        }],
    }
    .write(&scenario_path)
    .unwrap();
    let mut config = ClaudeConfig::new(MOCK_CLAUDE);
    config.env = env.vars();
    config.env.insert(
        SCENARIO_ENV.to_owned(),
        scenario_path.to_string_lossy().into_owned(),
    );
    config.env.insert(
        agent_mock::scenario::LOG_ENV.to_owned(),
        log.to_string_lossy().into_owned(),
    );
    let db = scratch.path().join("baton.db");

    let ids = two_tasks_in_sequence(&db, &work, Arc::new(ClaudeAgent::new(config))).await;

    let figures = |task: &Standalone| {
        [
            (task.usage[0], task.cost_usd[0]),
            (task.usage[1], task.cost_usd[1]),
        ]
    };
    let sessions = assert_handoff(&db, ids, [figures(&ALPHA), figures(&BETA)]);
    assert_transcripts(&env, &work, sessions);

    // What mock-claude was asked, process by process: each session started once, then
    // resumed, the first task's session never touched again once the second task ran.
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
    let [first, second] = sessions.map(|session| session.to_string());
    assert_eq!(
        asked,
        [
            ("start".to_owned(), first.clone()),
            ("resume".to_owned(), first),
            ("start".to_owned(), second.clone()),
            ("resume".to_owned(), second),
        ]
    );
}

/// Each request the stand-in answered: the session it named, and the usage it was served.
type Served = Arc<Mutex<Vec<(Option<String>, Usage)>>>;

/// The usage of the stand-in's answers, each different so a misplaced figure shows.
const FIRST_ANSWER: [Usage; 2] = [usage(31, 3, 0, 0), usage(37, 4, 0, 5)];
const WRITE_ANSWER: [Usage; 2] = [usage(41, 6, 7, 0), usage(43, 8, 0, 9)];
const DONE_ANSWER: Usage = usage(53, 2, 11, 0);

/// The stand-in's script for the standalone tasks: the brief gets a text that writes
/// nothing, the feedback a `Write` of the missing file, a tool's result a closing text. It
/// keeps every request's session and the usage it was served.
fn standalone_script(
    work: PathBuf,
    tasks: &'static [&'static Standalone],
    served: Served,
) -> Script {
    Script::from_fn(move |request: &RecordedRequest| {
        let turn = latest_user_turn(request).expect("every request carries a user message");
        let mut answer = if turn.tool_result {
            Answer::text("Done.").with_usage(DONE_ANSWER)
        } else {
            Answer::text("Nothing was scripted for this prompt.")
        };
        for (index, task) in tasks.iter().enumerate() {
            if turn.text.contains(&task.missing()) {
                answer = Answer::write_file(work.join(task.file()), format!("{}\n", task.name))
                    .with_usage(WRITE_ANSWER[index]);
                break;
            }
            if turn.text.contains(&task.brief()) {
                answer = Answer::text(format!("I will write {} later.", task.file()))
                    .with_usage(FIRST_ANSWER[index]);
                break;
            }
        }
        served.lock().unwrap().push((
            request.session_id().map(str::to_owned),
            answer.served_usage(),
        ));
        answer
    })
}

/// The real CLI in a private `HOME`, answered by a stand-in playing `standalone_script`.
struct RealCli {
    standin: StandIn,
    env: ClaudeEnv,
    work: PathBuf,
    agent: Arc<dyn Agent>,
    served: Served,
}

impl RealCli {
    fn new(claude: &Path, tasks: &'static [&'static Standalone]) -> RealCli {
        let env = ClaudeEnv::for_base_url("http://127.0.0.1:9");
        let work = env.work_dir("project");
        let served = Arc::new(Mutex::new(Vec::new()));
        let standin = StandIn::start(standalone_script(work.clone(), tasks, Arc::clone(&served)));
        let mut config = ClaudeConfig::new(claude);
        config.env = env.vars();
        config
            .env
            .insert("ANTHROPIC_BASE_URL".to_owned(), standin.base_url());
        RealCli {
            standin,
            env,
            work,
            agent: Arc::new(ClaudeAgent::new(config)),
            served,
        }
    }

    /// The usage served per session, as the CLI named the session in its requests.
    fn served_per_session(&self) -> BTreeMap<Option<String>, Usage> {
        let mut per_session = BTreeMap::new();
        for (session, usage) in self.served.lock().unwrap().iter() {
            *per_session.entry(session.clone()).or_insert(Usage::ZERO) += *usage;
        }
        per_session
    }
}

#[tokio::test]
async fn two_standalone_tasks_in_sequence_through_the_real_cli() {
    let Some(claude) =
        api_standin::require_claude("two_standalone_tasks_in_sequence_through_the_real_cli")
    else {
        return;
    };
    let cli = RealCli::new(&claude, &[&ALPHA, &BETA]);
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("baton.db");

    let ids = two_tasks_in_sequence(&db, &cli.work, Arc::clone(&cli.agent)).await;

    // Through the real CLI a call's cost is what the CLI charges for the usage it was served,
    // at its default model's prices: computed here from what the stand-in served, not read
    // back from the ledger.
    for request in cli.standin.message_requests() {
        assert_eq!(
            request.model(),
            Some(CLI_MODEL),
            "the pinned CLI asks for another model: update CLI_MODEL and its prices"
        );
    }
    let served_by_call = |task: usize| [FIRST_ANSWER[task], WRITE_ANSWER[task] + DONE_ANSWER];
    let expected =
        [0, 1].map(|task| served_by_call(task).map(|usage| (usage, cli_cost(usage).as_usd())));
    let sessions = assert_handoff(&db, ids, expected);
    let store = Store::open_with(
        &db,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .unwrap();
    assert_transcripts(&cli.env, &cli.work, sessions);

    // Every request named the session Baton assigned, and each session was served exactly
    // the usage the ledger holds for it, and charged what that usage costs.
    let served = cli.served_per_session();
    let recorded: BTreeMap<Option<String>, (Usage, Cost)> = sessions
        .iter()
        .map(|session| {
            let totals = store.session_usage(*session).unwrap();
            (Some(session.to_string()), (totals.usage, totals.cost))
        })
        .collect();
    let charged: BTreeMap<Option<String>, (Usage, Cost)> = served
        .into_iter()
        .map(|(session, usage)| (session, (usage, cli_cost(usage))))
        .collect();
    assert_eq!(charged, recorded);
    let order: Vec<String> = cli
        .standin
        .message_requests()
        .iter()
        .filter_map(|request| request.session_id().map(str::to_owned))
        .collect();
    let switch = order
        .iter()
        .position(|session| *session == sessions[1].to_string())
        .unwrap();
    assert!(
        order[..switch]
            .iter()
            .all(|session| *session == sessions[0].to_string())
            && order[switch..]
                .iter()
                .all(|session| *session == sessions[1].to_string()),
        "the second task's requests all name its own session: {order:?}"
    );
}

const GAMMA: Standalone = Standalone {
    name: "gamma",
    usage: [Usage::ZERO, Usage::ZERO],
    cost_usd: [0.0, 0.0],
};

#[tokio::test]
async fn feedback_after_a_failed_check_resumes_the_same_session_in_the_real_cli() {
    let Some(claude) = api_standin::require_claude(
        "feedback_after_a_failed_check_resumes_the_same_session_in_the_real_cli",
    ) else {
        return;
    };
    let cli = RealCli::new(&claude, &[&GAMMA]);
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("baton.db");
    let task = Store::open_with(
        &db,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .unwrap()
    .add_task(&GAMMA.new_task(&cli.work))
    .unwrap();
    let orchestrator = Orchestrator::new(
        Store::open_with(
            &db,
            &session_store::StoreOptions::new(redact::Redactor::new()),
        )
        .unwrap(),
        Arc::clone(&cli.agent),
        quick_config(),
    )
    .unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(240),
        orchestrator.run(&Selection::all(), CancellationToken::new()),
    )
    .await
    .expect("the run finishes within four minutes")
    .unwrap();
    assert!(report.all_completed(), "{report:?}");

    let store = Store::open_with(
        &db,
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .unwrap();
    let calls = store.calls_for_task(task).unwrap();
    assert_eq!(
        calls
            .iter()
            .map(|call| (call.iteration, call.plan))
            .collect::<Vec<_>>(),
        [(1, PlanKind::Start), (2, PlanKind::Resume)]
    );
    let session = calls[0].session;
    assert_eq!(calls[1].session, session);
    let checks: Vec<bool> = store
        .verifications_for_task(task)
        .unwrap()
        .iter()
        .map(|check| check.passed())
        .collect();
    assert_eq!(checks, [false, true]);

    // One request for the first call, then the resumed call's: the feedback with the check's
    // output, on top of the whole earlier conversation, under the same session header.
    let requests = cli.standin.message_requests();
    assert_eq!(
        requests.len(),
        3,
        "the brief, the feedback, the tool's result"
    );
    for request in &requests {
        assert_eq!(request.session_id(), Some(session.to_string().as_str()));
    }
    let resumed = &requests[1];
    let feedback = latest_user_turn(resumed).unwrap().text;
    assert!(
        feedback.contains("did not pass verification") && feedback.contains(&GAMMA.missing()),
        "{feedback}"
    );
    assert!(resumed.messages_contain(&GAMMA.brief()));
    assert!(resumed.messages_contain("I will write gamma.txt later."));
    assert!(feedback.contains(&calls[1].prompt), "{feedback}");
    assert_eq!(
        std::fs::read_to_string(cli.work.join(GAMMA.file())).unwrap(),
        "gamma\n"
    );
}
