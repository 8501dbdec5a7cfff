//! `--env-secret`: the plain env values of a Job's containers move into a Secret named after
//! the Job and owned by it, and the containers read them back through `secretKeyRef`. The
//! values then show in neither the Job's nor the pod's spec (nor to whoever may read Jobs), and
//! Kubernetes' garbage collector deletes the Secret with the Job.
//!
//! The Secret is created before the Job (so the pod never starts without it) and given the
//! Job as its owner once the Job exists and has a uid.

use crate::job::{AGENT_LABEL, CLAIM_LABEL, FLOW_RUN_LABEL};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

/// The Secret holding `job`'s plain env values, with `job` rewritten to read them from it;
/// None when no value is plain. A value using `$(VAR)` stays plain: Kubernetes expands
/// references only in plain values.
pub fn split(job: &mut Value) -> Option<Value> {
    let name = job.pointer("/metadata/name")?.as_str()?.to_string();
    let mut data = Map::new();
    for list in ["initContainers", "containers"] {
        let pointer = format!("/spec/template/spec/{list}");
        let Some(containers) = job.pointer_mut(&pointer).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            let container_name = container["name"].as_str().unwrap_or_default().to_string();
            let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) else {
                continue;
            };
            for var in env {
                let (Some(var_name), Some(value)) = (
                    var["name"].as_str().map(str::to_string),
                    var.get("value").and_then(Value::as_str).map(str::to_string),
                ) else {
                    continue;
                };
                // One key per container and variable: two containers may differ in a value.
                let key = format!("{container_name}.{var_name}");
                if value.contains("$(") || !is_secret_key(&key) {
                    continue;
                }
                data.insert(key.clone(), json!(BASE64.encode(value)));
                *var = json!({
                    "name": var_name,
                    "valueFrom": {"secretKeyRef": {"name": name, "key": key}},
                });
            }
        }
    }
    if data.is_empty() {
        return None;
    }
    let mut metadata = json!({"name": name, "labels": tracking_labels(job)});
    if let Some(namespace) = job.pointer("/metadata/namespace") {
        metadata["namespace"] = namespace.clone();
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": data,
    }))
}

/// The merge patch that makes the Job `name` (uid `uid`) the Secret's owner.
pub fn owned_by_job(name: &str, uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [{
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name,
        "uid": uid,
        "controller": true,
    }]}})
}

/// Whether a Secret found under the Job's name is this very claim's (a retried submission).
pub fn is_this_claims(found: &Value, wanted: &Value) -> bool {
    let label = |secret: &Value, key: &str| {
        secret["metadata"]["labels"][key]
            .as_str()
            .map(str::to_string)
    };
    label(found, FLOW_RUN_LABEL).is_some()
        && [FLOW_RUN_LABEL, CLAIM_LABEL]
            .iter()
            .all(|key| label(found, key) == label(wanted, key))
}

/// The Job's tracking labels, so the Secret is found and judged as the Job is.
fn tracking_labels(job: &Value) -> Value {
    let labels = &job["metadata"]["labels"];
    let kept: Map<String, Value> = [FLOW_RUN_LABEL, CLAIM_LABEL, AGENT_LABEL]
        .iter()
        .filter_map(|key| Some((key.to_string(), labels.get(*key)?.clone())))
        .collect();
    Value::Object(kept)
}

/// A Secret's data key: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "etl-k3x9",
                "namespace": "prefect",
                "labels": {FLOW_RUN_LABEL: "run-1", CLAIM_LABEL: "k3x9", AGENT_LABEL: "a", "team": "data"},
            },
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "init", "env": [{"name": "TOKEN", "value": "t"}]}],
                "containers": [{"name": "prefect-job", "env": [
                    {"name": "PREFECT_API_URL", "value": "http://prefect/api"},
                    {"name": "GREETING", "value": "hello $(NAME)"},
                    {"name": "PREFECT_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "key"}}},
                ]}],
            }}},
        })
    }

    #[test]
    fn plain_values_move_into_a_secret_the_containers_read() {
        let mut job = job();
        let secret = split(&mut job).expect("plain values");
        assert_eq!(secret["metadata"]["name"], "etl-k3x9");
        assert_eq!(secret["metadata"]["namespace"], "prefect");
        assert_eq!(secret["metadata"]["labels"][CLAIM_LABEL], "k3x9");
        assert!(secret["metadata"]["labels"].get("team").is_none());
        assert_eq!(
            secret["data"]["prefect-job.PREFECT_API_URL"],
            BASE64.encode("http://prefect/api")
        );
        assert_eq!(secret["data"]["init.TOKEN"], BASE64.encode("t"));
        let env = &job["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(
            env[0],
            json!({"name": "PREFECT_API_URL", "valueFrom": {"secretKeyRef": {"name": "etl-k3x9", "key": "prefect-job.PREFECT_API_URL"}}})
        );
        // Expansion needs a plain value; a reference to another Secret stays as it is.
        assert_eq!(env[1]["value"], "hello $(NAME)");
        assert_eq!(env[2]["valueFrom"]["secretKeyRef"]["name"], "k");
    }

    #[test]
    fn a_job_without_plain_values_needs_no_secret() {
        let mut job = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}});
        let before = job.clone();
        assert!(split(&mut job).is_none());
        assert_eq!(job, before);
    }

    #[test]
    fn only_a_secret_of_the_same_claim_is_taken_for_ours() {
        let mut ours = job();
        let secret = split(&mut ours).unwrap();
        assert!(is_this_claims(&secret, &secret));
        let mut other = secret.clone();
        other["metadata"]["labels"][CLAIM_LABEL] = json!("zzzz");
        assert!(!is_this_claims(&other, &secret));
        assert!(!is_this_claims(&json!({"metadata": {}}), &secret));
    }
}
