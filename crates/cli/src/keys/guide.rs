//! The user guide's tables of keys and environment variables, made from the definitions. Only
//! its test uses them: it fails, printing the tables to paste, when docs/user-guide.md differs.

use super::{ALL, Definition, Kind};

/// The configuration table: every key, what it takes, its default, what sets it, and why.
fn key_table() -> String {
    let mut out =
        String::from("| key | takes | default | set by | meaning |\n|---|---|---|---|---|\n");
    for key in ALL {
        let default = match key.unset_means() {
            Some(means) => means.to_owned(),
            None => format!("`{}`", key.default_in_file()),
        };
        out.push_str(&format!(
            "| `{}` | {} | {default} | {} | {} |\n",
            key.name,
            allowed(key.kind),
            set_by(key),
            key.help.replace('|', "\\|"),
        ));
    }
    out
}

/// The environment variables that set keys.
fn environment_table() -> String {
    let mut out = String::from("| variable | sets | meaning |\n|---|---|---|\n");
    for key in ALL {
        if let Some(variable) = key.sources.env {
            out.push_str(&format!(
                "| `{variable}` | `{}` | {} |\n",
                key.name,
                key.help.replace('|', "\\|")
            ));
        }
    }
    out
}

/// What may set the key, strongest first.
fn set_by(key: &Definition) -> String {
    let mut sources = Vec::new();
    for flag in key.sources.flags {
        sources.push(format!("`{flag}`"));
    }
    if let Some(variable) = key.sources.env {
        sources.push(format!("`{variable}`"));
    }
    if key.sources.file {
        sources.push(String::from("file"));
    }
    sources.join(", ")
}

#[test]
fn the_user_guide_lists_every_key_as_defined() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/user-guide.md");
    let guide = std::fs::read_to_string(path).unwrap();
    let differ: Vec<String> = [
        ("configuration", key_table()),
        ("environment variables", environment_table()),
    ]
    .into_iter()
    .filter(|(_, table)| !guide.contains(table.as_str()))
    .map(|(what, table)| format!("the {what} table, to paste in its place:\n\n{table}"))
    .collect();
    assert!(
        differ.is_empty(),
        "docs/user-guide.md differs from the definitions in crates/cli/src/keys.rs in {}",
        differ.join("\nand ")
    );
}

/// What a key takes, in the guide's words: `whole number, 1 to 64`, `"task", "fresh"`.
fn allowed(kind: Kind) -> String {
    match kind {
        Kind::Count { min, max, .. } if max >= u64::from(u32::MAX) => {
            format!("whole number, at least {min}")
        }
        Kind::Count { min, max, .. } => format!("whole number, {min} to {max}"),
        Kind::Share { .. } => String::from("number, above 0 and at most 1"),
        Kind::Money => String::from("US dollars, above 0"),
        Kind::Duration => String::from("duration, above zero"),
        Kind::Word(words) => words
            .iter()
            .map(|word| format!("`\"{word}\"`"))
            .collect::<Vec<_>>()
            .join(", "),
        Kind::Text => String::from("text"),
        Kind::LedgerUrl => String::from("PostgreSQL URL, no password"),
        Kind::Path => String::from("path"),
        Kind::List => String::from("list of texts"),
        Kind::Variables => String::from("table of texts"),
    }
}
