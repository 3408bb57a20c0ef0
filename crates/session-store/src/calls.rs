//! Agent calls: one row per agent process, and the totals each one adds to.

use std::time::Duration;

use crate::db::{Connection, OptionalExtension, Row, params};
use agent::{ExitInfo, PlanKind, SessionId, Usage};
use redact::Redacted;

use crate::error::{Failure, Missing, StoreError};
use crate::ids::{CallId, MilestoneId, TaskId};
use crate::lookup::{ensure_session, ensure_task, task_milestone};
use crate::sql::{
    duration_at, duration_millis, exit_at, exit_columns, optional_session_id_at, session_id_at,
    usage_at,
};
use crate::status::{CallOutcome, SessionPolicy, SessionStatus};
use crate::store::{Batch, Store, Write};
use crate::units::{Cost, Timestamp};

/// An agent call to record, with the figures it reported.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAgentCall {
    pub session: SessionId,
    /// The task the call worked on: the session's own task, or, in a session with the
    /// milestone policy, any task of that milestone.
    pub task: TaskId,
    /// Which round of the task's agent-then-verify loop this call belongs to, from 1.
    pub iteration: u32,
    pub plan: PlanKind,
    pub prompt: Redacted,
    pub result_text: Option<Redacted>,
    pub outcome: CallOutcome,
    /// The agent's own word for how the call ended (Claude Code's result `subtype`).
    pub subtype: Option<Redacted>,
    pub error_message: Option<Redacted>,
    /// The session id the agent reported, which should equal `session`.
    pub reported_session: Option<SessionId>,
    pub usage: Usage,
    pub cost: Cost,
    pub turns: u32,
    pub duration: Duration,
    /// How the agent process ended, when it ran and was waited for.
    pub exit: Option<ExitInfo>,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    /// A key minted once for this call (a UUID, say), so that recording it again (a write
    /// retried after the database went away, its first commit done but unanswered) records
    /// nothing twice: the call already recorded is returned. `None` records every time.
    pub key: Option<String>,
}

/// An agent call as the ledger holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    pub id: CallId,
    pub session: SessionId,
    pub task: TaskId,
    pub iteration: u32,
    pub plan: PlanKind,
    pub prompt: String,
    pub result_text: Option<String>,
    pub outcome: CallOutcome,
    pub subtype: Option<String>,
    pub error_message: Option<String>,
    pub reported_session: Option<SessionId>,
    pub usage: Usage,
    pub cost: Cost,
    pub turns: u32,
    pub duration: Duration,
    pub exit: Option<ExitInfo>,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
}

const CALL_COLUMNS: &str = "id, session_id, task_id, iteration, plan, prompt, result_text, \
                            outcome, subtype, error_message, reported_session_id, \
                            input_tokens, output_tokens, cache_read_tokens, \
                            cache_creation_tokens, cost_nano_usd, turns, duration_ms, \
                            exit_code, exit_signal, started_at, ended_at";

impl Store {
    /// Records one agent call and adds its figures to its session's and its task's totals,
    /// all in one transaction. The call's agent process has ended, so the session's recorded
    /// agent process is cleared in the same transaction.
    ///
    /// The session must have been opened ([`StoreError::NotFound`] naming it otherwise) and
    /// still be open ([`StoreError::SessionClosed`]). The call's task must be the session's
    /// task ([`StoreError::WrongTask`]), or, for a session with the milestone policy, a task
    /// of the session's milestone ([`StoreError::MilestoneMismatch`]).
    ///
    /// The prompt, the result text, the subtype and the error message come redacted.
    pub fn record_agent_call(&mut self, call: &NewAgentCall) -> Result<CallId, StoreError> {
        self.write(RECORD_CALL, |write| record_call(write, call))
    }

    /// The calls recorded in a session, oldest first.
    pub fn calls_for_session(&self, id: SessionId) -> Result<Vec<RecordedCall>, StoreError> {
        let text = id.to_string();
        self.read("list a session's agent calls", |connection| {
            ensure_session(connection, id)?;
            // Through the index on task: the session's own task, and for a milestone session
            // the milestone's other tasks, are the only tasks whose calls it can hold.
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {CALL_COLUMNS} FROM agent_calls \
                 WHERE session_id = ?1 AND task_id IN ( \
                     SELECT task_id FROM sessions WHERE id = ?1 \
                     UNION \
                     SELECT tasks.id FROM sessions JOIN tasks \
                         ON tasks.milestone_id = sessions.milestone_id \
                     WHERE sessions.id = ?1 AND sessions.policy = 'milestone') \
                 ORDER BY id"
            ))?;
            let calls = statement
                .query_map([&text], call_from_row)?
                .collect::<crate::db::Result<Vec<_>>>()?;
            Ok(calls)
        })
    }

    /// The calls recorded for a task, across all its sessions, oldest first.
    pub fn calls_for_task(&self, task: TaskId) -> Result<Vec<RecordedCall>, StoreError> {
        self.read("list a task's agent calls", |connection| {
            ensure_task(connection, task)?;
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {CALL_COLUMNS} FROM agent_calls WHERE task_id = ?1 ORDER BY id"
            ))?;
            let calls = statement
                .query_map([task], call_from_row)?
                .collect::<crate::db::Result<Vec<_>>>()?;
            Ok(calls)
        })
    }
}

