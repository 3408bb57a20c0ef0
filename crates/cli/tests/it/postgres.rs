//! A workspace whose ledger is a PostgreSQL database: `init --db postgres://…` creates it and
//! names it in the workspace's file (without its password), every command then works on it,
//! and the password, which comes from `PGPASSWORD` or `~/.pgpass`, is never shown.

use pg_testkit::TestDatabase;

use crate::support::World;

/// Every word `baton` printed, for looking for the password.
fn printed(output: &crate::support::Output) -> String {
    format!("{}\n{}", output.stdout, output.stderr)
}

#[test]
fn a_workspace_on_postgres_runs_its_tasks_and_never_shows_the_password() {
    let Some(database) = TestDatabase::create("cli::postgres::workspace") else {
        return;
    };
    let password = database.password().expect("the test server has a password");
    let url = database.url_without_password();
    let mut world = World::new();
    world.set("PGPASSWORD", password.clone());

    let init = world
        .baton(&["--db", &url, "init", "--agent", "mock"])
        .success();
    assert!(init.stdout.contains(&url), "{}", init.stdout);
    let config = std::fs::read_to_string(world.work().join(".baton/config.toml")).unwrap();
    assert!(config.contains(&format!("url = \"{url}\"")), "{config}");
    assert!(!config.contains(&password));
    assert!(
        !world.work().join(".baton/baton.db").exists(),
        "no SQLite file"
    );

    // Later commands find the ledger through the workspace's file.
    let first = world.add_task(&["one", "--prompt", "do one"]);
    let second = world.add_task(&["two", "--prompt", "do two"]);
    let run = world.baton(&["run", "--json"]).success();
    assert_eq!(
        run.json()["tasks"].as_array().unwrap().len(),
        2,
        "{}",
        run.stdout
    );
    let list = world.baton(&["task", "list", "--json"]).success();
    let statuses: Vec<(i64, String)> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|task| {
            (
                task["id"].as_i64().unwrap(),
                task["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (first, "completed".to_owned()),
            (second, "completed".to_owned())
        ]
    );
    let doctor = world.baton(&["doctor"]);
    assert!(printed(&doctor).contains("schema"), "{}", printed(&doctor));
    for output in [&init, &run, &list, &doctor] {
        assert!(!printed(output).contains(&password), "{}", printed(output));
    }
}

#[test]
fn a_password_comes_from_pgpass_and_a_wrong_one_is_a_clear_refusal() {
    let Some(database) = TestDatabase::create("cli::postgres::pgpass") else {
        return;
    };
    let password = database.password().expect("the test server has a password");
    let url = database.url_without_password();
    let world = World::new();
    // libpq's file: host:port:database:user:password, matched against the URL.
    let pgpass = world.root().join("home/.pgpass");
    std::fs::write(&pgpass, format!("*:*:*:*:{password}\n")).unwrap();
    world
        .baton(&["--db", &url, "init", "--agent", "mock"])
        .success();
    world.add_task(&["one", "--prompt", "do one"]);

    std::fs::write(&pgpass, "*:*:*:*:not-the-password\n").unwrap();
    let refused = world.baton(&["task", "list"]);
    assert_eq!(refused.code, 4, "{}", printed(&refused));
    assert!(
        refused.stderr.contains("PostgreSQL server")
            && refused.stderr.contains("refused the login")
            && refused.stderr.contains("PGPASSWORD"),
        "{}",
        refused.stderr
    );
    assert!(!printed(&refused).contains("not-the-password"));

    // A database the server does not have is named as such, with what to do.
    std::fs::write(&pgpass, format!("*:*:*:*:{password}\n")).unwrap();
    let (base, _) = url.rsplit_once('/').expect("the URL names a database");
    let missing = world.baton(&["--db", &format!("{base}/no_such_ledger"), "task", "list"]);
    assert_eq!(missing.code, 4, "{}", printed(&missing));
    assert!(
        missing.stderr.contains("does not have") && missing.stderr.contains("createdb"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_workspace_on_postgres_over_verified_tls_runs_and_a_wrong_authority_is_refused() {
    let only_tls = pg_testkit::TlsOptions {
        only: true,
        ..pg_testkit::TlsOptions::default()
    };
    let Some(cluster) = pg_testkit::private_tls_cluster("cli::postgres::tls", &only_tls) else {
        return;
    };
    let root = cluster.root_certificate().unwrap().display().to_string();
    let mut world = World::new();
    world.set("PGPASSWORD", cluster.password());
    // The server takes logins over TCP only with TLS; the certificate is checked against the
    // test's authority and made out to localhost.
    let url = format!(
        "postgres://{}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={root}",
        cluster.user(),
        cluster.port()
    );
    world
        .baton(&["--db", &url, "init", "--agent", "mock"])
        .success();
    let task = world.add_task(&["one", "--prompt", "do one"]);
    let run = world.baton(&["run", "--json"]).success();
    assert_eq!(
        run.json()["tasks"].as_array().unwrap().len(),
        1,
        "{}",
        run.stdout
    );
    let shown = world
        .baton(&["task", "show", &task.to_string(), "--json"])
        .success();
    assert_eq!(shown.json()["status"], "completed", "{}", shown.stdout);
    let doctor = world.baton(&["doctor"]);
    assert!(printed(&doctor).contains("schema"), "{}", printed(&doctor));

    // Another authority's certificate as the root: refused, saying so, as a ledger failure.
    let other = world.root().join("other-root.crt");
    let authority = pg_testkit::Authority::new("another authority").unwrap();
    std::fs::write(&other, authority.certificate_pem().unwrap()).unwrap();
    let wrong = format!(
        "postgres://{}@localhost:{}/postgres?sslmode=verify-full",
        cluster.user(),
        cluster.port()
    );
    world.set("PGSSLROOTCERT", other.display().to_string());
    let refused = world.baton(&["--db", &wrong, "task", "list"]);
    assert_eq!(refused.code, 4, "{}", printed(&refused));
    assert!(
        refused
            .stderr
            .contains(&format!("is not signed by {}", other.display())),
        "{}",
        refused.stderr
    );
    // An sslmode libpq does not know is a usage error, and the URL's password stays hidden.
    let with_password = format!(
        "postgres://{}:{}@localhost:{}/postgres?sslmode=yes",
        cluster.user(),
        cluster.password(),
        cluster.port()
    );
    let unknown = world.baton(&["--db", &with_password, "task", "list"]);
    assert_eq!(unknown.code, 2, "{}", printed(&unknown));
    assert!(unknown.stderr.contains("verify-full"), "{}", unknown.stderr);
    for output in [&run, &shown, &doctor, &refused, &unknown] {
        assert!(
            !printed(output).contains(cluster.password()),
            "{}",
            printed(output)
        );
    }
}
