//! `cargo xtask test`, the one command that runs every test, and `cargo xtask lint`.
//!
//! Before nextest, the run makes sure of what the tests need: the pinned Claude Code CLI, and
//! one throw-away PostgreSQL server for the whole run (handed to the tests in
//! `BATON_TEST_PG_URL`, stopped when the run ends, whatever its outcome).
//!
//! nextest has no way for a test to say it skipped: a test that needs the real Claude Code
//! CLI or a PostgreSQL server and does not find it prints a line saying so and returns, and
//! nextest counts it as passed. So the run writes a JUnit report that keeps every test's output, and once nextest
//! is done, the skips are read from it and listed at the end, after nextest's summary.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::claude::{self, CLAUDE_BIN_ENV};
use crate::{cargo, postgres, run_command, run_command_hiding, workspace_root};

/// The variable that turns "the real CLI is absent" from a skip into a test failure.
const REQUIRE_CLAUDE_ENV: &str = "BATON_REQUIRE_CLAUDE";

/// The variable that turns "network namespaces cannot be made" (not root, no `ip`) from a skip
/// of the several-hosts tests into a failure (see the `tests` package's `hosts` module).
const REQUIRE_NETNS_ENV: &str = "BATON_REQUIRE_NETNS";

/// The nextest profile the run uses, defined by [`TOOL_CONFIG`] on top of the repository's
/// configuration: a JUnit report that keeps the output of passing tests too.
const PROFILE: &str = "xtask";
const TOOL_CONFIG: &str = "\
# Written by `cargo xtask test` (xtask/src/test.rs): the run's JUnit report keeps every
# test's output, from which the skips are read.
[profile.xtask.junit]
path = \"junit.xml\"
store-success-output = true
";

/// How a test says it skipped, at the start of a line of its output, followed by
/// `<test>: <reason>` (see `api_standin::require_claude` and `pg_testkit::TestDatabase::create`).
const SKIP_MARKER: &str = "skipping ";

#[derive(clap::Args)]
pub struct TestArgs {
    /// Run without installing the Claude Code CLI; tests that need it skip and say so.
    #[arg(long)]
    no_claude: bool,
    /// Run without a PostgreSQL server (nor installing one); tests that need it skip and say so.
    #[arg(long)]
    no_postgres: bool,
    /// Skip the tests of several hosts, which make network namespaces; without this they
    /// are required as root and in CI, and skip (saying so) elsewhere.
    #[arg(long)]
    no_netns: bool,
    /// Extra arguments for `cargo nextest run`, such as a filter.
    #[arg(last = true)]
    nextest_args: Vec<String>,
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    let claude = if args.no_claude {
        None
    } else {
        Some(claude::install(false).context("the tests need the pinned Claude Code CLI")?)
    };
    // Held until the end of this function: dropping it stops the server and removes its
    // files, also when the tests fail or nextest does not start.
    let postgres = if args.no_postgres {
        None
    } else {
        postgres::start_for_tests()?
    };
    // Doctests first (nextest does not run them), so that nextest's summary of the whole
    // suite, and the skips after it, are the last things the run prints.
    run_command(cargo().args(["test", "--workspace", "--doc", "--quiet"]))?;
    let tool_config = write_tool_config()?;
    let report = junit_path();
    if report.exists() {
        std::fs::remove_file(&report)
            .with_context(|| format!("failed to remove the old {}", report.display()))?;
    }
    let mut nextest = cargo();
    nextest
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .arg("--tool-config-file")
        .arg(format!("xtask:{}", tool_config.display()))
        .args(["--profile", PROFILE])
        .args(&args.nextest_args)
        .env("INSTA_UPDATE", "no");
    if let Some(binary) = &claude {
        nextest
            .env(CLAUDE_BIN_ENV, binary)
            .env(REQUIRE_CLAUDE_ENV, "1");
    }
    // Network namespaces need root: elsewhere the several-host tests skip and say why, as
    // PostgreSQL's do without a server, unless this is CI, which must run them all.
    let require_netns = !args.no_netns && (crate::postgres::is_root() || crate::postgres::in_ci());
    if require_netns {
        nextest.env(REQUIRE_NETNS_ENV, "1");
    } else if !args.no_netns {
        eprintln!(
            "xtask: the tests of several hosts need root for their network namespaces; \
             they skip (run as root to include them)"
        );
    }
    if let Some(cluster) = &postgres {
        nextest
            .env(pg_testkit::TEST_URL_ENV, cluster.url_with_password())
            .env(pg_testkit::REQUIRE_POSTGRES_ENV, "1");
    }
    // The server's password is throw-away, but a log is no place for one all the same.
    let secrets: Vec<&str> = postgres.iter().map(|cluster| cluster.password()).collect();
    let tests = run_command_hiding(&mut nextest, &secrets);
    let skips = match std::fs::read_to_string(&report) {
        Ok(xml) => report_skips(&xml),
        // nextest failed before it ran anything; its own error says why.
        Err(_) if tests.is_err() => return tests,
        Err(err) => {
            return Err(err).with_context(|| format!("failed to read {}", report.display()));
        }
    };
    tests?;
    if skips > 0 && claude.is_some() && postgres.is_some() && require_netns {
        bail!(
            "{skips} tests skipped though the Claude Code CLI is installed, PostgreSQL runs and \
             network namespaces are required"
        );
    }
    Ok(())
}

