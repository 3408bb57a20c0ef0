//! Tasks and milestones: adding, reading, listing, the state machine and dependencies.

use std::sync::Barrier;

use session_store::{
    EventFilter, LeaseOwner, MilestoneId, Missing, NewMilestone, NewTask, SessionPolicy, Store,
    StoreError, Task, TaskFilter, TaskId, TaskStatus, event_kind,
};

use crate::common::{add_milestone, add_task, dead_local_owner, fake_owner, temp_store};

/// A path through the state machine from `pending` to each state.
fn path_to(status: TaskStatus) -> &'static [TaskStatus] {
    use TaskStatus::*;
    match status {
        Pending => &[],
        Running => &[Running],
        Completed => &[Running, Completed],
        Failed => &[Running, Failed],
        Blocked => &[Running, Blocked],
        Cancelled => &[Cancelled],
    }
}

on_both_backends! {
    fn a_task_reads_back_as_it_was_added() {
        let (directory, mut store) = temp_store();
        let milestone = store
            .create_milestone(&NewMilestone {
                name: redact::Redacted::trusted("m1"),
                description: redact::Redacted::trusted("the first milestone"),
                policy: Some(SessionPolicy::Milestone),
            })
            .unwrap();
        let first = add_task(&mut store, directory.path(), "first");
        let new = NewTask {
            title: redact::Redacted::trusted("second"),
            prompt: redact::Redacted::trusted("make the tests pass"),
            milestone: Some(milestone),
            working_dir: directory.path().join("work"),
            max_iterations: 4,
            max_turns: Some(30),
            policy: Some(SessionPolicy::Fresh),
            verify_commands: vec![
                crate::common::text("cargo test"),
                crate::common::text("cargo clippy"),
            ],
            after: vec![first, first],
        };
        let id = store.add_task(&new).unwrap();
        let task = store.task(id).unwrap();

        assert_eq!(task.id, id);
        assert_eq!(new.title, task.title);
        assert_eq!(new.prompt, task.prompt);
        assert_eq!(task.status, TaskStatus::Pending);
        assert_eq!(task.milestone, Some(milestone));
        assert_eq!(task.working_dir, new.working_dir);
        assert_eq!(task.max_iterations, 4);
        assert_eq!(task.max_turns, Some(30));
        assert_eq!(task.policy, Some(SessionPolicy::Fresh));
        assert_eq!(new.verify_commands, task.verify_commands);
        assert_eq!(task.after, vec![first]);
        assert_eq!(task.failure_reason, None);
        assert_eq!(task.started_at, None);
        assert_eq!(task.finished_at, None);
        assert_eq!(task.iterations, 0);
        assert_eq!(task.totals, Default::default());
        assert_eq!(task.created_at, task.updated_at);

        let events = store
            .events(&EventFilter {
                task: Some(id),
                session: None,
            })
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, event_kind::TASK_ADDED);
    }

    fn invalid_tasks_are_refused_before_anything_is_written() {
        let (directory, mut store) = temp_store();
        let cases: Vec<(NewTask, &str)> = vec![
            (
                NewTask::new(
                    redact::Redacted::trusted(" "),
                    redact::Redacted::trusted("p"),
                    directory.path(),
                ),
                "task title",
            ),
            (
                NewTask {
                    max_iterations: 0,
                    ..NewTask::new(
                        redact::Redacted::trusted("t"),
                        redact::Redacted::trusted("p"),
                        directory.path(),
                    )
                },
                "max iterations",
            ),
            (
                NewTask {
                    max_turns: Some(0),
                    ..NewTask::new(
                        redact::Redacted::trusted("t"),
                        redact::Redacted::trusted("p"),
                        directory.path(),
                    )
                },
                "max turns",
            ),
            (
                NewTask::new(
                    redact::Redacted::trusted("t"),
                    redact::Redacted::trusted("p"),
                    "relative/dir",
                ),
                "working directory",
            ),
            (
                NewTask {
                    verify_commands: vec![crate::common::text("true"), crate::common::text("")],
                    ..NewTask::new(
                        redact::Redacted::trusted("t"),
                        redact::Redacted::trusted("p"),
                        directory.path(),
                    )
                },
                "verification command",
            ),
        ];
        for (task, expected_field) in cases {
            match store.add_task(&task) {
                Err(StoreError::Invalid { field, .. }) => assert_eq!(field, expected_field),
                other => panic!("expected Invalid {expected_field}, got {other:?}"),
            }
        }
        assert!(store.tasks(&TaskFilter::default()).unwrap().is_empty());
    }

    fn missing_ids_are_typed_not_found_errors_naming_them() {
        let (directory, mut store) = temp_store();
        let err = store.task(TaskId(41)).unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(TaskId(41)))),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "task 41 does not exist in the ledger");

        let err = store.milestone(MilestoneId(3)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotFound(Missing::Milestone(MilestoneId(3)))
            ),
            "{err:?}"
        );
        let err = store.milestone_by_name("nope").unwrap_err();
        assert_eq!(
            err.to_string(),
            "milestone `nope` does not exist in the ledger"
        );

        let new = NewTask {
            after: vec![TaskId(99)],
            ..NewTask::new(
                redact::Redacted::trusted("t"),
                redact::Redacted::trusted("p"),
                directory.path(),
            )
        };
        let err = store.add_task(&new).unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(TaskId(99)))),
            "{err:?}"
        );
        let new = NewTask {
            milestone: Some(MilestoneId(5)),
            ..NewTask::new(
                redact::Redacted::trusted("t"),
                redact::Redacted::trusted("p"),
                directory.path(),
            )
        };
        let err = store.add_task(&new).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotFound(Missing::Milestone(MilestoneId(5)))
            ),
            "{err:?}"
        );

        let task = add_task(&mut store, directory.path(), "real");
        let err = store.add_dependency(task, TaskId(77)).unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(TaskId(77)))),
            "{err:?}"
        );
        let err = store
            .set_task_status(TaskId(78), TaskStatus::Running, None)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(TaskId(78)))),
            "{err:?}"
        );
        let err = store.task_usage(TaskId(79)).unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(TaskId(79)))),
            "{err:?}"
        );
        let err = store.milestone_usage(MilestoneId(80)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotFound(Missing::Milestone(MilestoneId(80)))
            ),
            "{err:?}"
        );
    }

    fn milestones_are_unique_by_name_and_listed_in_order() {
        let (_directory, mut store) = temp_store();
        let first = add_milestone(&mut store, "alpha");
        let second = store
            .create_milestone(&NewMilestone {
                name: redact::Redacted::trusted("beta"),
                description: redact::Redacted::trusted("later"),
                policy: Some(SessionPolicy::Task),
            })
            .unwrap();
        let err = store
            .create_milestone(&NewMilestone {
                name: redact::Redacted::trusted("alpha"),
                description: redact::Redacted::trusted(""),
                policy: None,
            })
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::MilestoneExists { name } if name == "alpha"),
            "{err:?}"
        );

        assert_eq!(store.milestone_by_name("beta").unwrap().id, second);
        assert_eq!(store.milestone(first).unwrap().name, "alpha");
        let names: Vec<String> = store
            .milestones()
            .unwrap()
            .into_iter()
            .map(|milestone| milestone.name)
            .collect();
        assert_eq!(names, ["alpha", "beta"]);
    }

    fn tasks_are_listed_by_status_and_milestone() {
        let (directory, mut store) = temp_store();
        let milestone = add_milestone(&mut store, "m");
        let loose = add_task(&mut store, directory.path(), "loose");
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
        store
            .set_task_status(grouped, TaskStatus::Running, None)
            .unwrap();

        let ids = |filter: TaskFilter| -> Vec<TaskId> {
            store
                .tasks(&filter)
                .unwrap()
                .into_iter()
                .map(|task| task.id)
                .collect()
        };
        assert_eq!(ids(TaskFilter::default()), [loose, grouped]);
        assert_eq!(
            ids(TaskFilter {
                status: Some(TaskStatus::Pending),
                milestone: None
            }),
            [loose]
        );
        assert_eq!(
            ids(TaskFilter {
                status: None,
                milestone: Some(milestone)
            }),
            [grouped]
        );
        assert_eq!(
            ids(TaskFilter {
                status: Some(TaskStatus::Pending),
                milestone: Some(milestone)
            }),
            Vec::<TaskId>::new()
        );
    }

    /// Every (from, to) pair: the allowed ones succeed and log an event, the others are refused
    /// with an error naming the task and both states, and change nothing.
    fn every_transition_is_allowed_or_refused_as_the_state_machine_says() {
        let (directory, mut store) = temp_store();
        let allowed: &[(TaskStatus, TaskStatus)] = {
            use TaskStatus::*;
            &[
                (Pending, Running),
                (Pending, Cancelled),
                (Running, Completed),
                (Running, Failed),
                (Running, Blocked),
                (Running, Cancelled),
                (Running, Pending),
                (Failed, Pending),
                (Blocked, Pending),
                (Cancelled, Pending),
            ]
        };
        let mut checked = 0;
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                let task = add_task(&mut store, directory.path(), &format!("{from} to {to}"));
                for step in path_to(from) {
                    store.set_task_status(task, *step, None).unwrap();
                }
                assert_eq!(store.task(task).unwrap().status, from);
                let events_before = store
                    .events(&EventFilter {
                        task: Some(task),
                        session: None,
                    })
                    .unwrap()
                    .len();

                let result =
                    store.set_task_status(task, to, Some(&redact::Redacted::trusted("because")));
                let events_after = store
                    .events(&EventFilter {
                        task: Some(task),
                        session: None,
                    })
                    .unwrap();
                if allowed.contains(&(from, to)) {
                    assert_eq!(result.unwrap(), from, "{from} -> {to}");
                    assert_eq!(store.task(task).unwrap().status, to);
                    assert_eq!(events_after.len(), events_before + 1);
                    let last = events_after.last().unwrap();
                    assert_eq!(last.kind, event_kind::TASK_STATUS);
                    let detail: serde_json::Value = serde_json::from_str(&last.detail).unwrap();
                    assert_eq!(detail["from"], from.as_str());
                    assert_eq!(detail["to"], to.as_str());
                    assert_eq!(detail["reason"], "because");
                } else {
                    match result {
                        Err(StoreError::InvalidTransition {
                            task: named,
                            from: named_from,
                            to: named_to,
                        }) => {
                            assert_eq!((named, named_from, named_to), (task, from, to));
                        }
                        other => panic!("{from} -> {to} should be refused, got {other:?}"),
                    }
                    assert_eq!(store.task(task).unwrap().status, from);
                    assert_eq!(events_after.len(), events_before);
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 36);
    }

    fn failure_reasons_and_times_follow_the_state() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        store
            .set_task_status(task, TaskStatus::Running, None)
            .unwrap();
        let running = store.task(task).unwrap();
        assert!(running.started_at.is_some());
        assert_eq!(running.finished_at, None);

        store
            .set_task_status(
                task,
                TaskStatus::Failed,
                Some(&redact::Redacted::trusted("tests still fail")),
            )
            .unwrap();
        let failed = store.task(task).unwrap();
        assert_eq!(failed.failure_reason.as_deref(), Some("tests still fail"));
        assert!(failed.finished_at.is_some());

        store
            .set_task_status(
                task,
                TaskStatus::Pending,
                Some(&redact::Redacted::trusted("retry")),
            )
            .unwrap();
        let retried = store.task(task).unwrap();
        assert_eq!(retried.failure_reason, None);
        assert_eq!(retried.finished_at, None);
        // The first start is kept.
        assert_eq!(retried.started_at, running.started_at);
    }

    fn a_task_starts_only_after_its_dependencies_complete() {
        let (directory, mut store) = temp_store();
        let first = add_task(&mut store, directory.path(), "first");
        let second = add_task(&mut store, directory.path(), "second");
        let last = store
            .add_task(&NewTask {
                after: vec![first, second],
                ..NewTask::new(
                    redact::Redacted::trusted("last"),
                    redact::Redacted::trusted("p"),
                    directory.path(),
                )
            })
            .unwrap();

        let ready = |store: &Store| -> Vec<TaskId> {
            store
                .ready_tasks()
                .unwrap()
                .into_iter()
                .map(|task| task.id)
                .collect()
        };
        assert_eq!(ready(&store), [first, second]);
        let err = store
            .set_task_status(last, TaskStatus::Running, None)
            .unwrap_err();
        match &err {
            StoreError::DependenciesUnmet { task, waiting_on } => {
                assert_eq!(*task, last);
                assert_eq!(waiting_on, &[first, second]);
            }
            other => panic!("expected DependenciesUnmet, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!("task {last} cannot start yet: it waits for tasks {first}, {second} to complete")
        );

        for task in [first, second] {
            store
                .set_task_status(task, TaskStatus::Running, None)
                .unwrap();
        }
        assert_eq!(ready(&store), Vec::<TaskId>::new());
        store
            .set_task_status(first, TaskStatus::Completed, None)
            .unwrap();
        store
            .set_task_status(second, TaskStatus::Failed, None)
            .unwrap();
        assert_eq!(ready(&store), Vec::<TaskId>::new());
        store
            .set_task_status(second, TaskStatus::Pending, None)
            .unwrap();
        store
            .set_task_status(second, TaskStatus::Running, None)
            .unwrap();
        store
            .set_task_status(second, TaskStatus::Completed, None)
            .unwrap();
        assert_eq!(ready(&store), [last]);
        store
            .set_task_status(last, TaskStatus::Running, None)
            .unwrap();
    }

    fn a_dependency_that_closes_a_cycle_is_refused_naming_the_cycle() {
        let (directory, mut store) = temp_store();
        let one = add_task(&mut store, directory.path(), "one");
        let two = store
            .add_task(&NewTask {
                after: vec![one],
                ..NewTask::new(
                    redact::Redacted::trusted("two"),
                    redact::Redacted::trusted("p"),
                    directory.path(),
                )
            })
            .unwrap();
        let three = add_task(&mut store, directory.path(), "three");
        store.add_dependency(three, two).unwrap();
        // Adding it again is a no-op, not an error, and logs nothing new.
        store.add_dependency(three, two).unwrap();
        let dependency_events = store
            .events(&EventFilter {
                task: Some(three),
                session: None,
            })
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == event_kind::DEPENDENCY_ADDED)
            .count();
        assert_eq!(dependency_events, 1);

        // one would wait for three, which waits for two, which waits for one.
        let err = store.add_dependency(one, three).unwrap_err();
        match &err {
            StoreError::DependencyCycle { task, on, cycle } => {
                assert_eq!((*task, *on), (one, three));
                assert_eq!(cycle, &[one, three, two, one]);
            }
            other => panic!("expected DependencyCycle, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("{one} → {three} → {two} → {one}")),
            "{err}"
        );
        assert!(store.task(one).unwrap().after.is_empty());

        let err = store.add_dependency(two, two).unwrap_err();
        assert!(
            matches!(&err, StoreError::DependencyCycle { cycle, .. } if cycle == &[two, two]),
            "{err:?}"
        );

        // A diamond is not a cycle.
        let four = store
            .add_task(&NewTask {
                after: vec![two, three],
                ..NewTask::new(
                    redact::Redacted::trusted("four"),
                    redact::Redacted::trusted("p"),
                    directory.path(),
                )
            })
            .unwrap();
        store.add_dependency(four, one).unwrap();
        assert_eq!(store.task(four).unwrap().after, [one, two, three]);
    }

    fn working_directories_must_be_text() {
        use std::os::unix::ffi::OsStrExt;
        let (directory, mut store) = temp_store();
        let mut path = directory.path().to_owned();
        path.push(std::ffi::OsStr::from_bytes(b"not-\xff-utf8"));
        let err = store
            .add_task(&NewTask::new(
                redact::Redacted::trusted("t"),
                redact::Redacted::trusted("p"),
                path,
            ))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Invalid {
                    field: "working directory",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    fn claiming_records_the_runner_and_only_one_claim_wins() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        let me = LeaseOwner::current().unwrap();
        let claimed = store.claim_task(task, &me).unwrap();
        assert_eq!(claimed.status, TaskStatus::Running);
        assert_eq!(claimed.runner, Some(me.clone()));
        let err = store.claim_task(task, &fake_owner(7)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::InvalidTransition {
                    from: TaskStatus::Running,
                    ..
                }
            ),
            "{err:?}"
        );
        // Leaving `running` forgets the runner.
        store
            .set_task_status(task, TaskStatus::Completed, None)
            .unwrap();
        assert_eq!(store.task(task).unwrap().runner, None);
    }

    /// Threads with stores of their own claim one task at the same moment (a barrier releases
    /// them together), round after round: each time exactly one wins and is recorded as the
    /// runner, and every other is told the task is running already (not, say, that the ledger
    /// was busy).
    fn threads_racing_to_claim_a_task_yield_one_runner() {
        const THREADS: u32 = 6;
        const ROUNDS: usize = 20;
        let (directory, mut store) = temp_store();
        let tasks: Vec<TaskId> = (0..ROUNDS)
            .map(|round| add_task(&mut store, directory.path(), &format!("t{round}")))
            .collect();
        let path = directory.location().to_path_buf();
        let barrier = Barrier::new(THREADS as usize);
        // Per thread, its claim of each round's task.
        let claims: Vec<Vec<Result<Task, StoreError>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..=THREADS)
                .map(|runner| {
                    let (path, barrier, tasks) = (&path, &barrier, &tasks);
                    scope.spawn(move || {
                        let mut store = Store::open_with(path, &crate::common::options()).unwrap();
                        tasks
                            .iter()
                            .map(|task| {
                                barrier.wait();
                                store.claim_task(*task, &fake_owner(runner))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect()
        });
        for (round, task) in tasks.iter().enumerate() {
            let round_claims: Vec<(u32, &Result<Task, StoreError>)> = (1..=THREADS)
                .zip(&claims)
                .map(|(runner, claims)| (runner, &claims[round]))
                .collect();
            let winners: Vec<u32> = round_claims
                .iter()
                .filter(|(_, claim)| claim.is_ok())
                .map(|(runner, _)| *runner)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {round_claims:#?}");
            let claimed = store.task(*task).unwrap();
            assert_eq!(claimed.status, TaskStatus::Running);
            assert_eq!(
                claimed.runner,
                Some(fake_owner(winners[0])),
                "round {round}"
            );
            for (runner, claim) in &round_claims {
                if let Err(err) = claim {
                    assert!(
                        matches!(
                            err,
                            StoreError::InvalidTransition {
                                task: refused,
                                from: TaskStatus::Running,
                                to: TaskStatus::Running,
                            } if refused == task
                        ),
                        "round {round}: runner {runner} lost the claim with {err:?}, not \
                         \"the task is running already\""
                    );
                }
            }
        }
    }

    fn a_retry_carries_guidance_until_it_is_cleared() {
        let (directory, mut store) = temp_store();
        let task = add_task(&mut store, directory.path(), "t");
        // Only a task that ended without completing can be retried.
        let err = store.retry_task(task, None).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidTransition { .. }),
            "{err:?}"
        );
        store
            .claim_task(task, &LeaseOwner::current().unwrap())
            .unwrap();
        store
            .set_task_status(
                task,
                TaskStatus::Blocked,
                Some(&redact::Redacted::trusted("needs a person")),
            )
            .unwrap();
        store
            .retry_task(task, Some(&redact::Redacted::trusted("use the other API")))
            .unwrap();
        let retried = store.task(task).unwrap();
        assert_eq!(retried.status, TaskStatus::Pending);
        assert_eq!(retried.guidance.as_deref(), Some("use the other API"));
        assert_eq!(retried.failure_reason, None);
        store.set_task_guidance(task, None).unwrap();
        assert_eq!(store.task(task).unwrap().guidance, None);
        let err = store
            .set_task_guidance(TaskId(999), Some(&redact::Redacted::trusted("x")))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(Missing::Task(_))),
            "{err:?}"
        );
    }

    fn tasks_of_a_dead_runner_are_requeued_and_others_left_alone() {
        let (directory, mut store) = temp_store();
        let orphaned = add_task(&mut store, directory.path(), "orphaned");
        let alive = add_task(&mut store, directory.path(), "alive");
        let unclaimed = add_task(&mut store, directory.path(), "unclaimed running");
        store.claim_task(orphaned, &dead_local_owner()).unwrap();
        store
            .claim_task(alive, &LeaseOwner::current().unwrap())
            .unwrap();
        store
            .set_task_status(unclaimed, TaskStatus::Running, None)
            .unwrap();
        let requeued = store.requeue_orphaned_tasks(LeaseOwner::is_alive).unwrap();
        assert_eq!(requeued, [orphaned]);
        assert_eq!(store.task(orphaned).unwrap().status, TaskStatus::Pending);
        assert_eq!(store.task(orphaned).unwrap().runner, None);
        assert_eq!(store.task(alive).unwrap().status, TaskStatus::Running);
        assert_eq!(store.task(unclaimed).unwrap().status, TaskStatus::Running);
        let events = store
            .events(&EventFilter {
                task: Some(orphaned),
                ..EventFilter::default()
            })
            .unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.kind, event_kind::TASK_STATUS);
        assert!(last.detail.contains("is gone"), "{}", last.detail);
    }
}
