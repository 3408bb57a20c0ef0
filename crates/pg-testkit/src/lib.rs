//! Test support: throw-away PostgreSQL servers, and a database of its own for each test.
//!
//! A test that needs a server asks for a database:
//!
//! ```no_run
//! let Some(database) = pg_testkit::TestDatabase::create("store_claims_are_exclusive") else {
//!     return; // skipped, and the reason printed
//! };
//! let url: String = database.url(); // postgres://baton:…@127.0.0.1:…/baton_store_claims_…
//! ```
//!
//! The database lives in the one server `cargo xtask test` starts for the whole run and names
//! in `BATON_TEST_PG_URL`; it is dropped with the value. Without that variable the test skips
//! and says why, unless `BATON_REQUIRE_POSTGRES=1` (set by `cargo xtask test`, so in CI) makes
//! that a failure. A test that stops or restarts its server takes one of its own with
//! [`private_cluster`].
//!
//! The servers come from PostgreSQL's own programs (Debian's `/usr/lib/postgresql/<N>/bin`,
//! the newest there). The server refuses to run as root, so under root it runs as the system
//! user [`SYSTEM_USER`], made on first use.

mod account;
mod binaries;
mod certificates;
mod cluster;
mod database;
mod error;
mod leftovers;
mod random;
mod skip;
mod url;

pub use account::SYSTEM_USER;
pub use binaries::{BINDIR_ENV, server_binaries};
pub use certificates::{Authority, Issued};
pub use cluster::{Cluster, Commits, SUPERUSER, TlsOptions};
pub use database::TestDatabase;
pub use error::{Error, Result};
pub use skip::{
    REQUIRE_POSTGRES_ENV, TEST_URL_ENV, chain, postgres_required, private_cluster,
    private_tls_cluster,
};
