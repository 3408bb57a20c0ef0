//! Bad input: every refusal has a clear message, its documented exit code, and leaves the
//! ledger exactly as it was. Also the inputs that are not bad, only awkward: a prompt of
//! several MiB, and text full of shell metacharacters.

use anyhow::{Context, ensure};

use crate::chaos::faults::shorten;
use crate::chaos::lab::{Binaries, Lab};

/// One command that must be refused.
struct Refusal<'a> {
    args: &'a [&'a str],
    code: i32,
    /// Words the message must contain: what was wrong and where.
    says: &'a [&'a str],
}

/// Runs each refusal against `lab` and checks its code, its message and the ledger. Returns a
/// summary of the codes.
fn expect_refusals(lab: &Lab, refusals: &[Refusal<'_>]) -> anyhow::Result<String> {
    let before = lab.fingerprint()?;
    let mut codes = Vec::new();
    let mut example = String::new();
    for refusal in refusals {
        let ran = lab.baton(refusal.args)?;
        if example.is_empty() {
            example = lab.local(ran.stderr.lines().next().unwrap_or_default());
        }
        ran.expect_code(refusal.code)
            .and_then(|ran| ran.expect_stderr(refusal.says))
            .with_context(|| format!("baton {}", refusal.args.join(" ")))?;
        ensure!(
            ran.stderr.lines().count() <= 12,
            "`baton {}` printed a wall of text:\n{}",
            refusal.args.join(" "),
            ran.stderr
        );
        ensure!(
            lab.fingerprint()? == before,
            "`baton {}` changed the ledger",
            refusal.args.join(" ")
        );
        codes.push(refusal.code);
    }
    codes.sort_unstable();
    codes.dedup();
    let codes: Vec<String> = codes.iter().map(ToString::to_string).collect();
    let commands = match refusals.len() {
        1 => String::from("refused"),
        count => format!("{count} commands refused"),
    };
    Ok(format!(
        "{commands} (exit {}), e.g. \"{}\"; ledger unchanged",
        codes.join("/"),
        shorten(&example, 70)
    ))
}

pub fn unknown_ids(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.add_task(&["Only task"])?;
    let missing = "0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0f";
    expect_refusals(
        &lab,
        &[
            Refusal {
                args: &["task", "show", "42"],
                code: 3,
                says: &["42"],
            },
            Refusal {
                args: &["task", "cancel", "42"],
                code: 3,
                says: &["42"],
            },
            Refusal {
                args: &["task", "retry", "42"],
                code: 3,
                says: &["42"],
            },
            Refusal {
                args: &["task", "depend", "1", "--on", "42"],
                code: 3,
                says: &["42"],
            },
            Refusal {
                args: &["task", "add", "t", "--after", "42"],
                code: 3,
                says: &["42"],
            },
            Refusal {
                args: &["run", "42"],
                code: 3,
                says: &["42"],
            },
            Refusal {
                args: &["session", "show", missing],
                code: 3,
                says: &[missing],
            },
            Refusal {
                args: &["milestone", "show", "nope"],
                code: 3,
                says: &["nope"],
            },
        ],
    )
}

pub fn malformed_ids(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.add_task(&["Only task"])?;
    expect_refusals(
        &lab,
        &[
            Refusal {
                args: &["session", "show", "not-a-uuid"],
                code: 2,
                says: &["not-a-uuid"],
            },
            Refusal {
                args: &["session", "show", "0b9d6f7e-3c1a-4f2e-9d8c-5a4b3c2d1e0"],
                code: 2,
                says: &["0b9d6f7e"],
            },
            Refusal {
                args: &["task", "show", "abc"],
                code: 2,
                says: &["abc"],
            },
            Refusal {
                args: &["task", "show", "0"],
                code: 2,
                says: &["0"],
            },
            Refusal {
                args: &["task", "show", "99999999999999999999"],
                code: 2,
                says: &["99999999999999999999"],
            },
        ],
    )
}

pub fn bad_config(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    let pristine = std::fs::read_to_string(lab.config())?;
    let mut said = Vec::new();
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "[run]\n",
            "[run]\nconcurency = 4\n",
            &["concurency", "line"],
        ),
        (
            "[run]\n",
            "[run]\nconcurrency = \"four\"\n",
            &["run.concurrency"],
        ),
        (
            "[agent]\n",
            "[agent]\ntimeout = \"soon\"\n",
            &["agent.timeout"],
        ),
        (
            "[agent]\n",
            "[agent]\npermission_mode = \"yolo\"\n",
            &["permission_mode"],
        ),
        ("[run]\n", "[run\n", &["line"]),
    ];
    for (old, new, says) in cases {
        std::fs::write(lab.config(), pristine.replacen(old, new, 1))?;
        let summary = expect_refusals(
            &lab,
            &[
                Refusal {
                    args: &["task", "list"],
                    code: 2,
                    says,
                },
                Refusal {
                    args: &["run"],
                    code: 2,
                    says,
                },
            ],
        )
        .with_context(|| format!("config with `{}`", new.trim()))?;
        drop(summary);
        said.push(new.trim().replace('\n', " "));
    }
    std::fs::write(lab.config(), pristine)?;
    Ok(format!(
        "{} broken configs ({}): exit 2 naming the key and line; ledger unchanged",
        said.len(),
        shorten(&said.join(", "), 60)
    ))
}

