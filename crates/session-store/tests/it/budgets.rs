//! Budgets on tasks and milestones: set, read with what was spent, raised, and refused when
//! they would leave nothing to spend.

use session_store::{Budget, BudgetScope, Cost, NewTask, StoreError};

use crate::common::{
    add_milestone, add_task, call, composed, fake_owner, new_session, temp_store, text,
};

on_both_backends! {
    fn a_budget_reads_back_with_what_the_ledger_says_was_spent() {
        let (directory, mut store) = temp_store();
        let milestone = add_milestone(&mut store, "m");
        let in_milestone = |title: &str| NewTask {
            milestone: Some(milestone),
            ..NewTask::new(composed(title.to_owned()), text("do it"), directory.path())
        };
        let task = store.add_task(&in_milestone("t")).unwrap();
        let other = store.add_task(&in_milestone("u")).unwrap();

        assert_eq!(
            store.budget(BudgetScope::Task(task)).unwrap().budget,
            Budget::NONE
        );
        let budget = Budget {
            max_cost: Some(Cost::from_usd(2.0)),
            max_tokens: Some(1_000_000),
        };
        store.set_budget(BudgetScope::Task(task), budget).unwrap();
        store
            .set_budget(
                BudgetScope::Milestone(milestone),
                Budget {
                    max_cost: Some(Cost::from_usd(3.0)),
                    max_tokens: None,
                },
            )
            .unwrap();
        // Both changes leave an event: the milestone's names no task, and says which milestone.
        let set: Vec<_> = store
            .events(&session_store::EventFilter::default())
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == session_store::BUDGET_SET)
            .collect();
        assert_eq!(set.len(), 2, "{set:?}");
        assert_eq!(set[0].task, Some(task));
        assert_eq!(set[1].task, None);
        assert!(
            set[1]
                .detail
                .contains(&format!("\"milestone\":{}", milestone.get())),
            "{}",
            set[1].detail
        );

        let mut session = new_session(task, fake_owner(1));
        session.milestone = Some(milestone);
        store.open_session(&session).unwrap();
        let first = call(session.id, task, 0);
        store.record_agent_call(&first).unwrap();
        let mut other_session = new_session(other, fake_owner(2));
        other_session.milestone = Some(milestone);
        store.open_session(&other_session).unwrap();
        let second = call(other_session.id, other, 1);
        store.record_agent_call(&second).unwrap();

        let status = store.budget(BudgetScope::Task(task)).unwrap();
        assert_eq!(status.budget, budget);
        assert_eq!(status.spent.cost, first.cost);
        assert_eq!(
            status.cost_left(),
            Some(Cost::from_nano_usd(
                2_000_000_000 - first.cost.as_nano_usd()
            ))
        );
        assert_eq!(
            status.spent_tokens(),
            session_store::total_tokens(&first.usage)
        );

        let shared = store.budget(BudgetScope::Milestone(milestone)).unwrap();
        assert_eq!(
            shared.spent.cost,
            first.cost + second.cost,
            "its tasks' spend, together"
        );
        assert_eq!(shared.budget.max_tokens, None);
    }

    fn a_budget_below_what_was_spent_is_refused_saying_what_was_spent() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        let spent = call(session.id, task, 0);
        store.record_agent_call(&spent).unwrap();

        let err = store
            .set_budget(
                BudgetScope::Task(task),
                Budget {
                    max_cost: Some(Cost::from_nano_usd(1_000)),
                    max_tokens: None,
                },
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Invalid {
                    field: "max cost",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("already spent $0.0012"), "{err}");

        let err = store
            .set_budget(
                BudgetScope::Task(task),
                Budget {
                    max_cost: None,
                    max_tokens: Some(10),
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("tokens"), "{err}");
        // A refused change leaves the budget as it was; a raise is kept, the other limit too.
        assert_eq!(
            store.budget(BudgetScope::Task(task)).unwrap().budget,
            Budget::NONE
        );
        store
            .set_budget(
                BudgetScope::Task(task),
                Budget {
                    max_cost: Some(Cost::from_usd(1.0)),
                    max_tokens: Some(100_000),
                },
            )
            .unwrap();
        store
            .set_budget(
                BudgetScope::Task(task),
                Budget {
                    max_cost: Some(Cost::from_usd(4.0)),
                    max_tokens: None,
                },
            )
            .unwrap();
        let budget = store.budget(BudgetScope::Task(task)).unwrap().budget;
        assert_eq!(budget.max_cost, Some(Cost::from_usd(4.0)));
        assert_eq!(budget.max_tokens, Some(100_000));
    }

    fn a_budget_of_something_missing_is_not_found() {
        let (_directory, mut store) = temp_store();
        let err = store
            .set_budget(BudgetScope::Task(session_store::TaskId(99)), Budget::NONE)
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
}
