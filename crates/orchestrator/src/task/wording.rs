//! Durations as the task loop says them to a person.

use std::time::Duration;

/// A wait in whole seconds under two minutes, else in whole minutes.
pub(super) fn in_words(wait: Duration) -> String {
    let seconds = wait.as_secs_f64().ceil() as u64;
    if seconds < 120 {
        format!("{seconds} s")
    } else {
        format!("{} min", seconds.div_ceil(60))
    }
}
