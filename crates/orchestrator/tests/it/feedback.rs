//! What reaches the agent: the exact prompts of a task's iterations, and a person's guidance.

use agent_mock::{MockAgent, Step};
use orchestrator::RunConfig;
use session_store::{SessionPolicy, TaskStatus};

use crate::support::{Fixture, quick_config};

fn prompts(agent: &MockAgent) -> String {
    agent
        .calls()
        .iter()
        .enumerate()
        .map(|(n, call)| {
            format!(
                "--- call {} ({})\n{}\n",
                n + 1,
                call.plan.kind(),
                call.prompt
            )
        })
        .collect()
}

on_both_backends! {
    #[tokio::test]
    async fn task_policy_feedback_is_short_and_carries_the_failure() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("greet");
        task.prompt = redact::Redacted::trusted("Create hello.txt containing hello.");
        task.verify_commands = vec![
            redact::Redacted::trusted("true"),
            redact::Redacted::trusted("grep -q hello hello.txt"),
        ];
        fixture.add(task);
        let agent = MockAgent::with_steps([
            Step::succeed("wrote it").write_file("hello.txt", "helo"),
            Step::succeed("fixed").write_file("hello.txt", "hello"),
        ]);
        let report = fixture.run(&agent).await;
        assert!(report.all_completed());
        insta::assert_snapshot!(prompts(&agent), @r"
        --- call 1 (start)
        # Task: greet

        Create hello.txt containing hello.
        --- call 2 (resume)
        Your changes did not pass verification. Fix the problems below, then stop.

        `grep -q hello hello.txt` exited with status 1. It printed nothing.
        ");
    }

    #[tokio::test]
    async fn fresh_policy_feedback_repeats_the_task() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("greet");
        task.prompt = redact::Redacted::trusted("Create hello.txt containing hello.");
        task.verify_commands = vec![redact::Redacted::trusted(
            "cat hello.txt; grep -q hello hello.txt",
        )];
        fixture.add(task);
        let agent = MockAgent::with_steps([
            Step::succeed("wrote it").write_file("hello.txt", "helo\n"),
            Step::succeed("fixed").write_file("hello.txt", "hello\n"),
        ]);
        let report = fixture
            .run_with(
                &agent,
                RunConfig {
                    policy: SessionPolicy::Fresh,
                    ..quick_config()
                },
            )
            .await;
        assert!(report.all_completed());
        insta::assert_snapshot!(prompts(&agent), @r"
        --- call 1 (start)
        # Task: greet

        Create hello.txt containing hello.
        --- call 2 (start)
        # Task: greet

        Create hello.txt containing hello.

        This is attempt 2. The files may already hold an earlier attempt's changes; it did not pass verification:

        `cat hello.txt; grep -q hello hello.txt` exited with status 1. The end of its output:
        ```
        helo
        ```
        ");
    }

    #[tokio::test]
    async fn a_persons_guidance_reaches_the_next_prompt_once() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("greet");
        task.max_iterations = 1;
        task.verify_commands = vec![redact::Redacted::trusted("test -f hello.txt")];
        let task = fixture.add(task);
        let agent = MockAgent::new();
        let _ = fixture.run(&agent).await;
        assert_eq!(fixture.get(task).status, TaskStatus::Failed);

        fixture
            .ledger(|store| {
                store.retry_task(
                    task,
                    Some(&redact::Redacted::trusted(
                        "Put the file in the repository root.",
                    )),
                )
            })
            .unwrap();
        agent.then(Step::succeed("ok").write_file("hello.txt", "hi"));
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        assert_eq!(calls.len(), 2);
        // The retry resumes the task's session and carries the guidance.
        assert_eq!(
            calls[1].plan,
            agent::SessionPlan::Resume(calls[0].plan.session_id())
        );
        assert!(
            calls[1].prompt.contains(
                "Guidance from a person reviewing this task:\nPut the file in the repository root."
            ),
            "{}",
            calls[1].prompt
        );
        assert_eq!(
            fixture.get(task).guidance,
            None,
            "guidance is delivered once"
        );
        assert_eq!(fixture.get(task).iterations, 2);
    }
}
