//! The scripted mix of a stress run: which tasks pass at once, fail verification first, run
//! out of turns, meet a transient API failure or never pass, derived from a seed; and what an
//! agent answers to each prompt so that every task plays its part.
//!
//! Every agent follows one table of rules ([`reply_for`]): the first rule whose text the
//! prompt contains gives the [`Reply`]. The in-process mock plays it as a `MockAgent` step,
//! `mock-claude` as a scenario rule (the same `prompt_contains` semantics), and the stand-in
//! behind the real CLI as Messages-API answers. A prompt no rule matches gets
//! [`Reply::Unscripted`], which makes its task end differently from its script, so the audit
//! reports it.

use std::collections::BTreeMap;
use std::fmt;

use agent::{ErrorKind, Usage};
use agent_mock::Step as MockStep;
use agent_mock::scenario::{Outcome, Rule, Scenario, Step as ScenarioStep};
use session_store::{CallOutcome, SessionPolicy, TaskStatus};

/// The part a task plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The first attempt passes verification.
    Pass,
    /// The first attempt writes the wrong file; the feedback fixes it.
    VerifyOnce,
    /// The first call runs out of turns; the same session, resumed with a larger budget,
    /// finishes.
    MaxTurns,
    /// The first call meets an overloaded API (529); the retry succeeds.
    Overloaded,
    /// The first call meets a rate limit (429, no reset time); the retry succeeds.
    RateLimited,
    /// Every attempt writes the wrong file, until the iterations run out: the task fails.
    Exhaust,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Pass,
        Kind::VerifyOnce,
        Kind::MaxTurns,
        Kind::Overloaded,
        Kind::RateLimited,
        Kind::Exhaust,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Pass => "pass",
            Kind::VerifyOnce => "verify-once",
            Kind::MaxTurns => "max-turns",
            Kind::Overloaded => "overloaded",
            Kind::RateLimited => "rate-limited",
            Kind::Exhaust => "exhaust",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ten tasks' worth of kinds: the mix every run deals from, shuffled by the seed.
const PATTERN: [Kind; 10] = [
    Kind::Pass,
    Kind::Pass,
    Kind::Pass,
    Kind::VerifyOnce,
    Kind::VerifyOnce,
    Kind::MaxTurns,
    Kind::MaxTurns,
    Kind::Overloaded,
    Kind::RateLimited,
    Kind::Exhaust,
];

/// How many tasks share one milestone under the milestone policy.
pub const MILESTONE_SIZE: usize = 5;

/// The file a task must write, and what it must say.
pub const RESULT_FILE: &str = "result.txt";
pub const RESULT_TEXT: &str = "right\n";
/// The file a wrong attempt writes instead.
pub const DRAFT_FILE: &str = "draft.txt";

/// Which tasks a plan deals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// The scripted mix of every kind (see [`Kind`]).
    Scripted,
    /// Every task passes at once: for throughput benchmarks.
    AllPass,
}

/// Every task of a run and its part.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub tasks: Vec<ScriptedTask>,
    /// The iterations each task may take (its `max_iterations`).
    pub iterations: u32,
    pub policy: SessionPolicy,
    /// Whether tasks have a verification command. Without one, every reply passes.
    pub verify: bool,
}

/// One task of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedTask {
    /// From 1, in the order the tasks are added.
    pub number: usize,
    pub kind: Kind,
    /// The milestone it belongs to (from 0), under the milestone policy.
    pub milestone: Option<usize>,
}

/// What a task's script implies the ledger holds once the run is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub status: TaskStatus,
    /// Every agent call, as (iteration, outcome), in order.
    pub calls: Vec<(u32, CallOutcome)>,
    /// Every verification, as passed or not, in order.
    pub checks: Vec<bool>,
}

