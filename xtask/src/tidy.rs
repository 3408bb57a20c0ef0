//! Tidy checks: rules about the shape of the source that no compiler enforces, run as ordinary
//! tests (after rust-analyzer's `xtask/src/tidy.rs`), so that `cargo xtask test` fails when one
//! is broken.
//!
//! The rules:
//! - the environment is read only in the CLI's settings module (and in the test-support
//!   crates, which exist to be driven by it);
//! - no import cycle between the modules of one crate;
//! - no function over 80 lines in `crates/*/src`;
//! - every source file opens with a `//!` line that says what it is for;
//! - the pinned Claude Code version is written in one place.
//!
//! The readers here are deliberately simple (lines and braces, strings and comments blanked
//! out), like `../shared/hooks/shape.py`; the code they read keeps to rustfmt's layout.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::workspace_root;

/// The longest a function in `crates/*/src` may be, in lines, its signature and braces included.
const FUNCTION_LINES_LIMIT: usize = 80;

/// Files that may read environment variables, relative to the workspace root, with why.
const ENVIRONMENT_READERS: &[(&str, &str)] = &[
    (
        "crates/cli/src/settings.rs",
        "the one place the program reads its environment",
    ),
    (
        "crates/cli/src/settings/",
        "the settings module's own files",
    ),
    (
        "crates/agent-mock/src/",
        "test support: mock-claude is scripted through its environment, as the real CLI reads its own",
    ),
    (
        "crates/api-standin/src/",
        "test support: finds the pinned CLI for the tests through the environment",
    ),
    (
        "crates/pg-testkit/src/",
        "test support: finds the tests' PostgreSQL server and its programs through the environment",
    ),
];

/// The calls that read environment variables.
const ENVIRONMENT_READS: &[&str] = &["env::var(", "env::var_os(", "env::vars(", "env::vars_os("];

/// The file that holds the pinned Claude Code version, relative to the workspace root.
const CLAUDE_VERSION_FILE: &str = "claude-code.version";

/// A Rust source file, read once.
struct Source {
    /// Relative to the workspace root, with `/` separators.
    path: String,
    text: String,
}

impl Source {
    /// The file's lines with string and character literals and comments blanked out, and with
    /// `#[cfg(test)]` modules left out: the code a rule is about.
    fn code_lines(&self) -> Vec<String> {
        let lines: Vec<String> = self.text.lines().map(strip_literals_and_comments).collect();
        let mut kept = Vec::with_capacity(lines.len());
        let mut index = 0;
        while index < lines.len() {
            if lines[index].trim_start().starts_with("#[cfg(test)]")
                && let Some(module) = lines.get(index + 1)
                && is_inline_module(module)
            {
                index = block_end(&lines, index + 1) + 1;
                continue;
            }
            kept.push(lines[index].clone());
            index += 1;
        }
        kept
    }
}

/// The `.rs` files under `crates/*/src`, tests left out (unit tests live in `tests.rs` files
/// and `tests/` directories beside the code they test).
fn crate_sources() -> Vec<Source> {
    let root = workspace_root();
    let mut sources = Vec::new();
    for src in crate_src_dirs(&root) {
        for path in rust_files(&src) {
            let inside = path.strip_prefix(&src).unwrap_or(&path);
            if inside
                .iter()
                .any(|part| part == "tests" || part == "tests.rs")
            {
                continue;
            }
            sources.push(read_source(&root, &path));
        }
    }
    sources
}

