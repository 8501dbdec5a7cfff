//! Runs polled and due but not started yet, started as slots free up without another poll.
//!
//! A poll asks for several slots' worth of runs, as Prefect's worker does: on a backlog, a
//! poll per freed slot spent the loop's time waiting on `get_scheduled_flow_runs` (a write on
//! Prefect's side) while slots stood empty. What a poll gave is only trusted for a while: past
//! `fresh_for`, what is left is dropped and the next poll asks again (a run claimed by
//! another agent meanwhile is only a rejected claim).
//!
//! Replicas of one pool poll the same runs in the same order; if each started at the front,
//! they would race for the same claims and all but one would be rejected. Each poll's runs are
//! therefore started from a random place within each queue's runs ([`spread`]).

use crate::prefect::models::FlowRun;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Ready {
    runs: VecDeque<FlowRun>,
    polled_at: Instant,
    fresh_for: Duration,
}

impl Ready {
    pub fn new(fresh_for: Duration) -> Self {
        Ready {
            runs: VecDeque::new(),
            polled_at: Instant::now(),
            fresh_for,
        }
    }

    /// Replaces what is left with what a poll at `polled_at` gave (and the claims left
    /// unfinished found with it), in that order.
    pub fn refill(&mut self, runs: impl IntoIterator<Item = FlowRun>, polled_at: Instant) {
        self.runs = runs.into_iter().collect();
        self.polled_at = polled_at;
    }

    /// The next run to start, if what was polled is still fresh at `now`.
    pub fn next(&mut self, now: Instant) -> Option<FlowRun> {
        if !self.is_fresh(now) {
            self.runs.clear();
        }
        self.runs.pop_front()
    }

    /// Whether runs are waiting that are still fresh at `now` (no poll is needed).
    pub fn has_runs(&self, now: Instant) -> bool {
        !self.runs.is_empty() && self.is_fresh(now)
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.polled_at) < self.fresh_for
    }
}

/// Rotates each queue's runs (a contiguous block in the server's order: queue priority, then
/// scheduled time) to begin at `start(block length)`, so that replicas polling one pool begin
/// with different runs; the order between queues is kept.
pub fn spread(mut runs: Vec<FlowRun>, mut start: impl FnMut(usize) -> usize) -> Vec<FlowRun> {
    for block in runs.chunk_by_mut(|a, b| a.work_queue_name == b.work_queue_name) {
        let at = start(block.len()) % block.len();
        block.rotate_left(at);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str) -> FlowRun {
        serde_json::from_value(serde_json::json!({"id": id, "name": "n", "flow_id": "f"})).unwrap()
    }

    fn queued(id: &str, queue: &str) -> FlowRun {
        FlowRun {
            work_queue_name: Some(queue.into()),
            ..run(id)
        }
    }

    #[test]
    fn spread_rotates_within_each_queue_and_keeps_the_queues_order() {
        let runs = vec![
            queued("high-1", "high"),
            queued("high-2", "high"),
            queued("high-3", "high"),
            queued("low-1", "low"),
            queued("low-2", "low"),
        ];
        let mut lengths = Vec::new();
        let spread = spread(runs, |len| {
            lengths.push(len);
            len + 1
        });
        let ids: Vec<&str> = spread.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["high-2", "high-3", "high-1", "low-2", "low-1"]);
        assert_eq!(lengths, [3, 2], "one start per queue, chosen by its length");
        assert!(super::spread(Vec::new(), |_| unreachable!()).is_empty());
    }

    fn ids(ready: &mut Ready, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| ready.next(now))
            .map(|r| r.id)
            .collect()
    }

    #[test]
    fn runs_come_out_in_the_order_given() {
        let start = Instant::now();
        let mut ready = Ready::new(Duration::from_secs(10));
        ready.refill([run("a"), run("b"), run("orphan")], start);
        assert!(ready.has_runs(start));
        assert_eq!(ids(&mut ready, start), ["a", "b", "orphan"]);
        assert!(!ready.has_runs(start));
    }

    #[test]
    fn what_a_poll_gave_goes_stale_and_a_refill_replaces_it() {
        let start = Instant::now();
        let mut ready = Ready::new(Duration::from_secs(10));
        ready.refill([run("a"), run("b")], start);
        let later = start + Duration::from_secs(10);
        assert!(!ready.has_runs(later), "stale at fresh_for");
        assert_eq!(ready.next(later).map(|r| r.id), None);
        ready.refill([run("c")], later);
        assert_eq!(
            ids(&mut ready, later),
            ["c"],
            "nothing of the old poll is left"
        );
    }
}
