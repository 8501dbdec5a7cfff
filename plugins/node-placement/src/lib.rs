//! Places flow run pods: `nodeSelector`, `tolerations` and `affinity`.
//!
//! Each comes from the job variable of the same name (`node_selector`, `tolerations`,
//! `affinity`, so a deployment can choose) or else from this plugin's setting (`node-selector`,
//! `tolerations`, `affinity`, JSON), the platform's default. Node selectors merge; tolerations
//! add up; a given affinity replaces the template's.

use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value, fault, job};

pub struct NodePlacement;

impl Plugin for NodePlacement {
    fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
        let variables = request.job_variables()?;
        let pick = |variable: &str, setting: &str| -> Result<Option<Value>, Error> {
            if let Some(value) = variables.get(variable).filter(|v| !v.is_null()) {
                return Ok(Some(value.clone()));
            }
            request
                .config(setting)
                .map(|text| {
                    agent_plugin_sdk::serde_json::from_str(text)
                        .map_err(|e| fault(format!("setting `{setting}` is not JSON: {e}")))
                })
                .transpose()
        };
        let pod = job::pod_spec(&mut job)?;
        if let Some(selector) = pick("node_selector", "node-selector")? {
            let Value::Object(selector) = selector else {
                return Err(fault("node_selector must be an object of label → value"));
            };
            job::object_at_map(pod, "nodeSelector")?.extend(selector);
        }
        if let Some(tolerations) = pick("tolerations", "tolerations")? {
            let Value::Array(tolerations) = tolerations else {
                return Err(fault("tolerations must be a list"));
            };
            job::array_at(pod, "tolerations")?.extend(tolerations);
        }
        if let Some(affinity) = pick("affinity", "affinity")? {
            if !affinity.is_object() {
                return Err(fault("affinity must be an object"));
            }
            pod.insert("affinity".into(), affinity);
        }
        Ok(job)
    }
}

agent_plugin_sdk::export_plugin!(NodePlacement);
