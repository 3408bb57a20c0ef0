//! A throw-away PostgreSQL database per test, on the server `cargo xtask test` starts.
//!
//! `BATON_TEST_PG_URL` names that server (an administrator's URL); without it a test on
//! PostgreSQL skips and says why, or fails when `BATON_REQUIRE_POSTGRES=1` (as in CI).

use postgres::{Client, NoTls};

/// A database made for one test, dropped when the test ends.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    const URL_ENV: &'static str = "BATON_TEST_PG_URL";
    const REQUIRE_ENV: &'static str = "BATON_REQUIRE_POSTGRES";

    /// Whether a server is there; says the test skips when not, panics when it is required.
    pub fn available(test: &str) -> bool {
        if std::env::var_os(Self::URL_ENV).is_some() {
            return true;
        }
        assert!(
            std::env::var_os(Self::REQUIRE_ENV).is_none_or(|value| value != "1"),
            "{test} needs a PostgreSQL server: {} is not set ({}=1 makes that a failure; `cargo xtask test` starts one)",
            Self::URL_ENV,
            Self::REQUIRE_ENV,
        );
        println!(
            "skipping {test}: no PostgreSQL server ({} is not set; `cargo xtask test` starts one)",
            Self::URL_ENV
        );
        false
    }

    /// A new database, or `None` (having said so) without a server.
    pub fn create(test: &str) -> Option<TestDatabase> {
        if !Self::available(test) {
            return None;
        }
        let admin_url = std::env::var(Self::URL_ENV).ok()?;
        let name = format!(
            "baton_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut admin = Client::connect(&admin_url, NoTls).expect("the test server accepts us");
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .expect("a test database can be created");
        let url = database_url(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&self.admin_url, NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// `admin_url` with its database replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(base, query)| (base, Some(query)));
    let scheme_end = base.find("://").map_or(0, |index| index + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}
