//! Production scale: a Prefect server on PostgreSQL (a throw-away cluster), `SCALE_RUNS` runs
//! (default 10,000) scheduled now, drained at default flags by one agent, then by three
//! replicas on one pool, then by the bare-client floor (`agent_tests::floor`), each on a pool of
//! its own, side by side in one run. Per configuration: Jobs per second, time to the last Job,
//! Prefect requests per Job and 503s (a counting proxy in front of the server), the agents'
//! peak RSS and CPU seconds, and duplicate Jobs (must be 0). Runs are created 16 at a time
//! before each drain starts, and only the drain is timed.
//!
//! Where the CPU goes during each drain: the agents (rusage), this process (the emulator, the
//! counting proxy and the Job watch), and the rest of the machine (Prefect's server and
//! PostgreSQL), from `/proc/stat`. `SCALE_PROFILE=FILE` also records the first agent of each
//! drain with `perf record`, into `FILE.1` and `FILE.3` (read one with `perf report -i FILE.1
//! --sort dso,symbol`).
//!
//! `cargo bench -p agent --bench scale`; `SCALE_RUNS=1000` for a quick look;
//! `SCALE_CONFIGS=3,floor` for some of the drains.

mod common;

use agent_tests::prefect::{Database, PrefectServer};
use agent_tests::proxy::Proxy;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::watcher;
use kube_emulator::Emulator;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Jobs seen per flow run, and when the latest first appeared.
#[derive(Default)]
struct Seen {
    jobs_per_run: HashMap<String, u32>,
    last_new: Option<Instant>,
}

struct Outcome {
    what: String,
    seconds: f64,
    jobs: usize,
    duplicates: usize,
    requests: u64,
    unavailable: u64,
    peak_rss_mib: Option<f64>,
    cpu_seconds: Option<f64>,
    cpu: CpuShare,
}

impl Outcome {
    /// One line as soon as the drain is over (a long run can be read before it ends).
    fn summary(&self) -> String {
        format!(
            "{}: {} Jobs in {:.0} s, {} duplicates, {} Prefect requests, {} 503s, agents' CPU {:?} s, peak RSS {:?} MiB, machine CPU {:.0} s, bench CPU {:.0} s",
            self.what,
            self.jobs,
            self.seconds,
            self.duplicates,
            self.requests,
            self.unavailable,
            self.cpu_seconds.map(|c| c.round()),
            self.peak_rss_mib.map(|m| m.round()),
            self.cpu.machine,
            self.cpu.bench
        )
    }
}

/// CPU seconds spent during a drain: the whole machine and this bench process.
#[derive(Default, Clone, Copy)]
struct CpuShare {
    machine: f64,
    bench: f64,
}

/// CPU seconds used so far by the machine (all cores, busy time) and by this process.
fn cpu_now() -> CpuShare {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: f64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        // user nice system idle iowait irq softirq steal: everything but idle and iowait.
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, t)| t.parse::<f64>().ok())
        .sum();
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: fills in the local above for this process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    CpuShare {
        machine: ticks / hz,
        bench: seconds(usage.ru_utime) + seconds(usage.ru_stime),
    }
}

fn cpu_since(start: CpuShare) -> CpuShare {
    let now = cpu_now();
    CpuShare {
        machine: now.machine - start.machine,
        bench: now.bench - start.bench,
    }
}

