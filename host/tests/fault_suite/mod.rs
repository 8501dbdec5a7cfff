//! The fault suite: scenarios that try to lose or duplicate runs (kill -9 loops on several
//! agents, a Prefect outage, Kubernetes failing, lost answers and slowness, SIGTERM while a
//! submission waits), each on a real Prefect server and the emulator with the real `agent`
//! binary, then one clean agent, then a count of what became of every run. Small versions run
//! in CI (`tests/faults.rs`), full ones by hand (`cargo bench -p agent --bench faults`).
#![allow(dead_code)]

use agent_tests::prefect::PrefectServer;
use agent_tests::proxy::{Proxy, Slow};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_emulator::{Config, Emulator, Fault, FaultRule};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the clean agent at the end of a scenario may go without finishing a run before
/// the scenario is over (what is open then is counted lost). On a loaded CI machine (several
/// Prefect servers at once) a drain can be slow without being stuck; a fixed budget for the
/// whole drain failed such a run that was still making progress.
const CLEAN_AGENT_STALL: Duration = Duration::from_secs(180);
/// The clean agent's bound in all, however slowly it makes progress.
const CLEAN_AGENT_LIMIT: Duration = Duration::from_secs(1200);

/// How big a run of the suite is.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub runs: usize,
    pub agents: usize,
    pub kills: usize,
    /// How long Prefect is down in the outage scenario.
    pub outage: Duration,
    /// The share of Kubernetes requests that fail in the Kubernetes scenario.
    pub fraction: f64,
}

impl Scale {
    /// What CI runs: a few minutes in all.
    pub fn small() -> Scale {
        Scale {
            runs: 60,
            agents: 3,
            kills: 10,
            outage: Duration::from_secs(10),
            fraction: 0.2,
        }
    }

    /// What the issue asks for, run by hand.
    pub fn full() -> Scale {
        Scale {
            runs: 500,
            agents: 3,
            kills: 40,
            outage: Duration::from_secs(60),
            fraction: 0.2,
        }
    }
}

/// What became of the runs of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub scenario: String,
    pub runs: usize,
    /// Runs with exactly one Job.
    pub one_job: usize,
    /// Runs with no Job that are not over (SCHEDULED, PENDING, RUNNING).
    pub lost: usize,
    /// Runs with two Jobs or more.
    pub duplicated: usize,
    /// Runs with a Job but no infrastructure_pid.
    pub no_pid: usize,
    /// Runs with a Job but no line in their log saying so.
    pub no_line: usize,
    /// Runs reported CRASHED or FAILED (by a fault the agent could not ride out).
    pub crashed: usize,
    /// Agents killed with SIGKILL, or stopped with SIGTERM mid-submission.
    pub interruptions: usize,
    /// Agents that ended on a panic (the agent's panic hook: `agent::text::INTERNAL_ERROR`).
    pub panics: usize,
    pub seconds: f64,
}

impl Tally {
    pub fn header() -> String {
        "| scenario | runs | one Job | lost | duplicated | Job, no pid | Job, no line | crashed | kills/stops | panics | time |\n|---|---|---|---|---|---|---|---|---|---|---|".into()
    }

    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            self.scenario,
            self.runs,
            self.one_job,
            self.lost,
            self.duplicated,
            self.no_pid,
            self.no_line,
            self.crashed,
            self.interruptions,
            self.panics,
            self.seconds
        )
    }

    /// Panics with the row when anything was lost, duplicated or left without its record, or
    /// an agent panicked.
    pub fn assert_nothing_lost(&self) {
        assert!(
            self.lost == 0
                && self.duplicated == 0
                && self.no_pid == 0
                && self.no_line == 0
                && self.panics == 0,
            "{}\n{}",
            Tally::header(),
            self.row()
        );
    }
}

/// A Prefect server (reached directly or through a proxy), the emulator, and a pool with a
/// deployment.
pub struct World {
    pub prefect: PrefectServer,
    pub proxy: Option<Proxy>,
    pub emulator: Emulator,
    pub client: kube::Client,
    pub pool: String,
    pub deployment: String,
    logs: tempfile::TempDir,
}

