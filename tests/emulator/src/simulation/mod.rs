//! The parts of a cluster that act on their own, simulated, each in its own file as an API
//! server's controllers are separate: the Job controller (pods, backoffLimit,
//! activeDeadlineSeconds, conditions, ttlSecondsAfterFinished, suspend), the scheduler (node
//! selector, taints, capacity), the kubelet (pulling, running, exiting as the pod's script
//! says; config errors; graceful termination) and the garbage collector (owner references,
//! foreground deletion). Here: the tick that runs them, and what they share (the Events they
//! write, names and times).

mod garbage_collector;
mod job_controller;
mod kubelet;
mod scheduler;

use crate::memory::{Memory, Stage};
use crate::state::{Shared, events, jobs, now as timestamp, pods};
use crate::store::Store;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the simulation until the emulator stops: a tick every 10 ms, or at once after a write.
pub async fn run(shared: Arc<Shared>) {
    loop {
        tick(&shared);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

fn tick(shared: &Shared) {
    let node = shared.node.read().unwrap().clone();
    let mut store = shared.store.lock().unwrap();
    let mut sim = shared.simulation.lock().unwrap();
    let now = Instant::now();
    let scale = shared.config.time_scale;
    garbage_collector::collect_garbage(&mut store);
    // Work by reference first and clone only what has something to do: a tick runs after every
    // write, so it must cost little when nothing is due.
    let owned = PodIndex::build(&store);
    let due_jobs: Vec<Value> = store
        .list(jobs(), None)
        .map(|(_, job)| job)
        .filter(|job| job["metadata"].get("deletionTimestamp").is_none())
        .filter(|job| {
            !job_controller::finished(job) || job["spec"].get("ttlSecondsAfterFinished").is_some()
        })
        .cloned()
        .collect();
    for job in due_jobs {
        job_controller::control_job(&mut store, &mut sim, &owned, job, now, scale);
    }
    let due_pods: Vec<Value> = store
        .list(pods(), None)
        .map(|(_, pod)| pod)
        .filter(|pod| {
            pod["metadata"].get("deletionTimestamp").is_some()
                || sim
                    .pods
                    .get(pod["metadata"]["uid"].as_str().unwrap_or(""))
                    .is_none_or(|plan| {
                        plan.next <= now && !matches!(plan.stage, Stage::Stuck | Stage::Done)
                    })
        })
        .cloned()
        .collect();
    for pod in due_pods {
        kubelet::run_pod(
            &mut store,
            &mut sim,
            &shared.config.pods,
            &node,
            pod,
            now,
            scale,
        );
    }
    forget_the_gone(&store, &mut sim);
}

/// Drops plans of pods and back-off timers of Jobs that no longer exist, so the simulation's
/// memory follows the live objects.
fn forget_the_gone(store: &Store, sim: &mut Memory) {
    if sim.pods.len() > store.list(pods(), None).count() {
        let live: std::collections::HashSet<String> =
            store.list(pods(), None).map(|(_, p)| uid(p)).collect();
        sim.pods.retain(|pod_uid, _| live.contains(pod_uid));
    }
    let job_count = store.list(jobs(), None).count();
    if sim.job_backoff.len() > 2 * job_count {
        let live: std::collections::HashSet<String> =
            store.list(jobs(), None).map(|(_, j)| uid(j)).collect();
        sim.job_backoff.retain(|key, _| live.contains(key));
        sim.job_started.retain(|key, _| live.contains(key));
    }
}

/// What the Job controller needs to know of a pod, by owner uid.
pub(crate) struct OwnedPod {
    pub name: String,
    pub phase: String,
    pub deleting: bool,
}

pub(crate) struct PodIndex(HashMap<String, Vec<OwnedPod>>);

impl PodIndex {
    fn build(store: &Store) -> Self {
        let mut index: HashMap<String, Vec<OwnedPod>> = HashMap::new();
        for (_, pod) in store.list(pods(), None) {
            for owner in pod["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(owner_uid) = owner["uid"].as_str() else {
                    continue;
                };
                index
                    .entry(owner_uid.to_string())
                    .or_default()
                    .push(OwnedPod {
                        name: name(pod).to_string(),
                        phase: pod
                            .pointer("/status/phase")
                            .and_then(Value::as_str)
                            .unwrap_or("Pending")
                            .to_string(),
                        deleting: pod["metadata"].get("deletionTimestamp").is_some(),
                    });
            }
        }
        PodIndex(index)
    }

    pub(crate) fn of(&self, owner_uid: &str) -> &[OwnedPod] {
        self.0.get(owner_uid).map(Vec::as_slice).unwrap_or(&[])
    }
}

pub(crate) fn scaled(ms: f64, scale: f64) -> Duration {
    Duration::from_secs_f64((ms * scale / 1000.0).max(0.0))
}

pub(crate) fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

pub(crate) fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

pub(crate) fn namespace(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or("")
}

/// Records an Event about `involved`, or counts a repeat of the same one.
pub(crate) fn emit(
    store: &mut Store,
    sim: &mut Memory,
    involved: &Value,
    warning: bool,
    reason: &str,
    message: &str,
    component: &str,
) {
    let key = (uid(involved), reason.to_string(), message.to_string());
    let ns = namespace(involved).to_string();
    if let Some(existing) = sim
        .events
        .get(&key)
        .and_then(|n| store.get(events(), &ns, n))
        .cloned()
    {
        let mut event = existing;
        event["count"] = json!(event["count"].as_i64().unwrap_or(1) + 1);
        event["lastTimestamp"] = json!(timestamp());
        store.put(events(), event);
        return;
    }
    let event_name = format!("{}.{:016x}", name(involved), fastrand::u64(..));
    let timestamp = timestamp();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name, "namespace": ns, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": timestamp},
        "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": name(involved),
                           "namespace": ns, "uid": uid(involved), "resourceVersion": involved["metadata"]["resourceVersion"]},
        "reason": reason, "message": message, "type": if warning { "Warning" } else { "Normal" },
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": "",
        "firstTimestamp": timestamp, "lastTimestamp": timestamp, "count": 1, "eventTime": null,
    });
    store.put(events(), event);
    sim.events.insert(key, event_name);
}
