//! Plugins in Python, JavaScript and C, built from source by each example's `build.sh` (the
//! command its README gives), checked and run as a Rust plugin is: `agent plugin check`,
//! `agent plugin test` over the example's cases, `agent render` with all three in the chain,
//! and `agent start` against a real Prefect server and the emulator (or a real cluster, see
//! `e2e`).

mod common;
mod e2e;

use agent_tests::prefect::server;
use agent_tests::{EXAMPLES, example_plugin, plugin, workspace_root};
use common::{agent, arg};
use e2e::{cluster, stock_template};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The example's component, built and compiled into the suite's plugin cache once: tests
/// running side by side would otherwise each compile it (seconds for Python and JavaScript).
fn example(name: &str) -> PathBuf {
    static WARM: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let path = example_plugin(name);
    let mut warm = WARM.lock().unwrap_or_else(|e| e.into_inner());
    if !warm.iter().any(|n| n == name) {
        let check = agent(["plugin", "check", &arg(&path)]);
        assert_eq!(check.status, Some(0), "{name}: {}", check.stderr);
        warm.push(name.to_string());
    }
    path
}

/// The three examples, built, as `NAME=PATH` plugin arguments.
fn chain() -> Vec<String> {
    [
        ("cost-center", "python-cost-center"),
        ("gpu", "js-gpu-placement"),
        ("caps", "c-resource-caps"),
    ]
    .iter()
    .map(|(name, folder)| format!("{name}={}", arg(&example(folder))))
    .collect()
}

/// What the chain is told: settings for each example.
const SETTINGS: &[&str] = &[
    "-c",
    "cost-center.required=true",
    "-c",
    "gpu.pool.a100=gpu-a100",
    "-c",
    "caps.memory.max=4Gi",
];

#[test]
fn each_language_builds_from_source_passes_its_cases_and_is_a_plugin_of_this_contract() {
    for (folder, _) in EXAMPLES {
        let component = example(folder);
        let check = agent(["plugin", "check", &arg(&component)]);
        assert_eq!(check.status, Some(0), "{folder}: {}", check.stderr);
        assert!(
            check
                .stdout
                .contains("a plugin (agent:plugin/customizer@0.1.1)"),
            "{folder}: {}",
            check.stdout
        );
        let cases: PathBuf = workspace_root().join("examples").join(folder).join("cases");
        let test = agent(["plugin", "test", &arg(&component), "--cases", &arg(&cases)]);
        assert_eq!(
            test.status,
            Some(0),
            "{folder}: {}{}",
            test.stdout,
            test.stderr
        );
        assert!(
            test.stdout.contains(" passed, 0 failed") && !test.stdout.starts_with("0 passed"),
            "{folder}: {}",
            test.stdout
        );
    }
}

/// The example flow run with `tags`, asking for two A100s and 8Gi.
fn flow_run_file(dir: &std::path::Path, tags: &[&str]) -> PathBuf {
    let mut run: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("examples/flow-runs/etl-nightly.json"))
            .unwrap(),
    )
    .unwrap();
    run["flow_run"]["tags"] = json!(tags);
    run["flow_run"]["job_variables"]["gpu"] = json!({"type": "a100", "count": 2});
    // More than the C plugin allows (caps.memory.max=4Gi).
    run["flow_run"]["job_variables"]["memory_request"] = json!("8Gi");
    let path = dir.join("run.json");
    std::fs::write(&path, run.to_string()).unwrap();
    path
}

