//! Integration tests of the ledger: the conformance suite, each test once against a real
//! SQLite file in a temporary directory and once against a new database on a real PostgreSQL
//! server, and the tests of what only one backend has.

#[macro_use]
mod common;

mod batches;
mod budgets;
mod calls;
mod concurrency;
mod leases;
mod open;
mod postgres;
mod round_trips;
mod runners;
mod secrets;
mod sessions;
mod tasks;
mod tls;
mod transcripts;
mod workspaces;
