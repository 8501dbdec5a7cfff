//! The job configuration: the pool's base job template rendered with the job variables, then
//! checked, as `KubernetesWorkerJobConfiguration.from_template_and_values` builds it.

use agent_placeholders::template::{apply_values, python_str};
use agent_plugin_sdk::{Error, Value, fault, json};
use serde_json::Map;

/// prefect-kubernetes' stock base job template, used when the pool has none.
pub const STOCK_TEMPLATE: &str = include_str!("stock_template.json");

/// Env as the template gives it: Prefect's `{NAME: value}` or Kubernetes' `[{name, value}]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Env {
    Map(Map<String, Value>),
    List(Vec<Value>),
}

/// The fields of `KubernetesWorkerJobConfiguration` that shape the Job.
#[derive(Debug, Clone)]
pub struct JobConfiguration {
    pub env: Env,
    pub labels: Map<String, Value>,
    pub annotations: Map<String, Value>,
    /// The name as rendered: a string as a rule, but `{{ ctx.flow_run.run_count }}` renders to a
    /// number (see `prepare::flow_run_name`).
    pub name: Value,
    pub job_manifest: Value,
}

/// The pool's template, or the stock one when the pool has none.
pub fn base_template(pool_template: &str) -> Result<Value, Error> {
    let template: Value = serde_json::from_str(pool_template).map_err(|e| {
        fault(format!(
            "the work pool's base job template is not JSON: {e}"
        ))
    })?;
    let has_configuration = template
        .get("job_configuration")
        .is_some_and(|c| !c.is_null());
    if has_configuration {
        Ok(template)
    } else {
        Ok(serde_json::from_str(STOCK_TEMPLATE).expect("the embedded stock template is JSON"))
    }
}

/// Renders `template` with `values` (the merged job variables).
pub fn from_template_and_values(
    template: &Value,
    values: &Map<String, Value>,
) -> Result<JobConfiguration, Error> {
    let mut base_config = template
        .get("job_configuration")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| fault("the base job template has no `job_configuration` object"))?;
    let mut variables = variable_defaults(template);

    // Pool-level env defaults merge into a dict env of the configuration before overrides.
    if let Some(default_env) = variables.get("env").filter(|e| truthy(e)).cloned() {
        let merged = match (base_config.get("env"), &default_env) {
            (Some(Value::Object(base)), Value::Object(extra)) => {
                Value::Object(merge_maps(base, extra))
            }
            _ => default_env,
        };
        base_config.insert("env".into(), merged);
    }

    for (key, value) in nest_dotted_keys(values) {
        variables.insert(key, value);
    }

    match (base_config.get("env"), variables.get("env")) {
        (Some(Value::Object(base)), Some(Value::Object(env))) if !env.is_empty() => {
            let merged = merge_maps(base, env);
            base_config.insert("env".into(), Value::Object(merged));
        }
        // Python's `dict | list`: Prefect's worker fails here too.
        (Some(Value::Object(_)), Some(Value::Array(env))) if !env.is_empty() => {
            return Err(fault(
                "the `env` job variable is a list, but the work pool's default env (or its template's env) is an object, and the two cannot be merged; give `env` as an object of NAME: value",
            ));
        }
        _ => {}
    }

    let populated =
        apply_values(&Value::Object(base_config), &variables).unwrap_or_else(|| json!({}));
    JobConfiguration::from_populated(populated)
}

