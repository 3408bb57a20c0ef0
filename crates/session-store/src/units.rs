//! The units the ledger counts in: timestamps, money, and usage totals.

use std::fmt;
use std::ops::{Add, AddAssign};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::db::{FromSql, FromSqlResult, ToSql, Value, ValueRef};
use agent::Usage;

/// A point in time, as whole milliseconds since the Unix epoch (UTC).
///
/// This is how every timestamp is stored: an `INTEGER` column, comparable and sortable in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// An amount of money in US dollars, held exactly as a whole number of nano-dollars
/// (10⁻⁹ USD).
///
/// Agents report cost as a floating-point dollar figure. Summing floats in a different order
/// gives different totals, and the ledger promises that a session's total equals the sum of
/// its calls exactly, so the figure is converted once, at the edge, by [`Cost::from_usd`], and
/// every sum after that is integer arithmetic. Nano-dollars rather than micro-dollars because
/// per-token prices are fractions of a micro-dollar (cache reads at $0.30 per million tokens
/// are 300 nano-dollars a token), so this unit keeps a reported cost exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cost(i64);

/// What some agent calls added up to: the figures kept on a session, a task and a milestone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Totals {
    /// How many agent calls (agent processes) were recorded.
    pub agent_calls: u64,
    /// Agentic turns, summed over the calls.
    pub turns: u64,
    /// Tokens, summed over the calls.
    pub usage: Usage,
    /// Cost, summed over the calls.
    pub cost: Cost,
}

impl Timestamp {
    /// The Unix epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The current time from the system clock.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Converts a system time, saturating at the ends of the representable range.
    pub fn from_system_time(time: SystemTime) -> Timestamp {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            Err(before) => Timestamp(
                i64::try_from(before.duration().as_millis())
                    .map(|millis| -millis)
                    .unwrap_or(i64::MIN),
            ),
        }
    }

    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This time plus a duration, saturating instead of overflowing.
    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// This time minus a duration, saturating instead of overflowing.
    pub fn saturating_sub(self, duration: Duration) -> Timestamp {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unix time {}.{:03}",
            self.0.div_euclid(1000),
            self.0.rem_euclid(1000)
        )
    }
}

impl ToSql for Timestamp {
    fn to_sql(&self) -> Value<'_> {
        Value::Integer(self.0)
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(Timestamp)
    }
}

impl Cost {
    pub const ZERO: Cost = Cost(0);

    /// Converts a dollar figure as agents report it, rounding to the nearest nano-dollar.
    ///
    /// A figure too large to hold saturates; `NaN` counts as zero. Neither happens with a real
    /// agent's report, and a ledger that records a saturated figure is more useful than one
    /// that refuses the call.
    pub fn from_usd(usd: f64) -> Cost {
        // `as` from f64 to i64 saturates and maps NaN to 0, which is the documented behaviour.
        Cost((usd * 1e9).round() as i64)
    }

    pub const fn from_nano_usd(nano_usd: i64) -> Cost {
        Cost(nano_usd)
    }

    pub const fn as_nano_usd(self) -> i64 {
        self.0
    }

    /// The amount in dollars, for display and for callers that think in dollars.
    pub fn as_usd(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

impl Add for Cost {
    type Output = Cost;

    fn add(self, rhs: Cost) -> Cost {
        Cost(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, rhs: Cost) {
        *self = *self + rhs;
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.6}", self.as_usd())
    }
}

impl AddAssign for Totals {
    fn add_assign(&mut self, rhs: Totals) {
        self.agent_calls += rhs.agent_calls;
        self.turns += rhs.turns;
        self.usage += rhs.usage;
        self.cost += rhs.cost;
    }
}

impl Add for Totals {
    type Output = Totals;

    fn add(mut self, rhs: Totals) -> Totals {
        self += rhs;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_keeps_per_token_prices_exact() {
        // $0.30 per million tokens, the cheapest price in common use.
        assert_eq!(Cost::from_usd(0.30 / 1e6).as_nano_usd(), 300);
        assert_eq!(Cost::from_usd(0.0417_8625).as_nano_usd(), 41_786_250);
        assert_eq!(Cost::from_usd(f64::NAN), Cost::ZERO);
        assert_eq!(Cost::from_usd(1e30).as_nano_usd(), i64::MAX);
        assert_eq!(Cost::from_nano_usd(1_500_000_000).as_usd(), 1.5);
        assert_eq!(Cost::from_nano_usd(1_234_567).to_string(), "$0.001235");
    }

    #[test]
    fn timestamps_convert_and_saturate() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let stamp = Timestamp::from_system_time(at);
        assert_eq!(stamp.as_millis(), 1_700_000_000_123);
        assert_eq!(
            stamp.saturating_add(Duration::from_secs(1)).as_millis(),
            1_700_000_001_123
        );
        assert_eq!(
            Timestamp::from_millis(i64::MAX).saturating_add(Duration::from_secs(1)),
            Timestamp::from_millis(i64::MAX)
        );
        assert_eq!(stamp.to_string(), "unix time 1700000000.123");
    }

    #[test]
    fn totals_add_field_by_field() {
        let one = Totals {
            agent_calls: 1,
            turns: 2,
            usage: Usage {
                input_tokens: 3,
                output_tokens: 4,
                cache_read_tokens: 5,
                cache_creation_tokens: 6,
            },
            cost: Cost::from_nano_usd(7),
        };
        let two = one + one;
        assert_eq!(two.agent_calls, 2);
        assert_eq!(two.turns, 4);
        assert_eq!(two.usage.cache_creation_tokens, 12);
        assert_eq!(two.cost, Cost::from_nano_usd(14));
    }
}
