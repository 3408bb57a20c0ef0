//! The session ownership model: Baton mints, commits, hands over, verifies, and closes.

use std::collections::HashSet;
use std::sync::Arc;

use agent::{AgentReply, CancellationToken, PlanKind, SessionId, SessionPlan};
use agent_mock::{MockAgent, MockAgentTrait, Step};
use orchestrator::{RunConfig, Selection, TaskOutcome};
use session_store::{SessionPolicy, SessionStatus, TaskStatus};

use crate::support::{Fixture, plans, quick_config};

on_both_backends! {
    /// Regression 1: every call gets exactly the session the store holds for it, whatever the
    /// policy; and the session was committed before the call started.
    #[tokio::test]
    async fn every_call_uses_the_session_the_store_holds() {
        for policy in [
            SessionPolicy::Task,
            SessionPolicy::Fresh,
            SessionPolicy::Milestone,
        ] {
            let mut fixture = Fixture::new();
            let milestone = fixture.milestone("m", None);
            let mut first = fixture.new_task("first");
            first.milestone = Some(milestone);
            first.verify_commands = vec![redact::Redacted::trusted("test -f first.txt")];
            let first = fixture.add(first);
            let mut second = fixture.new_task("second");
            second.milestone = Some(milestone);
            second.after = vec![first];
            let second = fixture.add(second);

            // The first task needs two iterations: its file appears only on the second call.
            let agent = MockAgent::with_steps([
                Step::succeed("not yet"),
                Step::succeed("done").write_file("first.txt", "x"),
            ]);
            let config = RunConfig {
                policy,
                ..quick_config()
            };
            let report = fixture.run_with(&agent, config).await;
            assert!(report.all_completed(), "{policy:?}: {report:?}");

            let calls = agent.calls();
            assert_eq!(calls.len(), 3, "{policy:?}");
            for task in [first, second] {
                for recorded in fixture.calls_of(task) {
                    let session = fixture
                        .ledger(|store| store.session(recorded.session))
                        .unwrap();
                    assert!(
                        session.started_at <= recorded.started_at,
                        "{policy:?}: session committed after its call started"
                    );
                    assert_eq!(recorded.reported_session, Some(recorded.session));
                }
            }
            // The agent saw exactly the recorded sessions, in order, with the recorded plans.
            let recorded: Vec<(SessionId, PlanKind)> = [first, second]
                .iter()
                .flat_map(|task| fixture.calls_of(*task))
                .map(|call| (call.session, call.plan))
                .collect();
            let seen: Vec<(SessionId, PlanKind)> = calls
                .iter()
                .map(|call| (call.plan.session_id(), call.plan.kind()))
                .collect();
            assert_eq!(seen, recorded, "{policy:?}");
            fixture.assert_no_open_session();
        }
    }

    /// Regression 2: two standalone tasks in sequence get distinct sessions, and the second
    /// never sees the first's id.
    #[tokio::test]
    async fn sequential_standalone_tasks_never_share_a_session() {
        let mut fixture = Fixture::new();
        let first = fixture.task("first", &[]);
        let second = fixture.task("second", &[]);
        let agent = MockAgent::new();
        let config = RunConfig {
            concurrency: 1,
            ..quick_config()
        };
        let report = fixture.run_with(&agent, config).await;
        assert!(report.all_completed());

        let first_sessions: HashSet<SessionId> =
            fixture.sessions_of(first).iter().map(|s| s.id).collect();
        let second_sessions: HashSet<SessionId> =
            fixture.sessions_of(second).iter().map(|s| s.id).collect();
        assert_eq!(first_sessions.len(), 1);
        assert_eq!(second_sessions.len(), 1);
        assert!(first_sessions.is_disjoint(&second_sessions));
        let calls = agent.calls();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|call| call.plan.kind() == PlanKind::Start));
        let second_call = calls
            .iter()
            .find(|call| second_sessions.contains(&call.plan.session_id()))
            .unwrap();
        let first_id = first_sessions.iter().next().unwrap().to_string();
        assert!(!second_call.prompt.contains(&first_id));
        // Usage of every call landed in the session it belongs to.
        for task in [first, second] {
            let session = &fixture.sessions_of(task)[0];
            assert_eq!(session.totals.agent_calls, 1);
            assert_eq!(session.status, SessionStatus::Completed);
        }
    }

    /// Regression 3, `task` policy: iteration 2 resumes iteration 1's session.
    #[tokio::test]
    async fn task_policy_resumes_the_same_session() {
        let mut fixture = Fixture::new();
        let task = fixture.task("greet", &["test -f hello.txt"]);
        let agent = MockAgent::with_steps([
            Step::succeed("tried"),
            Step::succeed("fixed").write_file("hello.txt", "hi"),
        ]);
        let report = fixture.run(&agent).await;
        assert!(report.all_completed());
        let calls = agent.calls();
        let id = calls[0].plan.session_id();
        assert_eq!(
            plans(&calls),
            [SessionPlan::Start(id), SessionPlan::Resume(id)]
        );
        assert_eq!(fixture.sessions_of(task).len(), 1);
        assert_eq!(fixture.get(task).iterations, 2);
    }

    /// Regression 3, `fresh` policy: each iteration a new session, each started once.
    #[tokio::test]
    async fn fresh_policy_starts_a_session_per_iteration() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("greet");
        task.policy = Some(SessionPolicy::Fresh);
        task.verify_commands = vec![redact::Redacted::trusted("test -f hello.txt")];
        let task = fixture.add(task);
        let agent = MockAgent::with_steps([
            Step::succeed("tried"),
            Step::succeed("tried again"),
            Step::succeed("fixed").write_file("hello.txt", "hi"),
        ]);
        let report = fixture.run(&agent).await;
        assert!(report.all_completed());
        let calls = agent.calls();
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(|call| call.plan.kind() == PlanKind::Start));
        let ids: HashSet<SessionId> = calls.iter().map(|call| call.plan.session_id()).collect();
        assert_eq!(ids.len(), 3);
        let sessions = fixture.sessions_of(task);
        assert_eq!(sessions.len(), 3);
        assert!(
            sessions
                .iter()
                .all(|session| session.status == SessionStatus::Completed)
        );
        // A fresh session's prompt carries the whole task.
        assert!(calls[1].prompt.contains("Do greet."), "{}", calls[1].prompt);
    }

    /// Regression 3, `milestone` policy: one session across the milestone's tasks, resumed task
    /// after task.
    #[tokio::test]
    async fn milestone_policy_shares_one_session_across_tasks() {
        let mut fixture = Fixture::new();
        let milestone = fixture.milestone("release", Some(SessionPolicy::Milestone));
        let mut ids = Vec::new();
        for title in ["one", "two", "three"] {
            let mut task = fixture.new_task(title);
            task.milestone = Some(milestone);
            task.after = ids.last().copied().into_iter().collect();
            ids.push(fixture.add(task));
        }
        let agent = MockAgent::new();
        let report = fixture
            .run_with(
                &agent,
                RunConfig {
                    concurrency: 3,
                    ..quick_config()
                },
            )
            .await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        let id = calls[0].plan.session_id();
        assert_eq!(
            plans(&calls),
            [
                SessionPlan::Start(id),
                SessionPlan::Resume(id),
                SessionPlan::Resume(id)
            ]
        );
        assert!(
            calls[1].prompt.contains("next task of this milestone"),
            "{}",
            calls[1].prompt
        );
        assert!(calls[1].prompt.contains("Do two."));
        let sessions = fixture.all_sessions();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].totals.agent_calls, 3);
        fixture.assert_no_open_session();
    }

    /// Regression 5: a task's totals are the sum of its calls; a milestone's the sum of its tasks.
    #[tokio::test]
    async fn totals_equal_the_sum_of_calls() {
        let mut fixture = Fixture::new();
        let milestone = fixture.milestone("m", None);
        let mut tasks = Vec::new();
        for title in ["a", "b"] {
            let mut task = fixture.new_task(title);
            task.milestone = Some(milestone);
            task.verify_commands = vec![crate::support::composed(format!("test -f {title}.txt"))];
            tasks.push(fixture.add(task));
        }
        let usage = |n: u64| agent::Usage {
            input_tokens: 100 * n,
            output_tokens: 10 * n,
            cache_read_tokens: n,
            cache_creation_tokens: 2 * n,
        };
        let agent = MockAgent::new();
        agent
            .then(Step::succeed("a1").usage(usage(1)).cost_usd(0.25))
            .then(Step::max_turns().usage(usage(2)).cost_usd(0.5))
            .then(
                Step::succeed("a3")
                    .usage(usage(3))
                    .cost_usd(0.125)
                    .write_file("a.txt", ""),
            )
            .then(
                Step::succeed("b1")
                    .usage(usage(5))
                    .cost_usd(1.0)
                    .write_file("b.txt", ""),
            );
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        let mut milestone_sum = agent::Usage::ZERO;
        for task in &tasks {
            let calls = fixture.calls_of(*task);
            let sum = calls
                .iter()
                .fold(agent::Usage::ZERO, |sum, call| sum + call.usage);
            let totals = fixture.get(*task).totals;
            assert_eq!(totals.usage, sum);
            assert_eq!(totals.agent_calls, calls.len() as u64);
            let cost: i64 = calls.iter().map(|call| call.cost.as_nano_usd()).sum();
            assert_eq!(totals.cost.as_nano_usd(), cost);
            milestone_sum += sum;
        }
        assert_eq!(
            fixture
                .ledger(|store| store.milestone_usage(milestone))
                .unwrap()
                .usage,
            milestone_sum
        );
        assert_eq!(milestone_sum, usage(1) + usage(2) + usage(3) + usage(5));
        assert_eq!(fixture.get(tasks[0]).totals.cost.as_usd(), 0.875);
    }

    /// Regression 6: "already in use" on a start is answered by resuming, never by starting again.
    #[tokio::test]
    async fn session_in_use_is_answered_by_resuming() {
        let mut fixture = Fixture::new();
        let task = fixture.task("greet", &[]);
        // The first start finds a transcript already there, as if an unrecorded call made it. The
        // mock keeps no transcripts here, so that the scripted "in use" is the only session error.
        let agent = MockAgent::new().without_transcripts();
        agent.then(Step::fail_kind(agent::ErrorKind::SessionInUse));
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        let id = calls[0].plan.session_id();
        assert_eq!(
            plans(&calls),
            [SessionPlan::Start(id), SessionPlan::Resume(id)]
        );
        assert_eq!(fixture.sessions_of(task).len(), 1);
    }

    /// Regression 6: "not found" on a resume opens a new session seeded from the ledger, and
    /// closes the old one with that reason.
    #[tokio::test]
    async fn session_not_found_opens_a_seeded_session() {
        let mut fixture = Fixture::new();
        let task = fixture.task("greet", &["test -f hello.txt"]);
        let agent = MockAgent::new();
        agent.then(Step::succeed("I wrote helo.txt by mistake"));
        agent.then(Step::fail_kind(agent::ErrorKind::SessionNotFound));
        agent.then(Step::succeed("fixed").write_file("hello.txt", "hi"));
        let report = fixture.run(&agent).await;
        assert!(report.all_completed(), "{report:?}");
        let calls = agent.calls();
        let (old, new) = (calls[0].plan.session_id(), calls[2].plan.session_id());
        assert_ne!(old, new);
        assert_eq!(calls[1].plan, SessionPlan::Resume(old));
        assert_eq!(calls[2].plan, SessionPlan::Start(new));
        let seed = &calls[2].prompt;
        assert!(seed.contains("no longer available"), "{seed}");
        assert!(seed.contains("I wrote helo.txt by mistake"), "{seed}");
        assert!(seed.contains("test -f hello.txt"), "{seed}");
        let old_session = fixture.ledger(|store| store.session(old)).unwrap();
        assert_eq!(old_session.status, SessionStatus::Failed);
        assert!(old_session.end_reason.unwrap().contains("transcript lost"));
        assert_eq!(
            fixture.ledger(|store| store.session(new)).unwrap().status,
            SessionStatus::Completed
        );
        assert_eq!(fixture.sessions_of(task).len(), 2);
    }

    /// Regression 6: a reply from another session fails the task with that reason, and the call
    /// is recorded as a mismatch with both ids.
    #[tokio::test]
    async fn a_session_mismatch_fails_the_task() {
        let mut fixture = Fixture::new();
        let task = fixture.task("greet", &[]);
        let stranger = SessionId::new_v4();
        let agent = MockAgent::with_steps([Step::succeed("hi").report_session(stranger)]);
        let report = fixture.run(&agent).await;
        assert!(!report.all_completed());
        let stored = fixture.get(task);
        assert_eq!(stored.status, TaskStatus::Failed);
        let reason = stored.failure_reason.unwrap();
        assert!(reason.contains(&stranger.to_string()), "{reason}");
        let calls = fixture.calls_of(task);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].outcome.to_string(), "session_mismatch");
        assert_eq!(calls[0].reported_session, Some(stranger));
        assert_ne!(calls[0].session, stranger);
        fixture.assert_no_open_session();
    }

    /// "Called with what", asked of a mockall mock: the agent is called with `Resume` of the very
    /// session the store holds for the task.
    #[tokio::test]
    async fn the_second_iteration_is_called_with_resume_of_the_stored_session() {
        let mut fixture = Fixture::new();
        let task = fixture.task("greet", &["test -f hello.txt"]);
        let workdir = fixture.workdir().to_path_buf();
        let mut mock = MockAgentTrait::new();
        let mut sequence = mockall::Sequence::new();
        mock.expect_call()
            .withf(|call, _, _| matches!(call.plan, SessionPlan::Start(_)))
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|call, _, _| Ok(AgentReply::empty(call.plan.session_id())));
        mock.expect_call()
            .withf(|call, _, _| matches!(call.plan, SessionPlan::Resume(_)))
            .times(1)
            .in_sequence(&mut sequence)
            .returning(move |call, _, _| {
                std::fs::write(workdir.join("hello.txt"), "hi").unwrap();
                Ok(AgentReply::empty(call.plan.session_id()))
            });
        let orchestrator = fixture.orchestrator(Arc::new(mock), quick_config());
        let report = orchestrator
            .run(&Selection::all(), CancellationToken::new())
            .await
            .unwrap();
        assert!(report.all_completed());
        let sessions = fixture.sessions_of(task);
        assert_eq!(sessions.len(), 1);
        let calls = fixture.calls_of(task);
        assert_eq!(
            calls
                .iter()
                .map(|call| (call.session, call.plan))
                .collect::<Vec<_>>(),
            [
                (sessions[0].id, PlanKind::Start),
                (sessions[0].id, PlanKind::Resume)
            ]
        );
        assert!(matches!(report.tasks[0].outcome, TaskOutcome::Completed));
    }
}