impl Plan {
    /// `count` tasks dealt from the mix, shuffled by `seed` (the same seed gives the same plan).
    pub fn new(count: usize, iterations: u32, policy: SessionPolicy, seed: u64, mix: Mix) -> Plan {
        let mut kinds: Vec<Kind> = match mix {
            Mix::Scripted => (0..count).map(|i| PATTERN[i % PATTERN.len()]).collect(),
            Mix::AllPass => vec![Kind::Pass; count],
        };
        let mut random = SplitMix64(seed);
        // Fisher–Yates.
        for i in (1..kinds.len()).rev() {
            let j = (random.next() % (i as u64 + 1)) as usize;
            kinds.swap(i, j);
        }
        let tasks = kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| ScriptedTask {
                number: index + 1,
                kind,
                milestone: (policy == SessionPolicy::Milestone).then_some(index / MILESTONE_SIZE),
            })
            .collect();
        Plan {
            tasks,
            iterations,
            policy,
            verify: true,
        }
    }

    /// How many tasks of each kind the plan holds.
    pub fn kind_counts(&self) -> BTreeMap<Kind, usize> {
        let mut counts = BTreeMap::new();
        for task in &self.tasks {
            *counts.entry(task.kind).or_default() += 1;
        }
        counts
    }

    /// How many milestones the plan uses.
    pub fn milestones(&self) -> usize {
        self.tasks
            .iter()
            .filter_map(|task| task.milestone)
            .max()
            .map_or(0, |last| last + 1)
    }
}

impl ScriptedTask {
    pub fn title(&self) -> String {
        format!("stress task {:04}", self.number)
    }

    /// The text that names this task in every prompt that carries its brief.
    pub fn marker(&self) -> String {
        format!("[stress-task {:04}]", self.number)
    }

    pub fn prompt(&self) -> String {
        format!(
            "{} [stress-kind {}] Write the word `right` into {RESULT_FILE}, then stop.",
            self.marker(),
            self.kind
        )
    }

    /// The check: `result.txt` says `right`. Its failure names the kind, which is how a
    /// feedback prompt finds its rule.
    pub fn verify_command(&self) -> String {
        format!(
            "grep -qx right {RESULT_FILE} 2>/dev/null || \
             {{ echo 'stress-check {}: {RESULT_FILE} does not say right'; exit 1; }}",
            self.kind
        )
    }

    /// The task's own turn budget: one, for the task that must run out of turns first.
    pub fn max_turns(&self) -> Option<u32> {
        (self.kind == Kind::MaxTurns).then_some(1)
    }

    /// What the ledger must say about this task after a run of `plan`.
    pub fn expected(&self, plan: &Plan) -> Expected {
        let success = CallOutcome::Success;
        let iterations = plan.iterations;
        let (status, calls, checks) = match self.kind {
            _ if !plan.verify => (TaskStatus::Completed, vec![(1, success)], vec![]),
            Kind::Pass => (TaskStatus::Completed, vec![(1, success)], vec![true]),
            Kind::VerifyOnce if iterations >= 2 => (
                TaskStatus::Completed,
                vec![(1, success), (2, success)],
                vec![false, true],
            ),
            Kind::VerifyOnce => (TaskStatus::Failed, vec![(1, success)], vec![false]),
            Kind::MaxTurns => (
                TaskStatus::Completed,
                vec![(1, CallOutcome::Failed(ErrorKind::MaxTurns)), (1, success)],
                vec![true],
            ),
            Kind::Overloaded => (
                TaskStatus::Completed,
                vec![(1, CallOutcome::Failed(ErrorKind::Api)), (1, success)],
                vec![true],
            ),
            Kind::RateLimited => (
                TaskStatus::Completed,
                vec![
                    (1, CallOutcome::Failed(ErrorKind::RateLimited)),
                    (1, success),
                ],
                vec![true],
            ),
            Kind::Exhaust => (
                TaskStatus::Failed,
                (1..=iterations)
                    .map(|iteration| (iteration, success))
                    .collect(),
                vec![false; iterations as usize],
            ),
        };
        Expected {
            status,
            calls,
            checks,
        }
    }
}

/// What an agent does with one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// Writes `result.txt` saying `right`, and succeeds.
    Right,
    /// Writes `draft.txt` instead, and succeeds: verification fails.
    Wrong,
    /// The fix after feedback: writes `result.txt`.
    RightAfterFeedback,
    /// Continues after running out of turns: writes `result.txt`.
    RightAfterMaxTurns,
    /// The retry after a transient failure: writes `result.txt`.
    RightAfterRetry,
    /// Runs out of turns.
    OutOfTurns,
    /// The API is overloaded (529).
    Overloaded,
    /// The API's rate limit is hit (429), with no reset time.
    RateLimited,
    /// A prompt no rule expects: succeeds, writes nothing.
    Unscripted,
}