fn crate_src_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .expect("invariant: the workspace has a crates/ directory")
        .filter_map(|entry| Some(entry.ok()?.path().join("src")))
        .filter(|src| src.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("a source directory is readable") {
            let path = entry.expect("a directory entry is readable").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read_source(root: &Path, path: &Path) -> Source {
    let text = fs::read_to_string(path).expect("a source file is UTF-8 text");
    let relative = path.strip_prefix(root).unwrap_or(path);
    Source {
        path: relative.to_string_lossy().replace('\\', "/"),
        text,
    }
}

/// `line` with the insides of string and character literals and any `//` comment removed, so
/// that braces and words in them are not taken for code. Raw strings and strings that span
/// lines are rare enough in this code base that a line-by-line reading does.
fn strip_literals_and_comments(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(inner) = chars.next() {
                    match inner {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push('"');
            }
            '\'' => {
                // A character literal ('x', '\n', '{'), or a lifetime ('a): only the former
                // closes within a few characters.
                let rest: String = chars.clone().take(4).collect();
                let literal = match rest.chars().next() {
                    Some('\\') => rest
                        .chars()
                        .skip(2)
                        .position(|c| c == '\'')
                        .map(|at| at + 3),
                    Some(_) => (rest.chars().nth(1) == Some('\'')).then_some(2),
                    None => None,
                };
                out.push('\'');
                if let Some(length) = literal {
                    for _ in 0..length {
                        chars.next();
                    }
                    out.push('\'');
                }
            }
            '/' if chars.peek() == Some(&'/') => break,
            _ => out.push(c),
        }
    }
    out
}

/// Whether `line` opens a module with a body (`mod tests {`).
fn is_inline_module(line: &str) -> bool {
    let line = line.trim_start();
    let line = line.strip_prefix("pub ").unwrap_or(line);
    line.starts_with("mod ") && line.trim_end().ends_with('{')
}

/// The index of the line that closes the block opened on or after line `start`.
fn block_end(lines: &[String], start: usize) -> usize {
    let mut depth = 0i64;
    let mut opened = false;
    for (index, line) in lines.iter().enumerate().skip(start) {
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return index;
        }
    }
    lines.len().saturating_sub(1)
}

/// A function's name, when `line` starts its definition.
fn function_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = match after.strip_prefix('(') {
            Some(scoped) => scoped.split_once(')')?.1,
            None => after,
        }
        .trim_start();
    }
    for qualifier in ["const ", "async ", "unsafe ", "extern \"\" "] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest).trim_start();
    }
    let name = rest.strip_prefix("fn ")?;
    let end = name
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    (end > 0).then(|| &name[..end])
}

/// Every function of `source` with a body: (name, first line, length in lines).
fn functions(source: &Source) -> Vec<(String, usize, usize)> {
    let lines = source.code_lines();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(name) = function_name(line) else {
            continue;
        };
        // The body starts at the first `{` before any `;`: a declaration has none.
        let Some(body) = lines[index..]
            .iter()
            .position(|line| line.contains('{') || line.contains(';'))
            .map(|offset| index + offset)
            .filter(|&at| lines[at].contains('{'))
        else {
            continue;
        };
        let end = block_end(&lines, body);
        found.push((name.to_owned(), index + 1, end - index + 1));
    }
    found
}

/// The module path of a file under `src` (`commands/run.rs` is `commands::run`).
fn module_of(path: &str) -> Vec<String> {
    let (_, inside) = path
        .split_once("/src/")
        .expect("invariant: crate sources live under src/");
    let mut parts: Vec<String> = inside
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts
}

/// The modules of the same crate that `source` names through `crate::` or `super::` paths.
fn module_references(source: &Source, modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let me = module_of(&source.path);
    let code = source.code_lines().join("\n");
    let mut paths: Vec<Vec<String>> = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", me[..me.len().saturating_sub(1)].to_vec()),
    ] {
        for (at, _) in code.match_indices(prefix) {
            let preceded_by_word = code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            if preceded_by_word {
                continue;
            }
            for path in expand_use_tree(&code[at + prefix.len()..]) {
                let mut full = base.clone();
                full.extend(path);
                paths.push(full);
            }
        }
    }
    let mut references = BTreeSet::new();
    for path in paths {
        if let Some(module) = (1..=path.len())
            .rev()
            .map(|length| path[..length].to_vec())
            .find(|prefix| modules.contains(prefix))
            .filter(|module| *module != me)
        {
            references.insert(module);
        }
    }
    references
}

