//! The chain: the stock plugin first, then the user's, each given the Job the previous one
//! returned. It remembers which plugin last changed each part of the Job, so that an invalid
//! field can be blamed on the plugin that wrote it.

use super::bindings::agent::plugin::types::Request;
use super::call::LogLine;
use super::error::{CallError, FaultKind};
use super::loader::Plugin;
use crate::job::diff::{Change, diff};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A plugin with its own settings (`--plugin-config NAME.KEY=VALUE`).
pub struct Link {
    pub plugin: Plugin,
    pub config: Vec<(String, String)>,
}

pub struct Chain {
    links: Vec<Link>,
}

/// What one plugin did.
#[derive(Debug, Clone)]
pub struct Step {
    pub plugin: String,
    pub duration: Duration,
    pub changes: Vec<Change>,
    pub logs: Vec<LogLine>,
}

/// The Job the chain built, and how.
#[derive(Debug, Clone)]
pub struct ChainOutcome {
    pub job: Value,
    pub steps: Vec<Step>,
}

impl Chain {
    pub fn new(links: Vec<Link>) -> Self {
        Chain { links }
    }

    pub fn plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.links.iter().map(|link| &link.plugin)
    }

    /// Runs every plugin in order over `request`, starting from an empty Job.
    pub fn run(&self, request: &Request) -> Result<ChainOutcome, CallError> {
        let mut job = Value::Object(Default::default());
        let mut steps = Vec::with_capacity(self.links.len());
        for link in &self.links {
            let started = Instant::now();
            let request = Request {
                config: link.config.clone(),
                ..request.clone()
            };
            let input = serde_json::to_string(&job).expect("a JSON value serialises");
            let output = link.plugin.call(&request, &input)?;
            let next = parse_job(&link.plugin.name, &output.job)?;
            steps.push(Step {
                plugin: link.plugin.name.clone(),
                duration: started.elapsed(),
                changes: diff(&job, &next),
                logs: output.logs,
            });
            job = next;
        }
        Ok(ChainOutcome { job, steps })
    }
}

impl ChainOutcome {
    /// The plugin that last changed `path` (a JSON pointer), a value under it, or the nearest
    /// value above it.
    pub fn last_changed(&self, path: &str) -> Option<&str> {
        let touches = |change: &Change| {
            change.path == path
                || change.path.starts_with(&format!("{path}/"))
                || path.starts_with(&format!("{}/", change.path))
                || change.path.is_empty()
        };
        self.steps
            .iter()
            .rev()
            .find(|step| step.changes.iter().any(touches))
            .map(|step| step.plugin.as_str())
    }
}

/// A plugin's answer must be a JSON object claiming to be a `batch/v1` Job.
fn parse_job(plugin: &str, text: &str) -> Result<Value, CallError> {
    let job: Value = serde_json::from_str(text).map_err(|e| {
        let start: String = text.chars().take(60).collect();
        CallError::fault(
            plugin,
            FaultKind::NotJson,
            format!("{e} (it starts with {start:?})"),
        )
    })?;
    let api_version = job.get("apiVersion").and_then(Value::as_str);
    let kind = job.get("kind").and_then(Value::as_str);
    match (&job, api_version, kind) {
        (Value::Object(_), Some("batch/v1"), Some("Job")) => Ok(job),
        (Value::Object(_), _, _) => Err(CallError::fault(
            plugin,
            FaultKind::NotAJob,
            format!(
                "apiVersion is {api_version:?} and kind is {kind:?}; expected \"batch/v1\" and \"Job\""
            ),
        )),
        _ => Err(CallError::fault(
            plugin,
            FaultKind::NotAJob,
            format!("expected a JSON object, got {}", json_type(&job)),
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
