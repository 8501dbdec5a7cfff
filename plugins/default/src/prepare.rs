//! What `KubernetesWorkerJobConfiguration.prepare_for_flow_run` adds for one flow run: env,
//! labels, annotations, image, args and name; then the agent's deliberate differences.

use crate::configuration::{Env, JobConfiguration, truthy};
use crate::shell;
use crate::slug;
use agent_placeholders::template::{apply_values, has_placeholders};
use agent_plugin_sdk::{Error, Request, Value, fault, job, json};
use serde_json::Map;

const DEFAULT_COMMAND: &str = "prefect flow-run execute";
const SIGTERM_BEHAVIOR: &str = "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR";

/// Turns the rendered configuration into the Job for `request`'s flow run.
pub fn prepare_for_flow_run(
    mut config: JobConfiguration,
    request: &Request,
) -> Result<Value, Error> {
    // Entries with `valueFrom` cannot live in a name → value map; keep them aside.
    let special_env = split_special_env(&mut config.env);
    let env = flow_run_env(&config.env, request);
    let labels = flow_run_labels(&config.labels, request);
    let name = flow_run_name(&config.name, request);

    let mut env = Env::Map(env);
    if !special_env.is_empty() {
        let Env::Map(map) = &env else { unreachable!() };
        let mut list: Vec<Value> = map
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        list.extend(special_env);
        env = Env::List(list);
    }

    let mut manifest = config.job_manifest;
    configure_eviction_handling(&manifest, &mut env);
    populate_env_in_manifest(&mut manifest, env)?;
    slugify_labels(&mut manifest, &labels)?;
    slugify_annotations(&mut manifest, &config.annotations)?;
    populate_image_if_not_present(&mut manifest, &request.agent.default_image)?;
    populate_command_if_not_present(&mut manifest)?;
    populate_generate_name_if_not_present(&mut manifest, &name)?;
    propagate_labels_to_pod(&mut manifest, &labels)?;
    propagate_annotations_to_pod(&mut manifest)?;
    Ok(manifest)
}

fn split_special_env(env: &mut Env) -> Vec<Value> {
    let Env::List(items) = env else {
        return Vec::new();
    };
    let special = items
        .iter()
        .filter(|i| i.get("valueFrom").is_some())
        .cloned()
        .collect();
    let plain = items
        .iter()
        .filter_map(|i| {
            Some((
                i.get("name")?.as_str()?.to_string(),
                i.get("value")?.clone(),
            ))
        })
        .collect();
    *env = Env::Map(plain);
    special
}

