//! Side by side in one run, on one Prefect server and one Kubernetes API emulator: the agent
//! at its default flags, Prefect's own Python worker (`prefect worker start --type kubernetes`
//! from the test venv) at its defaults, and the bare-client floor (`agent_tests::floor`). For
//! each:
//! - scheduled → Job created, for runs created now and for runs scheduled 15–120 s ahead
//!   (the Job's time minus the run's scheduled time: negative is early, by the prefetch);
//! - CANCELLING → Job deleted;
//! - a backlog of runs scheduled now (`COMPARE_BACKLOG`, default 1000), at default flags and at
//!   `--limit 32`: runs/s, requests per Job, runs crashed;
//! - idle requests per minute to the Prefect API (counted by a proxy in front of the server)
//!   and to the Kubernetes API (counted by the emulator) over `COMPARE_IDLE_SECONDS` (120).
//!
//! Job times come from a watch on the emulator's Jobs, by their `prefect.io/flow-run-id` label.
//! `cargo bench -p agent --bench compare`; `COMPARE_ONLY=agent` (or `python`, `floor`,
//! or a list: `agent,floor`) runs only those.

mod common;

use agent_tests::prefect::PrefectServer;
use agent_tests::proxy::Proxy;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::watcher;
use kube_emulator::{Behaviour, Config, Emulator, Match, PodRule};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs created now, one at a time, for the latency figure.
const NOW_RUNS: usize = 20;
/// Runs scheduled 15–120 s ahead.
const AHEAD_RUNS: usize = 10;
/// Runs cancelled while their pods run.
const CANCEL_RUNS: usize = 10;
/// The floor's concurrency: the agent's default --submission-limit.
const FLOOR_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Contender {
    Agent,
    Python,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Agent => "agent",
            Contender::Python => "python",
        }
    }
}

/// When the bench saw each flow run's Job created and deleted.
#[derive(Default, Clone, Copy)]
struct Seen {
    created: Option<DateTime<Utc>>,
    deleted: Option<DateTime<Utc>>,
}

type Jobs = Arc<Mutex<HashMap<String, Seen>>>;

struct Bench {
    prefect: PrefectServer,
    emulator: Emulator,
    jobs: Jobs,
    dir: tempfile::TempDir,
}

/// Latencies in seconds.
#[derive(Default)]
struct Latency(Vec<f64>);

impl Latency {
    fn show(&self) -> String {
        if self.0.is_empty() {
            return "–".into();
        }
        let mut samples = self.0.clone();
        samples.sort_by(f64::total_cmp);
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        format!(
            "{:.2} / {:.2} / {:.2} s",
            at(0.5),
            at(0.99),
            samples[samples.len() - 1]
        )
    }
}

#[derive(Default)]
struct Backlog {
    seconds: f64,
    jobs: usize,
    crashed: u64,
    prefect_requests: u64,
    breakdown: BTreeMap<String, u64>,
}

impl Backlog {
    fn rate(&self) -> f64 {
        self.jobs as f64 / self.seconds
    }

    fn show(&self) -> String {
        if self.jobs == 0 {
            return "–".into();
        }
        format!(
            "{:.1} runs/s ({:.0} s, {:.1} Prefect requests per Job, {} crashed)",
            self.rate(),
            self.seconds,
            self.prefect_requests as f64 / self.jobs as f64,
            self.crashed
        )
    }
}

