//! Refuses runs that break the platform's rules; the run is marked FAILED with the reason.
//!
//! Settings (all optional): `allowed-registries` (comma-separated: an image must start with one
//! of them followed by `/`), `cpu.max` and `memory.max` (no container may request or limit
//! more).

use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value, job, quantity, reject};

pub struct Policy;

impl Plugin for Policy {
    fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
        let registries: Vec<&str> = request
            .config("allowed-registries")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let caps = [
            ("cpu", quantity::setting(request, "cpu.max")?),
            ("memory", quantity::setting(request, "memory.max")?),
        ];
        for container in job::containers(&mut job)? {
            let name = container.get("name").and_then(Value::as_str).unwrap_or("?");
            let image = container.get("image").and_then(Value::as_str).unwrap_or("");
            if !registries.is_empty()
                && !registries
                    .iter()
                    .any(|r| image.starts_with(&format!("{}/", r.trim_end_matches('/'))))
            {
                return Err(reject(format!(
                    "container {name}: image {image:?} is not from an allowed registry ({})",
                    registries.join(", ")
                )));
            }
            for (resource, (max_text, max)) in
                caps.iter().filter_map(|(r, cap)| Some((r, cap.as_ref()?)))
            {
                for kind in ["requests", "limits"] {
                    let asked = container
                        .get("resources")
                        .and_then(|r| r.get(kind))
                        .and_then(|r| r.get(*resource));
                    let Some(asked) = asked.and_then(Value::as_str) else {
                        continue;
                    };
                    if quantity::parse(asked).is_some_and(|v| v > *max) {
                        return Err(reject(format!(
                            "container {name}: {resource} {kind} {asked} is above the allowed maximum {max_text}"
                        )));
                    }
                }
            }
        }
        Ok(job)
    }
}

agent_plugin_sdk::export_plugin!(Policy);
