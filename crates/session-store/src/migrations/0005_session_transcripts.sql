-- Schema version 5: copies of the agents' session transcripts.
--
-- Self-contained: another migration is written on another branch at the same time and the
-- two may be renumbered when merged; nothing here depends on it.
--
-- One row per session: the latest copy of the transcript the agent keeps of it (Claude
-- Code's `<session id>.jsonl`), replaced after every call, so that a runner on another host
-- can put it back before it resumes the session. The content is kept VERBATIM, not redacted:
-- a resume needs it byte for byte, so it may hold anything the agent saw.
CREATE TABLE session_transcripts (
    session_id TEXT PRIMARY KEY NOT NULL REFERENCES sessions (id),
    content TEXT NOT NULL,
    -- The content's size in bytes.
    size INTEGER NOT NULL CHECK (size >= 0),
    -- When this copy was taken (unix milliseconds).
    copied_at INTEGER NOT NULL
) STRICT;
