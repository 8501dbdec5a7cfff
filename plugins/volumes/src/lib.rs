//! Adds volumes to the pod and mounts them in every container.
//!
//! Settings: `volumes` (a JSON list of Kubernetes volumes) and `mounts` (a JSON list of
//! volumeMounts). A volume or mount the template already has (same name, same mount path)
//! is left as the template has it.

use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value, job};

pub struct Volumes;

impl Plugin for Volumes {
    fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
        let volumes = request.config_named_list("volumes")?;
        let mounts = request.config_named_list("mounts")?;
        job::add_volumes(&mut job, &volumes, &mounts)?;
        Ok(job)
    }
}

agent_plugin_sdk::export_plugin!(Volumes);
