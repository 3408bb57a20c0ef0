//! The stress harness: small runs through every agent path and session policy must audit
//! clean, and the audit must report each invariant when a ledger breaks it.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use agent::{PlanKind, SessionId, Usage};
use session_store::{CallOutcome, SessionPolicy, SessionStatus, TaskStatus};
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
        let run = run_clean(StressConfig {
            tasks: 10,
            keep_ledger: true,
            ..StressConfig::new(AgentKind::Mock)
        });
        let db = run.kept_ledger.clone().expect("the ledger was kept");
        Kept { run, db }
    }

    fn ledger(&self) -> Ledger {
        Ledger::read(&session_store::Store::open(&self.db).unwrap()).unwrap()
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
