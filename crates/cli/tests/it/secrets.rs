//! Secrets stay out of the ledger and the output: a fake key in the environment and a fake
//! token in the configuration, printed by a failing check, appear in no command's output and
//! in no byte of the ledger's files; and input that holds a secret is refused.

use crate::snapshot;
use crate::support::{Output, World};

/// Made up, in the environment of every command.
const FAKE_ANTHROPIC: &str = "sk-ant-api03-FAKEFAKEFAKEFAKE-cli-test-0123456789abcdefghijkl";
/// Made up, in `[agent.env]` of the configuration.
const FAKE_GITHUB: &str = "ghp_FAKEcliTest0123456789abcdefghijklmnop";

/// Asserts that no fake secret appears in what a command printed, and returns it.
#[track_caller]
fn clean(output: Output) -> Output {
    for secret in [FAKE_ANTHROPIC, FAKE_GITHUB] {
        assert!(
            !output.stdout.contains(secret) && !output.stderr.contains(secret),
            "`{secret}` was printed:\n{output:?}"
        );
    }
    output
}

/// Asserts that no file of the ledger holds a fake secret, or a recognisable piece of one.
#[track_caller]
fn assert_ledger_clean(world: &World) {
    let files = world.ledger_bytes();
    assert!(!files.is_empty(), "the ledger has no files");
    for (path, bytes) in files {
        for secret in [
            FAKE_ANTHROPIC,
            FAKE_GITHUB,
            &FAKE_ANTHROPIC[13..40],
            &FAKE_GITHUB[4..30],
        ] {
            let found = bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes());
            assert!(!found, "`{}` holds `{secret}`", path.display());
        }
    }
}

#[test]
fn secrets_printed_by_a_check_reach_no_output_and_no_ledger_file() {
    let mut world = World::new();
    world.set("ANTHROPIC_API_KEY", FAKE_ANTHROPIC);
    clean(world.baton(&["init", "--agent", "mock"]).success());
    let config = world.work().join(".baton/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "[agent.env]\n",
            &format!("[agent.env]\nGITHUB_TOKEN = \"{FAKE_GITHUB}\"\n"),
        ),
    )
    .unwrap();

    // The check prints the key from the environment it inherits, whether it got the
    // configured token (it does not: [agent.env] is for the agent), and the configured
    // token from the file itself.
    let verify = "echo \"anthropic=$ANTHROPIC_API_KEY\"; echo \"github=${GITHUB_TOKEN:-unset}\"; \
                  grep GITHUB_TOKEN .baton/config.toml; exit 1";
    clean(
        world
            .baton(&[
                "task",
                "add",
                "leaky",
                "--prompt",
                "Print the keys.",
                "--verify",
                verify,
                "--max-iterations",
                "2",
            ])
            .success(),
    );
    let run = clean(world.baton(&["run"]).code(1));
    assert!(run.stdout.contains("task 1 failed"), "{run:?}");
    clean(
        world
            .baton(&["task", "retry", "1", "--message", "Try again."])
            .success(),
    );
    // Progress on stderr, the report on stdout.
    let run_json = clean(world.baton(&["run", "--json"]).code(1));
    assert!(run_json.stderr.contains("check failed"), "{run_json:?}");
    assert_eq!(run_json.json()["tasks"][0]["status"], "failed");

    let show = clean(world.baton(&["task", "show", "1"]).success());
    // Proof that the output was redacted, rather than never there.
    assert!(
        show.stdout
            .contains("| anthropic=[redacted ANTHROPIC_API_KEY]"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .contains("| GITHUB_TOKEN = \"[redacted GITHUB_TOKEN]\""),
        "{}",
        show.stdout
    );
    // Verification commands do not get [agent.env]; only the agent does.
    assert!(show.stdout.contains("| github=unset"), "{}", show.stdout);

    let task = clean(world.baton(&["task", "show", "1", "--json"]).success()).json();
    let feedback = task["verifications"][0]["output_tail"].as_str().unwrap();
    assert!(
        feedback.contains("anthropic=[redacted ANTHROPIC_API_KEY]"),
        "{feedback}"
    );
    // The feedback prompt of the second call quotes the check, redacted.
    let second_prompt = task["calls"][1]["prompt"].as_str().unwrap();
    assert!(
        second_prompt.contains("anthropic=[redacted ANTHROPIC_API_KEY]"),
        "{second_prompt}"
    );
    let sessions = clean(world.baton(&["session", "list", "--json"]).success()).json();
    for session in sessions.as_array().unwrap() {
        let id = session["id"].as_str().unwrap();
        clean(world.baton(&["session", "show", id]).success());
        clean(world.baton(&["session", "show", id, "--json"]).success());
    }
    // Each must succeed: a command that failed and printed nothing would show no secret
    // either.
    for args in [
        &["task", "list"][..],
        &["task", "list", "--json"],
        &["usage", "--by", "session"],
        &["usage", "--by", "session", "--json"],
        &["doctor"],
        &["doctor", "--json"],
    ] {
        let output = clean(world.baton(args).success());
        assert!(
            !output.stdout.trim().is_empty(),
            "`{args:?}` printed nothing"
        );
    }
    assert_ledger_clean(&world);
}

