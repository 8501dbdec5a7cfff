//! What the simulated components remember between ticks: per pod, where it is in its script;
//! repeated Events, to count them as the real components do; per Job, its back-off and start.
//! Kept apart from the components (`simulation`) so that the shared state holds it without
//! depending on them.

use crate::config::Behaviour;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Default)]
pub struct Memory {
    pub pods: HashMap<String, PodPlan>,
    /// (involved uid, reason, message) → event name, to count repeats as the real components do.
    pub events: HashMap<(String, String, String), String>,
    /// Job uid → when its next pod may be created (back-off after failures).
    pub job_backoff: HashMap<String, Instant>,
    /// Job uid → when its first pod was created (for activeDeadlineSeconds).
    pub job_started: HashMap<String, Instant>,
}

/// One pod's script and where it is in it.
pub struct PodPlan {
    pub behaviour: Behaviour,
    pub log: Vec<String>,
    pub stage: Stage,
    pub next: Instant,
    pub restarts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Scheduling,
    Starting,
    PullBackOff,
    Running,
    CrashBackOff,
    Stuck,
    Done,
}

impl Memory {
    pub fn log_of(&self, pod_uid: &str) -> String {
        match self.pods.get(pod_uid) {
            Some(plan) if !plan.log.is_empty() => plan.log.join("\n") + "\n",
            _ => String::new(),
        }
    }

    /// Brings every running container's end (as its script says: exit, OOM, eviction) to `now`,
    /// so a test decides when runs end instead of racing a timer.
    pub fn end_runs(&mut self, now: Instant) {
        for plan in self.pods.values_mut() {
            if plan.stage == Stage::Running {
                plan.next = now;
            }
        }
    }

    /// Moves a pod's script to `stage`, due at `next`.
    pub fn set_stage(&mut self, pod_uid: &str, stage: Stage, next: Instant) {
        if let Some(plan) = self.pods.get_mut(pod_uid) {
            plan.stage = stage;
            plan.next = next;
        }
    }
}