impl World {
    pub async fn new(pool: &str, proxied: bool) -> World {
        let prefect = tokio::task::spawn_blocking(PrefectServer::dedicated)
            .await
            .unwrap();
        let proxy = if proxied {
            let upstream = prefect.api_url.trim_end_matches("/api").to_string();
            Some(Proxy::start(&upstream).await)
        } else {
            None
        };
        let emulator = Emulator::start(Config {
            time_scale: 0.02,
            ..Config::default()
        })
        .await
        .unwrap();
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(emulator.kubeconfig()).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        prefect.create_pool(pool, json!({}));
        let deployment = prefect.create_deployment(pool, "etl", pool, json!({"image": "busybox"}));
        World {
            prefect,
            proxy,
            emulator,
            client: kube::Client::try_from(config).unwrap(),
            pool: pool.into(),
            deployment,
            logs: tempfile::tempdir().unwrap(),
        }
    }

    /// The API URL agents use: the proxy's when there is one.
    pub fn api_url(&self) -> String {
        match &self.proxy {
            Some(proxy) => proxy.url("/api"),
            None => self.prefect.api_url.clone(),
        }
    }

    /// `n` runs scheduled now, created four at a time.
    pub fn create_runs(&self, n: usize) -> Vec<String> {
        let ids = std::sync::Mutex::new(Vec::with_capacity(n));
        std::thread::scope(|scope| {
            for part in 0..4 {
                let ids = &ids;
                scope.spawn(move || {
                    for _ in (part..n).step_by(4) {
                        let id = self.prefect.create_run(&self.deployment, json!({}));
                        ids.lock().unwrap().push(id);
                    }
                });
            }
        });
        ids.into_inner().unwrap()
    }

