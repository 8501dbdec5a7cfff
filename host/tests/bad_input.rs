//! Bad input never panics, hangs or silently does nothing: every flag that takes a number, a
//! duration, a size, a URL or a file, and the start-up checks of the Prefect API and of the
//! cluster, each refuse a wrong value with an exit code and a message that names the thing
//! and the remedy. A table: one row per input.

mod common;

use agent_tests::prefect::server;
use std::process::Command;
use std::time::{Duration, Instant};

/// One bad input: the arguments (after `agent`), the environment, the exit code, and words the
/// message must hold (each at least once), and words it must hold exactly once.
struct Row {
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    code: i32,
    says: Vec<String>,
    once: Vec<String>,
}

fn row<A: AsRef<str>>(args: &[A], code: i32, says: &[&str]) -> Row {
    Row {
        args: args.iter().map(|a| a.as_ref().to_string()).collect(),
        env: Vec::new(),
        code,
        says: says.iter().map(|s| s.to_string()).collect(),
        once: Vec::new(),
    }
}

impl Row {
    fn env(mut self, name: &'static str, value: &str) -> Row {
        self.env.push((name, value.to_string()));
        self
    }

    fn once(mut self, words: &[&str]) -> Row {
        self.once = words.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// `agent start --pool p` plus `args`, with a Prefect API that is not there unless set.
fn start(args: &[&str]) -> Vec<String> {
    let mut all = vec!["start", "--pool", "bad-input"];
    all.extend(args);
    all.iter().map(|a| a.to_string()).collect()
}

fn check(row: &Row) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(&row.args)
        .env_remove("PREFECT_API_URL")
        .env_remove("PREFECT_API_KEY")
        .env("PREFECT_API_URL", "http://127.0.0.1:9/api")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache())
        .env("AGENT_LOG", "error")
        .envs(row.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let shown = format!("agent {} ({:?}):\n{stderr}", row.args.join(" "), row.env);
    assert_eq!(output.status.code(), Some(row.code), "exit code of {shown}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it answered quickly: {shown}"
    );
    for words in &row.says {
        assert!(
            stderr.contains(words.as_str()),
            "{words:?} missing from {shown}"
        );
    }
    for words in &row.once {
        assert_eq!(
            stderr.matches(words.as_str()).count(),
            1,
            "{words:?} once in {shown}"
        );
    }
    assert!(
        !stderr.contains("panicked") && !stderr.contains("{ ") && !stderr.contains("Status {"),
        "no panic and no Debug dump: {shown}"
    );
}

#[test]
fn numbers_durations_and_sizes_out_of_range_are_refused_naming_the_flag_and_the_range() {
    let rows = vec![
        row(
            &start(&["--poll-interval", "0s"]),
            2,
            &["--poll-interval", "allowed from 100ms to 1h"],
        ),
        row(
            &start(&["--poll-interval", "soon"]),
            2,
            &["--poll-interval", "is not a duration like 10s"],
        ),
        row(
            &start(&["--prefetch=-1"]),
            2,
            &["--prefetch", "is not a duration"],
        ),
        row(
            &start(&["--shutdown-grace", "2h"]),
            2,
            &["--shutdown-grace", "allowed from 0s to 1h"],
        ),
        row(
            &start(&["--limit", "0"]),
            2,
            &["--limit", "0 is not in 1..=1000000"],
        ),
        row(
            &start(&["--submission-limit", "0"]),
            2,
            &["--submission-limit", "0 is not in 1..=1024"],
        ),
        row(
            &start(&["--max-polls", "0"]),
            2,
            &["--max-polls", "0 is not in 1.."],
        ),
        row(
            &start(&["--heartbeat-interval", "0"]),
            2,
            &["--heartbeat-interval", "allowed from 1s to 1h"],
        ),
        row(
            &start(&["--orphan-grace", "0s"]),
            2,
            &["--orphan-grace", "allowed from 1s"],
        ),
        row(
            &start(&["--orphan-interval", "0s"]),
            2,
            &["--orphan-interval", "allowed from 1s"],
        ),
        row(
            &start(&["--api-request-timeout", "0"]),
            2,
            &["--api-request-timeout", "allowed from 1s"],
        ),
        row(
            &start(&["--pod-start-timeout", "0s"]),
            2,
            &["--pod-start-timeout", "allowed from 1s"],
        ),
        row(
            &start(&["--schedule-timeout", "forever"]),
            2,
            &["--schedule-timeout", "is not a duration"],
        ),
        row(
            &start(&["--delete-succeeded-after=-5"]),
            2,
            &["--delete-succeeded-after", "is not a duration"],
        ),
        row(
            &start(&["--delete-failed-after", "2y"]),
            2,
            &["--delete-failed-after", "allowed from 0s to 365d"],
        ),
        row(
            &start(&["--unhealthy-after", "0"]),
            2,
            &["--unhealthy-after", "0 is not in 1..=100000"],
        ),
        row(
            &start(&["--crash-log-lines", "100000"]),
            2,
            &["--crash-log-lines", "100000 is not in 0..=10000"],
        ),
        row(
            &start(&["--plugin-timeout", "0s"]),
            2,
            &["--plugin-timeout", "allowed from 10ms to 1h"],
        ),
        row(
            &start(&["--plugin-memory", "10KiB"]),
            2,
            &["--plugin-memory", "allowed from 1MiB to 4GiB"],
        ),
        row(
            &start(&["--plugin-memory", "lots"]),
            2,
            &["--plugin-memory", "is not a size like 64MiB"],
        ),
        row(
            &start(&["--plugin-output-limit", "100MiB"]),
            2,
            &["--plugin-output-limit", "allowed from 1KiB to 64MiB"],
        ),
        row(
            &start(&["--plugin-keep-resident", "5GiB"]),
            2,
            &["--plugin-keep-resident", "allowed from 0 bytes to 4GiB"],
        ),
        row(
            &start(&["--agent-address", "nowhere"]),
            2,
            &["--agent-address", "is not HOST:PORT", "http://0.0.0.0:8080"],
        ),
        row(
            &start(&["--type", "process"]),
            2,
            &["--type", "only `kubernetes` is taken"],
        ),
        row(
            &start(&["--plugin-config", "noequals"]),
            2,
            &["--plugin-config", "is not NAME.KEY=VALUE"],
        ),
        row(
            &start(&["--env", "NOVALUE"]),
            2,
            &["--env", "is not KEY=VALUE"],
        ),
        row(
            &["render", "--flow-run", "x.json", "--plugin-timeout", "1h1s"],
            2,
            &["--plugin-timeout", "allowed from 10ms to 1h"],
        ),
        row(
            &[
                "install",
                "--image",
                "i",
                "--pool",
                "p",
                "--api-url",
                "http://p/api",
                "--replicas",
                "0",
            ],
            2,
            &["--replicas", "0 is not in 1..=100"],
        ),
        row(
            &[
                "install",
                "--image",
                "i",
                "--pool",
                "p",
                "--api-url",
                "http://p/api",
                "--health-port",
                "0",
            ],
            2,
            &["--health-port", "0 is not in 1..=65535"],
        ),
    ];
    for row in &rows {
        check(row);
    }
}

#[test]
fn urls_files_and_settings_that_cannot_work_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("naming.wasm");
    let whole = std::fs::read(agent_tests::plugin("naming")).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let truncated = common::arg(&truncated);
    let missing_plugin = common::arg(&dir.path().join("missing.wasm"));
    let rows = vec![
        row(
            &start(&[]),
            2,
            &["PREFECT_API_URL", "is not a URL", "http://prefect:4200/api"],
        )
        .env("PREFECT_API_URL", "not-a-url"),
        row(
            &start(&["--api-url", "ftp://prefect/api"]),
            2,
            &["--api-url", "is not an http(s) URL"],
        ),
        row(
            &start(&["--api-ca-file", "/nonexistent/ca.pem"]),
            1,
            &["/nonexistent/ca.pem", "cannot read it"],
        ),
        row(
            &start(&[]),
            2,
            &[
                "PREFECT_CLIENT_CUSTOM_HEADERS",
                "is not JSON",
                "{\"X-Team\": \"data\"}",
            ],
        )
        .env("PREFECT_CLIENT_CUSTOM_HEADERS", "{bad"),
        row(
            &start(&[]),
            2,
            &[
                "PREFECT_API_KEY",
                "kubectl -n default create secret generic prefect-api-key",
                "--api-key-secret prefect-api-key/key",
                "--no-api-key-for-runs",
            ],
        )
        .env("PREFECT_API_KEY", "pnu_x"),
        row(
            &[
                "render",
                "--flow-run",
                "examples/flow-runs/minimal.yaml",
                "--plugin",
                &missing_plugin,
            ],
            1,
            &["missing.wasm", "cannot read the file"],
        )
        .once(&["No such file or directory"]),
        row(
            &[
                "render",
                "--flow-run",
                "examples/flow-runs/minimal.yaml",
                "--plugin",
                &truncated,
            ],
            1,
            &[
                "naming.wasm",
                "damaged or incomplete",
                "build it again, or download it again",
            ],
        ),
        row(
            &["render", "--flow-run", "/nonexistent/run.json"],
            1,
            &["cannot read /nonexistent/run.json"],
        )
        .once(&["No such file or directory"]),
        row(
            &start(&["--volume", "{bad json"]),
            2,
            &["--volume", "not valid JSON"],
        ),
    ];
    let root = agent_tests::workspace_root();
    std::env::set_current_dir(root).unwrap();
    for row in &rows {
        check(row);
    }
}