#[test]
fn input_holding_a_secret_is_refused_and_nothing_is_written() {
    let mut world = World::with_workspace();
    world.set("ANTHROPIC_API_KEY", FAKE_ANTHROPIC);
    let prompt = format!("use {FAKE_ANTHROPIC} to call the API");
    snapshot!(
        "secret_in_prompt",
        clean(
            world
                .baton(&["task", "add", "t", "--prompt", &prompt])
                .code(2)
        )
        .normalised()
    );
    let verify = format!("curl -H 'Authorization: Bearer {FAKE_GITHUB}' https://example.invalid");
    snapshot!(
        "secret_in_verify",
        clean(
            world
                .baton(&["task", "add", "t", "--verify", "true", "--verify", &verify])
                .code(2)
        )
        .normalised()
    );
    clean(world.baton(&["task", "add", &prompt]).code(2));
    std::fs::write(world.work().join("prompt.md"), &prompt).unwrap();
    clean(
        world
            .baton(&["task", "add", "t", "--prompt-file", "prompt.md"])
            .code(2),
    );
    clean(
        world
            .baton_with_stdin(
                &["task", "add", "t", "--prompt-file", "-"],
                prompt.as_bytes(),
            )
            .code(2),
    );
    let tasks = world.baton(&["task", "list", "--json"]).success().json();
    assert_eq!(tasks, serde_json::json!([]), "a refused task was written");

    // Without the variable, the key's shape gives it away.
    let world_without = World::with_workspace();
    snapshot!(
        "token_in_prompt",
        clean(
            world_without
                .baton(&["task", "add", "t", "--prompt", &prompt])
                .code(2)
        )
        .normalised()
    );

    let description = format!("token {FAKE_GITHUB}");
    clean(
        world
            .baton(&["milestone", "add", "m", "--description", &description])
            .code(2),
    );
    let milestones = world
        .baton(&["milestone", "list", "--json"])
        .success()
        .json();
    assert_eq!(milestones, serde_json::json!([]));

    world.add_task(&[
        "t",
        "--prompt",
        "p",
        "--verify",
        "false",
        "--max-iterations",
        "1",
    ]);
    world.baton(&["run"]).code(1);
    let message = format!("the key is {FAKE_ANTHROPIC}");
    snapshot!(
        "secret_in_guidance",
        clean(
            world
                .baton(&["task", "retry", "1", "--message", &message])
                .code(2)
        )
        .normalised()
    );
    let task = world
        .baton(&["task", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(
        task["status"], "failed",
        "the refused retry changed nothing"
    );
    assert_ledger_clean(&world);
}