    /// An agent of this world's pool, running until stopped.
    pub fn agent(&self, name: &str, extra: &[&str]) -> Agent {
        let log = self
            .logs
            .path()
            .join(format!("{name}-{}.log", fastrand::u32(..)));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["start", "--pool", &self.pool, "--name", name])
            // Brisk defaults, for the flags `extra` does not set (the agent refuses a flag
            // given twice).
            .args(
                [
                    ["--poll-interval", "1s"],
                    ["--orphan-grace", "3s"],
                    ["--orphan-interval", "2s"],
                ]
                .into_iter()
                .filter(|[flag, _]| !extra.contains(flag))
                .flatten(),
            )
            .args(extra)
            .env("KUBECONFIG", self.emulator.kubeconfig())
            .env("PREFECT_API_URL", self.api_url())
            .env("AGENT_PLUGIN_CACHE", agent_tests::plugin_cache())
            .env(
                "AGENT_LOG",
                std::env::var("AGENT_E2E_LOG").unwrap_or("info".into()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Agent { child, log }
    }

    /// Runs one clean agent until every run has its Job recorded or is over, or until no run
    /// was finished for `CLEAN_AGENT_STALL`.
    pub async fn finish_with_a_clean_agent(&self, runs: &[String]) {
        let clean = self.agent("clean", &[]);
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let mut open_before = usize::MAX;
        loop {
            let open = self.open_runs(runs);
            if open < open_before {
                last_progress = Instant::now();
                open_before = open;
            }
            let stalled = last_progress.elapsed() >= CLEAN_AGENT_STALL;
            if open == 0 || stalled || started.elapsed() >= CLEAN_AGENT_LIMIT {
                let stall = CLEAN_AGENT_STALL.as_secs();
                let why = if stalled {
                    format!(" (none finished in the last {stall} s)")
                } else {
                    String::new()
                };
                let ran = started.elapsed().as_secs_f64();
                println!("the clean agent ran {ran:.0} s; {open} run(s) left open{why}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        clean.stop().await;
    }

    /// How many of `runs` have neither a Job recorded nor a final state.
    fn open_runs(&self, runs: &[String]) -> usize {
        let states = self.states(runs);
        states
            .values()
            .filter(|(state, pid)| {
                !matches!(
                    state.as_str(),
                    "CRASHED" | "FAILED" | "COMPLETED" | "CANCELLED"
                ) && pid.is_none()
            })
            .count()
    }

    /// Every run's state type and infrastructure_pid.
    pub fn states(&self, runs: &[String]) -> HashMap<String, (String, Option<String>)> {
        let mut states = HashMap::new();
        for chunk in runs.chunks(200) {
            let found = self.prefect.call(
                "POST",
                "/flow_runs/filter",
                Some(json!({"flow_runs": {"id": {"any_": chunk}}, "limit": 200})),
            );
            for run in found.as_array().unwrap() {
                states.insert(
                    run["id"].as_str().unwrap().to_string(),
                    (
                        run["state_type"].as_str().unwrap_or_default().to_string(),
                        run["infrastructure_pid"].as_str().map(str::to_string),
                    ),
                );
            }
        }
        states
    }

    /// Runs with a line saying where they run ("Submitted …" or "… running as …").
    fn runs_with_a_job_line(&self, runs: &[String]) -> std::collections::HashSet<String> {
        let mut told = std::collections::HashSet::new();
        for chunk in runs.chunks(50) {
            for page in 0.. {
                let logs = self.prefect.call(
                    "POST",
                    "/logs/filter",
                    Some(json!({"logs": {"flow_run_id": {"any_": chunk}}, "limit": 200, "offset": page * 200})),
                );
                let lines = logs.as_array().unwrap();
                for line in lines {
                    let message = line["message"].as_str().unwrap_or_default();
                    if message.starts_with("Submitted flow run to Kubernetes as Job")
                        || message.starts_with("Flow run is running as Kubernetes Job")
                    {
                        told.insert(line["flow_run_id"].as_str().unwrap_or_default().to_string());
                    }
                }
                if lines.len() < 200 {
                    break;
                }
            }
        }
        told
    }

    /// What became of `runs`.
    pub async fn tally(&self, scenario: &str, runs: &[String], started: Instant) -> Tally {
        let jobs: Api<Job> = Api::all(self.client.clone());
        let mut jobs_per_run: HashMap<String, usize> = HashMap::new();
        for job in jobs.list(&ListParams::default()).await.unwrap().items {
            if let Some(run) = job
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("prefect-agent/flow-run-id"))
            {
                *jobs_per_run.entry(run.clone()).or_default() += 1;
            }
        }
        let states = self.states(runs);
        let told = self.runs_with_a_job_line(runs);
        let mut tally = Tally {
            scenario: scenario.into(),
            runs: runs.len(),
            seconds: started.elapsed().as_secs_f64(),
            ..Tally::default()
        };
        let logs = self.agent_logs();
        tally.panics = logs
            .iter()
            .map(|(_, text)| text.matches(agent::text::INTERNAL_ERROR).count())
            .sum();
        let mut explained = false;
        for run in runs {
            let jobs = jobs_per_run.get(run).copied().unwrap_or(0);
            let (state, pid) = states.get(run).cloned().unwrap_or_default();
            match jobs {
                0 if matches!(state.as_str(), "CRASHED" | "FAILED") => tally.crashed += 1,
                0 => tally.lost += 1,
                1 => tally.one_job += 1,
                _ => tally.duplicated += 1,
            }
            let lost = jobs == 0 && !matches!(state.as_str(), "CRASHED" | "FAILED");
            let no_pid = jobs > 0 && pid.is_none();
            let no_line = jobs > 0 && !told.contains(run);
            tally.no_pid += usize::from(no_pid);
            tally.no_line += usize::from(no_line);
            if lost || jobs > 1 || no_pid || no_line {
                self.explain(run, &state, jobs, &logs);
                explained = true;
            }
        }
        if explained || tally.panics > 0 {
            show_agents_warnings(&logs);
        }
        tally
    }

    /// Every agent's log (file name, text), read once per tally.
    fn agent_logs(&self) -> Vec<(String, String)> {
        let Ok(logs) = std::fs::read_dir(self.logs.path()) else {
            return Vec::new();
        };
        logs.flatten()
            .map(|log| {
                let name = log.file_name().to_string_lossy().into_owned();
                (
                    name,
                    std::fs::read_to_string(log.path()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// What happened to a run that ended badly: its state and every agent's lines about it.
    fn explain(&self, run: &str, state: &str, jobs: usize, logs: &[(String, String)]) {
        let message =
            self.prefect.call("GET", &format!("/flow_runs/{run}"), None)["state"]["message"]
                .clone();
        println!("run {run}: {state} ({message}), {jobs} Job(s); the agents' lines about it:");
        for (name, text) in logs {
            for line in text.lines().filter(|l| l.contains(run)) {
                println!("  {name}: {line}");
            }
        }
    }
}

/// Every agent's warnings and errors and its last lines: a run no agent wrote about was left
/// by something else the agent said (or by an agent that stopped saying anything).
fn show_agents_warnings(logs: &[(String, String)]) {
    for (name, text) in logs {
        let lines: Vec<&str> = text.lines().collect();
        println!(
            "agent log {name} ({} lines); its warnings and errors, then its last lines:",
            lines.len()
        );
        let notable = lines
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"));
        for line in notable.take(40) {
            println!("  ! {line}");
        }
        for line in &lines[lines.len().saturating_sub(15)..] {
            println!("  {line}");
        }
    }
}

/// An `agent start` process.
pub struct Agent {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Agent {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with its log when the agent has ended.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the agent ended ({status}):\n{}", self.log());
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill9(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then waits for the exit (the shutdown grace is the agent's).
    pub async fn stop(mut self) -> String {
        if let Some(pid) = self.child.id() {
            // SAFETY: sends SIGTERM to our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(120), self.child.wait()).await;
        self.log()
    }
}

fn random_pause(from: Duration, to: Duration) -> Duration {
    from + (to - from).mul_f64(fastrand::f64())
}

/// Several agents racing on one pool, one of them killed with SIGKILL and restarted every
/// 1–3 s (0.3–1 s at the small scale); then one clean agent.
pub async fn kill_loop(scale: Scale, small: bool) -> Tally {
    let world = World::new("faults-kill", false).await;
    let runs = world.create_runs(scale.runs);
    let started = Instant::now();
    let mut agents: Vec<Agent> = (0..scale.agents)
        .map(|i| world.agent(&format!("a{i}"), &["--submission-limit", "4"]))
        .collect();
    let (from, to) = if small {
        (Duration::from_millis(300), Duration::from_millis(1000))
    } else {
        (Duration::from_secs(1), Duration::from_secs(3))
    };
    for kill in 0..scale.kills {
        tokio::time::sleep(random_pause(from, to)).await;
        let victim = fastrand::usize(..agents.len());
        let name = format!("a{victim}-{kill}");
        let killed = std::mem::replace(
            &mut agents[victim],
            world.agent(&name, &["--submission-limit", "4"]),
        );
        killed.kill9().await;
    }
    for agent in agents {
        agent.stop().await;
    }
    world.finish_with_a_clean_agent(&runs).await;
    let mut tally = world.tally("3 agents, kill -9 loop", &runs, started).await;
    tally.interruptions = scale.kills;
    tally
}

/// Prefect goes away mid-drain (every request refused) for `scale.outage`, then comes back.
pub async fn prefect_outage(scale: Scale) -> Tally {
    let world = World::new("faults-outage", true).await;
    let proxy = world.proxy.as_ref().unwrap();
    // Reads of runs (the look for unfinished claims among them) slower than the agents' poll
    // interval, as on a busy server: once, a look between a poll and its claims left every
    // poll's runs stale, and the agents claimed nothing.
    proxy.slow_down(Slow {
        method: Some(axum_method("POST")),
        path: "/flow_runs/filter".into(),
        delay: Duration::from_millis(1500),
    });
    let runs = world.create_runs(scale.runs);
    let started = Instant::now();
    // Slow enough that the outage falls mid-drain.
    world
        .emulator
        .inject(FaultRule::always(Fault::Latency { ms: 200 }));
    let agent = world.agent("outage", &["--submission-limit", "4"]);
    wait_for_claims(&world, &runs, scale.runs / 4).await;
    proxy.set_down(true);
    tokio::time::sleep(scale.outage).await;
    proxy.set_down(false);
    world.emulator.clear_faults();
    world.finish_with_a_clean_agent(&runs).await;
    agent.stop().await;
    world.tally("Prefect down mid-drain", &runs, started).await
}

/// Kubernetes answers creates with 500, a 409 for no Job, lost answers and latency, each on
/// `scale.fraction` of the requests.
pub async fn kubernetes_faults(scale: Scale) -> Tally {
    let world = World::new("faults-kube", false).await;
    let runs = world.create_runs(scale.runs);
    let started = Instant::now();
    let create = |fault| FaultRule {
        fraction: Some(scale.fraction / 4.0),
        method: Some("POST".into()),
        path: Some("/jobs".into()),
        ..FaultRule::always(fault)
    };
    for fault in [
        Fault::Status { code: 500 },
        Fault::Status { code: 409 },
        Fault::LostAnswer,
        Fault::Latency { ms: 300 },
    ] {
        world.emulator.inject(create(fault));
    }
    let agent = world.agent("kube", &["--submission-limit", "8"]);
    wait_for_claims(&world, &runs, scale.runs).await;
    world.finish_with_a_clean_agent(&runs).await;
    agent.stop().await;
    world.emulator.clear_faults();
    world
        .tally("Kubernetes 500/409/lost answer/latency", &runs, started)
        .await
}

/// SIGTERM while submissions wait on a slow Prefect (deployment reads take 5 s) with a 3 s
/// grace; then one clean agent.
pub async fn sigterm_slow_prefect(scale: Scale) -> Tally {
    let world = World::new("faults-term-prefect", true).await;
    let proxy = world.proxy.as_ref().unwrap();
    proxy.slow_down(Slow {
        method: Some(axum_method("GET")),
        path: "/deployments/".into(),
        delay: Duration::from_secs(5),
    });
    let runs = world.create_runs(scale.runs);
    let started = Instant::now();
    let agent = world.agent(
        "term-prefect",
        &["--submission-limit", "8", "--shutdown-grace", "3s"],
    );
    wait_for_claims(&world, &runs, 8).await;
    agent.stop().await;
    proxy.speed_up();
    world.finish_with_a_clean_agent(&runs).await;
    let mut tally = world.tally("SIGTERM, slow Prefect", &runs, started).await;
    tally.interruptions = 1;
    tally
}

/// SIGTERM while Job creates take 5 s, with a 3 s grace; then one clean agent.
pub async fn sigterm_slow_kubernetes(scale: Scale) -> Tally {
    let world = World::new("faults-term-kube", false).await;
    world.emulator.inject(FaultRule {
        method: Some("POST".into()),
        path: Some("/jobs".into()),
        ..FaultRule::always(Fault::Latency { ms: 5000 })
    });
    let runs = world.create_runs(scale.runs);
    let started = Instant::now();
    let agent = world.agent(
        "term-kube",
        &["--submission-limit", "8", "--shutdown-grace", "3s"],
    );
    wait_for_claims(&world, &runs, 8).await;
    agent.stop().await;
    world.emulator.clear_faults();
    world.finish_with_a_clean_agent(&runs).await;
    let mut tally = world
        .tally("SIGTERM, slow Kubernetes", &runs, started)
        .await;
    tally.interruptions = 1;
    tally
}

fn axum_method(name: &str) -> axum::http::Method {
    name.parse().unwrap()
}

/// Waits until at least `n` of `runs` left SCHEDULED (or 60 s).
async fn wait_for_claims(world: &World, runs: &[String], n: usize) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let claimed = world
            .states(runs)
            .values()
            .filter(|(state, _)| state != "SCHEDULED")
            .count();
        if claimed >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The soak: one agent, `runs` runs in batches of `batch`, every Job completed and its run
/// marked COMPLETED (as a flow's engine would), the janitor deleting finished Jobs. Returns
/// the agent's RSS (KiB) after each batch.
pub async fn soak(runs: usize, batch: usize) -> Vec<(usize, u64)> {
    let world = World::new("faults-soak", false).await;
    let mut agent = world.agent(
        "soak",
        &[
            "--limit",
            "16",
            "--poll-interval",
            "200ms",
            "--delete-succeeded-after",
            "0s",
        ],
    );
    let pid = agent.child.id().unwrap();
    let mut samples = Vec::new();
    let mut done = 0;
    while done < runs {
        let ids = world.create_runs(batch.min(runs - done));
        // Each run's Job is created, then completes; the run is then COMPLETED.
        let mut open: Vec<String> = ids.clone();
        let started = Instant::now();
        while !open.is_empty() && started.elapsed() < Duration::from_secs(300) {
            agent.assert_running();
            let states = world.states(&open);
            for (id, (_, pid)) in states {
                if pid.is_some() {
                    world.prefect.call(
                        "POST",
                        &format!("/flow_runs/{id}/set_state"),
                        Some(json!({"state": {"type": "COMPLETED"}, "force": true})),
                    );
                    open.retain(|o| *o != id);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        done += ids.len();
        samples.push((done, rss_kib(pid)));
    }
    agent.stop().await;
    samples
}

/// The process's resident memory in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The least-squares slope of `samples` (KiB per run), over the second half (after warm-up).
pub fn slope(samples: &[(usize, u64)]) -> f64 {
    let half = &samples[samples.len() / 2..];
    let n = half.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_x = half.iter().map(|(x, _)| *x as f64).sum::<f64>() / n;
    let mean_y = half.iter().map(|(_, y)| *y as f64).sum::<f64>() / n;
    let covariance: f64 = half
        .iter()
        .map(|(x, y)| (*x as f64 - mean_x) * (*y as f64 - mean_y))
        .sum();
    let variance: f64 = half.iter().map(|(x, _)| (*x as f64 - mean_x).powi(2)).sum();
    covariance / variance
}
