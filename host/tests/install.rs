//! `agent install`: its manifests pass the strict validator, `kubectl apply` takes them (the
//! emulator serves the kinds), and the Role it grants is all `agent start` needs: an agent
//! running with exactly that Role submits, watches, crashes, cancels and cleans up without one
//! request denied.

mod common;
mod e2e;

use agent_tests::prefect::server;
use agent_tests::{plugin, venv_command};
use common::{agent, arg};
use e2e::stock_template;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_emulator::{Behaviour, Config, Emulator, Identity, Match, PodRule, Rule};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

const PIN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn install(extra: &[&str]) -> common::Run {
    let mut args = vec![
        "install",
        "--image",
        "registry.example.com/prefect-agent:0.1.0",
        "--pool",
        "kubernetes",
        "--api-url",
        "http://prefect.prefect.svc:4200/api",
        "--namespace",
        "prefect",
    ];
    args.extend_from_slice(extra);
    agent(args)
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|d: &Value| !d.is_null())
        .collect()
}

fn kinds(documents: &[Value]) -> Vec<String> {
    documents
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["namespace"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_manifests_validate_strictly_and_kubectl_applies_them() {
    let naming = arg(&plugin("naming"));
    let url = format!("volumes=https://plugins.example.com/volumes.wasm#sha256={PIN}");
    let run = install(&[
        "--rbac",
        "--api-key-secret",
        "prefect-api-key/key",
        "--plugin",
        &naming,
        "--plugin",
        &url,
        "--plugin",
        "policy=configmap:shared-plugins/policy.wasm",
        "-c",
        "naming.prefix=etl",
    ]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let docs = documents(&run.stdout);
    assert_eq!(
        kinds(&docs),
        [
            "ServiceAccount/prefect",
            "Role/prefect",
            "RoleBinding/prefect",
            "ConfigMap/prefect",
            "Deployment/prefect"
        ]
    );
    let deployment = docs.last().unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "start",
            "--plugin",
            "/etc/agent/plugins/prefect-agent-plugins/naming.wasm",
            "--plugin",
            &format!("volumes=https://plugins.example.com/volumes.wasm#sha256={PIN}"),
            "--plugin",
            "policy=/etc/agent/plugins/shared-plugins/policy.wasm",
            "--plugin-config",
            "naming.prefix=etl"
        ]
    );
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "PREFECT_API_KEY", "valueFrom": {"secretKeyRef": {"name": "prefect-api-key", "key": "key"}}}))
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"], "/healthz",
        "probes on the health address"
    );

    // The independent strict validator.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("install.yaml");
    std::fs::write(&file, &run.stdout).unwrap();
    let output = Command::new(venv_command("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.37.0", &arg(&file)])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert_eq!(report.matches("INFO").count(), docs.len(), "{report}");

    // kubectl, client-side and then for real against the emulator (which validates every
    // object against the strict schema too).
    let emulator = Emulator::start(Config {
        namespaces: vec!["default".into(), "prefect".into()],
        ..Config::default()
    })
    .await
    .unwrap();
    let (ok, out) = kubectl(
        emulator.kubeconfig(),
        &["apply", "--dry-run=client", "-f", "-"],
        &run.stdout,
    );
    assert!(ok, "{out}");
    let (ok, out) = kubectl(emulator.kubeconfig(), &["apply", "-f", "-"], &run.stdout);
    assert!(ok, "{out}");
    assert_eq!(out.matches("created").count(), docs.len(), "{out}");
}

