//! Session identity: the id Baton mints and the plan that says how a call uses it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of one agent session, minted by Baton (UUID v4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(Uuid);

impl SessionId {
    /// Mints a new random session id.
    pub fn new_v4() -> SessionId {
        SessionId(Uuid::new_v4())
    }

    /// Wraps an existing UUID.
    pub const fn from_uuid(uuid: Uuid) -> SessionId {
        SessionId(uuid)
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always the lowercase hyphenated form: it is what Claude Code prints and what the
        // ledger stores, so ids compare as text too.
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0.hyphenated())
    }
}

/// A string that is not a session id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a session id: expected a UUID such as 0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0f"
)]
pub struct ParseSessionIdError {
    pub input: String,
}

impl FromStr for SessionId {
    type Err = ParseSessionIdError;

    fn from_str(s: &str) -> Result<SessionId, ParseSessionIdError> {
        Uuid::try_parse(s.trim())
            .map(SessionId)
            .map_err(|_| ParseSessionIdError {
                input: s.to_owned(),
            })
    }
}

/// How a call uses its session: start it (first call) or resume it (every later call).
///
/// There is deliberately no third option: a session is started exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionPlan {
    Start(SessionId),
    Resume(SessionId),
}

impl SessionPlan {
    pub fn session_id(&self) -> SessionId {
        match *self {
            SessionPlan::Start(id) | SessionPlan::Resume(id) => id,
        }
    }

    pub fn kind(&self) -> PlanKind {
        match self {
            SessionPlan::Start(_) => PlanKind::Start,
            SessionPlan::Resume(_) => PlanKind::Resume,
        }
    }
}

impl fmt::Display for SessionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.session_id())
    }
}

/// [`SessionPlan`] without its id, as recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    Start,
    Resume,
}

impl PlanKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            PlanKind::Start => "start",
            PlanKind::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<PlanKind> {
        match s {
            "start" => Some(PlanKind::Start),
            "resume" => Some(PlanKind::Resume),
            _ => None,
        }
    }
}

impl fmt::Display for PlanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_through_text() {
        let id = SessionId::new_v4();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<SessionId>(), Ok(id));
    }

    #[test]
    fn minted_ids_differ() {
        assert_ne!(SessionId::new_v4(), SessionId::new_v4());
    }

    #[test]
    fn malformed_session_id_names_the_input() {
        let err = "not-a-uuid".parse::<SessionId>().unwrap_err();
        assert_eq!(err.input, "not-a-uuid");
        assert!(err.to_string().contains("`not-a-uuid` is not a session id"));
    }

    #[test]
    fn plan_exposes_its_session() {
        let id = SessionId::new_v4();
        assert_eq!(SessionPlan::Start(id).session_id(), id);
        assert_eq!(SessionPlan::Resume(id).kind(), PlanKind::Resume);
        assert_eq!(PlanKind::parse("start"), Some(PlanKind::Start));
        assert_eq!(PlanKind::parse("fork"), None);
    }
}