/// Agent env < flow run id < attribution < the `env` job variable; unset values dropped.
fn flow_run_env(configured: &Env, request: &Request) -> Map<String, Value> {
    let run = &request.flow_run;
    let agent = &request.agent;
    let mut env = Map::new();
    if let Some(url) = &agent.api_url {
        env.insert("PREFECT_API_URL".into(), json!(url));
    }
    for (k, v) in &agent.env {
        env.insert(k.clone(), json!(v));
    }
    env.insert("PREFECT__FLOW_RUN_ID".into(), json!(run.id));
    env.insert("PREFECT__WORKER_NAME".into(), json!(agent.name));
    env.insert("PREFECT__FLOW_ID".into(), json!(run.flow_id));
    if !run.flow_name.is_empty() {
        env.insert("PREFECT__FLOW_NAME".into(), json!(run.flow_name));
    }
    if let Some(id) = &run.deployment_id {
        env.insert("PREFECT__DEPLOYMENT_ID".into(), json!(id));
    }
    if let Some(name) = run.deployment_name.as_ref().filter(|n| !n.is_empty()) {
        env.insert("PREFECT__DEPLOYMENT_NAME".into(), json!(name));
    }
    if let Env::Map(overrides) = configured {
        env.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    env.retain(|_, v| !v.is_null());
    env
}

/// Prefect's labels for the run, pool, agent, flow and deployment, then the agent's own, then
/// the `labels` job variable.
fn flow_run_labels(configured: &Map<String, Value>, request: &Request) -> Map<String, Value> {
    let run = &request.flow_run;
    let mut labels = Map::new();
    let mut put = |k: &str, v: String| {
        labels.insert(k.to_string(), Value::String(v));
    };
    put("prefect.io/flow-run-id", run.id.clone());
    put("prefect.io/flow-run-name", run.name.clone());
    let version = request
        .agent
        .prefect_version
        .as_deref()
        .map(|v| slug::label_value(v.split('+').next().unwrap_or(v)));
    if let Some(version) = &version {
        put("prefect.io/version", version.clone());
    }
    put("app.kubernetes.io/managed-by", "prefect".into());
    put("app.kubernetes.io/part-of", "prefect".into());
    if let Some(version) = version {
        put("app.kubernetes.io/version", version);
    }
    if let (Some(name), Some(id)) = (&run.work_pool_name, &run.work_pool_id) {
        put("prefect.io/work-pool-name", name.clone());
        put("prefect.io/work-pool-id", id.clone());
    }
    put("prefect.io/worker-name", request.agent.name.clone());
    put("prefect.io/flow-id", run.flow_id.clone());
    put("prefect.io/flow-name", run.flow_name.clone());
    put("app.kubernetes.io/name", slug::label_value(&run.flow_name));
    if let (Some(id), Some(name)) = (&run.deployment_id, &run.deployment_name) {
        put("prefect.io/deployment-id", id.clone());
        put("prefect.io/deployment-name", name.clone());
        if let Some(updated) = &run.deployment_updated {
            put("prefect.io/deployment-updated", updated.clone());
        }
        put("app.kubernetes.io/name", slug::label_value(name));
    }
    for (k, v) in &request.agent.labels {
        put(k, v.clone());
    }
    labels.extend(configured.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// The `name` job variable rendered against `ctx.flow` and `ctx.flow_run`, or the run's name
/// when it renders to nothing (`""`, `0`, `None`), as Prefect's worker does. (The host renders
/// the `ctx` placeholders from the whole flow run before the plugins; this renders what the
/// contract's fields hold, for a plugin run without the host.) It may render to a number or a
/// list; see `populate_generate_name_if_not_present`.
fn flow_run_name(configured: &Value, request: &Request) -> Value {
    let rendered = match configured {
        Value::String(name) if !name.is_empty() => {
            let ctx = json!({"ctx": {"flow": flow_context(request), "flow_run": flow_run_context(request)}});
            apply_values(configured, ctx.as_object().expect("an object"))
                .unwrap_or_else(|| json!(name))
        }
        other => other.clone(),
    };
    if truthy(&rendered) {
        rendered
    } else {
        json!(request.flow_run.name)
    }
}

fn flow_context(request: &Request) -> Value {
    json!({"id": request.flow_run.flow_id, "name": request.flow_run.flow_name})
}

fn flow_run_context(request: &Request) -> Value {
    let run = &request.flow_run;
    let parameters: Value = serde_json::from_str(&run.parameters).unwrap_or_else(|_| json!({}));
    json!({
        "id": run.id,
        "name": run.name,
        "flow_id": run.flow_id,
        "deployment_id": run.deployment_id,
        "work_pool_name": run.work_pool_name,
        "work_queue_name": run.work_queue_name,
        "tags": run.tags,
        "parameters": parameters,
        "run_count": run.run_count,
    })
}

/// With `backoffLimit: 0` the runner reschedules its run on SIGTERM (eviction) unless told
/// otherwise; with any other limit Kubernetes owns retries, so the runner relinquishes.
fn configure_eviction_handling(manifest: &Value, env: &mut Env) {
    let no_retries = manifest
        .pointer("/spec/backoffLimit")
        .and_then(Value::as_f64)
        == Some(0.0);
    match env {
        Env::Map(map) if no_retries => {
            if !map.get(SIGTERM_BEHAVIOR).is_some_and(truthy) {
                map.insert(SIGTERM_BEHAVIOR.into(), json!("reschedule"));
            }
        }
        Env::List(list) if no_retries => {
            if !list
                .iter()
                .any(|e| e.get("name") == Some(&json!(SIGTERM_BEHAVIOR)))
            {
                list.push(json!({"name": SIGTERM_BEHAVIOR, "value": "reschedule"}));
            }
        }
        Env::Map(map) => {
            map.insert(SIGTERM_BEHAVIOR.into(), json!("relinquish"));
        }
        Env::List(list) => {
            list.retain(|e| e.get("name") != Some(&json!(SIGTERM_BEHAVIOR)));
            list.push(json!({"name": SIGTERM_BEHAVIOR, "value": "relinquish"}));
        }
    }
}

fn first_container(manifest: &mut Value) -> Result<&mut Map<String, Value>, Error> {
    manifest
        .pointer_mut("/spec/template/spec/containers/0")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            fault("Job field .spec.template.spec.containers[0] is missing or not an object")
        })
}

/// Our env first; entries the template hard-codes follow unless ours name them too.
fn populate_env_in_manifest(manifest: &mut Value, env: Env) -> Result<(), Error> {
    let ours: Vec<Value> = match env {
        Env::Map(map) => map
            .into_iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect(),
        Env::List(list) => list,
    };
    let container = first_container(manifest)?;
    let combined = match container.get("env") {
        Some(Value::Array(template_env)) => {
            let ours_names: Vec<&Value> = ours.iter().filter_map(|e| e.get("name")).collect();
            let kept: Vec<Value> = template_env
                .iter()
                .filter(|e| !e.get("name").is_some_and(|n| ours_names.contains(&n)))
                .cloned()
                .collect();
            ours.iter().cloned().chain(kept).collect()
        }
        _ => ours,
    };
    container.insert("env".into(), Value::Array(combined));
    Ok(())
}

/// Keys and values slugged; a value that is not text (a template's `{{ team }}` with `team`
/// unset or a number) is refused, as Prefect's worker fails on it.
fn slugged_labels(labels: &Map<String, Value>) -> Result<Map<String, Value>, Error> {
    labels
        .iter()
        .map(|(k, v)| match v {
            Value::String(text) => Ok((slug::label_key(k), Value::String(slug::label_value(text)))),
            other => Err(fault(format!(
                "the Job's label {k:?} is {other}, not text (a label value must be a string)"
            ))),
        })
        .collect()
}

fn merged(existing: Option<&Value>, over: &Map<String, Value>) -> Map<String, Value> {
    let mut all = existing
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    all.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

fn slugify_labels(manifest: &mut Value, labels: &Map<String, Value>) -> Result<(), Error> {
    let metadata = job::object_at(manifest, &["metadata"])?;
    let all = merged(metadata.get("labels"), labels);
    metadata.insert("labels".into(), Value::Object(slugged_labels(&all)?));
    Ok(())
}

fn slugify_annotations(
    manifest: &mut Value,
    annotations: &Map<String, Value>,
) -> Result<(), Error> {
    let metadata = job::object_at(manifest, &["metadata"])?;
    let all = merged(metadata.get("annotations"), annotations);
    let slugged = all
        .into_iter()
        .map(|(k, v)| (slug::label_key(&k), v))
        .collect();
    metadata.insert("annotations".into(), Value::Object(slugged));
    Ok(())
}

fn populate_image_if_not_present(manifest: &mut Value, default_image: &str) -> Result<(), Error> {
    first_container(manifest)?
        .entry("image")
        .or_insert_with(|| json!(default_image));
    Ok(())
}

/// `args`: the default command when unset; a string is split as a POSIX shell would.
fn populate_command_if_not_present(manifest: &mut Value) -> Result<(), Error> {
    let container = first_container(manifest)?;
    let args = match container.get("args") {
        None | Some(Value::Null) => split_command(DEFAULT_COMMAND)?,
        Some(Value::String(command)) => split_command(command)?,
        Some(Value::Array(_)) => return Ok(()),
        Some(other) => {
            return Err(fault(format!(
                "Invalid job manifest template: 'command' must be a string or list, got {other}"
            )));
        }
    };
    container.insert("args".into(), json!(args));
    Ok(())
}

fn split_command(command: &str) -> Result<Vec<String>, Error> {
    shell::split(command).map_err(|e| {
        fault(format!(
            "the command {command:?} cannot be split into args as Python's shlex.split does: {e}"
        ))
    })
}

/// A name that renders to a number or a list is refused here, where Prefect's worker fails on
/// it too (slugging it); a template with a generateName of its own never gets here.
fn populate_generate_name_if_not_present(manifest: &mut Value, name: &Value) -> Result<(), Error> {
    let metadata = job::object_at(manifest, &["metadata"])?;
    let current = metadata
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if current.is_empty() || has_placeholders(current) || current == "-" || current == "None-" {
        let Value::String(name) = name else {
            return Err(fault(format!(
                "the Job name (job variable `name`) renders to {name}, not to text"
            )));
        };
        let prefix = slug::name(name).unwrap_or_else(|| "prefect-job".into());
        metadata.insert("generateName".into(), json!(format!("{prefix}-")));
    }
    Ok(())
}

fn propagate_labels_to_pod(manifest: &mut Value, labels: &Map<String, Value>) -> Result<(), Error> {
    let pod_metadata = job::object_at(manifest, &["spec", "template", "metadata"])?;
    let all = merged(pod_metadata.get("labels"), labels);
    pod_metadata.insert("labels".into(), Value::Object(slugged_labels(&all)?));
    Ok(())
}

fn propagate_annotations_to_pod(manifest: &mut Value) -> Result<(), Error> {
    let annotations = manifest
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if annotations.is_empty() {
        return Ok(());
    }
    let pod_metadata = job::object_at(manifest, &["spec", "template", "metadata"])?;
    let all = merged(pod_metadata.get("annotations"), &annotations);
    pod_metadata.insert("annotations".into(), Value::Object(all));
    Ok(())
}
