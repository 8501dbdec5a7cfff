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
use serde_json::{Value, json};
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
/// must be equal; `Err` says which documented difference did not hold.
fn without_documented_differences(
    mut prefect: Value,
    mut ours: Value,
) -> Result<(Value, Value), String> {
    // 1. A deterministic name instead of generateName: Prefect's prefix (cut to leave room
    //    for the suffix, as the API server cuts it) + the claim's suffix.
    let generate_name = prefect["metadata"]
        .as_object_mut()
        .and_then(|m| m.remove("generateName"))
        .ok_or("Prefect's Job has no generateName")?;
    let name = ours["metadata"]
        .as_object_mut()
        .and_then(|m| m.remove("name"))
        .ok_or("our Job has no name")?;
    let claim = ours["metadata"]["labels"]["prefect-agent/claim"]
        .as_str()
        .ok_or("no claim label")?
        .to_string();
    let prefix: String = generate_name
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(63 - claim.len())
        .collect();
    if name != json!(format!("{prefix}{claim}")) {
        return Err(format!(
            "Job name {name} is not Prefect's generateName {generate_name} + claim {claim}"
        ));
    }
    if ours["metadata"].get("generateName").is_some() {
        return Err("generateName left in".into());
    }

    // 2. No parallelism/completions inside the pod spec (they are not pod fields).
    let pod = prefect["spec"]["template"]["spec"]
        .as_object_mut()
        .ok_or("Prefect's Job has no pod spec")?;
    for field in ["parallelism", "completions"] {
        pod.remove(field);
        if ours["spec"]["template"]["spec"].get(field).is_some() {
            return Err(format!("{field} in our pod spec"));
        }
    }

    // 3. The agent's tracking labels on the Job and its pods.
    for pointer in ["/metadata/labels", "/spec/template/metadata/labels"] {
        let labels = ours
            .pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("no {pointer}"))?;
        for key in agent::job::TRACKING_LABELS {
            labels
                .remove(key)
                .ok_or_else(|| format!("tracking label {key} missing"))?;
        }
    }

    // 4. Fields Prefect sets to null are left out.
    drop_nulls(&mut prefect);

    // 5. An empty namespace is the agent's (`default`); Prefect's worker keeps "".
    if prefect["metadata"]["namespace"] == "" {
        if ours["metadata"]["namespace"] != "default" {
            return Err("an empty namespace is not `default`".into());
        }
        ours["metadata"]["namespace"] = json!("");
    }
    Ok((prefect, ours))
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The field-by-field differences that are left, in words.
fn differences(prefect: &Value, ours: &Value) -> Vec<String> {
    diff(prefect, ours)
        .iter()
        .map(|c| {
            format!(
                "  {c}: Prefect {} / agent {}",
                at(prefect, &c.path),
                at(ours, &c.path)
            )
        })
        .collect()
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
            without_documented_differences(expected[arg(case)].clone(), render(case, &meta))
                .unwrap_or_else(|why| panic!("{name}: {why}"));
        let detail = differences(&prefect, &ours);
        if !detail.is_empty() {
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

/// Cases of the differential test from the fixed seed (reproducible) and from a fresh one (new
/// cases every run; `AGENT_DIFFERENTIAL_SEED` replays one).
const FIXED_SEED: u64 = 20_261_202;
const FIXED_CASES: usize = 150;
const FRESH_CASES: usize = 400;

/// The differential test: a seeded generator (tests/oracle/differential.py) makes random flow
/// runs, pools and deployments; Prefect's own code and the agent (in process, the chain built
/// once, as `agent render` builds it) each make the Job; only documented differences pass, a
/// case Prefect refuses must be refused by the agent too, and every Job passes
/// kubernetes-validate --strict.
#[test]
fn random_flow_runs_get_the_job_prefects_worker_builds() {
    let fresh: u64 = std::env::var("AGENT_DIFFERENTIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_000
        });
    let meta = oracle(&["--meta".to_string()]);
    for (ours, prefects) in [
        (
            agent::request::FLOW_RUN_DEFAULTS,
            &meta["flow_run_defaults"],
        ),
        (agent::request::FLOW_DEFAULTS, &meta["flow_defaults"]),
    ] {
        let ours: Value = serde_json::from_str(ours).unwrap();
        assert_eq!(
            &ours, prefects,
            "the fields a templated name sees are Prefect's"
        );
    }
    let renderer = renderer(&meta);
    let jobs_dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut rendered = 0;
    for (seed, count) in [(FIXED_SEED, FIXED_CASES), (fresh, FRESH_CASES)] {
        let output = Command::new(python())
            .arg(tests_path("oracle/differential.py"))
            .args([seed.to_string(), count.to_string()])
            .output()
            .expect("running the generator");
        assert!(
            output.status.success(),
            "seed {seed}: the generator failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let generated: Value = serde_json::from_slice(&output.stdout).unwrap();
        for (index, item) in generated["cases"].as_array().unwrap().iter().enumerate() {
            let case = &item["case"];
            if env_not_an_object_over_an_object(case) {
                continue;
            }
            let ours = render_in_process(&renderer, case);
            let problem = match (item.get("prefect"), ours) {
                (Some(prefect), Ok(job)) => {
                    std::fs::write(
                        jobs_dir.path().join(format!("{seed}-{index}.json")),
                        job.to_string(),
                    )
                    .unwrap();
                    rendered += 1;
                    compare(case, prefect.clone(), job)
                }
                (None, Err(_)) => None,
                // A Job the API server would refuse (a container with no image, an env value
                // that is a number) is refused before it is sent.
                (Some(prefect), Err(_)) if refused_by_the_api_server(prefect) => None,
                (Some(_), Err(e)) => Some(format!("the agent refused it: {e:#}")),
                (None, Ok(_)) => Some(format!(
                    "Prefect refused it ({}), the agent made a Job",
                    item["error"]
                )),
            };
            if let Some(problem) = problem {
                failures.push(format!(
                    "seed {seed} case {index}: {problem}\n  case: {case}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Prefect's worker (replay the fresh seed with AGENT_DIFFERENTIAL_SEED={fresh}):\n{}",
        failures.len(),
        FIXED_CASES + FRESH_CASES,
        failures
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        rendered > (FIXED_CASES + FRESH_CASES) / 2,
        "most cases make a Job"
    );
    validate_strictly(jobs_dir.path());
}

/// Documented difference 9: a run's `env` that is a non-empty list or null over a
/// deployment's `env` object, which Prefect's worker passes to `dict.update` (each
/// `{name, value}` item becomes a variable called `name`; null fails the run). The agent keeps
/// the deployment's object; there is no Prefect Job to compare with.
fn env_not_an_object_over_an_object(case: &Value) -> bool {
    let env = |holder: &str| case[holder]["job_variables"].get("env");
    env("deployment").is_some_and(Value::is_object)
        && env("flow_run").is_some_and(|env| {
            !env.is_object() && env.as_array().is_none_or(|items| !items.is_empty())
        })
}

/// Whether the API server would refuse Prefect's Job (strict schema and its own rules), apart
/// from what the agent changes on purpose (no pod-spec parallelism, nulls left out).
fn refused_by_the_api_server(job: &Value) -> bool {
    let mut job = job.clone();
    drop_nulls(&mut job);
    if let Some(pod) = job["spec"]["template"]["spec"].as_object_mut() {
        pod.remove("parallelism");
        pod.remove("completions");
    }
    // The name the API server would make of the generateName.
    if let Some(prefix) = job["metadata"]["generateName"].as_str() {
        let prefix: String = prefix.chars().take(58).collect();
        job["metadata"]["name"] = json!(format!("{prefix}abcde"));
    }
    !agent::job::problems(&job).is_empty()
}

/// `None` when the Jobs agree but for documented differences.
fn compare(case: &Value, prefect: Value, ours: Value) -> Option<String> {
    // A `job_manifest` job variable that is a Job replaces the pool's manifest in the agent
    // (documented; Prefect ignores it): the oracle renders such a case with the manifest
    // replaced (`prefect_job.job_manifest(…, manifest_variable=True)`), so the whole Job is
    // compared; here only that the variable's manifest was used is checked on top.
    let variable = |holder: &str| case[holder]["job_variables"].get("job_manifest");
    let manifest_variable = variable("flow_run")
        .or_else(|| variable("deployment"))
        .is_some_and(|manifest| manifest["kind"] == "Job");
    if manifest_variable && ours["metadata"]["labels"]["x"] != "y" {
        return Some("the `job_manifest` job variable was not used".to_string());
    }
    match without_documented_differences(prefect, ours) {
        Err(why) => Some(why),
        Ok((prefect, ours)) => {
            let detail = differences(&prefect, &ours);
            (!detail.is_empty()).then(|| detail.join("\n"))
        }
    }
}

fn renderer(meta: &Value) -> agent::render::Renderer {
    use clap::Parser;
    let cli = agent::cli::Cli::parse_from([
        "agent",
        "render",
        "--flow-run",
        "unused.json",
        "--name",
        "differential agent",
        "--api-url",
        "http://prefect:4200/api",
        "--prefect-version",
        meta["version"].as_str().unwrap(),
        "--default-image",
        meta["default_image"].as_str().unwrap(),
    ]);
    let agent::cli::Command::Render(args) = cli.command else {
        unreachable!("parsed a render command")
    };
    agent::render::Renderer::new(&agent::settings::RenderSettings::from_args(args)).unwrap()
}

fn render_in_process(renderer: &agent::render::Renderer, case: &Value) -> anyhow::Result<Value> {
    let run: agent::prefect::models::RunContext = serde_json::from_value(case.clone())?;
    let pool = run.work_pool.as_ref().map(|p| &p.base_job_template);
    let template = agent::assemble::base_job_template(pool, None)?;
    Ok(renderer.render(&run, &template)?.0)
}

fn validate_strictly(dir: &std::path::Path) {
    let files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| arg(&e.unwrap().path()))
        .collect();
    let output = Command::new(agent_tests::venv_command("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.37.0"])
        .args(&files)
        .output()
        .expect("running kubernetes-validate");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubernetes-validate refused a Job:\n{}",
        report
            .lines()
            .filter(|l| !l.starts_with("INFO"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
