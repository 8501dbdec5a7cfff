//! The chain: the stock plugin first, then the user's, each given the Job the previous one
//! returned. It remembers which plugin last changed each part of the Job, so that an invalid
//! field can be blamed on the plugin that wrote it.
//!
//! What a plugin returns is bounded before it is read: its size (`Limits::output_bytes`, in
//! `Plugin::call`) and the number of values in it (`MAX_VALUES`), so that no answer can make
//! the agent's memory grow past what its limits say.

use super::bindings::agent::plugin::types::Request;
use super::error::{CallError, FaultKind};
use super::plugin::Plugin;
use super::state::LogLine;
use crate::diff::{Change, diff};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Values (fields and list items) a Job may hold; a real one holds hundreds. Checked on the
/// text, before it is parsed.
pub const MAX_VALUES: usize = 200_000;

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

    /// Runs every plugin in order over `request`, starting from an empty Job, on this thread
    /// (not an async task's: plugins are CPU work).
    pub fn run(&self, request: &Request) -> Result<ChainOutcome, CallError> {
        super::block_on(self.run_async(request))
    }

    async fn run_async(&self, request: &Request) -> Result<ChainOutcome, CallError> {
        let mut job = Value::Object(Default::default());
        let mut steps = Vec::with_capacity(self.links.len());
        for link in &self.links {
            let started = Instant::now();
            let request = Request {
                config: link.config.clone(),
                ..request.clone()
            };
            let input = serde_json::to_string(&job).expect("a JSON value serialises");
            let output = link.plugin.call_async(&request, &input).await?;
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

/// A plugin's answer must be a JSON object claiming to be a `batch/v1` Job, of a size a Job
/// can have.
fn parse_job(plugin: &str, text: &str) -> Result<Value, CallError> {
    let values = count_values(text);
    if values > MAX_VALUES {
        return Err(CallError::fault(
            plugin,
            FaultKind::OutputTooLarge,
            format!(
                "returned a Job of more than {MAX_VALUES} values (fields and list items; it has about {values}): no Job that large can be created"
            ),
        ));
    }
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

/// About how many values the JSON text holds (every `,`, `:`, `[` and `{` outside strings
/// starts one), without parsing it.
fn count_values(text: &str) -> usize {
    let (mut count, mut in_string, mut escaped) = (1, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b',' | b':' | b'[' | b'{' => count += 1,
                _ => {}
            }
        }
    }
    count
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_counted_outside_strings_only() {
        assert_eq!(count_values(r#"{"a": [1, 2, "x,y:[{"]}"#), 6);
        assert_eq!(count_values(r#""a\",b""#), 1);
    }

    #[test]
    fn an_answer_with_too_many_values_is_refused_unread() {
        let many = format!(
            r#"{{"apiVersion": "batch/v1", "kind": "Job", "args": [{}]}}"#,
            vec!["\"\""; MAX_VALUES].join(",")
        );
        let error = parse_job("amplifier", &many).unwrap_err().to_string();
        assert!(error.contains("plugin amplifier"), "{error}");
        assert!(error.contains("more than 200000 values"), "{error}");
    }
}