#[test]
fn several_job_namespaces_get_one_cluster_role_bound_in_each() {
    let run = install(&["--rbac", "--job-namespace", "etl", "--job-namespace", "ml"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let docs = documents(&run.stdout);
    assert_eq!(
        kinds(&docs),
        [
            "ServiceAccount/prefect",
            "ClusterRole/-",
            "RoleBinding/etl",
            "RoleBinding/ml",
            "Deployment/prefect"
        ],
        "no ClusterRoleBinding: access stays per namespace"
    );
    let env = &docs.last().unwrap()["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "AGENT_JOB_NAMESPACES", "value": "ml"}))
    );
}

#[test]
fn a_plain_text_key_is_refused_unless_insisted_on() {
    let refused = install(&["--key", "pnu_secret"]);
    assert_eq!(refused.status, Some(2));
    assert!(
        refused
            .stderr
            .contains("kubectl -n prefect create secret generic")
            && refused.stderr.contains("--insecure-inline-key"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("pnu_secret"));
    let inline = install(&["--key", "pnu_secret", "--insecure-inline-key"]);
    assert_eq!(inline.status, Some(0), "{}", inline.stderr);
    let docs = documents(&inline.stdout);
    assert_eq!(docs[0]["kind"], "Secret");
    assert_eq!(docs[0]["stringData"]["key"], "pnu_secret");
}

#[test]
fn plugins_too_large_for_a_config_map_or_unpinned_urls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let large = dir.path().join("large.wasm");
    std::fs::write(&large, vec![0u8; 900 * 1024]).unwrap();
    let run = install(&["--plugin", &arg(&large)]);
    assert_eq!(run.status, Some(2));
    assert!(
        run.stderr.contains("1 MiB") && run.stderr.contains("volume:CLAIM/PATH"),
        "{}",
        run.stderr
    );
    let run = install(&["--plugin", "https://plugins.example.com/naming.wasm"]);
    assert_eq!(run.status, Some(2));
    assert!(run.stderr.contains("must be pinned"), "{}", run.stderr);
}

/// A client acting as the emulator's admin.
async fn admin_client(emulator: &Emulator) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(emulator.kubeconfig()).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The Role `agent install --rbac` prints, as the emulator's RBAC rules for one token.
fn identity_of_role(role: &Value, namespace: &str) -> Identity {
    let rules = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| Rule {
            verbs: serde_json::from_value(rule["verbs"].clone()).unwrap(),
            resources: serde_json::from_value(rule["resources"].clone()).unwrap(),
            namespaces: vec![namespace.to_string()],
        })
        .collect();
    Identity {
        user: "system:serviceaccount:default:prefect-agent".into(),
        rules,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_role_it_grants_is_all_the_agent_needs() {
    let run = install(&[
        "--rbac",
        "--api-key-secret",
        "prefect-api-key/key",
        "--manage-api-key-secret",
        "--env-secret",
    ]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let install_output = run
        .stdout
        .replace("namespace: prefect", "namespace: default");
    let docs = documents(&install_output);
    let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    let emulator = Emulator::start(Config {
        anonymous_is_admin: false,
        time_scale: 0.05,
        pods: vec![
            PodRule {
                matches: Match {
                    image: Some("registry.example.com/missing*".into()),
                    ..Match::default()
                },
                then: Behaviour::ImagePullError,
                log: Vec::new(),
            },
            PodRule {
                matches: Match {
                    image: Some("registry.example.com/forever*".into()),
                    ..Match::default()
                },
                then: Behaviour::RunForever,
                log: Vec::new(),
            },
        ],
        ..Config::default()
    })
    .await
    .unwrap();
    emulator.set_identity("agent-token", identity_of_role(role, "default"));
    let kubeconfig = emulator.kubeconfig_for("agent-token", "default").unwrap();
    let admin = admin_client(&emulator).await;

    let prefect = server();
    prefect.create_pool("install-rbac", stock_template());
    let deployment = |name: &str, image: &str| {
        prefect.create_deployment("install-rbac", "etl", name, json!({"image": image}))
    };
    let succeeds = prefect.create_run(
        &deployment("install-rbac-ok", "registry.example.com/etl:1"),
        json!({}),
    );
    let pull_error = prefect.create_run(
        &deployment("install-rbac-pull", "registry.example.com/missing:1"),
        json!({}),
    );
    let cancelled = prefect.create_run(
        &deployment("install-rbac-cancel", "registry.example.com/forever:1"),
        json!({}),
    );
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "start",
            "--pool",
            "install-rbac",
            "--name",
            "install-rbac",
            "--namespace",
            "default",
            "--poll-interval",
            "1s",
            "--pod-start-timeout",
            "2s",
            "--delete-succeeded-after",
            "1s",
            "--key",
            "pnu_test_key",
            "--api-key-secret",
            "prefect-api-key/key",
            "--manage-api-key-secret",
            "--env-secret",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("PREFECT_API_URL", &prefect.api_url)
        .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache())
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let agent_log = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let state = |run: &str| {
        prefect.flow_run(run)["state_type"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    let started = Instant::now();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(admin.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(admin, "default");
    let mut cancel_sent = false;
    let mut completed_sent = false;
    let mut env_secret_seen = None;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "states: {} {} {}\nagent log:\n{}",
            state(&succeeds),
            state(&pull_error),
            state(&cancelled),
            agent_log()
        );
        if !cancel_sent && prefect.flow_run(&cancelled)["infrastructure_pid"].is_string() {
            prefect.call(
                "POST",
                &format!("/flow_runs/{cancelled}/set_state"),
                Some(json!({"state": {"type": "CANCELLING"}, "force": true})),
            );
            cancel_sent = true;
        }
        let succeeded_job = prefect.flow_run(&succeeds)["infrastructure_pid"]
            .as_str()
            .map(|pid| pid.split_once(':').unwrap().1.to_string());
        if let Some(name) = &succeeded_job
            && env_secret_seen.is_none()
        {
            env_secret_seen = owned_env_secret(&jobs, &secrets, name).await;
        }
        if let Some(name) = &succeeded_job
            && env_secret_seen.is_some()
            && !completed_sent
            && jobs.get(name).await.ok().and_then(|j| j.status?.succeeded) == Some(1)
        {
            prefect.call(
                "POST",
                &format!("/flow_runs/{succeeds}/set_state"),
                Some(json!({"state": {"type": "COMPLETED"}, "force": true})),
            );
            completed_sent = true;
        }
        let janitor_done = match &succeeded_job {
            Some(name) => completed_sent && jobs.get_opt(name).await.unwrap().is_none(),
            None => false,
        };
        if state(&pull_error) == "CRASHED" && state(&cancelled) == "CANCELLED" && janitor_done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let log = agent_log();
    // Denials read "… is forbidden: User …" / Forbidden (a bare "403" could be part of an id).
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "a request was denied:\n{log}"
    );
    // The flow run pods' Secret, written by the agent (the succeeded Job's pod needed it).
    let secret = secrets.get("prefect-api-key").await.unwrap();
    assert_eq!(
        secret.data.unwrap()["key"].0,
        b"pnu_test_key",
        "the agent's key"
    );
    assert_eq!(
        secret.metadata.labels.unwrap()["prefect-agent/agent"],
        "install-rbac"
    );
    // --env-secret: the Job's env Secret went with the Job.
    let env_secret = env_secret_seen.unwrap();
    let gone = Instant::now();
    while secrets.get_opt(&env_secret).await.unwrap().is_some() {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "the env Secret {env_secret} outlived its Job"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The name of the Secret holding Job `name`'s env once the Job reads every plain value from it
/// and owns it (`--env-secret`); None while the Job or the owner reference is not there yet.
async fn owned_env_secret(
    jobs: &Api<Job>,
    secrets: &Api<k8s_openapi::api::core::v1::Secret>,
    name: &str,
) -> Option<String> {
    let job = serde_json::to_value(jobs.get_opt(name).await.unwrap()?).unwrap();
    let env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        env.iter().all(|var| var.get("value").is_none()),
        "no plain env value is left in the Job: {env:#?}"
    );
    let url = env.iter().find(|v| v["name"] == "PREFECT_API_URL").unwrap();
    let secret_name = url["valueFrom"]["secretKeyRef"]["name"].as_str().unwrap();
    assert_eq!(secret_name, name, "the Secret is named after the Job");
    let secret = secrets.get_opt(secret_name).await.unwrap()?;
    let key = url["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
    assert!(
        String::from_utf8_lossy(&secret.data.as_ref().unwrap()[key].0)
            .starts_with("http://127.0.0.1"),
        "the Secret holds the value"
    );
    let owner = secret.metadata.owner_references?.into_iter().next()?;
    assert_eq!(
        (owner.kind.as_str(), Some(owner.uid)),
        ("Job", job["metadata"]["uid"].as_str().map(str::to_string))
    );
    Some(secret_name.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_the_agent_does_not_own_is_not_overwritten() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let admin = admin_client(&emulator).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(admin, "default");
    let foreign: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
        json!({"metadata": {"name": "taken"}, "stringData": {"key": "someone-elses"}}),
    )
    .unwrap();
    secrets
        .create(&kube::api::PostParams::default(), &foreign)
        .await
        .unwrap();
    let prefect = server();
    prefect.create_pool("install-taken", stock_template());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "start",
            "--pool",
            "install-taken",
            "--run-once",
            "--namespace",
            "default",
            "--key",
            "pnu_test_key",
            "--api-key-secret",
            "taken/key",
            "--manage-api-key-secret",
        ])
        .env("KUBECONFIG", emulator.kubeconfig())
        .env("PREFECT_API_URL", &prefect.api_url)
        .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("Secret default/taken exists and is not this agent's"),
        "{stderr}"
    );
    let kept = secrets.get("taken").await.unwrap();
    assert_eq!(kept.data.unwrap()["key"].0, b"someone-elses");
}
