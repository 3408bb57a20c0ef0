//! Tests of the git driver against the real `git`, in temporary repositories with a private
//! `HOME` and `GIT_CONFIG_NOSYSTEM=1`.

mod branches;
mod commits;
mod common;
mod discover;
mod driver;
mod locking;
mod merges;
mod pushes;
mod worktrees;
