//! What can go wrong while starting, driving or stopping a throw-away server.

use std::path::PathBuf;
use std::process::ExitStatus;

/// An error of the test kit. Each message says what failed and, where a person can act, what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No directory with `initdb` and `pg_ctl` was found.
    #[error(
        "PostgreSQL's server binaries are not installed (looked in {searched}): \
         apt-get install postgresql, or set BATON_TEST_PG_BINDIR to the directory that holds \
         initdb and pg_ctl"
    )]
    BinariesMissing {
        /// The places looked in, for the message.
        searched: String,
    },
    /// A program could not be started at all.
    #[error("failed to start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("{command} failed with {status}: {output}")]
    Command {
        /// The command line, for the message.
        command: String,
        status: ExitStatus,
        /// What it printed, and for a server that did not start the end of the server's log.
        output: String,
    },
    /// The system user the server runs as (it refuses to run as root) could not be made.
    #[error(
        "failed to create the system user {user} to run PostgreSQL as (the server refuses to \
         run as root): {reason}"
    )]
    SystemUser { user: String, reason: String },
    /// A file or directory of the cluster could not be made, written or read.
    #[error("failed to prepare {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No port could be had, or the server found every port it was given taken.
    #[error("failed to find a free port on 127.0.0.1 for the server after {attempts} attempts")]
    NoFreePort { attempts: u32 },
    /// A URL is not a `postgres://` URL the kit can take apart.
    #[error("{url} was given where a URL postgres://user[:password]@host[:port]/database belongs")]
    BadUrl { url: String },
    /// Connecting to a server failed.
    #[error("failed to connect to {url}")]
    Connect {
        /// The URL without its password.
        url: String,
        #[source]
        source: postgres::Error,
    },
    /// An administrative statement failed.
    #[error("failed to run `{statement}` on {url}")]
    Statement {
        statement: String,
        /// The URL without its password.
        url: String,
        #[source]
        source: postgres::Error,
    },
    /// A throw-away certificate could not be made.
    #[error("failed to make a certificate for a test server")]
    Certificate {
        #[source]
        source: openssl::error::ErrorStack,
    },
    /// The server was asked to do something in a state where it cannot.
    #[error("the server is {state}; {what} needs it {wanted}")]
    State {
        state: &'static str,
        what: &'static str,
        wanted: &'static str,
    },
}

/// The kit's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
