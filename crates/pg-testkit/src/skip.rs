//! How a test gets a server or a database, and what it does when there is none: skip with a
//! printed reason, or fail when the run requires PostgreSQL (CI does).

use crate::cluster::{Cluster, Commits, TlsOptions};
use crate::database::TestDatabase;
use crate::error::Error;

/// The variable through which a test is handed a server: an administrative URL (a superuser's,
/// password included) in libpq's URL syntax. `cargo xtask test` sets it.
pub const TEST_URL_ENV: &str = "BATON_TEST_PG_URL";

/// When this variable is `1`, a missing server fails the test instead of skipping it.
pub const REQUIRE_POSTGRES_ENV: &str = "BATON_REQUIRE_POSTGRES";

impl TestDatabase {
    /// A new, empty database for the test `test_name` in the server named by
    /// `$BATON_TEST_PG_URL`, or `None` after printing why the test skips.
    ///
    /// # Panics
    ///
    /// When `BATON_TEST_PG_URL` is unset and `BATON_REQUIRE_POSTGRES=1`, and when the server it
    /// names cannot make the database: a server that was promised and fails is a failure.
    pub fn create(test_name: &str) -> Option<TestDatabase> {
        let admin_url = match std::env::var(TEST_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                return skip_or_fail(
                    test_name,
                    &format!(
                        "{TEST_URL_ENV} is not set (`cargo xtask test` sets it; or start a server \
                         with `cargo xtask pg` and export the URL it prints)"
                    ),
                );
            }
        };
        match TestDatabase::create_in(&admin_url, test_name) {
            Ok(database) => Some(database),
            Err(error) => panic!(
                "{test_name}: failed to make a test database through ${TEST_URL_ENV}: {}",
                chain(&error)
            ),
        }
    }
}

/// A server of the test's own, for a test that stops or restarts it; `None` after printing why
/// the test skips when PostgreSQL's server programs are not installed. Its acknowledged commits
/// survive [`Cluster::stop_immediately`] ([`Commits::SurviveServerCrash`]).
///
/// # Panics
///
/// When the programs are missing and `BATON_REQUIRE_POSTGRES=1`, and when the server does not
/// start for any other reason.
pub fn private_cluster(test_name: &str) -> Option<Cluster> {
    started(test_name, Cluster::start_with(Commits::SurviveServerCrash))
}

/// A server of the test's own that takes TLS as `tls` says ([`Cluster::start_with_tls`]);
/// `None` after printing why the test skips, as [`private_cluster`].
///
/// # Panics
///
/// As [`private_cluster`].
pub fn private_tls_cluster(test_name: &str, tls: &TlsOptions) -> Option<Cluster> {
    started(test_name, Cluster::start_with_tls(tls))
}

fn started(test_name: &str, cluster: crate::error::Result<Cluster>) -> Option<Cluster> {
    match cluster {
        Ok(cluster) => Some(cluster),
        Err(error @ Error::BinariesMissing { .. }) => skip_or_fail(test_name, &error.to_string()),
        Err(error) => panic!(
            "{test_name}: failed to start a PostgreSQL server: {}",
            chain(&error)
        ),
    }
}

/// Whether the run requires PostgreSQL (`BATON_REQUIRE_POSTGRES=1`).
pub fn postgres_required() -> bool {
    std::env::var(REQUIRE_POSTGRES_ENV).as_deref() == Ok("1")
}

/// Prints the skip line `cargo xtask test` collects and returns `None`, or panics when the run
/// requires PostgreSQL.
fn skip_or_fail<T>(test_name: &str, reason: &str) -> Option<T> {
    if postgres_required() {
        panic!("{test_name}: {reason}; {REQUIRE_POSTGRES_ENV}=1 makes this a failure");
    }
    eprintln!("skipping {test_name}: {reason}");
    None
}

/// `error` and each of its causes, joined by `: `.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
