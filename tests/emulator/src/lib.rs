//! A Kubernetes API emulator for tests, benchmarks and the quickstart.
//!
//! It serves the real HTTP API (kube-rs, the Python clients and kubectl talk to it unchanged)
//! for Jobs, Pods, Events, Secrets, ConfigMaps, ServiceAccounts, Namespaces and Leases;
//! validates like the API server (strict schemas, names, labels, immutable fields); and
//! simulates the Job controller, scheduler, kubelet and garbage collector, with pods following
//! a declarative script. It is not a cluster: no containers run, no network, no admission
//! webhooks; see README.md.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use kube::config::{KubeConfigOptions, Kubeconfig};
//! let emulator = kube_emulator::Emulator::start(kube_emulator::Config::default()).await?;
//! let kubeconfig = Kubeconfig::read_from(emulator.kubeconfig())?;
//! let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
//! let client = kube::Client::try_from(config)?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```

mod admin;
mod api;
pub mod config;
pub mod faults;
pub mod kinds;
mod memory;
mod protobuf;
mod rbac;
mod response;
pub mod selectors;
mod simulation;
mod state;
pub mod status;
mod store;
pub mod validate;

pub use config::{Behaviour, Config, Identity, Match, Node, PodRule, Rule};
pub use faults::{Fault, FaultRule};

use state::Shared;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A running emulator; it stops when dropped.
pub struct Emulator {
    address: SocketAddr,
    shared: Arc<Shared>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Starts on a free loopback port, with a kubeconfig for the admin token written to a temp dir.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, config).await
    }

    pub async fn start_on(address: SocketAddr, config: Config) -> anyhow::Result<Self> {
        validate::warm_up();
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let app = axum::Router::new()
            .fallback(api::handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("emulator server stopped: {e}");
            }
        });
        let simulation = tokio::spawn(simulation::run(shared.clone()));
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(address, &shared.config.admin_token, "default"),
        )?;
        Ok(Emulator {
            address,
            shared,
            kubeconfig,
            _dir: dir,
            tasks: vec![server, simulation],
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig file for the admin token.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig file for `token` (see `Config::tokens`), written next to the admin one.
    pub fn kubeconfig_for(&self, token: &str, namespace: &str) -> std::io::Result<PathBuf> {
        let path = self._dir.path().join(format!(
            "kubeconfig-{}",
            token.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ));
        std::fs::write(&path, kubeconfig_yaml(self.address, token, namespace))?;
        Ok(path)
    }

    pub fn inject(&self, rule: FaultRule) {
        self.shared.faults.add(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Ends every open watch, as an API server restart does; objects stay.
    pub fn restart_watches(&self) {
        self.shared.restart_watches();
    }

    /// Forgets the watch history: watches from older resource versions get 410 Gone.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
    }

    /// Ends every running container now, as its script says (exit, OOM, eviction); also
    /// `POST /emulator/end-runs`. With long `run_ms`, a test decides when runs end.
    pub fn end_runs(&self) {
        self.shared.end_runs();
    }

    pub fn set_node(&self, node: Node) {
        self.shared.set_node(node);
    }

    pub fn set_identity(&self, token: &str, identity: Identity) {
        self.shared.rbac.set(token, identity);
    }

    /// Requests served since the start (or the last `reset_requests`), by kind of request
    /// (`GET jobs (watch)`, `POST jobs`, …); also `GET /emulator/requests`.
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn reset_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// How many objects are stored.
    pub fn object_count(&self) -> usize {
        self.shared.store.lock().unwrap().len()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub fn kubeconfig_yaml(address: SocketAddr, token: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: http://{address}\nusers:\n- name: emulator-user\n  user:\n    token: {token}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator-user\n    namespace: {namespace}\ncurrent-context: emulator\n"
    )
}
