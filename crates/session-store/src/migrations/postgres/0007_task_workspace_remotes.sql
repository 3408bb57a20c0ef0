-- Schema version 7: a task's repository found on any host through its remote.
--
-- `remote_url` is the URL of the task's repository's remote (the one `run.remote` names)
-- with any credentials left out; a runner on another host finds its own clone of it.
-- `repository` and `worktree_path` name directories on one host, `host`: the host whose clone
-- the task last worked in. Both stay NULL for a task whose repository has no remote.
ALTER TABLE task_workspaces ADD COLUMN remote_url TEXT;
ALTER TABLE task_workspaces ADD COLUMN host TEXT;
