//! Integration tests of agent-mock: the scripted agent, the `mockall` mock, and the
//! `mock-claude` binary run as a process.

mod cli;
mod mock_agent;
mod mockall_agent;
mod outcomes;
mod support;
