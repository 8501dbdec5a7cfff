//! The host's own rules for every Job: tracking labels it can watch by, a deterministic name,
//! the agent's namespace; and the API server's rules the schema cannot express (names, label
//! syntax, restart policy), so a bad Job fails here with its field path, not at creation.
//!
//! The Kubernetes API emulator of the tests checks the same rules with code of its own
//! (`tests/emulator/src/validate.rs`), on purpose: it is the independent check of this one.
//! Do not merge them.

use serde_json::{Map, Value, json};

/// Labels the host puts on every Job and its pods; the watcher and janitor select by them.
pub const FLOW_RUN_LABEL: &str = "prefect-agent/flow-run-id";
pub const CLAIM_LABEL: &str = "prefect-agent/claim";
pub const AGENT_LABEL: &str = "prefect-agent/agent";
pub const TRACKING_LABELS: [&str; 3] = [FLOW_RUN_LABEL, CLAIM_LABEL, AGENT_LABEL];
/// A Job name's length at most: the Job controller copies it into a pod label (a DNS label).
const MAX_NAME: usize = 63;

/// Who the Job belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    pub flow_run_id: String,
    /// The claim's job-name suffix: the same claim always gives the same Job name.
    pub claim: String,
    /// The agent's name, as a label value.
    pub agent: String,
    /// The namespaces this agent may create Jobs in (`--namespace`, `--job-namespace`); the
    /// first is where a Job that names none goes. Empty: any, and `default` for none.
    pub namespaces: Vec<String>,
}

impl Tracking {
    /// The tracking of the Job built for `request`, which may go to `namespaces`.
    pub fn for_request(request: &crate::plugins::Request, namespaces: Vec<String>) -> Self {
        Tracking {
            flow_run_id: request.flow_run.id.clone(),
            claim: request.job_name_suffix.clone(),
            agent: request.agent.name.clone(),
            namespaces,
        }
    }
}

type Problem = (String, String);

/// Where a Job's namespace is: a Job outside the agent's namespaces is refused there.
pub const NAMESPACE_POINTER: &str = "/metadata/namespace";

/// Sets the tracking labels, the namespace and a deterministic name.
pub(super) fn apply(job: &mut Value, tracking: &Tracking) -> Result<(), Problem> {
    let metadata = job
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            (
                "/metadata".to_string(),
                "the Job has no metadata object".to_string(),
            )
        })?;
    name_deterministically(metadata, &tracking.claim)?;
    let namespace = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty());
    let allowed = &tracking.namespaces;
    match namespace {
        None => {
            let default = allowed.first().map(String::as_str).unwrap_or("default");
            metadata.insert("namespace".into(), json!(default));
        }
        Some(ns) if !allowed.is_empty() && !allowed.iter().any(|a| a == ns) => {
            return Err((
                NAMESPACE_POINTER.into(),
                format!(
                    "is {ns:?}, but this agent creates Jobs only in {} (change the `namespace` job variable, or serve {ns:?} with --job-namespace)",
                    allowed
                        .iter()
                        .map(|a| format!("{a:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Some(_) => {}
    }
    let labels = [
        (FLOW_RUN_LABEL, tracking.flow_run_id.as_str()),
        (CLAIM_LABEL, tracking.claim.as_str()),
        (AGENT_LABEL, &label_value(&tracking.agent)),
    ];
    for pointer in ["/metadata", "/spec/template/metadata"] {
        let holder = ensure_object(job, pointer)?;
        let label_map = holder.entry("labels").or_insert_with(|| json!({}));
        let label_map = label_map.as_object_mut().ok_or_else(|| {
            (
                format!("{pointer}/labels"),
                "labels must be an object".to_string(),
            )
        })?;
        for (key, value) in labels {
            label_map.insert(key.into(), json!(value));
        }
    }
    Ok(())
}

/// A `generateName` cannot be retried safely (a lost answer means a second Job), so it becomes
/// `generateName + claim suffix`; a name the plugins chose is kept.
fn name_deterministically(metadata: &mut Map<String, Value>, claim: &str) -> Result<(), Problem> {
    let generate = metadata.remove("generateName");
    if metadata
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        return Ok(());
    }
    match generate.as_ref().and_then(Value::as_str) {
        Some(prefix) if !prefix.is_empty() => {
            // The API server cuts a long generateName to leave room for its random suffix (5
            // characters); the claim's suffix is 8.
            let room = MAX_NAME.saturating_sub(claim.len());
            let prefix: String = prefix.chars().take(room).collect();
            metadata.insert("name".into(), json!(format!("{prefix}{claim}")));
            Ok(())
        }
        _ => Err((
            "/metadata/name".into(),
            "the Job has neither a name nor a generateName".into(),
        )),
    }
}

/// `text` made into a valid label value: runs of other characters become `-`, ends trimmed,
/// at most 63 characters (`agent with spaces` → `agent-with-spaces`).
pub fn label_value(text: &str) -> String {
    let mut value = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || "_.".contains(c) {
            value.push(c);
        } else if !value.ends_with('-') {
            value.push('-');
        }
    }
    let value: String = value
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(63)
        .collect();
    value
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn ensure_object<'a>(
    job: &'a mut Value,
    pointer: &str,
) -> Result<&'a mut Map<String, Value>, Problem> {
    let mut here = job;
    for key in pointer.split('/').skip(1) {
        let map = here
            .as_object_mut()
            .ok_or_else(|| (pointer.to_string(), "must be an object".to_string()))?;
        here = map.entry(key).or_insert_with(|| json!({}));
    }
    here.as_object_mut()
        .ok_or_else(|| (pointer.to_string(), "must be an object".to_string()))
}

/// The API server's rules for a Job that its schema cannot say.
pub(super) fn api_server_rules(job: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(name) = job.pointer("/metadata/name").and_then(Value::as_str) {
        // The Job controller copies the name into a pod label, hence a DNS label (63).
        if let Some(why) = dns_label_problem(name) {
            problems.push(("/metadata/name".to_string(), why));
        }
    }
    for pointer in ["/metadata/labels", "/spec/template/metadata/labels"] {
        for (key, value) in job
            .pointer(pointer)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let at = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
            if let Some(why) = label_key_problem(key) {
                problems.push((at.clone(), why));
            }
            match value.as_str() {
                Some(text) => {
                    if let Some(why) = label_value_problem(text) {
                        problems.push((at, why));
                    }
                }
                None => problems.push((at, format!("label values must be strings, got {value}"))),
            }
        }
    }
    match job
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str)
    {
        Some("Never" | "OnFailure") => {}
        other => problems.push((
            "/spec/template/spec/restartPolicy".into(),
            format!("must be \"Never\" or \"OnFailure\" for a Job, got {other:?}"),
        )),
    }
    let containers = job
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        problems.push((
            "/spec/template/spec/containers".into(),
            "a Job needs at least one container".into(),
        ));
    }
    for (i, container) in containers.into_iter().flatten().enumerate() {
        if let Some(why) = container
            .get("name")
            .and_then(Value::as_str)
            .and_then(dns_label_problem)
        {
            problems.push((format!("/spec/template/spec/containers/{i}/name"), why));
        }
        if container
            .get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            problems.push((
                format!("/spec/template/spec/containers/{i}/image"),
                "Required value: a container needs an image".into(),
            ));
        }
    }
    problems
}

