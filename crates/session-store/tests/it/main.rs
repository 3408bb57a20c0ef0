//! Integration tests of the ledger, against real SQLite files in temporary directories.

mod budgets;
mod calls;
mod common;
mod concurrency;
mod leases;
mod open;
mod secrets;
mod sessions;
mod tasks;
mod workspaces;
