//! Carrying out what `decide` chose: lines to the run's log, CRASHED and CANCELLED proposals,
//! Job deletions, and the reads a decision waits for. What was done is recorded in the
//! tracked Job, so that the next decision knows it.

use super::decide::{Action, Propagation, WatchOptions, job_of_pid};
use super::diagnose::diagnose;
use super::tracked::{ERROR, History, INFO, JobKey, Jobs, key_of_pod};
use crate::job::FLOW_RUN_LABEL;
use crate::metrics::{Api as MetricsApi, CrashReason, DeletionCause, Metrics};
use crate::prefect::models::FlowRun;
use crate::prefect::{PrefectClient, ProposalStatus, RunLogs};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PropagationPolicy};
use std::sync::Arc;
use std::time::Duration;

/// What the next step of a decision round is.
#[derive(Debug)]
pub enum Next {
    /// Nothing more to do until news comes.
    Done,
    /// Decide again (a read was made), with the run when it was read.
    Again(Option<Box<FlowRun>>),
}

/// The parts the actions use.
pub struct Actor {
    pub prefect: PrefectClient,
    pub client: kube::Client,
    pub logs: RunLogs,
    pub metrics: Arc<Metrics>,
    pub options: WatchOptions,
}

impl Actor {
    /// Performs `actions` for the Job `key` in order; stops at the first that could not be
    /// done (the next tick tries again).
    pub async fn perform(&self, jobs: &mut Jobs, key: &JobKey, actions: Vec<Action>) -> Next {
        let Some(run) = jobs.get(key).map(|t| t.run.clone()) else {
            return Next::Done;
        };
        let mut next = Next::Done;
        for action in actions {
            match action {
                Action::ReadLogHistory => {
                    let lines = match self.prefect.recent_log_messages(&run).await {
                        Ok(lines) => lines,
                        Err(e) => {
                            tracing::debug!(flow_run = %run, "cannot read the run's log: {e}");
                            Vec::new()
                        }
                    };
                    if let Some(tracked) = jobs.get_mut(key) {
                        tracked.history = History::Known(lines);
                    }
                    return Next::Again(None);
                }
                Action::ReadRun => match self.prefect.read_flow_run(&run).await {
                    Ok(fresh) => next = Next::Again(Some(Box::new(fresh))),
                    Err(e) => {
                        tracing::warn!(flow_run = %run, "cannot read the run before reporting on it: {e}");
                        return Next::Done;
                    }
                },
                Action::Tell {
                    once,
                    level,
                    message,
                } => {
                    tracing::info!(flow_run = %run, job = %format!("{}/{}", key.0, key.1), "{message}");
                    self.logs.write(&run, level, &message);
                    if let Some(tracked) = jobs.get_mut(key) {
                        tracked.events.retain(|e| e.message != once);
                        tracked.told.insert(once);
                    }
                }
                Action::Crash {
                    reason,
                    message,
                    with_pod_report,
                } => {
                    if !self
                        .crash(jobs, key, &run, reason, message, with_pod_report)
                        .await
                    {
                        return Next::Done;
                    }
                }
                Action::LeaveAlone { message } => {
                    tracing::info!(flow_run = %run, "{message}");
                    if let Some(tracked) = jobs.get_mut(key) {
                        tracked.settled = true;
                    }
                }
                Action::Delete { propagation, cause } => {
                    if !self.delete(jobs, key, propagation, cause).await {
                        return Next::Done;
                    }
                }
                Action::ProposeCancelled => self.propose_cancelled(jobs, key, &run).await,
            }
        }
        next
    }

