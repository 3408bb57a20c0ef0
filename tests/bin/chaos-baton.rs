//! The `baton` program, built by this package so that the chaos suite always runs the current
//! code (`CARGO_BIN_EXE_<name>` only names a package's own binaries).

fn main() -> std::process::ExitCode {
    cli::main()
}
