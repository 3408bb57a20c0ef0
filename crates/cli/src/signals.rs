//! Ctrl-C, SIGTERM and SIGHUP (the terminal closed) during a run: the first one cancels the run gracefully (sessions are
//! closed, tasks go back to pending); a second one exits at once.

use std::sync::{Arc, Mutex, PoisonError};

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
        let mut count = 0;
        loop {
            let which = tokio::select! {
                Some(()) = interrupt.recv() => Signal::Interrupt,
                Some(()) = terminate.recv() => Signal::Terminate,
                Some(()) = hangup.recv() => Signal::Hangup,
                else => return,
            };
            count += 1;
            if count == 1 {
                *record.signal.lock().unwrap_or_else(PoisonError::into_inner) = Some(which);
                on_first(which);
                cancel.cancel();
            } else {
                on_second(which);
                std::process::exit(i32::from(which.code()));
            }
        }
    });
    Ok(received)
}
