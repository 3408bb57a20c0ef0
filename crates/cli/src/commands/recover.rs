//! `baton recover`: the sweep `baton run` does first, on its own.

use orchestrator::{Db, Recovered};
use serde::Serialize;

use crate::error::{Outcome, Result};
use crate::output::Ui;
use crate::settings::Context;
use crate::views;

/// `recover --json`.
#[derive(Debug, Serialize)]
struct RecoveredAll {
    recovered: Vec<RecoveredJson>,
}

/// One session or task recovery left behind by a runner that is gone.
#[derive(Debug, Serialize)]
struct RecoveredJson {
    task_id: i64,
    session_id: Option<String>,
    reason: Option<&'static str>,
    stopped_agent: bool,
    requeued: bool,
}

pub fn run(context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    let runtime = super::runtime()?;
    let lease_ttl = crate::agents::run_config(&context.settings).lease_ttl;
    let recovered = runtime.block_on(orchestrator::recover(&Db::new(store), lease_ttl))?;
    if context.json {
        ui.json(&RecoveredAll {
            recovered: recovered.iter().map(RecoveredJson::new).collect(),
        })?;
        return Ok(Outcome::Success);
    }
    if recovered.is_empty() {
        ui.print(
            "Nothing to recover: no session or task was left behind by a runner that is gone.\n",
        );
        return Ok(Outcome::Success);
    }
    let mut out = String::from("Recovered:\n");
    for item in &recovered {
        out.push_str(&format!("  {}\n", describe(item)));
    }
    out.push_str(
        "`baton run` continues these tasks, resuming their sessions where the transcripts allow.\n",
    );
    ui.print(&out);
    Ok(Outcome::Success)
}

fn describe(item: &Recovered) -> String {
    let task = item.task;
    let mut text = match &item.session {
        Some(session) => format!(
            "task {task}: abandoned session {} ({})",
            session.id,
            views::why_swept(session.reason)
        ),
        None => format!("task {task}: its runner is gone"),
    };
    if item.stopped_agent {
        text.push_str("; stopped the agent process it left running");
    }
    if item.requeued {
        text.push_str("; the task is pending again");
    }
    text
}

impl RecoveredJson {
    fn new(item: &Recovered) -> RecoveredJson {
        RecoveredJson {
            task_id: item.task.get(),
            session_id: item.session.as_ref().map(|session| session.id.to_string()),
            reason: item.session.as_ref().map(|session| session.reason.as_str()),
            stopped_agent: item.stopped_agent,
            requeued: item.requeued,
        }
    }
}
