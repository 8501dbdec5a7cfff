//! Which polled runs are due now, and when the next one is. A poll looks one poll interval
//! past the prefetch window, so that a run falling due between two polls gets a timer and is
//! claimed exactly `--prefetch` before its time instead of at the next poll.

use crate::prefect::models::FlowRun;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Polled runs, sorted by whether they are due.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Due within the prefetch window: claimed now, in the order the server gave (its queue
    /// priorities first).
    pub due: Vec<FlowRun>,
    /// When the earliest run not yet due enters the prefetch window.
    pub next_due: Option<DateTime<Utc>>,
}

/// How far ahead a poll asks: the prefetch window, and one poll interval more for timers.
pub fn horizon(now: DateTime<Utc>, prefetch: Duration, poll_interval: Duration) -> DateTime<Utc> {
    now + to_delta(prefetch) + to_delta(poll_interval)
}

pub fn sort(runs: Vec<FlowRun>, now: DateTime<Utc>, prefetch: Duration) -> Sorted {
    let window_end = now + to_delta(prefetch);
    let mut sorted = Sorted::default();
    for run in runs {
        match run.due_at() {
            Some(at) if at > window_end => {
                let enters = at - to_delta(prefetch);
                sorted.next_due = Some(sorted.next_due.map_or(enters, |t| t.min(enters)));
            }
            _ => sorted.due.push(run),
        }
    }
    sorted
}

fn to_delta(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, due: Option<&str>) -> FlowRun {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": "n", "flow_id": "f", "next_scheduled_start_time": due,
        }))
        .unwrap()
    }

    #[test]
    fn runs_in_the_prefetch_window_are_due_and_the_earliest_later_one_sets_the_timer() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let prefetch = Duration::from_secs(10);
        let sorted = sort(
            vec![
                run("past", Some("2025-12-31T23:59:00Z")),
                run("in-window", Some("2026-01-01T00:00:10Z")),
                run("later", Some("2026-01-01T00:00:25Z")),
                run("sooner", Some("2026-01-01T00:00:12.5Z")),
                run("unknown", None),
            ],
            now,
            prefetch,
        );
        let due: Vec<&str> = sorted.due.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(due, ["past", "in-window", "unknown"]);
        assert_eq!(
            sorted.next_due,
            Some("2026-01-01T00:00:02.5Z".parse().unwrap()),
            "the run due at 12.5 s enters the 10 s window at 2.5 s"
        );
        assert_eq!(
            horizon(now, prefetch, Duration::from_secs(15)),
            "2026-01-01T00:00:25Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn nothing_later_sets_no_timer() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let sorted = sort(
            vec![run("a", Some("2026-01-01T00:00:01Z"))],
            now,
            Duration::from_secs(5),
        );
        assert!(sorted.next_due.is_none());
        assert_eq!(sorted.due.len(), 1);
    }
}
