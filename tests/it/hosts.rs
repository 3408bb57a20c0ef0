//! A scenario of several hosts that is not a row of the chaos table, because it needs the
//! real Claude Code CLI.

use tests::chaos::Binaries;
use tests::hosts::claude;

fn bins() -> Binaries {
    Binaries {
        baton: env!("CARGO_BIN_EXE_chaos-baton").into(),
        mock_claude: env!("CARGO_BIN_EXE_contract-mock-claude").into(),
    }
}

/// Through the real CLI against the stand-in: a host dies mid-call and the other host's CLI
/// goes on in the same session id.
#[test]
fn host_dies_through_the_real_cli() {
    const NAME: &str = "host_dies_through_the_real_cli";
    let Some(binary) = api_standin::require_claude(NAME) else {
        return;
    };
    match claude::host_dies_with_claude(&bins(), &binary, NAME) {
        Ok(observed) => eprintln!("host-dies (real CLI): {observed}"),
        Err(error) => panic!("host-dies (real CLI) broke its promise:\n{error:#}"),
    }
}
