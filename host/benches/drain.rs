//! Throughput of `agent start`: drain N scheduled runs (default 1000, `DRAIN_RUNS`) of a real
//! Prefect server into the Kubernetes API emulator with one agent, and, side by side in the same
//! run, the floor: the same Prefect calls per run (claim, read deployment and flow, record the
//! Job, log) made by a bare HTTP client with the same concurrency and no agent logic. Prints
//! runs/s for both and their ratio, p50/p99 claim-to-submitted latency, and the agent's peak RSS.
//!
//! `cargo bench -p agent --bench drain`

mod common;

use agent_tests::prefect::PrefectServer;
use serde_json::json;
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 8;

fn runs_wanted() -> usize {
    std::env::var("DRAIN_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

fn percentile(mut samples: Vec<f64>, p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn timestamp(text: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros() as f64 / 1e6)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let n = runs_wanted();
    let prefect = tokio::task::spawn_blocking(PrefectServer::dedicated)
        .await
        .unwrap();
    let emulator = common::fast_emulator().await;

    // The agent.
    prefect.create_pool("bench", json!({}));
    let deployment =
        prefect.create_deployment("bench", "etl", "bench", json!({"image": "busybox"}));
    let runs: Vec<String> = (0..n)
        .map(|_| prefect.create_run(&deployment, json!({})))
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let agent = std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        // Default flags: --submission-limit is 8, as the floor's concurrency.
        .args(["start", "--pool", "bench"])
        .env("KUBECONFIG", emulator.kubeconfig())
        .env("PREFECT_API_URL", &prefect.api_url)
        .env("AGENT_PLUGIN_CACHE", cache.path())
        .env("AGENT_LOG", "warn")
        .spawn()
        .unwrap();
    let pid = agent.id();
    let mut peak_kib = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let hwm = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        let pending = prefect.call("POST", "/flow_runs/count", Some(json!({"flow_runs": {"state": {"type": {"any_": ["PENDING"]}}, "deployment_id": {"any_": [deployment]}}})));
        if pending.as_u64() == Some(n as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let agent_time = started.elapsed();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let _ = tokio::task::spawn_blocking(move || {
        let mut agent = agent;
        agent.wait()
    })
    .await;

    // Claim-to-submitted latency: the PENDING state's time to the "Submitted" log line's time.
    let mut latencies = Vec::new();
    for run in runs.iter().step_by((n / 200).max(1)) {
        let state = prefect.flow_run(run);
        let claimed = timestamp(state["state"]["timestamp"].as_str().unwrap_or(""));
        let logs = prefect.call(
            "POST",
            "/logs/filter",
            Some(json!({"logs": {"flow_run_id": {"any_": [run]}}})),
        );
        if let Some(submitted) = logs.as_array().and_then(|l| {
            l.iter().find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Submitted"))
            })
        }) {
            latencies.push((timestamp(submitted["timestamp"].as_str().unwrap()) - claimed) * 1e3);
        }
    }

    // The floor: the same Prefect calls per run, nothing else.
    prefect.create_pool("floor", json!({}));
    let floor_deployment =
        prefect.create_deployment("floor", "etl-floor", "floor", json!({"image": "busybox"}));
    for _ in 0..n {
        prefect.create_run(&floor_deployment, json!({}));
    }
    let started = Instant::now();
    agent_tests::floor::drain(&prefect.api_url, "floor", CONCURRENCY).await;
    let floor_time = started.elapsed();

    let agent_rate = n as f64 / agent_time.as_secs_f64();
    let floor_rate = n as f64 / floor_time.as_secs_f64();
    println!(
        "{n} runs, concurrency {CONCURRENCY}, Prefect {} on SQLite, Kubernetes API emulator",
        prefect.call("GET", "/admin/version", None)
    );
    println!(
        "agent: {:.1} s, {agent_rate:.1} runs/s; claim-to-submitted p50 {:.0} ms, p99 {:.0} ms; peak RSS {:.0} MiB",
        agent_time.as_secs_f64(),
        percentile(latencies.clone(), 50.0),
        percentile(latencies, 99.0),
        peak_kib as f64 / 1024.0
    );
    println!(
        "floor (same Prefect calls, bare HTTP): {:.1} s, {floor_rate:.1} runs/s",
        floor_time.as_secs_f64()
    );
    println!("agent / floor throughput: {:.2}", agent_rate / floor_rate);
}