#[derive(Default)]
struct Figures {
    now: Latency,
    ahead: Latency,
    cancel: Latency,
    idle_prefect: f64,
    idle_kubernetes: f64,
    idle_breakdown: BTreeMap<String, u64>,
    backlog: Backlog,
    backlog_limit: Backlog,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let only = std::env::var("COMPARE_ONLY").ok();
    let runs = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|o| o == name))
    };
    let backlog = env_number("COMPARE_BACKLOG", 1000) as usize;
    let idle = Duration::from_secs(env_number("COMPARE_IDLE_SECONDS", 120));

    let prefect = tokio::task::spawn_blocking(PrefectServer::dedicated)
        .await
        .unwrap();
    let emulator = Emulator::start(Config {
        time_scale: 0.01,
        pods: vec![PodRule {
            matches: Match {
                image: Some("registry.example.com/long*".into()),
                ..Match::default()
            },
            // An hour of the emulator's time, scaled down a hundredfold: longer than the bench.
            then: Behaviour::Succeed {
                run_ms: 360_000_000,
            },
            log: Vec::new(),
        }],
        ..Config::default()
    })
    .await
    .unwrap();
    let bench = Bench {
        jobs: watch_jobs(&emulator).await,
        prefect,
        emulator,
        dir: tempfile::tempdir().unwrap(),
    };
    println!(
        "Prefect {} on SQLite, Kubernetes API emulator; backlog {backlog} runs, idle {} s",
        bench.prefect.call("GET", "/admin/version", None),
        idle.as_secs()
    );

    let mut figures: Vec<(&str, Figures)> = Vec::new();
    for contender in [Contender::Agent, Contender::Python] {
        if !runs(contender.name()) {
            continue;
        }
        eprintln!("== {}", contender.name());
        let mut measured = bench.live(contender, idle).await;
        measured.backlog = bench.backlog(contender, backlog, &[]).await;
        measured.backlog_limit = bench.backlog(contender, backlog, &["--limit", "32"]).await;
        figures.push((contender.name(), measured));
    }
    if runs("floor") {
        eprintln!("== floor");
        let floor = Figures {
            backlog: bench.floor(backlog).await,
            ..Figures::default()
        };
        figures.push(("floor", floor));
    }
    report(&figures);
}

/// Records when each flow run's Job appears and goes.
async fn watch_jobs(emulator: &Emulator) -> Jobs {
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(emulator.kubeconfig()).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let jobs: Jobs = Arc::default();
    let seen = jobs.clone();
    let api: kube::Api<Job> = kube::Api::all(client);
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let now = Utc::now();
            let (job, deleted) = match event {
                Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => (job, false),
                Ok(watcher::Event::Delete(job)) => (job, true),
                _ => continue,
            };
            let Some(run) = common::flow_run_of(&job) else {
                continue;
            };
            let mut seen = seen.lock().unwrap();
            let entry = seen.entry(run.clone()).or_default();
            entry.created.get_or_insert(now);
            if deleted {
                entry.deleted.get_or_insert(now);
            }
        }
    });
    jobs
}

/// A contender's process, its log in a file.
struct Running {
    child: std::process::Child,
}

impl Running {
    fn start(
        contender: Contender,
        pool: &str,
        api: &str,
        kubeconfig: &Path,
        extra: &[&str],
        dir: &Path,
    ) -> Running {
        let home = tempfile::tempdir_in(dir).unwrap().keep();
        let log = std::fs::File::create(home.join("log")).unwrap();
        let mut command = match contender {
            Contender::Agent => {
                let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agent"));
                command
                    .args(["start", "--pool", pool])
                    .env("AGENT_PLUGIN_CACHE", home.join("cache"))
                    .env("AGENT_LOG", "warn");
                command
            }
            Contender::Python => {
                let mut command = std::process::Command::new(agent_tests::venv_command("prefect"));
                command
                    .args(["worker", "start", "--type", "kubernetes", "--pool", pool])
                    .env("PREFECT_HOME", &home);
                command
            }
        };
        let child = command
            .args(extra)
            .env("PREFECT_API_URL", api)
            .env("KUBECONFIG", kubeconfig)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Running { child }
    }

