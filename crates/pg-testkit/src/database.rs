//! A database of its own for one test, made in a shared server and dropped after the test.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::random::random_hex;
use crate::url::{PostgresUrl, redact_password};

/// How many characters of a test's name go into its database's name (PostgreSQL cuts names at
/// 63 bytes; the rest is the prefix and a unique suffix).
const NAME_CHARACTERS: usize = 32;

/// An empty database made for one test, dropped (`WITH (FORCE)`, so open connections do not
/// stop it) when the value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The administrative URL it was made through, which also drops it.
    admin_url: String,
    name: String,
    url: PostgresUrl,
}

impl TestDatabase {
    /// Makes a database named after `test_name` (plus a unique suffix) through the
    /// administrative URL `admin_url` (a superuser's or a role with `CREATEDB`), copied from
    /// `template0`.
    pub fn create_in(admin_url: &str, test_name: &str) -> Result<TestDatabase> {
        let name = unique_name(test_name)?;
        let parsed = PostgresUrl::parse(admin_url)?;
        let mut admin = connect(admin_url)?;
        let statement = format!("CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'");
        admin
            .batch_execute(&statement)
            .map_err(|source| Error::Statement {
                statement,
                url: redact_password(admin_url),
                source,
            })?;
        Ok(TestDatabase {
            admin_url: admin_url.to_owned(),
            url: parsed.with_database(&name),
            name,
        })
    }

    /// The database's URL, with the password when the administrative URL had one.
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// The database's URL without a password, for tests of `PGPASSWORD` and `~/.pgpass`, and
    /// for anything that is printed.
    pub fn url_without_password(&self) -> String {
        self.url.without_password().to_string()
    }

    /// The password the URL carries, if any.
    pub fn password(&self) -> Option<String> {
        self.url.password()
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to the database.
    pub fn connect(&self) -> Result<postgres::Client> {
        connect(&self.url())
    }

    fn drop_database(&self) -> Result<()> {
        let mut admin = connect(&self.admin_url)?;
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        admin
            .batch_execute(&statement)
            .map_err(|source| Error::Statement {
                statement,
                url: redact_password(&self.admin_url),
                source,
            })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Never a panic here: a drop while a failing test unwinds would abort the process and
        // hide the test's own message.
        if let Err(error) = self.drop_database() {
            eprintln!(
                "pg-testkit: the test database {} was left behind: {error}",
                self.name
            );
        }
    }
}

/// A connection to `url`, without TLS (the kit's servers listen on loopback only).
pub(crate) fn connect(url: &str) -> Result<postgres::Client> {
    postgres::Client::connect(url, postgres::NoTls).map_err(|source| Error::Connect {
        url: redact_password(url),
        source,
    })
}

/// `baton_<the test's name, cut and made an identifier>_<counter><random>`: unique among the
/// databases of every test process using the server at once, and of earlier runs' leftovers.
fn unique_name(test_name: &str) -> Result<String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let readable: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(NAME_CHARACTERS)
        .collect();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(format!("baton_{readable}_{count}{}", random_hex(4)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers_that_fit_and_differ() {
        let first =
            unique_name("store::conformance::Claims are exclusive, across processes!").unwrap();
        let second =
            unique_name("store::conformance::Claims are exclusive, across processes!").unwrap();
        assert_ne!(first, second);
        assert!(first.len() <= 63, "{first}");
        assert!(
            first
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{first}"
        );
        assert!(
            first.starts_with("baton_store__conformance__claims_"),
            "{first}"
        );
    }
}
