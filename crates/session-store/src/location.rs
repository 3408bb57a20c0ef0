//! Where a ledger lives: a SQLite file, or a PostgreSQL database named by a URL in libpq's
//! syntax. The password never leaves this module in anything that is printed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use postgres::Config;
use postgres::config::Host;

use crate::db::PgTarget;
use crate::error::StoreError;
use crate::options::{Durability, PostgresPassword, StoreOptions};
use crate::tls::{Tls, TlsParameters};

/// A ledger's place, as [`Store::open_with`](crate::Store::open_with) reads its `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresUrl),
}

impl Location {
    /// A path that starts `postgres://` or `postgresql://` is a PostgreSQL URL; anything else
    /// is a file.
    pub fn of(path: &Path) -> Result<Location, StoreError> {
        match path.to_str() {
            Some(text) if PostgresUrl::looks_like(text) => {
                PostgresUrl::parse(text).map(Location::Postgres)
            }
            _ => Ok(Location::File(path.to_owned())),
        }
    }
}

/// A PostgreSQL connection URL, checked. Its `Display` and `Debug` leave the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
    /// `url` without libpq's TLS parameters, which rust-postgres does not read: for it.
    connect_url: String,
    /// libpq's TLS parameters from `url`.
    tls: TlsParameters,
}

impl PostgresUrl {
    /// Whether `text` is meant as a PostgreSQL URL.
    pub fn looks_like(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// Checks `text` as libpq would read it.
    pub fn parse(text: &str) -> Result<PostgresUrl, StoreError> {
        let invalid = |reason: String| StoreError::Invalid {
            field: "ledger URL",
            reason: format!("`{}` {reason}", strip_password(text)),
        };
        let (connect_url, tls) = crate::tls::split_url(text).map_err(|reason| {
            invalid(format!("is not a PostgreSQL URL baton accepts: {reason}"))
        })?;
        let url = PostgresUrl {
            url: text.to_owned(),
            connect_url,
            tls,
        };
        url.config()?;
        Ok(url)
    }

    fn config(&self) -> Result<Config, StoreError> {
        Config::from_str(&self.connect_url).map_err(|error| StoreError::Invalid {
            field: "ledger URL",
            // The parser's message names the part it could not read, not the password.
            reason: format!("`{self}` is not a PostgreSQL URL libpq would accept: {error}"),
        })
    }

    /// The URL with any password taken out, for messages.
    pub fn without_password(&self) -> String {
        strip_password(&self.url)
    }

    /// `text`, a URL that may not parse, with any password taken out, for messages.
    pub fn text_without_password(text: &str) -> String {
        strip_password(text)
    }

    /// Whether the URL itself carries a password.
    pub fn has_password(&self) -> bool {
        self.password().is_some()
    }

    /// The password the URL itself carries, for the caller's redactor.
    pub fn password(&self) -> Option<PostgresPassword> {
        let config = self.config().ok()?;
        let password = config.get_password()?;
        Some(PostgresPassword::new(String::from_utf8_lossy(password)))
    }

    /// The first host, port, database and user the URL names, with libpq's defaults (port
    /// 5432; the database named as the user), as `.pgpass` lines are matched against them.
    /// `user` is the caller's login name, for a URL that names no user.
    pub fn pgpass_key(&self, user: &str) -> Option<PgpassKey> {
        let config = self.config().ok()?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => String::from("localhost"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or(user).to_owned();
        let database = config.get_dbname().unwrap_or(&user).to_owned();
        Some(PgpassKey {
            host,
            port,
            database,
            user,
        })
    }

    /// What the store connects with: the URL, the password from `options` when the URL has
    /// none, and the settings every connection gets.
    pub(crate) fn target(&self, options: &StoreOptions) -> Result<PgTarget, StoreError> {
        let mut config = self.config()?;
        if config.get_password().is_none()
            && let Some(password) = &options.postgres_password
        {
            config.password(password.expose());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(crate::db::CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("baton");
        }
        let synchronous_commit = match options.durability {
            Durability::Full => "on",
            Durability::Normal => "off",
        };
        let lock_timeout = options.busy_timeout.as_millis();
        let tls =
            Tls::resolve(&self.tls, &options.postgres_environment, &config).map_err(|reason| {
                StoreError::Invalid {
                    field: "ledger URL",
                    reason: format!("`{self}` cannot be connected to: {reason}"),
                }
            })?;
        Ok(PgTarget {
            tls,
            config,
            session_settings: format!(
                "SET synchronous_commit = {synchronous_commit}; SET lock_timeout = {lock_timeout}; \
                 SET standard_conforming_strings = on"
            ),
        })
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.without_password())
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// What a `.pgpass` line is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpassKey {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
}

impl PgpassKey {
    /// The password of the first line of a `.pgpass` file (`host:port:database:user:password`,
    /// `*` matching anything, `\:` and `\\` escaped) that matches, as libpq finds it.
    pub fn find_in(&self, pgpass: &str) -> Option<PostgresPassword> {
        let port = self.port.to_string();
        let wanted = [
            self.host.as_str(),
            port.as_str(),
            self.database.as_str(),
            self.user.as_str(),
        ];
        pgpass
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let fields = pgpass_fields(line);
                let [host, port, database, user, password] = fields.as_slice() else {
                    return None;
                };
                let matches = [host, port, database, user]
                    .iter()
                    .zip(wanted)
                    .all(|(field, wanted)| field.as_str() == "*" || field.as_str() == wanted);
                matches.then(|| PostgresPassword::new(password.clone()))
            })
    }
}

/// Splits a `.pgpass` line at its unescaped colons, unescaping `\:` and `\\`.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => {
                if let Some(escaped) = characters.next()
                    && let Some(field) = fields.last_mut()
                {
                    field.push(escaped);
                }
            }
            ':' => fields.push(String::new()),
            other => {
                if let Some(field) = fields.last_mut() {
                    field.push(other);
                }
            }
        }
    }
    fields
}

