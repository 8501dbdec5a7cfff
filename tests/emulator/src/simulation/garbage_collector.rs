//! The garbage collector: dependents of deleted owners go, foreground deletions finish once
//! their dependents are gone.

use super::{name, namespace, uid};
use crate::state::{delete_object, jobs, owned_by, pods, secrets};
use crate::store::Store;
use serde_json::Value;

/// Deletes pods and Secrets whose owner Jobs are gone, and finishes foreground deletions whose
/// dependents are.
pub(super) fn collect_garbage(store: &mut Store) {
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
