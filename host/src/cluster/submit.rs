//! Creates the Job of a claim. The name is deterministic per claim, so a create retried after a
//! lost answer meets its own Job: a 409 for a Job with the same flow run and claim labels is
//! adopted, never duplicated; a 409 for anything else is an error. That same name makes every
//! retry safe, so what may get better (5xx, 429, no answer) is tried again for
//! `CREATE_PATIENCE` before the run is reported CRASHED. API errors come back typed, with a
//! hint for what the operator can do (RBAC, namespace, the invalid field).

use super::env_secret;
use super::errors::{describe, is_transient};
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

/// How long creating a Job keeps trying while Kubernetes answers 5xx or 429, or not at all.
const CREATE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(8);

pub struct Submitter {
    client: kube::Client,
    env_secret: bool,
    metrics: Arc<Metrics>,
    reachability: Arc<super::Reachability>,
}

impl Submitter {
    pub fn new(
        client: kube::Client,
        metrics: Arc<Metrics>,
        reachability: Arc<super::Reachability>,
    ) -> Self {
        Submitter {
            client,
            env_secret: false,
            metrics,
            reachability,
        }
    }

    /// With `on`, every Job's plain env values go into a Secret the Job owns (`--env-secret`).
    pub fn with_env_secret(mut self, on: bool) -> Self {
        self.env_secret = on;
        self
    }

    /// The Job of flow run `run`'s claim `claim` (its tracking labels), in `namespaces` (all
    /// when empty), if one was created.
    pub async fn find_claim_job(
        &self,
        run: &str,
        claim: &str,
        namespaces: &[String],
    ) -> Result<Option<Submitted>, String> {
        let selector = format!("{FLOW_RUN_LABEL}={run},{CLAIM_LABEL}={claim}");
        let scopes: Vec<Api<Job>> = if namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        };
        for jobs in scopes {
            let list = jobs
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .map_err(|e| describe(&e))?;
            if let Some(job) = list.items.into_iter().next() {
                return Ok(Some(Submitted {
                    namespace: job.metadata.namespace.unwrap_or_default(),
                    name: job.metadata.name.unwrap_or_default(),
                    adopted: true,
                }));
            }
        }
        Ok(None)
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
                    tracing::warn!(job = %name, "cannot make the Job own its env Secret; it will outlive the Job: {}", describe(&e));
                }
                Ok(submitted)
            }
            Err(e) => {
                if let Err(delete) = secrets.delete(&name, &DeleteParams::default()).await {
                    tracing::warn!(job = %name, "cannot delete the env Secret of a Job that was not created: {}", describe(&delete));
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
                let found = secrets.get(name).await.map_err(|e| describe(&e))?;
                let found = serde_json::to_value(found).map_err(|e| e.to_string())?;
                if env_secret::is_this_claims(&found, secret) {
                    Ok(())
                } else {
                    Err("a Secret of that name exists and is not this run's; remove it or change the name prefix".into())
                }
            }
            Err(e) => Err(describe(&e)),
        }
    }

    /// Creates the Job; returns where it is and its uid.
    async fn create_job(&self, job: &Value) -> Result<(Submitted, Option<String>), SubmitError> {
        let (namespace, name) = place(job);
        let typed: Job =
            serde_json::from_value(job.clone()).map_err(|e| SubmitError::Decode(e.to_string()))?;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let started = std::time::Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let retry_reason = match jobs.create(&PostParams::default(), &typed).await {
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
                    match self.adopt(&jobs, job, &namespace, &name).await? {
                        Some(adopted) => return Ok(adopted),
                        // Deleted between the conflict and the read: create it again.
                        None => format!(
                            "a Job {namespace}/{name} was there, then gone before it could be read"
                        ),
                    }
                }
                Err(error) if is_transient(&error) => {
                    let code = match &error {
                        kube::Error::Api(status) => status.code.to_string(),
                        _ => {
                            // No answer at all: stop claiming until it answers again.
                            self.reachability.mark_down(&describe(&error));
                            "transport".to_string()
                        }
                    };
                    self.metrics.api_error(MetricsApi::kubernetes, code);
                    describe(&error)
                }
                Err(kube::Error::Api(status)) => {
                    self.metrics.api_error(MetricsApi::kubernetes, status.code);
                    return Err(api_error(namespace, name, &status));
                }
                Err(error) => {
                    return Err(SubmitError::Unreachable {
                        namespace,
                        name,
                        detail: describe(&error),
                    });
                }
            };
            if started.elapsed() >= CREATE_PATIENCE {
                return Err(SubmitError::Unreachable {
                    namespace,
                    name,
                    detail: format!(
                        "{retry_reason} (still after {}s of retries)",
                        CREATE_PATIENCE.as_secs()
                    ),
                });
            }
            // The name is the claim's, so trying again cannot make a second Job.
            tracing::debug!(job = %name, "creating the Job failed, retrying: {retry_reason}");
            tokio::time::sleep(backoff.mul_f64(fastrand::f64())).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The Job of that name, when it is this claim's (a retried create); `None` when it is not
    /// there any more; an error when it belongs to someone else.
    async fn adopt(
        &self,
        jobs: &Api<Job>,
        job: &Value,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(Submitted, Option<String>)>, SubmitError> {
        let existing = match jobs.get_opt(name).await {
            Ok(Some(existing)) => existing,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(SubmitError::Unreachable {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    detail: format!(
                        "the name was taken and the Job of that name could not be read: {}",
                        describe(&e)
                    ),
                });
            }
        };
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
                namespace: namespace.to_string(),
                name: name.to_string(),
                adopted: true,
            };
            Ok(Some((submitted, existing.metadata.uid)))
        } else {
            Err(SubmitError::NameTaken {
                namespace: namespace.to_string(),
                name: name.to_string(),
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
