//! After submission (the `watch` module), end to end: a real Prefect 3 server, the emulator
//! with scripted pods (its kubelet pulls, fails, runs out of memory as each rule says), and
//! the real `agent` binary running until signalled. These prove the wiring (watches → what is
//! tracked → decide → act); every rule itself is a unit test of `watch::decide`. Each test has
//! its own pool, agent name and emulator. Scripted pods need the emulator: with
//! `AGENT_E2E_KUBECONFIG` set these tests are skipped (the `dispatch` tests run against the
//! real cluster).

mod e2e;

use agent_tests::prefect::{PrefectServer, server};
use e2e::{Cluster, cluster_with, stock_template};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_emulator::{Behaviour, Config, Match, PodRule};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `agent start` running in the background; its log goes to a file (a pipe nobody reads
/// would fill and stall it).
struct Running {
    child: tokio::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(cluster: &Cluster, prefect: &PrefectServer, args: &[&str]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("start")
        .args(["--namespace", &cluster.namespace])
        .args(
            (!args.contains(&"--poll-interval"))
                .then_some(["--poll-interval", "1s"])
                .into_iter()
                .flatten(),
        )
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PREFECT_API_URL", &prefect.api_url)
        .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache())
        .env("AGENT_LOG", "info,agent=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        // A failed assertion must not leave the agent running.
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Running {
        child,
        log,
        _dir: dir,
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the agent's log; it must exit 0.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the agent stops on SIGTERM")
            .unwrap();
        let log = self.log();
        assert!(status.success(), "the agent exits 0:\n{log}");
        log
    }
}

/// Waits until a pod of `job` runs.
async fn pod_runs(cluster: &Cluster, agent: &Running, job: &str) {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    eventually("the pod runs", Duration::from_secs(30), agent, async || {
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .unwrap();
        list.items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(())
    })
    .await;
}

/// Polls `check` until it gives a value, failing with `what` and the agent's log after
/// `within`.
async fn eventually<T>(
    what: &str,
    within: Duration,
    agent: &Running,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}\nagent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rule(image_prefix: &str, then: Behaviour, log: &[&str]) -> PodRule {
    PodRule {
        matches: Match {
            image: Some(format!("{image_prefix}*")),
            ..Match::default()
        },
        then,
        log: log.iter().map(|l| l.to_string()).collect(),
    }
}

async fn emulated(pods: Vec<PodRule>) -> Option<Cluster> {
    if std::env::var_os("AGENT_E2E_KUBECONFIG").is_some() {
        eprintln!("skipped: scripted pods need the emulator");
        return None;
    }
    Some(
        cluster_with(Config {
            pods,
            ..Config::default()
        })
        .await,
    )
}

/// A pool with the stock template and a deployment (named after the pool: Prefect upserts
/// deployments by flow and name) whose runs use `image`; the deployment id.
fn pool_with_deployment(prefect: &PrefectServer, pool: &str, image: &str) -> String {
    prefect.create_pool(pool, stock_template());
    prefect.create_deployment(pool, "etl", pool, json!({ "image": image }))
}

fn state(prefect: &PrefectServer, run: &str) -> (String, String) {
    let run = prefect.flow_run(run);
    (
        run["state_type"].as_str().unwrap_or_default().to_string(),
        run["state"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// The run's state once it is `wanted`.
async fn state_becomes(
    prefect: &PrefectServer,
    agent: &Running,
    run: &str,
    wanted: &str,
    within: Duration,
) -> String {
    eventually(
        &format!("flow run {run} reaches {wanted}"),
        within,
        agent,
        async || {
            let (state, message) = state(prefect, run);
            (state == wanted).then_some(message)
        },
    )
    .await
}

fn force_state(prefect: &PrefectServer, run: &str, state: &str) {
    prefect.call(
        "POST",
        &format!("/flow_runs/{run}/set_state"),
        Some(json!({"state": {"type": state}, "force": true})),
    );
}

/// The Job recorded as the run's infrastructure, once there is one.
async fn job_of(prefect: &PrefectServer, agent: &Running, run: &str) -> (String, String) {
    let pid = eventually(
        "the run's Job is recorded",
        Duration::from_secs(30),
        agent,
        async || {
            prefect.flow_run(run)["infrastructure_pid"]
                .as_str()
                .map(str::to_string)
        },
    )
    .await;
    let (namespace, name) = pid.split_once(':').unwrap();
    (namespace.to_string(), name.to_string())
}

async fn job_exists(cluster: &Cluster, name: &str) -> bool {
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    jobs.get_opt(name).await.unwrap().is_some()
}

fn count(logs: &[String], needle: &str) -> usize {
    logs.iter().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_errors_crash_the_run_after_the_pod_start_timeout_and_delete_the_job() {
    let Some(cluster) = emulated(vec![rule(
        "registry.example.com/missing",
        Behaviour::ImagePullError,
        &[],
    )])
    .await
    else {
        return;
    };
    let prefect = server();
    let pull = pool_with_deployment(prefect, "life-pull", "registry.example.com/missing:1");
    let pull_run = prefect.create_run(&pull, json!({}));
    let pull_agent = start(
        &cluster,
        prefect,
        &[
            "--pool",
            "life-pull",
            "--name",
            "life-pull",
            "--pod-start-timeout",
            "2s",
        ],
    );

    let (_, pull_job) = job_of(prefect, &pull_agent, &pull_run).await;
    let message = state_becomes(
        prefect,
        &pull_agent,
        &pull_run,
        "CRASHED",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        message.starts_with("Image \"registry.example.com/missing:1\" cannot be pulled")
            && message.contains("Resolution: "),
        "{message}"
    );
    eventually(
        "the Job is deleted",
        Duration::from_secs(20),
        &pull_agent,
        async || (!job_exists(&cluster, &pull_job).await).then_some(()),
    )
    .await;
    let logs = prefect.logs(&pull_run);
    assert_eq!(
        count(&logs, "cannot be pulled"),
        2,
        "told once as a warning, once as the crash: {logs:#?}\nagent log:\n{}",
        pull_agent.log()
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("Kubernetes event on Pod") && l.contains("Failed")),
        "the pod's Events reach the run: {logs:#?}"
    );
    pull_agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_jobs_crash_their_runs_once_with_the_reason_and_the_logs_across_restarts() {
    let Some(cluster) = emulated(vec![
        rule(
            "registry.example.com/fails",
            Behaviour::Fail {
                exit_code: 3,
                run_ms: 400,
            },
            &["loading data", "ValueError: boom"],
        ),
        rule(
            "registry.example.com/oom",
            Behaviour::OomKilled { run_ms: 400 },
            &[],
        ),
        rule(
            "registry.example.com/evicted",
            Behaviour::Evicted { run_ms: 400 },
            &[],
        ),
    ])
    .await
    else {
        return;
    };
    let prefect = server();
    let fails = pool_with_deployment(prefect, "life-fail", "registry.example.com/fails:1");
    let oom = prefect.create_deployment(
        "life-fail",
        "etl",
        "life-fail-oom",
        json!({"image": "registry.example.com/oom:1"}),
    );
    let failing = prefect.create_run(&fails, json!({}));
    let killed = prefect.create_run(&oom, json!({}));
    let evict = prefect.create_deployment(
        "life-fail",
        "etl",
        "life-fail-evicted",
        json!({"image": "registry.example.com/evicted:1"}),
    );
    let evicted = prefect.create_run(&evict, json!({}));
    let agent = start(
        &cluster,
        prefect,
        &["--pool", "life-fail", "--name", "life-fail"],
    );
    // The watches drop (an API server restart) while the pods run; they resume.
    job_of(prefect, &agent, &failing).await;
    cluster.emulator.as_ref().unwrap().restart_watches();

    let message = state_becomes(
        prefect,
        &agent,
        &failing,
        "CRASHED",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        message.contains("failed: BackoffLimitExceeded"),
        "{message}"
    );
    assert!(
        message.contains("ValueError: boom"),
        "the log's last lines: {message}"
    );
    let message = state_becomes(prefect, &agent, &killed, "CRASHED", Duration::from_secs(30)).await;
    assert!(
        message.contains("OOMKilled") && message.contains("raise the memory limit"),
        "{message}"
    );
    let message = state_becomes(
        prefect,
        &agent,
        &evicted,
        "CRASHED",
        Duration::from_secs(30),
    )
    .await;
    assert!(message.contains("Pod evicted"), "{message}");
    agent.stop().await;

    let told: Vec<Vec<String>> = [&failing, &killed, &evicted]
        .iter()
        .map(|run| prefect.logs(run))
        .collect();

    // A restarted agent lists the same failed Jobs and says nothing twice.
    let again = start(
        &cluster,
        prefect,
        &["--pool", "life-fail", "--name", "life-fail"],
    );
    eventually(
        "the restarted agent has polled",
        Duration::from_secs(30),
        &again,
        async || again.log().contains("Starting agent").then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = again.stop().await;
    assert!(log.contains("not reporting a crash"), "{log}");
    for (run, told) in [&failing, &killed, &evicted].into_iter().zip(told) {
        // The restarted agent may forward an Event the first never saw, but nothing twice.
        let logs = prefect.logs(run);
        for line in &told {
            assert_eq!(
                count(&logs, line),
                count(&told, line),
                "no line told again: {logs:#?}"
            );
        }
        assert_eq!(state(prefect, run).0, "CRASHED");
        assert_eq!(count(&prefect.logs(run), "failed: BackoffLimitExceeded"), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_deleted_by_hand_crashes_its_run_and_cancelling_deletes_the_job() {
    let Some(cluster) = emulated(vec![rule(
        "registry.example.com/",
        Behaviour::RunForever,
        &[],
    )])
    .await
    else {
        return;
    };
    let prefect = server();
    let deployment = pool_with_deployment(prefect, "life-cancel", "registry.example.com/etl:1");
    let deleted = prefect.create_run(&deployment, json!({}));
    let cancelled = prefect.create_run(&deployment, json!({}));
    let agent = start(
        &cluster,
        prefect,
        &["--pool", "life-cancel", "--name", "life-cancel"],
    );
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);

    let (_, job) = job_of(prefect, &agent, &deleted).await;
    // The API server forgets its history and drops every watch: the agent's watches resume
    // from a version that is gone (410), relist, and go on.
    // Compacted after a change none of the watches saw: each resumes from a version older
    // than anything kept.
    let emulator = cluster.emulator.as_ref().unwrap();
    emulator.compact();
    let marker: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "compaction-marker"}})).unwrap();
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
        cluster.client.clone(),
        &cluster.namespace,
    )
    .create(&PostParams::default(), &marker)
    .await
    .unwrap();
    emulator.compact();
    emulator.restart_watches();
    tokio::time::sleep(Duration::from_millis(500)).await;
    jobs.delete(&job, &DeleteParams::background())
        .await
        .unwrap();
    let message = state_becomes(
        prefect,
        &agent,
        &deleted,
        "CRASHED",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        message.contains(&format!("Job {}/{job} was deleted", cluster.namespace)),
        "{message}"
    );

    let (_, job) = job_of(prefect, &agent, &cancelled).await;
    pod_runs(&cluster, &agent, &job).await;
    force_state(prefect, &cancelled, "CANCELLING");
    let message = state_becomes(
        prefect,
        &agent,
        &cancelled,
        "CANCELLED",
        Duration::from_secs(30),
    )
    .await;
    assert!(message.contains(&job), "{message}");
    assert!(
        !job_exists(&cluster, &job).await,
        "the Job is gone before CANCELLED"
    );
    let left = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap();
    assert!(left.items.is_empty(), "its pods are gone too");
    let log = agent.stop().await;
    assert!(
        log.contains("watch failed and restarts") && log.contains("Expired"),
        "the 410 was met: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_janitor_deletes_finished_jobs_by_outcome_and_nothing_it_does_not_own() {
    let Some(cluster) = emulated(vec![rule(
        "registry.example.com/fails",
        Behaviour::Fail {
            exit_code: 1,
            run_ms: 200,
        },
        &[],
    )])
    .await
    else {
        return;
    };
    let prefect = server();
    let succeeds = pool_with_deployment(prefect, "life-janitor", "registry.example.com/etl:1");
    let fails = prefect.create_deployment(
        "life-janitor",
        "etl",
        "life-janitor-fails",
        json!({"image": "registry.example.com/fails:1"}),
    );
    let succeeded = prefect.create_run(&succeeds, json!({}));
    let failed = prefect.create_run(&fails, json!({}));
    // Someone else's finished Job, without the agent's labels.
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let foreign: Job = serde_json::from_value(json!({
        "metadata": {"name": "someone-elses", "labels": {"team": "other"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.example.com/etl:1"}]}}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &foreign).await.unwrap();

    let agent = start(
        &cluster,
        prefect,
        &[
            "--pool",
            "life-janitor",
            "--name",
            "life-janitor",
            "--delete-succeeded-after",
            "1s",
        ],
    );
    let (_, succeeded_job) = job_of(prefect, &agent, &succeeded).await;
    let (_, failed_job) = job_of(prefect, &agent, &failed).await;
    state_becomes(prefect, &agent, &failed, "CRASHED", Duration::from_secs(30)).await;
    // The flow's engine would report the success; there is none here.
    eventually(
        "the Job completes",
        Duration::from_secs(30),
        &agent,
        async || {
            jobs.get(&succeeded_job)
                .await
                .unwrap()
                .status?
                .succeeded
                .filter(|n| *n == 1)
        },
    )
    .await;
    force_state(prefect, &succeeded, "COMPLETED");
    eventually(
        "the janitor deletes the succeeded Job",
        Duration::from_secs(30),
        &agent,
        async || (!job_exists(&cluster, &succeeded_job).await).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        job_exists(&cluster, &failed_job).await,
        "failed Jobs are kept without --delete-failed-after"
    );
    assert!(
        job_exists(&cluster, "someone-elses").await,
        "Jobs without the agent's labels are never touched"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_follows_the_prefect_api_and_metrics_count_what_happened() {
    let Some(cluster) = emulated(Vec::new()).await else {
        return;
    };
    let prefect = PrefectServer::dedicated();
    let deployment = pool_with_deployment(&prefect, "life-health", "registry.example.com/etl:1");
    prefect.create_run(&deployment, json!({}));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let heartbeat = tempfile::NamedTempFile::new().unwrap();
    let agent = start(
        &cluster,
        &prefect,
        &[
            "--pool",
            "life-health",
            "--name",
            "life-health",
            "--agent-address",
            &address,
            "--unhealthy-after",
            "3",
            "--heartbeat-file",
            heartbeat.path().to_str().unwrap(),
        ],
    );
    let get = async |path: &str| -> Option<(u16, String)> {
        let response = reqwest::get(format!("http://{address}{path}")).await.ok()?;
        Some((response.status().as_u16(), response.text().await.ok()?))
    };
    let (_, metrics) = eventually(
        "a run is submitted and counted",
        Duration::from_secs(30),
        &agent,
        async || {
            get("/metrics").await.filter(|(code, text)| {
                *code == 200 && text.contains("agent_runs_submitted_total 1")
            })
        },
    )
    .await;
    for name in [
        "agent_polls_total",
        "agent_runs_claimed_total 1",
        "agent_claim_to_job_seconds_count 1",
        "agent_plugin_call_seconds_count{plugin=\"default\"} 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert_eq!(get("/healthz").await.unwrap().0, 200);
    assert_eq!(get("/readyz").await.unwrap().0, 200);
    assert!(
        std::fs::read_to_string(heartbeat.path())
            .unwrap()
            .starts_with("20"),
        "the heartbeat file holds a time"
    );

    prefect.kill();
    let (_, why) = eventually(
        "unhealthy while Prefect is down",
        Duration::from_secs(30),
        &agent,
        async || get("/healthz").await.filter(|(code, _)| *code == 503),
    )
    .await;
    assert!(why.contains("no successful poll"), "{why}");
    prefect.restart();
    eventually(
        "healthy again",
        Duration::from_secs(60),
        &agent,
        async || get("/healthz").await.filter(|(code, _)| *code == 200),
    )
    .await;
    let metrics = get("/metrics").await.unwrap().1;
    assert!(
        metrics.contains("agent_api_errors_total{api=\"prefect\",code=\"transport\"}"),
        "{metrics}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_agent_serves_several_namespaces_and_refuses_the_others() {
    if std::env::var_os("AGENT_E2E_KUBECONFIG").is_some() {
        return;
    }
    let cluster = cluster_with(Config {
        namespaces: vec!["default".into(), "etl".into(), "ml".into()],
        pods: vec![rule(
            "registry.example.com/missing",
            Behaviour::ImagePullError,
            &[],
        )],
        ..Config::default()
    })
    .await;
    let prefect = server();
    prefect.create_pool("life-ns", stock_template());
    let deployment = |name: &str, variables: serde_json::Value| {
        prefect.create_deployment("life-ns", "etl", name, variables)
    };
    let in_etl = prefect.create_run(
        &deployment(
            "life-ns-etl",
            json!({"image": "registry.example.com/etl:1"}),
        ),
        json!({}),
    );
    let in_ml = prefect.create_run(
        &deployment(
            "life-ns-ml",
            json!({"image": "registry.example.com/missing:1", "namespace": "ml"}),
        ),
        json!({}),
    );
    let elsewhere = prefect.create_run(
        &deployment(
            "life-ns-other",
            json!({"image": "registry.example.com/etl:1", "namespace": "kube-system"}),
        ),
        json!({}),
    );
    let cluster = Cluster {
        namespace: "etl".into(),
        ..cluster
    };
    let agent = start(
        &cluster,
        prefect,
        &[
            "--pool",
            "life-ns",
            "--name",
            "life-ns",
            "--job-namespace",
            "ml",
            "--pod-start-timeout",
            "2s",
        ],
    );
    let message = state_becomes(
        prefect,
        &agent,
        &elsewhere,
        "FAILED",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        message.contains("\"kube-system\"") && message.contains("only in \"etl\", \"ml\""),
        "{message}"
    );
    assert_eq!(
        job_of(prefect, &agent, &in_etl).await.0,
        "etl",
        "the default namespace"
    );
    assert_eq!(job_of(prefect, &agent, &in_ml).await.0, "ml");
    // The watch covers the second namespace too.
    let message = state_becomes(prefect, &agent, &in_ml, "CRASHED", Duration::from_secs(30)).await;
    assert!(message.contains("cannot be pulled"), "{message}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evicted_run_its_engine_rescheduled_is_not_crashed_and_gets_a_new_job() {
    // Evicted when the test says so (`end_runs`), after the run is claimed again.
    let Some(cluster) = emulated(vec![rule(
        "registry.example.com/evicted",
        Behaviour::Evicted { run_ms: 3_600_000 },
        &[],
    )])
    .await
    else {
        return;
    };
    let prefect = server();
    let deployment = pool_with_deployment(prefect, "life-evict", "registry.example.com/evicted:1");
    let run = prefect.create_run(&deployment, json!({}));
    let agent = start(
        &cluster,
        prefect,
        &["--pool", "life-evict", "--name", "life-evict"],
    );
    let (namespace, first) = job_of(prefect, &agent, &run).await;
    // What Prefect's engine does when its pod gets SIGTERM (backoffLimit 0, "reschedule"):
    // the run waits to run again.
    prefect.call(
        "POST",
        &format!("/flow_runs/{run}/set_state"),
        Some(json!({"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": true})),
    );
    let second = eventually(
        "the rescheduled run is claimed again, with a new Job name",
        Duration::from_secs(60),
        &agent,
        async || {
            let pid = prefect.flow_run(&run)["infrastructure_pid"]
                .as_str()?
                .to_string();
            let (_, name) = pid.split_once(':')?;
            (name != first).then(|| name.to_string())
        },
    )
    .await;
    // Both pods are evicted only now (the emulator's clock would race Prefect's answers): the
    // first Job's failure is not held against the run, whichever the agent sees first.
    pod_runs(&cluster, &agent, &second).await;
    cluster.emulator.as_ref().unwrap().end_runs();
    eventually(
        "the first Job's failure is seen and not reported",
        Duration::from_secs(30),
        &agent,
        async || {
            let log = agent.log();
            log.lines()
                .any(|l| l.contains("not reporting a crash") && l.contains(&first))
                .then_some(())
        },
    )
    .await;
    // The second Job is the run's own: its eviction does crash the run.
    let message = state_becomes(prefect, &agent, &run, "CRASHED", Duration::from_secs(60)).await;
    assert!(message.contains(&second), "{message}");
    let log = agent.stop().await;
    assert!(log.contains("not reporting a crash"), "{log}");
    assert_eq!(
        count(
            &prefect.logs(&run),
            &format!("Job {namespace}/{first} failed")
        ),
        0,
        "the first Job's failure is not told to the rescheduled run: {:#?}",
        prefect.logs(&run)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prefects_event_stream_claims_and_cancels_between_polls_and_a_timer_claims_at_prefetch() {
    // Pods that keep running, as a flow run's would when it is cancelled.
    let Some(cluster) = emulated(vec![rule(
        "registry.example.com/etl",
        Behaviour::Succeed { run_ms: 600_000 },
        &[],
    )])
    .await
    else {
        return;
    };
    let prefect = server();
    let deployment = pool_with_deployment(prefect, "life-events", "registry.example.com/etl:1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    // One poll at start, the next in an hour: whatever happens sooner is the event stream's.
    let agent = start(
        &cluster,
        prefect,
        &[
            "--pool",
            "life-events",
            "--name",
            "life-events",
            "--poll-interval",
            "1h",
            "--prefetch",
            "2s",
            "--agent-address",
            &address,
        ],
    );
    let metric = async |line: &str| -> Option<()> {
        let text = reqwest::get(format!("http://{address}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(line).then_some(())
    };
    eventually(
        "the event stream connects",
        Duration::from_secs(30),
        &agent,
        async || metric("agent_event_stream_connected 1").await,
    )
    .await;

    let now = prefect.create_run(&deployment, json!({}));
    let (_, job) = job_of(prefect, &agent, &now).await;

    // Due in 8 s, claimed 2 s (--prefetch) before: by the timer the woken poll set.
    let due = chrono::Utc::now() + chrono::TimeDelta::seconds(8);
    let created = std::time::Instant::now();
    let later: String = prefect.call(
        "POST",
        &format!("/deployments/{deployment}/create_flow_run"),
        Some(json!({"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due.to_rfc3339()}}})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    job_of(prefect, &agent, &later).await;
    let claimed_after = created.elapsed();
    assert!(
        claimed_after >= Duration::from_millis(5500) && claimed_after < Duration::from_secs(20),
        "claimed {claimed_after:?} after creation, for a run due at 8 s with a 2 s prefetch\n{}",
        agent.log()
    );

    force_state(prefect, &now, "CANCELLING");
    state_becomes(prefect, &agent, &now, "CANCELLED", Duration::from_secs(20)).await;
    assert!(!job_exists(&cluster, &job).await, "the Job is gone");
    metric("agent_event_stream_wakeups_total 3")
        .await
        .unwrap_or_else(|| {
            panic!(
                "two runs and a cancellation woke the agent:\n{}",
                agent.log()
            )
        });
    agent.stop().await;
}
