//! A task's batches: what a step of a task's loop writes in one commit. On PostgreSQL their
//! operations send their statements with the commit, in one round trip, and a refusal among
//! them runs the batch again one statement at a time; these tests hold both backends to the
//! same outcome either way.

use session_store::{
    Budget, BudgetScope, CallOutcome, EventFilter, Fence, LeaseOwner, NewSession, NewTask,
    SessionPolicy, SessionStatus, Store, StoreError, TaskId, TaskStatus, event_kind,
};

use crate::common::{Lab, add_task, call, new_session, temp_store, text};

/// Two tasks of a new milestone, and a session of that milestone's for the first, not
/// opened yet.
fn two_tasks_of_a_milestone(
    store: &mut Store,
    lab: &Lab,
    owner: &LeaseOwner,
) -> (TaskId, TaskId, NewSession) {
    let milestone = crate::common::add_milestone(store, "m");
    let mut in_milestone = |title| {
        let mut new = NewTask::new(text(title), text("do it"), lab.path());
        new.milestone = Some(milestone);
        store.add_task(&new).unwrap()
    };
    let (one, two) = (in_milestone("one"), in_milestone("two"));
    let shared = NewSession {
        milestone: Some(milestone),
        policy: SessionPolicy::Milestone,
        ..new_session(one, owner.clone())
    };
    (one, two, shared)
}

/// A claimed task with its session open, and the fence its runner holds.
fn claimed(store: &mut Store, lab: &Lab, title: &str) -> (TaskId, Fence) {
    let task = add_task(store, lab.path(), title);
    let owner = LeaseOwner::current().unwrap();
    let session = new_session(task, owner.clone());
    let (claim_epoch, lease) = store
        .claim_batch(task, &owner, None, "claim a task", |batch, claimed| {
            Ok((claimed.task.claim_epoch, batch.open_session(&session)?))
        })
        .unwrap();
    let fence = Fence {
        task,
        claim_epoch,
        session: Some((session.id, lease.epoch)),
    };
    (task, fence)
}

