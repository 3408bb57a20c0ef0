//! `mock-claude`, built inside this package so that its tests can name it with
//! `CARGO_BIN_EXE_…` (Cargo only sets that for a package's own binaries). It is the same
//! program as agent-mock's `mock-claude`: this main only calls it.

fn main() -> std::process::ExitCode {
    agent_mock::claude::main()
}
