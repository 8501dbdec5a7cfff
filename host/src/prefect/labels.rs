//! The labels Prefect's worker gives the runs it submits, set from one queue: at most
//! `LABELLERS` requests at a time, each retried with the client's back-off. A label is never
//! worth a moment of a submission, and a busy database must not be hammered for it: with one
//! background task per run, a 1,000-run backlog on SQLite sent 25 label requests per run, each
//! retried on "database is locked" while every other call waited behind them.

use super::PrefectClient;
use crate::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Label requests under way at once.
const LABELLERS: usize = 2;
/// Runs waiting for their labels at most; more are not labelled (a warning says so once).
const MAX_QUEUED: usize = 10_000;
/// How long one run's labels are retried before they are given up.
const PATIENCE: Duration = Duration::from_secs(60);

enum Message {
    Run(String),
    Flush(oneshot::Sender<()>),
}

/// A handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct RunLabels {
    sender: mpsc::Sender<Message>,
    dropped: Counter,
}

impl RunLabels {
    /// Starts the queue on the current runtime; every run gets `labels`.
    pub fn start(prefect: PrefectClient, labels: Value, metrics: Arc<Metrics>) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(label_runs(
            prefect.with_patience(PATIENCE),
            labels,
            receiver,
        ));
        RunLabels {
            sender,
            dropped: metrics.run_labels_dropped.clone(),
        }
    }

    /// Queues the run `id` for its labels.
    pub fn label(&self, id: &str) {
        if self.sender.try_send(Message::Run(id.to_string())).is_err() {
            self.dropped.inc();
            if self.dropped.get() == 1 {
                tracing::warn!(
                    "Prefect is not taking runs' labels as fast as runs are submitted; some runs go unlabelled (counted in agent_run_labels_dropped_total; their Jobs are unaffected). A Prefect database that keeps up (PostgreSQL rather than SQLite) or a lower --limit avoids it"
                );
            }
        }
    }

    /// Waits until every run queued so far was labelled (or given up on).
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

async fn label_runs(prefect: PrefectClient, labels: Value, mut queue: mpsc::Receiver<Message>) {
    let labels = Arc::new(labels);
    let mut under_way = JoinSet::new();
    while let Some(message) = queue.recv().await {
        match message {
            Message::Run(id) => {
                while under_way.len() >= LABELLERS {
                    under_way.join_next().await;
                }
                let (prefect, labels) = (prefect.clone(), labels.clone());
                under_way.spawn(async move {
                    if let Err(e) = prefect.update_flow_run_labels(&id, &labels).await {
                        tracing::warn!(flow_run = %id, "could not label the run with the worker's labels: {e}");
                    }
                });
            }
            Message::Flush(done) => {
                while under_way.join_next().await.is_some() {}
                let _ = done.send(());
            }
        }
    }
}
