//! What the loop writes to the ledger, counted in commits: writes that belong together share
//! one, and each commit holds whole steps.

use std::sync::Arc;

use agent::CancellationToken;
use agent_mock::{MockAgent, Step};
use orchestrator::{Orchestrator, Selection};
use session_store::{CommitCounter, SessionStatus, TaskStatus};

use crate::support::{Fixture, bounded, quick_config};

/// Every run's writes besides its tasks': registering as a runner and saying it stopped; and
/// recovery's three at its start: the sweep of stale sessions, the requeue of orphaned tasks,
/// and the requeue of the tasks of runners that fell silent.
const RECOVERY: u64 = 2 + 3;

/// Each check's process group is committed before the loop waits on it, so that recovery can
/// stop a check that outlives a killed Baton; forgetting it rides on the check's record.
const PER_CHECK: u64 = 1;

/// Runs every task of `fixture` through `agent`, counting the run's commits.
async fn run_counting(fixture: &Fixture, agent: &MockAgent) -> u64 {
    let store = fixture.open_with(&crate::support::options());
    let commits: CommitCounter = store.count_commits();
    let orchestrator = Orchestrator::new(store, Arc::new(agent.clone()), quick_config()).unwrap();
    let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
        .await
        .unwrap();
    assert!(report.all_completed(), "{report:?}");
    commits.count()
}

on_both_backends! {
    #[tokio::test]
    async fn a_one_iteration_task_commits_three_times_and_once_per_check() {
        let mut fixture = Fixture::new();
        let task = fixture.task("checked", &["true", "echo fine"]);
        let agent = MockAgent::with_steps([Step::succeed("done")]);
        let commits = run_counting(&fixture, &agent).await;
        // The claim with the session opened; the call; the checks with the close and the finish;
        // and each check's process group as it starts.
        assert_eq!(commits, RECOVERY + 3 + 2 * PER_CHECK);
        assert_eq!(fixture.calls_of(task).len(), 1);
        assert_eq!(
            fixture
                .ledger(|store| store.verifications_for_task(task))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(fixture.get(task).status, TaskStatus::Completed);
        assert_eq!(
            fixture.sessions_of(task)[0].status,
            SessionStatus::Completed
        );
    }

    #[tokio::test]
    async fn a_task_without_checks_records_its_call_with_its_finish() {
        let mut fixture = Fixture::new();
        let task = fixture.task("unchecked", &[]);
        let agent = MockAgent::with_steps([Step::succeed("done")]);
        let commits = run_counting(&fixture, &agent).await;
        // The claim with the session opened; the call with the close and the finish.
        assert_eq!(commits, RECOVERY + 2);
        let calls = fixture.calls_of(task);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].result_text.as_deref(), Some("done"));
        assert_eq!(fixture.get(task).totals.agent_calls, 1);
        assert_eq!(fixture.get(task).status, TaskStatus::Completed);
    }

    #[tokio::test]
    async fn a_round_that_fails_its_checks_records_them_with_the_next_lease() {
        let mut fixture = Fixture::new();
        let task = fixture.task("retried", &["test -f done.txt"]);
        let agent = MockAgent::with_steps([
            Step::succeed("not yet"),
            Step::succeed("done").write_file("done.txt", ""),
        ]);
        let commits = run_counting(&fixture, &agent).await;
        // The claim with the session opened; the first call; the failed check with the lease
        // taken for the second call; the second call; its check with the close and the finish.
        assert_eq!(commits, RECOVERY + 5 + 2 * PER_CHECK);
        let verifications = fixture
            .ledger(|store| store.verifications_for_task(task))
            .unwrap();
        let passed: Vec<bool> = verifications.iter().map(|check| check.passed()).collect();
        assert_eq!(passed, [false, true]);
        assert_eq!(fixture.calls_of(task).len(), 2);
    }
}
