//! The kubelet: pulls the image and runs the container as the pod's script says (or fails to:
//! pull errors, invalid names, missing Secrets and ConfigMaps), ends it (success, failure,
//! OOM, eviction, crash loops under `restartPolicy: OnFailure`), stops it on deletion.

use super::{emit, name, namespace, scaled};
use crate::config::{Behaviour, Node, PodRule};
use crate::memory::{Memory, PodPlan, Stage};
use crate::state::{now as timestamp, pods};
use crate::store::Store;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[allow(clippy::too_many_arguments)]
pub(super) fn run_pod(
    store: &mut Store,
    sim: &mut Memory,
    rules: &[PodRule],
    node: &Node,
    pod: Value,
    now: Instant,
    scale: f64,
) {
    let pod_uid = super::uid(&pod);
    if pod["metadata"].get("deletionTimestamp").is_some() {
        terminate(store, sim, &pod, &pod_uid);
        return;
    }
    let plan = sim.pods.entry(pod_uid.clone()).or_insert_with(|| {
        let rule = rules.iter().find(|r| rule_matches(r, &pod));
        PodPlan {
            behaviour: rule.map(|r| r.then.clone()).unwrap_or_default(),
            log: rule.map(|r| r.log.clone()).unwrap_or_default(),
            stage: Stage::Scheduling,
            next: now + scaled(20.0, scale),
            restarts: 0,
        }
    });
    if plan.next > now || matches!(plan.stage, Stage::Stuck | Stage::Done) {
        return;
    }
    let stage = plan.stage;
    let behaviour = plan.behaviour.clone();
    match stage {
        Stage::Scheduling => {
            super::scheduler::schedule(store, sim, node, pod, &pod_uid, &behaviour, now, scale)
        }
        Stage::Starting => start(store, sim, pod, &pod_uid, &behaviour, now, scale),
        Stage::PullBackOff => {
            let image = image_of(&pod);
            let updated = with_waiting(
                &pod,
                "ImagePullBackOff",
                &format!("Back-off pulling image \"{image}\""),
            );
            let updated = store.put(pods(), updated);
            emit(
                store,
                sim,
                &updated,
                false,
                "BackOff",
                &format!("Back-off pulling image \"{image}\""),
                "kubelet",
            );
            emit(
                store,
                sim,
                &updated,
                true,
                "Failed",
                "Error: ImagePullBackOff",
                "kubelet",
            );
            sim.set_stage(&pod_uid, Stage::Stuck, now);
        }
        Stage::Running => finish_run(store, sim, pod, &pod_uid, &behaviour, now, scale),
        Stage::CrashBackOff => {
            let updated = store.put(pods(), with_running(&pod, sim.pods[&pod_uid].restarts));
            emit(
                store,
                sim,
                &updated,
                false,
                "Started",
                &format!("Started container {}", container_name(&pod)),
                "kubelet",
            );
            let run = run_ms(&behaviour);
            sim.set_stage(&pod_uid, Stage::Running, now + scaled(run as f64, scale));
        }
        Stage::Stuck | Stage::Done => {}
    }
}

fn rule_matches(rule: &PodRule, pod: &Value) -> bool {
    let image = image_of(pod);
    let image_ok =
        rule.matches
            .image
            .as_ref()
            .is_none_or(|wanted| match wanted.strip_suffix('*') {
                Some(prefix) => image.starts_with(prefix),
                None => image == *wanted,
            });
    let labels = pod.pointer("/metadata/labels");
    image_ok
        && rule
            .matches
            .labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v.as_str()))
}

