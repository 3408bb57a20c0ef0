//! How a ledger is opened: [`StoreOptions`] and the [`Durability`] of its commits.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redact::Redactor;

/// Settings for [`Store::open_with`](crate::Store::open_with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a write waits for another connection's write to finish before it fails with
    /// [`StoreError::Busy`](crate::StoreError::Busy). Writes are short, so reaching this
    /// means something is stuck.
    pub busy_timeout: Duration,
    /// What is kept out of the ledger: the texts the store composes itself (a sweep's reason
    /// naming a host, an event's detail) pass through it. Free text from callers comes in as
    /// [`Redacted`](redact::Redacted), made by the caller's redactor, which should be this one.
    pub redactor: Redactor,
    /// Whether a commit survives a power cut; see [`Durability`].
    pub durability: Durability,
    /// The password for a PostgreSQL ledger whose URL has none (from `PGPASSWORD` or
    /// `~/.pgpass`, which the caller reads: the store reads no environment).
    pub postgres_password: Option<PostgresPassword>,
    /// What libpq would take from the environment for a PostgreSQL ledger's TLS, read by the
    /// caller as the password is.
    pub postgres_environment: PostgresEnvironment,
}

/// libpq's environment for TLS, as the caller read it (the store reads no environment): the
/// home directory that holds `~/.postgresql/root.crt` (the certificate authority to check the
/// server against) and `~/.postgresql/postgresql.crt` and `.key` (a client certificate), and
/// the defaults for a URL that does not name its own `sslmode`, `sslrootcert`, `sslcert` or
/// `sslkey`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostgresEnvironment {
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `PGSSLMODE`: one of `disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub sslmode: Option<String>,
    /// `PGSSLROOTCERT`.
    pub sslrootcert: Option<PathBuf>,
    /// `PGSSLCERT`.
    pub sslcert: Option<PathBuf>,
    /// `PGSSLKEY`.
    pub sslkey: Option<PathBuf>,
}

/// How hard a commit works to survive a power cut or an operating-system crash: SQLite's
/// `synchronous` setting, under write-ahead logging.
///
/// Either way an application crash (a killed `baton`) loses nothing that was committed, and
/// the file is never corrupted. The difference is a power cut or an OS crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// `synchronous=FULL`: every commit syncs the write-ahead log before it returns, so a
    /// committed agent call survives a power cut. The ledger reconciles to the token with
    /// what the API billed, so this is the default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the log is synced only when it is copied into the database (at
    /// checkpoints). A power cut or an OS crash can lose the last commits. Cheaper where a
    /// sync is slow (a spinning disk, a network file system); a documented choice, not the
    /// default.
    Normal,
}

impl Durability {
    /// Every setting, in the order the documentation lists them.
    pub const ALL: [Durability; 2] = [Durability::Full, Durability::Normal];

    /// The word for it in configuration: `full` or `normal`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Normal => "normal",
        }
    }

    /// The setting a word names, as [`Durability::as_str`] writes it.
    pub fn parse(word: &str) -> Option<Durability> {
        Durability::ALL
            .into_iter()
            .find(|durability| durability.as_str() == word)
    }

    /// The value of SQLite's `synchronous` pragma that gives it.
    pub(crate) const fn synchronous(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

impl StoreOptions {
    /// The busy timeout of [`StoreOptions::new`].
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

    /// A 30-second busy timeout, [`Durability::Full`], and `redactor`. There is no default:
    /// the store reads no environment, so the caller says what is secret.
    pub fn new(redactor: Redactor) -> StoreOptions {
        StoreOptions {
            busy_timeout: StoreOptions::DEFAULT_BUSY_TIMEOUT,
            redactor,
            durability: Durability::default(),
            postgres_password: None,
            postgres_environment: PostgresEnvironment::default(),
        }
    }
}

/// A password for a PostgreSQL ledger. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresPassword(String);

impl PostgresPassword {
    pub fn new(password: impl Into<String>) -> PostgresPassword {
        PostgresPassword(password.into())
    }

    /// The password itself, for the caller's redactor.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PostgresPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostgresPassword(..)")
    }
}
