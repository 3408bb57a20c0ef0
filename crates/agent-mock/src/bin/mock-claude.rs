//! `mock-claude`: a stand-in for the `claude` CLI in tests; see `agent_mock::claude`.

fn main() -> std::process::ExitCode {
    agent_mock::claude::main()
}
