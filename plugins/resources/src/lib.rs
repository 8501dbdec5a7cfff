//! Defaults and caps for container cpu and memory.
//!
//! Settings (all optional): `cpu.default`, `memory.default` set requests where a container has
//! none; `cpu.max`, `memory.max` lower any request or limit above them (and say so in the log).
//! To refuse such runs instead of capping them, use the `policy` plugin.

use agent_plugin_sdk::{Error, Plugin, Request, Value, job, json, log, quantity};

pub struct Resources;

impl Plugin for Resources {
    fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
        for resource in ["cpu", "memory"] {
            let default = quantity::setting(request, &format!("{resource}.default"))?;
            let max = quantity::setting(request, &format!("{resource}.max"))?;
            for container in job::containers(&mut job)? {
                let name = container
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                let resources = job::object_at_map(container, "resources")?;
                if let Some((text, _)) = &default {
                    let requests = job::object_at_map(resources, "requests")?;
                    requests.entry(resource).or_insert_with(|| json!(text));
                }
                if let Some((max_text, max_value)) = &max {
                    for kind in ["requests", "limits"] {
                        let section = job::object_at_map(resources, kind)?;
                        let Some(current) = section.get(resource).and_then(Value::as_str) else {
                            continue;
                        };
                        if quantity::parse(current).is_some_and(|v| v > *max_value) {
                            log::warn(&format!(
                                "container {name}: {resource} {kind} {current} is above the maximum {max_text}; capped"
                            ));
                            section.insert(resource.into(), json!(max_text));
                        }
                    }
                }
            }
        }
        Ok(job)
    }
}

agent_plugin_sdk::export_plugin!(Resources);
