//! The stress harness: small runs through every agent path and session policy must audit
//! clean, and the audit must report each invariant when a ledger breaks it.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use agent::{PlanKind, SessionId, Usage};
use session_store::{CallOutcome, SessionPolicy, SessionStatus, TaskId, TaskStatus};
use tests::stress::audit::{self, Invariant, Ledger, Violation};
use tests::stress::timeline::{Mark, Seen};
use tests::stress::{self, AgentKind, StressConfig, StressRun};

const MOCK_CLAUDE: &str = env!("CARGO_BIN_EXE_contract-mock-claude");

/// Runs `config` and fails with the whole report when the audit finds anything.
fn run_clean(config: StressConfig) -> StressRun {
    let run = stress::run(&config).expect("the stress run is carried out");
    assert!(run.violations.is_empty(), "{}", stress::render(&run));
    // The audit had something to look at: every task ran, and ended as its script says.
    let completed = run
        .plan
        .tasks
        .iter()
        .filter(|task| task.expected(&run.plan).status == TaskStatus::Completed)
        .count();
    assert_eq!(
        run.summary.tasks_by_status.get("completed").copied(),
        Some(completed),
        "{}",
        stress::render(&run)
    );
    assert_eq!(run.audited.calls, run.audited.witnessed_calls);
    assert!(run.audited.calls > config.tasks);
    run
}

#[test]
fn forty_tasks_four_at_a_time_through_mock_claude_audit_clean() {
    let run = run_clean(StressConfig {
        tasks: 40,
        concurrency: 4,
        seed: 7,
        program: Some(PathBuf::from(MOCK_CLAUDE)),
        ..StressConfig::new(AgentKind::MockClaude)
    });
    // Every part of the mix was played, and each left its mark in the ledger.
    assert_eq!(run.plan.kind_counts().len(), stress::Kind::ALL.len());
    let errors = run.summary.errors_by_kind();
    for kind in ["api_error", "rate_limited", "max_turns"] {
        assert!(errors.contains_key(kind), "{errors:?}");
    }
    assert_eq!(run.summary.sessions_by_status.get("open"), None);
}