    /// Writes the crash to the run's log (once) and proposes CRASHED; false when Prefect could
    /// not be reached (the report is tried again).
    async fn crash(
        &self,
        jobs: &mut Jobs,
        key: &JobKey,
        run: &str,
        reason: CrashReason,
        mut message: String,
        with_pod_report: bool,
    ) -> bool {
        if with_pod_report {
            message.push_str(&self.pod_report(key, run).await);
        }
        let job = format!("{}/{}", key.0, key.1);
        let first_time = jobs
            .get_mut(key)
            .is_some_and(|t| t.told.insert("crash".into()));
        if first_time {
            tracing::warn!(flow_run = %run, job = %job, "crashed: {message}");
            // In the run's log before its state says CRASHED: whoever looks finds why.
            self.logs.write_confirmed(run, ERROR, &message).await;
        }
        match self
            .prefect
            .propose_state(run, "CRASHED", Some(&message))
            .await
        {
            Ok(p) => {
                if p.status == ProposalStatus::Accept {
                    self.metrics.crash(reason);
                } else {
                    tracing::info!(flow_run = %run, "Prefect did not take CRASHED ({:?}): the run moved on", p.status);
                }
                if let Some(tracked) = jobs.get_mut(key) {
                    tracked.settled = true;
                }
                true
            }
            Err(e) => {
                tracing::error!(flow_run = %run, "could not report CRASHED (tried again): {e}");
                false
            }
        }
    }

    /// The failed pod's diagnosis and the last lines of its log. The pods are read afresh: the
    /// pod watch may not have brought their last status yet.
    async fn pod_report(&self, key: &JobKey, run: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
        let selector = format!("{FLOW_RUN_LABEL}={run}");
        let mut listed: Vec<Pod> = match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|p| key_of_pod(p).as_ref() == Some(key))
                .collect(),
            Err(e) => {
                tracing::debug!(
                    "cannot list the pods of Job {}: {}",
                    key.1,
                    crate::cluster::describe(&e)
                );
                Vec::new()
            }
        };
        listed.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let mut report = String::new();
        if let Some(diagnosis) = listed.iter().rev().find_map(diagnose) {
            report.push_str(&format!(". {}", diagnosis.message()));
        }
        if let Some(pod) = listed.last().and_then(|p| p.metadata.name.as_deref()) {
            let params = LogParams {
                tail_lines: Some(i64::from(self.options.log_tail)),
                ..LogParams::default()
            };
            match pods.logs(pod, &params).await {
                Ok(log) if !log.trim().is_empty() => {
                    report.push_str(&format!(
                        "\nLast lines of pod {pod}'s log:\n{}",
                        log.trim_end()
                    ));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(
                    "cannot read the log of pod {pod}: {}",
                    crate::cluster::describe(&e)
                ),
            }
        }
        report
    }

    /// Deletes the Job; false when Kubernetes could not be asked (tried again later).
    async fn delete(
        &self,
        jobs: &mut Jobs,
        key: &JobKey,
        propagation: Propagation,
        cause: DeletionCause,
    ) -> bool {
        let gone = match delete_job(&self.client, key, propagation).await {
            Ok(gone) => gone,
            Err(e) => {
                self.metrics.api_error(MetricsApi::kubernetes, "delete");
                tracing::warn!(job = %format!("{}/{}", key.0, key.1), "cannot delete the Job: {}", crate::cluster::describe(&e));
                return false;
            }
        };
        if !gone {
            self.metrics.job_deleted(cause);
            tracing::info!(job = %format!("{}/{}", key.0, key.1), reason = cause.as_str(), "deleted the Job");
        }
        if let Some(tracked) = jobs.get_mut(key) {
            tracked.deleting = true;
            tracked.gone |= gone;
            tracked.cancelling |= cause == DeletionCause::Cancelled;
        }
        true
    }

    async fn propose_cancelled(&self, jobs: &mut Jobs, key: &JobKey, run: &str) {
        if propose_cancelled(&self.prefect, &self.metrics, run, Some(key)).await
            && let Some(tracked) = jobs.get_mut(key)
        {
            tracked.settled = true;
            tracked.cancelling = false;
        }
    }

    /// A cancelling run whose Job the agent does not track: its recorded Job (if in a
    /// namespace this agent serves) is deleted; with none, the run is CANCELLED at once.
    pub async fn cancel_untracked(&self, run: &FlowRun) {
        let key = job_of_pid(run.infrastructure_pid.as_deref());
        if let Some((namespace, _)) = &key
            && !self.options.namespaces.is_empty()
            && !self.options.namespaces.contains(namespace)
        {
            // Another agent's to stop.
            return;
        }
        let gone = match &key {
            None => true,
            Some(key) => {
                let jobs: Api<Job> = Api::namespaced(self.client.clone(), &key.0);
                match jobs.get_opt(&key.1).await {
                    Ok(None) => true,
                    Ok(Some(_)) => {
                        self.logs.write(
                            &run.id,
                            INFO,
                            &format!(
                                "Flow run is cancelling: deleting Kubernetes Job {}/{}",
                                key.0, key.1
                            ),
                        );
                        if delete_job(&self.client, key, Propagation::Foreground)
                            .await
                            .is_ok()
                        {
                            self.metrics.job_deleted(DeletionCause::Cancelled);
                            // No watch follows this Job: wait for it apart, so that CANCELLED
                            // comes when it is gone and not at the next cancel pass.
                            tokio::spawn(cancelled_once_gone(
                                self.prefect.clone(),
                                self.client.clone(),
                                self.metrics.clone(),
                                run.id.clone(),
                                key.clone(),
                            ));
                        }
                        false
                    }
                    Err(e) => {
                        tracing::warn!(flow_run = %run.id, "cannot read the Job of a cancelling run: {}", crate::cluster::describe(&e));
                        false
                    }
                }
            }
        };
        if gone {
            propose_cancelled(&self.prefect, &self.metrics, &run.id, key.as_ref()).await;
        }
    }
}

