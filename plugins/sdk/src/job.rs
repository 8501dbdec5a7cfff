//! Small, safe edits of a Job held as JSON: the paths every plugin needs.
//!
//! Missing objects on the way are created; a value of the wrong type on the way is an error
//! naming its path, never a panic.

use crate::{Error, fault};
use serde_json::{Map, Value};

/// The object at `path` (keys from the root), created empty where missing.
pub fn object_at<'a>(
    job: &'a mut Value,
    path: &[&str],
) -> Result<&'a mut Map<String, Value>, Error> {
    let mut here = job;
    let mut walked = String::new();
    for key in path {
        walked.push('.');
        walked.push_str(key);
        let map = here
            .as_object_mut()
            .ok_or_else(|| fault(format!("Job field {} is not an object", parent(&walked))))?;
        here = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if here.is_null() {
        *here = Value::Object(Map::new());
    }
    let path_text = if walked.is_empty() {
        ".".to_string()
    } else {
        walked
    };
    here.as_object_mut()
        .ok_or_else(|| fault(format!("Job field {path_text} is not an object")))
}

fn parent(path: &str) -> &str {
    match path.rfind('.') {
        Some(0) | None => ".",
        Some(i) => &path[..i],
    }
}

/// The object at `key` of `object`, created empty where missing.
pub fn object_at_map<'a>(
    object: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, Error> {
    let slot = object
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| fault(format!("Job field {key} is not an object")))
}

/// `spec.template.spec`: the pod spec.
pub fn pod_spec(job: &mut Value) -> Result<&mut Map<String, Value>, Error> {
    object_at(job, &["spec", "template", "spec"])
}

/// The array at `key` of `object`, created empty where missing.
pub fn array_at<'a>(
    object: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Vec<Value>, Error> {
    let slot = object
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut()
        .ok_or_else(|| fault(format!("Job field {key} is not a list")))
}

/// Every container of the pod, as objects (init containers are left alone).
pub fn containers(job: &mut Value) -> Result<Vec<&mut Map<String, Value>>, Error> {
    array_at(pod_spec(job)?, "containers")?
        .iter_mut()
        .enumerate()
        .map(|(i, c)| {
            c.as_object_mut().ok_or_else(|| {
                fault(format!(
                    "Job field .spec.template.spec.containers[{i}] is not an object"
                ))
            })
        })
        .collect()
}

/// Sets env `name` on a container: replaces an entry of that name, or appends one.
pub fn set_env(container: &mut Map<String, Value>, entry: Value) -> Result<(), Error> {
    let name = entry.get("name").cloned();
    let env = array_at(container, "env")?;
    match env.iter_mut().find(|e| e.get("name") == name.as_ref()) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
    Ok(())
}

/// Sets `key=value` in the labels of the Job and of its pod template.
pub fn set_label(job: &mut Value, key: &str, value: &str) -> Result<(), Error> {
    for path in [
        &["metadata", "labels"][..],
        &["spec", "template", "metadata", "labels"][..],
    ] {
        object_at(job, path)?.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(())
}

/// Sets `key=value` in the annotations of the Job and of its pod template.
pub fn set_annotation(job: &mut Value, key: &str, value: &str) -> Result<(), Error> {
    for path in [
        &["metadata", "annotations"][..],
        &["spec", "template", "metadata", "annotations"][..],
    ] {
        object_at(job, path)?.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(())
}

/// Sets `resources.requests` / `resources.limits` entries of a container (`("cpu", "500m")`);
/// entries not named stay as they are.
pub fn set_resources(
    container: &mut Map<String, Value>,
    requests: &[(&str, &str)],
    limits: &[(&str, &str)],
) -> Result<(), Error> {
    for (kind, entries) in [("requests", requests), ("limits", limits)] {
        if entries.is_empty() {
            continue;
        }
        let values = object_at_map(object_at_map(container, "resources")?, kind)?;
        for (name, quantity) in entries {
            values.insert(name.to_string(), Value::String(quantity.to_string()));
        }
    }
    Ok(())
}

/// Applies a JSON merge patch (RFC 7386) to `job`: objects merge key by key, `null` removes a
/// key, anything else (lists included) replaces.
pub fn merge_patch(job: &mut Value, patch: &Value) {
    json_patch::merge(job, patch);
}

/// Appends `item` to the list `key` of `object` unless an item with the same `name` is there.
pub fn add_named(object: &mut Map<String, Value>, key: &str, item: Value) -> Result<bool, Error> {
    let list = array_at(object, key)?;
    let name = item.get("name");
    if name.is_some() && list.iter().any(|existing| existing.get("name") == name) {
        return Ok(false);
    }
    list.push(item);
    Ok(true)
}

/// Adds `volumes` to the pod and `mounts` to every container. A volume whose name the pod
/// already has, or a mount whose path a container already has, is left as it is.
pub fn add_volumes(job: &mut Value, volumes: &[Value], mounts: &[Value]) -> Result<(), Error> {
    let pod = pod_spec(job)?;
    for volume in volumes {
        add_named(pod, "volumes", volume.clone())?;
    }
    if mounts.is_empty() {
        // No empty lists where there were none: the Job stays as the template made it.
        return Ok(());
    }
    for container in containers(job)? {
        let list = array_at(container, "volumeMounts")?;
        for mount in mounts {
            let path = mount.get("mountPath");
            if !list.iter().any(|m| m.get("mountPath") == path) {
                list.push(mount.clone());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_merges_objects_removes_nulls_and_replaces_lists() {
        let mut job = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"list": [1, 2]}});
        merge_patch(
            &mut job,
            &json!({"metadata": {"labels": {"x": null, "z": "3"}}, "spec": {"list": [3]}}),
        );
        assert_eq!(
            job,
            json!({"metadata": {"name": "a", "labels": {"y": "2", "z": "3"}}, "spec": {"list": [3]}})
        );
    }

    #[test]
    fn resources_and_annotations_are_set_where_named() {
        let mut job = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]}}}});
        set_annotation(&mut job, "team", "data").unwrap();
        let container = containers(&mut job).unwrap().remove(0);
        set_resources(container, &[("memory", "1Gi")], &[("memory", "2Gi")]).unwrap();
        assert_eq!(job["metadata"]["annotations"]["team"], "data");
        assert_eq!(
            job["spec"]["template"]["metadata"]["annotations"]["team"],
            "data"
        );
        let resources = &job["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(
            resources,
            &json!({"requests": {"memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}})
        );
    }

    #[test]
    fn object_at_creates_missing_objects() {
        let mut job = json!({"spec": {}});
        object_at(&mut job, &["spec", "template", "metadata"])
            .unwrap()
            .insert("a".into(), json!(1));
        assert_eq!(job, json!({"spec": {"template": {"metadata": {"a": 1}}}}));
    }

    #[test]
    fn object_at_names_the_field_of_the_wrong_type() {
        let mut job = json!({"spec": {"template": []}});
        let Error::Fault(message) = object_at(&mut job, &["spec", "template", "spec"]).unwrap_err()
        else {
            panic!("expected a fault")
        };
        assert_eq!(message, "Job field .spec.template is not an object");
    }

    #[test]
    fn set_env_replaces_by_name() {
        let mut c = json!({"env": [{"name": "A", "value": "1"}]});
        let c = c.as_object_mut().unwrap();
        set_env(c, json!({"name": "A", "value": "2"})).unwrap();
        set_env(c, json!({"name": "B", "value": "3"})).unwrap();
        assert_eq!(
            c["env"],
            json!([{"name": "A", "value": "2"}, {"name": "B", "value": "3"}])
        );
    }
}
