//! The clients other than kube-rs that must work unchanged against the emulator: the Python
//! client Prefect's own worker uses (kubernetes_asyncio, from the project's venv), and kubectl.

use kube_emulator::{Behaviour, Config, Emulator, Match, PodRule};
use serde_json::Value;
use std::process::Command;

fn config() -> Config {
    // Runs 500 ms (scaled), long enough for a watch started after the create to see it run.
    let rule = PodRule {
        matches: Match::default(),
        then: Behaviour::Succeed { run_ms: 5_000 },
        log: vec!["hello from the flow".into()],
    };
    Config {
        time_scale: 0.1,
        pods: vec![rule],
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_prefects_worker_uses() {
    let emulator = Emulator::start(config()).await.unwrap();
    let script = agent_tests::tests_path("emulator/python/client_check.py");
    let kubeconfig = emulator.kubeconfig().to_path_buf();
    let output = tokio::process::Command::new(agent_tests::python())
        .arg(script)
        .arg(kubeconfig)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(seen["created"].as_str().unwrap().starts_with("py-job-"));
    assert_eq!(seen["read"], true);
    let phases: Vec<&str> = seen["pod_phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(phases.last(), Some(&"Succeeded"), "{phases:?}");
    assert!(phases.contains(&"Running"), "{phases:?}");
    assert_eq!(seen["log"], "hello from the flow\n");
    assert_eq!(seen["after_delete"], 404);
    assert_eq!(
        seen["pods_after_delete"], 0,
        "Foreground deletion removed the pods first"
    );
    assert_eq!(
        seen["invalid"],
        serde_json::json!({"status": 422, "reason": "Invalid", "field": "metadata.name"})
    );
}

fn kubectl(emulator: &Emulator, args: &[&str]) -> (bool, String, String) {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(emulator.kubeconfig())
        .args(args)
        .output()
        .expect("kubectl is installed");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_creates_gets_describes_and_deletes() {
    let emulator = Emulator::start(config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("job.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: from-kubectl\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n",
    )
    .unwrap();
    let emulator_ref = &emulator;
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(emulator_ref, &args)
    };
    let (ok, out, err) = tokio::task::block_in_place(|| {
        run(vec![
            "create".into(),
            "-f".into(),
            manifest.display().to_string(),
        ])
    });
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "job.batch/from-kubectl created");

    let (ok, out, err) = tokio::task::block_in_place(|| {
        run(vec![
            "get".into(),
            "jobs".into(),
            "-o".into(),
            "json".into(),
        ])
    });
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["items"][0]["metadata"]["name"], "from-kubectl");

    let mut described = String::new();
    for _ in 0..100 {
        let (ok, out, err) = tokio::task::block_in_place(|| {
            run(vec!["describe".into(), "job".into(), "from-kubectl".into()])
        });
        assert!(ok, "{err}");
        described = out;
        if described.contains("Completed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        described.contains("Name:") && described.contains("from-kubectl"),
        "{described}"
    );
    assert!(
        described.contains("SuccessfulCreate"),
        "describe shows the Job's events:\n{described}"
    );

    let (ok, out, err) = tokio::task::block_in_place(|| {
        run(vec!["delete".into(), "job".into(), "from-kubectl".into()])
    });
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "job.batch \"from-kubectl\" deleted");
    let (ok, _, err) = tokio::task::block_in_place(|| {
        run(vec!["get".into(), "job".into(), "from-kubectl".into()])
    });
    assert!(!ok);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn the_standalone_binary_prints_a_kubeconfig_kubectl_can_use() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-emulator"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let kubeconfig = line.trim().to_string();
    let output = Command::new("kubectl")
        .args([
            "--kubeconfig",
            &kubeconfig,
            "get",
            "namespaces",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "namespace/default\nnamespace/kube-system\n"
    );
}

/// The README's first steps for a cluster: kubectl sends these creates as protobuf.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_creates_a_namespace_and_a_secret_as_the_readme_does() {
    let emulator = Emulator::start(config()).await.unwrap();
    let emulator_ref = &emulator;
    let run = |args: &[&str]| tokio::task::block_in_place(|| kubectl(emulator_ref, args));
    let (ok, out, err) = run(&["create", "namespace", "prefect"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "namespace/prefect created");
    let (ok, _, err) = run(&[
        "-n",
        "prefect",
        "create",
        "secret",
        "generic",
        "prefect-api-key",
        "--from-literal=key=pnu_secret",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&[
        "-n",
        "prefect",
        "get",
        "secret",
        "prefect-api-key",
        "-o",
        "jsonpath={.data.key}",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "cG51X3NlY3JldA==", "base64 of pnu_secret");
}
