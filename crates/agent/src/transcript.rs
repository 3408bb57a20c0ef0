//! A session's transcript as the agent keeps it, and the optional capability of an agent to
//! hand it over after a call and put it back before a resume.
//!
//! Claude Code keeps a session's conversation in a file on the host that ran it; a session
//! continued on another host finds nothing to resume. An agent that can read and restore its
//! transcripts lets Baton carry them in the ledger (see [`Agent::read_transcript`] and
//! [`Agent::restore_transcript`]); one that cannot keeps the trait's defaults, which say so.
//!
//! [`Agent::read_transcript`]: crate::Agent::read_transcript
//! [`Agent::restore_transcript`]: crate::Agent::restore_transcript

use std::fmt;
use std::path::PathBuf;

/// A session's transcript exactly as the agent wrote it: never redacted, never reformatted.
///
/// A resume needs the file byte for byte, so this is the one kind of free text Baton keeps
/// without passing it through a redactor: it may hold anything the agent saw (file contents,
/// command output, secrets among them). It is UTF-8 text: Claude Code writes JSON lines.
#[derive(Clone, PartialEq, Eq)]
pub struct Transcript {
    text: String,
}

impl Transcript {
    /// The transcript whose content is `text`, as the agent wrote it.
    pub fn verbatim(text: impl Into<String>) -> Transcript {
        Transcript { text: text.into() }
    }

    /// The transcript's content.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The content's size in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether the transcript is empty.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether this transcript goes on from `older`: it begins with all of it and holds more.
    /// An agent's transcript only ever grows, so such a copy is a later state of the same
    /// conversation (the session went on elsewhere since `older` was written).
    pub fn extends(&self, older: &str) -> bool {
        self.text.len() > older.len() && self.text.starts_with(older)
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

impl fmt::Debug for Transcript {
    /// The size only: a transcript may hold secrets, and is long.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transcript({} bytes)", self.text.len())
    }
}

/// Why a transcript could not be read or put in place.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The agent keeps no transcripts Baton can carry (the trait's default).
    #[error("this agent does not hand over its transcripts")]
    Unsupported,
    /// The agent does not know where its transcripts are (no config dir, no home).
    #[error("the agent's transcript directory is unknown")]
    NoLocation,
    /// Reading or writing the transcript's file failed.
    #[error("failed to {operation} the transcript {}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8 text, so it cannot be carried verbatim as text.
    #[error("the transcript {} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
}

/// What [`Agent::restore_transcript`](crate::Agent::restore_transcript) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The transcript was written where a resume finds it.
    Written { path: PathBuf },
    /// The agent has a transcript of the session already; it was left as it is.
    AlreadyThere { path: PathBuf },
}
