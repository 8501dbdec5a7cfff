//! Dispatching (`agent start`: poll → claim → build → submit → report) end to end: a real
//! Prefect 3 server (one per test binary), Kubernetes from the
//! emulator — or a real cluster when `AGENT_E2E_KUBECONFIG` names a kubeconfig (then Jobs go to
//! `AGENT_E2E_NAMESPACE`, default `default`) — and the real `agent` binary. Every test has its
//! own pool and agent name, and finds its Jobs by the agent's tracking label.

mod e2e;

use agent_tests::plugin;
use agent_tests::prefect::{Database, PrefectServer, server};
use e2e::{Cluster, cluster, env_of, stock_template};
use kube_emulator::{Fault, FaultRule};
use serde_json::json;
use std::process::Output;

/// Runs `agent start` to completion with `args` (it must stop by itself: --run-once or
/// --max-polls).
async fn agent_start(cluster: &Cluster, prefect: &PrefectServer, args: &[&str]) -> Output {
    agent_start_with_env(cluster, prefect, args, &[]).await
}

async fn agent_start_with_env(
    cluster: &Cluster,
    prefect: &PrefectServer,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("start")
        .args(["--namespace", &cluster.namespace])
        .args(args)
        .envs(env.iter().copied())
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PREFECT_API_URL", &prefect.api_url)
        .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache())
        .env("AGENT_LOG", "info")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "agent start failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_become_jobs_once_with_what_pool_deployment_run_and_plugins_decided() {
    let prefect = server();
    let cluster = cluster().await;
    let mut template = stock_template();
    template["variables"]["properties"]["env"]["default"] = json!({"POOL_LEVEL": "pool"});
    prefect.create_pool("e2e-basic", template);
    let deployment = prefect.create_deployment(
        "e2e-basic",
        "etl",
        "e2e-basic",
        json!({"image": "registry.example.com/etl:1", "env": {"DEPLOYMENT_LEVEL": "deployment"}}),
    );
    let runs: Vec<String> = (0..3)
        .map(|_| {
            prefect.create_run(
                &deployment,
                json!({"env": {"RUN_LEVEL": "run"}, "cpu_request": "250m"}),
            )
        })
        .collect();

    let naming = format!("naming={}", plugin("naming").display());
    let volumes = format!("volumes={}", plugin("volumes").display());
    let output = agent_start(
        &cluster,
        prefect,
        &[
            "--pool",
            "e2e-basic",
            "--name",
            "agent-basic",
            "--run-once",
            "--plugin",
            &naming,
            "-c",
            "naming.prefix=etl",
            "--plugin",
            &volumes,
            "-c",
            r#"volumes.volumes=[{"name": "scratch", "emptyDir": {}}]"#,
            "-c",
            r#"volumes.mounts=[{"name": "scratch", "mountPath": "/scratch"}]"#,
        ],
    )
    .await;
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("Starting agent \"agent-basic\" with pool \"e2e-basic\", queues all, plugins default → naming → volumes"), "{log}");

    let jobs = cluster.jobs_of("agent-basic").await;
    assert_eq!(jobs.len(), 3, "one Job per run");
    for run in &runs {
        let state = prefect.flow_run(run);
        assert_eq!(state["state_type"], "PENDING");
        let pid = state["infrastructure_pid"]
            .as_str()
            .expect("infrastructure_pid is set")
            .to_string();
        let job = jobs
            .iter()
            .find(|j| {
                format!(
                    "{}:{}",
                    cluster.namespace,
                    j.metadata.name.as_deref().unwrap()
                ) == pid
            })
            .expect("the recorded Job exists");
        assert!(
            job.metadata.name.as_ref().unwrap().starts_with("etl-"),
            "the naming plugin decided the name"
        );
        assert_eq!(
            job.metadata.labels.as_ref().unwrap()["prefect-agent/flow-run-id"],
            *run
        );
        let env = env_of(job);
        for (name, value) in [
            ("POOL_LEVEL", "pool"),
            ("DEPLOYMENT_LEVEL", "deployment"),
            ("RUN_LEVEL", "run"),
            ("PREFECT__FLOW_RUN_ID", run.as_str()),
        ] {
            assert!(
                env.contains(&(name.to_string(), value.to_string())),
                "{name}={value} missing from {env:?}"
            );
        }
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("registry.example.com/etl:1")
        );
        let requests = pod.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert_eq!(requests["cpu"].0, "250m");
        assert_eq!(pod.volumes.as_ref().unwrap()[0].name, "scratch");
        let logs = prefect.logs(run);
        assert!(
            logs.iter().any(|l| l
                == &format!(
                    "Submitted flow run to Kubernetes as Job {}",
                    pid.replace(':', "/")
                )),
            "{logs:?}"
        );
    }

    // Nothing is taken twice: the runs are PENDING now.
    agent_start(
        &cluster,
        prefect,
        &["--pool", "e2e-basic", "--name", "agent-basic", "--run-once"],
    )
    .await;
    assert_eq!(cluster.jobs_of("agent-basic").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_sleeps_crashes_only_its_runs_at_the_deadline_and_the_others_go_on() {
    let prefect = server();
    let cluster = cluster().await;
    prefect.create_pool("e2e-sleep", json!({}));
    let deployment =
        prefect.create_deployment("e2e-sleep", "etl", "e2e-sleep", json!({"image": "busybox"}));
    let sleeping: Vec<String> = (0..3)
        .map(|_| prefect.create_run(&deployment, json!({"fault": "sleep", "seconds": 3600})))
        .collect();
    let normal: Vec<String> = (0..3)
        .map(|_| prefect.create_run(&deployment, json!({})))
        .collect();
    let faulty = format!("faulty={}", plugin("faulty").display());
    let started = std::time::Instant::now();
    agent_start(
        &cluster,
        prefect,
        &[
            "--pool",
            "e2e-sleep",
            "--name",
            "agent-sleep",
            "--run-once",
            "--submission-limit",
            "2",
            "--plugin-timeout",
            "1s",
            "--plugin",
            &faulty,
        ],
    )
    .await;
    // Three one-second deadlines on two slots, not an hour.
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    for run in &sleeping {
        let state = prefect.flow_run(run);
        assert_eq!(state["state_type"], "CRASHED", "{state}");
        let message = state["state"]["message"].as_str().unwrap();
        assert!(
            message.contains("plugin faulty timed out: did not return within 1s"),
            "{message}"
        );
    }
    for run in &normal {
        let state = prefect.flow_run(run);
        assert_eq!(state["state_type"], "PENDING", "{state}");
        assert!(state["infrastructure_pid"].is_string(), "{state}");
    }
    assert_eq!(cluster.jobs_of("agent-sleep").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_rejection_fails_the_run_with_the_reason() {
    let prefect = server();
    let cluster = cluster().await;
    prefect.create_pool("e2e-policy", json!({}));
    let deployment = prefect.create_deployment(
        "e2e-policy",
        "etl",
        "e2e-policy",
        json!({"image": "docker.io/library/python:3.12"}),
    );
    let run = prefect.create_run(&deployment, json!({}));
    let policy = format!("policy={}", plugin("policy").display());
    agent_start(
        &cluster,
        prefect,
        &[
            "--pool",
            "e2e-policy",
            "--name",
            "agent-policy",
            "--run-once",
            "--plugin",
            &policy,
            "-c",
            "policy.allowed-registries=ghcr.io/acme",
        ],
    )
    .await;

    let state = prefect.flow_run(&run);
    assert_eq!(state["state_type"], "FAILED");
    let expected = "Rejected by plugin policy: container prefect-job: image \"docker.io/library/python:3.12\" is not from an allowed registry (ghcr.io/acme)";
    assert_eq!(state["state"]["message"], expected);
    assert!(prefect.logs(&run).iter().any(|l| l == expected));
    assert!(cluster.jobs_of("agent-policy").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_refusal_crashes_the_run_with_the_field_path() {
    let prefect = server();
    let cluster = cluster().await;
    prefect.create_pool("e2e-invalid", json!({}));
    // A string the schema accepts and the API server does not: not a quantity.
    let deployment = prefect.create_deployment(
        "e2e-invalid",
        "etl",
        "e2e-invalid",
        json!({"cpu_request": "lots"}),
    );
    let run = prefect.create_run(&deployment, json!({}));
    agent_start(
        &cluster,
        prefect,
        &[
            "--pool",
            "e2e-invalid",
            "--name",
            "agent-invalid",
            "--run-once",
        ],
    )
    .await;

    let state = prefect.flow_run(&run);
    assert_eq!(state["state_type"], "CRASHED");
    let message = state["state"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Submitting the Job failed: Kubernetes refused the Job"),
        "{message}"
    );
    assert!(
        message.contains("spec.template.spec.containers[0].resources.requests[cpu]"),
        "the field path is named: {message}"
    );
    assert!(message.contains("(Invalid, 422)"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_agents_racing_create_each_job_exactly_once() {
    let runs_wanted: usize = std::env::var("AGENT_E2E_RACE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(120);
    race(server(), "racer", runs_wanted, 2).await;
}

/// The race again on Prefect on PostgreSQL (as production runs it): a database that takes
/// concurrent writers, where the claims really overlap.
#[tokio::test(flavor = "multi_thread")]
async fn three_agents_racing_on_postgresql_create_each_job_exactly_once() {
    if std::fs::read_dir("/usr/lib/postgresql").is_err() {
        eprintln!("skipped: PostgreSQL is not installed (tests/setup-postgres.sh installs it)");
        return;
    }
    let prefect = tokio::task::spawn_blocking(|| PrefectServer::on(Database::Postgres))
        .await
        .unwrap();
    race(&prefect, "pg-racer", 200, 8).await;
}

/// Three agents named `name` on one pool of `runs_wanted` runs (created by `creators` threads:
/// SQLite takes few writers at once): one Job per run.
async fn race(prefect: &PrefectServer, name: &str, runs_wanted: usize, creators: usize) {
    let cluster = cluster().await;
    let pool = format!("e2e-{name}");
    prefect.create_pool(&pool, json!({}));
    let deployment = prefect.create_deployment(&pool, "etl", name, json!({}));
    let runs = prefect.create_runs(&deployment, runs_wanted, creators);

    let args = [
        "--pool",
        &pool,
        "--name",
        name,
        "--max-polls",
        "40",
        "--poll-interval",
        "100ms",
        "--submission-limit",
        "16",
    ];
    let (a, b, c) = tokio::join!(
        agent_start(&cluster, prefect, &args),
        agent_start(&cluster, prefect, &args),
        agent_start(&cluster, prefect, &args)
    );
    let submitted: Vec<usize> = [a, b, c]
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .matches(" submitted flow_run=")
                .count()
        })
        .collect();

    let jobs = cluster.jobs_of(name).await;
    assert_eq!(
        jobs.len(),
        runs_wanted,
        "exactly one Job per run (per agent: {submitted:?})"
    );
    let mut claimed: Vec<String> = jobs
        .iter()
        .map(|j| j.metadata.labels.as_ref().unwrap()["prefect-agent/flow-run-id"].clone())
        .collect();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), runs_wanted, "no run has two Jobs");
    for run in &runs {
        assert!(
            prefect.flow_run(run)["infrastructure_pid"].is_string(),
            "run {run} has its Job recorded"
        );
    }
    assert!(
        submitted.iter().filter(|n| **n > 0).count() >= 2,
        "the work was shared: {submitted:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_prints_the_job_and_gives_the_run_back() {
    let prefect = server();
    let cluster = cluster().await;
    prefect.create_pool("e2e-dry", json!({}));
    let deployment =
        prefect.create_deployment("e2e-dry", "etl", "dry", json!({"image": "busybox"}));
    let run = prefect.create_run(&deployment, json!({}));
    let output = agent_start(
        &cluster,
        prefect,
        &[
            "--pool",
            "e2e-dry",
            "--name",
            "agent-dry",
            "--run-once",
            "--dry-run",
        ],
    )
    .await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(&format!("# flow run {run}")) && printed.contains("image: busybox"),
        "{printed}"
    );
    assert!(cluster.jobs_of("agent-dry").await.is_empty());
    assert_eq!(
        prefect.flow_run(&run)["state_type"],
        "SCHEDULED",
        "the claim was released"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_pool_is_refused_unless_asked_to_create_it() {
    let prefect = server();
    let cluster = cluster().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["start", "--pool", "e2e-missing", "--run-once"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PREFECT_API_URL", &prefect.api_url)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: work pool \"e2e-missing\" does not exist at {}; create it (or pass --create-pool)",
            prefect.api_url
        )
    );

    agent_start(
        &cluster,
        prefect,
        &["--pool", "e2e-missing", "--run-once", "--create-pool"],
    )
    .await;
    let pool = prefect.call("GET", "/work_pools/e2e-missing", None);
    assert_eq!(pool["type"], "kubernetes");
    assert!(
        pool["base_job_template"]["job_configuration"]["job_manifest"].is_object(),
        "created with the stock template"
    );

    let unreachable = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["start", "--pool", "x", "--run-once"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PREFECT_API_URL", "http://127.0.0.1:9/api")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.starts_with(
            "error: cannot reach the Prefect API at http://127.0.0.1:9/api/admin/version"
        ),
        "{stderr}"
    );
}

/// Starts `agent start` in the background (it runs until signalled).
/// An agent process whose stderr is read as it comes (a full pipe would stall the agent).
struct RunningAgent {
    child: tokio::process::Child,
    stderr: tokio::task::JoinHandle<String>,
}

fn spawn_agent(cluster: &Cluster, api_url: &str, args: &[&str]) -> RunningAgent {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("start")
        .args(["--namespace", &cluster.namespace])
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PREFECT_API_URL", api_url)
        .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache())
        .env("AGENT_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text)
            .await
            .unwrap();
        text
    });
    RunningAgent { child, stderr }
}

async fn terminate(mut agent: RunningAgent) -> String {
    let pid = agent.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let output = tokio::time::timeout(std::time::Duration::from_secs(90), async {
        let status = agent.child.wait().await.unwrap();
        (status, agent.stderr.await.unwrap())
    })
    .await
    .expect("the agent stops within its grace period");
    assert!(
        output.0.success(),
        "the agent exits 0 on SIGTERM:\n{}",
        output.1
    );
    output.1
}

/// Slows every Kubernetes request, so that a burst of submissions is still under way when the
/// test acts (only on the emulator; a real cluster is slow enough by itself).
fn slow_down(cluster: &Cluster, ms: u64) {
    if let Some(emulator) = &cluster.emulator {
        emulator.inject(FaultRule::always(Fault::Latency { ms }));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_burst_leaves_no_run_claimed_without_a_job_or_a_report() {
    let prefect = server();
    let cluster = cluster().await;
    prefect.create_pool("e2e-sigterm", json!({}));
    let deployment = prefect.create_deployment("e2e-sigterm", "etl", "burst", json!({}));
    let runs: Vec<String> = (0..60)
        .map(|_| prefect.create_run(&deployment, json!({})))
        .collect();
    slow_down(&cluster, 150);
    let agent = spawn_agent(
        &cluster,
        &prefect.api_url,
        &[
            "--pool",
            "e2e-sigterm",
            "--name",
            "agent-sigterm",
            "--poll-interval",
            "100ms",
            "--submission-limit",
            "4",
        ],
    );
    // The signal comes as soon as the first Job exists (a fixed sleep is too short for a
    // loaded machine, where the agent's start-up alone can take seconds).
    let first_job = std::time::Instant::now();
    while cluster.jobs_of("agent-sigterm").await.is_empty()
        && first_job.elapsed() < std::time::Duration::from_secs(120)
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = terminate(agent).await;
    assert!(log.contains("shutting down: no more polls"), "{log}");

    let jobs = cluster.jobs_of("agent-sigterm").await;
    let (mut untouched, mut submitted) = (0, 0);
    for run in &runs {
        let state = prefect.flow_run(run);
        match (
            state["state_type"].as_str().unwrap(),
            state["infrastructure_pid"].as_str(),
        ) {
            ("SCHEDULED", _) => untouched += 1,
            ("PENDING", Some(pid)) => {
                submitted += 1;
                assert!(
                    jobs.iter()
                        .any(|j| pid.ends_with(j.metadata.name.as_deref().unwrap())),
                    "run {run}: its Job {pid} exists"
                );
            }
            ("CRASHED", _) => {}
            (other, pid) => panic!(
                "run {run} is {other} with infrastructure_pid {pid:?}: claimed and left without a Job or a report"
            ),
        }
    }
    assert_eq!(
        jobs.len(),
        submitted,
        "every Job belongs to a submitted run"
    );
    assert!(submitted > 0, "some runs were submitted before the signal");
    if cluster.emulator.is_some() {
        assert!(
            untouched > 0,
            "the signal came during the burst (all {} runs were done already)",
            runs.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefect_restart_mid_stream_loses_nothing() {
    let prefect = tokio::task::spawn_blocking(PrefectServer::dedicated)
        .await
        .unwrap();
    let cluster = cluster().await;
    prefect.create_pool("e2e-restart", json!({}));
    let deployment = prefect.create_deployment("e2e-restart", "etl", "restart", json!({}));
    let runs: Vec<String> = (0..40)
        .map(|_| prefect.create_run(&deployment, json!({})))
        .collect();
    slow_down(&cluster, 300);
    let agent = spawn_agent(
        &cluster,
        &prefect.api_url,
        &[
            "--pool",
            "e2e-restart",
            "--name",
            "agent-restart",
            "--poll-interval",
            "200ms",
            "--submission-limit",
            "2",
        ],
    );
    // The restart comes once the agent has taken a run (a fixed sleep is too short for a
    // loaded machine, where the agent's start-up alone can take seconds).
    let taken = || {
        runs.len()
            - runs
                .iter()
                .filter(|run| prefect.flow_run(run)["state_type"] == "SCHEDULED")
                .count()
    };
    let waiting = std::time::Instant::now();
    while taken() == 0 && waiting.elapsed() < std::time::Duration::from_secs(120) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let before_kill = taken();
    if cluster.emulator.is_some() {
        assert!(
            before_kill > 0 && before_kill < runs.len(),
            "the restart must come mid-stream ({before_kill} of {} runs taken)",
            runs.len()
        );
    }
    let prefect = tokio::task::spawn_blocking(move || {
        prefect.kill();
        std::thread::sleep(std::time::Duration::from_secs(2));
        prefect.restart();
        prefect
    })
    .await
    .unwrap();

    let all_recorded = |prefect: &PrefectServer| {
        runs.iter()
            .all(|run| prefect.flow_run(run)["infrastructure_pid"].is_string())
    };
    let started = std::time::Instant::now();
    while !all_recorded(&prefect) {
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let log = terminate(agent).await;
            panic!("runs still unsubmitted two minutes after the restart; the agent said:\n{log}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    terminate(agent).await;
    let jobs = cluster.jobs_of("agent-restart").await;
    assert_eq!(
        jobs.len(),
        runs.len(),
        "one Job per run, none lost and none twice"
    );
    for run in &runs {
        let state = prefect.flow_run(run);
        assert_eq!(state["state_type"], "PENDING", "run {run}");
        let pid = state["infrastructure_pid"].as_str().unwrap();
        assert!(
            jobs.iter()
                .any(|j| pid.ends_with(j.metadata.name.as_deref().unwrap())),
            "run {run}: Job {pid} exists"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_to_the_api_server_is_retried_without_a_duplicate() {
    let prefect = server();
    let cluster = cluster().await;
    let Some(emulator) = &cluster.emulator else {
        return;
    };
    prefect.create_pool("e2e-drop", json!({}));
    let deployment = prefect.create_deployment("e2e-drop", "etl", "drop", json!({}));
    let run = prefect.create_run(&deployment, json!({}));
    // The create and its first retry lose their connection.
    emulator.inject(FaultRule {
        count: Some(2),
        method: Some("POST".into()),
        path: Some("/jobs".into()),
        ..FaultRule::always(Fault::Drop)
    });
    agent_start(
        &cluster,
        prefect,
        &["--pool", "e2e-drop", "--name", "agent-drop", "--run-once"],
    )
    .await;
    assert_eq!(prefect.flow_run(&run)["state_type"], "PENDING");
    assert_eq!(cluster.jobs_of("agent-drop").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn block_and_variable_placeholders_are_resolved_through_the_api() {
    let prefect = server();
    let cluster = cluster().await;
    prefect.create_block("secret", "e2e-db-password", json!({"value": "s3cret"}));
    prefect.create_block(
        "docker-registry-credentials",
        "e2e-registry",
        json!({"username": "robot", "password": "pw", "registry_url": "registry.example.com", "reauth": true}),
    );
    prefect.create_variable("e2e_team", json!("data-platform"));
    prefect.create_variable("e2e_tag", json!(7));
    let mut template = stock_template();
    template["variables"]["properties"]["env"]["default"] =
        json!({"TEAM": "{{ prefect.variables.e2e_team }}"});
    prefect.create_pool("e2e-placeholders", template);
    let deployment = prefect.create_deployment(
        "e2e-placeholders",
        "etl",
        "e2e-placeholders",
        json!({
            "image": "{{ prefect.blocks.docker-registry-credentials.e2e-registry.registry_url }}/etl:{{ prefect.variables.e2e_tag }}",
            "env": {"DB_PASSWORD": "{{ prefect.blocks.secret.e2e-db-password }}"},
        }),
    );
    let resolved = prefect.create_run(
        &deployment,
        json!({"env": {"MISSING": "x{{ prefect.variables.e2e_no_such_variable }}"}}),
    );
    let missing_block = prefect.create_run(
        &deployment,
        json!({"env": {"TOKEN": "{{ prefect.blocks.secret.e2e-no-such-block }}"}}),
    );
    agent_start(
        &cluster,
        prefect,
        &[
            "--pool",
            "e2e-placeholders",
            "--name",
            "agent-placeholders",
            "--run-once",
        ],
    )
    .await;

    let jobs = cluster.jobs_of("agent-placeholders").await;
    assert_eq!(
        jobs.len(),
        1,
        "only the run whose references exist gets a Job"
    );
    let job = &jobs[0];
    let env = env_of(job);
    for (name, value) in [
        ("TEAM", "data-platform"),
        ("DB_PASSWORD", "s3cret"),
        ("MISSING", "x"),
    ] {
        assert!(
            env.contains(&(name.to_string(), value.to_string())),
            "{name}={value} missing from {env:?}"
        );
    }
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.example.com/etl:7")
    );
    assert_eq!(prefect.flow_run(&resolved)["state_type"], "PENDING");

    let crashed = prefect.flow_run(&missing_block);
    assert_eq!(crashed["state_type"], "CRASHED");
    let message = crashed["state"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"e2e-no-such-block\"") && message.contains("\"secret\""),
        "{message}"
    );
}

/// moto's S3 server from the venv, on a free loopback port; killed on drop.
struct S3Server {
    process: std::process::Child,
    endpoint: String,
}

impl S3Server {
    fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = std::process::Command::new(agent_tests::venv_command("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server is in the venv (tests/requirements.txt)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = std::time::Instant::now();
        while ureq_get(&endpoint).is_none() {
            assert!(started.elapsed().as_secs() < 60, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        S3Server { process, endpoint }
    }

    /// Creates `bucket` (once) and puts `body` at `key`, as any S3 client would; a public
    /// object can be read by plain https GET.
    async fn put(&self, bucket: &str, key: &str, body: &str, public: bool) {
        let client = reqwest::Client::new();
        client
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        let response = client
            .put(format!("{}/{bucket}/{key}", self.endpoint))
            .header("x-amz-acl", if public { "public-read" } else { "private" })
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
    }
}

fn ureq_get(url: &str) -> Option<()> {
    std::net::TcpStream::connect(url.trim_start_matches("http://"))
        .ok()
        .map(|_| ())
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_template_from_s3_or_a_url_replaces_the_pools() {
    let prefect = server();
    let cluster = cluster().await;
    let s3 = S3Server::start();
    let manifest = |team: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: from-{team}-\n  labels:\n    team: {team}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: prefect-job\n          image: \"{{{{ image }}}}\"\n          env: \"{{{{ env }}}}\"\n"
        )
    };
    s3.put("templates", "etl/job.yaml", &manifest("s3"), false)
        .await;
    s3.put("templates", "etl/url.yaml", &manifest("url"), true)
        .await;
    prefect.create_pool("e2e-s3", stock_template());
    let deployment = prefect.create_deployment(
        "e2e-s3",
        "etl",
        "e2e-s3",
        json!({"image": "registry.example.com/etl:1"}),
    );
    let aws = [
        ("AWS_ENDPOINT", s3.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let url = format!("{}/templates/etl/url.yaml", s3.endpoint);
    for (template, agent, team) in [
        ("s3://templates/etl/job.yaml", "agent-s3", "s3"),
        (url.as_str(), "agent-url", "url"),
    ] {
        let run = prefect.create_run(&deployment, json!({}));
        agent_start_with_env(
            &cluster,
            prefect,
            &[
                "--pool",
                "e2e-s3",
                "--name",
                agent,
                "--run-once",
                "--job-template",
                template,
            ],
            &aws,
        )
        .await;
        let jobs = cluster.jobs_of(agent).await;
        assert_eq!(jobs.len(), 1, "{template}");
        let job = &jobs[0];
        assert!(
            job.metadata
                .name
                .as_ref()
                .unwrap()
                .starts_with(&format!("from-{team}-"))
        );
        assert_eq!(job.metadata.labels.as_ref().unwrap()["team"], team);
        assert_eq!(prefect.flow_run(&run)["state_type"], "PENDING");
    }

    // A template that is not there stops the agent at start, naming it.
    let cache = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "start",
            "--pool",
            "e2e-s3",
            "--run-once",
            "--job-template",
            "s3://templates/missing.yaml",
        ])
        .envs(aws)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PREFECT_API_URL", &prefect.api_url)
        .env("AGENT_PLUGIN_CACHE", cache.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("s3://templates/missing.yaml"), "{stderr}");
}

/// A worker's command line and settings as Prefect's own worker takes them work unchanged:
/// `-p`, `-q`, `-n`, `-l`, `--prefetch-seconds`, `--base-job-template`, `--with-healthcheck`,
/// `--type kubernetes`, `--create-pool-if-not-found`, and the API reached over TLS with a
/// private certificate authority (PREFECT_API_SSL_CERT_FILE), custom headers, a request
/// timeout and the worker's query, prefetch, heartbeat and webserver settings.
#[tokio::test(flavor = "multi_thread")]
async fn prefects_own_flags_and_settings_run_a_pool_through_a_tls_api_with_a_private_ca() {
    let prefect = server();
    let cluster = cluster().await;
    let upstream = prefect.api_url.trim_end_matches("/api").to_string();
    let (proxy, ca) = agent_tests::proxy::Proxy::start_tls(&upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let template = dir.path().join("base-job-template.json");
    let mut base = stock_template();
    base["variables"]["properties"]["env"]["default"] = json!({"FROM_TEMPLATE": "yes"});
    std::fs::write(&template, base.to_string()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = proxy.url("/api");
    let run_agent = |extra: Vec<(&'static str, String)>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"));
        command
            .args([
                "start",
                "-p",
                "e2e-prefect-flags",
                "-q",
                "default",
                "-n",
                "worker-7",
            ])
            .args(["-l", "5", "--prefetch-seconds", "5", "--type", "kubernetes"])
            .args([
                "--create-pool-if-not-found",
                "--with-healthcheck",
                "--run-once",
            ])
            .arg("--base-job-template")
            .arg(&template)
            .args(["--namespace", &cluster.namespace])
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("PREFECT_API_URL", &api)
            .env("PREFECT_WORKER_QUERY_SECONDS", "2")
            .env("PREFECT_WORKER_HEARTBEAT_SECONDS", "15")
            .env("PREFECT_WORKER_WEBSERVER_HOST", "127.0.0.1")
            .env("PREFECT_WORKER_WEBSERVER_PORT", port.to_string())
            .env("PREFECT_CLIENT_CUSTOM_HEADERS", r#"{"X-Team": "data"}"#)
            .env("PREFECT_API_REQUEST_TIMEOUT", "30")
            .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache())
            .envs(extra);
        command
    };
    // Without the certificate authority the API is not trusted, and the message says how.
    let refused = run_agent(vec![]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("not trusted") && stderr.contains("PREFECT_API_SSL_CERT_FILE"),
        "{stderr}"
    );

    // The pool is created by the first agent that finds it missing; a run of it.
    let output = run_agent(vec![("PREFECT_API_SSL_CERT_FILE", common_arg(&ca_file))])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let deployment =
        prefect.create_deployment("e2e-prefect-flags", "etl", "e2e-prefect-flags", json!({}));
    let run = prefect.create_run(&deployment, json!({}));
    let output = run_agent(vec![("PREFECT_API_SSL_CERT_FILE", common_arg(&ca_file))])
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "serving /healthz, /readyz and /metrics on http://127.0.0.1:{port}"
        )),
        "{log}"
    );
    let jobs = cluster.jobs_of("worker-7").await;
    assert_eq!(jobs.len(), 1, "one Job for the run: {log}");
    assert!(
        env_of(&jobs[0]).contains(&("FROM_TEMPLATE".into(), "yes".into())),
        "the base job template given replaced the pool's"
    );
    assert_eq!(prefect.flow_run(&run)["state_type"], "PENDING");
    assert_eq!(
        proxy.custom_headers().get("x-team").map(String::as_str),
        Some("data"),
        "the custom header reached the API"
    );
    let workers = prefect.call(
        "POST",
        "/work_pools/e2e-prefect-flags/workers/filter",
        Some(json!({})),
    );
    assert!(
        workers
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "worker-7" && w["heartbeat_interval_seconds"] == 15),
        "{workers}"
    );
}

fn common_arg(path: &std::path::Path) -> String {
    path.to_str().unwrap().to_string()
}
