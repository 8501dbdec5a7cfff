//! Prefect events for the pods of the agent's Jobs, as prefect-kubernetes' observer emits
//! them, so that automations written for Prefect's worker fire the same:
//! `prefect.kubernetes.pod.<phase>` (pending, running, succeeded, failed, evicted), about
//! `prefect.kubernetes.pod.<uid>` with the pod's name and namespace, `kubernetes.diagnosis`
//! (Prefect's failure category) and `kubernetes.reason` (evictions), related to the run,
//! deployment, flow, pool and worker its labels name, at the time the pod's own status gives,
//! following the pod's previous event.
//!
//! Ids are Prefect's: a UUID v5 of the pod, phase, restarts and category, so that the same
//! state is one event however often it is seen (here, or after a restart: the server keeps
//! the first of an id). The category is computed here rather than taken from `diagnose`:
//! it is Prefect's published vocabulary, and `diagnose` says what the agent does.

use crate::prefect::emit::{Event, WORKER_TYPE};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Events of one pod closer than this follow each other (as Prefect's `follows` rule).
const FOLLOWS_WITHIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// What was emitted for each pod: the ids, and the last event (for `follows`).
#[derive(Default)]
pub struct PodEvents {
    emitted: HashMap<String, HashSet<String>>,
    last: HashMap<String, (String, DateTime<Utc>)>,
}

impl PodEvents {
    /// The event for the pod as it is now, unless it was emitted already. `changed`: seen as
    /// a change, not in the listing a watch starts with (Prefect's observer calls a failed
    /// pod evicted only on a change).
    pub fn observe(&mut self, pod: &Pod, changed: bool) -> Option<Event> {
        let event = pod_event(pod, changed)?;
        let uid = event.resource["prefect.resource.id"]
            .as_str()?
            .trim_start_matches("prefect.kubernetes.pod.")
            .to_string();
        if !self
            .emitted
            .entry(uid.clone())
            .or_default()
            .insert(event.id.clone())
        {
            return None;
        }
        let mut event = event;
        if let Some((previous, at)) = self.last.get(&uid)
            && (event.occurred - *at).abs() < FOLLOWS_WITHIN
        {
            event.follows = Some(previous.clone());
        }
        self.last.insert(uid, (event.id.clone(), event.occurred));
        Some(event)
    }

    /// Forgets a pod that is gone.
    pub fn forget(&mut self, pod: &Pod) {
        if let Some(uid) = &pod.metadata.uid {
            self.emitted.remove(uid);
            self.last.remove(uid);
        }
    }
}

/// The event for a pod's present state; `None` for a pod with no uid or phase yet.
pub fn pod_event(pod: &Pod, changed: bool) -> Option<Event> {
    let uid = pod.metadata.uid.as_deref()?;
    let status = pod.status.as_ref()?;
    let phase = status.phase.as_deref()?;
    let category = category(status);
    let id = event_id(uid, phase, restarts(status), category);
    let mut resource = Map::new();
    resource.insert(
        "prefect.resource.id".into(),
        format!("prefect.kubernetes.pod.{uid}").into(),
    );
    resource.insert(
        "prefect.resource.name".into(),
        pod.metadata.name.clone().unwrap_or_default().into(),
    );
    resource.insert(
        "kubernetes.namespace".into(),
        pod.metadata.namespace.clone().unwrap_or_default().into(),
    );
    if let Some(category) = category {
        resource.insert("kubernetes.diagnosis".into(), category.into());
    }
    let mut named_phase = phase.to_string();
    if changed && phase == "Failed" {
        let reason = containers(status, false)
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.reason.clone())
            .find(|reason| !reason.is_empty());
        if let Some(reason) = reason {
            named_phase = "evicted".into();
            resource.insert("kubernetes.reason".into(), reason.into());
        }
    }
    let occurred = occurred(pod, status, &named_phase).unwrap_or_else(Utc::now);
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    Some(Event {
        id,
        event: format!("prefect.kubernetes.pod.{}", named_phase.to_lowercase()),
        occurred,
        resource,
        related: related_from_labels(&labels),
        follows: None,
    })
}

