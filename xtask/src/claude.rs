//! Installs the pinned Claude Code CLI from npm, the one way the README, CI and tests get it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{run_command, workspace_root};

/// The Claude Code version Baton is tested against, read from `claude-code.version` at the
/// workspace root: the only place it is written down.
pub const CLAUDE_CODE_VERSION: &str = include_str!("../../claude-code.version").trim_ascii();

/// The environment variable through which tests are told where the CLI is.
pub const CLAUDE_BIN_ENV: &str = "BATON_TEST_CLAUDE_BIN";

/// Where the npm package is installed, relative to the workspace root.
const INSTALL_DIR: &str = ".tools/claude-code";

/// The native binary inside the installed packages. It runs without Node. The npm package
/// picks the platform package as an optional dependency; its wrapper script is only filled in
/// by a postinstall step we skip (`--ignore-scripts`), so we use the native binary directly.
fn native_binary() -> anyhow::Result<PathBuf> {
    let platform = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux-x64",
        ("linux", "aarch64") => "linux-arm64",
        ("macos", "x86_64") => "darwin-x64",
        ("macos", "aarch64") => "darwin-arm64",
        (os, arch) => bail!("Claude Code has no native package for {os}/{arch}"),
    };
    Ok(workspace_root()
        .join(INSTALL_DIR)
        .join("node_modules/@anthropic-ai")
        .join(format!("claude-code-{platform}"))
        .join("claude"))
}

/// The installed binary's version line, when it runs.
fn installed_version(binary: &PathBuf) -> Option<String> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Installs the pinned CLI unless it is already there; returns the native binary's path.
pub fn install(force: bool) -> anyhow::Result<PathBuf> {
    let binary = native_binary()?;
    if !force && let Some(version) = installed_version(&binary) {
        if version.starts_with(CLAUDE_CODE_VERSION) {
            return Ok(binary);
        }
        eprintln!("xtask: found Claude Code `{version}`, want {CLAUDE_CODE_VERSION}: reinstalling");
    }
    let prefix = workspace_root().join(INSTALL_DIR);
    std::fs::create_dir_all(&prefix)
        .with_context(|| format!("failed to create {}", prefix.display()))?;
    run_command(
        Command::new("npm")
            .arg("install")
            .arg("--prefix")
            .arg(&prefix)
            .args([
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--loglevel=error",
            ])
            .arg(format!("@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}")),
    )
    .context(
        "failed to install Claude Code with npm (is npm on PATH and the npm registry reachable?)",
    )?;
    match installed_version(&binary) {
        Some(version) if version.starts_with(CLAUDE_CODE_VERSION) => Ok(binary),
        Some(version) => bail!(
            "npm installed Claude Code `{version}` at {}, not the pinned {CLAUDE_CODE_VERSION}",
            binary.display()
        ),
        None => bail!(
            "npm finished but {} does not run; delete {} and try again",
            binary.display(),
            prefix.display()
        ),
    }
}
