//! The contract between `mock-claude` and the real Claude Code CLI: the same scenarios run
//! against both, checked to look the same where Baton depends on them. Where they differ on
//! purpose, the test says so and asserts the difference.

mod cli;
mod side;
