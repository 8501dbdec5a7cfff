//! The stock plugin builds the Job Prefect's own Kubernetes worker builds.
//!
//! For every case under tests/golden/cases, Prefect's code (tests/oracle/prefect_job.py, run in
//! the project's venv) and `agent render` build the Job from the same pool, deployment and flow
//! run; they must agree field for field except for the documented differences, which are
//! checked, not ignored.

mod common;

use agent::diff::diff;
use agent_tests::{python, tests_path};
use common::{agent, arg};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::process::Command;

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(tests_path("golden/cases"))
        .expect("tests/golden/cases")
        .map(|entry| entry.expect("a dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "the golden cases are missing");
    cases
}

fn oracle(args: &[String]) -> Value {
    let output = Command::new(python())
        .arg(tests_path("oracle/prefect_job.py"))
        .args(args)
        .output()
        .expect("running the Prefect oracle");
    assert!(
        output.status.success(),
        "the oracle failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the oracle prints JSON")
}

/// `agent render` with the same worker settings Prefect's side had.
fn render(case: &PathBuf, meta: &Value) -> Value {
    let input: Value = serde_json::from_str(&std::fs::read_to_string(case).unwrap()).unwrap();
    let settings = &input["agent"];
    agent([
        "render",
        "-o",
        "json",
        "--flow-run",
        &arg(case),
        "--name",
        settings["name"].as_str().unwrap(),
        "--api-url",
        settings["api_url"].as_str().unwrap(),
        "--prefect-version",
        meta["version"].as_str().unwrap(),
        "--default-image",
        meta["default_image"].as_str().unwrap(),
    ])
    .json()
}

/// Checks the documented differences on both sides and removes them, so that what is left
/// must be equal.
fn without_documented_differences(
    case: &str,
    mut prefect: Value,
    mut ours: Value,
) -> (Value, Value) {
    // 1. A deterministic name instead of generateName: ours is Prefect's prefix + suffix.
    let generate_name = prefect["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("generateName")
        .unwrap();
    let name = ours["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("name")
        .unwrap();
    let claim = ours["metadata"]["labels"]["prefect-agent/claim"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        name,
        json!(format!("{}{claim}", generate_name.as_str().unwrap())),
        "{case}: Job name"
    );
    assert!(
        ours["metadata"].get("generateName").is_none(),
        "{case}: generateName left in"
    );

    // 2. No parallelism/completions inside the pod spec (they are not pod fields).
    let pod = prefect["spec"]["template"]["spec"].as_object_mut().unwrap();
    assert_eq!(
        pod.remove("parallelism"),
        Some(json!(1)),
        "{case}: Prefect's pod-spec parallelism"
    );
    assert_eq!(
        pod.remove("completions"),
        Some(json!(1)),
        "{case}: Prefect's pod-spec completions"
    );
    for field in ["parallelism", "completions"] {
        assert!(
            ours["spec"]["template"]["spec"].get(field).is_none(),
            "{case}: {field} in our pod spec"
        );
    }

    // 3. The agent's tracking labels on the Job and its pods.
    for pointer in ["/metadata/labels", "/spec/template/metadata/labels"] {
        let labels: &mut Map<String, Value> =
            ours.pointer_mut(pointer).unwrap().as_object_mut().unwrap();
        for key in agent::job::TRACKING_LABELS {
            assert!(
                labels.remove(key).is_some(),
                "{case}: tracking label {key} missing"
            );
        }
    }
    (prefect, ours)
}

#[test]
fn the_stock_plugin_builds_the_job_prefects_worker_builds() {
    let meta = oracle(&["--meta".to_string()]);
    let cases = cases();
    let expected = oracle(&cases.iter().map(|c| arg(c)).collect::<Vec<_>>());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let (prefect, ours) =
            without_documented_differences(&name, expected[arg(case)].clone(), render(case, &meta));
        let changes = diff(&prefect, &ours);
        if !changes.is_empty() {
            let detail: Vec<String> = changes
                .iter()
                .map(|c| {
                    format!(
                        "  {c}: Prefect {} / agent {}",
                        at(&prefect, &c.path),
                        at(&ours, &c.path)
                    )
                })
                .collect();
            failures.push(format!("{name}:\n{}", detail.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "the stock plugin differs from Prefect's worker:\n{}",
        failures.join("\n")
    );
}

fn at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .map_or_else(|| "(absent)".into(), Value::to_string)
}

/// An independent validator (the PyPI package kubernetes-validate, strict) accepts every Job
/// `agent render` prints, the example chain's included.
#[test]
fn an_independent_validator_accepts_every_rendered_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for case in cases() {
        let run = agent(["render", "--flow-run", &arg(&case)]);
        assert_eq!(run.status, Some(0), "{}: {}", case.display(), run.stderr);
        let file = dir
            .path()
            .join(case.file_name().unwrap())
            .with_extension("yaml");
        std::fs::write(&file, run.stdout).unwrap();
        files.push(arg(&file));
    }
    let output = Command::new(agent_tests::venv_command("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.37.0"])
        .args(&files)
        .output()
        .expect("running kubernetes-validate");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubernetes-validate refused a Job:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        report.matches("INFO").count(),
        files.len(),
        "every file validated:\n{report}"
    );
}
