//! Baton's durable ledger of tasks, sessions and agent calls, kept in SQLite.
