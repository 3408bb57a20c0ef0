//! Sessions move with their tasks: the agent's transcript of a session is copied into the
//! ledger after each call and put back before a resume on a host whose agent lacks it.
//!
//! Only when [`RunConfig::mirror_transcripts`](crate::RunConfig::mirror_transcripts) is on,
//! and only with an agent that can hand its transcripts over. Nothing here fails a task: a
//! transcript that cannot be read or put back is said in a decision, and without a copy the
//! resume finds no conversation and the loop's usual fallback (a new session seeded from the
//! ledger) takes over.

use std::sync::Arc;

use agent::{AgentCall, Restored, SessionPlan, Transcript, TranscriptError};
use session_store::{CallOutcome, StoreError};

use super::TaskLoop;
use super::session::reached_agent;

impl TaskLoop {
    /// Before `call`: when it resumes a session the agent has no transcript of, puts the
    /// ledger's copy where the agent resumes from.
    ///
    /// The first resume of a session in this claim also brings a transcript the agent has up
    /// to date when the ledger's copy extends it: the session went on on another host since
    /// this one last wrote it (it moved away and back). Later resumes in the same claim follow
    /// this host's own calls, so its transcript is the newest.
    pub(super) async fn restore_transcript(
        &mut self,
        call: &AgentCall,
        iteration: u32,
    ) -> Result<(), StoreError> {
        let SessionPlan::Resume(session) = call.plan else {
            return Ok(());
        };
        if !self.context.config.mirror_transcripts {
            return Ok(());
        }
        let first_resume = self.transcripts_checked.insert(session);
        let agent = Arc::clone(&self.context.agent);
        let has_local = match agent.has_transcript(call).await {
            Ok(false) => false,
            Ok(true) if first_resume => true,
            Ok(true) | Err(TranscriptError::Unsupported) => return Ok(()),
            Err(error) => {
                self.emit_decision(
                    iteration,
                    format!("could not look for the transcript of session {session}: {error}"),
                );
                return Ok(());
            }
        };
        let copy = self
            .context
            .ledger(move |store| store.session_transcript(session))
            .await?;
        let Some(copy) = copy else {
            if has_local {
                return Ok(());
            }
            self.emit_decision(
                iteration,
                format!(
                    "the agent has no transcript of session {session} and the ledger no copy of it"
                ),
            );
            return Ok(());
        };
        let decision = match agent.restore_transcript(call, &copy.transcript).await {
            Ok(Restored::Written { .. }) if has_local => format!(
                "brought the transcript of session {session} up to date from the ledger ({} bytes): the session went on elsewhere since this host last wrote it",
                copy.size
            ),
            Ok(Restored::Written { .. }) => format!(
                "restored the transcript of session {session} from the ledger ({} bytes) to resume it here",
                copy.size
            ),
            Ok(Restored::AlreadyThere { .. }) => return Ok(()),
            Err(error) => {
                format!("could not restore the transcript of session {session}: {error}")
            }
        };
        self.emit_decision(iteration, decision);
        Ok(())
    }

    /// After `call` (the call kept when transcripts are mirrored), which ended with
    /// `outcome`: the transcript to copy into the ledger with the call's record, when the
    /// call reached the agent and the agent hands it over.
    pub(super) async fn transcript_after(
        &self,
        call: Option<&AgentCall>,
        outcome: CallOutcome,
        iteration: u32,
    ) -> Option<Arc<Transcript>> {
        let call = call.filter(|_| reached_agent(outcome))?;
        match self.context.agent.read_transcript(call).await {
            Ok(transcript) => transcript.map(Arc::new),
            Err(TranscriptError::Unsupported) => None,
            Err(error) => {
                self.emit_decision(
                    iteration,
                    format!(
                        "could not copy the transcript of session {} into the ledger: {error}; the task goes on",
                        call.plan.session_id()
                    ),
                );
                None
            }
        }
    }
}