pub fn lint() -> anyhow::Result<()> {
    run_command(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_command(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// Writes [`TOOL_CONFIG`] into the target directory and returns its (absolute) path.
fn write_tool_config() -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("target/xtask");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let path = dir.join("nextest.toml");
    std::fs::write(&path, TOOL_CONFIG)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// Where nextest writes the JUnit report of [`PROFILE`]: its store, under the workspace root.
fn junit_path() -> PathBuf {
    workspace_root()
        .join("target/nextest")
        .join(PROFILE)
        .join("junit.xml")
}

/// Prints what the JUnit report `xml` says about skips, and returns how many tests skipped.
fn report_skips(xml: &str) -> usize {
    let skips = find_skips(xml);
    let ran = attribute(xml, "testsuites", "tests").unwrap_or_default();
    if skips.is_empty() {
        eprintln!("xtask: all {ran} tests ran in full; none skipped");
        return 0;
    }
    let mut by_reason: BTreeMap<&str, Vec<&Skip>> = BTreeMap::new();
    for skip in &skips {
        by_reason.entry(&skip.reason).or_default().push(skip);
    }
    eprintln!(
        "xtask: {} of the {ran} tests SKIPPED some or all of their checks (nextest counted them \
         as passed):",
        skips.len()
    );
    for (reason, skipped) in by_reason {
        for skip in skipped {
            eprintln!("  {} {}", skip.binary, skip.test);
        }
        eprintln!("  because: {reason}");
    }
    skips.len()
}

/// A test that said it skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Skip {
    /// nextest's name of its test binary, such as `tests::it`.
    binary: String,
    test: String,
    reason: String,
}

/// Every test of the JUnit report `xml` whose output has a [`SKIP_MARKER`] line, once each.
fn find_skips(xml: &str) -> Vec<Skip> {
    let mut skips = Vec::new();
    for case in xml.split("<testcase ").skip(1) {
        let body = case.split("</testcase>").next().unwrap_or(case);
        // The output starts on the line of its element's opening tag.
        let output = unescape(body)
            .replace("<system-out>", "\n")
            .replace("<system-err>", "\n");
        let reason = output.lines().map(str::trim_start).find_map(|line| {
            let said = line.strip_prefix(SKIP_MARKER)?;
            Some(
                said.split_once(": ")
                    .map_or(said, |(_, why)| why)
                    .to_owned(),
            )
        });
        if let Some(reason) = reason {
            skips.push(Skip {
                binary: unescape(&tag_attribute(case, "classname").unwrap_or_default()),
                test: unescape(&tag_attribute(case, "name").unwrap_or_default()),
                reason,
            });
        }
    }
    skips
}

/// The attribute `name` of the first `<element …>` tag in `xml`.
fn attribute(xml: &str, element: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{element} "))? + element.len() + 2;
    tag_attribute(&xml[start..], name)
}

/// The attribute `name` of the tag whose attributes `tag` starts with.
fn tag_attribute(tag: &str, name: &str) -> Option<String> {
    let tag = &tag[..tag.find('>')?];
    let needle = format!("{name}=\"");
    let (at, _) = tag
        .match_indices(&needle)
        .find(|(at, _)| *at == 0 || tag.as_bytes()[at - 1].is_ascii_whitespace())?;
    let value = &tag[at + needle.len()..];
    Some(value[..value.find('"')?].to_owned())
}

/// `text` with XML's predefined entities replaced by the characters they stand for.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="0" errors="0" uuid="x" timestamp="t" time="1.0">
    <testsuite name="api-standin::it" tests="2" skipped="0" errors="0" failures="0">
        <testcase name="the_real_cli_runs" classname="api-standin::it" timestamp="t" time="0.011">
            <system-out>running 1 test
</system-out>
            <system-err>skipping the_real_cli_runs: the claude binary named by $BATON_TEST_CLAUDE_BIN does not exist: /x/&lt;y&gt; (run `cargo xtask install-claude`)
</system-err>
        </testcase>
        <testcase name="a_task_was_skipped" classname="api-standin::it" timestamp="t" time="0.011">
            <system-out>task 1 was skipping nothing
</system-out>
        </testcase>
        <testcase name="quiet" classname="tests::it" timestamp="t" time="0.011"/>
    </testsuite>
</testsuites>
"#;

    #[test]
    fn skips_are_read_from_the_output_of_each_test_case() {
        assert_eq!(
            find_skips(REPORT),
            [Skip {
                binary: "api-standin::it".into(),
                test: "the_real_cli_runs".into(),
                reason: "the claude binary named by $BATON_TEST_CLAUDE_BIN does not exist: \
                         /x/<y> (run `cargo xtask install-claude`)"
                    .into(),
            }]
        );
        assert_eq!(
            attribute(REPORT, "testsuites", "tests").as_deref(),
            Some("3")
        );
        assert_eq!(report_skips(REPORT), 1);
    }

    #[test]
    fn a_report_without_skips_has_none() {
        let report = REPORT.replace("skipping the_real_cli_runs", "ran the_real_cli_runs");
        assert!(find_skips(&report).is_empty());
    }
}
