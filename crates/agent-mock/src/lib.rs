//! A scripted agent for testing orchestration, and the `mock-claude` stand-in for the CLI.
