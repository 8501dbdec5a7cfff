//! Adds env to every flow run container.
//!
//! Settings: `set.NAME=VALUE` for a plain variable, `secret.NAME=SECRET/KEY` for one read from
//! a Kubernetes Secret (`secretKeyRef`), so credentials never appear in the Job spec.
//! A variable of the same name already on the container is replaced.

use agent_plugin_sdk::{Error, Plugin, Request, Value, fault, job, json};

pub struct Env;

impl Plugin for Env {
    fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
        let entries = request
            .config
            .iter()
            .map(|(key, value)| env_entry(key, value))
            .collect::<Result<Vec<_>, _>>()?;
        for container in job::containers(&mut job)? {
            for entry in &entries {
                job::set_env(container, entry.clone())?;
            }
        }
        Ok(job)
    }
}

agent_plugin_sdk::export_plugin!(Env);

fn env_entry(key: &str, value: &str) -> Result<Value, Error> {
    if let Some(name) = key.strip_prefix("set.") {
        return Ok(json!({"name": name, "value": value}));
    }
    if let Some(name) = key.strip_prefix("secret.") {
        let (secret, secret_key) = value
            .split_once('/')
            .filter(|(s, k)| !s.is_empty() && !k.is_empty())
            .ok_or_else(|| fault(format!("setting `{key}` = {value:?} must be SECRET/KEY")))?;
        return Ok(
            json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": secret_key}}}),
        );
    }
    Err(fault(format!(
        "unknown setting `{key}`: use set.NAME=VALUE or secret.NAME=SECRET/KEY"
    )))
}
