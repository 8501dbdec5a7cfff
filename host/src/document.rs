//! Reading JSON or YAML documents (flow runs, templates, volumes, test cases), naming where
//! they came from in every error.

use anyhow::Context;
use serde_json::Value;
use std::path::Path;

/// Reads a JSON or YAML file into a value, naming the file in every error.
pub fn read_document(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_document(&text, &path.display().to_string())
}

/// JSON (a name ending in .json, or text starting with `{`) or YAML; `name` says where it came
/// from in errors.
pub fn parse_document(text: &str, name: &str) -> anyhow::Result<Value> {
    let is_json = name.ends_with(".json") || text.trim_start().starts_with('{');
    if is_json {
        serde_json::from_str(text).with_context(|| format!("{name} is not valid JSON"))
    } else {
        serde_yaml_ng::from_str(text).with_context(|| format!("{name} is not valid YAML"))
    }
}
