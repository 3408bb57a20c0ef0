//! An agent that dies of the SIGTERM that is stopping the whole run is part of the shutdown,
//! not a crash. A service manager (`systemctl stop`, `docker stop`) signals every process of
//! the unit at once, so the agent can die a moment before Baton's own handler cancels the
//! run; the call is then recorded as cancelled, and its session stays resumable.

use std::time::Duration;

use agent::{AgentError, AgentReply, ExitInfo, Usage};

use super::TaskLoop;

/// How long a call that died of SIGTERM waits for the run's own cancellation to show.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

impl TaskLoop {
    /// `result`, or a cancellation when the agent died of SIGTERM and the run is stopping.
    pub(super) async fn within_shutdown(
        &self,
        result: Result<AgentReply, AgentError>,
        streamed: Usage,
    ) -> Result<AgentReply, AgentError> {
        let Err(AgentError::Crashed { exit, .. }) = &result else {
            return result;
        };
        if !died_of_sigterm(*exit) {
            return result;
        }
        let stopping = tokio::time::timeout(SHUTDOWN_GRACE, self.cancel.cancelled())
            .await
            .is_ok();
        if stopping {
            Err(AgentError::Cancelled {
                partial_usage: streamed,
            })
        } else {
            result
        }
    }
}

/// Killed by SIGTERM, or exited with the code a program uses for it (128 + 15).
fn died_of_sigterm(exit: ExitInfo) -> bool {
    matches!(exit, ExitInfo::Signal(libc::SIGTERM)) || exit == ExitInfo::Code(128 + libc::SIGTERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sigterm_is_part_of_a_shutdown() {
        assert!(died_of_sigterm(ExitInfo::Signal(libc::SIGTERM)));
        assert!(died_of_sigterm(ExitInfo::Code(143)));
        assert!(!died_of_sigterm(ExitInfo::Signal(libc::SIGKILL)));
        assert!(!died_of_sigterm(ExitInfo::Code(1)));
    }
}
