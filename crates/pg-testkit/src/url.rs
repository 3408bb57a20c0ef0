//! Taking a `postgres://` URL apart just enough to swap its database or drop its password.
//!
//! libpq's URL syntax is `postgres[ql]://[user[:password]@][host][:port][/database][?params]`;
//! the kit only ever rewrites the database and the password, so it splits the URL into those
//! pieces as text and leaves everything else (hosts, parameters such as `sslmode`) as written.

use crate::error::{Error, Result};

/// What a message shows for text that is not a `postgres://` URL.
const NOT_A_URL: &str = "(a value that is not a postgres:// URL)";

/// A `postgres://` URL split into the parts the kit rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PostgresUrl {
    /// `postgres://` or `postgresql://`.
    scheme: String,
    /// The user as written (percent-encoded), if any.
    user: Option<String>,
    /// The password as written (percent-encoded), if any.
    password: Option<String>,
    /// Hosts and ports as written.
    hosts: String,
    /// The database as written, if any.
    database: Option<String>,
    /// Everything from `?` on, if anything.
    query: String,
}

impl PostgresUrl {
    pub(crate) fn parse(url: &str) -> Result<PostgresUrl> {
        // The text may hold a password in another syntax: the message does not repeat it.
        let bad = || Error::BadUrl {
            url: String::from(NOT_A_URL),
        };
        let scheme = ["postgres://", "postgresql://"]
            .into_iter()
            .find(|scheme| url.starts_with(scheme))
            .ok_or_else(bad)?;
        let rest = &url[scheme.len()..];
        let (rest, query) = match rest.find('?') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let (authority, database) = match rest.find('/') {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (user_info, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (user, password) = match user_info.map(|info| info.split_once(':')) {
            Some(Some((user, password))) => (Some(user), Some(password)),
            Some(None) => (user_info, None),
            None => (None, None),
        };
        Ok(PostgresUrl {
            scheme: scheme.to_owned(),
            user: user.map(str::to_owned),
            password: password.map(str::to_owned),
            hosts: hosts.to_owned(),
            database: database.filter(|name| !name.is_empty()).map(str::to_owned),
            query: query.to_owned(),
        })
    }

    /// The same URL naming the database `name` (a plain identifier: nothing to encode).
    pub(crate) fn with_database(&self, name: &str) -> PostgresUrl {
        PostgresUrl {
            database: Some(name.to_owned()),
            ..self.clone()
        }
    }

    /// The same URL without a password, for messages and for tests of other ways to give one.
    pub(crate) fn without_password(&self) -> PostgresUrl {
        PostgresUrl {
            password: None,
            ..self.clone()
        }
    }

    /// The password, decoded, if the URL has one.
    pub(crate) fn password(&self) -> Option<String> {
        self.password.as_deref().map(percent_decode)
    }

    /// The database, decoded, if the URL names one.
    #[cfg(test)]
    pub(crate) fn database(&self) -> Option<String> {
        self.database.as_deref().map(percent_decode)
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.scheme)?;
        if let Some(user) = &self.user {
            formatter.write_str(user)?;
            if let Some(password) = &self.password {
                write!(formatter, ":{password}")?;
            }
            formatter.write_str("@")?;
        }
        formatter.write_str(&self.hosts)?;
        if let Some(database) = &self.database {
            write!(formatter, "/{database}")?;
        }
        formatter.write_str(&self.query)
    }
}

/// `url` with its password left out, or a placeholder when it cannot be read as a URL: what a
/// message may show.
pub(crate) fn redact_password(url: &str) -> String {
    match PostgresUrl::parse(url) {
        Ok(parsed) => parsed.without_password().to_string(),
        Err(_) => String::from(NOT_A_URL),
    }
}

/// `text` with `%XX` escapes replaced by the bytes they stand for.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_swapped_and_everything_else_kept() {
        let url =
            PostgresUrl::parse("postgres://baton:p%40ss@127.0.0.1:5433/postgres?sslmode=disable")
                .unwrap();
        assert_eq!(url.password().as_deref(), Some("p@ss"));
        assert_eq!(url.database().as_deref(), Some("postgres"));
        assert_eq!(
            url.with_database("baton_t").to_string(),
            "postgres://baton:p%40ss@127.0.0.1:5433/baton_t?sslmode=disable"
        );
        assert_eq!(
            url.without_password().to_string(),
            "postgres://baton@127.0.0.1:5433/postgres?sslmode=disable"
        );
    }

    #[test]
    fn a_url_without_user_or_database_still_takes_one() {
        let url = PostgresUrl::parse("postgresql://localhost").unwrap();
        assert_eq!(url.password(), None);
        assert_eq!(url.database(), None);
        assert_eq!(
            url.with_database("x").to_string(),
            "postgresql://localhost/x"
        );
    }

    #[test]
    fn other_text_is_refused_without_showing_it() {
        let error = PostgresUrl::parse("host=localhost password=secret").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
