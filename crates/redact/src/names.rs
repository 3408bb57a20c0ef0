//! Which variable names say their value is a secret.

/// Words of a variable name (split at `_`, `-` and `.`) that mark its value as secret,
/// matched case-insensitively: a word that is one of these, or ends with one of the first
/// four (`APIKEY`, `PGPASSWORD`). Whole words, so that `GIT_AUTHOR_NAME` is not a secret.
pub const SECRET_NAME_PARTS: [&str; 8] = [
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
];

/// Plural and short forms of [`SECRET_NAME_PARTS`] that also count as whole words.
const SECRET_NAME_FORMS: [&str; 7] = [
    "KEYS",
    "TOKENS",
    "SECRETS",
    "PASSWORDS",
    "CREDENTIALS",
    "CREDS",
    "PASS",
];

/// Well-known variables whose names contain a secret-looking part but whose values are paths,
/// not secrets.
const NOT_SECRET_NAMES: [&str; 3] = ["SSH_AUTH_SOCK", "XAUTHORITY", "GNOME_KEYRING_CONTROL"];

/// See [`Redactor::is_secret_name`](crate::Redactor::is_secret_name).
pub(crate) fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    !NOT_SECRET_NAMES.contains(&upper.as_str())
        && upper.split(['_', '-', '.']).any(|word| {
            SECRET_NAME_PARTS.contains(&word)
                || SECRET_NAME_FORMS.contains(&word)
                || SECRET_NAME_PARTS[..4]
                    .iter()
                    .any(|part| word.ends_with(part))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised_whatever_their_case() {
        for name in [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "db_password",
            "MYSQL_PASSWD",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "private_thing",
            "OPENAI_APIKEY",
            "PGPASSWORD",
            "NPM_AUTH-TOKEN",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "RUST_LOG",
            "SSH_AUTH_SOCK",
            "xauthority",
            "GIT_AUTHOR_NAME",
            "GIT_AUTHOR_EMAIL",
            "KEYBOARD_LAYOUT",
            "PASSAGE_DIR",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