/// Records `pid` with `perf record` into `SCALE_PROFILE.suffix` until the returned child is
/// interrupted.
fn profile(pid: u32, suffix: usize) -> Option<std::process::Child> {
    let file = format!("{}.{suffix}", std::env::var("SCALE_PROFILE").ok()?);
    std::process::Command::new("perf")
        .args(["record", "-F", "499", "-o", &file, "-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .inspect_err(|e| eprintln!("SCALE_PROFILE: cannot start perf: {e}"))
        .ok()
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("SCALE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let prefect = tokio::task::spawn_blocking(|| PrefectServer::on(Database::Postgres))
        .await
        .unwrap();
    let emulator = common::fast_emulator().await;
    let seen = watch_jobs(&emulator).await;
    println!(
        "{runs} runs, Prefect {} on PostgreSQL, Kubernetes API emulator",
        prefect.call("GET", "/admin/version", None)
    );
    let prefect = Arc::new(prefect);
    // `SCALE_CONFIGS=3,floor` runs some of the drains (`1`, `3`, `floor`; all by default).
    let configs = std::env::var("SCALE_CONFIGS").unwrap_or_else(|_| "1,3,floor".into());
    let mut outcomes = Vec::new();
    for config in configs.split(',') {
        let outcome = match config.trim() {
            "floor" => drain_with_floor(&prefect, runs).await,
            replicas => {
                let replicas = replicas.parse().expect("SCALE_CONFIGS: 1, 3 or floor");
                drain_with_agents(&prefect, &emulator, &seen, runs, replicas).await
            }
        };
        eprintln!("{}", outcome.summary());
        outcomes.push(outcome);
    }
    report(&outcomes);
}

async fn watch_jobs(emulator: &Emulator) -> Arc<Mutex<Seen>> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(emulator.kubeconfig()).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let api: kube::Api<Job> = kube::Api::all(kube::Client::try_from(config).unwrap());
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let mut names: std::collections::HashSet<String> = Default::default();
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) = event else {
                continue;
            };
            let name = job.metadata.name.clone().unwrap_or_default();
            let Some(run) = common::flow_run_of(&job) else {
                continue;
            };
            if names.insert(name) {
                let mut seen = record.lock().unwrap();
                *seen.jobs_per_run.entry(run.clone()).or_default() += 1;
                seen.last_new = Some(Instant::now());
            }
        }
    });
    seen
}

/// Runs of a fresh pool of their own; the pool's name and the run ids.
async fn backlog(prefect: &Arc<PrefectServer>, pool: &str, runs: usize) -> Vec<String> {
    let (prefect, pool) = (prefect.clone(), pool.to_string());
    tokio::task::spawn_blocking(move || {
        prefect.create_pool(&pool, json!({}));
        let deployment = prefect.create_deployment(
            &pool,
            &format!("{pool}-flow"),
            &pool,
            json!({"image": "busybox"}),
        );
        let started = Instant::now();
        let ids = prefect.create_runs(&deployment, runs, 16);
        eprintln!(
            "{pool}: {runs} runs created in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        ids
    })
    .await
    .unwrap()
}

/// Waits until every run has a Job, or nothing new came for a minute; the time of the last new
/// Job after `started`.
async fn until_drained(seen: &Mutex<Seen>, ids: &[String], started: Instant) -> f64 {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (done, last) = {
            let seen = seen.lock().unwrap();
            let done = ids
                .iter()
                .filter(|id| seen.jobs_per_run.contains_key(*id))
                .count();
            // A Job of an earlier drain is not progress of this one.
            (done, seen.last_new.filter(|t| *t >= started))
        };
        let stalled = last.is_some_and(|t| t.elapsed() > Duration::from_secs(60))
            || (last.is_none() && started.elapsed() > Duration::from_secs(120));
        if done == ids.len() || stalled {
            if done < ids.len() {
                eprintln!("stalled with {done} of {} runs drained", ids.len());
            }
            return last.map_or(0.0, |t| t.duration_since(started).as_secs_f64());
        }
    }
}

