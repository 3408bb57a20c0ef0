//! Drives the Claude Code CLI (`claude -p`) as a Baton agent.