impl Batch<'_> {
    /// [`Store::record_agent_call`], as part of the batch. The call's id is not returned: on
    /// PostgreSQL the call may be written only with the batch's commit (see [`Batch`]).
    pub fn record_agent_call(&mut self, call: &NewAgentCall) -> Result<(), StoreError> {
        self.apply(RECORD_CALL, |write| {
            if write.deferring() {
                let session = call.session.to_string();
                return in_one_statement(write, &session, call, Ending::Refuse).map(drop);
            }
            record_call(write, call).map(drop)
        })
    }
}

const RECORD_CALL: &str = "record an agent call";

/// Records `call` and adds its figures to its session's and its task's totals; see
/// [`Store::record_agent_call`].
fn record_call(write: &Write<'_>, call: &NewAgentCall) -> Result<CallId, Failure> {
    let session = call.session.to_string();
    if write.is_postgres()
        && let Some(id) = in_one_statement(write, &session, call, Ending::Id)?
    {
        return Ok(id);
    }
    let target = CallTarget::read(write, call.session, &session, call.key.as_deref())?;
    // A call recorded under its key already (a retried write whose first commit went through)
    // is kept once; a call's session never goes away, so it is found first.
    if let Some(recorded) = target.recorded {
        return Ok(CallId(recorded));
    }
    if !target.status.is_open() {
        return Err(StoreError::SessionClosed {
            id: call.session,
            status: target.status,
        }
        .into());
    }
    if call.task != target.task {
        check_shared_session(call, &target, write)?;
    }
    add_to_session(write, &session, call)?;
    let id = insert_call(write, &session, call)?;
    add_to_task(write, call)?;
    Ok(id)
}

/// What a call's row holds that is not one of the call's fields as it is.
struct CallRow {
    reported: Option<String>,
    duration: i64,
    exit_code: Option<i32>,
    exit_signal: Option<i32>,
}

impl CallRow {
    fn of(call: &NewAgentCall) -> CallRow {
        let (exit_code, exit_signal) = exit_columns(call.exit);
        CallRow {
            reported: call.reported_session.map(|id| id.to_string()),
            duration: duration_millis(call.duration),
            exit_code,
            exit_signal,
        }
    }
}

/// The values of a call's row, `?1` to `?22` of [`insert_call`]'s statement and of
/// [`RECORD_WITH`], then any more given: the session's id, the call, its [`CallRow`].
macro_rules! call_values {
    ($session:expr, $call:expr, $row:expr $(, $more:expr)*) => {
        params![
            $session,
            $call.task,
            $call.iteration,
            $call.plan.as_str(),
            $call.prompt.as_str(),
            $call.result_text.as_ref().map(Redacted::as_str),
            $call.outcome,
            $call.subtype.as_ref().map(Redacted::as_str),
            $call.error_message.as_ref().map(Redacted::as_str),
            $row.reported,
            $call.usage.input_tokens,
            $call.usage.output_tokens,
            $call.usage.cache_read_tokens,
            $call.usage.cache_creation_tokens,
            $call.cost.as_nano_usd(),
            $call.turns,
            $row.duration,
            $row.exit_code,
            $row.exit_signal,
            $call.started_at,
            $call.ended_at,
            $call.key,
            $($more,)*
        ]
    };
}
/// The `WITH` clause of [`in_one_statement`]: the common case of a call, written.
const RECORD_WITH: &str = "WITH target AS ( \
        SELECT id FROM sessions WHERE id = ?1 AND status = 'open' \
        AND (task_id = ?2 OR (policy = 'milestone' AND milestone_id IS NOT NULL \
            AND milestone_id = (SELECT milestone_id FROM tasks WHERE id = ?2))) \
        AND NOT EXISTS (SELECT 1 FROM agent_calls WHERE call_key = ?22)), \
    recorded AS ( \
        INSERT INTO agent_calls (session_id, task_id, iteration, plan, prompt, \
            result_text, outcome, subtype, error_message, reported_session_id, \
            input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, \
            cost_nano_usd, turns, duration_ms, exit_code, exit_signal, started_at, \
            ended_at, call_key) \
        SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
            ?16, ?17, ?18, ?19, ?20, ?21, ?22 FROM target RETURNING id), \
    into_session AS ( \
        UPDATE sessions SET agent_calls = agent_calls + 1, turns = turns + ?16, \
            input_tokens = input_tokens + ?11, output_tokens = output_tokens + ?12, \
            cache_read_tokens = cache_read_tokens + ?13, \
            cache_creation_tokens = cache_creation_tokens + ?14, \
            cost_nano_usd = cost_nano_usd + ?15, \
            agent_pid = NULL, agent_start_time = NULL \
        WHERE id IN (SELECT id FROM target)), \
    into_task AS ( \
        UPDATE tasks SET \
            iterations = CASE WHEN iterations > ?3 THEN iterations ELSE ?3 END, \
            agent_calls = agent_calls + 1, turns = turns + ?16, \
            input_tokens = input_tokens + ?11, output_tokens = output_tokens + ?12, \
            cache_read_tokens = cache_read_tokens + ?13, \
            cache_creation_tokens = cache_creation_tokens + ?14, \
            cost_nano_usd = cost_nano_usd + ?15, updated_at = ?23 \
        WHERE id = ?2 AND EXISTS (SELECT 1 FROM target)) ";

