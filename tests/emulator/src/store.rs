//! The emulator's etcd: objects by kind, namespace and name; one monotonic resource version;
//! a bounded history of changes that watches resume from (older versions are "too old": 410).

use crate::kinds::Kind;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// `(kind key, namespace, name)`; the namespace is empty for cluster-scoped kinds.
pub type Key = (&'static str, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub resource_version: u64,
    pub kind: &'static str,
    pub namespace: String,
    pub event: EventType,
    pub object: Value,
    /// The object before a modification: a watch with a selector turns a change that moves an
    /// object out of (into) its selection into DELETED (ADDED).
    pub previous: Option<Value>,
}

pub struct Store {
    resource_version: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// The oldest version a watch may start from.
    compacted_to: u64,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (changes, _) = broadcast::channel(65_536);
        Store {
            resource_version: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit,
            compacted_to: 1,
            changes,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn compacted_to(&self) -> u64 {
        self.compacted_to
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(kind.key(), namespace.to_string(), name.to_string()))
    }

    /// Objects of `kind` (in `namespace`, or everywhere), in key order.
    pub fn list<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        let key = kind.key();
        self.objects
            .range((key, String::new(), String::new())..)
            .take_while(move |((k, _, _), _)| *k == key)
            .filter(move |((_, ns, _), _)| namespace.is_none_or(|wanted| wanted == ns))
    }

    /// Changes after `version`, oldest first.
    pub fn history_after(&self, version: u64) -> Vec<Arc<Change>> {
        self.history
            .iter()
            .filter(|c| c.resource_version > version)
            .cloned()
            .collect()
    }

    /// Stores `object` (new or replacing), stamping its resource version; returns it.
    pub fn put(&mut self, kind: &'static Kind, mut object: Value) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let key = key_of(kind, &object);
        let previous = self.objects.insert(key.clone(), object.clone());
        let event = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(kind, key.1, event, object.clone(), previous);
        object
    }

    /// Removes the object; returns it as it was deleted (with a new resource version).
    pub fn remove(&mut self, kind: &'static Kind, namespace: &str, name: &str) -> Option<Value> {
        let key = (kind.key(), namespace.to_string(), name.to_string());
        let mut object = self.objects.remove(&key)?;
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.record(kind, key.1, EventType::Deleted, object.clone(), None);
        Some(object)
    }

    fn record(
        &mut self,
        kind: &'static Kind,
        namespace: String,
        event: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        let change = Arc::new(Change {
            resource_version: self.resource_version,
            kind: kind.key(),
            namespace,
            event,
            object,
            previous,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_to = dropped.resource_version;
            }
        }
        // Nobody listening is fine.
        let _ = self.changes.send(change);
    }

    /// Forgets history up to now, as an etcd compaction does: older watches get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_to = self.resource_version;
    }

    /// Number of stored objects (for scale measurements).
    pub fn len(&self) -> usize {
        self.objects.len()
    }
}

pub fn key_of(kind: &Kind, object: &Value) -> Key {
    let namespace = if kind.namespaced {
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string()
    } else {
        String::new()
    };
    (
        kind.key(),
        namespace,
        object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}
