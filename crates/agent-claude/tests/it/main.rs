//! Integration tests of the Claude Code adapter: the real `claude` CLI against the loopback
//! stand-in (each test hermetic: temp dirs, a private HOME, loopback only, bounded waits), and
//! fake agent programs (shell scripts) for the supervision edges the CLI cannot be made to hit.
//!
//! Real-CLI tests skip with a printed reason when the binary is absent, and fail instead under
//! `BATON_REQUIRE_CLAUDE=1` (see `api_standin::require_claude`).

mod argv;
mod fake_agents;
mod real_cli;
mod support;
mod transcripts;