#[test]
fn a_wrong_prefect_url_and_an_unreachable_cluster_are_caught_at_start_with_the_fix() {
    let prefect = server();
    prefect.create_pool("bad-input", serde_json::json!({}));
    let deployment =
        prefect.create_deployment("bad-input", "etl", "bad-input", serde_json::json!({}));
    let run = prefect.create_run(&deployment, serde_json::json!({}));
    let without_api = prefect.api_url.trim_end_matches("/api").to_string();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kube_emulator::kubeconfig_yaml(closed, "token", "default"),
    )
    .unwrap();
    let kubeconfig = common::arg(&kubeconfig);
    let rows = vec![
        row(
            &start(&["--run-once"]),
            1,
            &[
                "is not a Prefect API",
                &format!("try PREFECT_API_URL={without_api}/api"),
            ],
        )
        .env("PREFECT_API_URL", &without_api),
        row(
            &start(&["--run-once"]),
            1,
            &[
                &format!("cannot use Kubernetes at http://{closed}"),
                &format!("KUBECONFIG={kubeconfig}"),
                "check that the cluster is up",
            ],
        )
        .env("PREFECT_API_URL", &prefect.api_url)
        .env("KUBECONFIG", &kubeconfig),
        row(
            &start(&["--run-once"]),
            1,
            &[
                "cannot configure the Kubernetes client from KUBECONFIG=/nonexistent/kubeconfig",
                "Set KUBECONFIG to a kubeconfig file",
            ],
        )
        .env("PREFECT_API_URL", &prefect.api_url)
        .once(&["/nonexistent/kubeconfig\""]),
    ];
    for row in &rows {
        check(row);
    }
    assert_eq!(
        prefect.flow_run(&run)["state_type"],
        "SCHEDULED",
        "no run is claimed when Kubernetes cannot be used"
    );
}
