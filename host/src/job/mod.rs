//! What the Job must be after the chain, whatever the plugins did: the host's tracking labels
//! and name, the agent's namespace, the strict Kubernetes schema and the API server's rules.
//! An invalid Job fails its run with the field's path and the plugin that last changed it.

mod invariants;
mod schema;

pub use invariants::{
    AGENT_LABEL, CLAIM_LABEL, FLOW_RUN_LABEL, TRACKING_LABELS, Tracking, label_value,
};

pub use crate::diff::dotted;
use crate::plugins::ChainOutcome;
use serde_json::Value;

/// The Job the chain made breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Job{}: {path}: {message}", blame(plugin))]
pub struct InvalidJob {
    /// The plugin that last changed the field, when one did.
    pub plugin: Option<String>,
    /// JSON path of the field, like `.spec.template.spec.restartPolicy`.
    pub path: String,
    pub message: String,
}

impl InvalidJob {
    /// The Job asks for a namespace the agent does not serve: the run's configuration is
    /// refused (FAILED), nothing crashed.
    pub fn is_namespace_refused(&self) -> bool {
        self.path == dotted(invariants::NAMESPACE_POINTER)
    }
}

fn blame(plugin: &Option<String>) -> String {
    plugin
        .as_ref()
        .map(|p| format!(" (field last changed by plugin {p})"))
        .unwrap_or_default()
}

/// Applies the host's invariants to the chain's Job and checks it; returns the Job to create.
/// Fields set to `null` are left out, as if unset: a job variable given as null (`cpu_request:
/// null`) renders to a null field, which the strict schema cannot place (and Kubernetes' JSON
/// decoding would read as a zero value, not as "unset").
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// What the API server would refuse in `job` (strict schema, then the rules it cannot say):
/// JSON pointers and messages, in order.
pub fn problems(job: &Value) -> Vec<(String, String)> {
    schema::job_problems(job)
        .into_iter()
        .chain(invariants::api_server_rules(job))
        .collect()
}

pub fn finalize(outcome: &ChainOutcome, tracking: &Tracking) -> Result<Value, InvalidJob> {
    let mut job = outcome.job.clone();
    drop_nulls(&mut job);
    let blame = |pointer: &str| outcome.last_changed(pointer).map(str::to_string);
    invariants::apply(&mut job, tracking).map_err(|(pointer, message)| InvalidJob {
        plugin: blame(&pointer),
        path: dotted(&pointer),
        message,
    })?;
    if let Some((pointer, message)) = problems(&job).into_iter().next() {
        return Err(InvalidJob {
            plugin: blame(&pointer),
            path: dotted(&pointer),
            message,
        });
    }
    Ok(job)
}
