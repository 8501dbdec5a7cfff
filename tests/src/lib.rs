//! Test support shared by the agent's test suites: real plugins built from source, the
//! project's Python venv (Prefect, the oracle, kubernetes-validate), and paths.
//!
//! Nothing here fakes a part of the system: plugins are the components `cargo build --target
//! wasm32-wasip2` makes of `plugins/` and `tests/plugins/`, and the oracle is Prefect's code.

pub mod prefect;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace's root folder.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
}

/// Every plugin crate, as `(crate, name)`: the component of `crate` is installed as `name.wasm`.
pub const PLUGIN_CRATES: &[(&str, &str)] = &[
    ("plugin-default", "default"),
    ("plugin-naming", "naming"),
    ("plugin-resources", "resources"),
    ("plugin-volumes", "volumes"),
    ("plugin-env", "env"),
    ("plugin-node-placement", "node-placement"),
    ("plugin-policy", "policy"),
    ("plugin-faulty", "faulty"),
    ("plugin-other-world", "other-world"),
];

/// Builds every plugin (once per test process; cargo makes it a no-op when nothing changed)
/// and returns the folder holding `NAME.wasm` for each.
pub fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build_plugins)
}

/// The component file of plugin `name` (see [`PLUGIN_CRATES`]).
pub fn plugin(name: &str) -> PathBuf {
    let path = plugins_dir().join(format!("{name}.wasm"));
    assert!(path.exists(), "no plugin named {name}: see PLUGIN_CRATES");
    path
}

fn build_plugins() -> PathBuf {
    // Its own target dir (shared with host/build.rs): the outer cargo locks the main one.
    let target_dir = workspace_root().join("target").join("plugins");
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args([
            "build",
            "--quiet",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir);
    for (krate, _) in PLUGIN_CRATES {
        command.args(["-p", krate]);
    }
    let status = command
        .status()
        .expect("running cargo to build the plugins");
    assert!(
        status.success(),
        "building the plugins failed (is `rustup target add wasm32-wasip2` done?)"
    );

    let dist = target_dir.join("dist");
    std::fs::create_dir_all(&dist).expect("creating target/plugins/dist");
    for (krate, name) in PLUGIN_CRATES {
        let built = target_dir
            .join("wasm32-wasip2/plugin")
            .join(format!("{}.wasm", krate.replace('-', "_")));
        // Copy then rename, so a test process reading the file never sees half of it.
        let tmp = dist.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::copy(&built, &tmp).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
        std::fs::rename(&tmp, dist.join(format!("{name}.wasm"))).expect("installing the plugin");
    }
    dist
}

/// The project's Python (`.venv`, made by `tests/setup-python.sh`), with Prefect,
/// prefect-kubernetes and kubernetes-validate.
pub fn python() -> PathBuf {
    let python = workspace_root().join(".venv").join("bin").join("python");
    assert!(
        python.exists(),
        "{} is missing: run tests/setup-python.sh (the README's test command does it)",
        python.display()
    );
    python
}

/// A command of the venv (`kubernetes-validate`, `prefect`).
pub fn venv_command(name: &str) -> PathBuf {
    python().with_file_name(name)
}

/// A file under `tests/`.
pub fn tests_path(relative: &str) -> PathBuf {
    workspace_root().join("tests").join(relative)
}