fn image_of(pod: &Value) -> String {
    pod.pointer("/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn container_name(pod: &Value) -> String {
    pod.pointer("/spec/containers/0/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn run_ms(behaviour: &Behaviour) -> u64 {
    match behaviour {
        Behaviour::Succeed { run_ms }
        | Behaviour::Fail { run_ms, .. }
        | Behaviour::OomKilled { run_ms }
        | Behaviour::CrashLoop { run_ms }
        | Behaviour::Evicted { run_ms } => *run_ms,
        _ => 0,
    }
}

/// Pulls the image and starts the container, unless the script or a missing Secret/ConfigMap
/// says otherwise.
fn start(
    store: &mut Store,
    sim: &mut Memory,
    pod: Value,
    pod_uid: &str,
    behaviour: &Behaviour,
    now: Instant,
    scale: f64,
) {
    let image = image_of(&pod);
    match behaviour {
        Behaviour::ImagePullError => {
            let message = format!(
                "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found"
            );
            let updated = store.put(pods(), with_waiting(&pod, "ErrImagePull", &message));
            emit(
                store,
                sim,
                &updated,
                false,
                "Pulling",
                &format!("Pulling image \"{image}\""),
                "kubelet",
            );
            emit(
                store,
                sim,
                &updated,
                true,
                "Failed",
                &format!("Failed to pull image \"{image}\": {message}"),
                "kubelet",
            );
            emit(
                store,
                sim,
                &updated,
                true,
                "Failed",
                "Error: ErrImagePull",
                "kubelet",
            );
            sim.set_stage(pod_uid, Stage::PullBackOff, now + scaled(100.0, scale));
            return;
        }
        Behaviour::InvalidImageName => {
            let message = format!(
                "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format"
            );
            let updated = store.put(pods(), with_waiting(&pod, "InvalidImageName", &message));
            emit(
                store,
                sim,
                &updated,
                true,
                "InspectFailed",
                &message,
                "kubelet",
            );
            emit(
                store,
                sim,
                &updated,
                true,
                "Failed",
                "Error: InvalidImageName",
                "kubelet",
            );
            sim.set_stage(pod_uid, Stage::Stuck, now);
            return;
        }
        _ => {}
    }
    if let Some(missing) = missing_reference(store, &pod) {
        let message = missing.clone();
        if pod
            .pointer("/status/containerStatuses/0/state/waiting/message")
            .and_then(Value::as_str)
            != Some(message.as_str())
        {
            let updated = store.put(
                pods(),
                with_waiting(&pod, "CreateContainerConfigError", &message),
            );
            emit(
                store,
                sim,
                &updated,
                true,
                "Failed",
                &format!("Error: {message}"),
                "kubelet",
            );
        }
        // The kubelet retries: a Secret created later lets the pod start.
        sim.set_stage(pod_uid, Stage::Starting, now + scaled(100.0, scale));
        return;
    }
    let updated = store.put(pods(), with_running(&pod, 0));
    let container = container_name(&pod);
    emit(
        store,
        sim,
        &updated,
        false,
        "Pulling",
        &format!("Pulling image \"{image}\""),
        "kubelet",
    );
    emit(
        store,
        sim,
        &updated,
        false,
        "Pulled",
        &format!("Successfully pulled image \"{image}\""),
        "kubelet",
    );
    emit(
        store,
        sim,
        &updated,
        false,
        "Created",
        &format!("Created container: {container}"),
        "kubelet",
    );
    emit(
        store,
        sim,
        &updated,
        false,
        "Started",
        &format!("Started container {container}"),
        "kubelet",
    );
    let next = match behaviour {
        Behaviour::RunForever => now + Duration::from_secs(86_400 * 365),
        other => now + scaled(run_ms(other) as f64, scale),
    };
    sim.set_stage(pod_uid, Stage::Running, next);
}

/// `secret "x" not found` for the first env reference to a Secret or ConfigMap that does not exist.
fn missing_reference(store: &Store, pod: &Value) -> Option<String> {
    let ns = namespace(pod);
    let exists = |plural: &str, name: &str| {
        let kind = crate::kinds::find("", "v1", plural).expect("served");
        store.get(kind, ns, name).is_some()
    };
    for container in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for env in container["env"].as_array().into_iter().flatten() {
            for (field, plural, what) in [
                ("secretKeyRef", "secrets", "secret"),
                ("configMapKeyRef", "configmaps", "configmap"),
            ] {
                if let Some(reference) = env.pointer(&format!("/valueFrom/{field}"))
                    && reference["optional"] != true
                    && let Some(name) = reference["name"].as_str()
                    && !exists(plural, name)
                {
                    return Some(format!("{what} \"{name}\" not found"));
                }
            }
        }
        for source in container["envFrom"].as_array().into_iter().flatten() {
            for (field, plural, what) in [
                ("secretRef", "secrets", "secret"),
                ("configMapRef", "configmaps", "configmap"),
            ] {
                if let Some(reference) = source.get(field)
                    && reference["optional"] != true
                    && let Some(name) = reference["name"].as_str()
                    && !exists(plural, name)
                {
                    return Some(format!("{what} \"{name}\" not found"));
                }
            }
        }
    }
    None
}

fn container_status(pod: &Value, state: Value, restarts: u32, last: Option<Value>) -> Value {
    let mut status = json!({"name": container_name(pod), "image": image_of(pod), "imageID": "", "ready": state.get("running").is_some(),
                            "started": state.get("running").is_some(), "restartCount": restarts, "state": state, "lastState": {}});
    if let Some(last) = last {
        status["lastState"] = last;
    }
    status
}

fn with_waiting(pod: &Value, reason: &str, message: &str) -> Value {
    let mut pod = pod.clone();
    let restarts = pod
        .pointer("/status/containerStatuses/0/restartCount")
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;
    let last = pod
        .pointer("/status/containerStatuses/0/lastState")
        .cloned();
    pod["status"]["containerStatuses"] = json!([container_status(
        &pod,
        json!({"waiting": {"reason": reason, "message": message}}),
        restarts,
        last
    )]);
    pod
}

fn with_running(pod: &Value, restarts: u32) -> Value {
    let mut pod = pod.clone();
    let last = pod
        .pointer("/status/containerStatuses/0/lastState")
        .cloned();
    pod["status"]["phase"] = json!("Running");
    pod["status"]["startTime"] = pod["status"]
        .get("startTime")
        .cloned()
        .unwrap_or_else(|| json!(timestamp()));
    pod["status"]["containerStatuses"] = json!([container_status(
        &pod,
        json!({"running": {"startedAt": timestamp()}}),
        restarts,
        last
    )]);
    pod
}

fn with_terminated(pod: &Value, phase: &str, exit_code: i32, reason: &str) -> Value {
    let mut pod = pod.clone();
    let restarts = pod
        .pointer("/status/containerStatuses/0/restartCount")
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;
    pod["status"]["phase"] = json!(phase);
    let state = json!({"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": timestamp(), "finishedAt": timestamp()}});
    pod["status"]["containerStatuses"] = json!([container_status(&pod, state, restarts, None)]);
    pod
}

