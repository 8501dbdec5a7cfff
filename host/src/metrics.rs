//! What the agent counts, in Prometheus' text format (`/metrics` on `--agent-address`).
//!
//! One `Metrics` per agent, made at start and passed down (the Prefect client, the submitter,
//! the dispatcher and the watch each hold an `Arc` of it), so that a test can read the counts
//! of its own agent. Reasons are enums, so every value the code can count is documented here.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::fmt::Write;
use std::time::Duration;

/// Why a run was reported CRASHED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrashReason {
    /// A plugin faulted (trap, timeout, memory, bad output).
    Plugin,
    /// The chain's Job broke the schema or the API server's rules.
    InvalidJob,
    /// Kubernetes refused or could not take the Job.
    Kubernetes,
    /// A block or variable of the job configuration could not be resolved.
    Configuration,
    /// Prefect could not tell the run's deployment or flow.
    Prefect,
    /// Pull or configuration errors outlasted `--pod-start-timeout`.
    PodStart,
    /// No node took the pod within `--schedule-timeout`.
    Unschedulable,
    /// The Job failed.
    JobFailed,
    /// The Job was deleted before its run finished.
    JobDeleted,
}

impl CrashReason {
    pub const ALL: [CrashReason; 9] = [
        CrashReason::Plugin,
        CrashReason::InvalidJob,
        CrashReason::Kubernetes,
        CrashReason::Configuration,
        CrashReason::Prefect,
        CrashReason::PodStart,
        CrashReason::Unschedulable,
        CrashReason::JobFailed,
        CrashReason::JobDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CrashReason::Plugin => "plugin",
            CrashReason::InvalidJob => "invalid-job",
            CrashReason::Kubernetes => "kubernetes",
            CrashReason::Configuration => "configuration",
            CrashReason::Prefect => "prefect",
            CrashReason::PodStart => "pod-start",
            CrashReason::Unschedulable => "unschedulable",
            CrashReason::JobFailed => "job-failed",
            CrashReason::JobDeleted => "job-deleted",
        }
    }
}

/// Why the agent deleted a Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeletionCause {
    PodStart,
    Unschedulable,
    /// Its run is cancelling.
    Cancelled,
    /// Still running while its run is CANCELLED or CRASHED.
    RunFinal,
    /// `--delete-succeeded-after`.
    JanitorSucceeded,
    /// `--delete-failed-after`.
    JanitorFailed,
}

impl DeletionCause {
    pub const ALL: [DeletionCause; 6] = [
        DeletionCause::PodStart,
        DeletionCause::Unschedulable,
        DeletionCause::Cancelled,
        DeletionCause::RunFinal,
        DeletionCause::JanitorSucceeded,
        DeletionCause::JanitorFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletionCause::PodStart => "pod-start",
            DeletionCause::Unschedulable => "unschedulable",
            DeletionCause::Cancelled => "cancelled",
            DeletionCause::RunFinal => "run-final",
            DeletionCause::JanitorSucceeded => "janitor-succeeded",
            DeletionCause::JanitorFailed => "janitor-failed",
        }
    }
}

