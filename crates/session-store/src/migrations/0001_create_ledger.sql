-- Schema version 1: the ledger.
--
-- Conventions: timestamps are INTEGER unix milliseconds; money is INTEGER nano-dollars
-- (cost_nano_usd); token and turn counts are INTEGER; words from a closed set are TEXT with a
-- CHECK. Every table is STRICT so that a value of the wrong type is refused, not coerced.

PRAGMA application_id = 1113683054; -- 0x4261746e, "Batn": marks the file as a baton ledger.

CREATE TABLE milestones (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    session_policy TEXT CHECK (session_policy IN ('task', 'fresh', 'milestone')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    prompt TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'blocked', 'cancelled')),
    milestone_id INTEGER REFERENCES milestones (id),
    working_dir TEXT NOT NULL,
    max_iterations INTEGER NOT NULL CHECK (max_iterations > 0),
    max_turns INTEGER CHECK (max_turns > 0),
    session_policy TEXT CHECK (session_policy IN ('task', 'fresh', 'milestone')),
    failure_reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    -- Running totals, kept by the same transaction that records each agent call.
    iterations INTEGER NOT NULL DEFAULT 0,
    agent_calls INTEGER NOT NULL DEFAULT 0,
    turns INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
    cost_nano_usd INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX tasks_by_status ON tasks (status);
CREATE INDEX tasks_by_milestone ON tasks (milestone_id);

CREATE TABLE task_verify_commands (
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    ordinal INTEGER NOT NULL,
    command TEXT NOT NULL,
    PRIMARY KEY (task_id, ordinal)
) STRICT, WITHOUT ROWID;

-- task_id waits for depends_on to complete.
CREATE TABLE task_dependencies (
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    depends_on INTEGER NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (task_id, depends_on),
    CHECK (task_id <> depends_on)
) STRICT, WITHOUT ROWID;

CREATE INDEX task_dependencies_by_prerequisite ON task_dependencies (depends_on);

CREATE TABLE sessions (
    -- The lowercase hyphenated UUID Baton minted, exactly as handed to the agent.
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36 AND id = lower(id)),
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    milestone_id INTEGER REFERENCES milestones (id),
    policy TEXT NOT NULL CHECK (policy IN ('task', 'fresh', 'milestone')),
    status TEXT NOT NULL
        CHECK (status IN ('open', 'completed', 'failed', 'abandoned', 'rotated')),
    -- The lease: which process may run agent calls in the session, and until when.
    lease_pid INTEGER,
    lease_host TEXT,
    lease_start_time INTEGER,
    lease_expires_at INTEGER,
    -- The agent process currently running in the session, so a sweep can stop a stale one.
    agent_pid INTEGER,
    agent_calls INTEGER NOT NULL DEFAULT 0,
    turns INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
    cost_nano_usd INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT,
    -- A lease is all four columns or none of them, and only an open session has one.
    CHECK ((lease_pid IS NULL) = (lease_host IS NULL)
        AND (lease_pid IS NULL) = (lease_start_time IS NULL)
        AND (lease_pid IS NULL) = (lease_expires_at IS NULL)),
    CHECK (status = 'open' OR lease_pid IS NULL),
    CHECK ((status = 'open') = (ended_at IS NULL))
) STRICT, WITHOUT ROWID;

-- No index on status: sweeps, which look for open sessions, run once at start-up and can
-- afford a scan, while an index on status would be rewritten at every open and close.
CREATE INDEX sessions_by_task ON sessions (task_id);

-- One row per agent process. Never updated: a correction is a new row.
CREATE TABLE agent_calls (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    iteration INTEGER NOT NULL,
    plan TEXT NOT NULL CHECK (plan IN ('start', 'resume')),
    prompt TEXT NOT NULL,
    result_text TEXT,
    -- 'success' or an agent::ErrorKind word.
    outcome TEXT NOT NULL,
    -- The agent's own word for how the call ended (Claude Code's result subtype).
    subtype TEXT,
    error_message TEXT,
    -- The session id the agent said it used, to compare with session_id.
    reported_session_id TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    cost_nano_usd INTEGER NOT NULL,
    turns INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    exit_code INTEGER,
    exit_signal INTEGER,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    CHECK (exit_code IS NULL OR exit_signal IS NULL)
) STRICT;

-- One index only: every commit rewrites each index page it touches, and recording a call is
-- the hot path. A session's calls are found through its task (or its milestone's tasks),
-- which have few calls each.
CREATE INDEX agent_calls_by_task ON agent_calls (task_id);

CREATE TABLE verifications (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    iteration INTEGER NOT NULL,
    command TEXT NOT NULL,
    exit_code INTEGER,
    exit_signal INTEGER,
    timed_out INTEGER NOT NULL CHECK (timed_out IN (0, 1)),
    output_tail TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    CHECK (exit_code IS NULL OR exit_signal IS NULL)
) STRICT;

CREATE INDEX verifications_by_task ON verifications (task_id);

-- The append-only log of state changes.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    task_id INTEGER REFERENCES tasks (id),
    session_id TEXT REFERENCES sessions (id),
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
) STRICT;

CREATE INDEX events_by_task ON events (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX events_by_session ON events (session_id) WHERE session_id IS NOT NULL;

-- The record is history: what was written stays as written.
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER agent_calls_append_only_update BEFORE UPDATE ON agent_calls
BEGIN SELECT RAISE(ABORT, 'agent calls are append-only'); END;
CREATE TRIGGER agent_calls_append_only_delete BEFORE DELETE ON agent_calls
BEGIN SELECT RAISE(ABORT, 'agent calls are append-only'); END;
CREATE TRIGGER verifications_append_only_update BEFORE UPDATE ON verifications
BEGIN SELECT RAISE(ABORT, 'verifications are append-only'); END;
CREATE TRIGGER verifications_append_only_delete BEFORE DELETE ON verifications
BEGIN SELECT RAISE(ABORT, 'verifications are append-only'); END;