/// How the statement of [`in_one_statement`] ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// With the new call's id: none when it is not the common case.
    Id,
    /// Deferred to the batch's commit, refusing (`baton_refuse`) when it is not.
    Refuse,
}

/// A call on PostgreSQL in the common case, in one statement and one round trip: its session
/// is open and the task's own (or its milestone's, shared under the milestone policy, as
/// [`check_shared_session`] allows), and no call is recorded under its key yet. Then the call's row
/// goes in, and its figures are added to the session's and the task's totals, as
/// [`add_to_session`], [`insert_call`] and [`add_to_task`] do one statement each. `None` when
/// it is not the common case: nothing was written, and [`record_call`] goes the long way,
/// which says why it refuses or finds the call recorded already. Deferred, it returns `None`.
fn in_one_statement(
    write: &Write<'_>,
    session: &str,
    call: &NewAgentCall,
    ending: Ending,
) -> Result<Option<CallId>, Failure> {
    static RETURNING_ID: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{RECORD_WITH} SELECT id FROM recorded"));
    static REFUSING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{RECORD_WITH} SELECT baton_refuse('record an agent call') \
             WHERE NOT EXISTS (SELECT 1 FROM recorded)"
        )
    });
    let row = CallRow::of(call);
    let now = Timestamp::now();
    let values = call_values!(session, call, row, now);
    Ok(match ending {
        Ending::Refuse => {
            write.defer(&REFUSING, values)?;
            None
        }
        Ending::Id => write
            .prepare_cached(&RETURNING_ID)?
            .query_row(values, |row| row.get(0).map(CallId))
            .optional()?,
    })
}

/// Adds the call's figures to its session's totals; its agent process has ended, so the
/// session's recorded agent process is cleared too.
fn add_to_session(write: &Write<'_>, session: &str, call: &NewAgentCall) -> crate::db::Result<()> {
    write
        .prepare_cached(
            "UPDATE sessions SET agent_calls = agent_calls + 1, turns = turns + ?2, \
             input_tokens = input_tokens + ?3, output_tokens = output_tokens + ?4, \
             cache_read_tokens = cache_read_tokens + ?5, \
             cache_creation_tokens = cache_creation_tokens + ?6, \
             cost_nano_usd = cost_nano_usd + ?7, \
             agent_pid = NULL, agent_start_time = NULL \
             WHERE id = ?1",
        )?
        .execute(params![
            session,
            call.turns,
            call.usage.input_tokens,
            call.usage.output_tokens,
            call.usage.cache_read_tokens,
            call.usage.cache_creation_tokens,
            call.cost.as_nano_usd(),
        ])?;
    Ok(())
}

/// Inserts the call's row; its free text came redacted.
fn insert_call(write: &Write<'_>, session: &str, call: &NewAgentCall) -> crate::db::Result<CallId> {
    let row = CallRow::of(call);
    let id = write
        .prepare_cached(
            "INSERT INTO agent_calls (session_id, task_id, iteration, plan, prompt, \
             result_text, outcome, subtype, error_message, reported_session_id, \
             input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, \
             cost_nano_usd, turns, duration_ms, exit_code, exit_signal, started_at, \
             ended_at, call_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
             ?16, ?17, ?18, ?19, ?20, ?21, ?22) RETURNING id",
        )?
        .query_row(call_values!(session, call, row), |row| row.get(0))?;
    Ok(CallId(id))
}

