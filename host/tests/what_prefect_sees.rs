//! A protocol differential test: the same pool, deployments and runs (one whose pod succeeds,
//! one whose image cannot be pulled) handled once by Prefect's own Kubernetes worker
//! (`prefect worker start --type kubernetes` from the test venv) and once by the agent, each
//! against a fresh Prefect server of its own and a cluster of its own. Per run, the state
//! sequence, the labels, the kinds of log lines and every event the server recorded are put
//! in words that do not depend on ids, names or times; the two transcripts must be equal but
//! for the differences the README documents ("What Prefect sees"), which are applied here as
//! the only allowed rewrites.

mod e2e;

use agent_tests::prefect::PrefectServer;
use e2e::{Cluster, cluster_with, stock_template};
use kube_emulator::{Behaviour, Config, Match, PodRule};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const POOL: &str = "differential";
const GOOD_IMAGE: &str = "registry.example.com/etl:1";
const MISSING_IMAGE: &str = "registry.invalid/missing:1";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Side {
    Python,
    Agent,
}

/// One side's world: its server, cluster, and the ids that become words.
struct World {
    prefect: PrefectServer,
    cluster: Cluster,
    good: String,
    broken: String,
    /// id → word (`<run good>`, `<deployment etl>`, …).
    words: BTreeMap<String, String>,
}