pub fn missing_claude(bins: &Binaries) -> anyhow::Result<String> {
    let mut lab = Lab::with_workspace(bins)?;
    lab.add_task(&["Waits for an agent"])?;
    lab.set("BATON_CLAUDE_BIN", "/nonexistent/claude");
    let summary = expect_refusals(
        &lab,
        &[Refusal {
            args: &["run"],
            code: 5,
            says: &["/nonexistent/claude"],
        }],
    )?;
    let task = lab.json(&["task", "show", "1"])?;
    ensure!(task["status"] == "pending", "task: {}", task["status"]);
    Ok(format!("run {summary}; task still pending"))
}

pub fn bad_prompt_files(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    std::fs::write(
        lab.work().join("binary.md"),
        b"\x7fELF\x02\x01\x01\0\0\xff\xfe",
    )?;
    std::fs::write(lab.work().join("nul.md"), b"fix the bug\0and more")?;
    std::fs::write(lab.work().join("empty.md"), b"  \n")?;
    expect_refusals(
        &lab,
        &[
            Refusal {
                args: &["task", "add", "t", "--prompt-file", "binary.md"],
                code: 2,
                says: &["binary.md", "UTF-8"],
            },
            Refusal {
                args: &["task", "add", "t", "--prompt-file", "nope.md"],
                code: 3,
                says: &["nope.md"],
            },
            Refusal {
                args: &["task", "add", "t", "--prompt-file", "nul.md"],
                code: 2,
                says: &["nul.md", "NUL"],
            },
            Refusal {
                args: &["task", "add", "t", "--prompt-file", "empty.md"],
                code: 2,
                says: &["empty.md", "empty"],
            },
            Refusal {
                args: &["task", "add", "t", "--prompt-file", "."],
                code: 2,
                says: &["directory"],
            },
        ],
    )
}

/// An 8 MiB prompt through `--prompt-file -` (standard input): stored whole, and handed to the
/// agent whole on its standard input, never on its command line.
pub fn huge_prompt_on_stdin(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    let line = "Refactor the parser; keep every test green. ";
    let mut prompt = line.repeat((8 << 20) / line.len());
    prompt.push_str("The end.");
    let ran = lab.baton_with_input(
        &["task", "add", "Huge prompt", "--prompt-file", "-"],
        prompt.clone().into_bytes(),
    )?;
    ran.expect_code(0)?;
    let stored: String =
        lab.ledger()?
            .query_row("SELECT prompt FROM tasks WHERE id = 1", [], |row| {
                row.get(0)
            })?;
    ensure!(stored == prompt, "the stored prompt differs from the input");
    lab.baton(&["run"])?.expect_code(0)?;
    let calls = lab.agent_calls()?;
    let call = calls.first().context("the agent was not called")?;
    let received = call["prompt"].as_str().unwrap_or_default();
    ensure!(
        received.contains(&prompt),
        "the agent did not receive the whole prompt ({} bytes of {})",
        received.len(),
        prompt.len()
    );
    let argv_bytes: usize = call["argv"]
        .as_array()
        .context("argv")?
        .iter()
        .map(|arg| arg.as_str().unwrap_or_default().len())
        .sum();
    ensure!(argv_bytes < 4096, "argv holds {argv_bytes} bytes");
    Ok(format!(
        "{} MiB stored whole; the agent got {} bytes on stdin, argv {argv_bytes} bytes; completed",
        prompt.len() >> 20,
        received.len()
    ))
}

