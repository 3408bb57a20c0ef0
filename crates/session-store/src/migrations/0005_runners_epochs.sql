-- Schema version 5: runners that heartbeat, and epochs that fence a runner which lost its
-- claim or its lease (issue 15: several hosts share one ledger).

-- One row per `baton run`: which process, on which host, and when it last said it lives. A
-- runner silent for longer than the lease TTL is dead to every other host, whose runs then
-- rescue its tasks.
CREATE TABLE runners (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    -- Clock ticks since boot, as for leases: tells the process from a later one with its pid.
    start_time INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stopped_at INTEGER
) STRICT;

CREATE INDEX runners_by_process ON runners (host, pid, start_time);

-- Grows each time the task is claimed or taken back from its runner: a runner's writes for
-- the task carry the epoch of its claim and are refused once it moved on.
ALTER TABLE tasks ADD COLUMN claim_epoch INTEGER NOT NULL DEFAULT 0;

-- Grows each time the session's lease passes to a holder (opened, reopened, taken over); a
-- holder's writes for the session carry the epoch of its lease.
ALTER TABLE sessions ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;

-- A key the runner mints for each agent call before it writes the record: a write retried
-- after the database went away (its commit done, the answer lost) finds the key and records
-- nothing twice. NULL for calls recorded before this version.
ALTER TABLE agent_calls ADD COLUMN call_key TEXT;
CREATE UNIQUE INDEX agent_calls_by_key ON agent_calls (call_key) WHERE call_key IS NOT NULL;
