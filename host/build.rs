//! Builds the stock plugin (`plugins/default`) for wasm32-wasip2 and embeds it, so that the
//! `agent` binary works on its own. Set `AGENT_STOCK_PLUGIN_WASM=PATH` to embed a prebuilt one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=AGENT_STOCK_PLUGIN_WASM");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("default.wasm");
    let wasm = match std::env::var_os("AGENT_STOCK_PLUGIN_WASM") {
        Some(path) => PathBuf::from(path),
        None => build_stock_plugin(),
    };
    std::fs::copy(&wasm, &out)
        .unwrap_or_else(|e| panic!("cannot copy the stock plugin {}: {e}", wasm.display()));
}

fn build_stock_plugin() -> PathBuf {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.parent().expect("host/ sits in the workspace");
    for watched in ["plugins/default", "plugins/sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // A separate target dir: the outer cargo holds the lock on the main one.
    let target_dir = root.join("target").join("plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "-p",
            "plugin-default",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("running cargo to build the stock plugin");
    assert!(
        status.success(),
        "building the stock plugin failed; is the wasm target installed? `rustup target add wasm32-wasip2`"
    );
    wasm_path(&target_dir)
}

fn wasm_path(target_dir: &Path) -> PathBuf {
    target_dir
        .join("wasm32-wasip2")
        .join("plugin")
        .join("plugin_default.wasm")
}
