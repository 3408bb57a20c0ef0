//! Measures creating and removing a task's worktree in a repository of 10,000 files: what a
//! task's first run and `baton worktree remove` cost.
//!
//! It builds the repository in a temporary directory (private `HOME`, no system
//! configuration), then times each step through this crate, under the worktree lock as Baton
//! does, and prints:
//!
//! ```text
//! git 2.47.3, 10000 files, 10 runs
//! worktree create: median 180.2 ms (min 170.1 ms, max 201.3 ms)
//! worktree remove: median 95.4 ms (min 90.0 ms, max 110.9 ms)
//! ```
//!
//! Run it with `cargo bench -p git --bench worktree`. `--runs N` and `--files N` change the
//! number of timed runs and the repository's size.

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use git::{CommitMessage, Git, GitError, Preparation, Repository};

const DEFAULT_FILES: usize = 10_000;
const DEFAULT_RUNS: usize = 10;
/// Files per directory, so that the tree has depth like a real project's.
const FILES_PER_DIRECTORY: usize = 100;

struct Settings {
    files: usize,
    runs: usize,
}

fn main() -> ExitCode {
    let settings = match settings_from_args() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Reads `--runs N` and `--files N`; cargo also passes `--bench`, which is ignored.
fn settings_from_args() -> Result<Settings, String> {
    let mut settings = Settings {
        files: DEFAULT_FILES,
        runs: DEFAULT_RUNS,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let target = match arg.as_str() {
            "--runs" => &mut settings.runs,
            "--files" => &mut settings.files,
            _ => continue,
        };
        let value = args.next().ok_or(format!("{arg} needs a number"))?;
        *target = value
            .parse()
            .ok()
            .filter(|number| *number > 0)
            .ok_or_else(|| format!("{arg} needs a positive number, not `{value}`"))?;
    }
    Ok(settings)
}

fn run(settings: &Settings) -> Result<(), GitError> {
    let temporary = tempfile::tempdir().map_err(|source| file_error(Path::new("/tmp"), source))?;
    let root = temporary.path();
    let home = root.join("home");
    let repo = root.join("repo");
    let git = Git::new()
        .with_inherited(std::env::vars_os())
        .with_env("HOME", &home)
        .with_env("XDG_CONFIG_HOME", home.join(".config"))
        .with_env("GIT_CONFIG_NOSYSTEM", "1");
    let version = git.check_version()?;
    let repository = build_repository(&git, &repo, settings.files)?;
    let base = repository.resolve_commit("HEAD")?;

    let mut create = Vec::new();
    let mut remove = Vec::new();
    for run in 0..settings.runs {
        let path = repo.join(format!(".baton/worktrees/{run}"));
        let branch = format!("baton/{run}-bench");
        let started = Instant::now();
        let lock = repository.lock_worktrees()?;
        let prepared = repository.prepare_worktree(&lock, &path, &branch, &base)?;
        drop(lock);
        create.push(started.elapsed());
        assert_eq!(prepared.preparation, Preparation::Created);

        let started = Instant::now();
        let lock = repository.lock_worktrees()?;
        repository.remove_worktree(&lock, &path, false)?;
        drop(lock);
        remove.push(started.elapsed());
        repository.delete_branch(&branch, "HEAD", false)?;
    }
    println!(
        "git {version}, {} files, {} runs",
        settings.files, settings.runs
    );
    println!("worktree create: {}", summary(&mut create));
    println!("worktree remove: {}", summary(&mut remove));
    Ok(())
}

/// A repository on `main` whose one commit holds `files` small files.
fn build_repository(git: &Git, repo: &Path, files: usize) -> Result<Repository, GitError> {
    fs::create_dir_all(repo).map_err(|source| file_error(repo, source))?;
    for index in 0..files {
        let directory = repo.join(format!("src/module{:03}", index / FILES_PER_DIRECTORY));
        if index % FILES_PER_DIRECTORY == 0 {
            fs::create_dir_all(&directory).map_err(|source| file_error(&directory, source))?;
        }
        let file = directory.join(format!("file{index:05}.rs"));
        let contents =
            format!("// file {index}\npub fn function_{index}() -> usize {{ {index} }}\n");
        fs::write(&file, contents).map_err(|source| file_error(&file, source))?;
    }
    let init = git
        .command(repo)
        .args(["init", "--quiet", "--initial-branch=main"])
        .status();
    if !init.is_ok_and(|status| status.success()) {
        return Err(file_error(repo, std::io::Error::other("git init failed")));
    }
    let repository = Repository::open(git, repo)?;
    repository.commit_all(repo, "main", &CommitMessage::new("10,000 files"))?;
    Ok(repository)
}

fn file_error(path: &Path, source: std::io::Error) -> GitError {
    GitError::File {
        path: path.to_owned(),
        source,
    }
}

/// `median X ms (min Y ms, max Z ms)`.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let milliseconds = |time: Duration| time.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms (min {:.1} ms, max {:.1} ms)",
        milliseconds(times[times.len() / 2]),
        milliseconds(times[0]),
        milliseconds(times[times.len() - 1])
    )
}
