//! Progress an agent reports while a call runs.

use std::fmt;
use std::sync::Arc;

use crate::reply::Usage;
use crate::session::SessionId;

/// Something that happened during an agent call, reported as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The agent process was started with this pid (it leads its own process group).
    Spawned { pid: u32 },
    /// The agent announced the session and model it runs with.
    Init {
        session_id: SessionId,
        model: Option<String>,
    },
    /// The agent said something: the start of it, for progress (adapters may cut it; the
    /// Claude adapter keeps at most 1,000 characters). The whole answer is the reply's.
    Text { text: String },
    /// The agent used a tool. `summary` is a short, single-line description of its input.
    ToolUse { name: String, summary: String },
    /// A tool returned.
    ToolResult { is_error: bool },
    /// The usage of one model response, as the agent streams it.
    Usage { usage: Usage },
}

/// Where a call's [`AgentEvent`]s go. Cheap to clone; a sink that drops events is the default.
#[derive(Clone, Default)]
pub struct EventSink {
    deliver: Option<Arc<dyn Fn(AgentEvent) + Send + Sync>>,
}

impl EventSink {
    /// A sink that drops every event.
    pub fn none() -> EventSink {
        EventSink { deliver: None }
    }

    /// A sink that hands every event to `deliver`. It is called on the agent's task, so it
    /// should be quick (send on a channel, update a counter).
    pub fn new(deliver: impl Fn(AgentEvent) + Send + Sync + 'static) -> EventSink {
        EventSink {
            deliver: Some(Arc::new(deliver)),
        }
    }

    pub fn emit(&self, event: AgentEvent) {
        if let Some(deliver) = &self.deliver {
            deliver(event);
        }
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("connected", &self.deliver.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn sink_delivers_in_order_and_none_drops() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let seen = Arc::clone(&seen);
            EventSink::new(move |event| seen.lock().unwrap().push(event))
        };
        sink.emit(AgentEvent::Spawned { pid: 1 });
        sink.clone()
            .emit(AgentEvent::ToolResult { is_error: false });
        EventSink::none().emit(AgentEvent::Spawned { pid: 2 });
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                AgentEvent::Spawned { pid: 1 },
                AgentEvent::ToolResult { is_error: false }
            ]
        );
    }
}
