//! What the agent knows of its Jobs, their pods and their Kubernetes Events, fed by the watch
//! streams (as kube-runtime's reflector store is fed by `apply_watcher_event`). Nothing here
//! calls an API or decides anything: `decide` reads it, `act` records what was done.
//!
//! Only the facts the rules need are kept (a Job's outcome, each pod's diagnosis, the Event
//! lines not yet told), not whole objects, so that memory follows the number of Jobs, not their
//! size.

use super::diagnose::{Diagnosis, diagnose};
use crate::job::{CLAIM_LABEL, FLOW_RUN_LABEL};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as KubeEvent, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// `namespace`, `name` of a Job.
pub type JobKey = (String, String);

/// Prefect's log levels.
pub const INFO: u8 = 20;
pub const WARNING: u8 = 30;
pub const ERROR: u8 = 40;

/// How many Events wait for their Job or pod at most (the oldest go first).
const MAX_UNMATCHED_EVENTS: usize = 1000;
/// How many Event lines one Job keeps until they are told.
const MAX_EVENTS_PER_JOB: usize = 100;

/// How a Job ended, as its conditions say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Running,
    Succeeded {
        at: Timestamp,
    },
    Failed {
        at: Timestamp,
        reason: String,
        message: String,
    },
}

/// A line for the run's log from a Kubernetes Event of its Job or pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    pub level: u8,
    pub message: String,
}

/// What the run's log held before this agent told it anything, for Jobs this agent did not
/// see created (they were there when it started): a restarted agent must not tell twice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum History {
    /// The Job appeared while this agent watched: nothing was told before.
    #[default]
    NotNeeded,
    /// Listed at start: read the run's log before the first line.
    Unknown,
    Known(Vec<String>),
}

/// What the agent knows of one Job.
#[derive(Debug, Clone, Default)]
pub struct Tracked {
    /// The flow run's id (empty until the Job or one of its pods is seen).
    pub run: String,
    /// The Job's claim label: the Job-name suffix made of the flow run's id and the id of the
    /// PENDING state that claimed the run (`request::job_name_suffix`).
    pub claim: Option<String>,
    /// The Job's outcome; `None` until the Job itself is seen (pods can come first).
    pub outcome: Option<Outcome>,
    /// The Job was deleted, or vanished while the watch was down.
    pub gone: bool,
    /// Each pod's trouble, if any.
    pub pods: BTreeMap<String, Option<Diagnosis>>,
    /// Event lines not told yet, oldest first.
    pub events: Vec<EventLine>,
    /// What was told to the run (by `once` key).
    pub told: HashSet<String>,
    pub history: History,
    /// The run had the agent's last word (a crash, a cancellation), or the Job succeeded:
    /// nothing more to tell.
    pub settled: bool,
    /// The agent asked Kubernetes to delete the Job: its disappearance is not news.
    pub deleting: bool,
    /// The run is cancelling: once the Job is gone, the run is CANCELLED.
    pub cancelling: bool,
}

impl Tracked {
    /// The Job itself has been seen (and is still there).
    pub fn job_known(&self) -> bool {
        self.outcome.is_some() && !self.gone
    }
}

/// Every Job of the agent, by key.
#[derive(Debug, Default)]
pub struct Jobs {
    jobs: HashMap<JobKey, Tracked>,
    /// Per namespace watched ("" for all), the Jobs seen since its Job watch (re)started
    /// listing; absent outside a relist.
    relisting: HashMap<String, HashSet<JobKey>>,
    /// The same for pods: a pod deleted while the pod watch was down is dropped at the relist.
    relisting_pods: HashMap<String, HashSet<(String, String)>>,
    /// Whether the first listing of each scope is over: Jobs listed in it existed before this
    /// agent watched.
    listed_once: HashSet<String>,
    unmatched: VecDeque<PendingEvent>,
}

/// An Event of a Job or pod not known yet.
#[derive(Debug, Clone)]
struct PendingEvent {
    namespace: String,
    kind: String,
    name: String,
    line: EventLine,
}

impl Jobs {
    pub fn get(&self, key: &JobKey) -> Option<&Tracked> {
        self.jobs.get(key)
    }

