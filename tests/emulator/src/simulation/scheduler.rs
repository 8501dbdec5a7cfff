//! The scheduler: a node for each pod, or the reason there is none in its own words (node
//! selector, taints, capacity); an unschedulable pod is tried again, as nodes change.

use super::{emit, name, namespace, scaled};
use crate::config::{Behaviour, Node};
use crate::memory::{Memory, Stage};
use crate::state::{now as timestamp, pods};
use crate::store::Store;
use crate::validate::parse_quantity;
use serde_json::{Value, json};
use std::time::Instant;

#[allow(clippy::too_many_arguments)]
pub(super) fn schedule(
    store: &mut Store,
    sim: &mut Memory,
    node: &Node,
    mut pod: Value,
    pod_uid: &str,
    behaviour: &Behaviour,
    now: Instant,
    scale: f64,
) {
    let problem = match behaviour {
        Behaviour::Unschedulable { message } => Some(message.clone()),
        _ => unschedulable_because(&pod, node),
    };
    if let Some(message) = problem {
        let condition = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": timestamp()}]);
        if pod
            .pointer("/status/conditions")
            .map(|c| c[0]["message"] != message)
            .unwrap_or(true)
        {
            pod["status"]["conditions"] = condition;
            let updated = store.put(pods(), pod);
            emit(
                store,
                sim,
                &updated,
                true,
                "FailedScheduling",
                &message,
                "default-scheduler",
            );
        }
        // Nodes change (autoscalers): try again later.
        sim.set_stage(pod_uid, Stage::Scheduling, now + scaled(100.0, scale));
        return;
    }
    pod["spec"]["nodeName"] = json!(node.name);
    pod["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": timestamp()}]);
    let updated = store.put(pods(), pod);
    emit(
        store,
        sim,
        &updated,
        false,
        "Scheduled",
        &format!(
            "Successfully assigned {}/{} to {}",
            namespace(&updated),
            name(&updated),
            node.name
        ),
        "default-scheduler",
    );
    sim.set_stage(pod_uid, Stage::Starting, now + scaled(20.0, scale));
}

/// Why the scheduler cannot place `pod` on `node`, in its own words.
fn unschedulable_because(pod: &Value, node: &Node) -> Option<String> {
    let tail = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    if let Some(selector) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object)
        && selector
            .iter()
            .any(|(k, v)| node.labels.get(k).map(String::as_str) != v.as_str())
    {
        return Some(format!(
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. {tail}"
        ));
    }
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for taint in &node.taints {
        let (key_value, effect) = taint.split_once(':').unwrap_or((taint, "NoSchedule"));
        let (key, value) = key_value.split_once('=').unwrap_or((key_value, ""));
        let tolerated = tolerations.iter().any(|t| {
            let key_ok = t["key"].as_str().is_none_or(|k| k == key)
                || t["operator"] == "Exists" && t.get("key").is_none();
            let value_ok = t["operator"] == "Exists" || t["value"].as_str().unwrap_or("") == value;
            let effect_ok = t["effect"]
                .as_str()
                .is_none_or(|e| e.is_empty() || e == effect);
            key_ok && value_ok && effect_ok
        });
        if !tolerated && effect != "PreferNoSchedule" {
            let shown = if value.is_empty() {
                format!("{{{key}: }}")
            } else {
                format!("{{{key}: {value}}}")
            };
            return Some(format!(
                "0/1 nodes are available: 1 node(s) had untolerated taint {shown}. {tail}"
            ));
        }
    }
    let mut insufficient = Vec::new();
    for (resource, capacity) in [("cpu", &node.cpu), ("memory", &node.memory)] {
        let requested: f64 = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| {
                c.pointer(&format!("/resources/requests/{resource}"))
                    .and_then(Value::as_str)
                    .and_then(parse_quantity)
            })
            .sum();
        if requested > parse_quantity(capacity).unwrap_or(f64::MAX) {
            insufficient.push(format!("1 Insufficient {resource}"));
        }
    }
    (!insufficient.is_empty()).then(|| {
        format!("0/1 nodes are available: {}. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.", insufficient.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"spec": spec})
    }

    #[test]
    fn the_scheduler_explains_why_a_pod_does_not_fit() {
        let node = Node {
            taints: vec!["gpu=true:NoSchedule".into()],
            ..Node::default()
        };
        let selector =
            unschedulable_because(&pod(json!({"nodeSelector": {"pool": "gpu"}})), &node).unwrap();
        assert!(
            selector.starts_with(
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
            ),
            "{selector}"
        );
        let taint = unschedulable_because(&pod(json!({})), &node).unwrap();
        assert!(
            taint.starts_with(
                "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}."
            ),
            "{taint}"
        );
        let tolerated = json!({"tolerations": [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]});
        assert_eq!(unschedulable_because(&pod(tolerated), &node), None);
        let big = json!({"tolerations": [{"operator": "Exists"}], "containers": [{"resources": {"requests": {"cpu": "8", "memory": "32Gi"}}}]});
        let insufficient = unschedulable_because(&pod(big), &node).unwrap();
        assert!(
            insufficient
                .starts_with("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."),
            "{insufficient}"
        );
    }
}
