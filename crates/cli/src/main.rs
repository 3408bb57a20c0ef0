//! The `baton` command line.
//!
//! Not built yet: until the command-line issue lands this binary only says so, and fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "baton: the command line is not built yet; the store and agent crates are, see README.md"
    );
    ExitCode::from(2)
}
