//! `baton recover`: the sweep `baton run` does first, on its own.

use orchestrator::{Db, Recovered};
use serde_json::{Value, json};
use session_store::SweepReason;

use crate::error::Outcome;
use crate::output;
use crate::settings::Context;

pub fn run(context: &Context) -> anyhow::Result<Outcome> {
    let store = context.open_store()?;
    let runtime = super::runtime()?;
    let recovered = runtime.block_on(orchestrator::recover(&Db::new(store)))?;
    if context.json {
        output::print_json(
            &json!({ "recovered": recovered.iter().map(item_json).collect::<Vec<Value>>() }),
        );
        return Ok(Outcome::Success);
    }
    if recovered.is_empty() {
        output::print(
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
    output::print(&out);
    Ok(Outcome::Success)
}

fn describe(item: &Recovered) -> String {
    let task = item.task;
    let mut text = match &item.session {
        Some(session) => {
            let why = match session.reason {
                SweepReason::OwnerGone => "its runner is gone",
                SweepReason::LeaseExpired => "its lease expired",
                SweepReason::Unowned => "nobody held it",
            };
            format!("task {task}: abandoned session {} ({why})", session.id)
        }
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

fn item_json(item: &Recovered) -> Value {
    json!({
        "task_id": item.task.get(),
        "session_id": item.session.as_ref().map(|session| session.id.to_string()),
        "reason": item.session.as_ref().map(|session| session.reason.as_str()),
        "stopped_agent": item.stopped_agent,
        "requeued": item.requeued,
    })
}
