-- Schema version 2: who runs a task, a person's guidance for its next prompt, the start time
-- of a session's agent process, and sessions found by milestone.

-- The process that claimed a running task: all three or none, and only while it runs. A task
-- claimed by a runner that died before it opened a session is found through these.
ALTER TABLE tasks ADD COLUMN runner_pid BIGINT;
ALTER TABLE tasks ADD COLUMN runner_host TEXT;
ALTER TABLE tasks ADD COLUMN runner_start_time BIGINT;

-- Guidance a person gave with `baton task retry --message`, until a prompt delivers it.
ALTER TABLE tasks ADD COLUMN guidance TEXT;

-- When the agent process in agent_pid started (clock ticks since boot), so that a sweep
-- stops that very process and never another one that reused its pid.
ALTER TABLE sessions ADD COLUMN agent_start_time BIGINT;

-- The milestone policy continues the latest session of a milestone. Partial, so that opening a
-- session outside any milestone (the common case, on the hot path) writes no index page.
CREATE INDEX sessions_by_milestone ON sessions (milestone_id) WHERE milestone_id IS NOT NULL;
