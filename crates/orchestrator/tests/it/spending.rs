//! Spending limits: task, milestone and run budgets kept from the ledger, the money limit
//! each call is given, a token limit kept from the streamed usage, and turn escalation
//! bounded by a budget.

use std::sync::Arc;
use std::time::Duration;

use agent::{
    Agent, AgentCall, AgentError, AgentEvent, AgentInfo, AgentReply, CancellationToken, EventSink,
    SessionPlan, Usage,
};
use agent_mock::{MockAgent, Step};
use orchestrator::{RunConfig, Selection, TaskOutcome};
use session_store::{Budget, BudgetScope, Cost, NewTask, SessionStatus, TaskStatus};

use crate::support::{Fixture, Recorder, bounded, quick_config};

fn dollars(usd: f64) -> Budget {
    Budget {
        max_cost: Some(Cost::from_usd(usd)),
        max_tokens: None,
    }
}

/// An agent whose every answer costs `usd` and whose checks never pass.
fn costly(usd: f64) -> MockAgent {
    MockAgent::scripted(move |_, _| Step::succeed("tried").cost_usd(usd))
}

on_both_backends! {
    #[tokio::test]
    async fn a_spent_task_budget_blocks_the_task_and_a_raise_continues_its_session() {
        let mut fixture = Fixture::new();
        let task = fixture.task("endless", &["false"]);
        fixture
            .ledger(|store| store.set_budget(BudgetScope::Task(task), dollars(0.05)))
            .unwrap();
        let agent = costly(0.03);
        let report = fixture.run(&agent).await;

        let reason = "budget spent: $0.05 of $0.05 (task)";
        assert_eq!(
            report.tasks[0].outcome,
            TaskOutcome::Blocked {
                reason: reason.into()
            }
        );
        let stored = fixture.get(task);
        assert_eq!(stored.status, TaskStatus::Blocked);
        assert_eq!(stored.failure_reason.as_deref(), Some(reason));
        assert_eq!(
            stored.totals.cost,
            Cost::from_usd(0.05),
            "never past the budget"
        );
        let limits: Vec<Option<f64>> = agent.calls().iter().map(|c| c.max_cost_usd).collect();
        assert_eq!(
            limits,
            [Some(0.05), Some(0.02)],
            "each call gets what is left"
        );
        fixture.assert_no_open_session();
        let session = fixture.sessions_of(task)[0].id;

        fixture
            .ledger(|store| store.set_budget(BudgetScope::Task(task), dollars(0.10)))
            .unwrap();
        fixture
            .ledger(|store| store.retry_task(task, None))
            .unwrap();
        let report = fixture.run(&agent).await;
        assert!(matches!(
            report.tasks[0].outcome,
            TaskOutcome::Blocked { .. }
        ));
        let calls = agent.calls();
        assert_eq!(
            calls[2].plan,
            SessionPlan::Resume(session),
            "a raised budget continues the same session"
        );
        assert_eq!(fixture.get(task).totals.cost, Cost::from_usd(0.10));
        assert_eq!(fixture.sessions_of(task).len(), 1);
    }

    #[tokio::test]
    async fn a_milestone_budget_is_shared_by_its_tasks() {
        let mut fixture = Fixture::new();
        let milestone = fixture.milestone("m", None);
        let tasks: Vec<_> = (0..3)
            .map(|n| {
                fixture.add(NewTask {
                    milestone: Some(milestone),
                    ..fixture.new_task(&format!("t{n}"))
                })
            })
            .collect();
        fixture
            .ledger(|store| store.set_budget(BudgetScope::Milestone(milestone), dollars(0.05)))
            .unwrap();
        let agent = costly(0.02);
        let report = fixture.run(&agent).await;

        let spent = fixture
            .ledger(|store| store.milestone_usage(milestone))
            .unwrap()
            .cost;
        assert_eq!(
            spent,
            Cost::from_usd(0.05),
            "its tasks together stop at the budget"
        );
        let blocked = report
            .tasks
            .iter()
            .filter(|report| matches!(&report.outcome, TaskOutcome::Blocked { reason } if reason.ends_with("(milestone)")))
            .count();
        assert_eq!(blocked, 1, "{report:?}");
        let completed = tasks
            .iter()
            .filter(|task| fixture.get(**task).status == TaskStatus::Completed)
            .count();
        assert_eq!(completed, 2);
        fixture.assert_no_open_session();
    }

    #[tokio::test]
    async fn a_run_budget_across_concurrent_tasks_stops_the_run_cleanly() {
        let mut fixture = Fixture::new();
        let tasks: Vec<_> = (0..10)
            .map(|n| fixture.task(&format!("t{n}"), &["false"]))
            .collect();
        let agent = MockAgent::scripted(|_, _| {
            Step::succeed("tried")
                .cost_usd(0.03)
                .delay(Duration::from_millis(5))
        });
        let config = RunConfig {
            concurrency: 4,
            budget: dollars(0.25),
            ..quick_config()
        };
        let report = fixture.run_with(&agent, config).await;

        assert_eq!(
            report.budget_stop.as_deref(),
            Some("budget spent: $0.25 of $0.25 (run)")
        );
        assert!(!report.all_completed());
        let ledger: Cost = tasks
            .iter()
            .map(|task| fixture.get(*task).totals.cost)
            .fold(Cost::ZERO, |sum, cost| sum + cost);
        assert_eq!(
            report.spend.spent.cost, ledger,
            "the report's spend is the ledger's"
        );
        assert!(
            ledger <= Cost::from_usd(0.25),
            "the mock stops at each call's limit, so nothing passes the budget: {ledger}"
        );
        fixture.assert_no_open_session();
        for task in &tasks {
            let status = fixture.get(*task).status;
            assert!(
                matches!(status, TaskStatus::Pending),
                "task {task} is {status}: a stopped run leaves its tasks pending"
            );
        }
    }

    #[tokio::test]
    async fn a_token_budget_stops_a_call_mid_stream() {
        let mut fixture = Fixture::new();
        let task = fixture.task("chatty", &[]);
        fixture
            .ledger(|store| {
                store.set_budget(
                    BudgetScope::Task(task),
                    Budget {
                        max_cost: None,
                        max_tokens: Some(1_000),
                    },
                )
            })
            .unwrap();
        let orchestrator = fixture.orchestrator(Arc::new(Streaming), quick_config());
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        let TaskOutcome::Blocked { reason } = &report.tasks[0].outcome else {
            panic!("expected blocked, got {report:?}");
        };
        assert!(
            reason.starts_with("budget spent: ") && reason.ends_with("of 1000 tokens (task)"),
            "{reason}"
        );
        let tokens = session_store::total_tokens(&fixture.get(task).totals.usage);
        assert!(
            (1_000..=1_150).contains(&tokens),
            "stopped within one streamed response of the budget: {tokens}"
        );
        let sessions = fixture.sessions_of(task);
        assert_eq!(sessions.len(), 1);
        assert_ne!(sessions[0].status, SessionStatus::Open);
    }

    #[tokio::test]
    async fn turn_escalation_never_passes_a_budget_and_is_written_down() {
        let mut fixture = Fixture::new();
        let mut task = fixture.new_task("long");
        task.max_turns = Some(2);
        let task = fixture.add(task);
        fixture
            .ledger(|store| store.set_budget(BudgetScope::Task(task), dollars(0.10)))
            .unwrap();
        let agent = MockAgent::scripted(|_, _| Step::max_turns().cost_usd(0.04));
        let recorder = Recorder::default();
        let orchestrator = fixture
            .orchestrator(Arc::new(agent.clone()), quick_config())
            .with_events(recorder.sink());
        let report = bounded(orchestrator.run(&Selection::all(), CancellationToken::new()))
            .await
            .unwrap();
        assert!(
            matches!(report.tasks[0].outcome, TaskOutcome::Blocked { .. }),
            "{report:?}"
        );
        assert!(fixture.get(task).totals.cost <= Cost::from_usd(0.10));
        let turns: Vec<Option<u32>> = agent.calls().iter().map(|call| call.max_turns).collect();
        assert_eq!(turns, [Some(2), Some(4), Some(8)]);
        let escalations: Vec<String> = fixture
            .ledger(|store| {
                store.events(&session_store::EventFilter {
                    task: Some(task),
                    ..session_store::EventFilter::default()
                })
            })
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == "turns_escalated")
            .map(|event| event.detail)
            .collect();
        assert_eq!(
            escalations,
            [r#"{"from":2,"to":4}"#, r#"{"from":4,"to":8}"#]
        );
    }
}

/// An agent that streams usage and keeps going until it is stopped.
struct Streaming;

#[async_trait::async_trait]
impl Agent for Streaming {
    async fn call(
        &self,
        _call: AgentCall,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<AgentReply, AgentError> {
        let mut streamed = Usage::ZERO;
        for _ in 0..10_000 {
            let usage = Usage {
                input_tokens: 100,
                output_tokens: 50,
                cache_read_tokens: 0,
                cache_creation_tokens: 0,
            };
            streamed += usage;
            events.emit(AgentEvent::Usage { usage });
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(2)) => {}
                () = cancel.cancelled() => {
                    return Err(AgentError::Cancelled { partial_usage: streamed });
                }
            }
        }
        panic!("the call was never stopped");
    }

    async fn probe(&self) -> Result<AgentInfo, AgentError> {
        Ok(AgentInfo {
            name: String::from("streaming"),
            version: String::from("1"),
            program: None,
        })
    }
}
