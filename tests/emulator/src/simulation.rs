//! The parts of a cluster that act on their own, simulated: the Job controller (pods,
//! backoffLimit, activeDeadlineSeconds, conditions, ttlSecondsAfterFinished, suspend), the
//! scheduler (node selector, taints, capacity), the kubelet (pulling, running, exiting as the
//! pod's script says; config errors; graceful termination), the garbage collector (owner
//! references, foreground deletion), and the Events each of them writes.

use crate::config::{Behaviour, Node, PodRule};
use crate::state::{
    Shared, delete_object, events, jobs, now as timestamp, owned_by, pods, secrets,
};
use crate::store::Store;
use crate::validate::parse_quantity;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The simulation's own memory: per pod, where it is in its script.
#[derive(Default)]
pub struct Simulation {
    pods: HashMap<String, PodPlan>,
    /// (involved uid, reason, message) → event name, to count repeats as the real components do.
    events: HashMap<(String, String, String), String>,
    /// Job uid → when its next pod may be created (back-off after failures).
    job_backoff: HashMap<String, Instant>,
    /// Job uid → when its first pod was created (for activeDeadlineSeconds).
    job_started: HashMap<String, Instant>,
}

struct PodPlan {
    behaviour: Behaviour,
    log: Vec<String>,
    stage: Stage,
    next: Instant,
    restarts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Scheduling,
    Starting,
    PullBackOff,
    Running,
    CrashBackOff,
    Stuck,
    Done,
}

impl Simulation {
    pub fn log_of(&self, pod_uid: &str) -> String {
        match self.pods.get(pod_uid) {
            Some(plan) if !plan.log.is_empty() => plan.log.join("\n") + "\n",
            _ => String::new(),
        }
    }
}

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
    collect_garbage(&mut store);
    // Work by reference first and clone only what has something to do: a tick runs after every
    // write, so it must cost little when nothing is due.
    let owned = PodIndex::build(&store);
    let due_jobs: Vec<Value> = store
        .list(jobs(), None)
        .map(|(_, job)| job)
        .filter(|job| job["metadata"].get("deletionTimestamp").is_none())
        .filter(|job| !finished(job) || job["spec"].get("ttlSecondsAfterFinished").is_some())
        .cloned()
        .collect();
    for job in due_jobs {
        control_job(&mut store, &mut sim, &owned, job, now, scale);
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
        run_pod(
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
fn forget_the_gone(store: &Store, sim: &mut Simulation) {
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
struct OwnedPod {
    name: String,
    phase: String,
    deleting: bool,
}

struct PodIndex(HashMap<String, Vec<OwnedPod>>);

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

    fn of(&self, owner_uid: &str) -> &[OwnedPod] {
        self.0.get(owner_uid).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn scaled(ms: f64, scale: f64) -> Duration {
    Duration::from_secs_f64((ms * scale / 1000.0).max(0.0))
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn namespace(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or("")
}

/// Records an Event about `involved`, or counts a repeat of the same one.
fn emit(
    store: &mut Store,
    sim: &mut Simulation,
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

// ---------------------------------------------------------------------------------------------
// Garbage collector

/// Deletes pods and Secrets whose owner Jobs are gone, and finishes foreground deletions whose
/// dependents are.
fn collect_garbage(store: &mut Store) {
    let owner_uids: std::collections::HashSet<String> =
        store.list(jobs(), None).map(|(_, j)| uid(j)).collect();
    for kind in [pods(), secrets()] {
        let orphans: Vec<(String, String)> = store
            .list(kind, None)
            .map(|(_, object)| object)
            .filter(|object| object["metadata"].get("deletionTimestamp").is_none())
            .filter(|object| {
                object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        !refs.is_empty()
                            && refs
                                .iter()
                                .all(|r| !owner_uids.contains(r["uid"].as_str().unwrap_or("")))
                    })
            })
            .map(|object| (namespace(object).to_string(), name(object).to_string()))
            .collect();
        for (ns, object) in orphans {
            delete_object(store, kind, &ns, &object, "Background", None);
        }
    }
    let deleting: Vec<Value> = store
        .list(jobs(), None)
        .map(|(_, j)| j)
        .filter(|j| has_finalizer(j, "foregroundDeletion"))
        .cloned()
        .collect();
    for owner in deleting {
        let owner_uid = uid(&owner);
        let dependents: Vec<Value> = store
            .list(pods(), Some(namespace(&owner)))
            .map(|(_, p)| p)
            .filter(|p| owned_by(p, &owner_uid))
            .cloned()
            .collect();
        if dependents.is_empty() {
            let mut owner = owner;
            owner["metadata"]["finalizers"]
                .as_array_mut()
                .expect("has finalizers")
                .retain(|f| f != "foregroundDeletion");
            if owner["metadata"]["finalizers"]
                .as_array()
                .is_some_and(Vec::is_empty)
            {
                let (ns, job) = (namespace(&owner).to_string(), name(&owner).to_string());
                store.remove(jobs(), &ns, &job);
            } else {
                store.put(jobs(), owner);
            }
        } else {
            for pod in dependents
                .iter()
                .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
            {
                delete_object(store, pods(), namespace(pod), name(pod), "Background", None);
            }
        }
    }
}

fn has_finalizer(object: &Value, finalizer: &str) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

// ---------------------------------------------------------------------------------------------
// Job controller

fn control_job(
    store: &mut Store,
    sim: &mut Simulation,
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

fn finished(job: &Value) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Scheduler and kubelet

#[allow(clippy::too_many_arguments)]
fn run_pod(
    store: &mut Store,
    sim: &mut Simulation,
    rules: &[PodRule],
    node: &Node,
    pod: Value,
    now: Instant,
    scale: f64,
) {
    let pod_uid = uid(&pod);
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
        Stage::Scheduling => schedule(store, sim, node, pod, &pod_uid, &behaviour, now, scale),
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
            set_stage(sim, &pod_uid, Stage::Stuck, now);
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
            set_stage(
                sim,
                &pod_uid,
                Stage::Running,
                now + scaled(run as f64, scale),
            );
        }
        Stage::Stuck | Stage::Done => {}
    }
}

fn set_stage(sim: &mut Simulation, pod_uid: &str, stage: Stage, next: Instant) {
    if let Some(plan) = sim.pods.get_mut(pod_uid) {
        plan.stage = stage;
        plan.next = next;
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

#[allow(clippy::too_many_arguments)]
fn schedule(
    store: &mut Store,
    sim: &mut Simulation,
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
        set_stage(sim, pod_uid, Stage::Scheduling, now + scaled(100.0, scale));
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
    set_stage(sim, pod_uid, Stage::Starting, now + scaled(20.0, scale));
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

/// Pulls the image and starts the container, unless the script or a missing Secret/ConfigMap
/// says otherwise.
fn start(
    store: &mut Store,
    sim: &mut Simulation,
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
            set_stage(sim, pod_uid, Stage::PullBackOff, now + scaled(100.0, scale));
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
            set_stage(sim, pod_uid, Stage::Stuck, now);
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
        set_stage(sim, pod_uid, Stage::Starting, now + scaled(100.0, scale));
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
    set_stage(sim, pod_uid, Stage::Running, next);
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
    sim: &mut Simulation,
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
            set_stage(
                sim,
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
    set_stage(sim, pod_uid, Stage::Done, now);
}

/// A pod being deleted: the kubelet stops the container and the pod goes away.
fn terminate(store: &mut Store, sim: &mut Simulation, pod: &Value, pod_uid: &str) {
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
