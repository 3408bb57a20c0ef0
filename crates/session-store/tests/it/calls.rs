//! Agent calls, verifications, events, and the usage roll-ups they add up to.

use std::time::Duration;

use agent::{ExitInfo, SessionId};
use session_store::{
    Cost, EventFilter, Missing, NewEvent, NewSession, NewTask, NewVerification, SessionPolicy,
    SessionStatus, StoreError, TaskId, Totals,
};

use crate::common::{add_milestone, add_task, call, fake_owner, new_session, raw_text, temp_store};

fn sum(calls: &[session_store::RecordedCall]) -> Totals {
    let mut totals = Totals::default();
    for call in calls {
        totals += Totals {
            agent_calls: 1,
            turns: u64::from(call.turns),
            usage: call.usage,
            cost: call.cost,
        };
    }
    totals
}

on_both_backends! {
    fn a_recorded_call_reads_back_as_it_was_recorded() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        let mut new = call(session.id, task, 0);
        new.reported_session = Some(SessionId::new_v4());
        new.exit = None;
        let id = store.record_agent_call(&new).unwrap();

        let recorded = store.calls_for_session(session.id).unwrap();
        assert_eq!(recorded.len(), 1);
        let recorded = &recorded[0];
        assert_eq!(recorded.id, id);
        assert_eq!(recorded.session, new.session);
        assert_eq!(recorded.task, new.task);
        assert_eq!(recorded.iteration, new.iteration);
        assert_eq!(recorded.plan, new.plan);
        assert_eq!(new.prompt, recorded.prompt);
        assert_eq!(
            recorded.result_text.as_deref(),
            new.result_text.as_ref().map(redact::Redacted::as_str)
        );
        assert_eq!(recorded.outcome, new.outcome);
        assert_eq!(
            recorded.subtype.as_deref(),
            new.subtype.as_ref().map(redact::Redacted::as_str)
        );
        assert_eq!(
            recorded.error_message.as_deref(),
            new.error_message.as_ref().map(redact::Redacted::as_str)
        );
        assert_eq!(recorded.reported_session, new.reported_session);
        assert_eq!(recorded.usage, new.usage);
        assert_eq!(recorded.cost, new.cost);
        assert_eq!(recorded.turns, new.turns);
        assert_eq!(recorded.duration, new.duration);
        assert_eq!(recorded.exit, new.exit);
        assert_eq!(recorded.started_at, new.started_at);
        assert_eq!(recorded.ended_at, new.ended_at);
        assert_eq!(
            store.calls_for_task(task).unwrap(),
            store.calls_for_session(session.id).unwrap()
        );
    }

    /// Sessions, tasks and milestones keep running totals; each must equal the sum of the calls
    /// beneath it, and the milestone's the sum of its tasks'.
    fn roll_ups_equal_the_sums_of_their_calls() {
        let (directory, mut store) = temp_store();
        let milestone = add_milestone(&mut store, "m");
        let tasks: Vec<TaskId> = (0..3)
            .map(|index| {
                store
                    .add_task(&NewTask {
                        milestone: Some(milestone),
                        ..NewTask::new(
                            crate::common::composed(format!("task {index}")),
                            crate::common::text("p"),
                            directory.path(),
                        )
                    })
                    .unwrap()
            })
            .collect();
        let outside = add_task(&mut store, directory.path(), "outside");

        let mut sessions: Vec<SessionId> = Vec::new();
        let mut seed = 0;
        for (index, task) in tasks.iter().chain([&outside]).enumerate() {
            // Several sessions per task, as under the fresh policy or after rotations.
            for _ in 0..=index {
                let session = NewSession {
                    milestone: (*task != outside).then_some(milestone),
                    policy: SessionPolicy::Fresh,
                    ..new_session(*task, fake_owner(1))
                };
                store.open_session(&session).unwrap();
                for _ in 0..(2 + index) {
                    store
                        .record_agent_call(&call(session.id, *task, seed))
                        .unwrap();
                    seed += 1;
                }
                store
                    .close_session(session.id, SessionStatus::Completed, None)
                    .unwrap();
                sessions.push(session.id);
            }
        }

        for session in &sessions {
            let calls = store.calls_for_session(*session).unwrap();
            assert!(!calls.is_empty());
            assert_eq!(store.session_usage(*session).unwrap(), sum(&calls));
            assert_eq!(store.session(*session).unwrap().totals, sum(&calls));
        }
        let mut milestone_sum = Totals::default();
        for task in &tasks {
            let calls = store.calls_for_task(*task).unwrap();
            assert_eq!(store.task_usage(*task).unwrap(), sum(&calls));
            assert_eq!(store.task(*task).unwrap().totals, sum(&calls));
            milestone_sum += sum(&calls);
        }
        assert_eq!(store.milestone_usage(milestone).unwrap(), milestone_sum);
        assert_eq!(milestone_sum.agent_calls, 2 + 2 * 3 + 3 * 4);

        // And the same sums straight from the calls table, with SQL doing the adding.
        let counted = raw_text(
            directory.location(),
            &format!(
                "SELECT CAST(count(*) AS TEXT) || ' ' || CAST(sum(cost_nano_usd) AS TEXT) \
                 FROM agent_calls \
                 WHERE task_id IN (SELECT id FROM tasks WHERE milestone_id = {})",
                milestone.get()
            ),
        )
        .unwrap();
        let (calls, cost) = counted.split_once(' ').unwrap();
        let (calls, cost): (u64, i64) = (calls.parse().unwrap(), cost.parse().unwrap());
        assert_eq!(calls, milestone_sum.agent_calls);
        assert_eq!(Cost::from_nano_usd(cost), milestone_sum.cost);

        // An empty milestone adds up to zero.
        let empty = add_milestone(&mut store, "empty");
        assert_eq!(store.milestone_usage(empty).unwrap(), Totals::default());
    }

    fn a_task_remembers_its_highest_iteration() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        let mut second = call(session.id, task, 0);
        second.iteration = 2;
        store.record_agent_call(&second).unwrap();
        let mut first = call(session.id, task, 1);
        first.iteration = 1;
        store.record_agent_call(&first).unwrap();
        assert_eq!(store.task(task).unwrap().iterations, 2);
        store
            .record_verification(&NewVerification {
                task,
                iteration: 3,
                command: redact::Redacted::trusted("true"),
                exit: Some(ExitInfo::Code(0)),
                timed_out: false,
                output_tail: redact::Redacted::trusted(""),
                duration: Duration::from_millis(5),
            })
            .unwrap();
        assert_eq!(store.task(task).unwrap().iterations, 3);
    }

    fn verifications_read_back_in_order() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let runs = [
            NewVerification {
                task,
                iteration: 1,
                command: redact::Redacted::trusted("cargo test"),
                exit: Some(ExitInfo::Code(101)),
                timed_out: false,
                output_tail: redact::Redacted::trusted("test result: FAILED"),
                duration: Duration::from_millis(1500),
            },
            NewVerification {
                task,
                iteration: 2,
                command: redact::Redacted::trusted("cargo test"),
                exit: None,
                timed_out: true,
                output_tail: redact::Redacted::trusted("still running"),
                duration: Duration::from_secs(600),
            },
            NewVerification {
                task,
                iteration: 3,
                command: redact::Redacted::trusted("cargo test"),
                exit: Some(ExitInfo::Code(0)),
                timed_out: false,
                output_tail: redact::Redacted::trusted("test result: ok"),
                duration: Duration::from_millis(1400),
            },
        ];
        for run in &runs {
            store.record_verification(run).unwrap();
        }
        let stored = store.verifications_for_task(task).unwrap();
        assert_eq!(stored.len(), 3);
        for (stored, run) in stored.iter().zip(&runs) {
            assert_eq!(stored.task, run.task);
            assert_eq!(stored.iteration, run.iteration);
            assert_eq!(run.command, stored.command);
            assert_eq!(stored.exit, run.exit);
            assert_eq!(stored.timed_out, run.timed_out);
            assert_eq!(run.output_tail, stored.output_tail);
            assert_eq!(stored.duration, run.duration);
        }
        let passed: Vec<bool> = stored.iter().map(|run| run.passed()).collect();
        assert_eq!(passed, [false, false, true]);

        let err = store
            .record_verification(&NewVerification {
                task: TaskId(500),
                ..runs[0].clone()
            })
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(TaskId(500)))),
            "{err:?}"
        );
    }

    fn events_are_appended_and_filtered() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        let guidance = store
            .append_event(&NewEvent {
                task: Some(task),
                session: Some(session.id),
                kind: redact::Redacted::trusted("guidance_added"),
                detail: redact::Redacted::trusted("use the new API"),
            })
            .unwrap();
        let note = store
            .append_event(&NewEvent {
                task: None,
                session: None,
                kind: redact::Redacted::trusted("run_started"),
                detail: redact::Redacted::trusted("{}"),
            })
            .unwrap();
        assert!(note > guidance);

        let all = store.events(&EventFilter::default()).unwrap();
        // task_added, guidance_added, run_started.
        assert_eq!(all.len(), 3);
        assert!(all.windows(2).all(|pair| pair[0].id < pair[1].id));
        let both = store
            .events(&EventFilter {
                task: Some(task),
                session: Some(session.id),
            })
            .unwrap();
        let kinds: Vec<&str> = both.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(kinds, ["guidance_added"]);
        assert_eq!(both[0].detail, "use the new API");

        let err = store
            .append_event(&NewEvent {
                task: Some(TaskId(77)),
                session: None,
                kind: redact::Redacted::trusted("x"),
                detail: redact::Redacted::trusted(""),
            })
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(TaskId(77)))),
            "{err:?}"
        );
        let missing = SessionId::new_v4();
        let err = store
            .append_event(&NewEvent {
                task: None,
                session: Some(missing),
                kind: redact::Redacted::trusted("x"),
                detail: redact::Redacted::trusted(""),
            })
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Session(id)) if id == missing),
            "{err:?}"
        );
    }

    fn history_tables_refuse_updates_and_deletes() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        store.record_agent_call(&call(session.id, task, 1)).unwrap();
        for statement in [
            "UPDATE events SET kind = 'edited'",
            "DELETE FROM events",
            "UPDATE agent_calls SET cost_nano_usd = 0",
            "DELETE FROM agent_calls",
        ] {
            let err = raw_text(directory.location(), statement).unwrap_err();
            assert!(err.contains("append-only"), "{statement}: {err}");
        }
        drop(store);
        // The store itself still reads everything.
        let store = directory.open();
        assert_eq!(store.calls_for_task(task).unwrap().len(), 1);
    }

    fn recording_a_call_forgets_its_finished_agent_process() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        store.set_agent_pid(session.id, Some(4242)).unwrap();
        assert!(store.session(session.id).unwrap().agent.is_some());
        store.record_agent_call(&call(session.id, task, 0)).unwrap();
        assert_eq!(store.session(session.id).unwrap().agent, None);
    }
}
