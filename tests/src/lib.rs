//! Test support shared by the agent's test suites: real plugins built from source, the
//! project's Python venv (Prefect, the oracle, kubernetes-validate), and paths.
//!
//! Nothing here fakes a part of the system: plugins are the components `cargo build --target
//! wasm32-wasip2` makes of `plugins/` and `tests/plugins/`, and the oracle is Prefect's code.

pub mod floor;
pub mod modules;
pub mod postgres;
pub mod prefect;
pub mod proxy;

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
    ("plugin-pod-security", "pod-security"),
    ("plugin-faulty", "faulty"),
    ("plugin-other-world", "other-world"),
    ("plugin-contract-0-1-0", "contract-0-1-0"),
    ("plugin-backdoor", "backdoor"),
];

/// Builds every plugin (once per test process; cargo makes it a no-op when nothing changed)
/// and returns the folder holding `NAME.wasm` for each.
pub fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build_plugins)
}

/// The plugin cache (`AGENT_PLUGIN_CACHE`) shared by the agent processes of one test binary.
/// Compiling a component is an agent's slowest step in a test build (1.3 s of CPU for the
/// stock plugin, 30–40 s for a Python or JavaScript one), and a suite starts dozens of agents
/// on the same plugins. Entries are named by the component's digest and written by rename, so
/// processes share them safely; tests of the cache itself keep their own.
pub fn plugin_cache() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let stem = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("tests");
    // `watch-47ee5a4b8df677bb`: one folder per suite, whatever the build.
    let suite = stem.rsplit_once('-').map_or(stem, |(suite, _hash)| suite);
    workspace_root()
        .join("target/test-plugin-cache")
        .join(suite)
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

/// The example plugins in other languages, as `(example folder, SDK folder)`: each is built by
/// its own `examples/NAME/build.sh`, the command its README gives.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("python-cost-center", "plugins/sdk-python"),
    ("js-gpu-placement", "plugins/sdk-js"),
    ("c-resource-caps", "plugins/sdk-c"),
];

/// The component of example `name` (see [`EXAMPLES`]), built from source by its `build.sh`
/// unless a build of the very same sources (the example, its SDK, the WIT) is there already:
/// a Python or JavaScript build takes seconds, and several test binaries use each.
pub fn example_plugin(name: &str) -> PathBuf {
    static BUILDS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut builds = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = builds.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let (_, sdk) = EXAMPLES
        .iter()
        .find(|(example, _)| *example == name)
        .unwrap_or_else(|| panic!("no example named {name}: see EXAMPLES"));
    let root = workspace_root();
    let example = root.join("examples").join(name);
    let digest = sources_digest(&[&example, &root.join(sdk), &root.join("wit")]);
    let dist = root.join("target/plugins/examples");
    std::fs::create_dir_all(&dist).expect("creating target/plugins/examples");
    let path = dist.join(format!("{name}-{digest:016x}.wasm"));
    if !path.exists() {
        let tmp = dist.join(format!(".{name}.{}.tmp", std::process::id()));
        let output = Command::new(example.join("build.sh"))
            .arg(&tmp)
            .output()
            .expect("running the example's build.sh");
        assert!(
            output.status.success() && tmp.exists(),
            "examples/{name}/build.sh failed (the toolchains come from tests/setup-*.sh):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&tmp, &path).expect("installing the example plugin");
    }
    builds.push((name.to_string(), path.clone()));
    path
}

/// A digest of every source file under `dirs` (build output and installed packages left out).
fn sources_digest(dirs: &[&Path]) -> u64 {
    use std::hash::{Hash, Hasher};
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if matches!(
                name.to_str(),
                Some("node_modules" | "types" | "target" | "__pycache__")
            ) {
                continue;
            }
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_none_or(|e| e != "wasm") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for dir in dirs {
        walk(dir, &mut files);
    }
    files.sort();
    // SipHash with fixed keys: the same sources give the same digest in every process.
    let mut hasher = std::hash::DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

/// `agent-plugin-c` (plugins/sdk-c), built as the C example's build.sh builds it.
pub fn c_plugin_tool() -> PathBuf {
    let target_dir = workspace_root().join("target").join("plugins");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "-p",
            "agent-plugin-c",
            "--manifest-path",
        ])
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("running cargo to build agent-plugin-c");
    assert!(status.success(), "building agent-plugin-c failed");
    target_dir.join("debug").join("agent-plugin-c")
}

/// Runs `command` to its end (stdout and stderr dropped); its exit code, its peak RSS in KiB
/// as the kernel counted it (`wait4`), and how long it took.
pub fn peak_rss(command: &mut Command) -> (Option<i32>, u64, std::time::Duration) {
    let started = std::time::Instant::now();
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the command");
    let usage = wait_with_usage(child);
    (usage.exit_code, usage.max_rss_kib, started.elapsed())
}

/// What a child process used, once it has ended.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub exit_code: Option<i32>,
    pub max_rss_kib: u64,
    pub cpu: std::time::Duration,
}

/// Waits for `child` and reads its peak RSS and CPU time (user + system).
// The child is reaped by `wait4` itself, which std's `wait` cannot do with the usage.
#[allow(clippy::zombie_processes)]
pub fn wait_with_usage(child: std::process::Child) -> Usage {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals above.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let seconds = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    Usage {
        exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        max_rss_kib: usage.ru_maxrss as u64,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
    }
}
