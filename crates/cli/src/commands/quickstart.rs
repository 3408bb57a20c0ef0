//! `baton quickstart`: a throw-away workspace with three example tasks, run with a scripted
//! mock agent, then the ledger it left.
//!
//! The mock plays a small story: one task passes first time, one writes a buggy script that
//! its verification catches and fixes it after the feedback (in the same session, resumed),
//! and one waits for both. Nothing leaves the machine and no API key is needed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use agent::{SessionId, Usage};
use agent_mock::{MockAgent, Step};
use orchestrator::{Orchestrator, Selection};
use redact::Redacted;
use serde::Serialize;
use session_store::{NewMilestone, NewTask, SessionFilter, Store, TaskFilter};

use crate::agents;
use crate::commands::init;
use crate::commands::run::{RunJson, Watch, execute};
use crate::commands::session::session_table;
use crate::commands::task::{summary_line, task_table};
use crate::error::{CliError, Kind, Outcome, Result};
use crate::flags::{AgentKind, QuickstartArgs};
use crate::output::Ui;
use crate::settings::{Env, Settings, Workspace};
use crate::views::{self, MilestoneNames, SessionJson, TaskJson};

/// `quickstart --json`: where the workspace is, the run, and the ledger it left.
#[derive(Debug, Serialize)]
struct Quickstart<'a> {
    workspace: Cow<'a, str>,
    run: RunJson<'a>,
    tasks: Vec<TaskJson<'a>>,
    sessions: Vec<SessionJson<'a>>,
}

/// One example task and what the mock does for it.
struct Example {
    title: &'static str,
    prompt: &'static str,
    verify: &'static str,
    /// Files the mock writes, one list per attempt; the last repeats.
    attempts: &'static [&'static [(&'static str, &'static str)]],
    answer: &'static str,
}

const EXAMPLES: [Example; 3] = [
    Example {
        title: "Write a greeting",
        prompt: "Create hello.txt containing exactly the line `Hello from Baton`.",
        verify: "grep -qx 'Hello from Baton' hello.txt",
        attempts: &[&[("hello.txt", "Hello from Baton\n")]],
        answer: "Created hello.txt with the greeting.",
    },
    Example {
        title: "Add a shell helper",
        prompt: "Write add.sh: `sh add.sh A B` prints the sum of the numbers A and B.",
        verify: "sh test-add.sh",
        attempts: &[
            &[("add.sh", "echo $(($1 - $2))\n")],
            &[("add.sh", "echo $(($1 + $2))\n")],
        ],
        answer: "Wrote add.sh.",
    },
    Example {
        title: "Document the helper",
        prompt: "Write NOTES.md explaining what hello.txt and add.sh are for.",
        verify: "grep -q add.sh NOTES.md",
        attempts: &[&[(
            "NOTES.md",
            "# Notes\n\n- hello.txt greets.\n- add.sh adds two numbers: `sh add.sh 2 3` prints 5.\n",
        )]],
        answer: "Wrote NOTES.md.",
    },
];

pub fn run(ui: &Ui, args: &QuickstartArgs, json: bool, env: &Env) -> Result<Outcome> {
    let root = workspace_dir(args.dir.as_deref(), env)?;
    // No configuration file: the environment and defaults, which also say how the ledger is
    // opened.
    let settings = Settings::resolve(&Default::default(), None, env);
    let options = settings.store_options(env.redactor.clone(), env);
    let created = init::create(&root, None, AgentKind::Mock, &options)?;
    let mut store = Store::open_with(&created.ledger, &options)?;
    write_project(&root)?;
    let ids = add_examples(&mut store, &created.workspace)?;
    if !json {
        ui.print(&format!(
            "Baton quickstart: a throw-away workspace in {}\n\
             Three example tasks in the milestone `demo`, run by a scripted mock agent (no network, no API key).\n\
             Task 2's first attempt has a bug that its verification catches; the agent fixes it after the feedback,\n\
             in the same session. Task 3 waits for tasks 1 and 2.\n\n",
            root.display()
        ));
    }
    let budgets = ids.iter().map(|id| (*id, 3)).collect();
    let runtime = super::runtime()?;
    let finished = runtime.block_on(async {
        let watch = Watch::start(ui, json, budgets)?;
        let orchestrator =
            Orchestrator::new(store, Arc::new(demo_agent()), agents::run_config(&settings))?;
        execute(orchestrator, &Selection::all(), watch).await
    })?;
    let store = Store::open_with(&created.ledger, &options)?;
    let tasks = store.tasks(&TaskFilter::default())?;
    let sessions = store.sessions(&SessionFilter::default())?;
    let names = MilestoneNames::load(&store)?;
    let by_task = views::sessions_by_task(&store, &tasks)?;
    if json {
        ui.json(&Quickstart {
            workspace: root.to_string_lossy(),
            run: finished.json(),
            tasks: TaskJson::all(&tasks, &names, &by_task),
            sessions: SessionJson::all(&sessions, &names),
        })?;
    } else {
        let mut out = finished.summary();
        out.push_str("\nThe ledger: tasks (`baton task list`)\n");
        out.push_str(&task_table(&tasks, &names, &by_task));
        out.push_str(&summary_line(&tasks));
        out.push_str("\nThe ledger: sessions, one per task, each resumed by its later iterations (`baton session list`)\n");
        out.push_str(&session_table(&sessions, &names));
        out.push_str(&format!(
            "\nLook around:\n  cd {}\n  baton task show 2        # the failed check, the feedback, the fix\n  baton session list --json\n  baton usage --by milestone\n\n\
             For real work: `baton init` in your project, `baton task add`, `baton run` (docs/user-guide.md).\n",
            root.display()
        ));
        ui.print(&out);
    }
    Ok(finished.outcome())
}

