//! Items for Prefect (log lines, events) batched across runs: one request carries everything
//! of the last second (or the last `MAX_BATCH` items), as Prefect's own log handler and events
//! client batch. A submission never waits for an ordinary item, and a slow server never holds
//! one up: past `MAX_QUEUED` items waiting, new ones are dropped and counted.
//!
//! An item that must be sent before something else happens (the "Submitted" line before the
//! run records its Job, a crash report before the CRASHED state) is `push_confirmed`: its
//! batch leaves within `URGENT_WINDOW` and the caller learns when it was sent.

use prometheus_client::metrics::counter::Counter;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How long an ordinary item waits for others to share its request.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long a confirmed item waits for others.
const URGENT_WINDOW: Duration = Duration::from_millis(50);
/// Items per request at most.
const MAX_BATCH: usize = 200;
/// Items waiting at most; more are dropped (a warning says so once).
const MAX_QUEUED: usize = 20_000;

/// Sends one batch; true when the server took it.
pub type Send = Arc<
    dyn Fn(Vec<Value>) -> Pin<Box<dyn Future<Output = bool> + std::marker::Send>>
        + Sync
        + std::marker::Send,
>;

enum Message {
    Item(Value, Option<oneshot::Sender<bool>>),
    Flush(oneshot::Sender<bool>),
}

/// A handle to a batcher; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    sender: mpsc::Sender<Message>,
    dropped: Counter,
    /// What the items are, for the warning (`log lines for runs' logs`).
    what: &'static str,
    /// The counter's name in `/metrics`, for the warning.
    metric: &'static str,
}

impl Batcher {
    /// Starts the batcher on the current runtime; `dropped` counts items dropped.
    pub fn start(send: Send, dropped: Counter, what: &'static str, metric: &'static str) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(batch(send, receiver));
        Batcher {
            sender,
            dropped,
            what,
            metric,
        }
    }

    /// Queues an item.
    pub fn push(&self, item: Value) {
        self.queue(Message::Item(item, None));
    }

    /// Queues an item and waits until its request was answered; false when it could not be
    /// sent (the server refused it or was unreachable).
    pub async fn push_confirmed(&self, item: Value) -> bool {
        let (done, sent) = oneshot::channel();
        self.queue(Message::Item(item, Some(done)));
        sent.await.unwrap_or(false)
    }

    /// Sends every item queued so far and waits until they were sent (or given up on).
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = sent.await;
        }
    }

    fn queue(&self, message: Message) {
        if self.sender.try_send(message).is_err() {
            self.dropped.inc();
            if self.dropped.get() == 1 {
                tracing::warn!(
                    "Prefect is not taking {} as fast as they come; dropping some (counted in {}). Runs and their Jobs are unaffected; a Prefect database that keeps up (PostgreSQL rather than SQLite) or a lower --submission-limit avoids it",
                    self.what,
                    self.metric
                );
            }
        }
    }
}

/// Collects items until the oldest has waited its window, the batch is full, or a flush is
/// asked for; sends them in one request.
async fn batch(send: Send, mut receiver: mpsc::Receiver<Message>) {
    let mut items: Vec<Value> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<bool>> = Vec::new();
    let mut due = Instant::now();
    loop {
        let message = if items.is_empty() && waiting.is_empty() {
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
            Some(Message::Item(item, confirm)) => {
                let window = if confirm.is_some() {
                    URGENT_WINDOW
                } else {
                    FLUSH_EVERY
                };
                let item_due = Instant::now() + window;
                due = if items.is_empty() && waiting.is_empty() {
                    item_due
                } else {
                    due.min(item_due)
                };
                items.push(item);
                waiting.extend(confirm);
                items.len() >= MAX_BATCH
            }
            Some(Message::Flush(done)) => {
                waiting.push(done);
                true
            }
            // The oldest item has waited its window.
            None => true,
        };
        if send_now {
            let batch = std::mem::take(&mut items);
            let sent = batch.is_empty() || send(batch).await;
            for done in waiting.drain(..) {
                let _ = done.send(sent);
            }
        }
    }
    if !items.is_empty() {
        send(items).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn recording() -> (Send, Arc<Mutex<Vec<usize>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let send: Send = Arc::new(move |items: Vec<Value>| {
            seen.lock().unwrap().push(items.len());
            Box::pin(async { true })
        });
        (send, batches)
    }

    #[tokio::test(start_paused = true)]
    async fn items_of_a_second_share_a_request_and_a_confirmed_one_leaves_at_once() {
        let (send, batches) = recording();
        let batcher = Batcher::start(send, Counter::default(), "items", "items_dropped");
        for i in 0..5 {
            batcher.push(Value::from(i));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(batches.lock().unwrap().is_empty(), "not before a second");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(*batches.lock().unwrap(), [5]);

        let started = Instant::now();
        assert!(batcher.push_confirmed(Value::from("now")).await);
        assert!(started.elapsed() <= URGENT_WINDOW + Duration::from_millis(1));
        for i in 0..MAX_BATCH {
            batcher.push(Value::from(i));
        }
        batcher.flush().await;
        assert_eq!(*batches.lock().unwrap(), [5, 1, MAX_BATCH]);
    }
}
