//! `baton session`: list sessions and show one with every agent call made in it.

use agent::SessionId;
use serde::Serialize;
use session_store::{RecordedCall, Session, SessionFilter, SessionStatus, TaskId, Timestamp};

use crate::error::{Outcome, Result};
use crate::flags::SessionCommand;
use crate::human::{self, Align, Fields, Table};
use crate::output::Ui;
use crate::settings::Context;
use crate::views::{self, CallJson, MilestoneNames, SessionJson};

/// `session show --json`: the session and every call made in it.
#[derive(Debug, Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    session: SessionJson<'a>,
    calls: Vec<CallJson<'a>>,
}

pub fn run(command: SessionCommand, context: &Context, ui: &Ui) -> Result<Outcome> {
    match command {
        SessionCommand::List {
            task,
            status,
            milestone,
        } => list(task.map(TaskId), status, milestone.as_deref(), context, ui),
        SessionCommand::Show { id } => show(id, context, ui),
    }
}

fn list(
    task: Option<TaskId>,
    status: Option<SessionStatus>,
    milestone: Option<&str>,
    context: &Context,
    ui: &Ui,
) -> Result<Outcome> {
    let store = context.open_store()?;
    let milestone_id = match milestone {
        Some(name) => Some(super::milestone_named(&store, name)?.id),
        None => None,
    };
    let sessions = store.sessions(&SessionFilter {
        task,
        status,
        milestone: milestone_id,
    })?;
    let names = MilestoneNames::load(&store)?;
    if context.json {
        ui.json(&SessionJson::all(&sessions, &names))?;
    } else if sessions.is_empty() {
        ui.print(
            if task.is_some() || status.is_some() || milestone.is_some() {
                "No sessions match.\n"
            } else {
                "No sessions yet: `baton run` opens one for each task it runs.\n"
            },
        );
    } else {
        ui.print(&session_table(&sessions, &names));
    }
    Ok(Outcome::Success)
}

/// The table `session list` and `task show` print.
pub fn session_table(sessions: &[Session], names: &MilestoneNames) -> String {
    let mut table = Table::new(&[
        ("SESSION", Align::Left),
        ("TASK", Align::Right),
        ("MILESTONE", Align::Left),
        ("STATUS", Align::Left),
        ("POLICY", Align::Left),
        ("CALLS", Align::Right),
        ("TURNS", Align::Right),
        ("TOKENS IN/OUT", Align::Right),
        ("COST", Align::Right),
        ("STARTED", Align::Left),
        ("TIME", Align::Right),
    ]);
    for session in sessions {
        table.row(vec![
            session.id.to_string(),
            session.task.to_string(),
            names.name(session.milestone).unwrap_or("-").to_owned(),
            session.status.to_string(),
            session.policy.to_string(),
            session.totals.agent_calls.to_string(),
            session.totals.turns.to_string(),
            views::tokens_cell(&session.totals),
            human::dollars(session.totals.cost),
            human::time(session.started_at),
            human::duration(human::between(
                session.started_at,
                session.ended_at.unwrap_or_else(Timestamp::now),
            )),
        ]);
    }
    table.render()
}

/// The table of agent calls `session show` and `task show` print.
pub fn call_table(calls: &[RecordedCall]) -> String {
    let mut table = Table::new(&[
        ("CALL", Align::Right),
        ("TASK", Align::Right),
        ("ITER", Align::Right),
        ("SESSION", Align::Left),
        ("PLAN", Align::Left),
        ("OUTCOME", Align::Left),
        ("TURNS", Align::Right),
        ("TOKENS IN/OUT", Align::Right),
        ("COST", Align::Right),
        ("TIME", Align::Right),
    ]);
    for call in calls {
        let usage = &call.usage;
        table.row(vec![
            call.id.to_string(),
            call.task.to_string(),
            call.iteration.to_string(),
            short_id(call.session),
            call.plan.to_string(),
            call.outcome.to_string(),
            call.turns.to_string(),
            format!(
                "{} / {}",
                human::tokens(usage.prompt_tokens()),
                human::tokens(usage.output_tokens)
            ),
            human::dollars(call.cost),
            human::duration(call.duration),
        ]);
    }
    table.render()
}

/// The first block of a session id: enough to tell sessions apart in a table of one task's
/// calls; `session list` shows whole ids.
pub fn short_id(id: SessionId) -> String {
    id.to_string().chars().take(8).collect()
}

fn show(id: SessionId, context: &Context, ui: &Ui) -> Result<Outcome> {
    let store = context.open_store()?;
    let session = store.session(id)?;
    let calls = store.calls_for_session(id)?;
    let names = MilestoneNames::load(&store)?;
    if context.json {
        ui.json(&Shown {
            session: SessionJson::new(&session, names.name(session.milestone)),
            calls: CallJson::all(&calls),
        })?;
        return Ok(Outcome::Success);
    }
    let task = store.task(session.task)?;
    let mut out = format!("Session {}\n", session.id);
    let mut fields = Fields::new();
    fields
        .field("task", format!("{}: {}", task.id, task.title))
        .field("milestone", names.name(session.milestone).unwrap_or("-"))
        .field("status", session.status.as_str())
        .field("policy", session.policy.as_str())
        .field("started", human::time(session.started_at))
        .field("ended", views::time_cell(session.ended_at));
    if let Some(reason) = &session.end_reason {
        fields.field("end reason", reason.clone());
    }
    if let Some(lease) = &session.lease {
        fields.field(
            "lease",
            format!("{}, until {}", lease.owner, human::time(lease.expires_at)),
        );
    }
    fields.field("usage", views::usage_line(&session.totals));
    out.push_str(&fields.render());
    if calls.is_empty() {
        out.push_str("\nNo agent calls were recorded in it.\n");
    } else {
        out.push_str("\nAgent calls:\n");
        for line in call_table(&calls).lines() {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str("\nThe conversation, call by call:\n");
        for call in &calls {
            out.push_str(&format!(
                "  call {} (task {}, iteration {}, {}): {}\n",
                call.id, call.task, call.iteration, call.plan, call.outcome
            ));
            out.push_str(&quote("prompt", &call.prompt, 8));
            if let Some(text) = &call.result_text {
                out.push_str(&quote("answer", text, 6));
            }
            if let Some(error) = &call.error_message {
                out.push_str(&quote("error", error, 4));
            }
        }
    }
    ui.print(&out);
    Ok(Outcome::Success)
}

/// The first `max` lines of `text`, quoted under a label, with how many were left out.
fn quote(label: &str, text: &str, max: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    let mut out = format!("    {label}:\n");
    for line in lines.iter().take(max) {
        out.push_str(&format!("      | {line}\n"));
    }
    if lines.len() > max {
        out.push_str(&format!("      | … {} more lines\n", lines.len() - max));
    }
    out
}