/// The directory to create the workspace in: `dir` when given (it must not exist, or be
/// empty), else a new one under the temp directory, which is kept for the person to explore.
fn workspace_dir(dir: Option<&Path>, env: &Env) -> Result<PathBuf> {
    match dir {
        Some(dir) => {
            let dir = env.cwd.join(dir);
            match std::fs::read_dir(&dir) {
                Ok(mut entries) => {
                    if entries.next().is_some() {
                        return Err(CliError::usage(format!(
                            "`{}` is not empty: quickstart wants a directory of its own",
                            dir.display()
                        ))
                        .with_hint("name a new directory with --dir, or leave --dir out to use a temporary one"));
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&dir).map_err(|error| {
                        CliError::new(
                            Kind::Ledger,
                            format!("could not create `{}`", dir.display()),
                        )
                        .with_source(error)
                    })?;
                }
                Err(error) => {
                    return Err(CliError::new(
                        Kind::Ledger,
                        format!("could not read `{}`", dir.display()),
                    )
                    .with_source(error));
                }
            }
            Ok(std::fs::canonicalize(&dir).unwrap_or(dir))
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("baton-quickstart-")
                .tempdir()
                .map_err(|error| {
                    CliError::new(
                        Kind::Ledger,
                        "could not create a temporary directory for the quickstart",
                    )
                    .with_hint("set TMPDIR to a writable directory, or pass --dir DIR")
                    .with_source(error)
                })?;
            Ok(dir.keep())
        }
    }
}

/// The example project's own test, as a real project has `cargo test`.
const TEST_ADD: &str = "# The test of add.sh: the verification command of task 2.\n\
out=$(sh add.sh 2 3 2>&1)\n\
[ \"$out\" = 5 ] || { echo \"sh add.sh 2 3 printed '$out', expected 5\"; exit 1; }\n";

fn write_project(root: &Path) -> Result<()> {
    let path = root.join("test-add.sh");
    std::fs::write(&path, TEST_ADD).map_err(|error| {
        CliError::new(
            Kind::Ledger,
            format!("could not write `{}`", path.display()),
        )
        .with_source(error)
    })
}

/// Adds the milestone and its three tasks; returns their ids in order.
fn add_examples(store: &mut Store, workspace: &Workspace) -> Result<Vec<session_store::TaskId>> {
    let milestone = store.create_milestone(&NewMilestone {
        name: Redacted::trusted("demo"),
        description: Redacted::trusted("What baton does, in three small tasks"),
        policy: None,
    })?;
    let mut ids = Vec::new();
    for (index, example) in EXAMPLES.iter().enumerate() {
        let mut task = NewTask::new(
            Redacted::trusted(example.title),
            Redacted::trusted(example.prompt),
            &workspace.root,
        );
        task.milestone = Some(milestone);
        task.max_iterations = 3;
        task.verify_commands = vec![Redacted::trusted(example.verify)];
        if index == 2 {
            task.after = ids.clone();
        }
        ids.push(store.add_task(&task)?);
    }
    Ok(ids)
}

/// The mock agent that plays the examples: it recognises a task by its prompt on the first
/// call of a session and by the session afterwards, and counts each task's attempts.
fn demo_agent() -> MockAgent {
    #[derive(Default)]
    struct Memory {
        example_of: HashMap<SessionId, usize>,
        attempts: HashMap<usize, usize>,
    }
    let memory = Mutex::new(Memory::default());
    MockAgent::scripted(move |call, _| {
        let mut memory = memory.lock().unwrap_or_else(PoisonError::into_inner);
        let session = call.plan.session_id();
        let example = EXAMPLES
            .iter()
            .position(|example| call.prompt.contains(example.prompt))
            .or_else(|| memory.example_of.get(&session).copied());
        let Some(example) = example else {
            return Step::succeed("Nothing to do.")
                .usage(demo_usage(0))
                .cost_usd(0.002);
        };
        memory.example_of.insert(session, example);
        let attempt = memory.attempts.entry(example).or_insert(0);
        let files = EXAMPLES[example]
            .attempts
            .get(*attempt)
            .or(EXAMPLES[example].attempts.last())
            .copied()
            .unwrap_or_default();
        *attempt += 1;
        let mut step = Step::succeed(EXAMPLES[example].answer)
            .usage(demo_usage(*attempt))
            .cost_usd(0.0113 + 0.0021 * *attempt as f64)
            .turns(2)
            .model("mock");
        for (path, contents) in files {
            step = step.write_file(*path, *contents);
        }
        step
    })
}

/// Figures that look like a small real call: a later attempt reads more from the cache.
fn demo_usage(attempt: usize) -> Usage {
    let attempt = attempt as u64;
    Usage {
        input_tokens: 1_850 + 120 * attempt,
        output_tokens: 420 + 35 * attempt,
        cache_read_tokens: 9_600 * attempt,
        cache_creation_tokens: 2_400,
    }
}
