//! The chaos scenarios (the `tests` library's `chaos` module), one test each, against the
//! `baton` and `mock-claude` this package builds. `cargo xtask chaos` runs the same scenarios
//! and prints their table.

use tests::chaos::{Binaries, SCENARIOS, check};

fn bins() -> Binaries {
    Binaries {
        baton: env!("CARGO_BIN_EXE_chaos-baton").into(),
        mock_claude: env!("CARGO_BIN_EXE_contract-mock-claude").into(),
    }
}

/// One test per scenario, named after it.
macro_rules! scenarios {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check($name, &bins());
            }
        )*

        #[test]
        fn every_scenario_has_a_test() {
            let tested = [$($name),*];
            for scenario in SCENARIOS {
                assert!(tested.contains(&scenario.name), "no test runs `{}`", scenario.name);
            }
            assert_eq!(tested.len(), SCENARIOS.len(), "a test names no scenario");
        }
    };
}

scenarios! {
    sigkill_mid_call => "sigkill-mid-call",
    sigint_mid_call => "sigint-mid-call",
    sigterm_mid_call => "sigterm-mid-call",
    agent_hangs => "agent-hangs",
    agent_crashes_mid_stream => "agent-crashes-mid-stream",
    agent_prints_garbage => "agent-prints-garbage",
    agent_prints_nothing => "agent-prints-nothing",
    agent_prints_non_utf8 => "agent-prints-non-utf8",
    agent_floods_300_mib => "agent-floods-300-mib",
    agent_exits_0_without_result => "agent-exits-0-without-result",
    two_runs_one_ledger => "two-runs-one-ledger",
    ledger_locked => "ledger-locked",
    ledger_read_only => "ledger-read-only",
    disk_full => "disk-full",
    newer_schema => "newer-schema",
    workdir_deleted_while_queued => "workdir-deleted-while-queued",
    unknown_ids => "unknown-ids",
    malformed_ids => "malformed-ids",
    bad_config => "bad-config",
    missing_claude => "missing-claude",
    bad_prompt_files => "bad-prompt-files",
    huge_prompt_on_stdin => "huge-prompt-on-stdin",
    shell_metacharacters => "shell-metacharacters",
    dependency_cycle => "dependency-cycle",
    zero_and_negative_limits => "zero-and-negative-limits",
    secrets_stay_out => "secrets-stay-out",
    owner_only_files => "owner-only-files",
    permissions_only_when_configured => "permissions-only-when-configured",
    verification_runs_in_a_shell => "verification-runs-in-a-shell",
    sigkill_in_worktree => "sigkill-in-worktree",
    check_outlives_baton => "check-outlives-baton",
    worktree_deleted_by_hand => "worktree-deleted-by-hand",
    repository_locked => "repository-locked",
    disk_full_while_committing => "disk-full-while-committing",
    bad_key => "bad-key",
    empty_account => "empty-account",
    api_down_for_a_minute => "api-down-for-a-minute",
    api_gone => "api-gone",
    stopped_by_timeout => "stopped-by-timeout",
    stopped_like_a_service => "stopped-like-a-service",
    two_hosts_200_tasks => "two-hosts-200-tasks",
    host_dies => "host-dies",
    host_cut_off => "host-cut-off",
    server_restarts => "server-restarts",
}
