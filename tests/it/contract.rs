//! The contract between `mock-claude` and the real Claude Code CLI: the same scenarios run
//! against both, at the CLI level (`cli`) and through `agent-claude`'s adapter (`adapter`),
//! checked to look and classify the same where Baton depends on them. Where they differ on
//! purpose, the test says so and asserts the difference.

mod adapter;
mod cli;
mod side;