/// The rules, first match wins. Feedback and continuation prompts come first: a fresh
/// session's prompt repeats the task's brief after a failure, and must still count as feedback.
const RULES: [(&str, Reply); 10] = [
    ("stress-check verify-once", Reply::RightAfterFeedback),
    ("stress-check exhaust", Reply::Wrong),
    ("You ran out of turns", Reply::RightAfterMaxTurns),
    (
        "Your work on this task was interrupted",
        Reply::RightAfterRetry,
    ),
    ("[stress-kind pass]", Reply::Right),
    ("[stress-kind verify-once]", Reply::Wrong),
    ("[stress-kind max-turns]", Reply::OutOfTurns),
    ("[stress-kind overloaded]", Reply::Overloaded),
    ("[stress-kind rate-limited]", Reply::RateLimited),
    ("[stress-kind exhaust]", Reply::Wrong),
];

/// The reply to `prompt`: the first rule whose text it contains.
pub fn reply_for(prompt: &str) -> Reply {
    RULES
        .iter()
        .find(|(needle, _)| prompt.contains(needle))
        .map_or(Reply::Unscripted, |(_, reply)| *reply)
}

impl Reply {
    /// The file the reply writes, with its contents.
    pub fn file(self) -> Option<(&'static str, &'static str)> {
        match self {
            Reply::Right
            | Reply::RightAfterFeedback
            | Reply::RightAfterMaxTurns
            | Reply::RightAfterRetry => Some((RESULT_FILE, RESULT_TEXT)),
            Reply::Wrong => Some((DRAFT_FILE, "wrong\n")),
            Reply::OutOfTurns | Reply::Overloaded | Reply::RateLimited | Reply::Unscripted => None,
        }
    }

    /// The usage the reply reports: different for every reply, so that a call's figures
    /// recorded against the wrong call or session show up in the totals. API errors cost
    /// nothing, as with the real API.
    pub fn usage(self) -> Usage {
        let (input, output, cache_read, cache_creation) = match self {
            Reply::Right => (1200, 300, 4000, 500),
            Reply::Wrong => (900, 150, 0, 800),
            Reply::RightAfterFeedback => (1500, 200, 6000, 0),
            Reply::RightAfterMaxTurns => (600, 120, 2500, 100),
            Reply::RightAfterRetry => (1100, 90, 3000, 0),
            Reply::OutOfTurns => (700, 60, 0, 300),
            Reply::Overloaded | Reply::RateLimited => (0, 0, 0, 0),
            Reply::Unscripted => (10, 1, 0, 0),
        };
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_creation_tokens: cache_creation,
        }
    }

    pub fn cost_usd(self) -> f64 {
        match self {
            Reply::Right => 0.0123,
            Reply::Wrong => 0.0071,
            Reply::RightAfterFeedback => 0.0099,
            Reply::RightAfterMaxTurns => 0.0047,
            Reply::RightAfterRetry => 0.0052,
            Reply::OutOfTurns => 0.0031,
            Reply::Overloaded | Reply::RateLimited => 0.0,
            Reply::Unscripted => 0.0001,
        }
    }

    fn result_text(self) -> &'static str {
        match self {
            Reply::Wrong => "I wrote draft.txt.",
            Reply::Unscripted => "Nothing was scripted for this prompt.",
            _ => "I wrote result.txt.",
        }
    }

    /// The reply as a step of the in-process `MockAgent`.
    pub fn mock_step(self) -> MockStep {
        let figures = |step: MockStep| step.usage(self.usage()).cost_usd(self.cost_usd());
        match self {
            Reply::OutOfTurns => figures(MockStep::max_turns()).turns(2),
            Reply::Overloaded => MockStep::api_error(529, "Overloaded"),
            Reply::RateLimited => MockStep::rate_limited(None),
            _ => {
                let mut step = figures(MockStep::succeed(self.result_text()));
                if let Some((path, contents)) = self.file() {
                    step = step.write_file(path, contents).turns(2);
                }
                step
            }
        }
    }

    /// The reply as a `mock-claude` scenario step.
    pub fn scenario_step(self) -> ScenarioStep {
        let step = ScenarioStep {
            usage: Some(self.usage()),
            cost_usd: Some(self.cost_usd()),
            ..ScenarioStep::default()
        };
        match self {
            Reply::OutOfTurns => ScenarioStep {
                outcome: Outcome::MaxTurns,
                ..step
            },
            Reply::Overloaded => ScenarioStep {
                outcome: Outcome::ApiError,
                api_error_status: Some(529),
                message: Some(String::from("Overloaded")),
                ..step
            },
            Reply::RateLimited => ScenarioStep {
                outcome: Outcome::RateLimit,
                ..step
            },
            _ => ScenarioStep {
                result: Some(self.result_text().to_owned()),
                files: self
                    .file()
                    .map(|(path, contents)| (path.to_owned(), contents.to_owned()))
                    .into_iter()
                    .collect(),
                ..step
            },
        }
    }
}

