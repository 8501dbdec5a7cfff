//! Creates the Job of a claim. The name is deterministic per claim, so a create retried after a
//! lost answer meets its own Job: a 409 for a Job with the same flow run and claim labels is
//! adopted, never duplicated; a 409 for anything else is an error. API errors come back typed,
//! with a hint for what the operator can do (RBAC, namespace, the invalid field).

use crate::job::{CLAIM_LABEL, FLOW_RUN_LABEL};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use serde_json::Value;

/// Where the Job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub namespace: String,
    pub name: String,
    /// True when the Job already existed for this very claim (a retried create).
    pub adopted: bool,
}

impl Submitted {
    /// `namespace:job-name`, what Prefect records as the run's `infrastructure_pid`.
    pub fn infrastructure_pid(&self) -> String {
        format!("{}:{}", self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("Kubernetes refused the Job {namespace}/{name}: {message} ({reason}, {code}). {hint}")]
    Api {
        namespace: String,
        name: String,
        code: u16,
        reason: String,
        message: String,
        hint: String,
    },
    #[error(
        "a Job {namespace}/{name} already exists and is not this run's (flow run {found_run:?}, claim {found_claim:?}); remove it or change the name prefix"
    )]
    NameTaken {
        namespace: String,
        name: String,
        found_run: Option<String>,
        found_claim: Option<String>,
    },
    #[error("cannot reach Kubernetes to create the Job {namespace}/{name}: {detail}")]
    Unreachable {
        namespace: String,
        name: String,
        detail: String,
    },
    #[error("the Job is not a valid batch/v1 Job for the Kubernetes client: {0}")]
    Decode(String),
}

/// Tries at creating a Job when the API server cannot be reached (0.5 s, 1 s, 2 s, 4 s apart).
const CREATE_ATTEMPTS: u32 = 5;

pub struct Submitter {
    client: kube::Client,
}

impl Submitter {
    pub fn new(client: kube::Client) -> Self {
        Submitter { client }
    }

    /// Creates `job` (already validated), or adopts the one this claim made before.
    pub async fn create(&self, job: &Value) -> Result<Submitted, SubmitError> {
        let namespace = job
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let name = job
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let typed: Job =
            serde_json::from_value(job.clone()).map_err(|e| SubmitError::Decode(e.to_string()))?;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let mut attempt = 1;
        loop {
            match jobs.create(&PostParams::default(), &typed).await {
                Ok(_) => {
                    return Ok(Submitted {
                        namespace,
                        name,
                        adopted: false,
                    });
                }
                // A create that landed before its answer was lost meets itself here.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return self.adopt(&jobs, job, namespace, name).await;
                }
                Err(kube::Error::Api(status)) => return Err(api_error(namespace, name, &status)),
                // Transport errors: the name is the claim's, so trying again cannot duplicate.
                Err(other) if attempt < CREATE_ATTEMPTS => {
                    crate::metrics::global().api_error("kubernetes", "transport");
                    tracing::debug!(job = %name, attempt, "creating the Job failed, retrying: {other}");
                    tokio::time::sleep(std::time::Duration::from_millis(250 * 2u64.pow(attempt)))
                        .await;
                    attempt += 1;
                }
                Err(other) => {
                    return Err(SubmitError::Unreachable {
                        namespace,
                        name,
                        detail: other.to_string(),
                    });
                }
            }
        }
    }

    async fn adopt(
        &self,
        jobs: &Api<Job>,
        job: &Value,
        namespace: String,
        name: String,
    ) -> Result<Submitted, SubmitError> {
        let existing = jobs
            .get(&name)
            .await
            .map_err(|e| SubmitError::Unreachable {
                namespace: namespace.clone(),
                name: name.clone(),
                detail: e.to_string(),
            })?;
        let label = |key: &str| {
            existing
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(key))
                .cloned()
        };
        let wanted = |key: &str| {
            job.pointer(&format!("/metadata/labels/{}", key.replace('/', "~1")))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (found_run, found_claim) = (label(FLOW_RUN_LABEL), label(CLAIM_LABEL));
        if found_run.is_some()
            && found_run == wanted(FLOW_RUN_LABEL)
            && found_claim == wanted(CLAIM_LABEL)
        {
            Ok(Submitted {
                namespace,
                name,
                adopted: true,
            })
        } else {
            Err(SubmitError::NameTaken {
                namespace,
                name,
                found_run,
                found_claim,
            })
        }
    }
}

fn api_error(namespace: String, name: String, status: &kube::core::Status) -> SubmitError {
    crate::metrics::global().api_error("kubernetes", status.code);
    let hint = match status.code {
        403 => format!(
            "The agent's identity may not create Jobs in namespace {namespace:?}: grant `create` on `jobs` (API group `batch`) there, for example with the Role of `agent install --rbac`."
        ),
        404 => format!(
            "Namespace {namespace:?} may not exist: create it, or point the agent (--namespace) or the deployment (`namespace` job variable) at one that does."
        ),
        422 => {
            let fields: Vec<String> = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|c| c.field.clone())
                .collect();
            if fields.is_empty() {
                "The API server found the Job invalid.".to_string()
            } else {
                format!(
                    "Fix the field{} {} in the work pool's template, the job variables or the plugin that sets it.",
                    if fields.len() == 1 { "" } else { "s" },
                    fields.join(", ")
                )
            }
        }
        _ => "See the Kubernetes API server's message.".to_string(),
    };
    SubmitError::Api {
        namespace,
        name,
        code: status.code,
        reason: status.reason.clone(),
        message: status.message.clone(),
        hint,
    }
}