/// Prefect's id: UUID v5 (URL namespace) of `json.dumps({...}, sort_keys=True)`.
fn event_id(uid: &str, phase: &str, restarts: i32, category: Option<&str>) -> String {
    // Python's json.dumps separators (", " and ": "), keys sorted.
    let name = format!(
        "{{\"diagnosis\": {}, \"phase\": {}, \"restart_count\": {restarts}, \"uid\": {}}}",
        category.map_or("null".to_string(), |c| json!(c).to_string()),
        json!(phase),
        json!(uid),
    );
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

fn restarts(status: &PodStatus) -> i32 {
    containers(status, false).map(|c| c.restart_count).sum()
}

/// The pod's containers' statuses; with `init`, the init containers' first.
fn containers(status: &PodStatus, init: bool) -> impl Iterator<Item = &ContainerStatus> {
    let init_statuses = init
        .then_some(status.init_container_statuses.as_deref())
        .flatten()
        .unwrap_or_default();
    init_statuses
        .iter()
        .chain(status.container_statuses.as_deref().unwrap_or_default())
}

/// prefect-kubernetes' `DiagnosisCategory` of a pod, as its `diagnose_k8s_pod` finds it.
fn category(status: &PodStatus) -> Option<&'static str> {
    for container in containers(status, true) {
        let reason = container
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref());
        match reason {
            Some("ImagePullBackOff" | "ErrImagePull") => return Some("ImagePullError"),
            Some("CrashLoopBackOff") => return Some("CrashLoopBackOff"),
            _ => {}
        }
    }
    for container in containers(status, true) {
        let reason = container
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.as_deref());
        match reason {
            Some("OOMKilled") => return Some("OOMKilled"),
            Some("Evicted") => return Some("Evicted"),
            _ => {}
        }
    }
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable"));
    if let Some(condition) = unschedulable {
        let message = condition
            .message
            .as_deref()
            .unwrap_or_default()
            .to_lowercase();
        return Some(if message.contains("taint") {
            "Unschedulable.Taint"
        } else if message.contains("affinity") || message.contains("node selector") {
            "Unschedulable.NodeAffinity"
        } else if message.contains("insufficient") {
            "Unschedulable.InsufficientResources"
        } else {
            "Unschedulable"
        });
    }
    (status.reason.as_deref() == Some("Evicted")).then_some("Evicted")
}

/// When the phase began, from the pod's own timestamps.
fn occurred(pod: &Pod, status: &PodStatus, phase: &str) -> Option<DateTime<Utc>> {
    let time = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| {
        DateTime::<Utc>::from_timestamp_micros(t.0.as_microsecond())
    };
    match phase {
        "Pending" => pod.metadata.creation_timestamp.as_ref().and_then(time),
        "Running" => containers(status, false)
            .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .filter_map(time)
            .max()
            .or_else(|| status.start_time.as_ref().and_then(time)),
        "Succeeded" | "Failed" | "evicted" => containers(status, true)
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
            .filter_map(time)
            .max(),
        _ => None,
    }
}