/// The `mock-claude` scenario that plays [`RULES`]: one `when` rule each, in the same order,
/// and an unscripted success for anything else.
pub fn scenario() -> Scenario {
    Scenario {
        steps: vec![Reply::Unscripted.scenario_step()],
        when: RULES
            .iter()
            .map(|(needle, reply)| Rule {
                prompt_contains: Some((*needle).to_owned()),
                step: reply.scenario_step(),
                ..Rule::default()
            })
            .collect(),
    }
}

/// A small, fast, seeded generator (SplitMix64): the plan must be the same for a seed on
/// every machine, which is all that is asked of it.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_deals_the_same_plan_and_every_kind_appears() {
        let plan = Plan::new(10, 3, SessionPolicy::Task, 7, Mix::Scripted);
        assert_eq!(
            plan,
            Plan::new(10, 3, SessionPolicy::Task, 7, Mix::Scripted)
        );
        assert_ne!(
            plan.tasks,
            Plan::new(10, 3, SessionPolicy::Task, 8, Mix::Scripted).tasks
        );
        let counts = plan.kind_counts();
        assert_eq!(counts.len(), Kind::ALL.len(), "{counts:?}");
        assert_eq!(counts[&Kind::Pass], 3);
    }

    #[test]
    fn every_prompt_an_agent_can_be_sent_finds_its_rule() {
        for kind in Kind::ALL {
            let task = ScriptedTask {
                number: 3,
                kind,
                milestone: None,
            };
            let first = reply_for(&task.prompt());
            let expected = match kind {
                Kind::Pass => Reply::Right,
                Kind::VerifyOnce | Kind::Exhaust => Reply::Wrong,
                Kind::MaxTurns => Reply::OutOfTurns,
                Kind::Overloaded => Reply::Overloaded,
                Kind::RateLimited => Reply::RateLimited,
            };
            assert_eq!(first, expected, "{kind}");
            // A fresh session's prompt carries the brief and the failed check: feedback wins.
            let fresh = format!(
                "{}\n\nThis is attempt 2.\n`{}` exited with status 1.",
                task.prompt(),
                task.verify_command()
            );
            let after_feedback = reply_for(&fresh);
            match kind {
                Kind::VerifyOnce => assert_eq!(after_feedback, Reply::RightAfterFeedback),
                Kind::Exhaust => assert_eq!(after_feedback, Reply::Wrong),
                _ => {}
            }
        }
        assert_eq!(reply_for("what now?"), Reply::Unscripted);
    }

    #[test]
    fn the_scenario_has_one_rule_per_reply_rule_in_order() {
        let scenario = scenario();
        assert_eq!(scenario.when.len(), RULES.len());
        for (rule, (needle, reply)) in scenario.when.iter().zip(RULES) {
            assert_eq!(rule.prompt_contains.as_deref(), Some(needle));
            assert_eq!(rule.step, reply.scenario_step());
        }
    }
}
