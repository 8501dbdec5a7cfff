//! Whether the agent can reach Kubernetes now. A claim made while Kubernetes is out of reach
//! would only burn the run (CRASHED for an outage of ours), so the dispatcher claims nothing
//! while it is down, `/readyz` says so, and a probe brings it back when the API server answers.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// How often the API server is asked while it is out of reach.
const PROBE_EVERY: Duration = Duration::from_secs(2);

pub struct Reachability {
    up: watch::Sender<bool>,
    /// Why it is down, for the log and `/readyz`.
    reason: Mutex<String>,
}

impl Default for Reachability {
    fn default() -> Self {
        Reachability {
            up: watch::channel(true).0,
            reason: Mutex::new(String::new()),
        }
    }
}

impl Reachability {
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Why Kubernetes is out of reach (empty while it is not).
    pub fn reason(&self) -> String {
        self.reason.lock().unwrap().clone()
    }

    pub fn mark_down(&self, reason: &str) {
        *self.reason.lock().unwrap() = reason.to_string();
        if self.up.send_replace(false) {
            tracing::warn!(
                "Kubernetes is out of reach ({reason}): no run is claimed until it answers again"
            );
        }
    }

    pub fn mark_up(&self) {
        if !self.up.send_replace(true) {
            tracing::info!("Kubernetes answers again: claiming runs");
        }
    }

    /// Resolves once Kubernetes is reachable.
    pub async fn wait_up(&self) {
        let mut up = self.up.subscribe();
        let _ = up.wait_for(|up| *up).await;
    }

    /// While down, asks the API server every `PROBE_EVERY` (a list of one Job in `namespace`,
    /// which the agent's least privilege allows) and marks it up when it answers. Runs until
    /// the process ends.
    pub async fn probe(&self, client: kube::Client, namespace: String) {
        let jobs: Api<Job> = Api::namespaced(client, &namespace);
        loop {
            let mut up = self.up.subscribe();
            let _ = up.wait_for(|up| !*up).await;
            tokio::time::sleep(PROBE_EVERY).await;
            match jobs.list(&ListParams::default().limit(1)).await {
                Ok(_) => self.mark_up(),
                Err(e) => *self.reason.lock().unwrap() = super::describe(&e),
            }
        }
    }
}
