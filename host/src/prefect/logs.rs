//! Lines for flow runs' logs, batched across runs: one `POST /logs/` carries every line of
//! the last second (or the last `MAX_BATCH` lines), as Prefect's own log handler batches. A
//! submission never waits for a log line, and a slow server never holds one up: past
//! `MAX_QUEUED` lines waiting, new ones are dropped and counted.

use super::PrefectClient;
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a line waits for others to share its request.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Lines per request at most.
const MAX_BATCH: usize = 200;
/// Lines waiting at most; more are dropped (a warning says so once per outage).
const MAX_QUEUED: usize = 20_000;

enum Message {
    Line(Value),
    Flush(oneshot::Sender<()>),
}

/// A handle to the batcher; cheap to clone.
#[derive(Clone)]
pub struct RunLogs {
    sender: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
}

impl RunLogs {
    /// Starts the batcher on the current runtime.
    pub fn start(prefect: PrefectClient, metrics: Arc<Metrics>) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(batch(prefect, metrics.clone(), receiver));
        RunLogs { sender, metrics }
    }

    /// Queues a line for the run's log (`level` as Prefect's: 20 info, 30 warning, 40 error).
    pub fn write(&self, run: &str, level: u8, message: &str) {
        let line = json!({
            "name": "prefect.agent",
            "level": level,
            "message": message,
            "flow_run_id": run,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        });
        if self.sender.try_send(Message::Line(line)).is_err() {
            self.metrics.log_lines_dropped.inc();
            if self.metrics.log_lines_dropped.get() == 1 {
                tracing::warn!(
                    "Prefect is not taking log lines as fast as they come; dropping lines for runs' logs (counted in agent_log_lines_dropped_total)"
                );
            }
        }
    }

    /// Sends every line queued so far and waits until they were sent (or given up on).
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = sent.await;
        }
    }
}

async fn batch(
    prefect: PrefectClient,
    metrics: Arc<Metrics>,
    mut receiver: mpsc::Receiver<Message>,
) {
    let mut lines: Vec<Value> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    // When the oldest line waiting must go.
    let mut due = tokio::time::Instant::now();
    loop {
        let message = if lines.is_empty() {
            match receiver.recv().await {
                Some(message) => Some(message),
                None => break,
            }
        } else {
            match tokio::time::timeout_at(due, receiver.recv()).await {
                Ok(Some(message)) => Some(message),
                Ok(None) => break,
                Err(_) => None,
            }
        };
        let flush_now = match message {
            Some(Message::Line(line)) => {
                if lines.is_empty() {
                    due = tokio::time::Instant::now() + FLUSH_EVERY;
                }
                lines.push(line);
                lines.len() >= MAX_BATCH
            }
            Some(Message::Flush(done)) => {
                waiting.push(done);
                true
            }
            // A second passed since the oldest line waiting.
            None => true,
        };
        if flush_now {
            send(&prefect, &metrics, std::mem::take(&mut lines)).await;
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
        }
    }
    send(&prefect, &metrics, lines).await;
}

async fn send(prefect: &PrefectClient, metrics: &Metrics, lines: Vec<Value>) {
    if lines.is_empty() {
        return;
    }
    let count = lines.len() as u64;
    match prefect.write_logs(&Value::Array(lines)).await {
        Ok(()) => {
            metrics.log_lines.inc_by(count);
            metrics.log_requests.inc();
        }
        Err(e) => tracing::warn!("could not write {count} line(s) to flow runs' logs: {e}"),
    }
}