async fn drain_with_agents(
    prefect: &Arc<PrefectServer>,
    emulator: &Emulator,
    seen: &Mutex<Seen>,
    runs: usize,
    replicas: usize,
) -> Outcome {
    let pool = format!("scale-{replicas}");
    let ids = backlog(prefect, &pool, runs).await;
    let proxy = Proxy::start(&prefect.api_url.replace("/api", "")).await;
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let cpu_start = cpu_now();
    let agents: Vec<std::process::Child> = (0..replicas)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
                .args(["start", "--pool", &pool, "--name", &format!("{pool}-{i}")])
                .env("KUBECONFIG", emulator.kubeconfig())
                .env("PREFECT_API_URL", proxy.url("/api"))
                .env("AGENT_PLUGIN_CACHE", cache.path())
                .env("AGENT_LOG", "warn")
                .spawn()
                .unwrap()
        })
        .collect();
    let perf = profile(agents[0].id(), replicas);
    let seconds = until_drained(seen, &ids, started).await;
    let cpu = cpu_since(cpu_start);
    if let Some(perf) = perf {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait_with_output();
    }
    let mut peak = 0u64;
    let mut cpu_of_agents = Duration::ZERO;
    for agent in agents {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &agent.id().to_string()])
            .status();
        let usage = tokio::task::spawn_blocking(move || agent_tests::wait_with_usage(agent))
            .await
            .unwrap();
        peak = peak.max(usage.max_rss_kib);
        cpu_of_agents += usage.cpu;
    }
    let (jobs, duplicates) = {
        let seen = seen.lock().unwrap();
        let counts: Vec<u32> = ids
            .iter()
            .filter_map(|id| seen.jobs_per_run.get(id).copied())
            .collect();
        (counts.len(), counts.iter().filter(|&&n| n > 1).count())
    };
    Outcome {
        what: if replicas == 1 {
            "1 agent".into()
        } else {
            format!("{replicas} replicas")
        },
        seconds,
        jobs,
        duplicates,
        requests: proxy.total(),
        unavailable: proxy.statuses().get(&503).copied().unwrap_or(0),
        peak_rss_mib: Some(peak as f64 / 1024.0),
        cpu_seconds: Some(cpu_of_agents.as_secs_f64()),
        cpu,
    }
}

async fn drain_with_floor(prefect: &Arc<PrefectServer>, runs: usize) -> Outcome {
    let pool = "scale-floor";
    backlog(prefect, pool, runs).await;
    let proxy = Proxy::start(&prefect.api_url.replace("/api", "")).await;
    let started = Instant::now();
    let cpu_start = cpu_now();
    let claimed = agent_tests::floor::drain(&proxy.url("/api"), pool, 8).await;
    let cpu = cpu_since(cpu_start);
    Outcome {
        what: "floor (bare client, 8 at a time)".into(),
        seconds: started.elapsed().as_secs_f64(),
        jobs: claimed,
        duplicates: 0,
        requests: proxy.total(),
        unavailable: proxy.statuses().get(&503).copied().unwrap_or(0),
        peak_rss_mib: None,
        cpu_seconds: None,
        cpu,
    }
}

fn report(outcomes: &[Outcome]) {
    println!(
        "\n| | Jobs/s | time to the last Job | Prefect requests per Job | 503s | peak RSS | CPU s (per 1,000 Jobs) | duplicates |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let per_job = o.requests as f64 / o.jobs.max(1) as f64;
        println!(
            "| {} | {:.1} | {:.0} s ({} Jobs) | {per_job:.2} | {} | {} | {} | {} |",
            o.what,
            o.jobs as f64 / o.seconds.max(0.001),
            o.seconds,
            o.jobs,
            o.unavailable,
            o.peak_rss_mib.map_or("–".into(), |m| format!("{m:.0} MiB")),
            o.cpu_seconds.map_or("–".into(), |c| format!(
                "{c:.1} ({:.2})",
                c * 1000.0 / o.jobs.max(1) as f64
            )),
            o.duplicates
        );
    }
    println!(
        "\n| CPU seconds per 1,000 Jobs | agents | bench (emulator, proxy, watch; floor: its client too) | Prefect + PostgreSQL (the rest of the machine) | machine busy / wall |"
    );
    println!("|---|---|---|---|---|");
    for o in outcomes {
        let per = |c: f64| c * 1000.0 / o.jobs.max(1) as f64;
        let agents = o.cpu_seconds.unwrap_or(0.0);
        let rest = (o.cpu.machine - o.cpu.bench - agents).max(0.0);
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2} |",
            o.what,
            o.cpu_seconds
                .map_or("–".into(), |c| format!("{:.1}", per(c))),
            per(o.cpu.bench),
            per(rest),
            o.cpu.machine / o.seconds.max(0.001)
        );
    }
    let of = |what: &str| outcomes.iter().find(|o| o.what.starts_with(what));
    if let (Some(one), Some(three), Some(floor)) = (of("1 agent"), of("3 replicas"), of("floor")) {
        let rate = |o: &Outcome| o.jobs as f64 / o.seconds.max(0.001);
        println!(
            "\n3 replicas / 1 agent: {:.2}; 1 agent / floor: {:.2}; 3 replicas / floor: {:.2}",
            rate(three) / rate(one),
            rate(one) / rate(floor),
            rate(three) / rate(floor)
        );
    }
}
