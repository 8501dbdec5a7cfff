//! Lines for flow runs' logs, batched across runs: one `POST /logs/` carries every line of
//! the last second (or the last `MAX_BATCH` lines), as Prefect's own log handler batches. A
//! submission never waits for an ordinary line, and a slow server never holds one up: past
//! `MAX_QUEUED` lines waiting, new ones are dropped and counted.
//!
//! A line that must be in the log before something else happens (the "Submitted" line before
//! the run records its Job, a crash report before the CRASHED state) is `write_confirmed`: its
//! batch leaves within `URGENT_WINDOW` and the caller learns when it was sent, so that an
//! agent killed in between leaves a run without its Job recorded (which another agent
//! finishes, line included) rather than a run whose log never says where it runs.

use super::PrefectClient;
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How long an ordinary line waits for others to share its request.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long a confirmed line waits for others.
const URGENT_WINDOW: Duration = Duration::from_millis(50);
/// Lines per request at most.
const MAX_BATCH: usize = 200;
/// Lines waiting at most; more are dropped (a warning says so once per outage).
const MAX_QUEUED: usize = 20_000;

enum Message {
    Line(Value, Option<oneshot::Sender<bool>>),
    Flush(oneshot::Sender<bool>),
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
        self.send(Message::Line(line(run, level, message), None));
    }

    /// Writes a line and waits until its request was answered; false when it could not be
    /// written (the server refused it or was unreachable for long).
    pub async fn write_confirmed(&self, run: &str, level: u8, message: &str) -> bool {
        let (done, sent) = oneshot::channel();
        self.send(Message::Line(line(run, level, message), Some(done)));
        sent.await.unwrap_or(false)
    }

    /// Sends every line queued so far and waits until they were sent (or given up on).
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = sent.await;
        }
    }

    fn send(&self, message: Message) {
        if self.sender.try_send(message).is_err() {
            self.metrics.log_lines_dropped.inc();
            if self.metrics.log_lines_dropped.get() == 1 {
                tracing::warn!(
                    "Prefect is not taking log lines as fast as they come; dropping lines for runs' logs (counted in agent_log_lines_dropped_total)"
                );
            }
        }
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

/// Collects lines until the oldest has waited its window, the batch is full, or a flush is
/// asked for; sends them in one request.
async fn batch(
    prefect: PrefectClient,
    metrics: Arc<Metrics>,
    mut receiver: mpsc::Receiver<Message>,
) {
    let mut lines: Vec<Value> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<bool>> = Vec::new();
    let mut due = Instant::now();
    loop {
        let message = if lines.is_empty() && waiting.is_empty() {
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
        let send_now = match message {
            Some(Message::Line(line, confirm)) => {
                let window = if confirm.is_some() {
                    URGENT_WINDOW
                } else {
                    FLUSH_EVERY
                };
                let line_due = Instant::now() + window;
                due = if lines.is_empty() && waiting.is_empty() {
                    line_due
                } else {
                    due.min(line_due)
                };
                lines.push(line);
                waiting.extend(confirm);
                lines.len() >= MAX_BATCH
            }
            Some(Message::Flush(done)) => {
                waiting.push(done);
                true
            }
            // The oldest line has waited its window.
            None => true,
        };
        if send_now {
            let sent = send(&prefect, &metrics, std::mem::take(&mut lines)).await;
            for done in waiting.drain(..) {
                let _ = done.send(sent);
            }
        }
    }
    send(&prefect, &metrics, lines).await;
}

async fn send(prefect: &PrefectClient, metrics: &Metrics, lines: Vec<Value>) -> bool {
    if lines.is_empty() {
        return true;
    }
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
}