on_both_backends! {
    fn a_call_and_the_finish_it_ends_with_are_written_together() {
        let (lab, mut store) = temp_store();
        let (task, fence) = claimed(&mut store, &lab, "t");
        let session = fence.session.unwrap().0;
        let mut new_call = call(session, task, 3);
        new_call.key = Some(String::from("the-call"));
        store
            .task_batch(task, "record a call and finish", |batch| {
                batch.check_fence(&fence)?;
                batch.record_agent_call(&new_call)?;
                batch.close_session(session, SessionStatus::Completed, None)?;
                let from = batch.set_task_status(task, TaskStatus::Completed, None)?;
                assert_eq!(from, TaskStatus::Running);
                Ok(())
            })
            .unwrap();
        let finished = store.task(task).unwrap();
        assert_eq!(finished.status, TaskStatus::Completed);
        assert_eq!(finished.runner, None);
        assert!(finished.finished_at.is_some());
        assert_eq!(finished.totals.agent_calls, 1);
        assert_eq!(finished.totals.usage, new_call.usage);
        assert_eq!(finished.iterations, new_call.iteration);
        let closed = store.session(session).unwrap();
        assert_eq!(closed.status, SessionStatus::Completed);
        assert_eq!(closed.totals, finished.totals);
        let calls = store.calls_for_task(task).unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].outcome, CallOutcome::Success);
        let changes: Vec<String> = store
            .events(&EventFilter { task: Some(task), session: None })
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == event_kind::TASK_STATUS)
            .map(|event| event.detail)
            .collect();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[1].contains(r#""from":"running""#), "{}", changes[1]);
        assert!(changes[1].contains(r#""to":"completed""#), "{}", changes[1]);
    }

    fn operations_that_refuse_leave_nothing_and_the_batch_goes_on() {
        let (lab, mut store) = temp_store();
        let (task, fence) = claimed(&mut store, &lab, "t");
        let session = fence.session.unwrap().0;
        store.close_session(session, SessionStatus::Failed, None).unwrap();
        // What the body's operations answered, on the try that committed.
        let mut answers = Vec::new();
        store
            .task_batch(task, "finish around refusals", |batch| {
                answers.clear();
                batch.check_fence(&fence)?;
                answers.push(batch.record_agent_call(&call(session, task, 1)).map(drop));
                answers.push(batch.close_session(session, SessionStatus::Completed, None));
                answers.push(
                    batch
                        .set_task_status(task, TaskStatus::Failed, Some(&text("it broke")))
                        .map(drop),
                );
                Ok(())
            })
            .unwrap();
        assert!(
            matches!(answers[0], Err(StoreError::SessionClosed { id, .. }) if id == session),
            "{answers:?}"
        );
        assert!(
            matches!(answers[1], Err(StoreError::CloseConflict { .. })),
            "{answers:?}"
        );
        assert!(answers[2].is_ok(), "{answers:?}");
        let failed = store.task(task).unwrap();
        assert_eq!(failed.status, TaskStatus::Failed);
        assert_eq!(failed.failure_reason.as_deref(), Some("it broke"));
        assert_eq!(failed.totals.agent_calls, 0);
        assert!(store.calls_for_task(task).unwrap().is_empty());
        assert_eq!(store.session(session).unwrap().status, SessionStatus::Failed);
    }

    fn a_runner_whose_claim_moved_on_writes_nothing_of_its_batch() {
        let (lab, mut store) = temp_store();
        let (task, fence) = claimed(&mut store, &lab, "t");
        let session = fence.session.unwrap().0;
        // Another runner took the task over: its claim epoch moved on.
        store.set_task_status(task, TaskStatus::Pending, None).unwrap();
        let other = LeaseOwner {
            host: String::from("elsewhere"),
            ..LeaseOwner::current().unwrap()
        };
        store.claim_task(task, &other).unwrap();
        let written = store.task_batch(task, "record a call and finish", |batch| {
            batch.check_fence(&fence)?;
            batch.record_agent_call(&call(session, task, 2))?;
            batch.set_task_status(task, TaskStatus::Completed, None)?;
            Ok(())
        });
        assert!(
            matches!(written, Err(StoreError::Fenced { held, current, .. }) if current > held),
            "{written:?}"
        );
        let task_now = store.task(task).unwrap();
        assert_eq!(task_now.status, TaskStatus::Running);
        assert_eq!(task_now.runner, Some(other));
        assert!(store.calls_for_task(task).unwrap().is_empty());
    }

    fn a_call_written_again_under_its_key_is_kept_once() {
        let (lab, mut store) = temp_store();
        let (task, fence) = claimed(&mut store, &lab, "t");
        let session = fence.session.unwrap().0;
        let mut new_call = call(session, task, 4);
        new_call.key = Some(String::from("once"));
        for _ in 0..2 {
            store
                .task_batch(task, "record a call", |batch| {
                    batch.check_fence(&fence)?;
                    batch.record_agent_call(&new_call)
                })
                .unwrap();
        }
        assert_eq!(store.calls_for_task(task).unwrap().len(), 1);
        assert_eq!(store.task(task).unwrap().totals.agent_calls, 1);
        assert_eq!(store.session(session).unwrap().totals.agent_calls, 1);
    }

    fn a_claim_finds_the_session_to_continue_and_the_task_budget() {
        let (lab, mut store) = temp_store();
        let owner = LeaseOwner::current().unwrap();
        let task = add_task(&mut store, lab.path(), "t");
        let budget = Budget {
            max_cost: None,
            max_tokens: Some(1_000_000),
        };
        store.set_budget(BudgetScope::Task(task), budget).unwrap();
        let first_session = new_session(task, owner.clone());
        let first = store
            .claim_batch(task, &owner, Some(SessionPolicy::Task), "claim", |batch, claimed| {
                batch.open_session(&first_session)?;
                Ok(claimed.clone())
            })
            .unwrap();
        assert_eq!(first.latest, None);
        assert_eq!(first.budget.budget, budget);
        assert_eq!(first.budget, store.budget(BudgetScope::Task(task)).unwrap());
        store.record_agent_call(&call(first_session.id, task, 5)).unwrap();
        store.close_session(first_session.id, SessionStatus::Failed, None).unwrap();
        store.set_task_status(task, TaskStatus::Pending, None).unwrap();
        let again = store
            .claim_batch(task, &owner, Some(SessionPolicy::Task), "claim", |_, claimed| {
                Ok(claimed.clone())
            })
            .unwrap();
        assert_eq!(again.latest, Some((first_session.id, SessionStatus::Failed)));
        assert_eq!(again.budget, store.budget(BudgetScope::Task(task)).unwrap());
        assert_eq!(again.budget.spent.agent_calls, 1);
        // Without a policy to continue under, none is looked for.
        store.set_task_status(task, TaskStatus::Pending, None).unwrap();
        let fresh = store
            .claim_batch(task, &owner, None, "claim", |_, claimed| Ok(claimed.clone()))
            .unwrap();
        assert_eq!(fresh.latest, None);
    }

    fn a_claim_finds_the_latest_session_of_the_tasks_milestone() {
        let (lab, mut store) = temp_store();
        let owner = LeaseOwner::current().unwrap();
        let (one, two, shared) = two_tasks_of_a_milestone(&mut store, &lab, &owner);
        store
            .claim_batch(one, &owner, Some(SessionPolicy::Milestone), "claim", |batch, _| {
                batch.open_session(&shared).map(drop)
            })
            .unwrap();
        // Task two's own sessions are none, but its milestone's latest is task one's.
        for (policy, expected) in [
            (SessionPolicy::Milestone, Some((shared.id, SessionStatus::Open))),
            (SessionPolicy::Task, None),
        ] {
            let claimed = store
                .claim_batch(two, &owner, Some(policy), "claim", |_, claimed| {
                    Ok(claimed.clone())
                })
                .unwrap();
            assert_eq!(claimed.latest, expected, "{policy:?}");
            store.set_task_status(two, TaskStatus::Pending, None).unwrap();
        }
    }

    fn a_call_of_another_task_into_its_milestones_shared_session_is_written_whole() {
        let (lab, mut store) = temp_store();
        let owner = LeaseOwner::current().unwrap();
        let (one, two, shared) = two_tasks_of_a_milestone(&mut store, &lab, &owner);
        store.open_session(&shared).unwrap();
        store.claim_task(two, &owner).unwrap();
        let record = |store: &mut Store, seed| {
            let mut new_call = call(shared.id, two, seed);
            new_call.key = Some(format!("call {seed}"));
            store.task_batch(two, "record a call", |batch| batch.record_agent_call(&new_call))
        };
        // The first write prepares what it needs; the second is counted.
        record(&mut store, 6).unwrap();
        let trips = store.count_round_trips();
        record(&mut store, 7).unwrap();
        if store.is_postgres() {
            // Sent whole, with the BEGIN and the COMMIT: no refusal made it run again.
            assert_eq!(trips.count(), 1);
        }
        assert_eq!(store.session(shared.id).unwrap().totals.agent_calls, 2);
        assert_eq!(store.task(two).unwrap().totals.agent_calls, 2);
        assert_eq!(store.task(one).unwrap().totals.agent_calls, 0);
    }
}
