-- Schema version 6: copies of the agents' session transcripts.
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