async fn world() -> World {
    let prefect = tokio::task::spawn_blocking(PrefectServer::dedicated)
        .await
        .unwrap();
    let cluster = cluster_with(Config {
        pods: vec![PodRule {
            matches: Match {
                image: Some("registry.invalid/*".into()),
                ..Match::default()
            },
            then: Behaviour::ImagePullError,
            log: Vec::new(),
        }],
        ..Config::default()
    })
    .await;
    let pool = prefect.create_pool(POOL, stock_template());
    let etl = prefect.create_deployment(POOL, "etl", "etl", json!({"image": GOOD_IMAGE}));
    let missing =
        prefect.create_deployment(POOL, "etl", "missing", json!({"image": MISSING_IMAGE}));
    let good = prefect.create_run(&etl, json!({}));
    let broken = prefect.create_run(&missing, json!({}));
    let flow = prefect.flow_run(&good)["flow_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut words = BTreeMap::new();
    words.insert(
        pool["id"].as_str().unwrap().to_string(),
        "<pool>".to_string(),
    );
    words.insert(etl, "<deployment etl>".into());
    words.insert(missing, "<deployment missing>".into());
    words.insert(flow, "<flow>".into());
    words.insert(good.clone(), "<run good>".into());
    words.insert(broken.clone(), "<run broken>".into());
    for run in [&good, &broken] {
        let name = prefect.flow_run(run)["name"].as_str().unwrap().to_string();
        let word = words[run.as_str()].replace("<run", "<run name");
        words.insert(name, word);
    }
    World {
        prefect,
        cluster,
        good,
        broken,
        words,
    }
}

/// The worker of `side`, started on its world.
fn start(side: Side, world: &World, dir: &std::path::Path) -> tokio::process::Child {
    let mut command = match side {
        Side::Python => {
            let mut command = tokio::process::Command::new(agent_tests::venv_command("prefect"));
            command
                .args(["worker", "start", "--type", "kubernetes", "--pool", POOL])
                .args(["--name", "differential-worker"])
                .env("PREFECT_HOME", dir);
            command
        }
        Side::Agent => {
            let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"));
            command
                .args(["start", "--pool", POOL, "--name", "differential-worker"])
                .args(["--namespace", &world.cluster.namespace])
                .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache());
            command
        }
    };
    command
        .env("PREFECT_API_URL", &world.prefect.api_url)
        .env("KUBECONFIG", &world.cluster.kubeconfig)
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn events(prefect: &PrefectServer, since: &str) -> Vec<Value> {
    let mut page = prefect.call(
        "POST",
        "/events/filter",
        Some(json!({"filter": {"occurred": {"since": since}, "order": "ASC"}, "limit": 50})),
    );
    let mut all: Vec<Value> = page["events"].as_array().cloned().unwrap_or_default();
    while let Some(next) = page["next_page"].as_str().map(str::to_string) {
        let path = next.split("/api").nth(1).unwrap_or_default().to_string();
        page = prefect.call("GET", &path, None);
        all.extend(page["events"].as_array().cloned().unwrap_or_default());
    }
    all
}

/// Replaces ids and names by their words in every string of `value`.
fn in_words(value: &Value, words: &BTreeMap<String, String>) -> Value {
    match value {
        Value::String(text) => {
            // Longest first: a Job's name holds its run's.
            let mut by_length: Vec<(&String, &String)> = words.iter().collect();
            by_length.sort_by_key(|(id, _)| std::cmp::Reverse(id.len()));
            let mut text = text.clone();
            for (id, word) in by_length {
                text = text.replace(id.as_str(), word);
            }
            Value::String(text)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| in_words(v, words)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), in_words(v, words)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What one side told its server.
async fn transcript(side: Side) -> Value {
    let mut world = world().await;
    let dir = tempfile::tempdir().unwrap();
    let since = chrono::Utc::now().to_rfc3339();
    let mut worker = start(side, &world, dir.path());
    // Both runs submitted, the good pod done, the broken one diagnosed.
    let started = Instant::now();
    loop {
        let pids: Vec<Option<String>> = [&world.good, &world.broken]
            .iter()
            .map(|r| {
                world.prefect.flow_run(r)["infrastructure_pid"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        let names: BTreeSet<String> = events(&world.prefect, &since)
            .iter()
            .filter_map(|e| e["event"].as_str().map(str::to_string))
            .collect();
        if pids.iter().all(Option::is_some)
            && names.contains("prefect.kubernetes.pod.succeeded")
            && events(&world.prefect, &since)
                .iter()
                .any(|e| e["resource"]["kubernetes.diagnosis"] == "ImagePullError")
        {
            for (pid, run) in pids.iter().zip(["good", "broken"]) {
                let job = pid
                    .as_deref()
                    .unwrap()
                    .split(':')
                    .nth(1)
                    .unwrap()
                    .to_string();
                world.words.insert(job, format!("<job {run}>"));
            }
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{side:?}: the runs were not submitted and observed in 90 s: {pids:?} {names:?}\n{}",
            std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pid = worker.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await;
    // The server records events a few seconds after it takes them.
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(30)
        && !events(&world.prefect, &since)
            .iter()
            .any(|e| e["event"] == "prefect.worker.stopped")
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut runs = serde_json::Map::new();
    for (word, run) in [("good", &world.good), ("broken", &world.broken)] {
        let states =
            world
                .prefect
                .call("GET", &format!("/flow_run_states/?flow_run_id={run}"), None);
        let sequence: Vec<String> = states
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s["type"].as_str().unwrap(),
                    s["name"].as_str().unwrap()
                )
            })
            .collect();
        let logs = world.prefect.logs(run);
        runs.insert(
            word.into(),
            json!({
                "states": sequence,
                "labels": world.prefect.flow_run(run)["labels"],
                "logs": logs,
            }),
        );
    }
    let recorded = events(&world.prefect, &since);
    let workers = world.prefect.call(
        "POST",
        &format!("/work_pools/{POOL}/workers/filter"),
        Some(json!({})),
    );
    in_words(
        &json!({"runs": runs, "events": recorded, "workers": workers}),
        &world.words,
    )
}

/// The kind of a log line: what it tells, not how.
fn kind(side: Side, line: &str) -> &'static str {
    let is = |prefix: &str| line.starts_with(prefix);
    match side {
        // Prefect's worker: four lines where the agent writes one.
        Side::Python if is("Worker '") && line.contains("submitting flow run") => "submitted",
        Side::Python if is("Creating Kubernetes job") => "submitted",
        Side::Python if is("Kubernetes job '") && line.contains("created in namespace") => {
            "submitted"
        }
        Side::Python if line.contains("submitted to infrastructure") => "submitted",
        Side::Python if is("Image pull failed") => "diagnosis: image pull",
        Side::Agent if is("Submitted flow run to Kubernetes as Job") => "submitted",
        Side::Agent if is("Kubernetes event on ") => "kubernetes event",
        Side::Agent if line.contains("cannot be pulled") => "diagnosis: image pull",
        _ => "other",
    }
}

/// Strings made comparable: a pod's random suffix and ids nobody named become words.
fn comparable(text: &str) -> String {
    let pod = regex::Regex::new(r"(<job \w+>)-[a-z0-9]{5}\b").unwrap();
    let uuid =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    uuid.replace_all(&pod.replace_all(text, "$1-<pod>"), "<id>")
        .into_owned()
}

/// A transcript with the documented differences (README, "What Prefect sees") rewritten
/// away; anything else that differs fails the test.
fn documented(side: Side, transcript: &Value) -> Value {
    let mut runs = serde_json::Map::new();
    for (word, run) in transcript["runs"].as_object().unwrap() {
        let states: Vec<&str> = run["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            // Prefect's worker writes two more PENDING states per run.
            .filter(|s| !matches!(*s, "PENDING Submitting" | "PENDING InfrastructurePending"))
            .collect();
        let kinds: BTreeSet<&str> = run["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| kind(side, line.as_str().unwrap()))
            // The agent also forwards the Kubernetes Events of the Job and its pods.
            .filter(|kind| *kind != "kubernetes event")
            .collect();
        runs.insert(
            word.clone(),
            json!({"states": states, "labels": run["labels"], "log kinds": kinds}),
        );
    }
    let mut events: Vec<String> = transcript["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            !matches!(
                e["event"].as_str().unwrap(),
                "prefect.flow-run.Submitting" | "prefect.flow-run.InfrastructurePending"
            )
        })
        .map(|event| {
            let mut resource = event["resource"].clone();
            let object = resource.as_object_mut().unwrap();
            object.remove("prefect.state-timestamp");
            // The agent's claim names itself and a token in the PENDING state's message.
            if object.contains_key("prefect.state-message") {
                object.insert("prefect.state-message".into(), json!("<message>"));
            }
            let mut related = event["related"].clone();
            // Prefect's worker gives its Prefect version, the agent its own.
            for resource in std::iter::once(&mut resource).chain(related.as_array_mut().unwrap()) {
                if let Some(version) = resource.get_mut("prefect.version") {
                    *version = json!("<version>");
                }
            }
            let occurred = event["occurred"].as_str().unwrap();
            let from_the_pod = !occurred.contains('.');
            comparable(
                &json!({
                    "event": event["event"],
                    "resource": resource,
                    "related": related,
                    "follows": !event["follows"].is_null(),
                    "occurred at a whole second (the pod's own time)": from_the_pod,
                })
                .to_string(),
            )
        })
        .collect();
    events.sort();
    let workers: Vec<Value> = transcript["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| json!({"name": w["name"], "status": w["status"]}))
        .collect();
    json!({"runs": runs, "events": events, "workers": workers})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_tells_prefect_what_prefects_own_worker_tells_it() {
    if std::env::var_os("AGENT_E2E_KUBECONFIG").is_some() {
        eprintln!("skipped: the pods' behaviour is scripted on the emulator");
        return;
    }
    let (python, agent) = tokio::join!(transcript(Side::Python), transcript(Side::Agent));
    let (python, agent) = (
        documented(Side::Python, &python),
        documented(Side::Agent, &agent),
    );
    let expected = serde_json::to_string_pretty(&python).unwrap();
    let actual = serde_json::to_string_pretty(&agent).unwrap();
    if expected != actual {
        let diff: Vec<String> = diff_lines(&expected, &actual);
        panic!(
            "the agent told Prefect something else than Prefect's worker did (- Prefect's worker, + the agent):\n{}",
            diff.join("\n")
        );
    }
    // What must be there, not only equal.
    for event in [
        "prefect.worker.started",
        "prefect.worker.submitted-flow-run",
        "prefect.worker.executed-flow-run",
        "prefect.worker.stopped",
        "prefect.kubernetes.pod.succeeded",
    ] {
        assert!(actual.contains(event), "{event} missing:\n{actual}");
    }
    assert!(
        actual.contains("\"prefect.worker.type\": \"kubernetes\""),
        "{actual}"
    );
    assert!(actual.contains("ImagePullError"), "{actual}");
}

/// The lines only one side has.
fn diff_lines(expected: &str, actual: &str) -> Vec<String> {
    let expected_lines: Vec<&str> = expected.lines().collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    let mut out: Vec<String> = expected_lines
        .iter()
        .filter(|l| !actual_lines.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        actual_lines
            .iter()
            .filter(|l| !expected_lines.contains(l))
            .map(|l| format!("+ {l}")),
    );
    out
}
