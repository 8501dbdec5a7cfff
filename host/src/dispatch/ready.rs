//! Runs polled and due but not started yet, started as slots free up without another poll.
//!
//! A poll asks for several slots' worth of runs, as Prefect's worker does: on a backlog, a
//! poll per freed slot spent the loop's time waiting on `get_scheduled_flow_runs` (a write on
//! Prefect's side) while slots stood empty. What a poll gave is only trusted for a while: past
//! `fresh_for`, what is left is dropped and the next poll asks again (a run claimed by
//! another agent meanwhile is only a rejected claim).

use crate::prefect::models::FlowRun;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

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

    /// Replaces what is left with what a poll at `polled_at` gave, in the server's order.
    pub fn refill(&mut self, runs: impl IntoIterator<Item = FlowRun>, polled_at: Instant) {
        self.runs = runs.into_iter().collect();
        self.polled_at = polled_at;
    }

    /// Adds runs found otherwise (claims left unfinished) behind those polled.
    pub fn extend(&mut self, runs: impl IntoIterator<Item = FlowRun>) {
        self.runs.extend(runs);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str) -> FlowRun {
        serde_json::from_value(serde_json::json!({"id": id, "name": "n", "flow_id": "f"})).unwrap()
    }

    fn ids(ready: &mut Ready, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| ready.next(now))
            .map(|r| r.id)
            .collect()
    }

    #[test]
    fn runs_come_out_in_the_servers_order_then_those_added() {
        let start = Instant::now();
        let mut ready = Ready::new(Duration::from_secs(10));
        ready.refill([run("a"), run("b")], start);
        ready.extend([run("orphan")]);
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
