//! `--agent-address HOST:PORT`: `/healthz`, `/readyz` and `/metrics` for probes and Prometheus.
//!
//! Healthy while the agent polls: like Prefect's worker, it turns unhealthy when no poll has
//! succeeded for `unhealthy_after` poll intervals (the Prefect API down, the loop stuck), and
//! healthy again with the next successful poll.

use crate::cluster::Reachability;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the probes look at; the loop updates it.
pub struct Health {
    /// Whether Kubernetes can be reached (ready only then: runs are not claimed otherwise).
    cluster: Option<Arc<Reachability>>,
    started: Instant,
    last_poll: std::sync::Mutex<Option<Instant>>,
    ready: AtomicBool,
    /// No successful poll for this long: unhealthy.
    window: Duration,
    /// `--heartbeat-file`, rewritten after every successful poll for exec liveness probes.
    heartbeat_file: Option<PathBuf>,
}

impl Health {
    pub fn new(
        poll_interval: Duration,
        unhealthy_after: u32,
        heartbeat_file: Option<PathBuf>,
        cluster: Option<Arc<Reachability>>,
    ) -> Self {
        Health {
            cluster,
            started: Instant::now(),
            last_poll: std::sync::Mutex::new(None),
            ready: AtomicBool::new(false),
            window: poll_interval * unhealthy_after.max(1),
            heartbeat_file,
        }
    }

    pub fn polled(&self) {
        *self.last_poll.lock().unwrap() = Some(Instant::now());
        self.ready.store(true, Ordering::Relaxed);
        if let Some(path) = &self.heartbeat_file {
            let now = chrono::Utc::now().to_rfc3339();
            if let Err(e) = std::fs::write(path, now + "\n") {
                tracing::warn!("--heartbeat-file {}: cannot write it: {e}", path.display());
            }
        }
    }

    /// Not ready any more: shutting down.
    pub fn stopping(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }

    /// `Err` says why not.
    fn check(&self) -> Result<(), String> {
        let since = self.last_poll.lock().unwrap().unwrap_or(self.started);
        let quiet = since.elapsed();
        if quiet > self.window {
            Err(format!(
                "no successful poll of the work pool for {:.0?} (limit {:.0?}); see the agent's log",
                quiet, self.window
            ))
        } else {
            Ok(())
        }
    }
}

/// Binds `address` (failing now if it cannot) and serves until the process ends.
pub async fn serve(
    address: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("--agent-address {address}: cannot listen: {e}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(encode_metrics))
        .with_state(Probes { health, metrics });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the health server stopped: {e}");
        }
    });
    Ok(bound)
}

/// What the handlers read.
#[derive(Clone)]
struct Probes {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

async fn healthz(State(probes): State<Probes>) -> impl IntoResponse {
    match probes.health.check() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why + "\n"),
    }
}

async fn readyz(State(probes): State<Probes>) -> impl IntoResponse {
    let health = &probes.health;
    if let Some(cluster) = health.cluster.as_ref().filter(|c| !c.is_up()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: Kubernetes is out of reach ({}); no run is claimed until it answers\n",
                cluster.reason()
            ),
        );
    }
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or stopping\n".to_string(),
        )
    }
}

async fn encode_metrics(State(probes): State<Probes>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        probes.metrics.encode(),
    )
}