/// Adds the call's figures to its task's totals, and its iteration to the task's count.
fn add_to_task(write: &Write<'_>, call: &NewAgentCall) -> crate::db::Result<()> {
    write
        .prepare_cached(
            "UPDATE tasks SET iterations = CASE WHEN iterations > ?2 THEN iterations ELSE ?2 END, \
             agent_calls = agent_calls + 1, turns = turns + ?3, \
             input_tokens = input_tokens + ?4, output_tokens = output_tokens + ?5, \
             cache_read_tokens = cache_read_tokens + ?6, \
             cache_creation_tokens = cache_creation_tokens + ?7, \
             cost_nano_usd = cost_nano_usd + ?8, updated_at = ?9 \
             WHERE id = ?1",
        )?
        .execute(params![
            call.task,
            call.iteration,
            call.turns,
            call.usage.input_tokens,
            call.usage.output_tokens,
            call.usage.cache_read_tokens,
            call.usage.cache_creation_tokens,
            call.cost.as_nano_usd(),
            Timestamp::now(),
        ])?;
    Ok(())
}

/// What recording a call needs to know about its session.
struct CallTarget {
    task: TaskId,
    milestone: Option<MilestoneId>,
    policy: SessionPolicy,
    status: SessionStatus,
    /// The call recorded under the new call's key already, if any.
    recorded: Option<i64>,
}

impl CallTarget {
    /// Reads the session, and the call recorded under `key` already, in one statement; or
    /// fails with [`StoreError::NotFound`] naming the session: a call for a session that was
    /// never opened must say so, not fail on a foreign key.
    fn read(
        connection: &Connection,
        id: SessionId,
        text: &str,
        key: Option<&str>,
    ) -> Result<CallTarget, Failure> {
        connection
            .prepare_cached(
                "SELECT task_id, milestone_id, policy, status, \
                 (SELECT id FROM agent_calls WHERE call_key = ?2) \
                 FROM sessions WHERE id = ?1",
            )?
            .query_row(params![text, key], |row| {
                Ok(CallTarget {
                    task: row.get(0)?,
                    milestone: row.get(1)?,
                    policy: row.get(2)?,
                    status: row.get(3)?,
                    recorded: row.get(4)?,
                })
            })
            .optional()?
            .ok_or_else(|| StoreError::NotFound(Missing::Session(id)).into())
    }
}

/// A call for another task than the session's own is allowed only in a milestone session,
/// and only for a task of that milestone: anything else is the "second task inherited the
/// first task's session" bug this ledger exists to stop.
fn check_shared_session(
    call: &NewAgentCall,
    target: &CallTarget,
    connection: &Connection,
) -> Result<(), Failure> {
    if target.policy != SessionPolicy::Milestone {
        return Err(StoreError::WrongTask {
            session: call.session,
            session_task: target.task,
            task: call.task,
        }
        .into());
    }
    let milestone = task_milestone(connection, call.task)?;
    if milestone.is_none() || milestone != target.milestone {
        return Err(StoreError::MilestoneMismatch {
            task: call.task,
            task_milestone: milestone,
            expected: target.milestone,
        }
        .into());
    }
    Ok(())
}

fn call_from_row(row: &Row<'_>) -> crate::db::Result<RecordedCall> {
    let plan_word = row.get_ref(4)?.as_str()?;
    let plan = PlanKind::parse(plan_word).ok_or_else(|| {
        crate::db::DatabaseError::conversion(4, format!("unknown session plan `{plan_word}`"))
    })?;
    Ok(RecordedCall {
        id: row.get(0)?,
        session: session_id_at(row, 1)?,
        task: row.get(2)?,
        iteration: row.get(3)?,
        plan,
        prompt: row.get(5)?,
        result_text: row.get(6)?,
        outcome: row.get(7)?,
        subtype: row.get(8)?,
        error_message: row.get(9)?,
        reported_session: optional_session_id_at(row, 10)?,
        usage: usage_at(row, 11)?,
        cost: Cost::from_nano_usd(row.get(15)?),
        turns: row.get(16)?,
        duration: duration_at(row, 17)?,
        exit: exit_at(row, 18)?,
        started_at: row.get(20)?,
        ended_at: row.get(21)?,
    })
}