#[test]
fn fifty_tasks_on_a_postgres_ledger_audit_clean() {
    // The harness and its audit on a PostgreSQL ledger: the run writes it through the store's
    // PostgreSQL backend, and the audit reads it back through the same interface.
    let Some(database) = pg_testkit::TestDatabase::create("stress_on_postgres") else {
        return;
    };
    let run = run_clean(StressConfig {
        tasks: 50,
        concurrency: 4,
        seed: 13,
        program: Some(PathBuf::from(MOCK_CLAUDE)),
        ledger: Some(database.url()),
        ..StressConfig::new(AgentKind::MockClaude)
    });
    assert_eq!(
        run.ledger,
        format!("PostgreSQL at {}", database.url_without_password())
    );
    assert_eq!(run.audited.tasks, 50);
    assert_eq!(run.plan.kind_counts().len(), stress::Kind::ALL.len());

    // And the audit sees a wrong figure in that ledger, as it does in a SQLite file.
    let mut tamper = database.connect().unwrap();
    let padded: String = tamper
        .query_one("SELECT id FROM sessions ORDER BY id LIMIT 1", &[])
        .unwrap()
        .get(0);
    tamper
        .execute(
            "UPDATE sessions SET input_tokens = input_tokens + 1 WHERE id = $1",
            &[&padded],
        )
        .unwrap();
    let store = session_store::Store::open_with(
        database.url(),
        &session_store::StoreOptions::new(redact::Redactor::new()),
    )
    .unwrap();
    let found = audit::check_ledger(&Ledger::read(&store).unwrap());
    assert_eq!(
        mentions(&found, Invariant::Totals, &padded),
        1,
        "{found:#?}"
    );
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn shared_milestone_sessions_through_mock_claude_audit_clean() {
    // Tasks of a milestone work in directories of their own and resume one session: the CLI
    // finds its transcript in another directory's project dir.
    run_clean(StressConfig {
        tasks: 15,
        concurrency: 3,
        policy: SessionPolicy::Milestone,
        seed: 3,
        program: Some(PathBuf::from(MOCK_CLAUDE)),
        ..StressConfig::new(AgentKind::MockClaude)
    });
}

#[test]
fn every_session_policy_audits_clean_with_the_in_process_mock() {
    for policy in [
        SessionPolicy::Task,
        SessionPolicy::Fresh,
        SessionPolicy::Milestone,
    ] {
        for iterations in [1, 3] {
            run_clean(StressConfig {
                tasks: 20,
                concurrency: 3,
                iterations,
                policy,
                seed: 11,
                ..StressConfig::new(AgentKind::Mock)
            });
        }
    }
}

#[test]
fn an_agent_that_makes_its_own_session_fails_the_stress_run() {
    // The original bug: the agent ignores the id it is given and uses one of its own.
    let own = SessionId::new_v4();
    let run = stress::run(&StressConfig {
        tasks: 4,
        program: Some(PathBuf::from(MOCK_CLAUDE)),
        agent_env: [(
            agent_mock::scenario::REPORT_SESSION_ID_ENV.to_owned(),
            own.to_string(),
        )]
        .into(),
        ..StressConfig::new(AgentKind::MockClaude)
    })
    .expect("the stress run is carried out");
    let own = own.to_string();
    let calls = run.audited.calls;
    assert!(calls >= 4, "{}", stress::render(&run));
    assert_eq!(
        mentions(&run.violations, Invariant::ReportedSession, &own),
        // Once in the ledger's record of each call, once as the witness saw it.
        2 * calls,
        "{}",
        stress::render(&run)
    );
    assert_eq!(
        mentions(&run.violations, Invariant::AgentRecord, &own),
        1,
        "the transcript of the agent's own session is found: {}",
        stress::render(&run)
    );
    assert!(
        run.violations
            .iter()
            .any(|violation| violation.invariant == Invariant::Scripted),
        "{}",
        stress::render(&run)
    );
}

/// A run of the in-process mock whose ledger is kept; the directory goes with the guard.
struct Kept {
    run: StressRun,
    db: PathBuf,
}

impl Kept {
    fn new() -> Kept {
        Kept::with_policy(SessionPolicy::Task)
    }

    /// Ten tasks under `policy`: every kind of task, two milestones under the milestone policy.
    fn with_policy(policy: SessionPolicy) -> Kept {
        let run = run_clean(StressConfig {
            tasks: 10,
            policy,
            keep_ledger: true,
            ..StressConfig::new(AgentKind::Mock)
        });
        let db = run.kept_ledger.clone().expect("the ledger was kept");
        Kept { run, db }
    }

    fn ledger(&self) -> Ledger {
        Ledger::read(
            &session_store::Store::open_with(
                &self.db,
                &session_store::StoreOptions::new(redact::Redactor::new()),
            )
            .unwrap(),
        )
        .unwrap()
    }

    /// A connection for tampering: it plays a writer that recorded something wrong, so it
    /// may change a recorded call, which the ledger itself forbids.
    fn connection(&self) -> rusqlite::Connection {
        let connection = rusqlite::Connection::open(&self.db).unwrap();
        connection
            .execute_batch("DROP TRIGGER IF EXISTS agent_calls_append_only_update")
            .unwrap();
        connection
    }

    /// The ledger's id of the first task the plan gave `kind`.
    fn task_of_kind(&self, kind: stress::Kind) -> TaskId {
        self.run
            .placement
            .tasks
            .iter()
            .find(|(_, task)| task.kind == kind)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("the plan has a {kind} task"))
    }

    /// Everything the audit finds in the ledger as it is now, from the ledger and the script.
    fn audit(&self) -> Vec<Violation> {
        let ledger = self.ledger();
        let mut found = audit::check_ledger(&ledger);
        found.extend(audit::check_script(
            &ledger,
            &self.run.plan,
            &self.run.placement,
        ));
        found
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(dir) = self.db.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The violations of `invariant` that mention `needle`.
fn mentions(violations: &[Violation], invariant: Invariant, needle: &str) -> usize {
    violations
        .iter()
        .filter(|violation| violation.invariant == invariant && violation.detail.contains(needle))
        .count()
}

#[test]
fn the_audit_reports_each_broken_invariant() {
    let kept = Kept::new();
    let ledger = kept.ledger();
    assert!(audit::check_ledger(&ledger).is_empty());
    let with_calls: Vec<SessionId> = ledger.calls_by_session().keys().copied().collect();
    let [padded, reopened, crowded] = [with_calls[0], with_calls[1], with_calls[2]];
    let crowded_session = ledger
        .sessions
        .iter()
        .find(|session| session.id == crowded)
        .unwrap()
        .clone();
    let owners: Vec<_> = [padded, reopened, crowded]
        .iter()
        .map(|session| ledger.calls_by_session()[session][0].task)
        .collect();
    let relabelled = ledger
        .tasks
        .iter()
        .find(|task| task.status == TaskStatus::Completed && !owners.contains(&task.id))
        .expect("ten tasks hold a completed one besides the three")
        .id;

    let connection = rusqlite::Connection::open(&kept.db).unwrap();
    // A session's total that is not the sum of its calls.
    connection
        .execute(
            "UPDATE sessions SET input_tokens = input_tokens + 1 WHERE id = ?1",
            [padded.to_string()],
        )
        .unwrap();
    // A session left open.
    connection
        .execute(
            "UPDATE sessions SET status = 'open', ended_at = NULL, end_reason = NULL WHERE id = ?1",
            [reopened.to_string()],
        )
        .unwrap();
    // A call that started before its session was opened, overlaps the session's other calls,
    // reports another session, and is in no total.
    let foreign = SessionId::new_v4();
    connection
        .execute(
            "INSERT INTO agent_calls (session_id, task_id, iteration, plan, prompt, outcome, \
             reported_session_id, input_tokens, output_tokens, cache_read_tokens, \
             cache_creation_tokens, cost_nano_usd, turns, duration_ms, started_at, ended_at) \
             VALUES (?1, ?2, 1, 'resume', 'stray', 'success', ?3, 5, 5, 0, 0, 0, 1, 0, ?4, ?5)",
            rusqlite::params![
                crowded.to_string(),
                crowded_session.task.0,
                foreign.to_string(),
                crowded_session.started_at.as_millis() - 5_000,
                i64::MAX / 2,
            ],
        )
        .unwrap();
    // A task that ended otherwise than its script says.
    connection
        .execute(
            "UPDATE tasks SET status = 'failed', failure_reason = 'tampered' WHERE id = ?1",
            [relabelled.0],
        )
        .unwrap();
    drop(connection);

    let ledger = kept.ledger();
    let mut found = audit::check_ledger(&ledger);
    found.extend(audit::check_script(
        &ledger,
        &kept.run.plan,
        &kept.run.placement,
    ));
    let padded = padded.to_string();
    let reopened = reopened.to_string();
    let crowded = crowded.to_string();
    assert_eq!(
        mentions(&found, Invariant::Totals, &padded),
        1,
        "{found:#?}"
    );
    assert_eq!(
        mentions(&found, Invariant::NothingLeftOpen, &reopened),
        1,
        "{found:#?}"
    );
    assert_eq!(
        mentions(&found, Invariant::OpenedBeforeCall, &crowded),
        1,
        "{found:#?}"
    );
    assert!(
        mentions(&found, Invariant::NoOverlap, &crowded) >= 1,
        "{found:#?}"
    );
    assert_eq!(
        mentions(&found, Invariant::ReportedSession, &foreign.to_string()),
        1,
        "{found:#?}"
    );
    assert_eq!(
        mentions(&found, Invariant::Totals, &crowded),
        1,
        "{found:#?}"
    );
    assert!(
        mentions(&found, Invariant::Scripted, &format!("task {relabelled} ")) >= 1,
        "{found:#?}"
    );
    let broken: BTreeSet<Invariant> = found.iter().map(|violation| violation.invariant).collect();
    assert_eq!(
        broken,
        BTreeSet::from([
            Invariant::OpenedBeforeCall,
            Invariant::ReportedSession,
            Invariant::NothingLeftOpen,
            Invariant::NoOverlap,
            Invariant::Totals,
            Invariant::Scripted,
        ])
    );
}

#[test]
fn the_witness_check_reports_what_the_agent_was_seen_to_do() {
    let ledger = Ledger {
        tasks: Vec::new(),
        sessions: Vec::new(),
        calls: Vec::new(),
        verifications: HashMap::new(),
    };
    let session = SessionId::new_v4();
    let other = SessionId::new_v4();
    let now = Instant::now();
    let returned = |reported| Mark::Returned {
        session,
        reported: Some(reported),
        outcome: CallOutcome::Success,
        usage: Usage::ZERO,
        cost_usd: 0.0,
    };
    let marks = vec![
        (
            now,
            Mark::Handover {
                session,
                plan: PlanKind::Start,
                seen: Seen::Missing,
            },
        ),
        (
            now,
            Mark::Handover {
                session,
                plan: PlanKind::Resume,
                seen: Seen::Closed(SessionStatus::Completed),
            },
        ),
        (now, returned(other)),
        (now, returned(session)),
    ];
    let found = audit::check_witness(&ledger, &marks, 1);
    let broken: BTreeSet<Invariant> = found.iter().map(|violation| violation.invariant).collect();
    assert_eq!(
        broken,
        BTreeSet::from([
            Invariant::OpenedBeforeCall,
            Invariant::ReportedSession,
            Invariant::NoOverlap,
            Invariant::EveryCallRecorded,
            Invariant::Concurrency,
        ]),
        "{found:#?}"
    );
    assert_eq!(
        mentions(&found, Invariant::OpenedBeforeCall, &session.to_string()),
        2
    );
    assert_eq!(
        mentions(&found, Invariant::ReportedSession, &other.to_string()),
        1
    );
}

#[test]
fn the_transcript_check_reports_missing_repeated_and_foreign_transcripts() {
    let kept = Kept::new();
    let ledger = kept.ledger();
    let projects = tempfile::tempdir().unwrap();
    let project = projects.path().join("-work-project");
    std::fs::create_dir(&project).unwrap();
    let used: Vec<SessionId> = ledger.calls_by_session().keys().copied().collect();
    for session in &used {
        std::fs::write(project.join(format!("{session}.jsonl")), "").unwrap();
    }
    assert!(audit::check_transcripts(&ledger, projects.path()).is_empty());

    let foreign = SessionId::new_v4();
    std::fs::write(project.join(format!("{foreign}.jsonl")), "").unwrap();
    let elsewhere = projects.path().join("-work-elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join(format!("{}.jsonl", used[0])), "").unwrap();
    std::fs::remove_file(project.join(format!("{}.jsonl", used[1]))).unwrap();

    let found = audit::check_transcripts(&ledger, projects.path());
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found
            .iter()
            .all(|violation| violation.invariant == Invariant::AgentRecord)
    );
    assert_eq!(
        mentions(&found, Invariant::AgentRecord, &foreign.to_string()),
        1
    );
    assert!(found[..].iter().any(|violation| {
        violation
            .detail
            .contains(&format!("session {} has 2 transcripts", used[0]))
    }));
    assert!(
        found
            .iter()
            .any(|violation| violation.detail.contains(&format!(
                "session {} has calls but the agent kept no transcript",
                used[1]
            )))
    );
}

#[test]
fn ten_tasks_through_the_real_cli_against_the_stand_in_audit_clean() {
    // The real CLI, answered by the stand-in: the audit compares the ledger with the requests
    // the stand-in received and the usage it served, as well as with the script.
    let Some(claude) = api_standin::require_claude(
        "ten_tasks_through_the_real_cli_against_the_stand_in_audit_clean",
    ) else {
        return;
    };
    // Ten tasks deal every kind once at least; two iterations keep the one that never passes
    // short.
    let run = run_clean(StressConfig {
        tasks: 10,
        concurrency: 2,
        iterations: 2,
        seed: 5,
        program: Some(claude),
        ..StressConfig::new(AgentKind::Claude)
    });
    assert_eq!(
        run.audited.agent_record,
        "transcripts and the stand-in's requests"
    );
    assert_eq!(run.plan.kind_counts().len(), stress::Kind::ALL.len());
}

#[test]
fn the_served_check_reports_figures_other_than_the_agent_served() {
    let kept = Kept::new();
    let ledger = kept.ledger();
    assert!(audit::check_served(&ledger, AgentKind::Mock).is_empty());
    let with_cache_writes = ledger
        .calls
        .iter()
        .find(|call| call.usage.cache_creation_tokens > 0)
        .expect("some scripted replies write to the cache")
        .id;
    let priced = ledger
        .calls
        .iter()
        .find(|call| call.id != with_cache_writes && call.cost.as_nano_usd() > 0)
        .expect("another call cost something")
        .id;
    let connection = kept.connection();
    // As an adapter that lost the cache-creation tokens would record them.
    connection
        .execute(
            "UPDATE agent_calls SET cache_creation_tokens = 0 WHERE id = ?1",
            [with_cache_writes.get()],
        )
        .unwrap();
    connection
        .execute(
            "UPDATE agent_calls SET cost_nano_usd = cost_nano_usd * 2 WHERE id = ?1",
            [priced.get()],
        )
        .unwrap();
    drop(connection);

    let found = audit::check_served(&kept.ledger(), AgentKind::Mock);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found
            .iter()
            .all(|violation| violation.invariant == Invariant::Served)
    );
    for call in [with_cache_writes, priced] {
        assert_eq!(
            mentions(&found, Invariant::Served, &format!("call {call} of task")),
            1,
            "{found:#?}"
        );
    }
    // Through the real CLI the same ledger would be wrong everywhere: the CLI prices tokens
    // itself, and a reply that writes a file takes a second request.
    assert!(audit::check_served(&kept.ledger(), AgentKind::Claude).len() > 2);
}

#[test]
fn the_audit_reports_a_call_made_in_another_tasks_session() {
    let kept = Kept::new();
    let ledger = kept.ledger();
    let by_session = ledger.calls_by_session();
    let mut sessions = by_session.iter();
    let (_, calls) = sessions.next().unwrap();
    let (foreign, foreign_calls) = sessions
        .find(|(_, other)| other[0].task != calls[0].task)
        .unwrap();
    let (moved, owner, host) = (calls[0].id, calls[0].task, foreign_calls[0].task);
    let connection = kept.connection();
    connection
        .execute(
            "UPDATE agent_calls SET session_id = ?1 WHERE id = ?2",
            rusqlite::params![foreign.to_string(), moved.get()],
        )
        .unwrap();
    drop(connection);

    let found = audit::check_ledger(&kept.ledger());
    let expected =
        format!("call {moved} of task {owner} was made in session {foreign} of task {host}");
    assert_eq!(
        mentions(&found, Invariant::OpenedBeforeCall, &expected),
        1,
        "{found:#?}"
    );
}

#[test]
fn the_audit_reports_a_milestone_session_used_across_milestones_or_doubled() {
    let kept = Kept::with_policy(SessionPolicy::Milestone);
    assert_eq!(kept.run.placement.milestones.len(), 2);
    let ledger = kept.ledger();
    let session_of = |milestone| {
        ledger
            .sessions
            .iter()
            .find(|session| session.milestone == Some(milestone))
            .unwrap()
            .clone()
    };
    let [first, second] = [0, 1].map(|index| session_of(kept.run.placement.milestones[index]));
    // A call of the first milestone's shared session moved into the second's: sharing stops at
    // the milestone.
    let moved = ledger.calls_by_session()[&first.id][0];
    let connection = kept.connection();
    connection
        .execute(
            "UPDATE agent_calls SET session_id = ?1 WHERE id = ?2",
            rusqlite::params![second.id.to_string(), moved.id.get()],
        )
        .unwrap();
    // And a second session for the first milestone, as if one of its tasks had started afresh.
    let extra = SessionId::new_v4();
    connection
        .execute(
            "INSERT INTO sessions (id, task_id, milestone_id, policy, status, started_at, ended_at) \
             VALUES (?1, ?2, ?3, 'milestone', 'completed', ?4, ?4)",
            rusqlite::params![
                extra.to_string(),
                first.task.0,
                kept.run.placement.milestones[0].get(),
                first.started_at.as_millis(),
            ],
        )
        .unwrap();
    drop(connection);

    let found = kept.audit();
    let across = format!(
        "call {} of task {} was made in session {} of task {}",
        moved.id, moved.task, second.id, second.task
    );
    assert_eq!(
        mentions(&found, Invariant::OpenedBeforeCall, &across),
        1,
        "{found:#?}"
    );
    let doubled = format!(
        "milestone {} (number 0 of the plan) has 2 sessions",
        kept.run.placement.milestones[0]
    );
    assert_eq!(
        mentions(&found, Invariant::Scripted, &doubled),
        1,
        "{found:#?}"
    );
}

#[test]
fn the_audit_reports_fresh_iterations_that_share_a_session_or_end_otherwise() {
    let kept = Kept::with_policy(SessionPolicy::Fresh);
    // Two iterations, so two sessions under the fresh policy.
    let task = kept.task_of_kind(stress::Kind::VerifyOnce);
    let ledger = kept.ledger();
    let calls = ledger.calls_of(task);
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].session, calls[1].session);
    let (first_session, second_call) = (calls[0].session, calls[1].id);
    let other = kept.task_of_kind(stress::Kind::Exhaust);
    let other_first = ledger.calls_of(other)[0].session;
    let connection = kept.connection();
    // The second iteration resumed the first one's session.
    connection
        .execute(
            "UPDATE agent_calls SET session_id = ?1 WHERE id = ?2",
            rusqlite::params![first_session.to_string(), second_call.get()],
        )
        .unwrap();
    // An earlier iteration's session ended failed, not completed.
    connection
        .execute(
            "UPDATE sessions SET status = 'failed' WHERE id = ?1",
            [other_first.to_string()],
        )
        .unwrap();
    drop(connection);

    let found = kept.audit();
    assert_eq!(
        mentions(
            &found,
            Invariant::Scripted,
            &format!("iterations 1 and 2 share session {first_session} under the fresh policy"),
        ),
        1,
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|violation| violation.invariant == Invariant::Scripted
                && violation.detail.starts_with(&format!("task {other} "))
                && violation.detail.contains("the fresh policy implies")),
        "{found:#?}"
    );
}