/// The run, deployment, flow, pool and worker the pod's Prefect labels name.
fn related_from_labels(labels: &BTreeMap<String, String>) -> Vec<Value> {
    let mut related = Vec::new();
    for (kind, id_label, name_label) in [
        (
            "flow-run",
            "prefect.io/flow-run-id",
            "prefect.io/flow-run-name",
        ),
        (
            "deployment",
            "prefect.io/deployment-id",
            "prefect.io/deployment-name",
        ),
        ("flow", "prefect.io/flow-id", "prefect.io/flow-name"),
        (
            "work-pool",
            "prefect.io/work-pool-id",
            "prefect.io/work-pool-name",
        ),
    ] {
        if let Some(id) = labels.get(id_label) {
            related.push(crate::prefect::emit::related(
                kind,
                id,
                labels.get(name_label).map(String::as_str),
            ));
        }
    }
    if let Some(worker) = labels.get("prefect.io/worker-name") {
        related.push(json!({
            "prefect.resource.id": format!("prefect.worker.{WORKER_TYPE}.{}", slug::slugify(worker)),
            "prefect.resource.role": "worker",
            "prefect.resource.name": worker,
            "prefect.worker-type": WORKER_TYPE,
            "prefect.version": env!("CARGO_PKG_VERSION"),
        }));
    }
    related
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "etl-abc-x1", "namespace": "jobs", "uid": "u1",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {
                    "prefect.io/flow-run-id": "r1", "prefect.io/flow-run-name": "run",
                    "prefect.io/work-pool-id": "p1", "prefect.io/work-pool-name": "pool",
                    "prefect.io/worker-name": "Agent One",
                },
            },
            "status": status,
        }))
        .unwrap()
    }

    fn running() -> Value {
        json!({"phase": "Running", "startTime": "2026-01-01T00:00:05Z", "containerStatuses": [
            {"name": "prefect-job", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
             "state": {"running": {"startedAt": "2026-01-01T00:00:07Z"}}}]})
    }

    #[test]
    fn ids_are_prefects_uuid5_of_pod_phase_restarts_and_category() {
        // Known answers from Python: uuid5(NAMESPACE_URL, json.dumps({...}, sort_keys=True)).
        assert_eq!(
            event_id("u1", "Running", 0, None),
            "a10b3359-a537-523f-9e8e-878a517026a0"
        );
        assert_eq!(
            event_id("u1", "Pending", 2, Some("ImagePullError")),
            "abe9b0e1-711b-5b80-86c6-24f9206ad0a6"
        );
    }

    #[test]
    fn a_running_pod_is_one_event_at_its_start_related_as_its_labels_say() {
        let mut events = PodEvents::default();
        let pending = pod(json!({"phase": "Pending"}));
        let first = events.observe(&pending, false).unwrap();
        assert_eq!(first.event, "prefect.kubernetes.pod.pending");
        assert_eq!(first.occurred.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert!(
            events.observe(&pending, true).is_none(),
            "the same state once"
        );

        let event = events.observe(&pod(running()), true).unwrap();
        assert_eq!(event.event, "prefect.kubernetes.pod.running");
        assert_eq!(event.occurred.to_rfc3339(), "2026-01-01T00:00:07+00:00");
        assert_eq!(event.follows.as_deref(), Some(first.id.as_str()));
        assert_eq!(
            event.resource["prefect.resource.id"],
            "prefect.kubernetes.pod.u1"
        );
        assert_eq!(event.resource["kubernetes.namespace"], "jobs");
        let roles: Vec<&str> = event
            .related
            .iter()
            .map(|r| r["prefect.resource.role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["flow-run", "work-pool", "worker"]);
        assert_eq!(
            event.related[2]["prefect.resource.id"],
            "prefect.worker.kubernetes.agent-one"
        );
    }

    #[test]
    fn categories_are_prefects_and_a_failed_pod_with_a_reason_is_evicted_on_a_change() {
        let pulling = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}));
        let event = pod_event(&pulling, true).unwrap();
        assert_eq!(event.resource["kubernetes.diagnosis"], "ImagePullError");

        let unschedulable = |message: &str| {
            let pod = pod(json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}));
            pod_event(&pod, true).unwrap().resource["kubernetes.diagnosis"].clone()
        };
        assert_eq!(
            unschedulable("0/3 nodes are available: 3 Insufficient cpu."),
            "Unschedulable.InsufficientResources"
        );
        assert_eq!(
            unschedulable("0/3 nodes are available: 3 node(s) had untolerated taint {a: b}."),
            "Unschedulable.Taint"
        );
        assert_eq!(
            unschedulable(
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
            ),
            "Unschedulable.NodeAffinity"
        );
        assert_eq!(unschedulable("something else"), "Unschedulable");

        let failed = pod(json!({"phase": "Failed", "containerStatuses": [
            {"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-01-01T00:01:00Z"}}}]}));
        let changed = pod_event(&failed, true).unwrap();
        assert_eq!(changed.event, "prefect.kubernetes.pod.evicted");
        assert_eq!(changed.resource["kubernetes.reason"], "Error");
        assert_eq!(changed.occurred.to_rfc3339(), "2026-01-01T00:01:00+00:00");
        let listed = pod_event(&failed, false).unwrap();
        assert_eq!(listed.event, "prefect.kubernetes.pod.failed");
        assert_eq!(listed.id, changed.id, "the id keeps the pod's own phase");
    }
}