    /// SIGTERM, then SIGKILL after 30 s.
    async fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let started = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Bench {
    fn pool(&self, name: &str) -> (String, String) {
        self.prefect
            .create_pool(name, agent::stock::stock_template());
        let etl = self.prefect.create_deployment(
            name,
            &format!("{name}-etl"),
            name,
            json!({"image": "registry.example.com/etl:1"}),
        );
        let long = self.prefect.create_deployment(
            name,
            &format!("{name}-long"),
            &format!("{name}-long"),
            json!({"image": "registry.example.com/long:1"}),
        );
        (etl, long)
    }

    fn seen(&self, run: &str) -> Seen {
        self.jobs
            .lock()
            .unwrap()
            .get(run)
            .copied()
            .unwrap_or_default()
    }

    /// Waits until `done` holds for the run's Job, up to `within`; the time it held.
    async fn until(
        &self,
        run: &str,
        within: Duration,
        done: impl Fn(Seen) -> Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(at) = done(self.seen(run)) {
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    fn schedule(&self, deployment: &str, at: DateTime<Utc>) -> String {
        self.prefect.call(
            "POST",
            &format!("/deployments/{deployment}/create_flow_run"),
            Some(json!({"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at.to_rfc3339()}}})),
        )["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Idle load, latencies and cancellation, with one process of the contender.
    async fn live(&self, contender: Contender, idle: Duration) -> Figures {
        let pool = format!("{}-live", contender.name());
        let (etl, long) = self.pool(&pool);
        let proxy = Proxy::start(&self.prefect.api_url.replace("/api", "")).await;
        let process = Running::start(
            contender,
            &pool,
            &proxy.url("/api"),
            self.emulator.kubeconfig(),
            &[],
            self.dir.path(),
        );
        let mut figures = Figures::default();
        // Started and settled (Prefect's worker takes a few seconds to import).
        tokio::time::sleep(Duration::from_secs(20)).await;

        eprintln!("idle for {} s", idle.as_secs());
        proxy.reset_counts();
        self.emulator.reset_requests();
        tokio::time::sleep(idle).await;
        let minutes = idle.as_secs_f64() / 60.0;
        figures.idle_prefect = proxy.total() as f64 / minutes;
        figures.idle_breakdown = proxy.counts();
        let kubernetes = self.emulator.requests();
        figures.idle_kubernetes = kubernetes.values().sum::<u64>() as f64 / minutes;
        for (kind, count) in kubernetes {
            figures
                .idle_breakdown
                .insert(format!("kubernetes: {kind}"), count);
        }

        eprintln!("latency");
        let ahead: Vec<(String, DateTime<Utc>)> = (0..AHEAD_RUNS)
            .map(|_| {
                let at =
                    Utc::now() + chrono::TimeDelta::milliseconds(fastrand::i64(15_000..=120_000));
                (self.schedule(&etl, at), at)
            })
            .collect();
        for _ in 0..NOW_RUNS {
            let created = Utc::now();
            let run = self.prefect.create_run(&etl, json!({}));
            if let Some(at) = self
                .until(&run, Duration::from_secs(60), |s| s.created)
                .await
            {
                figures.now.0.push(seconds(at - created));
            }
            tokio::time::sleep(Duration::from_millis(fastrand::u64(500..1500))).await;
        }

        eprintln!("cancellation");
        for _ in 0..CANCEL_RUNS {
            let run = self.prefect.create_run(&long, json!({}));
            if self
                .until(&run, Duration::from_secs(60), |s| s.created)
                .await
                .is_none()
            {
                continue;
            }
            // Let the pod start and the contender record the Job.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let asked = Utc::now();
            self.prefect.call(
                "POST",
                &format!("/flow_runs/{run}/set_state"),
                Some(json!({"state": {"type": "CANCELLING"}, "force": true})),
            );
            match self
                .until(&run, Duration::from_secs(120), |s| s.deleted)
                .await
            {
                Some(at) => figures.cancel.0.push(seconds(at - asked)),
                None => {
                    // A contender that does not delete a cancelled run's Job will not for the
                    // next one either: 120 s more each would only lengthen the bench.
                    eprintln!("the Job of cancelled run {run} was not deleted within 120 s");
                    break;
                }
            }
        }

        for (run, at) in ahead {
            let left = (at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(30);
            if let Some(created) = self.until(&run, left, |s| s.created).await {
                figures.ahead.0.push(seconds(created - at));
            }
        }
        process.stop().await;
        figures
    }

    /// Drains `n` runs scheduled now with a fresh process of the contender.
    async fn backlog(&self, contender: Contender, n: usize, extra: &[&str]) -> Backlog {
        let pool = format!("{}-backlog{}", contender.name(), extra.join(""));
        let (etl, _) = self.pool(&pool);
        eprintln!("backlog of {n} {}", extra.join(" "));
        let runs: Vec<String> = (0..n)
            .map(|_| self.prefect.create_run(&etl, json!({})))
            .collect();
        let proxy = Proxy::start(&self.prefect.api_url.replace("/api", "")).await;
        let started = Utc::now();
        let process = Running::start(
            contender,
            &pool,
            &proxy.url("/api"),
            self.emulator.kubeconfig(),
            extra,
            self.dir.path(),
        );
        // Until every run has a Job or crashed, or nothing changed for a minute.
        let mut last = (u64::MAX, 0);
        let mut changed = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let scheduled = self.count(&etl, "SCHEDULED");
            let with_job = runs
                .iter()
                .filter(|r| self.seen(r).created.is_some())
                .count();
            if (scheduled == 0 && with_job + self.count(&etl, "CRASHED") as usize >= n)
                || changed.elapsed() > Duration::from_secs(60)
            {
                break;
            }
            if (scheduled, with_job) != last {
                last = (scheduled, with_job);
                changed = Instant::now();
            }
        }
        process.stop().await;
        let times: Vec<DateTime<Utc>> = runs.iter().filter_map(|r| self.seen(r).created).collect();
        let last = times.iter().max().copied().unwrap_or(started);
        Backlog {
            seconds: seconds(last - started),
            jobs: times.len(),
            crashed: self.count(&etl, "CRASHED"),
            prefect_requests: proxy.total(),
            breakdown: proxy.counts(),
        }
    }

    async fn floor(&self, n: usize) -> Backlog {
        let pool = "floor-backlog";
        let (etl, _) = self.pool(pool);
        for _ in 0..n {
            self.prefect.create_run(&etl, json!({}));
        }
        let proxy = Proxy::start(&self.prefect.api_url.replace("/api", "")).await;
        let started = Instant::now();
        let claimed = agent_tests::floor::drain(&proxy.url("/api"), pool, FLOOR_CONCURRENCY).await;
        Backlog {
            seconds: started.elapsed().as_secs_f64(),
            jobs: claimed,
            crashed: 0,
            prefect_requests: proxy.total(),
            breakdown: proxy.counts(),
        }
    }

    fn count(&self, deployment: &str, state: &str) -> u64 {
        self.prefect
            .call(
                "POST",
                "/flow_runs/count",
                Some(json!({"flow_runs": {"state": {"type": {"any_": [state]}}, "deployment_id": {"any_": [deployment]}}})),
            )
            .as_u64()
            .unwrap_or(0)
    }
}

fn seconds(delta: chrono::TimeDelta) -> f64 {
    delta.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

fn report(figures: &[(&str, Figures)]) {
    let row = |what: &str, cell: &dyn Fn(&Figures) -> String| {
        let cells: Vec<String> = figures.iter().map(|(_, f)| cell(f)).collect();
        println!("| {what} | {} |", cells.join(" | "));
    };
    let names: Vec<&str> = figures.iter().map(|(n, _)| *n).collect();
    println!("\n| | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    row("created now → Job, p50 / p99 / max", &|f| f.now.show());
    row(
        "scheduled 15–120 s ahead: Job − scheduled time, p50 / p99 / max",
        &|f| f.ahead.show(),
    );
    row("CANCELLING → Job deleted, p50 / p99 / max", &|f| {
        f.cancel.show()
    });
    row("backlog at default flags", &|f| f.backlog.show());
    row("backlog at --limit 32", &|f| f.backlog_limit.show());
    row("idle Prefect requests per minute", &|f| {
        if f.idle_breakdown.is_empty() {
            "–".into()
        } else {
            format!("{:.1}", f.idle_prefect)
        }
    });
    row("idle Kubernetes requests per minute", &|f| {
        if f.idle_breakdown.is_empty() {
            "–".into()
        } else {
            format!("{:.1}", f.idle_kubernetes)
        }
    });

    let get = |name: &str| figures.iter().find(|(n, _)| *n == name).map(|(_, f)| f);
    if let (Some(agent), Some(floor)) = (get("agent"), get("floor")) {
        println!(
            "\nbacklog, agent / floor: {:.2}",
            agent.backlog.rate() / floor.backlog.rate()
        );
    }
    if let (Some(agent), Some(python)) = (get("agent"), get("python")) {
        println!(
            "backlog, agent / Python worker: {:.2} (at --limit 32: {:.2})",
            agent.backlog.rate() / python.backlog.rate(),
            agent.backlog_limit.rate() / python.backlog_limit.rate()
        );
        println!(
            "idle Prefect requests, agent / Python worker: {:.2}",
            agent.idle_prefect / python.idle_prefect
        );
    }
    for (name, f) in figures {
        if !f.idle_breakdown.is_empty() {
            println!("\n{name}, idle requests in the window:");
            for (request, count) in &f.idle_breakdown {
                println!("  {count:5}  {request}");
            }
        }
        if f.backlog.jobs > 0 {
            println!("{name}, backlog requests per Job:");
            for (request, count) in &f.backlog.breakdown {
                println!("  {:6.2}  {request}", *count as f64 / f.backlog.jobs as f64);
            }
        }
    }
}