// By hand rather than derived: the derive writes the Rust variant name (`PodStart`), and the
// documented label values are `pod-start`.
impl EncodeLabelValue for CrashReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for DeletionCause {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The API a failed call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Api {
    prefect,
    kubernetes,
}

/// The kind of Kubernetes watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum WatchKind {
    job,
    pod,
    event,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: CrashReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CauseLabel {
    pub reason: DeletionCause,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ApiErrorLabels {
    pub api: Api,
    /// The HTTP status, or `transport`.
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PluginLabel {
    pub plugin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: WatchKind,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub polls: Counter,
    pub claimed: Counter,
    pub submitted: Counter,
    pub rejected: Counter,
    pub crashed: Family<ReasonLabel, Counter>,
    pub cancelled: Counter,
    pub jobs_deleted: Family<CauseLabel, Counter>,
    pub claim_to_job: Histogram,
    pub plugin_call: HistogramFamily<PluginLabel>,
    pub api_errors: Family<ApiErrorLabels, Counter>,
    pub watcher_restarts: Family<KindLabel, Counter>,
    /// Runs whose claim an earlier agent started and this one finished.
    pub claims_finished: Counter,
    /// Whether Prefect's event stream is connected (1) or not (0).
    pub event_stream_connected: Gauge,
    /// Runs the event stream woke (claimed or cancelled before the next poll would have).
    pub event_stream_wakeups: Counter,
    /// Prefect events this agent emitted, and those it had to drop.
    pub events_emitted: Counter,
    pub events_dropped: Counter,
    /// Log lines written to runs, and the requests that carried them.
    pub log_lines: Counter,
    pub log_requests: Counter,
    pub log_lines_dropped: Counter,
    /// Runs left without the worker's labels because Prefect did not take them fast enough.
    pub run_labels_dropped: Counter,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
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
            claims_finished: Counter::default(),
            event_stream_connected: Gauge::default(),
            event_stream_wakeups: Counter::default(),
            events_emitted: Counter::default(),
            events_dropped: Counter::default(),
            log_lines: Counter::default(),
            log_requests: Counter::default(),
            log_lines_dropped: Counter::default(),
            run_labels_dropped: Counter::default(),
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
        r.register(
            "claims_finished",
            "Claims another agent (or an earlier life of this one) started and this agent finished",
            metrics.claims_finished.clone(),
        );
        r.register(
            "event_stream_connected",
            "1 while Prefect's event stream is connected",
            metrics.event_stream_connected.clone(),
        );
        r.register(
            "event_stream_wakeups",
            "Flow runs the event stream woke before a poll would have",
            metrics.event_stream_wakeups.clone(),
        );
        r.register(
            "events_emitted",
            "Prefect events emitted (worker, flow run and pod events)",
            metrics.events_emitted.clone(),
        );
        r.register(
            "events_dropped",
            "Prefect events dropped because the server did not take them in time",
            metrics.events_dropped.clone(),
        );
        r.register(
            "log_lines",
            "Lines written to flow runs' logs",
            metrics.log_lines.clone(),
        );
        r.register(
            "log_requests",
            "Requests that carried those lines (lines are batched across runs)",
            metrics.log_requests.clone(),
        );
        r.register(
            "log_lines_dropped",
            "Lines for runs' logs dropped because Prefect did not take them fast enough",
            metrics.log_lines_dropped.clone(),
        );
        r.register(
            "run_labels_dropped",
            "Runs left without the worker's labels because Prefect did not take them fast enough",
            metrics.run_labels_dropped.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub fn crash(&self, reason: CrashReason) {
        self.crashed.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn crashes(&self, reason: CrashReason) -> u64 {
        self.crashed.get_or_create(&ReasonLabel { reason }).get()
    }

    pub fn job_deleted(&self, reason: DeletionCause) {
        self.jobs_deleted
            .get_or_create(&CauseLabel { reason })
            .inc();
    }

    pub fn api_error(&self, api: Api, code: impl ToString) {
        self.api_errors
            .get_or_create(&ApiErrorLabels {
                api,
                code: code.to_string(),
            })
            .inc();
    }

    pub fn plugin_call(&self, plugin: &str, duration: Duration) {
        self.plugin_call
            .get_or_create(&PluginLabel {
                plugin: plugin.to_string(),
            })
            .observe(duration.as_secs_f64());
    }

    pub fn watcher_restart(&self, kind: WatchKind) {
        self.watcher_restarts
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_under_their_documented_names() {
        let metrics = Metrics::new();
        metrics.crash(CrashReason::PodStart);
        metrics.job_deleted(DeletionCause::JanitorSucceeded);
        metrics.api_error(Api::kubernetes, 500);
        metrics.watcher_restart(WatchKind::event);
        let text = metrics.encode();
        for line in [
            "agent_runs_crashed_total{reason=\"pod-start\"} 1",
            "agent_jobs_deleted_total{reason=\"janitor-succeeded\"} 1",
            "agent_api_errors_total{api=\"kubernetes\",code=\"500\"} 1",
            "agent_watcher_restarts_total{kind=\"event\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert_eq!(metrics.crashes(CrashReason::PodStart), 1);
    }

    #[test]
    fn every_reason_has_a_distinct_kebab_case_name() {
        let names: std::collections::HashSet<&str> =
            CrashReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), CrashReason::ALL.len());
        let causes: std::collections::HashSet<&str> =
            DeletionCause::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(causes.len(), DeletionCause::ALL.len());
        assert!(
            names
                .iter()
                .chain(&causes)
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
    }
}
