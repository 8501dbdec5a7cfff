//! Creates the Job of a claim. The name is deterministic per claim, so a create retried after a
//! lost answer meets its own Job: a 409 for a Job with the same flow run and claim labels is
//! adopted, never duplicated; a 409 for anything else is an error. API errors come back typed,
//! with a hint for what the operator can do (RBAC, namespace, the invalid field).

use super::env_secret;
use crate::job::{CLAIM_LABEL, FLOW_RUN_LABEL};
use crate::metrics::{Api as MetricsApi, Metrics};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::Value;
use std::sync::Arc;

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
    #[error(
        "cannot create the Secret {namespace}/{name} for the Job's env (--env-secret): {detail}. Resolution: grant `create`, `get`, `patch` and `delete` on `secrets` in that namespace (`agent install --rbac --env-secret` does), or drop --env-secret"
    )]
    EnvSecret {
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
    env_secret: bool,
    metrics: Arc<Metrics>,
}

impl Submitter {
    pub fn new(client: kube::Client, metrics: Arc<Metrics>) -> Self {
        Submitter {
            client,
            env_secret: false,
            metrics,
        }
    }

    /// With `on`, every Job's plain env values go into a Secret the Job owns (`--env-secret`).
    pub fn with_env_secret(mut self, on: bool) -> Self {
        self.env_secret = on;
        self
    }

    /// Creates `job` (already validated), or adopts the one this claim made before.
    pub async fn create(&self, job: &Value) -> Result<Submitted, SubmitError> {
        if !self.env_secret {
            return self.create_job(job).await.map(|(submitted, _)| submitted);
        }
        // Only --env-secret rewrites the Job, so only it pays for a copy.
        let mut job = job.clone();
        let Some(secret) = env_secret::split(&mut job) else {
            return self.create_job(&job).await.map(|(submitted, _)| submitted);
        };
        let (namespace, name) = place(&job);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let secret_error = |detail: String| SubmitError::EnvSecret {
            namespace: namespace.clone(),
            name: name.clone(),
            detail,
        };
        self.create_env_secret(&secrets, &secret)
            .await
            .map_err(secret_error)?;
        match self.create_job(&job).await {
            Ok((submitted, uid)) => {
                let patch = env_secret::owned_by_job(&name, uid.as_deref().unwrap_or_default());
                if let Err(e) = secrets
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    // The run goes on; only the clean-up with the Job is lost.
                    tracing::warn!(job = %name, "cannot make the Job own its env Secret; it will outlive the Job: {e}");
                }
                Ok(submitted)
            }
            Err(e) => {
                if let Err(delete) = secrets.delete(&name, &DeleteParams::default()).await {
                    tracing::warn!(job = %name, "cannot delete the env Secret of a Job that was not created: {delete}");
                }
                Err(e)
            }
        }
    }

    /// Creates the env Secret; one found under its name is taken when it is this claim's (a
    /// retried submission) and refused otherwise.
    async fn create_env_secret(&self, secrets: &Api<Secret>, secret: &Value) -> Result<(), String> {
        let typed: Secret = serde_json::from_value(secret.clone()).map_err(|e| e.to_string())?;
        match secrets.create(&PostParams::default(), &typed).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let name = typed.metadata.name.as_deref().unwrap_or_default();
                let found = secrets.get(name).await.map_err(|e| e.to_string())?;
                let found = serde_json::to_value(found).map_err(|e| e.to_string())?;
                if env_secret::is_this_claims(&found, secret) {
                    Ok(())
                } else {
                    Err("a Secret of that name exists and is not this run's; remove it or change the name prefix".into())
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Creates the Job; returns where it is and its uid.
    async fn create_job(&self, job: &Value) -> Result<(Submitted, Option<String>), SubmitError> {
        let (namespace, name) = place(job);
        let typed: Job =
            serde_json::from_value(job.clone()).map_err(|e| SubmitError::Decode(e.to_string()))?;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let mut attempt = 1;
        loop {
            match jobs.create(&PostParams::default(), &typed).await {
                Ok(created) => {
                    let submitted = Submitted {
                        namespace,
                        name,
                        adopted: false,
                    };
                    return Ok((submitted, created.metadata.uid));
                }
                // A create that landed before its answer was lost meets itself here.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return self.adopt(&jobs, job, namespace, name).await;
                }
                Err(kube::Error::Api(status)) => {
                    self.metrics.api_error(MetricsApi::kubernetes, status.code);
                    return Err(api_error(namespace, name, &status));
                }
                // Transport errors: the name is the claim's, so trying again cannot duplicate.
                Err(other) if attempt < CREATE_ATTEMPTS => {
                    self.metrics.api_error(MetricsApi::kubernetes, "transport");
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
    ) -> Result<(Submitted, Option<String>), SubmitError> {
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
            let submitted = Submitted {
                namespace,
                name,
                adopted: true,
            };
            Ok((submitted, existing.metadata.uid))
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

/// The Job's namespace and name.
fn place(job: &Value) -> (String, String) {
    let text = |pointer: &str, default: &str| {
        job.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    (
        text("/metadata/namespace", "default"),
        text("/metadata/name", ""),
    )
}

fn api_error(namespace: String, name: String, status: &kube::core::Status) -> SubmitError {
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
