//! Lines for flow runs' logs, batched across runs (see `batch`): one `POST /logs/` carries
//! every line of the last second, as Prefect's own log handler batches.
//!
//! A line that must be in the log before something else happens (the "Submitted" line before
//! the run records its Job, a crash report before the CRASHED state) is `write_confirmed`: its
//! batch leaves at once and the caller learns when it was sent, so that an agent killed in
//! between leaves a run without its Job recorded (which another agent finishes, line
//! included) rather than a run whose log never says where it runs.

use super::PrefectClient;
use super::batch::{Batcher, Send};
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::sync::Arc;

/// A handle to the batcher; cheap to clone.
#[derive(Clone)]
pub struct RunLogs {
    batcher: Batcher,
}

impl RunLogs {
    /// Starts the batcher on the current runtime.
    pub fn start(prefect: PrefectClient, metrics: Arc<Metrics>) -> Self {
        let counting = metrics.clone();
        let send: Send = Arc::new(move |lines: Vec<Value>| {
            let (prefect, metrics) = (prefect.clone(), counting.clone());
            Box::pin(async move {
                let count = lines.len() as u64;
                match prefect.write_logs(&Value::Array(lines)).await {
                    Ok(()) => {
                        metrics.log_lines.inc_by(count);
                        metrics.log_requests.inc();
                        true
                    }
                    Err(e) => {
                        tracing::warn!("could not write {count} line(s) to flow runs' logs: {e}");
                        false
                    }
                }
            })
        });
        RunLogs {
            batcher: Batcher::start(
                send,
                metrics.log_lines_dropped.clone(),
                "log lines for runs' logs",
                "agent_log_lines_dropped_total",
            ),
        }
    }

    /// Queues a line for the run's log (`level` as Prefect's: 20 info, 30 warning, 40 error).
    pub fn write(&self, run: &str, level: u8, message: &str) {
        self.batcher.push(line(run, level, message));
    }

    /// Writes a line and waits until its request was answered; false when it could not be
    /// written (the server refused it or was unreachable for long).
    pub async fn write_confirmed(&self, run: &str, level: u8, message: &str) -> bool {
        self.batcher.push_confirmed(line(run, level, message)).await
    }

    /// Sends every line queued so far and waits until they were sent (or given up on).
    pub async fn flush(&self) {
        self.batcher.flush().await;
    }
}

fn line(run: &str, level: u8, message: &str) -> Value {
    json!({
        "name": "prefect.agent",
        "level": level,
        "message": message,
        "flow_run_id": run,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}
