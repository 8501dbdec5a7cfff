//! `agent render` end to end: the real binary, the stock plugin built in, the shipped plugins
//! built from source, the example flow run.

mod common;

use agent_tests::{plugin, python, workspace_root};
use common::{agent, arg};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

fn example() -> String {
    arg(&workspace_root().join("examples/flow-runs/etl-nightly.json"))
}

fn plugin_arg(name: &str) -> String {
    format!("{name}={}", arg(&plugin(name)))
}

#[test]
fn the_shipped_plugins_refine_the_stock_job_in_order() {
    let volumes = r#"[{"name": "data", "persistentVolumeClaim": {"claimName": "warehouse"}}]"#;
    let mounts = r#"[{"name": "data", "mountPath": "/data"}]"#;
    let run = agent([
        "render",
        "-o",
        "json",
        "--explain",
        "--flow-run",
        &example(),
        "--plugin",
        &plugin_arg("naming"),
        "-c",
        "naming.prefix=etl",
        "--plugin",
        &plugin_arg("volumes"),
        "-c",
        &format!("volumes.volumes={volumes}"),
        "-c",
        &format!("volumes.mounts={mounts}"),
        "--plugin",
        &plugin_arg("resources"),
        "-c",
        "resources.cpu.max=250m",
        "-c",
        "resources.memory.default=1Gi",
        "--plugin",
        &plugin_arg("env"),
        "-c",
        "env.secret.DB_PASSWORD=warehouse-db/password",
        "-c",
        "env.set.TEAM=data",
        "--plugin",
        &plugin_arg("node-placement"),
        "-c",
        r#"node-placement.node-selector={"pool": "batch"}"#,
        "--plugin",
        &plugin_arg("policy"),
        "-c",
        "policy.allowed-registries=registry.example.com",
        "-c",
        "policy.memory.max=2Gi",
    ]);
    let job = run.json();
    assert!(
        job["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("etl-crimson-beaver-"),
        "{}",
        job["metadata"]["name"]
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "warehouse"}}])
    );
    assert_eq!(pod["nodeSelector"], json!({"pool": "batch"}));
    let container = &pod["containers"][0];
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "data", "mountPath": "/data"}])
    );
    // The deployment asked for 500m; the resources plugin capped it. memory came from the run.
    assert_eq!(
        container["resources"]["requests"],
        json!({"cpu": "250m", "memory": "512Mi"})
    );
    let env = container["env"].as_array().unwrap();
    assert!(env.contains(&json!({"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "warehouse-db", "key": "password"}}})));
    assert!(env.contains(&json!({"name": "TEAM", "value": "data"})));

    for plugin in [
        "default",
        "naming",
        "volumes",
        "resources",
        "env",
        "node-placement",
        "policy",
    ] {
        assert!(
            run.stderr.contains(&format!("# plugin {plugin} (")),
            "--explain shows {plugin}:\n{}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("~ .metadata.name"), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "log warn: container prefect-job: cpu requests 500m is above the maximum 250m; capped"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_policy_rejection_exits_3_with_the_reason() {
    let run = agent([
        "render",
        "--flow-run",
        &example(),
        "--plugin",
        &plugin_arg("policy"),
        "-c",
        "policy.allowed-registries=ghcr.io/acme",
    ]);
    assert_eq!(run.status, Some(3), "{}", run.stderr);
    assert_eq!(
        run.stderr.trim(),
        "error: flow run 5f3c2b1a-8d4e-4f6a-9b7c-0e1d2c3b4a59: plugin policy rejected the run: container prefect-job: \
         image \"registry.example.com/data/etl:2026.11\" is not from an allowed registry (ghcr.io/acme)"
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn settings_for_a_plugin_that_is_not_loaded_are_refused() {
    let run = agent([
        "render",
        "--flow-run",
        &example(),
        "-c",
        "naming.prefix=etl",
    ]);
    assert_eq!(run.status, Some(1));
    assert_eq!(
        run.stderr.trim(),
        "error: naming.prefix: no plugin named \"naming\" is loaded (loaded: default)"
    );
}

#[test]
fn a_plugin_of_another_world_stops_the_command_before_any_run() {
    let run = agent([
        "render",
        "--flow-run",
        &example(),
        "--plugin",
        &plugin_arg("other-world"),
    ]);
    assert_eq!(run.status, Some(1));
    assert!(
        run.stderr.contains("plugin other-world ("),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("does not implement the agent's plugin world"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_template_that_types_an_env_value_wrong_fails_with_the_field_path() {
    // A whole-value placeholder gives the variable's type: an integer where Kubernetes wants a
    // string. Prefect's worker would send this to the API server; we stop it here. Our env
    // (nine entries here) comes first, then the template's own.
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("job.yaml");
    std::fs::write(
        &template,
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: etl-\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: prefect-job\n        env:\n        - name: RETRIES\n          value: \"{{ backoff_limit }}\"\n",
    )
    .unwrap();
    let run = agent([
        "render",
        "--flow-run",
        &example(),
        "--template",
        &arg(&template),
    ]);
    assert_eq!(run.status, Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains("invalid Job (field last changed by plugin default): .spec.template.spec.containers[0].env[9].value: 0 is not of types"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_job_manifest_template_replaces_the_pools_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("job.yaml");
    std::fs::write(
        &template,
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: nightly-\n  labels:\n    tier: batch\nspec:\n  activeDeadlineSeconds: 3600\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: prefect-job\n        image: \"{{ image }}\"\n",
    )
    .unwrap();
    let job = agent([
        "render",
        "-o",
        "json",
        "--flow-run",
        &example(),
        "--template",
        &arg(&template),
    ])
    .json();
    assert!(
        job["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("nightly-")
    );
    assert_eq!(job["metadata"]["labels"]["tier"], "batch");
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 3600);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/data/etl:2026.11"
    );
}

#[test]
fn yaml_output_reads_back_as_the_json_output_in_a_yaml_1_1_reader() {
    // PyYAML reads YAML 1.1 as kubectl does: `yes`, `on`, `0755` must come back as strings.
    let tricky = tempfile::tempdir().unwrap();
    let case = tricky.path().join("run.json");
    let mut input: Value =
        serde_json::from_str(&std::fs::read_to_string(example()).unwrap()).unwrap();
    input["flow_run"]["job_variables"]["env"] =
        json!({"A": "yes", "B": "on", "C": "0755", "D": "1:20", "E": "~", "F": "null"});
    std::fs::write(&case, input.to_string()).unwrap();

    let as_json = agent(["render", "-o", "json", "--flow-run", &arg(&case)]).json();
    let as_yaml = agent(["render", "-o", "yaml", "--flow-run", &arg(&case)]);
    assert_eq!(as_yaml.status, Some(0), "{}", as_yaml.stderr);
    let mut reader = Command::new(python())
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    reader
        .stdin
        .take()
        .unwrap()
        .write_all(as_yaml.stdout.as_bytes())
        .unwrap();
    let output = reader.wait_with_output().unwrap();
    assert!(output.status.success());
    let read_back: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read_back, as_json);
}

#[test]
fn a_minimal_yaml_flow_run_renders_with_the_stock_template() {
    let input = arg(&workspace_root().join("examples/flow-runs/minimal.yaml"));
    let job = agent(["render", "-o", "json", "--flow-run", &input]).json();
    assert!(
        job["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("gentle-heron-")
    );
    assert_eq!(job["metadata"]["namespace"], "default");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "prefecthq/prefect:3-latest");
    assert_eq!(container["args"], json!(["prefect", "flow-run", "execute"]));
}

#[test]
fn a_pinned_namespace_is_the_default_and_the_limit() {
    let job = agent([
        "render",
        "-o",
        "json",
        "--flow-run",
        &example(),
        "--namespace",
        "jobs",
    ])
    .json();
    assert_eq!(
        job["metadata"]["namespace"], "jobs",
        "the agent's namespace overrides the pool default"
    );

    let asks_for_data = arg(&agent_tests::tests_path(
        "golden/cases/env-list-and-retries.json",
    ));
    let run = agent([
        "render",
        "--flow-run",
        &asks_for_data,
        "--namespace",
        "jobs",
    ]);
    assert_eq!(run.status, Some(1));
    assert!(
        run.stderr.contains(
            ".metadata.namespace: is \"data\", but this agent creates Jobs only in \"jobs\""
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn the_agents_own_defaults_reach_every_job() {
    let job = agent([
        "render",
        "-o",
        "json",
        "--flow-run",
        &example(),
        "--api-key-secret",
        "prefect-api/key",
        "--image-pull-secrets",
        "regcred,mirror",
        "--env",
        "HTTP_PROXY=http://proxy:3128",
        "--env",
        "WAREHOUSE=overridden-by-deployment",
        "--job-label",
        "platform=prefect",
        "--service-account-name",
        "flows",
    ])
    .json();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "regcred"}, {"name": "mirror"}])
    );
    assert_eq!(pod["serviceAccountName"], "flows");
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(env.contains(&json!({"name": "PREFECT_API_KEY", "valueFrom": {"secretKeyRef": {"name": "prefect-api", "key": "key"}}})));
    assert!(env.contains(&json!({"name": "HTTP_PROXY", "value": "http://proxy:3128"})));
    assert!(
        env.contains(&json!({"name": "WAREHOUSE", "value": "prod"})),
        "the deployment's env wins over --env"
    );
    assert_eq!(job["metadata"]["labels"]["platform"], "prefect");
    assert_eq!(
        pod["containers"][0]["env"]
            .to_string()
            .matches("PREFECT_API_KEY")
            .count(),
        1
    );
}

#[test]
fn no_cloud_logs_turns_off_log_shipping_in_every_flow_run() {
    let job = agent([
        "render",
        "-o",
        "json",
        "--flow-run",
        &example(),
        "--no-cloud-logs",
    ])
    .json();
    let env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        env.contains(&json!({"name": "PREFECT_LOGGING_TO_API_ENABLED", "value": "false"})),
        "{env:?}"
    );
}

#[test]
fn a_config_file_sets_flags_plugins_and_volumes_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("wasm")).unwrap();
    std::fs::copy(plugin("naming"), dir.path().join("wasm/naming.wasm")).unwrap();
    std::fs::write(
        dir.path().join("mounts.yaml"),
        "- name: data\n  mountPath: /data\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agent.toml"),
        r#"
namespace = "flows"
service-account-name = "from-file"
image-pull-secrets = ["regcred"]
env = { TEAM = "data" }
volume = [{ name = "data", persistentVolumeClaim = { claimName = "shared" } }]
volume-mount = "mounts.yaml"

[[plugin]]
path = "wasm/naming.wasm"
config = { prefix = "nightly" }
"#,
    )
    .unwrap();
    let job = agent([
        "render",
        "-o",
        "json",
        "--flow-run",
        &example(),
        "--config",
        &arg(&dir.path().join("agent.toml")),
        "--service-account-name",
        "from-flag",
    ])
    .json();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(job["metadata"]["namespace"], "flows");
    assert!(
        job["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("nightly-"),
        "{}",
        job["metadata"]["name"]
    );
    assert_eq!(pod["serviceAccountName"], "from-flag", "the flag wins");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(
        pod["volumes"],
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "data", "mountPath": "/data"}])
    );
    assert!(
        pod["containers"][0]["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "TEAM", "value": "data"}))
    );
}

#[test]
fn a_config_file_with_an_unknown_setting_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "namespce = \"flows\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["render", "--flow-run", &example(), "--config", &arg(&file)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown setting `namespce`") && stderr.contains("namespace"),
        "{stderr}"
    );
}

/// Serves `body` over plain HTTP on loopback for every request; counts the requests.
fn serve_file(body: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (format!("http://{address}"), served)
}

#[test]
fn a_plugin_from_a_url_must_be_pinned_is_checked_and_is_fetched_once() {
    let bytes = std::fs::read(plugin("naming")).unwrap();
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let (base, served) = serve_file(bytes);
    let cache = tempfile::tempdir().unwrap();
    let render = |spec: &str| {
        agent([
            "render",
            "-o",
            "json",
            "--flow-run",
            &example(),
            "--plugin-cache",
            &arg(cache.path()),
            "--plugin",
            spec,
            "-c",
            "naming.prefix=remote",
        ])
    };
    let pinned = format!("{base}/plugins/naming.wasm#sha256={sha256}");
    let job = render(&pinned).json();
    assert!(
        job["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("remote-")
    );
    render(&pinned).json();
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the second start uses the downloaded copy"
    );

    let unpinned = render(&format!("{base}/plugins/naming.wasm"));
    assert_eq!(unpinned.status, Some(1));
    assert!(
        unpinned.stderr.contains("must be pinned"),
        "{}",
        unpinned.stderr
    );
    let wrong = render(&format!(
        "{base}/plugins/naming.wasm#sha256={}",
        "0".repeat(64)
    ));
    assert_eq!(wrong.status, Some(1));
    assert!(
        wrong.stderr.contains("not the pinned") && wrong.stderr.contains(&sha256),
        "{}",
        wrong.stderr
    );
}

#[test]
fn a_job_manifest_job_variable_replaces_the_template_for_that_deployment() {
    let mut run: Value =
        serde_json::from_str(&std::fs::read_to_string(example()).unwrap()).unwrap();
    run["deployment"]["job_variables"]["job_manifest"] = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": "special-", "labels": {"deployment": "own-template"}},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "prefect-job", "image": "{{ image }}"}]
        }}}
    });
    let file = tempfile::NamedTempFile::with_suffix(".json").unwrap();
    std::fs::write(file.path(), run.to_string()).unwrap();
    let job = agent(["render", "-o", "json", "--flow-run", &arg(file.path())]).json();
    assert!(
        job["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("special-")
    );
    assert_eq!(job["metadata"]["labels"]["deployment"], "own-template");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/data/etl:2026.11",
        "the deployment's other job variables still fill it"
    );
}
