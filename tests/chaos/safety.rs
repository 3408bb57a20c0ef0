//! Safety: secrets stay out of the ledger and the output, files are the owner's only, the
//! agent gets no permission the user did not configure, and verification commands are the one
//! place a shell runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::json;

use crate::chaos::lab::{Binaries, Lab, Ran};

/// Made-up credentials, shaped like real ones.
const FAKE_API_KEY: &str = "sk-ant-api03-FAKEchaosKEY0123456789abcdefABCDEF-not-real";
const FAKE_TOKEN: &str = "ghp_FAKEchaosTOKEN0123456789abcdefABCD";

/// A fake API key in the environment and a fake token in the config's `[agent.env]`: a
/// verification command prints both, the agent prints both in its answer and its error, and
/// neither value appears in any file under `.baton/`, in anything baton prints, or in what
/// `task show` and `session show` report; the redaction marker does.
pub fn secrets_stay_out(bins: &Binaries) -> anyhow::Result<String> {
    let mut lab = Lab::with_workspace(bins)?;
    lab.set("ANTHROPIC_API_KEY", FAKE_API_KEY);
    lab.edit_config(
        "[agent.env]\n",
        &format!("[agent.env]\nGITHUB_TOKEN = \"{FAKE_TOKEN}\"\n"),
    )?;
    let leaky = format!("key={FAKE_API_KEY} token={FAKE_TOKEN}");
    lab.agent_plays(&json!({"steps": [
        {"result": format!("I found {leaky}"), "stderr": format!("debug: {leaky}\n")},
        {"outcome": "execution_error", "errors": [format!("rejected {leaky}")]},
    ]}))?;
    let mut printed = Vec::new();
    printed.push(lab.baton(&[
        "task",
        "add",
        "Leaky",
        "--verify",
        "echo \"env: $ANTHROPIC_API_KEY $GITHUB_TOKEN\"; exit 1",
        "--max-iterations",
        "2",
    ])?);
    // A connection held open over the run keeps the ledger's -wal and -shm files, which
    // SQLite removes with the last connection, there to be read too.
    let keeper = rusqlite::Connection::open(lab.db())?;
    keeper.query_row("SELECT count(*) FROM tasks", [], |row| row.get::<_, i64>(0))?;
    printed.push(lab.baton(&["run"])?);
    for args in [
        &["task", "show", "1"][..],
        &["--json", "task", "show", "1"],
        &["session", "list"],
        &["--json", "session", "list"],
        &["usage"],
    ] {
        printed.push(lab.baton(args)?);
    }
    let session: String =
        lab.ledger()?
            .query_row("SELECT id FROM sessions LIMIT 1", [], |row| row.get(0))?;
    printed.push(lab.baton(&["--json", "session", "show", &session])?);
    let shown = printed[3].stdout.clone();
    for ran in &printed {
        expect_no_secret(ran)?;
    }
    let files = expect_no_secret_in_dir(&lab.work().join(".baton"))?;
    drop(keeper);
    ensure!(
        shown.contains("[redacted"),
        "`task show --json` has no redaction marker, so nothing proves the check output was kept:\n{shown}"
    );
    // The secrets did reach the agent's environment and the check: refusing them there would
    // break the user's setup.
    let refused = lab.baton(&[
        "task",
        "add",
        "Pasted a key",
        "--prompt",
        &format!("use {FAKE_API_KEY}"),
    ])?;
    refused.expect_code(2)?;
    expect_no_secret(&refused)?;
    Ok(format!(
        "fake key and token absent from {files} files under .baton/ and from {} outputs; shown as [redacted …]; a prompt holding the key refused (exit 2)",
        printed.len() + 1
    ))
}

fn expect_no_secret(ran: &Ran) -> anyhow::Result<()> {
    for secret in [FAKE_API_KEY, FAKE_TOKEN] {
        ensure!(
            !ran.stdout.contains(secret) && !ran.stderr.contains(secret),
            "baton printed a secret:\n--- stdout\n{}--- stderr\n{}",
            ran.stdout,
            ran.stderr
        );
    }
    Ok(())
}

/// Reads every file under `dir` but the config file (where the user put the token) as bytes;
/// returns how many there were.
fn expect_no_secret_in_dir(dir: &Path) -> anyhow::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|name| name == "config.toml") {
            continue;
        }
        if path.is_dir() {
            count += expect_no_secret_in_dir(&path)?;
            continue;
        }
        let bytes = std::fs::read(&path)?;
        for secret in [FAKE_API_KEY, FAKE_TOKEN] {
            ensure!(
                !bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "`{}` holds a secret",
                path.display()
            );
        }
        count += 1;
    }
    Ok(count)
}

