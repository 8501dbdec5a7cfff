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
    let mut template = per_deployment_template(&mut job_variables, template);
    render_name_context(&job_variables, &mut template, run);
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

/// The job variables as Prefect's worker ends up with them: the layers merged in order (later
/// wins, `env` objects merge key by key, as `resolve_for_flow_run` merges deployment and run);
/// dotted keys (`env.K1`) nested, the nested form winning; then over the pool's non-null
/// defaults, `env` objects merging again (the pool's default env survives, as it does through
/// `from_template_and_values`). The result has no dotted keys left.
pub fn merge_job_variables<'a>(
    template: &Value,
    layers: impl IntoIterator<Item = Option<&'a Map<String, Value>>>,
) -> Map<String, Value> {
    let mut values = Map::new();
    for layer in layers.into_iter().flatten() {
        for (key, value) in layer {
            // Prefect's worker feeds a later `env` to the earlier object's `dict.update`, so
            // a later `env` that is not an object never replaces it: an empty list changes
            // nothing, and the rest (a list of `{name, value}`, null) Prefect mangles or fails
            // on; the agent keeps the object (a documented difference).
            if key == "env" && values.get("env").is_some_and(Value::is_object) && !value.is_object()
            {
                continue;
            }
            merge_key(&mut values, key, value, key == "env");
        }
    }
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
    for (key, value) in nest_dotted_keys(&values) {
        merge_key(&mut merged, &key, &value, key == "env");
    }
    merged
}

/// `key` = `value` in `into`; with `merge_objects`, an object over an object merges key by key.
fn merge_key(into: &mut Map<String, Value>, key: &str, value: &Value, merge_objects: bool) {
    match (into.get_mut(key), value) {
        (Some(Value::Object(current)), Value::Object(extra)) if merge_objects => {
            current.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        _ => {
            into.insert(key.to_string(), value.clone());
        }
    }
}

/// `{"env.FOO": "1", "env": {"BAR": "2"}}` → `{"env": {"FOO": "1", "BAR": "2"}}`, as Prefect's
/// `from_template_and_values` transforms them: dotted keys first, then the plain ones deep-merged
/// over them.
fn nest_dotted_keys(values: &Map<String, Value>) -> Map<String, Value> {
    let mut nested = Map::new();
    for (key, value) in values.iter().filter(|(k, _)| k.contains('.')) {
        let mut keys: Vec<&str> = key.split('.').collect();
        let last = keys.pop().unwrap_or_default();
        let mut here = &mut nested;
        for part in keys {
            let slot = here
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            here = slot.as_object_mut().expect("just made an object");
        }
        here.insert(last.to_string(), value.clone());
    }
    for (key, value) in values.iter().filter(|(k, _)| !k.contains('.')) {
        let combined = match (nested.get(key), value) {
            (Some(Value::Object(dotted)), Value::Object(plain)) => {
                Value::Object(deep_merge(dotted, plain))
            }
            _ => value.clone(),
        };
        nested.insert(key.clone(), combined);
    }
    nested
}

fn deep_merge(base: &Map<String, Value>, over: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = base.clone();
    for (key, value) in over {
        let combined = match (merged.get(key), value) {
            (Some(Value::Object(a)), Value::Object(b)) => Value::Object(deep_merge(a, b)),
            _ => value.clone(),
        };
        merged.insert(key.clone(), combined);
    }
    merged
}

/// Prefect's worker renders the Job's name (`job_configuration.name` with the job variables)
/// against the whole flow and flow run (`{{ ctx.flow_run.flow_version }}`). Plugins see only
/// the contract's flow-run fields, so the host does that here, where the whole documents are,
/// and gives the plugins the rendered name in the template's `job_configuration.name`. Nothing
/// else changes: a `{{ name }}` elsewhere (the manifest's `generateName`) renders as before,
/// `ctx` placeholders and all, as in Prefect.
fn render_name_context(variables: &Map<String, Value>, template: &mut Value, run: &RunContext) {
    use agent_placeholders::template::apply_values;
    let Some(name) = template.pointer("/job_configuration/name") else {
        return;
    };
    let Some(rendered) = apply_values(name, variables) else {
        return;
    };
    let has_context = rendered.as_str().is_some_and(|text| {
        agent_placeholders::find(text)
            .iter()
            .any(|p| p.name.starts_with("ctx."))
    });
    if has_context {
        template["job_configuration"]["name"] =
            render_context_placeholders(&rendered, &name_context(run));
    }
}

/// `{"ctx": {"flow": …, "flow_run": …}}` as Prefect's worker builds it: each document as its
/// model dumps it, so every field is there (null when unset).
fn name_context(run: &RunContext) -> Map<String, Value> {
    let flow_run = over_defaults(FLOW_RUN_DEFAULTS, &run.flow_run);
    let flow = over_defaults(FLOW_DEFAULTS, &run.flow);
    let mut ctx = Map::new();
    ctx.insert(
        "ctx".into(),
        serde_json::json!({"flow": flow, "flow_run": flow_run}),
    );
    ctx
}

fn over_defaults(defaults: &str, document: &impl serde::Serialize) -> Value {
    let mut merged: Map<String, Value> =
        serde_json::from_str(defaults).expect("the embedded defaults are JSON");
    if let Ok(Value::Object(fields)) = serde_json::to_value(document) {
        merged.extend(fields);
    }
    Value::Object(merged)
}

/// The fields of Prefect 3.8.8's `FlowRun` and `Flow` models with their defaults, as
/// `model_dump(mode="json")` writes them (the differential test checks them against Prefect).
pub const FLOW_RUN_DEFAULTS: &str = r#"{"created": null, "updated": null, "state_id": null,
"deployment_id": null, "deployment_version": null, "work_queue_name": null, "flow_version": null,
"parameters": {}, "idempotency_key": null, "context": {}, "empirical_policy": {"max_retries": 0,
"retry_delay_seconds": 0.0, "retries": null, "retry_delay": null, "pause_keys": [],
"resuming": false, "retry_type": null}, "tags": [], "labels": {}, "parent_task_run_id": null,
"run_count": 0, "expected_start_time": null, "next_scheduled_start_time": null,
"start_time": null, "end_time": null, "total_run_time": 0.0, "estimated_run_time": 0.0,
"estimated_start_time_delta": 0.0, "auto_scheduled": false, "infrastructure_document_id": null,
"infrastructure_pid": null, "created_by": null, "work_queue_id": null, "work_pool_id": null,
"work_pool_name": null, "state": null, "job_variables": null, "state_type": null,
"state_name": null}"#;
pub const FLOW_DEFAULTS: &str = r#"{"created": null, "updated": null, "tags": [], "labels": {}}"#;

