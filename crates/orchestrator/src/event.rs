//! What a run reports as it goes, for a person watching it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use agent::{AgentEvent, PlanKind, SessionId, Usage};
use redact::Redactor;
use session_store::{CallOutcome, SessionPolicy, SessionStatus, SweptSession, TaskId, TaskStatus};

/// Something that happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// Recovery abandoned a stale session: at the start of the run, or while a watching run
    /// looked for work.
    Recovered {
        swept: SweptSession,
        stopped_agent: bool,
    },
    /// A task was claimed and starts.
    TaskStarted { task: TaskId, title: String },
    /// A session was opened (or reopened) for a task.
    SessionOpened {
        task: TaskId,
        session: SessionId,
        policy: SessionPolicy,
        reopened: bool,
    },
    /// A session ended.
    SessionClosed {
        task: TaskId,
        session: SessionId,
        status: SessionStatus,
        reason: String,
    },
    /// An agent call starts.
    CallStarted {
        task: TaskId,
        session: SessionId,
        iteration: u32,
        plan: PlanKind,
    },
    /// The agent reported progress during a call.
    Agent {
        task: TaskId,
        session: SessionId,
        event: AgentEvent,
    },
    /// An agent call ended and was recorded.
    CallFinished {
        task: TaskId,
        session: SessionId,
        iteration: u32,
        outcome: CallOutcome,
        usage: Usage,
        cost_usd: f64,
        turns: u32,
        duration: Duration,
    },
    /// A verification command starts.
    CheckStarted {
        task: TaskId,
        iteration: u32,
        command: String,
    },
    /// A verification command ended.
    CheckFinished {
        task: TaskId,
        iteration: u32,
        command: String,
        passed: bool,
        duration: Duration,
    },
    /// The loop decided what to do next, in words.
    Decision {
        task: TaskId,
        iteration: u32,
        decision: String,
    },
    /// A task reached a state this run leaves it in.
    TaskFinished {
        task: TaskId,
        status: TaskStatus,
        reason: Option<String>,
    },
    /// A watching run ([`RunConfig::watch`](crate::RunConfig::watch)) has no task running
    /// and none of its selection ready: it waits for work. Reported once each time it
    /// becomes idle.
    Waiting,
}

/// Where a run's [`RunEvent`]s go. Cheap to clone; by default events are dropped.
///
/// An [`Orchestrator`](crate::Orchestrator) redacts every event before it is delivered, with
/// its store's [`Redactor`].
#[derive(Clone, Default)]
pub struct RunEvents {
    deliver: Option<Arc<dyn Fn(RunEvent) + Send + Sync>>,
}

impl RunEvents {
    pub fn none() -> RunEvents {
        RunEvents::default()
    }

    /// Events go to `deliver`, called on the run's tasks: it should be quick.
    pub fn new(deliver: impl Fn(RunEvent) + Send + Sync + 'static) -> RunEvents {
        RunEvents {
            deliver: Some(Arc::new(deliver)),
        }
    }

    pub fn emit(&self, event: RunEvent) {
        if let Some(deliver) = &self.deliver {
            deliver(event);
        }
    }

    /// These events, with the secrets `redactor` knows taken out of every text they carry.
    pub(crate) fn redacting(self, redactor: Redactor) -> RunEvents {
        match self.deliver {
            None => self,
            Some(deliver) => RunEvents::new(move |event: RunEvent| {
                deliver(event.redacted(&redactor));
            }),
        }
    }
}

impl RunEvent {
    /// The event with every text in it (titles, commands, reasons, decisions, what the agent
    /// said and did) passed through `redactor`.
    pub fn redacted(mut self, redactor: &Redactor) -> RunEvent {
        self.for_each_text(|text| {
            *text = redactor.redact_owned(std::mem::take(text)).into_string();
        });
        self
    }

    /// Calls `visit` on every text the event carries. Ids, numbers, states and paths are not
    /// texts here.
    fn for_each_text(&mut self, mut visit: impl FnMut(&mut String)) {
        match self {
            RunEvent::TaskStarted { title: text, .. }
            | RunEvent::SessionClosed { reason: text, .. }
            | RunEvent::CheckStarted { command: text, .. }
            | RunEvent::CheckFinished { command: text, .. }
            | RunEvent::Decision { decision: text, .. }
            | RunEvent::TaskFinished {
                reason: Some(text), ..
            } => visit(text),
            RunEvent::Agent { event, .. } => match event {
                AgentEvent::Text { text }
                | AgentEvent::Init {
                    model: Some(text), ..
                } => visit(text),
                AgentEvent::ToolUse { name, summary } => {
                    visit(name);
                    visit(summary);
                }
                AgentEvent::Init { model: None, .. }
                | AgentEvent::Spawned { .. }
                | AgentEvent::ToolResult { .. }
                | AgentEvent::Usage { .. } => {}
            },
            RunEvent::TaskFinished { reason: None, .. }
            | RunEvent::Recovered { .. }
            | RunEvent::SessionOpened { .. }
            | RunEvent::CallStarted { .. }
            | RunEvent::CallFinished { .. }
            | RunEvent::Waiting => {}
        }
    }
}

impl fmt::Debug for RunEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunEvents")
            .field("connected", &self.deliver.is_some())
            .finish()
    }
}
