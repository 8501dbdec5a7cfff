//! `{{ prefect.blocks.TYPE.NAME[.key.path] }}` and `{{ prefect.variables.NAME }}` in job
//! templates and job variables, resolved through the API as Prefect's worker resolves them
//! (`prefect.utilities.templating`): a string that is only the placeholder takes the value
//! whole (an object for a block), one embedded in text takes its string form; blocks first,
//! then variables; a missing variable becomes "", a missing block is an error.
//!
//! The worker resolves after filling the template with the job variables; plugins run in a
//! sandbox without the API, so the agent resolves the template and the job variables before
//! the chain. The outcome is the same unless a placeholder is assembled from two variables.

use super::models::RunContext;
use super::{PrefectClient, PrefectError};
use agent_placeholders::{BLOCKS, VARIABLES};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
pub enum PlaceholderError {
    #[error(
        "the job template or job variables use block {name:?} of type {block_type:?}, which does not exist: create it or fix the reference"
    )]
    MissingBlock { block_type: String, name: String },
    #[error("{placeholder}: {problem}")]
    Invalid {
        placeholder: String,
        problem: String,
    },
    #[error(transparent)]
    Api(#[from] PrefectError),
}

/// Resolves every block and variable placeholder in `documents`, in place. No API call when
/// there is none.
pub async fn resolve(
    client: &PrefectClient,
    documents: &mut [&mut Value],
) -> Result<(), PlaceholderError> {
    let blocks = names_with_prefix(documents, BLOCKS);
    if !blocks.is_empty() {
        let mut data = BTreeMap::new();
        for name in &blocks {
            let (block_type, document) = block_address(name)?;
            if data.contains_key(&(block_type.clone(), document.clone())) {
                continue;
            }
            let value = match client
                .read_block_document_data(&block_type, &document)
                .await
            {
                Ok(value) => value,
                Err(e) if e.is_not_found() => {
                    return Err(PlaceholderError::MissingBlock {
                        block_type,
                        name: document,
                    });
                }
                Err(e) => return Err(e.into()),
            };
            data.insert((block_type, document), value);
        }
        let lookup = |name: &str| block_value(name, &data).map(Some);
        for document in documents.iter_mut() {
            substitute(document, BLOCKS, &lookup)?;
        }
    }
    let variables = names_with_prefix(documents, VARIABLES);
    if !variables.is_empty() {
        let mut values = BTreeMap::new();
        for name in &variables {
            let variable = &name[VARIABLES.len()..];
            values.insert(name.clone(), client.read_variable(variable).await?);
        }
        let lookup = |name: &str| Ok(values.get(name).cloned().flatten());
        for document in documents.iter_mut() {
            substitute(document, VARIABLES, &lookup)?;
        }
    }
    Ok(())
}

/// Resolves the placeholders of one run: in the template's job configuration and variable
/// defaults, and in the deployment's and the run's job variables.
pub async fn resolve_run(
    client: &PrefectClient,
    context: &mut RunContext,
    template: &mut Value,
) -> Result<(), PlaceholderError> {
    let mut defaults: Vec<(String, Value)> = Vec::new();
    if let Some(properties) = template
        .pointer_mut("/variables/properties")
        .and_then(Value::as_object_mut)
    {
        for (name, property) in properties.iter_mut() {
            if let Some(default) = property.get_mut("default") {
                defaults.push((name.clone(), default.take()));
            }
        }
    }
    let mut documents = vec![
        template
            .get_mut("job_configuration")
            .map(Value::take)
            .unwrap_or(Value::Null),
        take_map(context.flow_run.job_variables.as_mut()),
        take_map(
            context
                .deployment
                .as_mut()
                .and_then(|d| d.job_variables.as_mut()),
        ),
    ];
    documents.extend(defaults.iter_mut().map(|(_, v)| v.take()));
    let result = {
        let mut refs: Vec<&mut Value> = documents.iter_mut().collect();
        resolve(client, &mut refs).await
    };
    // Put everything back, resolved or not.
    let mut documents = documents.into_iter();
    if let Some(configuration) = template.get_mut("job_configuration") {
        *configuration = documents.next().unwrap_or_default();
    } else {
        documents.next();
    }
    put_map(&mut context.flow_run.job_variables, documents.next());
    if let Some(deployment) = context.deployment.as_mut() {
        put_map(&mut deployment.job_variables, documents.next());
    } else {
        documents.next();
    }
    for ((name, _), value) in defaults.into_iter().zip(documents) {
        template["variables"]["properties"][&name]["default"] = value;
    }
    result
}

