//! Admission as the API server does it: decode against the strict schema of the kind (unknown
//! fields per `fieldValidation`, wrong types → 400), then the rules the schema cannot express
//! (names, labels, containers, restart policy, quantities, immutable fields → 422).
//!
//! The agent checks names, labels and quantities too (`host/src/job/invariants.rs`,
//! `plugins/sdk/src/quantity.rs`). The two are kept apart on purpose: the emulator stands in
//! for the API server as an independent check of the agent, so it must not share the agent's
//! code, or its bugs. Do not merge them.

use crate::kinds::{KINDS, Kind};
use crate::status::{ApiError, Cause};
use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

macro_rules! schema_file {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                "../../../host/schemas/kubernetes/v1.37.0-local-strict/",
                $name,
                ".json"
            )),
        )
    };
}

const SCHEMAS: &[(&str, &str)] = &[
    schema_file!("job-batch-v1"),
    schema_file!("pod-v1"),
    schema_file!("event-v1"),
    schema_file!("event-events-v1"),
    schema_file!("secret-v1"),
    schema_file!("configmap-v1"),
    schema_file!("serviceaccount-v1"),
    schema_file!("namespace-v1"),
    schema_file!("lease-coordination-v1"),
    schema_file!("deployment-apps-v1"),
    schema_file!("role-rbac-v1"),
    schema_file!("rolebinding-rbac-v1"),
    schema_file!("clusterrole-rbac-v1"),
    schema_file!("clusterrolebinding-rbac-v1"),
];
const DEFINITIONS: &str =
    include_str!("../../../host/schemas/kubernetes/v1.37.0-local-strict/_definitions.json");

/// `?fieldValidation=`: what to do with fields the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        match text {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}; expected one of Ignore, Warn, Strict"
            ))),
        }
    }
}

fn validators() -> &'static HashMap<&'static str, Validator> {
    static VALIDATORS: OnceLock<HashMap<&'static str, Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let definitions: Value = serde_json::from_str(DEFINITIONS).expect("definitions are JSON");
        SCHEMAS
            .iter()
            .map(|(name, text)| {
                let mut schema: Value =
                    serde_json::from_str(&text.replace("/api/_definitions.json#", "#"))
                        .expect("schema is JSON");
                schema["$defs"] = definitions["$defs"].clone();
                (
                    *name,
                    jsonschema::options()
                        .build(&schema)
                        .expect("schema compiles"),
                )
            })
            .collect()
    })
}

/// Compiles every schema now rather than on the first request.
pub fn warm_up() {
    let _ = validators();
    debug_assert!(KINDS.iter().all(|k| validators().contains_key(k.schema)));
}

/// Checks `object` for `kind`; prunes unknown fields unless Strict; returns warnings.
pub fn admit(
    kind: &Kind,
    object: &mut Value,
    mode: FieldValidation,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut unknown: Vec<String> = Vec::new();
    let mut decode: Vec<String> = Vec::new();
    let mut causes: Vec<Cause> = Vec::new();
    for error in validators()[kind.schema].iter_errors(object) {
        let pointer = error.instance_path().to_string();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                unknown.extend(unexpected.iter().map(|field| join_pointer(&pointer, field)));
            }
            ValidationErrorKind::Type { kind: expected } => decode.push(format!(
                "json: cannot unmarshal {} into Go struct field {} of type {}",
                json_type(error.instance()),
                dotted(&pointer),
                go_type(&format!("{expected:?}"))
            )),
            ValidationErrorKind::Required { property } => causes.push(Cause::required(dotted(
                &join_pointer(&pointer, property.as_str().unwrap_or("")),
            ))),
            ValidationErrorKind::Enum { options } => {
                let supported: Vec<&str> = options
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                causes.push(Cause::unsupported(
                    dotted(&pointer),
                    error.instance(),
                    &supported,
                ));
            }
            _ => causes.push(Cause::invalid(
                dotted(&pointer),
                error.instance(),
                &error.to_string(),
            )),
        }
    }
    if !decode.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {}",
            kind.kind,
            kind.version,
            kind.kind,
            decode.join(", ")
        )));
    }
    unknown.sort();
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let described: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{}\"", dotted(p).trim_start_matches('.')))
            .collect();
        match mode {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    described.join(", ")
                )));
            }
            FieldValidation::Warn => warnings = described,
            FieldValidation::Ignore => {}
        }
        for pointer in unknown.iter().rev() {
            remove_at(object, pointer);
        }
    }
    causes.extend(semantic_rules(kind, object, old));
    if causes.is_empty() {
        Ok(warnings)
    } else {
        Err(ApiError::invalid(&kind.qualified_kind(), &name, causes))
    }
}

