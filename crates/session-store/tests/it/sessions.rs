//! Sessions: opening, recording calls into them, closing and reopening.

use agent::{ErrorKind, ExitInfo, SessionId};
use session_store::{
    CallOutcome, EventFilter, LeaseOwner, Missing, NewSession, NewTask, SessionFilter,
    SessionPolicy, SessionStatus, Store, StoreError, TaskId, Timestamp, event_kind,
};

use crate::common::{add_milestone, add_task, call, fake_owner, new_session, raw_text, temp_store};

on_both_backends! {
    fn an_opened_session_and_its_lease_are_committed_before_open_returns() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let owner = LeaseOwner::current().unwrap();
        let session = new_session(task, owner.clone());
        let lease = store.open_session(&session).unwrap();
        assert_eq!(lease.owner, owner);

        // Another connection, as another process would have, sees the row and the lease.
        let other = Store::open_with(directory.location(), &crate::common::options()).unwrap();
        let seen = other.session(session.id).unwrap();
        assert_eq!(seen.id, session.id);
        assert_eq!(seen.task, task);
        assert_eq!(seen.policy, SessionPolicy::Task);
        assert_eq!(seen.status, SessionStatus::Open);
        assert_eq!(seen.lease, Some(lease));
        assert_eq!(seen.ended_at, None);
        assert_eq!(seen.totals, Default::default());

        assert!(seen.started_at <= Timestamp::now());
    }

    fn session_ids_are_stored_as_lowercase_hyphenated_text() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        let stored = raw_text(directory.location(), "SELECT id FROM sessions").unwrap();
        assert_eq!(stored, session.id.to_string());
        assert_eq!(stored, stored.to_lowercase());
        assert_eq!(stored.len(), 36);
    }

    fn a_session_id_is_opened_once() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        let err = store.open_session(&session).unwrap_err();
        assert!(
            matches!(err, StoreError::SessionExists { id } if id == session.id),
            "{err:?}"
        );
    }

    fn a_session_agrees_with_its_tasks_milestone() {
        let (directory, mut store) = temp_store();
        let milestone = add_milestone(&mut store, "m");
        let grouped = store
            .add_task(&NewTask {
                milestone: Some(milestone),
                ..NewTask::new(
                    redact::Redacted::trusted("grouped"),
                    redact::Redacted::trusted("p"),
                    directory.path(),
                )
            })
            .unwrap();
        let loose = add_task(&mut store, directory.path(), "loose");

        let err = store
            .open_session(&new_session(grouped, fake_owner(1)))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::MilestoneMismatch { task, task_milestone: Some(_), expected: None } if task == grouped),
            "{err:?}"
        );
        let err = store
            .open_session(&NewSession {
                milestone: Some(milestone),
                ..new_session(loose, fake_owner(1))
            })
            .unwrap_err();
        assert!(
            matches!(err, StoreError::MilestoneMismatch { .. }),
            "{err:?}"
        );
        let err = store
            .open_session(&NewSession {
                policy: SessionPolicy::Milestone,
                ..new_session(loose, fake_owner(1))
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Invalid {
                    field: "session policy",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = store
            .open_session(&new_session(TaskId(404), fake_owner(1)))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(TaskId(404)))),
            "{err:?}"
        );
    }

    fn recording_for_a_session_never_opened_names_the_session_and_writes_nothing() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let never_opened = SessionId::new_v4();
        let err = store
            .record_agent_call(&call(never_opened, task, 1))
            .unwrap_err();
        match &err {
            StoreError::NotFound(Missing::Session(id)) => assert_eq!(*id, never_opened),
            other => panic!("expected NotFound(Session), got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!("session {never_opened} does not exist in the ledger")
        );
        assert!(store.calls_for_task(task).unwrap().is_empty());
        assert_eq!(store.task_usage(task).unwrap(), Default::default());
        let err = store.calls_for_session(never_opened).unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Session(_))),
            "{err:?}"
        );
        let err = store.session_usage(never_opened).unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Session(_))),
            "{err:?}"
        );
    }

    fn recording_into_a_closed_session_is_refused() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        store.record_agent_call(&call(session.id, task, 0)).unwrap();
        store
            .close_session(session.id, SessionStatus::Completed, None)
            .unwrap();
        let err = store
            .record_agent_call(&call(session.id, task, 1))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::SessionClosed { id, status: SessionStatus::Completed } if id == session.id),
            "{err:?}"
        );
        assert_eq!(store.calls_for_session(session.id).unwrap().len(), 1);
        assert_eq!(store.session_usage(session.id).unwrap().agent_calls, 1);
        assert_eq!(store.task_usage(task).unwrap().agent_calls, 1);
    }

    fn a_task_cannot_record_into_another_tasks_session() {
        let (directory, mut store) = temp_store();
        let first = add_task(&mut store, directory.path(), "first");
        let second = add_task(&mut store, directory.path(), "second");
        let session = new_session(first, fake_owner(1));
        store.open_session(&session).unwrap();
        let err = store
            .record_agent_call(&call(session.id, second, 1))
            .unwrap_err();
        match err {
            StoreError::WrongTask {
                session: named,
                session_task,
                task,
            } => assert_eq!((named, session_task, task), (session.id, first, second)),
            other => panic!("expected WrongTask, got {other:?}"),
        }
        // The refused call left no trace, not even in the session's totals.
        assert_eq!(store.session_usage(session.id).unwrap(), Default::default());
        assert!(store.calls_for_task(second).unwrap().is_empty());
    }

    fn a_milestone_session_takes_calls_for_the_tasks_of_its_milestone_only() {
        let (directory, mut store) = temp_store();
        let milestone = add_milestone(&mut store, "m");
        let other_milestone = add_milestone(&mut store, "other");
        let in_milestone = |title: &str, milestone| NewTask {
            milestone: Some(milestone),
            ..NewTask::new(
                crate::common::composed(title.to_owned()),
                crate::common::text("p"),
                directory.path(),
            )
        };
        let first = store.add_task(&in_milestone("first", milestone)).unwrap();
        let second = store.add_task(&in_milestone("second", milestone)).unwrap();
        let stranger = store
            .add_task(&in_milestone("stranger", other_milestone))
            .unwrap();
        let loose = add_task(&mut store, directory.path(), "loose");

        let session = NewSession {
            milestone: Some(milestone),
            policy: SessionPolicy::Milestone,
            ..new_session(first, fake_owner(1))
        };
        store.open_session(&session).unwrap();
        store
            .record_agent_call(&call(session.id, first, 1))
            .unwrap();
        store
            .record_agent_call(&call(session.id, second, 2))
            .unwrap();
        for outsider in [stranger, loose] {
            let err = store
                .record_agent_call(&call(session.id, outsider, 3))
                .unwrap_err();
            assert!(
                matches!(err, StoreError::MilestoneMismatch { task, .. } if task == outsider),
                "{err:?}"
            );
        }
        let err = store
            .record_agent_call(&call(session.id, TaskId(999), 3))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(TaskId(999)))),
            "{err:?}"
        );
        assert_eq!(store.session_usage(session.id).unwrap().agent_calls, 2);
        assert_eq!(store.task_usage(second).unwrap().agent_calls, 1);
    }

    fn closing_twice_in_the_same_state_is_a_no_op_and_in_another_a_conflict() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        store
            .close_session(
                session.id,
                SessionStatus::Failed,
                Some(&redact::Redacted::trusted("agent crashed")),
            )
            .unwrap();
        let closed = store.session(session.id).unwrap();
        assert_eq!(closed.status, SessionStatus::Failed);
        assert_eq!(closed.lease, None, "closing releases the lease");
        assert_eq!(closed.end_reason.as_deref(), Some("agent crashed"));
        assert!(closed.ended_at.is_some());

        store
            .close_session(
                session.id,
                SessionStatus::Failed,
                Some(&redact::Redacted::trusted("a second guard")),
            )
            .unwrap();
        assert_eq!(
            store.session(session.id).unwrap(),
            closed,
            "nothing changed"
        );

        let err = store
            .close_session(session.id, SessionStatus::Completed, None)
            .unwrap_err();
        match &err {
            StoreError::CloseConflict {
                id,
                current,
                requested,
            } => {
                assert_eq!(*id, session.id);
                assert_eq!(*current, SessionStatus::Failed);
                assert_eq!(*requested, SessionStatus::Completed);
            }
            other => panic!("expected CloseConflict, got {other:?}"),
        }
        assert_eq!(store.session(session.id).unwrap(), closed);

        let err = store
            .close_session(session.id, SessionStatus::Open, None)
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
        let err = store
            .close_session(SessionId::new_v4(), SessionStatus::Completed, None)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Session(_))),
            "{err:?}"
        );
    }

    fn a_closed_session_can_be_reopened_to_resume_it_unless_it_was_rotated() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        store.record_agent_call(&call(session.id, task, 1)).unwrap();
        store
            .close_session(
                session.id,
                SessionStatus::Abandoned,
                Some(&redact::Redacted::trusted("runner died")),
            )
            .unwrap();

        let successor = fake_owner(2);
        let lease = store
            .reopen_session(session.id, &successor, std::time::Duration::from_secs(60))
            .unwrap();
        assert_eq!(lease.owner, successor);
        let reopened = store.session(session.id).unwrap();
        assert_eq!(reopened.status, SessionStatus::Open);
        assert_eq!(reopened.ended_at, None);
        assert_eq!(reopened.end_reason, None);
        assert_eq!(reopened.totals.agent_calls, 1, "totals carry over");
        // The row forgot how the session ended; the event log did not.
        let events = store
            .events(&EventFilter {
                task: None,
                session: Some(session.id),
            })
            .unwrap();
        let reopen = events.last().unwrap();
        assert_eq!(reopen.kind, event_kind::SESSION_REOPENED);
        let detail: serde_json::Value = serde_json::from_str(&reopen.detail).unwrap();
        assert_eq!(detail["was"], "abandoned");
        assert_eq!(detail["end_reason"], "runner died");
        assert_eq!(detail["owner"]["pid"], 2);
        store.record_agent_call(&call(session.id, task, 2)).unwrap();

        // Reopening an open session held by someone else is a lease question.
        let err = store
            .reopen_session(
                session.id,
                &fake_owner(3),
                std::time::Duration::from_secs(60),
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseHeld { .. }), "{err:?}");

        store
            .close_session(
                session.id,
                SessionStatus::Rotated,
                Some(&redact::Redacted::trusted("context full")),
            )
            .unwrap();
        let err = store
            .reopen_session(session.id, &successor, std::time::Duration::from_secs(60))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::SessionRotated { id } if id == session.id),
            "{err:?}"
        );
    }

    fn the_agent_process_is_recorded_on_an_open_session_only() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        // A live process is recorded with its start time, and is found running by it.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        store.set_agent_pid(session.id, Some(child.id())).unwrap();
        let agent = store.session(session.id).unwrap().agent.unwrap();
        assert_eq!(agent.pid, child.id());
        assert_ne!(agent.start_time, 0);
        assert!(agent.is_running());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!agent.is_running(), "a dead agent is not running");
        // A pid that names no live process is recorded so that it never counts as running.
        store.set_agent_pid(session.id, Some(4242)).unwrap();
        let agent = store.session(session.id).unwrap().agent.unwrap();
        assert_eq!((agent.pid, agent.start_time), (4242, 0));
        assert!(!agent.is_running());
        store.set_agent_pid(session.id, None).unwrap();
        assert_eq!(store.session(session.id).unwrap().agent, None);
        store
            .close_session(session.id, SessionStatus::Completed, None)
            .unwrap();
        let err = store.set_agent_pid(session.id, Some(1)).unwrap_err();
        assert!(matches!(err, StoreError::SessionClosed { .. }), "{err:?}");
        let err = store
            .set_agent_pid(SessionId::new_v4(), Some(1))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Session(_))),
            "{err:?}"
        );
    }

    fn sessions_are_listed_by_task_and_status() {
        let (directory, mut store) = temp_store();
        let first = add_task(&mut store, directory.path(), "first");
        let second = add_task(&mut store, directory.path(), "second");
        let a = new_session(first, fake_owner(1));
        let b = new_session(first, fake_owner(1));
        let c = new_session(second, fake_owner(1));
        for session in [&a, &b, &c] {
            store.open_session(session).unwrap();
        }
        store
            .close_session(b.id, SessionStatus::Rotated, None)
            .unwrap();

        let ids = |filter: SessionFilter| -> Vec<SessionId> {
            let mut ids: Vec<SessionId> = store
                .sessions(&filter)
                .unwrap()
                .into_iter()
                .map(|session| session.id)
                .collect();
            ids.sort();
            ids
        };
        let sorted = |mut ids: Vec<SessionId>| {
            ids.sort();
            ids
        };
        assert_eq!(
            ids(SessionFilter::default()),
            sorted(vec![a.id, b.id, c.id])
        );
        assert_eq!(
            ids(SessionFilter {
                task: Some(first),
                ..SessionFilter::default()
            }),
            sorted(vec![a.id, b.id])
        );
        assert_eq!(
            ids(SessionFilter {
                task: Some(first),
                status: Some(SessionStatus::Open),
                ..SessionFilter::default()
            }),
            vec![a.id]
        );
        let err = store
            .sessions(&SessionFilter {
                task: Some(TaskId(1234)),
                ..SessionFilter::default()
            })
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(_))),
            "{err:?}"
        );
    }

    fn a_failed_call_records_its_error_kind_and_figures() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        let mut failed = call(session.id, task, 5);
        failed.outcome = CallOutcome::Failed(ErrorKind::MaxTurns);
        failed.subtype = Some(crate::common::text("error_max_turns"));
        failed.error_message = Some(crate::common::text(
            "the agent reached its limit of 3 turns",
        ));
        failed.exit = Some(ExitInfo::Signal(15));
        failed.result_text = None;
        store.record_agent_call(&failed).unwrap();

        let recorded = store.calls_for_session(session.id).unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            recorded[0].outcome,
            CallOutcome::Failed(ErrorKind::MaxTurns)
        );
        assert_eq!(recorded[0].exit, Some(ExitInfo::Signal(15)));
        let word = raw_text(directory.location(), "SELECT outcome FROM agent_calls").unwrap();
        assert_eq!(word, "max_turns");
        assert_eq!(store.session_usage(session.id).unwrap().usage, failed.usage);
    }

    fn sessions_are_listed_by_milestone() {
        let (directory, mut store) = temp_store();
        let milestone = add_milestone(&mut store, "m");
        let grouped = store
            .add_task(&NewTask {
                milestone: Some(milestone),
                ..NewTask::new(
                    redact::Redacted::trusted("grouped"),
                    redact::Redacted::trusted("p"),
                    directory.path(),
                )
            })
            .unwrap();
        let loose = add_task(&mut store, directory.path(), "loose");
        let shared = NewSession {
            milestone: Some(milestone),
            policy: SessionPolicy::Milestone,
            ..new_session(grouped, fake_owner(1))
        };
        store.open_session(&shared).unwrap();
        store
            .open_session(&new_session(loose, fake_owner(1)))
            .unwrap();
        let found: Vec<SessionId> = store
            .sessions(&SessionFilter {
                milestone: Some(milestone),
                ..SessionFilter::default()
            })
            .unwrap()
            .iter()
            .map(|session| session.id)
            .collect();
        assert_eq!(found, [shared.id]);
    }
}