#[test]
fn all_three_languages_share_one_chain_in_agent_render() {
    let dir = tempfile::tempdir().unwrap();
    let run = flow_run_file(dir.path(), &["etl", "cost-center:Finance"]);
    let mut args = vec!["render", "--flow-run", run.to_str().unwrap(), "-o", "json"];
    let chain = chain();
    for plugin in &chain {
        args.extend(["--plugin", plugin]);
    }
    args.extend(SETTINGS);
    let job = agent(&args).json();
    assert_eq!(job["metadata"]["labels"]["cost-center"], "finance");
    let pod = &job["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["cost-center"], "finance");
    assert_eq!(pod["spec"]["nodeSelector"]["node-pool"], "gpu-a100");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "nvidia.com/gpu");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "2");
    assert_eq!(container["resources"]["requests"]["memory"], "4Gi");
    // What the stock plugin made is still there.
    assert_eq!(container["image"], "registry.example.com/data/etl:2026.11");

    // A Python rejection reads as any plugin's.
    let untagged = flow_run_file(dir.path(), &["etl"]);
    let mut args = vec!["render", "--flow-run", untagged.to_str().unwrap()];
    for plugin in &chain {
        args.extend(["--plugin", plugin]);
    }
    args.extend(SETTINGS);
    let refused = agent(&args);
    assert_eq!(refused.status, Some(3), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("cost-center") && refused.stderr.contains("names no cost center"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_component_importing_http_is_refused_with_the_import_named() {
    // componentize-js keeps wasi:http unless told `--disable http fetch-event`.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("plugin.js");
    std::fs::write(
        &source,
        "export const customizer = { customize(request, job) { return job; } };\n",
    )
    .unwrap();
    let component = dir.path().join("http.wasm");
    let built =
        Command::new(workspace_root().join("plugins/sdk-js/node_modules/.bin/componentize-js"))
            .arg(&source)
            .arg("--wit")
            .arg(workspace_root().join("wit"))
            .args(["--world-name", "plugin", "-o"])
            .arg(&component)
            .output()
            .expect("componentize-js (tests/setup-js.sh installs it)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let check = agent(["plugin", "check", &arg(&component)]);
    assert_eq!(check.status, Some(1), "{}", check.stdout);
    assert!(
        check.stderr.contains("wasi:http/"),
        "the refused import is named: {}",
        check.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn all_three_languages_decide_the_jobs_of_agent_start() {
    let prefect = server();
    let cluster = cluster().await;
    prefect.create_pool("e2e-languages", stock_template());
    let deployment = prefect.create_deployment(
        "e2e-languages",
        "train",
        "e2e-languages",
        json!({"image": "registry.example.com/train:1", "gpu": "a100"}),
    );
    let tagged = prefect.create_tagged_run(&deployment, json!({}), &["cost-center:ml"]);
    let untagged = prefect.create_tagged_run(&deployment, json!({}), &[]);

    let resources = format!("resources={}", arg(&plugin("resources")));
    let chain = chain();
    let mut args = vec![
        "start",
        "--namespace",
        &cluster.namespace,
        "--pool",
        "e2e-languages",
        "--name",
        "agent-languages",
        "--run-once",
        "--plugin",
        &resources,
        "-c",
        "resources.memory.default=8Gi",
    ];
    for plugin in &chain {
        args.extend(["--plugin", plugin]);
    }
    args.extend(SETTINGS);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(&args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PREFECT_API_URL", &prefect.api_url)
        .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache())
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("plugins default → resources → cost-center → gpu → caps"),
        "{log}"
    );

    let jobs = cluster.jobs_of("agent-languages").await;
    assert_eq!(jobs.len(), 1, "the untagged run was rejected: {log}");
    let job = serde_json::to_value(&jobs[0]).unwrap();
    assert_eq!(
        job["metadata"]["labels"]["prefect-agent/flow-run-id"],
        tagged
    );
    assert_eq!(job["metadata"]["labels"]["cost-center"], "ml");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["node-pool"], "gpu-a100");
    assert_eq!(
        pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert_eq!(
        pod["containers"][0]["resources"]["requests"]["memory"],
        "4Gi"
    );
    assert_eq!(prefect.flow_run(&tagged)["state_type"], "PENDING");

    let refused = prefect.flow_run(&untagged);
    assert_eq!(refused["state_type"], "FAILED");
    let message = refused["state"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Rejected by plugin cost-center")
            && message.contains("names no cost center"),
        "{message}"
    );
}
