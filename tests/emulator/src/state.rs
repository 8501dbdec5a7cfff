//! What every part of a running emulator shares, and deletion as the API server does it
//! (finalizers, propagation, graceful pod termination).

use crate::config::{Config, Node};
use crate::faults::Faults;
use crate::kinds::{self, Kind};
use crate::memory::Memory;
use crate::rbac::Rbac;
use crate::status::ApiError;
use crate::store::Store;
use serde_json::{Value, json};
use std::sync::{Mutex, RwLock};
use tokio::sync::{Notify, watch};

pub struct Shared {
    pub store: Mutex<Store>,
    pub rbac: Rbac,
    pub faults: Faults,
    /// Bumped to end every watch.
    pub restarts: watch::Sender<u64>,
    pub config: Config,
    pub node: RwLock<Node>,
    /// What the simulated components remember.
    pub simulation: Mutex<Memory>,
    pub wake: Notify,
    /// Requests served, by kind of request (`GET jobs (watch)`), for benchmarks.
    pub requests: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Shared {
    pub fn new(config: Config) -> Self {
        let mut store = Store::new(config.history);
        for namespace in &config.namespaces {
            store.put(namespaces(), json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now()},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}));
        }
        Shared {
            store: Mutex::new(store),
            rbac: Rbac::new(&config),
            faults: Faults::default(),
            restarts: watch::channel(0).0,
            node: RwLock::new(config.node.clone()),
            simulation: Mutex::new(Memory::default()),
            wake: Notify::new(),
            requests: Mutex::default(),
            config,
        }
    }

    /// Lets the simulation act on a change now rather than at its next tick.
    pub fn wake_simulation(&self) {
        self.wake.notify_one();
    }

    pub fn restart_watches(&self) {
        self.restarts.send_modify(|generation| *generation += 1);
    }

    pub fn end_runs(&self) {
        self.simulation
            .lock()
            .unwrap()
            .end_runs(std::time::Instant::now());
        self.wake_simulation();
    }

    pub fn set_node(&self, node: Node) {
        *self.node.write().unwrap() = node;
        self.wake_simulation();
    }

    pub fn pod_log(&self, namespace: &str, name: &str) -> Result<String, ApiError> {
        let store = self.store.lock().unwrap();
        let pod = store
            .get(pods(), namespace, name)
            .ok_or_else(|| ApiError::not_found("pods", name))?;
        let container = pod
            .pointer("/spec/containers/0/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(waiting) = pod
            .pointer("/status/containerStatuses/0/state/waiting/reason")
            .and_then(Value::as_str)
        {
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {waiting}"
            )));
        }
        if pod.pointer("/status/containerStatuses/0").is_none() {
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            )));
        }
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
        Ok(self.simulation.lock().unwrap().log_of(uid))
    }
}

pub fn namespaces() -> &'static Kind {
    kinds::find("", "v1", "namespaces").expect("served")
}

pub fn pods() -> &'static Kind {
    kinds::find("", "v1", "pods").expect("served")
}

pub fn secrets() -> &'static Kind {
    kinds::find("", "v1", "secrets").expect("served")
}

pub fn jobs() -> &'static Kind {
    kinds::find("batch", "v1", "jobs").expect("served")
}

pub fn events() -> &'static Kind {
    kinds::find("", "v1", "events").expect("served")
}

/// Now, as the API server writes timestamps.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Deletes an object as the API server does; returns it as it now is (still present with a
/// deletionTimestamp while finalizers or a graceful pod termination hold it, or as deleted).
pub fn delete_object(
    store: &mut Store,
    kind: &'static Kind,
    namespace: &str,
    name: &str,
    propagation: &str,
    grace: Option<i64>,
) -> Option<Value> {
    let mut object = store.get(kind, namespace, name)?.clone();
    let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_string();
    match propagation {
        "Orphan" => orphan_dependents(store, namespace, &uid),
        "Foreground" => add_finalizer(&mut object, "foregroundDeletion"),
        _ => {}
    }
    let held_by_finalizers = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let running_pod = kind.plural == "pods"
        && grace != Some(0)
        && object.pointer("/spec/nodeName").is_some()
        && !matches!(
            object.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
    if held_by_finalizers || running_pod {
        if object["metadata"].get("deletionTimestamp").is_none() {
            object["metadata"]["deletionTimestamp"] = json!(now());
            object["metadata"]["deletionGracePeriodSeconds"] = json!(if kind.plural == "pods" {
                grace.unwrap_or(30)
            } else {
                0
            });
        }
        return Some(store.put(kind, object));
    }
    store.remove(kind, namespace, name)
}

fn add_finalizer(object: &mut Value, finalizer: &str) {
    let finalizers = object["metadata"]
        .as_object_mut()
        .expect("metadata")
        .entry("finalizers")
        .or_insert_with(|| json!([]));
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(json!(finalizer));
    }
}

/// Dependents (pods) of the owner `uid` lose that owner reference and stay.
fn orphan_dependents(store: &mut Store, namespace: &str, uid: &str) {
    let owned: Vec<Value> = store
        .list(pods(), Some(namespace))
        .map(|(_, p)| p.clone())
        .filter(|p| owned_by(p, uid))
        .collect();
    for mut pod in owned {
        if let Some(refs) = pod["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"] != uid);
        }
        store.put(pods(), pod);
    }
}

pub fn owned_by(object: &Value, uid: &str) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}
