//! Handing a [`MockAgent`]'s transcripts over, as Claude Code's files are carried between
//! hosts: a session's turns become JSON lines (`{"prompt": …, "answer": …}`) and back.
//!
//! Only an agent that keeps transcripts hands them over; one made
//! [`without_transcripts`](MockAgent::without_transcripts) answers
//! [`TranscriptError::Unsupported`], as an agent without the capability does.

use agent::{AgentCall, Restored, Transcript, TranscriptError};
use serde_json::{Value, json};

use super::{MockAgent, TranscriptTurn};

impl MockAgent {
    /// The transcript of `call`'s session as text; `None` when it has none.
    pub(super) fn hand_over(
        &self,
        call: &AgentCall,
    ) -> Result<Option<Transcript>, TranscriptError> {
        let state = self.state();
        let transcripts = state
            .transcripts
            .as_ref()
            .ok_or(TranscriptError::Unsupported)?;
        Ok(transcripts
            .get(&call.plan.session_id())
            .map(|turns| Transcript::verbatim(to_lines(turns))))
    }

    /// Whether `call`'s session has a transcript here.
    pub(super) fn holds(&self, call: &AgentCall) -> Result<bool, TranscriptError> {
        let state = self.state();
        let transcripts = state
            .transcripts
            .as_ref()
            .ok_or(TranscriptError::Unsupported)?;
        Ok(transcripts.contains_key(&call.plan.session_id()))
    }

    /// Takes `transcript` as the transcript of `call`'s session, unless it has one that
    /// `transcript` does not extend.
    pub(super) fn take_over(
        &self,
        call: &AgentCall,
        transcript: &Transcript,
    ) -> Result<Restored, TranscriptError> {
        let session_id = call.plan.session_id();
        let path = std::path::PathBuf::from(format!("mock://{session_id}"));
        let mut state = self.state();
        let transcripts = state
            .transcripts
            .as_mut()
            .ok_or(TranscriptError::Unsupported)?;
        if let Some(here) = transcripts.get(&session_id)
            && !transcript.extends(&to_lines(here))
        {
            return Ok(Restored::AlreadyThere { path });
        }
        transcripts.insert(session_id, from_lines(transcript.as_str()));
        Ok(Restored::Written { path })
    }
}

fn to_lines(turns: &[TranscriptTurn]) -> String {
    turns
        .iter()
        .map(|turn| {
            format!(
                "{}\n",
                json!({"prompt": turn.prompt, "answer": turn.answer})
            )
        })
        .collect()
}

/// The turns in `text`; a line that is not a turn is skipped, as the CLI skips a line cut
/// short.
fn from_lines(text: &str) -> Vec<TranscriptTurn> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|value| {
            Some(TranscriptTurn {
                prompt: value["prompt"].as_str()?.to_owned(),
                answer: value["answer"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use agent::{Agent, CancellationToken, EventSink, SessionId, SessionPlan};

    use super::*;

    #[tokio::test]
    async fn a_session_moves_to_another_agent_and_resumes_there() {
        let dir = tempfile::tempdir().unwrap();
        let id = SessionId::new_v4();
        let here = MockAgent::new();
        let start = AgentCall::new("first \"prompt\"", SessionPlan::Start(id), dir.path());
        here.call(start.clone(), EventSink::none(), CancellationToken::new())
            .await
            .unwrap();
        let transcript = here.read_transcript(&start).await.unwrap().unwrap();

        let there = MockAgent::new();
        let resume = AgentCall::new("second", SessionPlan::Resume(id), dir.path());
        assert!(!there.has_transcript(&resume).await.unwrap());
        assert!(matches!(
            there
                .restore_transcript(&resume, &transcript)
                .await
                .unwrap(),
            Restored::Written { .. }
        ));
        assert!(matches!(
            there
                .restore_transcript(&resume, &transcript)
                .await
                .unwrap(),
            Restored::AlreadyThere { .. }
        ));
        there
            .call(resume, EventSink::none(), CancellationToken::new())
            .await
            .unwrap();
        let turns = there.transcript(id).unwrap();
        assert_eq!(turns[0], here.transcript(id).unwrap()[0]);
        assert_eq!(turns[1].prompt, "second");

        let without = MockAgent::new().without_transcripts();
        assert!(matches!(
            without.read_transcript(&start).await,
            Err(TranscriptError::Unsupported)
        ));
    }
}
