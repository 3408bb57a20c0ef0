-- Schema version 4: spending limits on tasks and milestones.
--
-- Numbered 4 because version 3 (worktrees) is written on another branch at the same time;
-- nothing here depends on what version 3 adds.
--
-- A budget is a most-cost (nano-dollars, as every cost in the ledger) and a most-tokens
-- (input, output, cache read and cache creation together), either or both; NULL is no limit.
-- What is spent is not stored here: it is the running totals the same rows already keep, so
-- a budget and its spend can never disagree.
ALTER TABLE tasks ADD COLUMN max_cost_nano_usd BIGINT CHECK (max_cost_nano_usd > 0);
ALTER TABLE tasks ADD COLUMN max_tokens BIGINT CHECK (max_tokens > 0);
ALTER TABLE milestones ADD COLUMN max_cost_nano_usd BIGINT CHECK (max_cost_nano_usd > 0);
ALTER TABLE milestones ADD COLUMN max_tokens BIGINT CHECK (max_tokens > 0);
