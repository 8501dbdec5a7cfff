//! The strict Kubernetes JSON schema of `batch/v1` Job (v1.37, every object closed with
//! `additionalProperties: false`, as the API server's `fieldValidation=Strict`), bundled once.

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;
use std::sync::OnceLock;

const JOB_SCHEMA: &str =
    include_str!("../../schemas/kubernetes/v1.37.0-local-strict/job-batch-v1.json");
const DEFINITIONS: &str =
    include_str!("../../schemas/kubernetes/v1.37.0-local-strict/_definitions.json");
/// Messages longer than this (they can quote large values) are shortened.
const MAX_MESSAGE: usize = 300;

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        // The kind refers to `/api/_definitions.json#/$defs/X`: make that `#/$defs/X` and carry
        // the definitions inside, so the schema stands alone.
        let mut schema: Value =
            serde_json::from_str(&JOB_SCHEMA.replace("/api/_definitions.json#", "#"))
                .expect("the Job schema is JSON");
        let definitions: Value =
            serde_json::from_str(DEFINITIONS).expect("the definitions are JSON");
        schema["$defs"] = definitions["$defs"].clone();
        jsonschema::options()
            .build(&schema)
            .expect("the bundled Job schema compiles")
    })
}

/// Every place `job` breaks the schema, as (JSON pointer, message), sorted by path.
pub fn job_problems(job: &Value) -> Vec<(String, String)> {
    let mut problems: Vec<(String, String)> = validator()
        .iter_errors(job)
        .map(|error| {
            let mut pointer = error.instance_path().to_string();
            // Point at the unknown field itself, not at the object that holds it.
            if let ValidationErrorKind::AdditionalProperties { unexpected } = error.kind()
                && let [field] = unexpected.as_slice()
            {
                pointer.push('/');
                pointer.push_str(&field.replace('~', "~0").replace('/', "~1"));
            }
            (
                pointer,
                crate::text::shorten(error.to_string(), MAX_MESSAGE),
            )
        })
        .collect();
    problems.sort();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job() -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "a"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}
        })
    }

    #[test]
    fn a_minimal_job_is_valid() {
        assert_eq!(job_problems(&job()), Vec::<(String, String)>::new());
    }

    #[test]
    fn unknown_fields_are_named_by_their_own_path() {
        let mut job = job();
        job["spec"]["template"]["spec"]["parallelism"] = json!(1);
        let problems = job_problems(&job);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "/spec/template/spec/parallelism");
        assert!(problems[0].1.contains("parallelism"), "{}", problems[0].1);
    }

    #[test]
    fn wrong_types_and_missing_fields_are_reported() {
        let mut job = job();
        job["spec"]["backoffLimit"] = json!("six");
        job["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("name");
        let paths: Vec<String> = job_problems(&job).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            ["/spec/backoffLimit", "/spec/template/spec/containers/0"]
        );
    }
}
