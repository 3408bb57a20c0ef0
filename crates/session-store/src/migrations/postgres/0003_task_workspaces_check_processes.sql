-- Schema version 3: where a task's work lives (issue 13: a git worktree and a branch per
-- task) and the check processes that run for it. The ledger knows nothing of git: these are
-- strings and numbers the orchestrator gives and reads back.

-- A task's workspace: one row per task that has one. Every column but the task may be NULL
-- until it is known: the isolation and base a person asked for at `task add`, the worktree
-- and branch at the first claim, the head and diff stat at completion, the delivery last.
CREATE TABLE task_workspaces (
    task_id         BIGINT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    -- 'worktree' or 'none'; NULL until decided (the run decides when the task did not ask).
    isolation       TEXT,
    -- Why that isolation, in words a person reads ("inside the repository at /r").
    isolation_reason TEXT,
    -- The main worktree's top level, and the task's directory relative to it ('' at the top).
    repository      TEXT,
    subdirectory    TEXT,
    -- Fixed for the life of the task's sessions, once set.
    worktree_path   TEXT,
    branch          TEXT,
    -- The revision a person named with `--base`, until the first claim resolves it.
    base_revision   TEXT,
    base_commit     TEXT,
    base_branch     TEXT,
    head_commit     TEXT,
    files_changed   BIGINT,
    insertions      BIGINT,
    deletions       BIGINT,
    -- 'pending', 'branch', 'merged', 'conflict' or 'skipped'; and why, for the last two.
    delivery        TEXT,
    delivery_reason TEXT,
    updated_at      BIGINT NOT NULL
);

-- A check command's process group while it runs (its pid is the group's id), recorded before
-- Baton waits on it, so that recovery after a killed Baton stops that very group.
CREATE TABLE check_processes (
    task_id    BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    pid        BIGINT NOT NULL,
    -- Clock ticks since boot, as for agents: tells the group's leader from a reused pid.
    start_time BIGINT NOT NULL,
    host       TEXT NOT NULL,
    command    TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (task_id, pid)
);