/// Only the `ctx.` placeholders of `value` (a string) rendered: a string that is one such
/// placeholder takes the value's type, others interpolate Python's `str()`.
fn render_context_placeholders(value: &Value, ctx: &Map<String, Value>) -> Value {
    use agent_placeholders::template::{lookup, python_str};
    let Value::String(text) = value else {
        return value.clone();
    };
    let placeholders: Vec<_> = agent_placeholders::find_distinct(text)
        .into_iter()
        .filter(|p| p.name.starts_with("ctx."))
        .collect();
    if let [only] = placeholders.as_slice()
        && only.full_match == text
    {
        return lookup(ctx, only.name)
            .cloned()
            .unwrap_or_else(|| value.clone());
    }
    let mut rendered = text.clone();
    for placeholder in &placeholders {
        let replacement = lookup(ctx, placeholder.name)
            .map(python_str)
            .unwrap_or_default();
        rendered = rendered.replace(placeholder.full_match, &replacement);
    }
    Value::String(rendered)
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
    fn a_later_env_that_is_not_an_object_leaves_the_earlier_object() {
        let template = json!({"variables": {"properties": {}}});
        let deployment = json!({"env": {"ONLY": "deployment"}});
        for run_env in [json!([]), json!([{"name": "A", "value": "1"}]), Value::Null] {
            let flow_run = json!({"env": run_env});
            let merged =
                merge_job_variables(&template, [deployment.as_object(), flow_run.as_object()]);
            assert_eq!(merged["env"], json!({"ONLY": "deployment"}), "{run_env}");
        }
        let deployment = json!({"env": [{"name": "A", "value": "1"}]});
        let flow_run = json!({"env": {"B": "2"}});
        let merged = merge_job_variables(&template, [deployment.as_object(), flow_run.as_object()]);
        assert_eq!(
            merged["env"],
            json!({"B": "2"}),
            "an object replaces a list"
        );
    }

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
    fn dotted_variables_win_over_pool_defaults_and_lose_to_nested_ones() {
        let template = json!({"variables": {"properties": {
            "env": {"default": {"POOL": "1", "K1": "pool"}}, "labels": {"default": {"pool": "yes"}}
        }}});
        let deployment = json!({"env.K1": "deployment", "env.K2": "dotted", "labels.team": "data"});
        let flow_run = json!({"env": {"K2": "nested"}});
        let merged = merge_job_variables(&template, [deployment.as_object(), flow_run.as_object()]);
        assert_eq!(
            Value::Object(merged),
            json!({"env": {"POOL": "1", "K1": "deployment", "K2": "nested"}, "labels": {"team": "data"}})
        );
    }

    #[test]
    fn the_name_sees_the_whole_flow_run_and_keeps_what_has_no_value() {
        let run: RunContext = serde_json::from_value(json!({
            "flow_run": {"id": "r", "name": "run", "flow_id": "f", "run_count": 0, "flow_version": "1.2"},
            "flow": {"id": "f", "name": "etl"},
        }))
        .unwrap();
        let ctx = name_context(&run);
        let render = |text: &str| render_context_placeholders(&json!(text), &ctx);
        assert_eq!(
            render("{{ ctx.flow_run.flow_version }}-{{ ctx.flow.name }}"),
            json!("1.2-etl")
        );
        assert_eq!(render("{{ ctx.flow_run.run_count }}"), json!(0));
        assert_eq!(render("{{ ctx.flow_run.state_name }}-x"), json!("None-x"));
        assert_eq!(
            render("{{ ctx.flow_run.nope }}"),
            json!("{{ ctx.flow_run.nope }}")
        );
        assert_eq!(
            render("{{ name }}-{{ ctx.flow.name }}"),
            json!("{{ name }}-etl")
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
