//! A runner that lost its claim writes nothing: another runner took its task over while it
//! was cut off (here: declared silent and its task claimed again, mid-call), and the cut-off
//! runner's next write finds the fence moved, stops its agent and gives the task up.

use std::sync::Arc;
use std::time::Duration;

use agent::CancellationToken;
use agent_mock::{MockAgent, Step};
use orchestrator::{RunConfig, Selection, TaskOutcome};
use session_store::{LeaseOwner, Store, TaskStatus, Timestamp};

use crate::support::{Fixture, bounded, quick_config};

on_both_backends! {
    #[tokio::test]
    async fn a_runner_whose_task_was_taken_over_mid_call_stops_and_records_nothing() {
        let mut fixture = Fixture::new();
        let task = fixture.task("taken over", &[]);
        // The first runner's call hangs until it is stopped.
        let agent = MockAgent::with_steps([Step::hang()]);
        let config = RunConfig {
            lease_ttl: Duration::from_millis(300),
            ..quick_config()
        };
        let orchestrator = fixture.orchestrator(Arc::new(agent.clone()), config);
        let db_path = fixture.db_path.clone();
        let other = LeaseOwner {
            pid: 4242,
            host: String::from("other-host.invalid"),
            start_time: 77,
        };
        let takeover_owner = other.clone();
        let probe = agent.clone();
        let takeover = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            while probe.calls().is_empty() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no call started"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Another host's run, which finds the first runner silent (its heartbeat older than
            // a TTL reaching into the future) and claims the task itself.
            tokio::task::spawn_blocking(move || {
                let mut store = Store::open_with(&db_path, &crate::support::options()).unwrap();
                let silent_before = Timestamp::now().saturating_add(Duration::from_secs(3600));
                let requeued = store
                    .requeue_tasks_of_silent_runners(silent_before)
                    .unwrap();
                assert_eq!(requeued, vec![task]);
                store.claim_task(task, &takeover_owner).unwrap()
            })
            .await
            .unwrap()
        });
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        let claimed = takeover.await.unwrap();

        // The first runner said it gave the task up, and why.
        assert_eq!(report.tasks.len(), 1, "{report:?}");
        assert!(
            matches!(&report.tasks[0].outcome, TaskOutcome::Skipped { reason } if reason.contains("taken over by another runner")),
            "{report:?}"
        );
        // It recorded nothing after the takeover: no call (its hung call was stopped, not
        // recorded), and the task is the other runner's, still running under its claim.
        assert!(
            fixture.calls_of(task).is_empty(),
            "{:?}",
            fixture.calls_of(task)
        );
        let now = fixture.get(task);
        assert_eq!(now.status, TaskStatus::Running);
        assert_eq!(now.runner.as_ref(), Some(&other));
        assert_eq!(now.claim_epoch, claimed.claim_epoch);
    }
}
