//! Secrets: which values the CLI keeps out of the ledger and its output, and the input it
//! refuses because it holds one.
//!
//! The [`Redactor`] is built once: the secret-looking variables of baton's environment (read
//! with the rest of it, when the settings module captures the environment), plus the
//! `[agent.env]` values of the configuration that look secret. The store takes free text only
//! as [`Redacted`] and is opened with it for the few texts it composes itself; the orchestrator
//! redacts with it what it sends to the agent, records and reports, and
//! [`output`](crate::output) everything printed. Input a person gives (a title, a prompt, a
//! verification command, guidance, a milestone) is refused outright when it holds a secret:
//! stored redacted, it would not say what the person meant.

use std::collections::BTreeMap;

use redact::{Found, Redacted, Redactor};

use crate::error::CliError;

/// `base` (the environment's secrets) with the `[agent.env]` values that are secrets: those
/// of secret-looking names, and any shaped like a token.
pub fn with_agent_env(base: &Redactor, agent_env: &BTreeMap<String, String>) -> Redactor {
    let shapes = Redactor::new();
    agent_env
        .iter()
        .filter(|(name, value)| Redactor::is_secret_name(name) || shapes.find(value).is_some())
        .fold(base.clone(), |redactor, (name, value)| {
            redactor.with_value(name, value)
        })
}

/// Fails with a usage error when `text` holds a secret `redactor` knows, and otherwise gives
/// it back as the store takes it. `what` names the input, to complete "… contains the value
/// of NAME": "the prompt", "verification command 2".
///
/// What comes back is still redacted: [`Redactor::find`] does not look for a secret cut off
/// at the text's ends, which [`Redactor::redact`] replaces.
pub fn refuse_secret(redactor: &Redactor, what: &str, text: String) -> Result<Redacted, CliError> {
    let Some(found) = redactor.find(&text) else {
        return Ok(redactor.redact_owned(text));
    };
    let hint = match found {
        Found::Value { name } => format!(
            "baton never stores secrets; refer to the variable by name instead, such as \"${name}\" in a verify command, and let the agent read it from its environment"
        ),
        Found::Token { .. } => String::from(
            "baton never stores secrets; put the token in an environment variable (or under [agent.env] in .baton/config.toml), refer to it by name, such as \"$MY_TOKEN\" in a verify command, and let the agent read it from its environment",
        ),
    };
    Err(CliError::usage(format!("{what} contains {found}")).with_hint(hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_env_secrets_are_those_with_secret_names_or_token_shapes() {
        let base = Redactor::from_vars([("ANTHROPIC_API_KEY", "FAKE-base-key-000")]);
        let agent_env = BTreeMap::from([
            (
                String::from("GITHUB_TOKEN"),
                String::from("FAKE-config-token"),
            ),
            (
                String::from("UPSTREAM"),
                String::from("ghp_FAKE0123456789abcdefghijklmnopqrstu"),
            ),
            (String::from("RUST_LOG"), String::from("debug,hyper=info")),
        ]);
        let redactor = with_agent_env(&base, &agent_env);
        let mut names: Vec<&str> = redactor.names().collect();
        names.sort_unstable();
        assert_eq!(names, ["ANTHROPIC_API_KEY", "GITHUB_TOKEN", "UPSTREAM"]);
    }

    #[test]
    fn a_secret_in_input_is_refused_naming_it_and_the_input() {
        let redactor = Redactor::from_vars([("ANTHROPIC_API_KEY", "FAKE-base-key-000")]);
        let error =
            refuse_secret(&redactor, "the prompt", "use FAKE-base-key-000".into()).unwrap_err();
        assert_eq!(
            error.message,
            "the prompt contains the value of ANTHROPIC_API_KEY"
        );
        assert!(error.hint.unwrap().contains("\"$ANTHROPIC_API_KEY\""));
        let error = refuse_secret(
            &redactor,
            "verification command 1",
            "curl -H 'Authorization: Bearer FAKEfakeFAKEfake0123'".into(),
        )
        .unwrap_err();
        assert_eq!(
            error.message,
            "verification command 1 contains what looks like a bearer token"
        );
        assert_eq!(
            refuse_secret(&redactor, "the prompt", "echo $ANTHROPIC_API_KEY".into()).unwrap(),
            "echo $ANTHROPIC_API_KEY"
        );
    }
}
