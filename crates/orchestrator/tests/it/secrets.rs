//! Secrets a check prints or an agent says reach neither the agent's next prompt, nor the
//! run's events, nor the ledger.

use std::sync::Arc;

use agent::{AgentEvent, CancellationToken};
use agent_mock::{MockAgent, Step};
use orchestrator::{Orchestrator, RunEvent, Selection};
use redact::Redactor;
use session_store::StoreOptions;

use crate::support::{Fixture, Recorder, bounded, quick_config};

/// Made up; only its variable's name makes it a secret.
const FAKE_KEY: &str = "FAKE-orchestrator-test-key-0123456789";
/// Made up; only its shape makes it a secret.
const FAKE_GITHUB: &str = "ghp_FAKEorchestratorTest0123456789abcd";

on_both_backends! {
    #[tokio::test]
    async fn a_key_printed_by_a_check_reaches_neither_the_agent_nor_the_events_nor_the_ledger() {
        let mut fixture = Fixture::new();
        std::fs::write(
            fixture.workdir().join("leak.txt"),
            format!("key {FAKE_KEY}\ntoken {FAKE_GITHUB}\n"),
        )
        .unwrap();
        let task = fixture.task("leaky", &["cat leak.txt; test -f done.txt"]);
        let agent = MockAgent::with_steps([
            Step::succeed(format!("I tried {FAKE_KEY}")),
            Step::succeed("fixed").write_file("done.txt", ""),
        ]);
        let options = StoreOptions {
            redactor: Redactor::from_vars([("ANTHROPIC_API_KEY", FAKE_KEY)]),
            ..crate::support::options()
        };
        let recorder = Recorder::default();
        let orchestrator = Orchestrator::new(
            fixture.open_with(&options),
            Arc::new(agent.clone()),
            quick_config(),
        )
        .unwrap()
        .with_events(recorder.sink());
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        assert!(report.all_completed(), "{report:?}");

        // The feedback quotes the check's output, redacted.
        let calls = agent.calls();
        assert_eq!(calls.len(), 2);
        let feedback = &calls[1].prompt;
        assert!(
            feedback.contains("key [redacted ANTHROPIC_API_KEY]\ntoken [redacted]"),
            "{feedback}"
        );

        let events = recorder.events.lock().unwrap().clone();
        assert!(
            events.iter().any(|event| matches!(
                event,
                RunEvent::Agent { event: AgentEvent::Text { text }, .. }
                    if text == "I tried [redacted ANTHROPIC_API_KEY]"
            )),
            "{events:?}"
        );
        let ledger = format!(
            "{:?}{:?}",
            fixture.calls_of(task),
            fixture
                .ledger(|store| store.verifications_for_task(task))
                .unwrap()
        );
        assert!(ledger.contains("[redacted ANTHROPIC_API_KEY]"), "{ledger}");
        let everything = format!("{calls:?}{events:?}{ledger}");
        for secret in [FAKE_KEY, FAKE_GITHUB] {
            assert!(!everything.contains(secret), "`{secret}` got through");
        }
    }
}
