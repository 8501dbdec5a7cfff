//! From a flow run and the agent's settings to the request every plugin receives: the merged
//! job variables, the base job template and the claim's deterministic job-name suffix.

use crate::plugins::{AgentSettings, FlowRun as WitFlowRun, Request};
use crate::prefect::models::RunContext;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Builds the plugin request for `run`.
///
/// `agent_variables` are the job variables the agent's own flags set (`--namespace`,
/// `--service-account-name`): they override the pool's defaults and are overridden by the
/// deployment and the flow run, as Prefect 1 agent flags were by a run's config.
pub fn build_request(
    run: &RunContext,
    agent: AgentSettings,
    agent_variables: &Map<String, Value>,
    template: &Value,
) -> Request {
    let mut job_variables = merge_job_variables(
        template,
        [
            Some(agent_variables),
            run.deployment
                .as_ref()
                .and_then(|d| d.job_variables.as_ref()),
            run.flow_run.job_variables.as_ref(),
        ],
    );
    let template = per_deployment_template(&mut job_variables, template);
    Request {
        flow_run: wit_flow_run(run),
        agent,
        job_variables: Value::Object(job_variables).to_string(),
        base_job_template: template.to_string(),
        job_name_suffix: job_name_suffix(&run.flow_run.id, run.flow_run.state_id.as_deref()),
        config: Vec::new(),
    }
}

/// A `job_manifest` job variable holding a Job replaces the template's Job manifest for this
/// deployment (or run); it is taken out of the variables. Anything else there is left alone.
fn per_deployment_template(variables: &mut Map<String, Value>, template: &Value) -> Value {
    let is_job = variables
        .get("job_manifest")
        .is_some_and(|m| m.get("kind").and_then(Value::as_str) == Some("Job"));
    if !is_job {
        if variables.contains_key("job_manifest") {
            tracing::warn!(
                "the `job_manifest` job variable is not a Job manifest (kind: Job); ignored"
            );
        }
        return template.clone();
    }
    let manifest = variables.remove("job_manifest").expect("checked above");
    let mut template = template.clone();
    template["job_configuration"]["job_manifest"] = manifest;
    template
}

fn wit_flow_run(run: &RunContext) -> WitFlowRun {
    let flow_run = &run.flow_run;
    WitFlowRun {
        id: flow_run.id.clone(),
        name: flow_run.name.clone(),
        flow_id: flow_run.flow_id.clone(),
        flow_name: run.flow.name.clone(),
        deployment_id: flow_run.deployment_id.clone(),
        deployment_name: run.deployment.as_ref().map(|d| d.name.clone()),
        deployment_updated: run
            .deployment
            .as_ref()
            .and_then(|d| d.updated.as_deref())
            .map(python_utc_isoformat),
        work_pool_id: run.work_pool.as_ref().map(|p| p.id.clone()),
        work_pool_name: run
            .work_pool
            .as_ref()
            .map(|p| p.name.clone())
            .or_else(|| flow_run.work_pool_name.clone()),
        work_queue_name: flow_run.work_queue_name.clone(),
        tags: flow_run.tags.clone(),
        labels: flow_run
            .labels
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect(),
        parameters: Value::Object(flow_run.parameters.clone()).to_string(),
        run_count: flow_run.run_count,
    }
}

/// Pool defaults < each layer in order; `env` objects merge key by key, everything else is
/// replaced, as Prefect's worker merges deployment and flow run variables.
pub fn merge_job_variables<'a>(
    template: &Value,
    layers: impl IntoIterator<Item = Option<&'a Map<String, Value>>>,
) -> Map<String, Value> {
    let mut merged: Map<String, Value> = template
        .pointer("/variables/properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, schema)| {
            Some((
                name.clone(),
                schema.get("default").filter(|d| !d.is_null())?.clone(),
            ))
        })
        .collect();
    for layer in layers.into_iter().flatten() {
        for (key, value) in layer {
            match (merged.get_mut(key), value) {
                (Some(Value::Object(current)), Value::Object(extra)) if key == "env" => {
                    current.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                _ => {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
    }
    merged
}

/// Eight lowercase letters and digits, derived from the flow run and the claim (the id of the
/// PENDING state that claimed it): a retry of the same claim gets the same Job name, a new
/// claim of the same run (after an eviction) a new one.
pub fn job_name_suffix(flow_run_id: &str, claim_state_id: Option<&str>) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = Sha256::digest(format!(
        "{flow_run_id}/{}",
        claim_state_id.unwrap_or("unclaimed")
    ));
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (0..8)
        .map(|i| ALPHABET[((bits >> (59 - 5 * i)) & 31) as usize] as char)
        .collect()
}

/// The timestamp as Python's `datetime.astimezone(UTC).isoformat()` writes it, which is how
/// Prefect's worker labels Jobs with a deployment's update time.
fn python_utc_isoformat(timestamp: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(timestamp) {
        Ok(time) => {
            let utc = time.with_timezone(&chrono::Utc);
            let fraction = if utc.timestamp_subsec_micros() == 0 {
                String::new()
            } else {
                utc.format(".%6f").to_string()
            };
            format!("{}{fraction}+00:00", utc.format("%Y-%m-%dT%H:%M:%S"))
        }
        Err(_) => timestamp.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_variables_layer_and_env_merges() {
        let template = json!({"variables": {"properties": {
            "namespace": {"default": "default"}, "image": {"default": null}, "env": {"default": {"POOL": "1", "X": "pool"}}
        }}});
        let agent = json!({"namespace": "jobs"});
        let deployment = json!({"env": {"X": "deployment"}, "image": "a:1"});
        let flow_run = json!({"env": {"RUN": "1"}, "image": "b:2"});
        let merged = merge_job_variables(
            &template,
            [
                agent.as_object(),
                deployment.as_object(),
                flow_run.as_object(),
            ],
        );
        assert_eq!(
            Value::Object(merged),
            json!({"namespace": "jobs", "env": {"POOL": "1", "X": "deployment", "RUN": "1"}, "image": "b:2"})
        );
    }

    #[test]
    fn the_suffix_is_stable_per_claim_and_new_per_claim() {
        let first = job_name_suffix("run", Some("claim-1"));
        assert_eq!(first, job_name_suffix("run", Some("claim-1")));
        assert_ne!(first, job_name_suffix("run", Some("claim-2")));
        assert_eq!(first.len(), 8);
        assert!(
            first
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn deployment_times_print_as_python_does() {
        assert_eq!(
            python_utc_isoformat("2026-11-22T20:00:00.123456Z"),
            "2026-11-22T20:00:00.123456+00:00"
        );
        assert_eq!(
            python_utc_isoformat("2026-11-22T21:00:00+01:00"),
            "2026-11-22T20:00:00+00:00"
        );
    }
}
