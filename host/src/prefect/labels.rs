//! The labels Prefect's worker gives the runs it submits, set in the background: run ids are
//! batched like log lines (a [`Batcher`]), and a batch's runs are labelled `LABELLERS` at a
//! time (Prefect's endpoint takes one run per request), each retried with the client's
//! back-off for at most `PATIENCE`. A label is never worth a moment of a submission, and a busy
//! database must not be hammered for it: with one background task per run, a 1,000-run backlog
//! on SQLite sent 25 label requests per run, each retried on "database is locked" while every
//! other call waited behind them.

use super::PrefectClient;
use super::batch::{Batcher, Send};
use crate::metrics::Metrics;
use futures::StreamExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Label requests under way at once.
const LABELLERS: usize = 2;
/// How long one run's labels are retried before they are given up.
const PATIENCE: Duration = Duration::from_secs(60);

/// A handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct RunLabels {
    batcher: Batcher,
}

impl RunLabels {
    /// Starts the queue on the current runtime; every run gets `labels`.
    pub fn start(prefect: PrefectClient, labels: Value, metrics: Arc<Metrics>) -> Self {
        let prefect = prefect.with_patience(PATIENCE);
        let labels = Arc::new(labels);
        let send: Send = Arc::new(move |ids: Vec<Value>| {
            Box::pin(label_each(prefect.clone(), labels.clone(), ids))
        });
        RunLabels {
            batcher: Batcher::start(
                send,
                metrics.run_labels_dropped.clone(),
                "runs' labels",
                "agent_run_labels_dropped_total",
            ),
        }
    }

    /// Queues the run `id` for its labels.
    pub fn label(&self, id: &str) {
        self.batcher.push(Value::from(id));
    }

    /// Waits until every run queued so far was labelled (or given up on).
    pub async fn flush(&self) {
        self.batcher.flush().await;
    }
}

/// Labels a batch's runs, `LABELLERS` at a time; a failure is only warned about (the batch is
/// always taken: a label is never retried past its patience).
async fn label_each(prefect: PrefectClient, labels: Arc<Value>, ids: Vec<Value>) -> bool {
    let ids = ids
        .into_iter()
        .filter_map(|id| id.as_str().map(String::from));
    futures::stream::iter(ids)
        .for_each_concurrent(LABELLERS, |id| {
            let (prefect, labels) = (&prefect, &labels);
            async move {
                if let Err(e) = prefect.update_flow_run_labels(&id, labels).await {
                    tracing::warn!(flow_run = %id, "could not label the run with the worker's labels: {e}");
                }
            }
        })
        .await;
    true
}