    pub fn get_mut(&mut self, key: &JobKey) -> Option<&mut Tracked> {
        self.jobs.get_mut(key)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &JobKey> {
        self.jobs.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&JobKey, &Tracked)> {
        self.jobs.iter()
    }

    /// The Job of flow run `run`, if known.
    pub fn key_of_run(&self, run: &str) -> Option<JobKey> {
        self.jobs
            .iter()
            .find(|(_, t)| t.run == run)
            .map(|(k, _)| k.clone())
    }

    /// Jobs that exist and have not finished.
    pub fn running(&self) -> usize {
        self.jobs
            .values()
            .filter(|t| t.job_known() && t.outcome == Some(Outcome::Running))
            .count()
    }

    /// Jobs that may need something done without news from a watch: a pod in trouble that
    /// may outlast its timeout, or a report that could not be made yet (Prefect was down).
    /// Looked at on every tick.
    pub fn pending(&self) -> Vec<JobKey> {
        self.jobs
            .iter()
            .filter(|(_, t)| {
                let unsettled = !t.settled && !t.deleting;
                let news = t.gone
                    || matches!(t.outcome, Some(Outcome::Failed { .. }))
                    || t.pods.values().any(Option::is_some);
                (unsettled && news) || (t.cancelling && t.gone && !t.settled)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Drops a Job that is over: gone, its pods gone, and its run told all there was (or the
    /// agent deleted it for a run that was over).
    pub fn forget_if_done(&mut self, key: &JobKey) {
        if self.jobs.get(key).is_some_and(|t| {
            t.gone && t.pods.is_empty() && (t.settled || (t.deleting && !t.cancelling))
        }) {
            self.jobs.remove(key);
        }
    }

    /// A Job watch event of scope `scope` ("" for all namespaces); the Jobs it changed.
    pub fn apply_job_event(&mut self, scope: &str, event: Event<Job>) -> Vec<JobKey> {
        match event {
            Event::Init => {
                self.relisting.insert(scope.to_string(), HashSet::new());
                Vec::new()
            }
            Event::InitApply(job) => {
                let Some(key) = key_of_job(&job) else {
                    return Vec::new();
                };
                if let Some(seen) = self.relisting.get_mut(scope) {
                    seen.insert(key.clone());
                }
                let first_listing = !self.listed_once.contains(scope);
                self.job_seen(&job, first_listing).into_iter().collect()
            }
            Event::InitDone => {
                self.listed_once.insert(scope.to_string());
                let seen = self.relisting.remove(scope).unwrap_or_default();
                let vanished: Vec<JobKey> = self
                    .jobs
                    .iter()
                    // Only Jobs seen before: pods may be listed before their Job.
                    .filter(|(k, t)| {
                        (scope.is_empty() || k.0 == scope) && t.job_known() && !seen.contains(*k)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in &vanished {
                    self.job_vanished(key);
                }
                vanished
            }
            Event::Apply(job) => self.job_seen(&job, false).into_iter().collect(),
            Event::Delete(job) => match key_of_job(&job) {
                Some(key) if self.jobs.contains_key(&key) => {
                    self.job_vanished(&key);
                    vec![key]
                }
                _ => Vec::new(),
            },
        }
    }

    fn job_seen(&mut self, job: &Job, listed_at_start: bool) -> Option<JobKey> {
        let key = key_of_job(job)?;
        let run = label(&job.metadata, FLOW_RUN_LABEL)?;
        let tracked = self.jobs.entry(key.clone()).or_default();
        if tracked.outcome.is_none() && listed_at_start {
            tracked.history = History::Unknown;
        }
        tracked.run = run;
        tracked.claim = label(&job.metadata, CLAIM_LABEL);
        tracked.gone = false;
        let outcome = outcome(job);
        if matches!(outcome, Outcome::Succeeded { .. }) {
            tracked.settled = true;
        }
        tracked.outcome = Some(outcome);
        self.match_unmatched(&key);
        Some(key)
    }

    fn job_vanished(&mut self, key: &JobKey) {
        if let Some(tracked) = self.jobs.get_mut(key) {
            tracked.gone = true;
        }
    }

    /// A pod watch event of scope `scope`; the Jobs it changed.
    pub fn apply_pod_event(&mut self, scope: &str, event: Event<Pod>) -> Vec<JobKey> {
        let (pod, present) = match event {
            Event::Apply(pod) => (pod, true),
            Event::InitApply(pod) => {
                if let (Some(seen), Some(ns), Some(name)) = (
                    self.relisting_pods.get_mut(scope),
                    &pod.metadata.namespace,
                    &pod.metadata.name,
                ) {
                    seen.insert((ns.clone(), name.clone()));
                }
                (pod, true)
            }
            Event::Delete(pod) => (pod, false),
            Event::Init => {
                self.relisting_pods
                    .insert(scope.to_string(), HashSet::new());
                return Vec::new();
            }
            Event::InitDone => return self.drop_unlisted_pods(scope),
        };
        self.pod_seen(&pod, present).into_iter().collect()
    }

    fn drop_unlisted_pods(&mut self, scope: &str) -> Vec<JobKey> {
        let seen = self.relisting_pods.remove(scope).unwrap_or_default();
        let mut changed = Vec::new();
        for (key, tracked) in &mut self.jobs {
            if !scope.is_empty() && key.0 != scope {
                continue;
            }
            let before = tracked.pods.len();
            tracked
                .pods
                .retain(|name, _| seen.contains(&(key.0.clone(), name.clone())));
            if tracked.pods.len() != before {
                changed.push(key.clone());
            }
        }
        changed
    }

    fn pod_seen(&mut self, pod: &Pod, present: bool) -> Option<JobKey> {
        let key = key_of_pod(pod)?;
        let name = pod.metadata.name.clone()?;
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if !self.jobs.contains_key(&key) && (!present || terminating) {
            return None;
        }
        let tracked = self.jobs.entry(key.clone()).or_default();
        if tracked.run.is_empty() {
            tracked.run = label(&pod.metadata, FLOW_RUN_LABEL).unwrap_or_default();
        }
        if present {
            tracked.pods.insert(name, diagnose(pod));
            self.match_unmatched(&key);
        } else {
            tracked.pods.remove(&name);
        }
        Some(key)
    }

    /// A Kubernetes Event; the Job whose run it is news for, if that Job is known.
    pub fn apply_kube_event(&mut self, event: Event<KubeEvent>) -> Option<JobKey> {
        let event = match event {
            Event::Apply(event) | Event::InitApply(event) => event,
            _ => return None,
        };
        let object = &event.involved_object;
        let (Some(namespace), Some(name), Some(kind)) =
            (&object.namespace, &object.name, &object.kind)
        else {
            return None;
        };
        if !matches!(kind.as_str(), "Job" | "Pod") {
            return None;
        }
        let level = if event.type_.as_deref() == Some("Warning") {
            WARNING
        } else {
            INFO
        };
        let pending = PendingEvent {
            namespace: namespace.clone(),
            kind: kind.clone(),
            name: name.clone(),
            line: EventLine {
                level,
                message: format!(
                    "Kubernetes event on {kind} {name}: {}: {}",
                    event.reason.as_deref().unwrap_or_default(),
                    event.message.as_deref().unwrap_or_default()
                ),
            },
        };
        match self.key_of_event(&pending) {
            Some(key) => {
                self.add_event(&key, pending.line);
                Some(key)
            }
            // An Event can come before its Job or pod: kept until they come.
            None => {
                if self.unmatched.len() >= MAX_UNMATCHED_EVENTS {
                    self.unmatched.pop_front();
                }
                self.unmatched.push_back(pending);
                None
            }
        }
    }

    /// The Job an Event is about, if the agent knows it. A pod's Event waits for the pod's Job
    /// too: after a restart the pods can be listed first, and only the Job tells whether its
    /// run has had the agent's last word already.
    ///
    /// Every agent receives every Job and Pod Event of its namespaces (Events carry no labels),
    /// so this runs for other agents' Events too: a pod's Job is looked up by name first (a
    /// Job's pods are named `JOB-xxxxx`), and only a pod named otherwise costs a scan.
    fn key_of_event(&self, event: &PendingEvent) -> Option<JobKey> {
        let by_name = match event.kind.as_str() {
            "Job" => Some(event.name.as_str()),
            _ => event.name.rsplit_once('-').map(|(job, _)| job),
        };
        if let Some(name) = by_name {
            let key = (event.namespace.clone(), name.to_string());
            if self
                .jobs
                .get(&key)
                .is_some_and(|t| is_about(&key, t, event))
            {
                return Some(key);
            }
        }
        if event.kind == "Job" {
            return None;
        }
        self.jobs
            .iter()
            .find(|(key, t)| is_about(key, t, event))
            .map(|(key, _)| key.clone())
    }

    fn add_event(&mut self, key: &JobKey, line: EventLine) {
        let Some(tracked) = self.jobs.get_mut(key) else {
            return;
        };
        if tracked.settled || tracked.told.contains(&line.message) {
            return;
        }
        if tracked.events.len() >= MAX_EVENTS_PER_JOB {
            tracked.events.remove(0);
        }
        tracked.events.push(line);
    }

    /// Events that came before the Job or pod of `key` did. Called on every update of a Job
    /// or pod, while the waiting Events are mostly other agents': each is only compared with
    /// `key` (looking up each one's Job made replicas spend ten times the CPU per Job).
    fn match_unmatched(&mut self, key: &JobKey) {
        let Some(tracked) = self.jobs.get(key) else {
            return;
        };
        if self.unmatched.is_empty() {
            return;
        }
        let (matched, rest): (Vec<PendingEvent>, Vec<PendingEvent>) =
            std::mem::take(&mut self.unmatched)
                .into_iter()
                .partition(|e| is_about(key, tracked, e));
        self.unmatched = rest.into();
        for event in matched {
            self.add_event(key, event.line);
        }
    }
}

/// Whether `event` is about the Job `key`, tracked as `job`: the Job itself or one of its
/// pods, once the Job has been seen.
fn is_about(key: &JobKey, job: &Tracked, event: &PendingEvent) -> bool {
    key.0 == event.namespace
        && job.outcome.is_some()
        && match event.kind.as_str() {
            "Job" => key.1 == event.name,
            _ => job.pods.contains_key(&event.name),
        }
}

pub fn key_of_job(job: &Job) -> Option<JobKey> {
    Some((job.metadata.namespace.clone()?, job.metadata.name.clone()?))
}

/// The Job a pod belongs to, by its controller owner reference.
pub fn key_of_pod(pod: &Pod) -> Option<JobKey> {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Job")?;
    Some((pod.metadata.namespace.clone()?, owner.name.clone()))
}

fn label(metadata: &ObjectMeta, key: &str) -> Option<String> {
    metadata.labels.as_ref()?.get(key).cloned()
}

/// How the Job ended, from its conditions (and when).
pub fn outcome(job: &Job) -> Outcome {
    let Some(status) = job.status.as_ref() else {
        return Outcome::Running;
    };
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
    };
    let when = |c: &k8s_openapi::api::batch::v1::JobCondition| {
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now)
    };
    if let Some(complete) = condition("Complete") {
        let at = status
            .completion_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(|| when(complete));
        Outcome::Succeeded { at }
    } else if let Some(failed) = condition("Failed") {
        Outcome::Failed {
            at: when(failed),
            reason: failed.reason.clone().unwrap_or_default(),
            message: failed.message.clone().unwrap_or_default(),
        }
    } else {
        Outcome::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(name: &str, status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {FLOW_RUN_LABEL: format!("run-{name}")}},
            "status": status,
        }))
        .unwrap()
    }

    fn pod(name: &str, job: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {FLOW_RUN_LABEL: format!("run-{job}")},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": "u"}]},
            "status": {"phase": "Pending"},
        }))
        .unwrap()
    }

    fn kube_event(kind: &str, name: &str, reason: &str) -> KubeEvent {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{name}.1"), "namespace": "ns"},
            "involvedObject": {"kind": kind, "name": name, "namespace": "ns"},
            "reason": reason, "message": "m", "type": "Warning",
        }))
        .unwrap()
    }

    fn key(name: &str) -> JobKey {
        ("ns".into(), name.into())
    }

    #[test]
    fn events_before_their_job_wait_for_it_and_pod_events_for_the_pods_job() {
        let mut jobs = Jobs::default();
        assert_eq!(
            jobs.apply_kube_event(Event::Apply(kube_event("Pod", "p1", "Pulling"))),
            None
        );
        jobs.apply_pod_event("", Event::Apply(pod("p1", "a")));
        assert!(
            jobs.get(&key("a")).unwrap().events.is_empty(),
            "the Job is not known yet"
        );
        jobs.apply_job_event("", Event::Apply(job("a", json!({}))));
        let tracked = jobs.get(&key("a")).unwrap();
        assert_eq!(tracked.run, "run-a");
        assert_eq!(tracked.events.len(), 1);
        assert_eq!(tracked.events[0].level, WARNING);
        assert!(
            tracked.events[0]
                .message
                .starts_with("Kubernetes event on Pod p1: Pulling")
        );
    }

    #[test]
    fn a_pod_event_finds_its_job_whatever_the_pod_is_named_and_other_agents_events_wait() {
        let mut jobs = Jobs::default();
        jobs.apply_job_event("", Event::Apply(job("etl-a", json!({}))));
        jobs.apply_pod_event("", Event::Apply(pod("etl-a-x1y2z", "etl-a")));
        jobs.apply_pod_event("", Event::Apply(pod("renamed", "etl-a")));
        for name in ["etl-a-x1y2z", "renamed"] {
            assert_eq!(
                jobs.apply_kube_event(Event::Apply(kube_event("Pod", name, "Pulling"))),
                Some(key("etl-a")),
                "{name}"
            );
        }
        // Another agent's Job and pod: never seen here, so their Events wait (and are only
        // compared with each Job or pod that comes).
        for (kind, name) in [
            ("Job", "etl-b"),
            ("Pod", "etl-b-q7r8s"),
            ("Pod", "etl-a-other"),
        ] {
            assert_eq!(
                jobs.apply_kube_event(Event::Apply(kube_event(kind, name, "Started"))),
                None,
                "{kind} {name}"
            );
        }
        jobs.apply_job_event("", Event::Apply(job("etl-c", json!({}))));
        assert_eq!(jobs.unmatched.len(), 3);
        assert_eq!(jobs.get(&key("etl-a")).unwrap().events.len(), 2);
    }

    #[test]
    fn jobs_listed_at_start_need_their_runs_log_history_and_new_ones_do_not() {
        let mut jobs = Jobs::default();
        jobs.apply_job_event("", Event::Init);
        jobs.apply_job_event("", Event::InitApply(job("old", json!({}))));
        jobs.apply_job_event("", Event::InitDone);
        jobs.apply_job_event("", Event::Apply(job("new", json!({}))));
        assert_eq!(jobs.get(&key("old")).unwrap().history, History::Unknown);
        assert_eq!(jobs.get(&key("new")).unwrap().history, History::NotNeeded);
        // A relist after a 410 is not a start.
        jobs.apply_job_event("", Event::Init);
        jobs.apply_job_event("", Event::InitApply(job("newer", json!({}))));
        assert_eq!(jobs.get(&key("newer")).unwrap().history, History::NotNeeded);
    }

    #[test]
    fn a_relist_without_a_job_marks_it_gone_and_succeeded_jobs_are_settled() {
        let mut jobs = Jobs::default();
        jobs.apply_job_event("", Event::Apply(job("a", json!({}))));
        jobs.apply_job_event(
            "",
            Event::Apply(job(
                "b",
                json!({"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
            )),
        );
        assert!(jobs.get(&key("b")).unwrap().settled);
        jobs.apply_job_event("", Event::Init);
        jobs.apply_job_event("", Event::InitApply(job("b", json!({}))));
        let changed = jobs.apply_job_event("", Event::InitDone);
        assert_eq!(changed, vec![key("a")]);
        assert!(jobs.get(&key("a")).unwrap().gone);
        jobs.forget_if_done(&key("a"));
        assert!(jobs.get(&key("a")).is_some(), "its run is not told yet");
        jobs.get_mut(&key("a")).unwrap().settled = true;
        jobs.forget_if_done(&key("a"));
        assert!(
            jobs.get(&key("a")).is_none(),
            "gone, no pods, told: forgotten"
        );
    }

    #[test]
    fn a_failed_job_keeps_its_reason_and_time() {
        let failed = job(
            "f",
            json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                   "message": "Job has reached the specified backoff limit",
                                   "lastTransitionTime": "2026-01-01T00:00:05Z"}]}),
        );
        assert_eq!(
            outcome(&failed),
            Outcome::Failed {
                at: "2026-01-01T00:00:05Z".parse().unwrap(),
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into()
            }
        );
    }
}