/// The paths a `use` tree or a plain path starting at `text` names: `a::b::{c, d::e}` gives
/// `a::b::c` and `a::b::d::e`.
fn expand_use_tree(text: &str) -> Vec<Vec<String>> {
    let head: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let prefix: Vec<String> = head
        .split("::")
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect();
    let rest = &text[head.len()..];
    let group = head.is_empty() || head.ends_with("::");
    if !group || !rest.starts_with('{') {
        return vec![prefix];
    }
    let Some(close) = matching_brace(rest) else {
        return vec![prefix];
    };
    split_top_level(&rest[1..close])
        .into_iter()
        .flat_map(|item| {
            let item = item.trim();
            if item.is_empty() || item == "self" {
                return vec![prefix.clone()];
            }
            expand_use_tree(item)
                .into_iter()
                .map(|tail| prefix.iter().cloned().chain(tail).collect())
                .collect()
        })
        .collect()
}

fn matching_brace(text: &str) -> Option<usize> {
    let mut depth = 0;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
    }
    None
}

fn split_top_level(text: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

/// The cycles among `graph`'s nodes (its strongly connected components of two or more), less
/// a parent module and its own child using each other, which Rust's module tree makes natural.
fn cycles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    let nodes: Vec<&Vec<String>> = graph.keys().collect();
    let reaches = |from: &Vec<String>, to: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut pending = vec![from.clone()];
        while let Some(node) = pending.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    pending.push(next.clone());
                }
            }
        }
        false
    };
    let mut assigned = BTreeSet::new();
    let mut found = Vec::new();
    for node in &nodes {
        if assigned.contains(*node) {
            continue;
        }
        let component: Vec<Vec<String>> = nodes
            .iter()
            .filter(|other| *other == node || (reaches(node, other) && reaches(other, node)))
            .map(|other| (*other).clone())
            .collect();
        assigned.extend(component.iter().cloned());
        let parent_and_child = component.len() == 2 && {
            let (short, long) = if component[0].len() < component[1].len() {
                (&component[0], &component[1])
            } else {
                (&component[1], &component[0])
            };
            long[..long.len() - 1] == short[..]
        };
        if component.len() > 1 && !parent_and_child {
            found.push(component);
        }
    }
    found
}

/// The crate a source file belongs to (`crates/cli/src/x.rs` is `cli`).
fn crate_of(path: &str) -> &str {
    path.split('/').nth(1).unwrap_or(path)
}