/// Variables' non-null defaults from the template's JSON schema.
fn variable_defaults(template: &Value) -> Map<String, Value> {
    template
        .pointer("/variables/properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .filter_map(|(name, schema)| {
                    let default = schema.get("default").filter(|d| !d.is_null())?;
                    Some((name.clone(), default.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `{"env.FOO": "1", "env": {"BAR": "2"}}` → `{"env": {"FOO": "1", "BAR": "2"}}`; the nested form
/// wins over the dotted one.
fn nest_dotted_keys(values: &Map<String, Value>) -> Map<String, Value> {
    let mut nested = Map::new();
    for (key, value) in values.iter().filter(|(k, _)| k.contains('.')) {
        set_in(&mut nested, key, value.clone());
    }
    for (key, value) in values.iter().filter(|(k, _)| !k.contains('.')) {
        match (nested.get(key), value) {
            (Some(Value::Object(dotted)), Value::Object(plain)) => {
                let merged = deep_merge(dotted, plain);
                nested.insert(key.clone(), Value::Object(merged));
            }
            _ => {
                nested.insert(key.clone(), value.clone());
            }
        }
    }
    nested
}

fn set_in(map: &mut Map<String, Value>, dotted: &str, value: Value) {
    let mut keys: Vec<&str> = dotted.split('.').collect();
    let last = keys.pop().unwrap_or_default();
    let mut here = map;
    for key in keys {
        let slot = here.entry(key.to_string()).or_insert_with(|| json!({}));
        if !slot.is_object() {
            *slot = json!({});
        }
        here = slot.as_object_mut().expect("just made an object");
    }
    here.insert(last.to_string(), value);
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

/// Python's `a | b` on dicts.
fn merge_maps(a: &Map<String, Value>, b: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = a.clone();
    merged.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

/// Python truthiness of a JSON value.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl JobConfiguration {
    /// The pydantic model's coercions and its `_validate_job_manifest` check.
    fn from_populated(populated: Value) -> Result<Self, Error> {
        let Value::Object(mut config) = populated else {
            return Err(fault("the rendered job configuration is not an object"));
        };
        check_scalars(&config)?;
        let namespace = match config.remove("namespace") {
            None => "default".to_string(),
            Some(Value::String(ns)) => ns,
            Some(other) => {
                return Err(fault(format!(
                    "job configuration `namespace` must be a string, got {other}"
                )));
            }
        };
        let env = match config.remove("env") {
            None => Env::Map(Map::new()),
            Some(Value::Object(map)) => Env::Map(
                map.into_iter()
                    .map(|(k, v)| {
                        let v = if v.is_null() {
                            Value::Null
                        } else {
                            Value::String(python_str(&v))
                        };
                        (k, v)
                    })
                    .collect(),
            ),
            Some(Value::Array(items)) => Env::List(items),
            Some(other) => {
                return Err(fault(format!(
                    "job configuration `env` must be an object or a list, got {other}"
                )));
            }
        };
        let mut job_manifest = config
            .remove("job_manifest")
            .filter(Value::is_object)
            .ok_or_else(|| fault("job configuration `job_manifest` is missing or not an object"))?;
        validate_manifest(&mut job_manifest, &namespace)?;
        Ok(JobConfiguration {
            name: config.remove("name").unwrap_or(Value::Null),
            labels: string_map(config.remove("labels"), "labels")?,
            annotations: string_map(config.remove("annotations"), "annotations")?,
            env,
            job_manifest,
        })
    }
}

/// The model's other fields, as pydantic checks them (leniently: `"2"` is an int): the agent
/// does not use them, but Prefect's worker fails a run whose configuration has them wrong.
fn check_scalars(config: &Map<String, Value>) -> Result<(), Error> {
    let integer = |v: &Value| {
        v.as_i64().is_some()
            || v.as_f64().is_some_and(|f| f.fract() == 0.0)
            || v.as_str().is_some_and(|s| s.trim().parse::<i64>().is_ok())
    };
    let boolean = |v: &Value| {
        v.is_boolean()
            || v.as_i64().is_some_and(|n| n == 0 || n == 1)
            || v.as_str().is_some_and(|s| {
                matches!(
                    s.to_ascii_lowercase().as_str(),
                    "0" | "1"
                        | "true"
                        | "false"
                        | "yes"
                        | "no"
                        | "on"
                        | "off"
                        | "t"
                        | "f"
                        | "y"
                        | "n"
                )
            })
    };
    type Check<'a> = (&'a str, &'a dyn Fn(&Value) -> bool, &'a str);
    let checks: [Check; 4] = [
        ("pod_watch_timeout_seconds", &integer, "an integer"),
        (
            "job_watch_timeout_seconds",
            &|v| v.is_null() || integer(v),
            "an integer or null",
        ),
        ("stream_output", &boolean, "a boolean"),
        (
            "cluster_config",
            &|v| v.is_null() || v.is_object(),
            "an object or null",
        ),
    ];
    for (field, valid, what) in checks {
        if let Some(value) = config.get(field)
            && !valid(value)
        {
            return Err(fault(format!(
                "job configuration `{field}` must be {what}, got {value}"
            )));
        }
    }
    Ok(())
}

fn string_map(value: Option<Value>, field: &str) -> Result<Map<String, Value>, Error> {
    match value {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => {
            if let Some((key, bad)) = map.iter().find(|(_, v)| !v.is_string()) {
                return Err(fault(format!(
                    "job configuration `{field}.{key}` must be a string, got {bad}"
                )));
            }
            Ok(map)
        }
        Some(other) => Err(fault(format!(
            "job configuration `{field}` must be an object, got {other}"
        ))),
    }
}

/// `_validate_job_manifest`: fills `metadata.{annotations,labels,namespace}` and checks the
/// fields the worker relies on. Unlike Prefect it does not require `parallelism`/`completions`
/// inside the pod spec: they are not pod fields, and this plugin removes them.
fn validate_manifest(manifest: &mut Value, namespace: &str) -> Result<(), Error> {
    let metadata = manifest
        .as_object_mut()
        .expect("checked to be an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    let metadata = metadata
        .as_object_mut()
        .ok_or_else(|| fault("job_manifest.metadata must be an object"))?;
    metadata.entry("annotations").or_insert_with(|| json!({}));
    metadata.entry("labels").or_insert_with(|| json!({}));
    metadata
        .entry("namespace")
        .or_insert_with(|| json!(namespace));

    let required: [(&str, Option<Value>); 5] = [
        ("/apiVersion", Some(json!("batch/v1"))),
        ("/kind", Some(json!("Job"))),
        ("/spec/template/spec/restartPolicy", Some(json!("Never"))),
        ("/spec/template/spec/containers/0", None),
        (
            "/spec/template/spec/containers/0/name",
            Some(json!("prefect-job")),
        ),
    ];
    let mut missing = Vec::new();
    let mut incompatible = Vec::new();
    for (path, expected) in required {
        match (manifest.pointer(path), expected) {
            (None, _) => missing.push(path.to_string()),
            (Some(found), Some(expected)) if *found != expected => incompatible.push(format!(
                "{path} must have value {}",
                python_str_repr(&expected)
            )),
            _ => {}
        }
    }
    if !missing.is_empty() {
        return Err(fault(format!(
            "Job is missing required attributes at the following paths: {}",
            missing.join(", ")
        )));
    }
    if !incompatible.is_empty() {
        return Err(fault(format!(
            "Job has incompatible values for the following attributes: {}",
            incompatible.join(", ")
        )));
    }
    Ok(())
}

fn python_str_repr(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{s}'"),
        other => python_str(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock() -> Value {
        base_template("{}").unwrap()
    }

    #[test]
    fn an_empty_pool_template_means_the_stock_one() {
        assert!(stock().pointer("/job_configuration/job_manifest").is_some());
    }

    #[test]
    fn dotted_variables_nest_and_the_nested_form_wins() {
        let values = json!({"env.A": "dotted", "env.B": "dotted", "env": {"B": "nested"}});
        let nested = nest_dotted_keys(values.as_object().unwrap());
        assert_eq!(
            Value::Object(nested),
            json!({"env": {"A": "dotted", "B": "nested"}})
        );
    }

    #[test]
    fn defaults_fill_what_variables_leave_out() {
        let config = from_template_and_values(&stock(), &Map::new()).unwrap();
        assert_eq!(
            config.job_manifest.pointer("/metadata/namespace"),
            Some(&json!("default"))
        );
        assert_eq!(
            config.job_manifest.pointer("/spec/backoffLimit"),
            Some(&json!(0))
        );
        assert_eq!(
            config
                .job_manifest
                .pointer("/spec/template/spec/containers/0/imagePullPolicy"),
            Some(&json!("IfNotPresent"))
        );
        assert_eq!(
            config.job_manifest.pointer("/spec/ttlSecondsAfterFinished"),
            None
        );
    }

    #[test]
    fn a_renamed_container_is_refused_as_prefect_refuses_it() {
        let mut template = stock();
        template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
            [0]["name"] = json!("main");
        let Err(Error::Fault(message)) = from_template_and_values(&template, &Map::new()) else {
            panic!("expected a fault")
        };
        assert_eq!(
            message,
            "Job has incompatible values for the following attributes: \
             /spec/template/spec/containers/0/name must have value 'prefect-job'"
        );
    }
}