fn take_map(map: Option<&mut Map<String, Value>>) -> Value {
    map.map(|m| Value::Object(std::mem::take(m)))
        .unwrap_or(Value::Null)
}

fn put_map(map: &mut Option<Map<String, Value>>, value: Option<Value>) {
    if let (Some(map), Some(Value::Object(resolved))) = (map.as_mut(), value) {
        *map = resolved;
    }
}

/// Placeholder names starting with `prefix` anywhere in `documents`.
fn names_with_prefix(documents: &[&mut Value], prefix: &str) -> BTreeSet<String> {
    fn walk(value: &Value, prefix: &str, found: &mut BTreeSet<String>) {
        match value {
            Value::String(text) => found.extend(
                agent_placeholders::find(text)
                    .iter()
                    .map(|p| p.name.to_string())
                    .filter(|name| name.starts_with(prefix)),
            ),
            Value::Array(items) => items.iter().for_each(|i| walk(i, prefix, found)),
            Value::Object(map) => map.values().for_each(|v| walk(v, prefix, found)),
            _ => {}
        }
    }
    let mut found = BTreeSet::new();
    documents.iter().for_each(|d| walk(d, prefix, &mut found));
    found
}

/// `prefect.blocks.secret.db-password.value` → (`secret`, `db-password`).
fn block_address(name: &str) -> Result<(String, String), PlaceholderError> {
    let mut parts = name[BLOCKS.len()..].splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(block_type), Some(document)) if !block_type.is_empty() && !document.is_empty() => {
            Ok((block_type.to_string(), document.to_string()))
        }
        _ => Err(PlaceholderError::Invalid {
            placeholder: name.to_string(),
            problem: "expected prefect.blocks.<block-type-slug>.<block-document-name>".into(),
        }),
    }
}

/// The value a block placeholder stands for: the block's data, its `value` alone for blocks
/// that have only that, or the part a key path selects.
fn block_value(
    name: &str,
    data: &BTreeMap<(String, String), Value>,
) -> Result<Value, PlaceholderError> {
    let address = block_address(name)?;
    let key_path = name[BLOCKS.len()..].splitn(3, '.').nth(2);
    let mut value = &data[&address];
    let only_value =
        value.as_object().is_some_and(|m| m.len() == 1) && value.get("value").is_some();
    let path_starts_at_value = key_path
        .is_some_and(|p| p == "value" || p.starts_with("value.") || p.starts_with("value["));
    if only_value && !path_starts_at_value {
        value = &value["value"];
    }
    match key_path {
        None => Ok(value.clone()),
        Some(path) => {
            get_from_dict(value, path)
                .cloned()
                .ok_or_else(|| PlaceholderError::Invalid {
                    placeholder: name.to_string(),
                    problem: format!("the block has no value at {path:?}"),
                })
        }
    }
}

