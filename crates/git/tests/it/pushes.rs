//! Remotes and pushing one branch: to a bare repository beside the fixture, refused by a
//! different branch of the same name or by a hook, and never asking for anything.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git::{GitError, Pushed, Repository};

use crate::common::{Fixture, read};

/// A bare repository `remote.git` beside the fixture's, added to it as `origin`.
fn with_origin(fixture: &Fixture) -> PathBuf {
    let remote = fixture.root.join("remote.git");
    fixture.raw(
        &fixture.root,
        &["init", "--quiet", "--bare", remote.to_str().unwrap()],
    );
    fixture.raw(
        &fixture.repo,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    remote
}

/// A branch `name` holding one commit on top of `main`, without a worktree.
fn branch(fixture: &Fixture, name: &str, file: &str) -> String {
    fixture
        .branch_with(name, file, "work\n")
        .as_str()
        .to_owned()
}

fn remote_head(fixture: &Fixture, remote: &Path, branch: &str) -> Option<String> {
    let reference = format!("refs/heads/{branch}");
    fixture
        .raw_succeeds(remote, &["rev-parse", "--verify", "--quiet", &reference])
        .then(|| fixture.raw(remote, &["rev-parse", &reference]))
}

fn executable(path: &Path, script: &str) {
    fs::write(path, script).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_branch_is_created_then_left_then_moved_forward_on_the_remote() {
    let fixture = Fixture::new();
    let remote = with_origin(&fixture);
    let repository = fixture.repository();
    let head = branch(&fixture, "baton/1-a", "a.txt");

    assert_eq!(
        repository.push("origin", "baton/1-a").unwrap(),
        Pushed::Created
    );
    assert_eq!(remote_head(&fixture, &remote, "baton/1-a"), Some(head));
    assert_eq!(
        repository.push("origin", "baton/1-a").unwrap(),
        Pushed::UpToDate
    );

    let worktree = fixture.root.join("more");
    fixture.raw(
        &fixture.repo,
        &[
            "worktree",
            "add",
            "--quiet",
            worktree.to_str().unwrap(),
            "baton/1-a",
        ],
    );
    let next = fixture.commit_file(&worktree, "b.txt", "more\n");
    assert_eq!(
        repository.push("origin", "baton/1-a").unwrap(),
        Pushed::Updated
    );
    assert_eq!(
        remote_head(&fixture, &remote, "baton/1-a").as_deref(),
        Some(next.as_str())
    );
    // Only the branch went: no other branch, no tag.
    assert_eq!(
        fixture.raw(&remote, &["for-each-ref", "--format=%(refname)"]),
        "refs/heads/baton/1-a"
    );
}

#[test]
fn a_different_branch_of_the_same_name_on_the_remote_is_never_overwritten() {
    let fixture = Fixture::new();
    let remote = with_origin(&fixture);
    let repository = fixture.repository();
    let theirs = branch(&fixture, "baton/1-a", "theirs.txt");
    repository.push("origin", "baton/1-a").unwrap();
    // Someone else's branch of that name is on the remote; ours is a different one.
    fixture.raw(&fixture.repo, &["branch", "--quiet", "-D", "baton/1-a"]);
    let ours = branch(&fixture, "baton/1-a", "ours.txt");

    let error = repository.push("origin", "baton/1-a").unwrap_err();
    let GitError::PushRejected {
        remote: name,
        branch,
        reason,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!((name.as_str(), branch.as_str()), ("origin", "baton/1-a"));
    assert!(reason.contains("[rejected]"), "{reason}");
    assert!(
        error
            .to_string()
            .starts_with("the remote `origin` refused the branch `baton/1-a`"),
        "{error}"
    );
    assert_eq!(remote_head(&fixture, &remote, "baton/1-a"), Some(theirs));
    assert_eq!(
        repository
            .branch_head("baton/1-a")
            .unwrap()
            .unwrap()
            .as_str(),
        ours
    );
}

#[test]
fn a_hook_that_declines_is_a_refusal_with_its_words() {
    let fixture = Fixture::new();
    let remote = with_origin(&fixture);
    let repository = fixture.repository();
    branch(&fixture, "baton/2-b", "b.txt");
    executable(
        &remote.join("hooks/pre-receive"),
        "#!/bin/sh\necho 'branches under baton/ are reserved' >&2\nexit 1\n",
    );
    let error = repository.push("origin", "baton/2-b").unwrap_err();
    let GitError::PushRejected { reason, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(reason.contains("pre-receive hook declined"), "{reason}");
    assert!(
        reason.contains("branches under baton/ are reserved"),
        "{reason}"
    );
    assert_eq!(remote_head(&fixture, &remote, "baton/2-b"), None);

    // The person's own pre-push hook is a refusal too, before anything is sent.
    fs::remove_file(remote.join("hooks/pre-receive")).unwrap();
    executable(
        &fixture.repo.join(".git/hooks/pre-push"),
        "#!/bin/sh\necho 'not from this machine' >&2\nexit 1\n",
    );
    let error = repository.push("origin", "baton/2-b").unwrap_err();
    let GitError::PushRejected { reason, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(reason.contains("not from this machine"), "{reason}");
    assert_eq!(remote_head(&fixture, &remote, "baton/2-b"), None);
}

#[test]
fn remotes_are_read_by_name_and_a_missing_one_is_refused() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    assert_eq!(repository.remotes().unwrap(), Vec::<String>::new());
    assert_eq!(repository.remote_url("origin").unwrap(), None);
    let remote = with_origin(&fixture);
    assert_eq!(repository.remotes().unwrap(), vec![String::from("origin")]);
    assert_eq!(
        repository.remote_url("origin").unwrap().map(PathBuf::from),
        Some(remote)
    );
    branch(&fixture, "baton/3-c", "c.txt");

    let error = repository.push("upstream", "baton/3-c").unwrap_err();
    assert!(
        matches!(&error, GitError::NoSuchRemote { remote, known, .. }
            if remote == "upstream" && known == &["origin"]),
        "{error:?}"
    );
    assert!(error.to_string().contains("it has `origin`"), "{error}");
    // A path is not a remote, even where one exists.
    let path = fixture.root.join("remote.git");
    assert!(matches!(
        repository.push(path.to_str().unwrap(), "baton/3-c"),
        Err(GitError::NoSuchRemote { .. })
    ));
    assert!(matches!(
        repository.push("origin", "baton/9-none"),
        Err(GitError::NoSuchBranch { .. })
    ));
}

#[test]
fn a_push_over_ssh_runs_in_batch_mode_without_a_terminal_or_a_password_dialog() {
    let fixture = Fixture::new();
    let repository = fixture.repository();
    fixture.raw(
        &fixture.repo,
        &[
            "remote",
            "add",
            "origin",
            "ssh://git@example.invalid/repo.git",
        ],
    );
    branch(&fixture, "baton/4-d", "d.txt");
    // The ssh git runs records how it was run, and fails as an unreachable host would.
    let record = fixture.root.join("ssh-record");
    let ssh = fixture.root.join("fake-ssh");
    executable(
        &ssh,
        &format!(
            "#!/bin/sh\n{{ echo \"args: $*\"; echo \"askpass: $GIT_ASKPASS\"; \
             echo \"ssh askpass: $SSH_ASKPASS_REQUIRE\"; \
             if (exec 3</dev/tty) 2>/dev/null; then echo tty: yes; else echo tty: no; fi; \
             }} > {}\necho 'ssh: connect to host example.invalid: no route' >&2\nexit 255\n",
            record.display()
        ),
    );
    // Set for git here rather than as `core.sshCommand`, which a GIT_SSH_COMMAND in the
    // test's own environment would override.
    let git = fixture
        .git
        .clone()
        .with_env("GIT_SSH_COMMAND", format!("{} -i key", ssh.display()))
        .with_env("GIT_ASKPASS", "/usr/bin/a-dialog");
    let repository = Repository::open(&git, repository.top_level()).unwrap();

    let error = repository.push("origin", "baton/4-d").unwrap_err();
    assert!(matches!(error, GitError::Failed { .. }), "{error:?}");
    assert!(error.to_string().contains("no route"), "{error}");
    let recorded = read(&record);
    assert!(
        recorded.contains("args: -i key -o BatchMode=yes"),
        "{recorded}"
    );
    assert!(recorded.contains("askpass: true\n"), "{recorded}");
    assert!(recorded.contains("ssh askpass: never\n"), "{recorded}");
    assert!(recorded.contains("tty: no\n"), "{recorded}");
}

#[test]
fn a_clone_and_a_fetch_find_the_remotes_commits_and_a_remote_is_found_by_its_url() {
    let fixture = Fixture::new();
    let remote = with_origin(&fixture);
    fixture.raw(&fixture.repo, &["push", "--quiet", "origin", "main"]);
    let into = fixture.root.join("clones").join("remote");

    let clone = fixture
        .git
        .clone_repository(remote.to_str().unwrap(), &into)
        .unwrap();

    assert_eq!(clone.top_level(), into.canonicalize().unwrap());
    // Spelled differently, the same remote: found under the clone's name for it.
    let spelled = format!("file://{}/", remote.display());
    assert_eq!(
        clone.remote_named_for(&spelled).unwrap().as_deref(),
        Some("origin")
    );
    assert_eq!(clone.remote_named_for("/elsewhere.git").unwrap(), None);
    // A commit pushed after the clone is missing until a fetch.
    let later = branch(&fixture, "later", "later.txt");
    fixture.raw(&fixture.repo, &["push", "--quiet", "origin", "later"]);
    assert_eq!(clone.try_resolve_commit(&later).unwrap(), None);
    clone.fetch("origin").unwrap();
    assert_eq!(
        clone.try_resolve_commit(&later).unwrap().unwrap().as_str(),
        later
    );
}

#[test]
fn a_clone_over_ssh_runs_in_batch_mode_without_a_terminal() {
    let fixture = Fixture::new();
    let record = fixture.root.join("ssh-record");
    let ssh = fixture.root.join("fake-ssh");
    executable(
        &ssh,
        &format!(
            "#!/bin/sh\n{{ echo \"args: $*\"; echo \"askpass: $GIT_ASKPASS\"; \
             if (exec 3</dev/tty) 2>/dev/null; then echo tty: yes; else echo tty: no; fi; \
             }} > {}\necho 'ssh: connect to host example.invalid: no route' >&2\nexit 255\n",
            record.display()
        ),
    );
    let git = fixture
        .git
        .clone()
        .with_env("GIT_SSH_COMMAND", ssh.display().to_string());

    let error = git
        .clone_repository(
            "git@example.invalid:org/repo.git",
            &fixture.root.join("clones").join("repo"),
        )
        .unwrap_err();

    assert!(error.to_string().contains("no route"), "{error}");
    let recorded = read(&record);
    assert!(recorded.contains("-o BatchMode=yes"), "{recorded}");
    assert!(recorded.contains("askpass: true\n"), "{recorded}");
    assert!(recorded.contains("tty: no\n"), "{recorded}");
}

#[test]
fn a_clone_over_ssh_keeps_the_users_ssh_command() {
    if std::env::var_os("GIT_SSH_COMMAND").is_some() {
        eprintln!("skipped: GIT_SSH_COMMAND in this environment overrides core.sshCommand");
        return;
    }
    let fixture = Fixture::new();
    let record = fixture.root.join("ssh-record");
    let ssh = fixture.root.join("fake-ssh");
    executable(
        &ssh,
        &format!(
            "#!/bin/sh\necho \"args: $*\" > {}\necho 'ssh: no route' >&2\nexit 255\n",
            record.display()
        ),
    );
    // The key a person names in their own git configuration, as for a push.
    fs::write(
        fixture.home.join(".gitconfig"),
        format!("[core]\n\tsshCommand = {} -i key\n", ssh.display()),
    )
    .unwrap();

    let error = fixture
        .git
        .clone_repository(
            "git@example.invalid:org/repo.git",
            &fixture.root.join("clones").join("repo"),
        )
        .unwrap_err();

    assert!(error.to_string().contains("no route"), "{error}");
    let recorded = read(&record);
    assert!(
        recorded.contains("args: -i key -o BatchMode=yes"),
        "{recorded}"
    );
}
