//! What the end-to-end tests of `agent start` share: the cluster (the emulator, or a real one
//! when `AGENT_E2E_KUBECONFIG` names a kubeconfig) and readers of what the agent made.
#![allow(dead_code)]

use agent_tests::workspace_root;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_emulator::{Config, Emulator};
use serde_json::Value;
use std::path::PathBuf;

pub struct Cluster {
    pub emulator: Option<Emulator>,
    pub kubeconfig: PathBuf,
    pub namespace: String,
    pub client: kube::Client,
}

pub async fn cluster() -> Cluster {
    cluster_with(Config::default()).await
}

/// A cluster whose emulator (when there is no real cluster) runs with `config`, sped up.
pub async fn cluster_with(config: Config) -> Cluster {
    let (emulator, kubeconfig) = match std::env::var_os("AGENT_E2E_KUBECONFIG") {
        Some(path) => (None, PathBuf::from(path)),
        None => {
            let emulator = Emulator::start(Config {
                time_scale: 0.05,
                ..config
            })
            .await
            .unwrap();
            let path = emulator.kubeconfig().to_path_buf();
            (Some(emulator), path)
        }
    };
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let namespace = std::env::var("AGENT_E2E_NAMESPACE").unwrap_or_else(|_| "default".into());
    Cluster {
        emulator,
        kubeconfig,
        namespace,
        client: kube::Client::try_from(config).unwrap(),
    }
}

impl Cluster {
    pub async fn jobs_of(&self, agent: &str) -> Vec<Job> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        jobs.list(&ListParams::default().labels(&format!("prefect-agent/agent={agent}")))
            .await
            .unwrap()
            .items
    }
}

pub fn stock_template() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("plugins/default/src/stock_template.json"))
            .unwrap(),
    )
    .unwrap()
}

pub fn env_of(job: &Job) -> Vec<(String, String)> {
    job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}