fn finish_run(
    store: &mut Store,
    sim: &mut Memory,
    pod: Value,
    pod_uid: &str,
    behaviour: &Behaviour,
    now: Instant,
    scale: f64,
) {
    let restart_on_failure =
        pod.pointer("/spec/restartPolicy").and_then(Value::as_str) == Some("OnFailure");
    match behaviour {
        Behaviour::Succeed { .. } => {
            store.put(pods(), with_terminated(&pod, "Succeeded", 0, "Completed"));
        }
        Behaviour::Fail { exit_code, .. } => {
            store.put(pods(), with_terminated(&pod, "Failed", *exit_code, "Error"));
        }
        Behaviour::OomKilled { .. } => {
            store.put(pods(), with_terminated(&pod, "Failed", 137, "OOMKilled"));
        }
        Behaviour::Evicted { .. } => {
            let message = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. ";
            let mut evicted = with_terminated(&pod, "Failed", 137, "ContainerStatusUnknown");
            evicted["status"]["reason"] = json!("Evicted");
            evicted["status"]["message"] = json!(message);
            let updated = store.put(pods(), evicted);
            emit(store, sim, &updated, true, "Evicted", message, "kubelet");
            emit(
                store,
                sim,
                &updated,
                false,
                "Killing",
                &format!("Stopping container {}", container_name(&pod)),
                "kubelet",
            );
        }
        Behaviour::CrashLoop { .. } if restart_on_failure => {
            let restarts = sim.pods[pod_uid].restarts + 1;
            sim.pods.get_mut(pod_uid).expect("planned").restarts = restarts;
            let last = json!({"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": timestamp()}});
            let mut waiting = pod.clone();
            let message = format!(
                "back-off {}s restarting failed container={} pod={}",
                10 * 2u64.pow(restarts.min(5) - 1),
                container_name(&pod),
                name(&pod)
            );
            waiting["status"]["containerStatuses"] = json!([container_status(
                &pod,
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}}),
                restarts,
                Some(last)
            )]);
            let updated = store.put(pods(), waiting);
            emit(
                store,
                sim,
                &updated,
                true,
                "BackOff",
                &format!(
                    "Back-off restarting failed container {} in pod {}",
                    container_name(&pod),
                    name(&pod)
                ),
                "kubelet",
            );
            sim.set_stage(
                pod_uid,
                Stage::CrashBackOff,
                now + scaled(100.0 * 2f64.powi(restarts as i32 - 1), scale),
            );
            return;
        }
        Behaviour::CrashLoop { .. } => {
            store.put(pods(), with_terminated(&pod, "Failed", 1, "Error"));
        }
        _ => return,
    }
    sim.set_stage(pod_uid, Stage::Done, now);
}

/// A pod being deleted: the kubelet stops the container and the pod goes away.
fn terminate(store: &mut Store, sim: &mut Memory, pod: &Value, pod_uid: &str) {
    if matches!(sim.pods.get(pod_uid).map(|p| p.stage), Some(Stage::Running)) {
        emit(
            store,
            sim,
            pod,
            false,
            "Killing",
            &format!("Stopping container {}", container_name(pod)),
            "kubelet",
        );
    }
    let finalizers_left = pod["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if !finalizers_left {
        store.remove(pods(), namespace(pod), name(pod));
        sim.pods.remove(pod_uid);
    }
}