/// `scheme://user:password@host/…?password=…` without the password in either place.
fn strip_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{user}@{hosts}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !pair.starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        let url = PostgresUrl::parse(
            "postgres://baton:s3cret@db.internal:6543/ledger?sslmode=prefer&password=other",
        )
        .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://baton@db.internal:6543/ledger?sslmode=prefer"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(url.has_password());
        let password = PostgresPassword::new("hunter2");
        assert!(!format!("{password:?}").contains("hunter2"));
    }

    #[test]
    fn paths_and_urls_are_told_apart() {
        assert_eq!(
            Location::of(Path::new(".baton/baton.db")).unwrap(),
            Location::File(PathBuf::from(".baton/baton.db"))
        );
        assert!(matches!(
            Location::of(Path::new("postgresql://localhost/baton")).unwrap(),
            Location::Postgres(_)
        ));
        let error = Location::of(Path::new("postgres://x:y@host:notaport/db")).unwrap_err();
        assert!(!error.to_string().contains(":y@"), "{error}");
        for mode in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            let url = format!("postgres://x:y@host/db?sslmode={mode}&sslrootcert=/ca.crt");
            assert!(PostgresUrl::parse(&url).is_ok(), "{url}");
        }
        let error = PostgresUrl::parse("postgres://x:y@host/db?sslmode=always").unwrap_err();
        assert!(error.to_string().contains("verify-full"), "{error}");
        assert!(!error.to_string().contains(":y@"), "{error}");
    }

    #[test]
    fn pgpass_lines_match_as_libpq_matches_them() {
        let url = PostgresUrl::parse("postgres://ci@127.0.0.1:5433/ledger").unwrap();
        let key = url.pgpass_key("root").unwrap();
        let pgpass = "# comment\n\
                      127.0.0.1:5432:*:ci:wrong-port\n\
                      127.0.0.1:5433:other:ci:wrong-db\n\
                      *:5433:ledger:ci:pa\\:ss\n\
                      *:*:*:*:fallback\n";
        assert_eq!(key.find_in(pgpass), Some(PostgresPassword::new("pa:ss")));
        let bare = PostgresUrl::parse("postgres://localhost").unwrap();
        let key = bare.pgpass_key("me").unwrap();
        assert_eq!(
            (key.port, key.database.as_str(), key.user.as_str()),
            (5432, "me", "me")
        );
        assert_eq!(
            key.find_in("localhost:5432:me:me:x"),
            Some(PostgresPassword::new("x"))
        );
        assert_eq!(key.find_in("otherhost:5432:me:me:x"), None);
    }
}
