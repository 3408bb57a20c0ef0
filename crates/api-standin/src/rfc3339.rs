//! Times as the API's rate-limit headers give them: RFC 3339, UTC, whole seconds.

use std::time::{Duration, SystemTime};

/// `now + after` as an RFC 3339 UTC time with whole seconds, as the API's rate-limit reset
/// headers give it.
pub(crate) fn from_now(after: Duration) -> String {
    let at = SystemTime::now() + after;
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default();
    from_unix_secs(secs)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (days to civil date after Howard Hinnant's
/// `civil_from_days`).
fn from_unix_secs(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs_of_day = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_instants() {
        assert_eq!(from_unix_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(from_unix_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(from_unix_secs(1_900_000_000), "2030-03-17T17:46:40Z");
    }
}
