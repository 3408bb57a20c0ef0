//! Leases and sweeps: who may run calls in a session, and what happens when they vanish.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use session_store::{
    EventFilter, LeaseOwner, NewSession, SessionStatus, Store, StoreError, SweepReason, Timestamp,
    event_kind,
};

use crate::common::{add_task, dead_local_owner, fake_owner, new_session, temp_store};

const MINUTE: Duration = Duration::from_secs(60);

on_both_backends! {
    fn a_held_lease_is_refused_to_others_naming_the_holder() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let holder = fake_owner(1);
        let session = new_session(task, holder.clone());
        let lease = store.open_session(&session).unwrap();

        let err = store
            .acquire_lease(session.id, &fake_owner(2), MINUTE)
            .unwrap_err();
        match &err {
            StoreError::LeaseHeld {
                id,
                holder: named,
                expires_at,
            } => {
                assert_eq!(*id, session.id);
                assert_eq!(named, &holder);
                assert_eq!(*expires_at, lease.expires_at);
            }
            other => panic!("expected LeaseHeld, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("process 1 on fake-host.invalid"),
            "{message}"
        );
        assert!(message.contains(&session.id.to_string()), "{message}");

        // The holder acquiring again just renews.
        let again = store.acquire_lease(session.id, &holder, MINUTE).unwrap();
        assert_eq!(again.owner, holder);
    }

    fn an_expired_lease_can_be_taken_over() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let session = NewSession {
            lease_ttl: Duration::ZERO,
            ..new_session(task, fake_owner(1))
        };
        store.open_session(&session).unwrap();
        let taker = fake_owner(2);
        let lease = store.acquire_lease(session.id, &taker, MINUTE).unwrap();
        assert_eq!(lease.owner, taker);
        assert_eq!(store.session(session.id).unwrap().lease, Some(lease));

        // The previous holder finds it gone when it comes back to renew.
        let err = store
            .renew_lease(session.id, &fake_owner(1), MINUTE)
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::LeaseHeld { holder, .. } if *holder == taker),
            "{err:?}"
        );

        let acquisitions = store
            .events(&EventFilter {
                task: None,
                session: Some(session.id),
            })
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == event_kind::LEASE_ACQUIRED)
            .count();
        assert_eq!(acquisitions, 1);
    }

    fn renew_and_release_belong_to_the_holder() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let holder = fake_owner(1);
        let session = NewSession {
            lease_ttl: Duration::from_secs(1),
            ..new_session(task, holder.clone())
        };
        let first = store.open_session(&session).unwrap();
        let renewed = store
            .renew_lease(session.id, &holder, Duration::from_secs(3600))
            .unwrap();
        assert!(renewed.expires_at > first.expires_at);

        let err = store.release_lease(session.id, &fake_owner(2)).unwrap_err();
        assert!(matches!(err, StoreError::LeaseHeld { .. }), "{err:?}");
        store.release_lease(session.id, &holder).unwrap();
        assert_eq!(store.session(session.id).unwrap().lease, None);
        // Releasing what nobody holds is a no-op; renewing it is an error.
        store.release_lease(session.id, &holder).unwrap();
        let err = store.renew_lease(session.id, &holder, MINUTE).unwrap_err();
        assert!(matches!(err, StoreError::LeaseNotHeld { .. }), "{err:?}");
        assert!(err.to_string().contains("acquire it first"), "{err}");

        store.acquire_lease(session.id, &holder, MINUTE).unwrap();
        store
            .close_session(session.id, SessionStatus::Completed, None)
            .unwrap();
        let err = store
            .acquire_lease(session.id, &holder, MINUTE)
            .unwrap_err();
        assert!(matches!(err, StoreError::SessionClosed { .. }), "{err:?}");
        let err = store.renew_lease(session.id, &holder, MINUTE).unwrap_err();
        assert!(matches!(err, StoreError::SessionClosed { .. }), "{err:?}");
        store.release_lease(session.id, &holder).unwrap();
    }

    fn threads_racing_for_one_lease_have_exactly_one_winner() {
        const RACERS: u32 = 8;
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        // Opened by a lease that is already expired, so the lease is up for grabs.
        let session = NewSession {
            lease_ttl: Duration::ZERO,
            ..new_session(task, fake_owner(999))
        };
        store.open_session(&session).unwrap();
        let path = directory.location().to_owned();

        let barrier = Arc::new(Barrier::new(RACERS as usize));
        let racers: Vec<_> = (0..RACERS)
            .map(|index| {
                let barrier = Arc::clone(&barrier);
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut store = Store::open_with(&path, &crate::common::options()).unwrap();
                    let owner = fake_owner(index + 1);
                    barrier.wait();
                    (
                        owner.clone(),
                        store.acquire_lease(session.id, &owner, MINUTE),
                    )
                })
            })
            .collect();
        let results: Vec<(LeaseOwner, Result<_, StoreError>)> = racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .collect();

        let winners: Vec<&LeaseOwner> = results
            .iter()
            .filter(|(_, result)| result.is_ok())
            .map(|(owner, _)| owner)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let winner = winners[0];
        for (owner, result) in &results {
            if owner != winner {
                match result {
                    Err(StoreError::LeaseHeld { holder, .. }) => assert_eq!(holder, winner),
                    other => panic!("a loser should see LeaseHeld, got {other:?}"),
                }
            }
        }
        let lease = store.session(session.id).unwrap().lease.unwrap();
        assert_eq!(&lease.owner, winner);
    }

    fn a_sweep_abandons_dead_and_expired_sessions_and_spares_live_ones() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let me = LeaseOwner::current().unwrap();
        let now = Timestamp::now();

        let live = new_session(task, me.clone());
        let dead = new_session(task, dead_local_owner());
        let expired = NewSession {
            lease_ttl: Duration::from_secs(1),
            ..new_session(task, me.clone())
        };
        let remote_alive = new_session(task, fake_owner(7));
        let remote_expired = NewSession {
            lease_ttl: Duration::from_secs(1),
            ..new_session(task, fake_owner(8))
        };
        let released = new_session(task, me.clone());
        for session in [
            &live,
            &dead,
            &expired,
            &remote_alive,
            &remote_expired,
            &released,
        ] {
            store.open_session(session).unwrap();
        }
        store.set_agent_pid(dead.id, Some(31337)).unwrap();
        store.release_lease(released.id, &me).unwrap();
        let closed = new_session(task, dead_local_owner());
        store.open_session(&closed).unwrap();
        store
            .close_session(closed.id, SessionStatus::Completed, None)
            .unwrap();

        // A minute from now the one-second leases have expired; the hour-long ones have not.
        let later = now.saturating_add(MINUTE);
        let swept = store.sweep_stale(later, LeaseOwner::is_alive).unwrap();

        let reason_of = |id| {
            swept
                .iter()
                .find(|swept| swept.id == id)
                .map(|swept| swept.reason)
        };
        assert_eq!(swept.len(), 4, "{swept:?}");
        assert_eq!(reason_of(dead.id), Some(SweepReason::OwnerGone));
        assert_eq!(reason_of(expired.id), Some(SweepReason::LeaseExpired));
        assert_eq!(
            reason_of(remote_expired.id),
            Some(SweepReason::LeaseExpired)
        );
        assert_eq!(reason_of(released.id), Some(SweepReason::Unowned));

        let dead_report = swept.iter().find(|swept| swept.id == dead.id).unwrap();
        assert_eq!(dead_report.task, task);
        assert_eq!(dead_report.agent.map(|agent| agent.pid), Some(31337));
        assert_eq!(dead_report.owner, Some(dead_local_owner()));

        for id in [dead.id, expired.id, remote_expired.id, released.id] {
            let session = store.session(id).unwrap();
            assert_eq!(session.status, SessionStatus::Abandoned);
            assert_eq!(session.lease, None);
            assert_eq!(session.ended_at, Some(later));
            assert!(session.end_reason.is_some());
            let events = store
                .events(&EventFilter {
                    task: None,
                    session: Some(id),
                })
                .unwrap();
            assert_eq!(events.last().unwrap().kind, event_kind::SESSION_SWEPT);
        }
        for id in [live.id, remote_alive.id] {
            let session = store.session(id).unwrap();
            assert_eq!(session.status, SessionStatus::Open);
            assert!(session.lease.is_some());
        }
        assert_eq!(
            store.session(closed.id).unwrap().status,
            SessionStatus::Completed
        );
        assert!(
            store
                .session(dead.id)
                .unwrap()
                .end_reason
                .unwrap()
                .contains("is gone")
        );

        // Sweeping again finds nothing new.
        assert!(
            store
                .sweep_stale(later, LeaseOwner::is_alive)
                .unwrap()
                .is_empty()
        );
    }

    fn a_sweep_asks_the_callers_liveness_check() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let doomed = new_session(task, fake_owner(1));
        let spared = new_session(task, fake_owner(2));
        store.open_session(&doomed).unwrap();
        store.open_session(&spared).unwrap();
        let swept = store
            .sweep_stale(Timestamp::now(), |owner| owner.pid != 1)
            .unwrap();
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].id, doomed.id);
        assert_eq!(swept[0].reason, SweepReason::OwnerGone);
    }
}