/// Titles, prompts, milestone names and directory names full of shell metacharacters reach
/// the ledger and the agent byte for byte, and nothing in them runs.
pub fn shell_metacharacters(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    let hostile = |tag: &str| {
        format!(
            "$(touch pwned-{tag}-1) `touch pwned-{tag}-2`; touch pwned-{tag}-3 && echo \"q\" 'q' | cat > pwned-{tag}-4 \\ * ~ $HOME ${{IFS}} \n# end"
        )
    };
    let dir_name = "dir $(touch pwned-dir) 'quoted' \"d\"";
    std::fs::create_dir(lab.work().join(dir_name))?;
    let milestone = hostile("milestone");
    lab.baton(&["milestone", "add", &milestone])?
        .expect_code(0)?;
    let title = hostile("title");
    let prompt = hostile("prompt");
    lab.add_task(&[
        &title,
        "--prompt",
        &prompt,
        "--workdir",
        dir_name,
        "--milestone",
        &milestone,
    ])?;
    lab.baton(&["run"])?.expect_code(0)?;
    let task = lab.json(&["task", "show", "1"])?;
    ensure!(task["title"] == title.as_str(), "the title changed");
    ensure!(task["prompt"] == prompt.as_str(), "the prompt changed");
    let calls = lab.agent_calls()?;
    let call = calls.first().context("the agent was not called")?;
    ensure!(
        call["prompt"]
            .as_str()
            .is_some_and(|sent| sent.contains(&prompt) && sent.contains(&title)),
        "the agent's prompt differs: {}",
        call["prompt"]
    );
    let cwd = call["cwd"].as_str().unwrap_or_default();
    ensure!(cwd.ends_with(dir_name), "the agent ran in `{cwd}`");
    let pwned: Vec<_> = lab
        .find_files_with_prefix("pwned")
        .into_iter()
        .map(|path| path.display().to_string())
        .collect();
    ensure!(pwned.is_empty(), "metacharacters ran: {pwned:?}");
    Ok("title, prompt, milestone, workdir kept byte for byte; the agent got them exactly; nothing ran".to_owned())
}

pub fn dependency_cycle(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.add_task(&["A"])?;
    lab.add_task(&["B", "--after", "1"])?;
    lab.add_task(&["C", "--after", "2"])?;
    expect_refusals(
        &lab,
        &[
            Refusal {
                args: &["task", "depend", "1", "--on", "3"],
                code: 2,
                says: &["cycle"],
            },
            Refusal {
                args: &["task", "depend", "2", "--on", "2"],
                code: 2,
                says: &["2"],
            },
        ],
    )
}

pub fn zero_and_negative_limits(bins: &Binaries) -> anyhow::Result<String> {
    let lab = Lab::with_workspace(bins)?;
    lab.add_task(&["A"])?;
    let flags = expect_refusals(
        &lab,
        &[
            Refusal {
                args: &["run", "--concurrency", "0"],
                code: 2,
                says: &["--concurrency"],
            },
            Refusal {
                args: &["run", "--concurrency", "-1"],
                code: 2,
                says: &["-1"],
            },
            Refusal {
                args: &["task", "add", "t", "--max-iterations", "0"],
                code: 2,
                says: &["--max-iterations"],
            },
            Refusal {
                args: &["task", "add", "t", "--max-turns=-5"],
                code: 2,
                says: &["--max-turns"],
            },
        ],
    )?;
    let pristine = std::fs::read_to_string(lab.config())?;
    let cases = [
        ("[run]\n", "[run]\nconcurrency = 0\n", "run.concurrency"),
        (
            "[run]\n",
            "[run]\nconcurrency = 100000\n",
            "run.concurrency",
        ),
        (
            "[tasks]\n",
            "[tasks]\nmax_iterations = -1\n",
            "tasks.max_iterations",
        ),
        ("[agent]\n", "[agent]\nmax_turns = 0\n", "agent.max_turns"),
        ("[agent]\n", "[agent]\ntimeout = \"0s\"\n", "agent.timeout"),
        (
            "[run]\n",
            "[run]\nverify_timeout = \"0s\"\n",
            "run.verify_timeout",
        ),
    ];
    for (old, new, key) in cases {
        std::fs::write(lab.config(), pristine.replacen(old, new, 1))?;
        expect_refusals(
            &lab,
            &[Refusal {
                args: &["run"],
                code: 2,
                says: &[key],
            }],
        )
        .with_context(|| format!("config with `{}`", new.trim()))?;
    }
    std::fs::write(lab.config(), pristine)?;
    Ok(format!(
        "{flags}; {} config limits refused naming the key",
        cases.len()
    ))
}
