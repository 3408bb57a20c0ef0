-- Schema version 8: nothing on SQLite.
--
-- On PostgreSQL this version adds `baton_refuse`, with which a batch's statements that are
-- sent together at its commit refuse (see `db/postgres.rs`). SQLite runs every statement as
-- it comes, in the process, and needs nothing of the kind; the version is kept in step.
SELECT 1;
