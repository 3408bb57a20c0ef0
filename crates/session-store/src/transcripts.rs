//! Copies of the agents' session transcripts, so that a session continues on another host.
//!
//! **The one exception to "no secret is written".** Everything else the store takes as free
//! text comes as [`redact::Redacted`]. A transcript comes as [`agent::Transcript`] and is kept
//! verbatim: a resume needs the file byte for byte, and a redacted copy would be a different
//! conversation (or no longer parse). It may therefore hold whatever the agent saw — file
//! contents, command output, secrets among them — and it is never printed by Baton; only
//! [`Store::session_transcript`] reads it back, to put it where the agent resumes from.

use agent::{SessionId, Transcript};

use crate::db::{OptionalExtension, params};
use crate::error::{Failure, StoreError};
use crate::lookup::ensure_session;
use crate::store::{Batch, Store, Write};
use crate::units::Timestamp;

/// A session's transcript as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTranscript {
    pub session: SessionId,
    /// The content, verbatim (not redacted).
    pub transcript: Transcript,
    /// The content's size in bytes.
    pub size: u64,
    /// When the copy was taken.
    pub copied_at: Timestamp,
}

const SAVE_TRANSCRIPT: &str = "save a session's transcript";

impl Store {
    /// Keeps `transcript` as the copy of `session`'s transcript, replacing the one before.
    ///
    /// Verbatim, **not redacted**: the one free text the store takes without
    /// [`redact::Redacted`] (see the module's documentation). The session must exist.
    pub fn save_session_transcript(
        &mut self,
        session: SessionId,
        transcript: &Transcript,
    ) -> Result<(), StoreError> {
        self.write(SAVE_TRANSCRIPT, |transaction| {
            save(transaction, session, transcript)
        })
    }

    /// The copy of `session`'s transcript, if one was saved.
    pub fn session_transcript(
        &self,
        session: SessionId,
    ) -> Result<Option<StoredTranscript>, StoreError> {
        self.read_statement("read a session's transcript", |connection| {
            Ok(connection
                .prepare_cached(
                    "SELECT content, size, copied_at FROM session_transcripts \
                     WHERE session_id = ?1",
                )?
                .query_row([session.to_string()], |row| {
                    Ok(StoredTranscript {
                        session,
                        transcript: Transcript::verbatim(row.get::<String>(0)?),
                        size: row.get(1)?,
                        copied_at: row.get(2)?,
                    })
                })
                .optional()?)
        })
    }
}

impl Batch<'_> {
    /// [`Store::save_session_transcript`], as part of the batch: verbatim, not redacted.
    pub fn save_session_transcript(
        &mut self,
        session: SessionId,
        transcript: &Transcript,
    ) -> Result<(), StoreError> {
        self.apply(SAVE_TRANSCRIPT, |transaction| {
            save(transaction, session, transcript)
        })
    }
}

fn save(
    transaction: &Write<'_>,
    session: SessionId,
    transcript: &Transcript,
) -> Result<(), Failure> {
    ensure_session(transaction, session)?;
    if transcript.as_str().contains('\0') {
        // PostgreSQL's text cannot hold it; refused here, the batch goes on without a failed
        // statement (JSON lines never hold one unescaped).
        return Err(StoreError::Invalid {
            field: "transcript",
            reason: String::from("it holds a NUL character, which the ledger cannot store"),
        }
        .into());
    }
    transaction
        .prepare_cached(
            "INSERT INTO session_transcripts (session_id, content, size, copied_at) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (session_id) DO UPDATE SET content = excluded.content, \
             size = excluded.size, copied_at = excluded.copied_at",
        )?
        .execute(params![
            session.to_string(),
            transcript.as_str(),
            transcript.len(),
            Timestamp::now()
        ])?;
    Ok(())
}