/// Under a permissive umask, `baton init` and a run still leave `.baton/` 0700 and every file
/// in it (config, ledger, its WAL and shared-memory files) 0600.
pub fn owner_only_files(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::new(bins)?;
    let mut init = lab.command(&["init", "--agent", "claude"]);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut init, || {
            libc::umask(0);
            Ok(())
        });
    }
    lab.spawn(init)?
        .wait(crate::chaos::lab::COMMAND_LIMIT)?
        .expect_code(0)?;
    // A slow agent call, so that the ledger's -wal and -shm files, which baton creates and
    // SQLite removes when the last connection closes, can be looked at during the run.
    lab.agent_plays(&json!({"steps": [{"result": "done", "delay_ms": 3000}]}))?;
    lab.add_task(&["A"])?;
    let run = lab.spawn(lab.command(&["run"]))?;
    let dir = lab.work().join(".baton");
    lab.wait_for_agent_call(1, Duration::from_secs(30))?;
    let mut modes = vec![(".baton/".to_owned(), mode(&dir)?)];
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .context("a file name")?
            .to_string_lossy()
            .into_owned();
        modes.push((name, mode(&path)?));
    }
    run.wait(crate::chaos::lab::COMMAND_LIMIT)?.expect_code(0)?;
    modes[1..].sort();
    for name in ["baton.db", "baton.db-wal", "baton.db-shm", "config.toml"] {
        ensure!(
            modes.iter().any(|(seen, _)| seen == name),
            "`.baton/{name}` was not there to check during the run"
        );
    }
    for (name, mode) in &modes {
        let expected = if name.ends_with('/') { 0o700 } else { 0o600 };
        ensure!(
            *mode == expected,
            "{name} has mode {mode:o}, not {expected:o}"
        );
    }
    let listed: Vec<String> = modes
        .iter()
        .map(|(name, mode)| format!("{name} {mode:o}"))
        .collect();
    Ok(format!("umask 000: {}", listed.join(", ")))
}

fn mode(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

/// The agent runs without `bypassPermissions` or `--dangerously-skip-permissions` unless the
/// config asks for it.
pub fn permissions_only_when_configured(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.add_task(&["Default permissions"])?;
    lab.baton(&["run"])?.expect_code(0)?;
    lab.edit_config(
        "[agent]\n",
        "[agent]\npermission_mode = \"bypassPermissions\"\n",
    )?;
    lab.add_task(&["Configured bypass"])?;
    lab.baton(&["run"])?.expect_code(0)?;
    let calls = lab.agent_calls()?;
    ensure!(calls.len() == 2, "{} agent calls", calls.len());
    let argv = |index: usize| -> String {
        calls[index]["argv"]
            .as_array()
            .map(|args| {
                args.iter()
                    .filter_map(|arg| arg.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    let default = argv(0);
    let bypass = argv(1);
    for word in ["bypassPermissions", "dangerously"] {
        ensure!(
            !default.contains(word),
            "the default call carries `{word}`: {default}"
        );
    }
    ensure!(
        bypass.contains("--permission-mode bypassPermissions"),
        "the configured call lacks bypassPermissions: {bypass}"
    );
    ensure!(
        !bypass.contains("dangerously"),
        "--dangerously-skip-permissions was added: {bypass}"
    );
    Ok("default: --permission-mode acceptEdits, no bypass; configured: --permission-mode bypassPermissions only".to_owned())
}

/// Verification commands are the one place a shell runs, by design: `$(…)`, pipes and `&&`
/// work there (and the same text in a title or prompt runs nowhere; see
/// `shell-metacharacters`).
pub fn verification_runs_in_a_shell(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.add_task(&[
        "Shell check",
        "--verify",
        "test \"$(echo hi | tr h H)\" = Hi && touch verified-by-shell",
    ])?;
    lab.baton(&["run"])?.expect_code(0)?;
    ensure!(
        lab.work().join("verified-by-shell").exists(),
        "the verification command did not run in a shell"
    );
    Ok("`test \"$(echo hi | tr h H)\" = Hi && touch …` ran in sh -c and passed".to_owned())
}