fn join_pointer(pointer: &str, field: &str) -> String {
    format!("{pointer}/{}", field.replace('~', "~0").replace('/', "~1"))
}

fn remove_at(object: &mut Value, pointer: &str) {
    if let Some((parent, field)) = pointer.rsplit_once('/') {
        let field = field.replace("~1", "/").replace("~0", "~");
        if let Some(map) = object.pointer_mut(parent).and_then(Value::as_object_mut) {
            map.remove(&field);
        }
    }
}

/// `/spec/containers/0/name` → `spec.containers[0].name`.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn go_type(expected: &str) -> &'static str {
    let expected = expected.to_ascii_lowercase();
    if expected.contains("string") {
        "string"
    } else if expected.contains("integer") {
        "int32"
    } else if expected.contains("boolean") {
        "bool"
    } else if expected.contains("array") {
        "[]"
    } else {
        "object"
    }
}

/// The rules of the API server's validation that the schema cannot say.
fn semantic_rules(kind: &Kind, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name_limit = if matches!(kind.plural, "namespaces" | "jobs") {
        63
    } else {
        253
    };
    if name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    } else if let Some(why) = dns_name_problem(name, name_limit) {
        causes.push(Cause::invalid("metadata.name", &json!(name), &why));
    }
    for (key, value) in object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(why) = label_key_problem(key) {
            causes.push(Cause::invalid("metadata.labels", &json!(key), &why));
        }
        if let Some(why) = value.as_str().and_then(label_value_problem) {
            causes.push(Cause::invalid("metadata.labels", value, &why));
        }
    }
    match kind.plural {
        "jobs" => {
            causes.extend(pod_spec_rules(
                object.pointer("/spec/template/spec"),
                "spec.template.spec",
                true,
            ));
            if let Some(old) = old {
                for (field, pointer) in [
                    ("spec.template", "/spec/template"),
                    ("spec.selector", "/spec/selector"),
                    ("spec.completions", "/spec/completions"),
                ] {
                    if old.pointer(pointer) != object.pointer(pointer) {
                        causes.push(Cause::immutable(field));
                    }
                }
            }
        }
        "pods" => causes.extend(pod_spec_rules(object.pointer("/spec"), "spec", false)),
        _ => {}
    }
    causes
}

fn pod_spec_rules(spec: Option<&Value>, at: &str, for_job: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(spec) = spec else {
        causes.push(Cause::required(format!("{at}.containers")));
        return causes;
    };
    if for_job {
        match spec.get("restartPolicy").and_then(Value::as_str) {
            Some("Never" | "OnFailure") => {}
            None => causes.push(Cause {
                reason: "FieldValueRequired",
                field: format!("{at}.restartPolicy"),
                message: "Required value: valid values: \"OnFailure\", \"Never\"".into(),
            }),
            Some(other) => causes.push(Cause::unsupported(
                format!("{at}.restartPolicy"),
                &json!(other),
                &["OnFailure", "Never"],
            )),
        }
    }
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        causes.push(Cause::required(format!("{at}.containers")));
    }
    for (i, container) in containers.into_iter().flatten().enumerate() {
        let here = format!("{at}.containers[{i}]");
        match container.get("name").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(format!("{here}.name"))),
            Some(name) => {
                if let Some(why) = dns_label_problem(name) {
                    causes.push(Cause::invalid(format!("{here}.name"), &json!(name), &why));
                }
            }
        }
        if container
            .get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("{here}.image")));
        }
        for section in ["limits", "requests"] {
            for (resource, quantity) in container
                .pointer(&format!("/resources/{section}"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let text = quantity
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| quantity.to_string());
                if parse_quantity(&text).is_none() {
                    causes.push(Cause::invalid(
                        format!("{here}.resources.{section}[{resource}]"),
                        &json!(text),
                        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    ));
                }
            }
        }
    }
    causes
}

const LOWERCASE_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LOWERCASE_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

pub fn dns_label_problem(name: &str) -> Option<String> {
    if name.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| LOWERCASE_LABEL.into())
}

fn dns_name_problem(name: &str, limit: usize) -> Option<String> {
    if name.len() > limit {
        return Some(format!("must be no more than {limit} characters"));
    }
    let ok = name
        .split('.')
        .all(|part| !part.is_empty() && dns_label_problem(part).is_none());
    (!ok).then(|| {
        if limit == 63 {
            LOWERCASE_LABEL.into()
        } else {
            LOWERCASE_SUBDOMAIN.into()
        }
    })
}

fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into())
}

fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || dns_name_problem(prefix, 253).is_some())
    {
        return Some(format!("prefix part {LOWERCASE_SUBDOMAIN}"));
    }
    if name.is_empty() || name.len() > 63 {
        return Some("name part must be non-empty and no more than 63 characters".into());
    }
    label_value_problem(name).map(|_| "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into())
}

/// A Kubernetes quantity in base units, or `None` when it does not parse.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => 10f64.powi(exponent.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    Some(number * factor)
}

/// What the API server fills in on a new Job: defaults, and the controller's selector and
/// pod-template labels.
pub fn default_job(job: &mut Value) {
    let uid = job["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = job["spec"].as_object_mut().expect("validated");
    for (field, value) in [
        ("parallelism", json!(1)),
        ("completions", json!(1)),
        ("backoffLimit", json!(6)),
        ("suspend", json!(false)),
        ("completionMode", json!("NonIndexed")),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
    ] {
        spec.entry(field).or_insert(value);
    }
    spec.entry("selector")
        .or_insert_with(|| json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    let template_labels = job["spec"]["template"]["metadata"]
        .as_object_mut()
        .map(|m| m.entry("labels").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    let labels: &mut Map<String, Value> = match template_labels {
        Some(labels) => labels,
        None => {
            job["spec"]["template"]["metadata"] = json!({"labels": {}});
            job["spec"]["template"]["metadata"]["labels"]
                .as_object_mut()
                .expect("just made")
        }
    };
    for key in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
        labels.insert(key.into(), json!(uid));
    }
    for key in ["batch.kubernetes.io/job-name", "job-name"] {
        labels.insert(key.into(), json!(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::find;

    fn job() -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl", "namespace": "default"},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}})
    }

    fn jobs() -> &'static Kind {
        find("batch", "v1", "jobs").unwrap()
    }

    #[test]
    fn a_valid_job_is_admitted() {
        assert_eq!(
            admit(jobs(), &mut job(), FieldValidation::Strict, None),
            Ok(vec![])
        );
    }

    #[test]
    fn unknown_fields_follow_field_validation() {
        let mut strict = job();
        strict["spec"]["colour"] = json!("blue");
        let error = admit(jobs(), &mut strict, FieldValidation::Strict, None).unwrap_err();
        assert_eq!(
            (error.code, error.message.as_str()),
            (400, "strict decoding error: unknown field \"spec.colour\"")
        );

        let mut warn = strict.clone();
        assert_eq!(
            admit(jobs(), &mut warn, FieldValidation::Warn, None),
            Ok(vec!["unknown field \"spec.colour\"".to_string()])
        );
        assert!(
            warn["spec"].get("colour").is_none(),
            "the unknown field is dropped"
        );
    }

    #[test]
    fn a_long_name_a_bad_label_and_a_missing_image_are_invalid() {
        let mut bad = job();
        bad["metadata"]["name"] = json!("x".repeat(70));
        bad["metadata"]["labels"] = json!({"ok": "-bad"});
        bad["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("image");
        let error = admit(jobs(), &mut bad, FieldValidation::Strict, None).unwrap_err();
        assert_eq!(error.code, 422);
        let fields: Vec<&str> = error.details.as_ref().unwrap()["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "metadata.labels",
                "spec.template.spec.containers[0].image"
            ]
        );
        assert!(
            error.message.starts_with(&format!(
                "Job.batch \"{}\" is invalid: [metadata.name: Invalid value: ",
                "x".repeat(70)
            )),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_job_template_cannot_change() {
        let old = job();
        let mut new = job();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        let error = admit(jobs(), &mut new, FieldValidation::Strict, Some(&old)).unwrap_err();
        assert_eq!(
            error.message,
            "Job.batch \"etl\" is invalid: spec.template: field is immutable"
        );
    }

    #[test]
    fn a_wrong_type_cannot_be_decoded() {
        let mut bad = job();
        bad["spec"]["backoffLimit"] = json!("six");
        let error = admit(jobs(), &mut bad, FieldValidation::Strict, None).unwrap_err();
        assert_eq!(error.code, 400);
        assert_eq!(
            error.message,
            "Job in version \"v1\" cannot be handled as a Job: json: cannot unmarshal string into Go struct field spec.backoffLimit of type int32"
        );
    }
}
