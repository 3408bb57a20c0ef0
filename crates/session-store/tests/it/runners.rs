//! Runners and fences: heartbeats tell a live runner from a silent one on any host, and a
//! runner that lost its claim or its lease is refused every write.

use std::time::Duration;

use session_store::{Fence, SessionStatus, StoreError, TaskStatus, Timestamp};

use crate::common::{add_task, call, fake_owner, new_session, temp_store};

on_both_backends! {
    fn a_call_recorded_again_under_its_key_is_recorded_once() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = new_session(task, fake_owner(1));
        store.open_session(&session).unwrap();
        let keyed = session_store::NewAgentCall {
            key: Some(String::from("7f1c0f4e-0000-4000-8000-000000000001")),
            ..call(session.id, task, 3)
        };
        let first = store.record_agent_call(&keyed).unwrap();
        // The write retried after a lost answer: the same call, the same key.
        let again = store.record_agent_call(&keyed).unwrap();
        assert_eq!(again, first);
        assert_eq!(store.calls_for_task(task).unwrap().len(), 1);
        assert_eq!(store.task(task).unwrap().totals.agent_calls, 1);
        assert_eq!(store.session_usage(session.id).unwrap().agent_calls, 1);
        // Calls without a key are each recorded.
        store.record_agent_call(&call(session.id, task, 4)).unwrap();
        store.record_agent_call(&call(session.id, task, 4)).unwrap();
        assert_eq!(store.calls_for_task(task).unwrap().len(), 3);
    }

    fn each_claim_moves_the_epoch_on_and_fences_off_the_claim_before() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let first = store.claim_task(task, &fake_owner(1)).unwrap();
        let session = new_session(task, fake_owner(1));
        let lease = store.open_session(&session).unwrap();
        assert_eq!(lease.epoch, 1);
        let held = Fence {
            task,
            claim_epoch: first.claim_epoch,
            session: Some((session.id, lease.epoch)),
        };
        // While the claim holds, a fenced batch writes.
        store
            .batch("record under the fence", |batch| {
                batch.check_fence(&held)?;
                batch.record_agent_call(&call(session.id, task, 1)).map(drop)
            })
            .unwrap();

        // Another runner takes the task back (its runner fell silent) and claims it.
        store
            .set_task_status(task, TaskStatus::Pending, None)
            .unwrap();
        let second = store.claim_task(task, &fake_owner(2)).unwrap();
        assert!(second.claim_epoch > first.claim_epoch, "{second:?}");

        let refused = store.batch("record under a lost claim", |batch| {
            batch.check_fence(&held)?;
            batch.record_agent_call(&call(session.id, task, 2))?;
            batch.set_task_status(task, TaskStatus::Completed, None).map(drop)
        });
        assert!(
            matches!(refused, Err(StoreError::Fenced { held: h, current: c, .. }) if h == first.claim_epoch && c == second.claim_epoch),
            "{refused:?}"
        );
        assert!(refused.unwrap_err().to_string().contains("taken over by another runner"));
        // Nothing of the fenced batch was written.
        assert_eq!(store.calls_for_task(task).unwrap().len(), 1);
        assert_eq!(store.task(task).unwrap().status, TaskStatus::Running);
    }

    fn a_lease_taken_over_moves_its_epoch_and_fences_the_holder_before() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let claimed = store.claim_task(task, &fake_owner(1)).unwrap();
        let mut session = new_session(task, fake_owner(1));
        session.lease_ttl = Duration::from_millis(1);
        let first = store.open_session(&session).unwrap();
        // The same holder renewing keeps its epoch.
        let renewed = store
            .renew_lease(session.id, &fake_owner(1), Duration::from_millis(1))
            .unwrap();
        assert_eq!(renewed.epoch, first.epoch);
        std::thread::sleep(Duration::from_millis(5));
        // Expired: another holder takes it, and the epoch moves on.
        let taken = store
            .acquire_lease(session.id, &fake_owner(2), Duration::from_secs(60))
            .unwrap();
        assert_eq!(taken.epoch, first.epoch + 1);
        let old = Fence {
            task,
            claim_epoch: claimed.claim_epoch,
            session: Some((session.id, first.epoch)),
        };
        let refused = store.batch("close under a lost lease", |batch| {
            batch.check_fence(&old)?;
            batch
                .close_session(session.id, SessionStatus::Completed, None)
                .map(drop)
        });
        assert!(matches!(refused, Err(StoreError::Fenced { .. })), "{refused:?}");
        assert_eq!(store.session(session.id).unwrap().status, SessionStatus::Open);
        // A session closed and reopened by another holder moves it on again.
        store
            .close_session(session.id, SessionStatus::Abandoned, None)
            .unwrap();
        let reopened = store
            .reopen_session(session.id, &fake_owner(3), Duration::from_secs(60))
            .unwrap();
        assert_eq!(reopened.epoch, taken.epoch + 1);
    }

    fn a_silent_runner_loses_its_tasks_and_a_beating_one_keeps_them() {
        let (directory, mut store) = temp_store();
        let (quiet, beating) = (fake_owner(1), fake_owner(2));
        let quiet_runner = store.register_runner(&quiet).unwrap();
        let beating_runner = store.register_runner(&beating).unwrap();
        let quiet_task = add_task(&mut store, directory.path(), "quiet");
        let beating_task = add_task(&mut store, directory.path(), "beating");
        let unregistered_task = add_task(&mut store, directory.path(), "unregistered");
        let held = store.claim_task(quiet_task, &quiet).unwrap();
        store.claim_task(beating_task, &beating).unwrap();
        store.claim_task(unregistered_task, &fake_owner(3)).unwrap();

        // Silence means no beat since `stale_before`: the registrations came before it, and
        // only one runner beats after it.
        std::thread::sleep(Duration::from_millis(5));
        let stale_before = Timestamp::now();
        std::thread::sleep(Duration::from_millis(5));
        store.heartbeat(beating_runner).unwrap();
        assert!(!store.is_heartbeating(&quiet, stale_before).unwrap());
        assert!(store.is_heartbeating(&beating, stale_before).unwrap());

        let requeued = store.requeue_tasks_of_silent_runners(stale_before).unwrap();
        assert_eq!(requeued, vec![quiet_task]);
        assert_eq!(store.task(quiet_task).unwrap().status, TaskStatus::Pending);
        assert_eq!(store.task(beating_task).unwrap().status, TaskStatus::Running);
        // Nobody can say a runner that never registered is silent.
        assert_eq!(store.task(unregistered_task).unwrap().status, TaskStatus::Running);

        // The silent runner, back, is fenced off its task.
        let refused = store.batch("finish under a lost claim", |batch| {
            batch.check_fence(&Fence {
                task: quiet_task,
                claim_epoch: held.claim_epoch,
                session: None,
            })
        });
        assert!(matches!(refused, Err(StoreError::Fenced { .. })), "{refused:?}");

        // A runner that stopped cleanly is not heartbeating, whatever its last beat.
        store.stop_runner(beating_runner).unwrap();
        assert!(!store.is_heartbeating(&beating, stale_before).unwrap());
        let runners = store.runners().unwrap();
        assert_eq!(runners.len(), 2);
        assert_eq!(runners[0].id, quiet_runner);
        assert!(runners[0].stopped_at.is_none());
        assert!(runners[1].stopped_at.is_some());
        let events = store
            .events(&session_store::EventFilter::default())
            .unwrap();
        assert!(
            events
                .iter()
                .any(|event| event.kind == session_store::event_kind::RUNNER_SILENT),
            "the silent runner is on record"
        );
    }
    fn a_silent_runners_sessions_are_freed_with_its_tasks() {
        let (directory, mut store) = temp_store();
        let (quiet, beating) = (fake_owner(1), fake_owner(2));
        store.register_runner(&quiet).unwrap();
        let beating_runner = store.register_runner(&beating).unwrap();
        let quiet_task = add_task(&mut store, directory.path(), "quiet");
        let beating_task = add_task(&mut store, directory.path(), "beating");
        store.claim_task(quiet_task, &quiet).unwrap();
        store.claim_task(beating_task, &beating).unwrap();
        // Leases far longer than the silence: only the heartbeat can free them early.
        let mut quiet_session = new_session(quiet_task, quiet.clone());
        quiet_session.lease_ttl = Duration::from_secs(3600);
        let quiet_lease = store.open_session(&quiet_session).unwrap();
        let mut beating_session = new_session(beating_task, beating.clone());
        beating_session.lease_ttl = Duration::from_secs(3600);
        store.open_session(&beating_session).unwrap();

        std::thread::sleep(Duration::from_millis(5));
        let stale_before = Timestamp::now();
        std::thread::sleep(Duration::from_millis(5));
        store.heartbeat(beating_runner).unwrap();
        let requeued = store.requeue_tasks_of_silent_runners(stale_before).unwrap();
        assert_eq!(requeued, vec![quiet_task]);

        // The silent runner's session is abandoned in the same step, its lease unexpired.
        let freed = store.session(quiet_session.id).unwrap();
        assert_eq!(freed.status, SessionStatus::Abandoned, "{freed:?}");
        assert!(freed.lease.is_none(), "{freed:?}");
        // The beating runner keeps its session and its lease.
        let kept = store.session(beating_session.id).unwrap();
        assert_eq!(kept.status, SessionStatus::Open);
        assert_eq!(kept.lease.map(|lease| lease.owner), Some(beating.clone()));

        // A rescuer claims the task and reopens the session at once, under a new epoch.
        let rescuer = fake_owner(3);
        store.claim_task(quiet_task, &rescuer).unwrap();
        let reopened = store
            .reopen_session(quiet_session.id, &rescuer, Duration::from_secs(60))
            .unwrap();
        assert_eq!(reopened.epoch, quiet_lease.epoch + 1);
        let swept = store
            .events(&session_store::EventFilter::default())
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == session_store::event_kind::SESSION_SWEPT)
            .count();
        assert_eq!(swept, 1, "one sweep is on record, for the silent runner's session");
    }
}
