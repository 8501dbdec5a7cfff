//! The fault suite at full size (500 runs, 40+ kills, a 60 s Prefect outage, 20% Kubernetes
//! faults, SIGTERM mid-submission) and the soak (`FAULTS_SOAK_RUNS`, default 20,000, in
//! batches of 250, with the janitor): prints the table of what became of every run and the
//! soak's RSS over runs with its slope.
//!
//! `cargo bench -p agent --bench faults` (`FAULTS_ONLY=kill|outage|kube|term|soak` for one).

#[path = "../tests/fault_suite/mod.rs"]
mod fault_suite;

use fault_suite::{Scale, Tally};

fn wanted(name: &str) -> bool {
    std::env::var("FAULTS_ONLY").map_or(true, |only| only.split(',').any(|o| o == name))
}

#[tokio::main]
async fn main() {
    let scale = Scale::full();
    let mut rows = Vec::new();
    if wanted("kill") {
        rows.push(fault_suite::kill_loop(scale, false).await);
    }
    if wanted("outage") {
        rows.push(fault_suite::prefect_outage(scale).await);
    }
    if wanted("kube") {
        rows.push(fault_suite::kubernetes_faults(scale).await);
    }
    if wanted("term") {
        rows.push(fault_suite::sigterm_slow_prefect(scale).await);
        rows.push(fault_suite::sigterm_slow_kubernetes(scale).await);
    }
    if !rows.is_empty() {
        println!("{}", Tally::header());
        for row in &rows {
            println!("{}", row.row());
        }
    }
    if wanted("soak") {
        let runs = std::env::var("FAULTS_SOAK_RUNS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        let samples = fault_suite::soak(runs, 250).await;
        println!("\nsoak: runs → agent RSS");
        for (runs, kib) in &samples {
            println!("{runs:>7} runs  {:.1} MiB", *kib as f64 / 1024.0);
        }
        println!(
            "slope over the second half: {:.3} KiB per run",
            fault_suite::slope(&samples)
        );
    }
}