/// How long a deleted Job no watch follows is waited for before the cancel pass takes over.
const UNTRACKED_DELETION_PATIENCE: Duration = Duration::from_secs(300);

/// Proposes CANCELLED for `run` once its Job `key`, being deleted, is gone.
async fn cancelled_once_gone(
    prefect: PrefectClient,
    client: kube::Client,
    metrics: Arc<Metrics>,
    run: String,
    key: JobKey,
) {
    let jobs: Api<Job> = Api::namespaced(client, &key.0);
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(200);
    while started.elapsed() < UNTRACKED_DELETION_PATIENCE {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
        if let Ok(None) = jobs.get_opt(&key.1).await {
            propose_cancelled(&prefect, &metrics, &run, Some(&key)).await;
            return;
        }
    }
}

/// Deletes the Job; `Ok(true)` when it was gone already.
async fn delete_job(
    client: &kube::Client,
    key: &JobKey,
    propagation: Propagation,
) -> Result<bool, kube::Error> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &key.0);
    let params = DeleteParams {
        propagation_policy: Some(match propagation {
            Propagation::Foreground => PropagationPolicy::Foreground,
            Propagation::Background => PropagationPolicy::Background,
        }),
        ..DeleteParams::default()
    };
    match jobs.delete(&key.1, &params).await {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

/// Proposes CANCELLED; true once Prefect answered (the run is CANCELLED, or moved on).
async fn propose_cancelled(
    prefect: &PrefectClient,
    metrics: &Metrics,
    run: &str,
    key: Option<&JobKey>,
) -> bool {
    let message = match key {
        Some((namespace, name)) => {
            format!("Flow run was cancelled; its Kubernetes Job {namespace}/{name} is deleted")
        }
        None => "Flow run was cancelled before a Job ran it".to_string(),
    };
    match prefect
        .propose_state(run, "CANCELLED", Some(&message))
        .await
    {
        Ok(p) if p.status == ProposalStatus::Accept => {
            metrics.cancelled.inc();
            tracing::info!(flow_run = %run, "{message}");
            true
        }
        Ok(p) => {
            tracing::info!(flow_run = %run, "Prefect did not take CANCELLED: {:?}", p.status);
            true
        }
        Err(e) => {
            tracing::warn!(flow_run = %run, "could not report CANCELLED: {e}");
            false
        }
    }
}