/// Prefect's `get_from_dict`: `a.b[0].c` walks objects and lists.
fn get_from_dict<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .try_fold(value, |current, key| match current {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// Replaces the placeholders starting with `prefix` in every string of `value`. `lookup`
/// gives a placeholder's value (`None`: it becomes empty).
fn substitute(
    value: &mut Value,
    prefix: &str,
    lookup: &dyn Fn(&str) -> Result<Option<Value>, PlaceholderError>,
) -> Result<(), PlaceholderError> {
    match value {
        Value::String(text) => {
            let all = agent_placeholders::find(text);
            let found: Vec<(String, String)> = all
                .iter()
                .filter(|p| p.name.starts_with(prefix))
                .map(|p| (p.full_match.to_string(), p.name.to_string()))
                .collect();
            if found.is_empty() {
                return Ok(());
            }
            let whole = all.len() == 1 && found[0].0 == *text;
            if whole {
                *value = lookup(&found[0].1)?.unwrap_or_else(|| Value::String(String::new()));
                return Ok(());
            }
            let mut result = text.clone();
            for (full, name) in found {
                let replacement = match lookup(&name)? {
                    None => String::new(),
                    Some(Value::Object(_) | Value::Array(_)) => {
                        return Err(PlaceholderError::Invalid {
                            placeholder: full,
                            problem: format!(
                                "it stands for an object or list, which cannot be put inside the text {text:?}; select one value (like `.value`)"
                            ),
                        });
                    }
                    Some(scalar) => python_str(&scalar),
                };
                result = result.replace(&full, &replacement);
            }
            *value = Value::String(result);
        }
        Value::Array(items) => {
            for item in items {
                substitute(item, prefix, lookup)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                substitute(item, prefix, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Python's `str()` of a JSON scalar, which is what Prefect puts into text.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> BTreeMap<(String, String), Value> {
        BTreeMap::from([
            (
                ("secret".into(), "token".into()),
                json!({"value": "s3cret"}),
            ),
            (
                ("json".into(), "cfg".into()),
                json!({"value": {"image": "repo/img:1", "list": [{"k": "v"}]}}),
            ),
            (
                ("registry".into(), "main".into()),
                json!({"url": "registry.example.com", "port": 443}),
            ),
        ])
    }

    #[test]
    fn block_values_follow_prefects_rules() {
        let data = data();
        let get = |name: &str| block_value(name, &data).unwrap();
        assert_eq!(get("prefect.blocks.secret.token"), json!("s3cret"));
        assert_eq!(get("prefect.blocks.secret.token.value"), json!("s3cret"));
        assert_eq!(get("prefect.blocks.json.cfg.image"), json!("repo/img:1"));
        assert_eq!(get("prefect.blocks.json.cfg.list[0].k"), json!("v"));
        assert_eq!(get("prefect.blocks.registry.main.port"), json!(443));
        assert!(block_value("prefect.blocks.registry.main.nope", &data).is_err());
    }

    #[test]
    fn whole_strings_take_values_and_embedded_ones_take_text() {
        let data = data();
        let lookup = |name: &str| block_value(name, &data).map(Some);
        let mut document = json!({
            "whole": "{{ prefect.blocks.registry.main }}",
            "inline": "{{prefect.blocks.registry.main.url}}:{{ prefect.blocks.registry.main.port }}/x",
            "other": "{{ image }} and {{ prefect.variables.v }}",
        });
        substitute(&mut document, BLOCKS, &lookup).unwrap();
        assert_eq!(
            document,
            json!({
                "whole": {"url": "registry.example.com", "port": 443},
                "inline": "registry.example.com:443/x",
                "other": "{{ image }} and {{ prefect.variables.v }}",
            })
        );
        let mut inline_object = json!("x {{ prefect.blocks.registry.main }}");
        assert!(substitute(&mut inline_object, BLOCKS, &lookup).is_err());
    }

    #[test]
    fn missing_variables_become_empty() {
        let lookup = |name: &str| Ok((name == "prefect.variables.team").then(|| json!("data")));
        let mut document = json!([
            "{{ prefect.variables.team }}",
            "t-{{ prefect.variables.team }}-{{ prefect.variables.gone }}",
            "{{ prefect.variables.gone }}"
        ]);
        substitute(&mut document, VARIABLES, &lookup).unwrap();
        assert_eq!(document, json!(["data", "t-data-", ""]));
    }
}