fn dns_label_problem(name: &str) -> Option<String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ok_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.len() > 63 {
        Some(format!(
            "{name:?}: must be no more than 63 characters (it has {})",
            name.len()
        ))
    } else if !(ok_chars && ok_ends) {
        Some(format!(
            "{name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        ))
    } else {
        None
    }
}

fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix
                .split('.')
                .all(|part| dns_label_problem(part).is_none());
        if !ok {
            return Some(format!(
                "{key:?}: the prefix must be a DNS-1123 subdomain (lowercase, '-', '.')"
            ));
        }
    }
    if name.is_empty() {
        return Some(format!("{key:?}: the name part must not be empty"));
    }
    label_value_problem(name).map(|why| format!("key {why}"))
}

fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let ok_ends = value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if value.len() > 63 {
        Some(format!("{value:?}: must be no more than 63 characters"))
    } else if !(ok_chars && ok_ends) {
        Some(format!(
            "{value:?}: must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracking() -> Tracking {
        Tracking {
            flow_run_id: "run-1".into(),
            claim: "abc123".into(),
            agent: "agent".into(),
            namespaces: vec!["jobs".into(), "etl".into()],
        }
    }

    #[test]
    fn generate_name_becomes_a_deterministic_name() {
        let mut job = json!({"metadata": {"generateName": "etl-"}, "spec": {"template": {}}});
        apply(&mut job, &tracking()).unwrap();
        assert_eq!(job["metadata"]["name"], "etl-abc123");
        assert!(job["metadata"].get("generateName").is_none());
        assert_eq!(job["metadata"]["namespace"], "jobs");
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"][FLOW_RUN_LABEL],
            "run-1"
        );
    }

    #[test]
    fn agent_names_become_valid_label_values() {
        assert_eq!(label_value("agent with spaces!"), "agent-with-spaces");
        assert_eq!(label_value(&"a".repeat(70)).len(), 63);
    }

    #[test]
    fn another_namespace_is_refused() {
        let mut job = json!({"metadata": {"name": "a", "namespace": "kube-system"}});
        let (path, message) = apply(&mut job, &tracking()).unwrap_err();
        assert_eq!(path, "/metadata/namespace");
        assert!(message.contains("only in \"jobs\", \"etl\""), "{message}");
        let mut job =
            json!({"metadata": {"name": "a", "namespace": "etl"}, "spec": {"template": {}}});
        apply(&mut job, &tracking()).unwrap();
        assert_eq!(
            job["metadata"]["namespace"], "etl",
            "any namespace of the list"
        );
    }

    #[test]
    fn the_api_servers_name_and_label_rules_hold() {
        let job = json!({
            "metadata": {"name": "x".repeat(70), "labels": {"bad key!": "v", "ok": "-bad-value"}},
            "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "Main"}]}}}
        });
        let paths: Vec<String> = api_server_rules(&job).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "/metadata/name",
                "/metadata/labels/bad key!",
                "/metadata/labels/ok",
                "/spec/template/spec/restartPolicy",
                "/spec/template/spec/containers/0/name",
                "/spec/template/spec/containers/0/image",
            ]
        );
    }
}
