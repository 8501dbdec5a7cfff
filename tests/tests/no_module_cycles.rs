//! The host and the emulator have no module cycle: each module depends on its siblings one
//! way, so that the data path reads in one direction (see `agent_tests::modules`).

use agent_tests::modules::cycles;
use agent_tests::workspace_root;

#[test]
fn the_host_has_no_module_cycle() {
    let found = cycles(&workspace_root().join("host/src"));
    assert!(
        found.is_empty(),
        "module cycles in host/src:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_emulator_has_no_module_cycle() {
    let found = cycles(&workspace_root().join("tests/emulator/src"));
    assert!(
        found.is_empty(),
        "module cycles in tests/emulator/src:\n{}",
        found.join("\n")
    );
}
