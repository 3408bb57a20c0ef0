//! Integration tests of the task loop: the real store (a temp SQLite file, and for the tests
//! in `on_both_backends!` a PostgreSQL database too), the scripted `MockAgent` (or a mockall
//! mock where the question is "called with what").

#[macro_use]
mod support;

mod budgets;
mod clones;
mod concurrency;
mod fail_fast;
mod feedback;
mod fencing;
mod ledger;
mod ownership;
mod recovery;
mod robustness;
mod secrets;
mod spending;
mod transcripts;
mod watch;
mod workspaces;
mod worktrees;
