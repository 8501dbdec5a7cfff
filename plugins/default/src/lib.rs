//! The stock plugin: the Job that Prefect's own Kubernetes worker would create for a flow run.
//!
//! It renders the work pool's base job template (or prefect-kubernetes' stock template) with
//! the merged job variables and applies what the worker's `prepare_for_flow_run` adds. The Job
//! it is given is ignored: it starts the chain. Deliberate differences from Prefect, each
//! documented in the plugin README:
//! - a deterministic `metadata.name` (the `generateName` prefix + the claim's suffix), so a
//!   retried create finds the Job it already made instead of making a second one;
//! - no `parallelism`/`completions` inside the pod spec (they are Job fields; the API server
//!   rejects them in a pod under strict field validation);
//! - the agent's image pull secrets, env, labels and API key Secret are added, and the
//!   volumes and mounts of its settings `volumes` and `volume-mounts` (JSON lists; the host
//!   fills them from `--volume` and `--volume-mount`), and `PREFECT_API_AUTH_STRING` from the
//!   Secret of its setting `api-auth-string-secret` (NAME/KEY).

mod configuration;
mod entities;
mod prepare;
mod shell;
pub mod slug;
mod transliterate;

use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value, job, json};

pub struct Stock;

impl Plugin for Stock {
    fn customize(request: &Request, _job: Value) -> Result<Value, Error> {
        let template = configuration::base_template(&request.base_job_template)?;
        let variables = request.job_variables()?;
        let config = configuration::from_template_and_values(&template, &variables)?;
        let mut manifest = prepare::prepare_for_flow_run(config, request)?;
        apply_agent_differences(&mut manifest, request)?;
        Ok(manifest)
    }
}

agent_plugin_sdk::export_plugin!(Stock);

fn apply_agent_differences(manifest: &mut Value, request: &Request) -> Result<(), Error> {
    name_deterministically(manifest, &request.job_name_suffix)?;
    let pod = job::pod_spec(manifest)?;
    pod.remove("parallelism");
    pod.remove("completions");
    for secret in &request.agent.image_pull_secrets {
        job::add_named(pod, "imagePullSecrets", json!({ "name": secret }))?;
    }
    let volumes = request.config_named_list("volumes")?;
    let mounts = request.config_named_list("volume-mounts")?;
    job::add_volumes(manifest, &volumes, &mounts)?;
    if let Some(secret) = &request.agent.api_key_secret {
        env_from_secret(manifest, "PREFECT_API_KEY", &secret.name, &secret.key)?;
    }
    if let Some(reference) = request.config("api-auth-string-secret") {
        let Some((name, key)) = reference.split_once('/') else {
            return Err(agent_plugin_sdk::fault(format!(
                "setting `api-auth-string-secret` must be NAME/KEY, not {reference:?}"
            )));
        };
        env_from_secret(manifest, "PREFECT_API_AUTH_STRING", name, key)?;
    }
    Ok(())
}

/// Env `variable` of the flow run container from a Secret, unless the Job sets it already.
fn env_from_secret(
    manifest: &mut Value,
    variable: &str,
    name: &str,
    key: &str,
) -> Result<(), Error> {
    let container = job::containers(manifest)?
        .into_iter()
        .next()
        .expect("checked by the template validation");
    let present = container
        .get("env")
        .and_then(Value::as_array)
        .is_some_and(|env| env.iter().any(|e| e.get("name") == Some(&json!(variable))));
    if !present {
        job::set_env(
            container,
            json!({"name": variable, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}),
        )?;
    }
    Ok(())
}

/// A Job name's length at most (its pods' `job-name` label must hold it).
const MAX_NAME: usize = 63;

/// `generateName: "etl-"` + suffix `k3x9a2b1` → `name: "etl-k3x9a2b1"`, the prefix cut to fit.
/// A name the template fixes is kept.
fn name_deterministically(manifest: &mut Value, suffix: &str) -> Result<(), Error> {
    let metadata = job::object_at(manifest, &["metadata"])?;
    let prefix = metadata.remove("generateName");
    if metadata
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        return Ok(());
    }
    let prefix = prefix
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or("prefect-job-");
    // The API server cuts a long generateName to leave room for its suffix; so does this.
    let room = MAX_NAME.saturating_sub(suffix.len());
    let prefix: String = prefix.chars().take(room).collect();
    metadata.insert("name".into(), json!(format!("{prefix}{suffix}")));
    Ok(())
}
