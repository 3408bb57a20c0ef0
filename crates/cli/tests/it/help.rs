//! The help texts: the commands, their flags, and the documented exit codes.

use crate::snapshot;
use crate::support::World;

#[test]
fn top_level_help_lists_the_commands_and_exit_codes() {
    let world = World::new();
    let output = world.baton(&["--help"]).success();
    snapshot!("help", output.normalised());
}

#[test]
fn every_command_has_help() {
    let world = World::new();
    for command in [
        &["init"][..],
        &["task", "add"],
        &["task", "list"],
        &["task", "retry"],
        &["task", "depend"],
        &["milestone", "add"],
        &["run"],
        &["session", "list"],
        &["usage"],
        &["quickstart"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let output = world.baton(&args).success();
        snapshot!(format!("help_{}", command.join("_")), output.normalised());
    }
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let world = World::new();
    let output = world.baton(&["task", "list", "--status", "done"]).code(2);
    snapshot!("bad_flag", output.normalised());
}
