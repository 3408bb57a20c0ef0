//! Ctrl-C, SIGTERM and SIGHUP (the terminal closed) during a run: the first one cancels the run gracefully (sessions are
//! closed, tasks go back to pending); a second one exits at once.
//!
//! Signals that arrive together are one request: GNU `timeout` sends SIGTERM to baton and then
//! to its whole process group, and a service manager signals every process of the unit, so
//! baton can receive two at once. Only a signal that comes a while after the first is a person
//! insisting.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use agent::CancellationToken;
use tokio::signal::unix::{SignalKind, signal};

use crate::error::Signal;

/// Which signal stopped the run, once one has.
#[derive(Debug, Clone, Default)]
pub struct Received {
    signal: Arc<Mutex<Option<Signal>>>,
}

impl Received {
    pub fn get(&self) -> Option<Signal> {
        *self.signal.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Listens for SIGINT, SIGTERM and SIGHUP on the current runtime. The first cancels `cancel` after
/// `on_first` is told; a second exits the process with the signal's exit code after
/// `on_second` is told. Must be called inside a tokio runtime.
pub fn watch(
    cancel: CancellationToken,
    on_first: impl Fn(Signal) + Send + 'static,
    on_second: impl Fn(Signal) + Send + 'static,
) -> std::io::Result<Received> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let received = Received::default();
    let record = received.clone();
    tokio::spawn(async move {
        let mut first: Option<Instant> = None;
        loop {
            let which = tokio::select! {
                Some(()) = interrupt.recv() => Signal::Interrupt,
                Some(()) = terminate.recv() => Signal::Terminate,
                Some(()) = hangup.recv() => Signal::Hangup,
                else => return,
            };
            match first {
                None => {
                    first = Some(Instant::now());
                    *record.signal.lock().unwrap_or_else(PoisonError::into_inner) = Some(which);
                    on_first(which);
                    cancel.cancel();
                }
                Some(at) if is_same_request(at.elapsed()) => {}
                Some(_) => {
                    on_second(which);
                    std::process::exit(i32::from(which.code()));
                }
            }
        }
    });
    Ok(received)
}

/// Signals closer together than this are one request to stop. A person who means "quit now"
/// presses Ctrl-C again after seeing the first one acknowledged, well after this.
const TOGETHER: Duration = Duration::from_millis(500);

/// Whether a signal `since_first` after the first one belongs to the same request.
fn is_same_request(since_first: Duration) -> bool {
    since_first < TOGETHER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_that_arrive_together_are_one_request() {
        for (since_first, same) in [
            (Duration::ZERO, true),
            (Duration::from_millis(5), true),
            (Duration::from_millis(499), true),
            (Duration::from_millis(500), false),
            (Duration::from_secs(3), false),
        ] {
            assert_eq!(is_same_request(since_first), same, "{since_first:?}");
        }
    }
}
