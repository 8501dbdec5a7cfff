//! The Job controller: pods for a Job's completions and parallelism, back-off after failures,
//! backoffLimit and activeDeadlineSeconds, suspend, the Job's conditions, and
//! ttlSecondsAfterFinished.

use super::{OwnedPod, PodIndex, emit, name, namespace, scaled, uid};
use crate::memory::Memory;
use crate::state::{delete_object, jobs, now as timestamp, pods};
use crate::store::Store;
use serde_json::{Value, json};
use std::time::Instant;

pub(super) fn control_job(
    store: &mut Store,
    sim: &mut Memory,
    index: &PodIndex,
    job: Value,
    now: Instant,
    scale: f64,
) {
    if job["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    let job_uid = uid(&job);
    let ns = namespace(&job).to_string();
    let owned = index.of(&job_uid);
    let active: Vec<&OwnedPod> = owned
        .iter()
        .filter(|p| !matches!(p.phase.as_str(), "Succeeded" | "Failed") && !p.deleting)
        .collect();
    let succeeded = owned.iter().filter(|p| p.phase == "Succeeded").count() as i64;
    let failed = owned.iter().filter(|p| p.phase == "Failed").count() as i64;
    let ready = active.iter().filter(|p| p.phase == "Running").count() as i64;

    let mut status = job["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    if finished(&job) {
        expire_after_ttl(store, &job);
        return;
    }
    let spec = &job["spec"];
    let completions = spec["completions"].as_i64().unwrap_or(1);
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1);
    let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
    let suspended = spec["suspend"].as_bool().unwrap_or(false);
    status["active"] = json!(active.len());
    status["ready"] = json!(ready);
    status["succeeded"] = json!(succeeded);
    status["failed"] = json!(failed);
    status["terminating"] = json!(owned.iter().filter(|p| p.deleting).count());
    status["uncountedTerminatedPods"] = json!({});

    let deadline = spec["activeDeadlineSeconds"].as_f64();
    let started_at = sim.job_started.get(&job_uid).copied().unwrap_or(now);
    let failure = if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| {
        status.get("startTime").is_some()
            && now.duration_since(started_at) > scaled(d * 1000.0, scale)
    }) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };

    if suspended {
        for pod in &active {
            delete_object(store, pods(), &ns, &pod.name, "Background", Some(0));
        }
        status["active"] = json!(0);
        set_condition(&mut status, "Suspended", "JobSuspended", "Job suspended");
    } else if succeeded >= completions {
        set_condition(
            &mut status,
            "SuccessCriteriaMet",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        );
        set_condition(
            &mut status,
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        );
        status["completionTime"] = json!(timestamp());
        emit(
            store,
            sim,
            &job,
            false,
            "Completed",
            "Job completed",
            "job-controller",
        );
    } else if let Some((reason, message)) = failure {
        for pod in &active {
            delete_object(store, pods(), &ns, &pod.name, "Background", Some(0));
        }
        status["active"] = json!(0);
        set_condition(&mut status, "FailureTarget", reason, message);
        set_condition(&mut status, "Failed", reason, message);
        emit(store, sim, &job, true, reason, message, "job-controller");
    } else if (active.len() as i64) < parallelism.min(completions - succeeded)
        && sim.job_backoff.get(&job_uid).is_none_or(|at| *at <= now)
    {
        let pod = create_pod(store, &job);
        if status.get("startTime").is_none() {
            status["startTime"] = json!(timestamp());
            sim.job_started.insert(job_uid.clone(), now);
        }
        status["active"] = json!(active.len() + 1);
        emit(
            store,
            sim,
            &job,
            false,
            "SuccessfulCreate",
            &format!("Created pod: {}", name(&pod)),
            "job-controller",
        );
        if failed > 0 {
            // The controller waits before replacing a failed pod: 10 s, 20 s, … (scaled).
            sim.job_backoff.insert(
                job_uid.clone(),
                now + scaled(10_000.0 * 2f64.powi(failed as i32 - 1), scale),
            );
        }
    }
    if status != job["status"] {
        let mut updated = job;
        updated["status"] = status;
        store.put(jobs(), updated);
    }
}

pub(super) fn finished(job: &Value) -> bool {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True"
            })
        })
}

fn set_condition(status: &mut Value, kind: &str, reason: &str, message: &str) {
    let conditions = status
        .as_object_mut()
        .expect("an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    let list = conditions.as_array_mut().expect("a list");
    if list.iter().any(|c| c["type"] == kind) {
        return;
    }
    let timestamp = timestamp();
    list.push(
        json!({"type": kind, "status": "True", "reason": reason, "message": message,
                     "lastProbeTime": timestamp, "lastTransitionTime": timestamp}),
    );
}

/// `ttlSecondsAfterFinished`: a finished Job is deleted (with its pods) that long after.
fn expire_after_ttl(store: &mut Store, job: &Value) {
    let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_i64() else {
        return;
    };
    let finished_at = job.pointer("/status/conditions").and_then(Value::as_array).and_then(|c| {
        c.iter().find(|c| matches!(c["type"].as_str(), Some("Complete" | "Failed")))?["lastTransitionTime"].as_str().map(str::to_string)
    });
    let Some(finished_at) = finished_at.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
    else {
        return;
    };
    if chrono::Utc::now()
        .signed_duration_since(finished_at)
        .num_seconds()
        >= ttl
    {
        delete_object(store, jobs(), namespace(job), name(job), "Background", None);
    }
}

fn create_pod(store: &mut Store, job: &Value) -> Value {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    let template = &job["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["name"] = json!(format!("{}-{suffix}", name(job)));
    metadata["generateName"] = json!(format!("{}-", name(job)));
    metadata["namespace"] = json!(namespace(job));
    metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
    metadata["creationTimestamp"] = json!(timestamp());
    metadata["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": name(job), "uid": uid(job),
                                          "controller": true, "blockOwnerDeletion": true}]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"].clone(),
                     "status": {"phase": "Pending", "qosClass": "BestEffort"}});
    store.put(pods(), pod)
}
