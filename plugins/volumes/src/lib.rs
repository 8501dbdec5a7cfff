//! Adds volumes to the pod and mounts them in every container.
//!
//! Settings: `volumes` (a JSON list of Kubernetes volumes) and `mounts` (a JSON list of
//! volumeMounts). A volume or mount the template already has (same name, same mount path)
//! is left as the template has it.

use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value, fault, job};

pub struct Volumes;

impl Plugin for Volumes {
    fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
        let volumes = json_list(request, "volumes")?;
        let mounts = json_list(request, "mounts")?;
        let pod = job::pod_spec(&mut job)?;
        for volume in volumes {
            job::add_named(pod, "volumes", volume)?;
        }
        for container in job::containers(&mut job)? {
            for mount in &mounts {
                let list = job::array_at(container, "volumeMounts")?;
                let path = mount.get("mountPath");
                if !list.iter().any(|m| m.get("mountPath") == path) {
                    list.push(mount.clone());
                }
            }
        }
        Ok(job)
    }
}

agent_plugin_sdk::export_plugin!(Volumes);

fn json_list(request: &Request, key: &str) -> Result<Vec<Value>, Error> {
    let Some(text) = request.config(key) else {
        return Ok(Vec::new());
    };
    match agent_plugin_sdk::serde_json::from_str(text) {
        Ok(Value::Array(items))
            if items
                .iter()
                .all(|i| i.get("name").is_some_and(Value::is_string)) =>
        {
            Ok(items)
        }
        Ok(_) => Err(fault(format!(
            "setting `{key}` must be a JSON list of objects that each have a \"name\""
        ))),
        Err(e) => Err(fault(format!("setting `{key}` is not JSON: {e}"))),
    }
}