fn pinned_claude_version() -> String {
    let path = workspace_root().join(CLAUDE_VERSION_FILE);
    fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_read_only_in_the_cli_settings() {
        let mut offenders = Vec::new();
        for source in crate_sources() {
            if ENVIRONMENT_READERS
                .iter()
                .any(|(allowed, _)| source.path.starts_with(allowed))
            {
                continue;
            }
            for (index, line) in source.code_lines().iter().enumerate() {
                if ENVIRONMENT_READS.iter().any(|read| line.contains(read)) {
                    offenders.push(format!("{}:{}: {}", source.path, index + 1, line.trim()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "the environment is read only in the CLI's settings module \
             (crates/cli/src/settings.rs); read it there and pass values down:\n{}",
            offenders.join("\n")
        );
    }

    #[test]
    fn no_function_is_longer_than_the_limit() {
        let mut long = Vec::new();
        for source in crate_sources() {
            for (name, line, length) in functions(&source) {
                if length > FUNCTION_LINES_LIMIT {
                    long.push(format!("{}:{line} `{name}` is {length} lines", source.path));
                }
            }
        }
        assert!(
            long.is_empty(),
            "functions in crates/*/src are at most {FUNCTION_LINES_LIMIT} lines; split these \
             along a seam:\n{}",
            long.join("\n")
        );
    }

    #[test]
    fn no_import_cycle_between_the_modules_of_a_crate() {
        let mut by_crate: BTreeMap<String, Vec<Source>> = BTreeMap::new();
        for source in crate_sources() {
            by_crate
                .entry(crate_of(&source.path).to_owned())
                .or_default()
                .push(source);
        }
        let mut found = Vec::new();
        for (name, sources) in &by_crate {
            let modules: BTreeSet<Vec<String>> = sources
                .iter()
                .map(|source| module_of(&source.path))
                .collect();
            let graph = sources
                .iter()
                .map(|source| (module_of(&source.path), module_references(source, &modules)))
                .collect();
            for cycle in cycles(&graph) {
                let names: Vec<String> = cycle
                    .iter()
                    .map(|module| match module.join("::") {
                        root if root.is_empty() => String::from("(crate root)"),
                        path => path,
                    })
                    .collect();
                found.push(format!("{name}: {}", names.join(" <-> ")));
            }
        }
        assert!(
            found.is_empty(),
            "modules of one crate must not use each other in a cycle; move what both need \
             into a module of its own:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn every_source_file_opens_with_a_line_saying_what_it_is_for() {
        let root = workspace_root();
        let mut dirs = crate_src_dirs(&root);
        dirs.push(root.join("xtask/src"));
        let mut missing = Vec::new();
        for dir in dirs {
            for path in rust_files(&dir) {
                let source = read_source(&root, &path);
                let first = source.text.lines().find(|line| !line.trim().is_empty());
                if !first.is_some_and(|line| line.starts_with("//!")) {
                    missing.push(source.path);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "every source file opens with a `//!` line saying what it is for:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn the_claude_code_version_is_written_in_one_place() {
        let version = pinned_claude_version();
        assert!(
            version.split('.').count() == 3
                && version.split('.').all(|part| part.parse::<u32>().is_ok()),
            "{CLAUDE_VERSION_FILE} holds a version like 1.2.3, not {version:?}"
        );
        let root = workspace_root();
        let mut dirs = crate_src_dirs(&root);
        for more in ["xtask/src", "tests"] {
            dirs.push(root.join(more));
        }
        for crate_dir in crate_src_dirs(&root) {
            let tests = crate_dir.with_file_name("tests").join("it");
            if tests.is_dir() {
                dirs.push(tests);
            }
        }
        let mut copies = Vec::new();
        for dir in dirs {
            for path in rust_files(&dir) {
                let source = read_source(&root, &path);
                // Comments may record what was observed on a version; code may not spell the
                // version out, so that moving the pin is one edit.
                for (index, raw) in source.text.lines().enumerate() {
                    let code = raw.split("//").next().unwrap_or(raw);
                    if code.contains(&version) {
                        copies.push(format!("{}:{}: {}", source.path, index + 1, raw.trim()));
                    }
                }
            }
        }
        for file in [".ci/run", "Cargo.toml", "README.md"] {
            let text = fs::read_to_string(root.join(file)).unwrap_or_default();
            if text.contains(&version) {
                copies.push(format!("{file} names {version}"));
            }
        }
        assert!(
            copies.is_empty(),
            "the pinned Claude Code version is written only in {CLAUDE_VERSION_FILE}; read it \
             from there (include_str!) instead of:\n{}",
            copies.join("\n")
        );
    }

    /// The readers above must find what they look for, or the rules pass vacuously.
    #[test]
    fn the_readers_find_functions_modules_and_cycles() {
        let source = Source {
            path: String::from("crates/demo/src/a/b.rs"),
            text: String::from(
                "//! Demo.\nuse crate::{c::{self, d}, e};\nuse super::f;\n\
                 pub(crate) async fn long_one(x: &str) -> usize {\n    let s = \"}\";\n    \
                 let c = '{';\n    x.len()\n}\n#[cfg(test)]\nmod tests {\n    fn hidden() {}\n}\n",
            ),
        };
        let found = functions(&source);
        assert_eq!(found, vec![(String::from("long_one"), 4, 5)]);
        let modules: BTreeSet<Vec<String>> = [
            vec!["a", "b"],
            vec!["c"],
            vec!["c", "d"],
            vec!["e"],
            vec!["a", "f"],
        ]
        .into_iter()
        .map(|module| module.into_iter().map(String::from).collect())
        .collect();
        let references = module_references(&source, &modules);
        let names: Vec<String> = references.iter().map(|module| module.join("::")).collect();
        assert_eq!(names, ["a::f", "c", "c::d", "e"]);

        let module = |path: &str| -> Vec<String> { path.split("::").map(String::from).collect() };
        let mut graph = BTreeMap::new();
        graph.insert(module("run"), BTreeSet::from([module("task")]));
        graph.insert(module("task"), BTreeSet::from([module("run")]));
        graph.insert(module("x"), BTreeSet::from([module("x::y")]));
        graph.insert(module("x::y"), BTreeSet::from([module("x")]));
        assert_eq!(cycles(&graph), vec![vec![module("run"), module("task")]]);
    }
}
