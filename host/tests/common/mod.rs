//! Helpers for the host's end-to-end tests: run the real `agent` binary.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The result of one `agent` invocation.
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.status, Some(0), "agent failed:\n{}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `agent ARGS...` with the suite's plugin cache.
pub fn agent<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    agent_with_cache(args, &agent_tests::plugin_cache())
}

/// Runs `agent ARGS...` with the plugin cache `cache` (kept across calls: a Python or
/// JavaScript component takes seconds to compile).
pub fn agent_with_cache<I, S>(args: I, cache: &Path) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output: Output = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(args)
        .env("AGENT_PLUGIN_CACHE", cache)
        .env_remove("PREFECT_API_URL")
        .env("AGENT_LOG", "warn")
        .output()
        .expect("running the agent binary");
    Run {
        status: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `path` as a string argument.
pub fn arg(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_string()
}

/// Runs `agent ARGS...` to its end; its exit code and its peak RSS in KiB.
pub fn agent_peak_rss<I, S>(args: I) -> (Option<i32>, u64)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let cache = tempfile::tempdir().expect("a temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_agent"));
    command
        .args(args)
        .env("AGENT_PLUGIN_CACHE", cache.path())
        .env_remove("PREFECT_API_URL")
        .env("AGENT_LOG", "error");
    let (code, peak, _) = agent_tests::peak_rss(&mut command);
    (code, peak)
}
