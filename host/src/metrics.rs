//! What the agent counts, in Prometheus' text format (`/metrics` on `--agent-address`).
//!
//! One registry for the process, as Prometheus clients usually have: the Prefect client, the
//! submitter and the watchers count where things happen without being handed a registry.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub polls: Counter,
    pub claimed: Counter,
    pub submitted: Counter,
    pub rejected: Counter,
    /// By reason: `plugin`, `kubernetes`, `configuration`, `pod-start`, `unschedulable`,
    /// `job-failed`, `job-deleted`.
    pub crashed: Family<Labels, Counter>,
    pub cancelled: Counter,
    pub jobs_deleted: Family<Labels, Counter>,
    pub claim_to_job: Histogram,
    pub plugin_call: HistogramFamily,
    /// By `api` (`prefect`, `kubernetes`) and `code` (HTTP status, or `transport`).
    pub api_errors: Family<Labels, Counter>,
    pub watcher_restarts: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("agent");
        let metrics = Metrics {
            polls: Counter::default(),
            claimed: Counter::default(),
            submitted: Counter::default(),
            rejected: Counter::default(),
            crashed: Family::default(),
            cancelled: Counter::default(),
            jobs_deleted: Family::default(),
            claim_to_job: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            plugin_call: Family::new_with_constructor(latency_histogram),
            api_errors: Family::default(),
            watcher_restarts: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "polls",
            "Successful polls of the work pool",
            metrics.polls.clone(),
        );
        r.register(
            "runs_claimed",
            "Flow runs this agent claimed",
            metrics.claimed.clone(),
        );
        r.register(
            "runs_submitted",
            "Flow runs whose Job was created or adopted",
            metrics.submitted.clone(),
        );
        r.register(
            "runs_rejected",
            "Flow runs a plugin rejected (FAILED)",
            metrics.rejected.clone(),
        );
        r.register(
            "runs_crashed",
            "Flow runs reported CRASHED, by reason",
            metrics.crashed.clone(),
        );
        r.register(
            "runs_cancelled",
            "Flow runs whose Job was deleted on cancellation",
            metrics.cancelled.clone(),
        );
        r.register(
            "jobs_deleted",
            "Jobs deleted by the agent, by reason",
            metrics.jobs_deleted.clone(),
        );
        r.register(
            "claim_to_job_seconds",
            "From claim accepted to Job created",
            metrics.claim_to_job.clone(),
        );
        r.register(
            "plugin_call_seconds",
            "One plugin call (instantiate + call), by plugin",
            metrics.plugin_call.clone(),
        );
        r.register(
            "api_errors",
            "Failed calls to Prefect and Kubernetes, by API and code",
            metrics.api_errors.clone(),
        );
        r.register(
            "watcher_restarts",
            "Kubernetes watches that ended in an error and restarted, by kind",
            metrics.watcher_restarts.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub fn crash(&self, reason: &str) {
        self.crashed
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn job_deleted(&self, reason: &str) {
        self.jobs_deleted
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn api_error(&self, api: &'static str, code: impl ToString) {
        self.api_errors
            .get_or_create(&vec![("api", api.to_string()), ("code", code.to_string())])
            .inc();
    }

    pub fn plugin_call(&self, plugin: &str, duration: Duration) {
        self.plugin_call
            .get_or_create(&vec![("plugin", plugin.to_string())])
            .observe(duration.as_secs_f64());
    }

    pub fn watcher_restart(&self, kind: &str) {
        self.watcher_restarts
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}
