//! Tests of the `baton` binary: it runs in a temp directory with a private HOME and a cleared
//! environment, and its normalised output is compared with reviewed insta snapshots.

mod budgets;
mod clones;
mod commands;
mod errors;
mod help;
mod json;
mod postgres;
mod pushes;
mod real_claude;
mod runs;
mod secrets;
mod support;
mod watch;
mod worktrees;
