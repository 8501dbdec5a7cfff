//! What the benches share: the example flow run's request, percentiles, how times print.
#![allow(dead_code)]

use agent::assemble::agent_settings;
use agent::cli::AgentArgs;
use agent::plugins::Request;
use agent::prefect::models::RunContext;
use agent::request::build_request;
use agent::settings::JobDefaults;
use agent::stock::stock_template;
use clap::Parser;
use std::time::Duration;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    agent: AgentArgs,
}

/// The request for `examples/flow-runs/etl-nightly.json`, changed by `edit` first.
pub fn example_request(edit: impl FnOnce(&mut serde_json::Value)) -> Request {
    let root = agent_tests::workspace_root();
    let mut run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/flow-runs/etl-nightly.json")).unwrap(),
    )
    .unwrap();
    edit(&mut run);
    let run: RunContext = serde_json::from_value(run).unwrap();
    let agent = Args::parse_from(["bench", "--api-url", "http://prefect:4200/api"]).agent;
    build_request(
        &run,
        agent_settings(&JobDefaults::from_args(&agent), Some("3.8.8".into())),
        &Default::default(),
        &stock_template(),
    )
}

pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p / 100.0).round() as usize]
}

pub fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The Kubernetes API emulator with pods that run a hundred times faster than their spec says.
pub async fn fast_emulator() -> kube_emulator::Emulator {
    kube_emulator::Emulator::start(kube_emulator::Config {
        time_scale: 0.01,
        ..kube_emulator::Config::default()
    })
    .await
    .unwrap()
}

/// The flow run a Job was made for, by the label the agent (and Prefect's worker) gives it.
pub fn flow_run_of(job: &k8s_openapi::api::batch::v1::Job) -> Option<&String> {
    job.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get("prefect.io/flow-run-id"))
}
