//! After submission: one watch on the agent's Jobs, one on their pods, one on Events, all
//! selected by the agent's tracking label. What goes wrong is told to the run ("summary:
//! detail. Resolution: …"), decided on (`decide`), and reported to Prefect only while the run
//! still belongs to that Job. Periodic passes handle cancellation and clean-up.
//!
//! kube-rs' watcher resumes after disconnects and relists after a 410; a Job that vanished
//! while the watch was down is noticed at the relist.

pub mod diagnose;

use crate::job::{AGENT_LABEL, FLOW_RUN_LABEL, label_value};
use crate::metrics;
use crate::prefect::models::FlowRun;
use crate::prefect::{PrefectClient, ProposalStatus};
use diagnose::{Diagnosis, Trouble, diagnose};
use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as KubeEvent, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PropagationPolicy};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::time::Duration;

const WARNING: u8 = 30;
const ERROR: u8 = 40;
const INFO: u8 = 20;
/// How many lines of the container's log a crash report quotes.
const LOG_TAIL: i64 = 20;

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub agent: String,
    pub pool: String,
    /// Watch these namespaces (one watch of each kind per namespace); all when empty.
    pub namespaces: Vec<String>,
    /// A pull or configuration error older than this (from the pod's creation) crashes the run.
    pub pod_start_timeout: Duration,
    /// An unschedulable pod older than this (from when the scheduler said so) crashes the run.
    pub schedule_timeout: Duration,
    /// Finished Jobs of final runs are deleted this long after they finished (None: kept).
    pub delete_succeeded_after: Option<Duration>,
    pub delete_failed_after: Option<Duration>,
    /// How often the clean-up pass runs.
    pub pass_interval: Duration,
    /// How often runs in CANCELLING are looked for (often: a cancelled run's pods should stop
    /// soon).
    pub cancel_interval: Duration,
}

/// `namespace/name` of a Job.
type JobKey = (String, String);

/// What the agent knows about one of its Jobs.
#[derive(Default)]
struct Tracked {
    run: String,
    job: Option<Job>,
    pods: BTreeMap<String, Pod>,
    /// Messages already told to the run.
    told: HashSet<String>,
    /// What the run's log held when this agent first told it something: read once, so that a
    /// restarted agent does not tell it again.
    logged_before: Option<Vec<String>>,
    /// The run got its final word from us (crash), or the Job finished: nothing more to say.
    settled: bool,
    /// We are deleting it: its disappearance is not news.
    deleting: bool,
}

pub struct Watcher {
    prefect: PrefectClient,
    client: kube::Client,
    options: WatchOptions,
    jobs: HashMap<JobKey, Tracked>,
    /// Per namespace watched ("" for all), the Jobs seen since its Job watch (re)started
    /// listing; absent outside a relist.
    relisted: HashMap<String, HashSet<JobKey>>,
    unmatched: std::collections::VecDeque<PendingEvent>,
}

/// An Event for the run's log, kept while its Job or pod is not known yet.
struct PendingEvent {
    namespace: String,
    kind: String,
    name: String,
    level: u8,
    message: String,
}

/// How many Events wait for their Job or pod at most (the oldest go first).
const MAX_UNMATCHED_EVENTS: usize = 1000;

enum Input {
    /// The namespace the watch covers ("" for all), and what it saw.
    Job(String, Box<Result<Event<Job>, watcher::Error>>),
    Pod(Box<Result<Event<Pod>, watcher::Error>>),
    Event(Box<Result<Event<KubeEvent>, watcher::Error>>),
    Tick,
    Pass,
    CancelPass,
}

impl Watcher {
    pub fn new(prefect: PrefectClient, client: kube::Client, options: WatchOptions) -> Self {
        Watcher {
            prefect,
            client,
            options,
            jobs: HashMap::new(),
            relisted: HashMap::new(),
            unmatched: std::collections::VecDeque::new(),
        }
    }

    /// One watch per namespace served (or one over all), each item tagged with its scope.
    fn watch<K>(
        &self,
        config: &watcher::Config,
        input: fn(String, Result<Event<K>, watcher::Error>) -> Input,
    ) -> Vec<futures::stream::BoxStream<'static, Input>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
        <K as kube::Resource>::DynamicType: Default,
    {
        let scopes: Vec<String> = if self.options.namespaces.is_empty() {
            vec![String::new()]
        } else {
            self.options.namespaces.clone()
        };
        scopes
            .into_iter()
            .map(|scope| {
                let api = if scope.is_empty() {
                    Api::all(self.client.clone())
                } else {
                    Api::namespaced(self.client.clone(), &scope)
                };
                watcher::watcher(api, config.clone())
                    .default_backoff()
                    .map(move |event| input(scope.clone(), event))
                    .boxed()
            })
            .collect()
    }

    fn selector(&self) -> String {
        format!("{AGENT_LABEL}={}", label_value(&self.options.agent))
    }

    /// Watches until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let config = watcher::Config::default().labels(&self.selector());
        let mut streams = self.watch::<Job>(&config, |scope, e| Input::Job(scope, Box::new(e)));
        streams.extend(self.watch::<Pod>(&config, |_, e| Input::Pod(Box::new(e))));
        streams.extend(
            self.watch::<KubeEvent>(&watcher::Config::default(), |_, e| {
                Input::Event(Box::new(e))
            }),
        );
        let ticks = tokio_stream_interval(Duration::from_millis(500)).map(|_| Input::Tick);
        let passes = tokio_stream_interval(self.options.pass_interval).map(|_| Input::Pass);
        let cancels =
            tokio_stream_interval(self.options.cancel_interval).map(|_| Input::CancelPass);
        let mut inputs: Pin<Box<dyn Stream<Item = Input> + Send>> =
            Box::pin(futures::stream::select_all(streams.into_iter().chain([
                ticks.boxed(),
                passes.boxed(),
                cancels.boxed(),
            ])));
        tokio::pin!(shutdown);
        loop {
            let input = tokio::select! {
                _ = &mut shutdown => break,
                input = inputs.next() => match input { Some(input) => input, None => break },
            };
            match input {
                Input::Job(scope, event) => self.on_job(&scope, *event).await,
                Input::Pod(event) => self.on_pod(*event).await,
                Input::Event(event) => self.on_event(*event).await,
                Input::Tick => self.check_deadlines().await,
                Input::Pass => self.clean_up_pass().await,
                Input::CancelPass => self.cancel_pass().await,
            }
        }
    }

    async fn on_job(&mut self, scope: &str, event: Result<Event<Job>, watcher::Error>) {
        match event {
            Err(e) => {
                metrics::global().watcher_restart("job");
                tracing::warn!("the Job watch failed and restarts: {e}");
            }
            Ok(Event::Init) => {
                self.relisted.insert(scope.to_string(), HashSet::new());
            }
            Ok(Event::InitApply(job)) => {
                if let (Some(seen), Some(key)) = (self.relisted.get_mut(scope), key_of_job(&job)) {
                    seen.insert(key);
                }
                self.job_changed(job).await;
            }
            Ok(Event::InitDone) => {
                let seen = self.relisted.remove(scope).unwrap_or_default();
                let gone: Vec<JobKey> = self
                    .jobs
                    .iter()
                    // Only Jobs seen before: pods may be listed before their Job.
                    .filter(|(k, t)| {
                        (scope.is_empty() || k.0 == scope) && t.job.is_some() && !seen.contains(*k)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in gone {
                    self.job_gone(key).await;
                }
            }
            Ok(Event::Apply(job)) => self.job_changed(job).await,
            Ok(Event::Delete(job)) => {
                if let Some(key) = key_of_job(&job) {
                    self.job_gone(key).await;
                }
            }
        }
    }

    async fn job_changed(&mut self, job: Job) {
        let (Some(key), Some(run)) = (key_of_job(&job), label(&job.metadata, FLOW_RUN_LABEL))
        else {
            return;
        };
        let tracked = self.jobs.entry(key.clone()).or_default();
        tracked.run = run;
        let failed = condition(&job, "Failed");
        let complete = condition(&job, "Complete").is_some();
        tracked.job = Some(job);
        if tracked.settled || tracked.deleting {
            return;
        }
        if complete {
            tracked.settled = true;
        } else if let Some((reason, message)) = failed {
            let report = self.job_failure_report(&key, &reason, &message).await;
            self.crash(&key, "job-failed", report, false).await;
        }
        self.replay_events(&key).await;
    }

    /// A Job deleted (or gone while we were not watching) before its run was settled.
    async fn job_gone(&mut self, key: JobKey) {
        let Some(tracked) = self.jobs.get(&key) else {
            return;
        };
        if !tracked.settled && !tracked.deleting {
            let message = format!(
                "Kubernetes Job {}/{} was deleted before the flow run finished. Resolution: if it was not deleted on purpose, look for a clean-up tool or TTL (ttlSecondsAfterFinished) removing running Jobs",
                key.0, key.1
            );
            self.crash(&key, "job-deleted", message, false).await;
        }
        // Its pods may still be going away; their events must not start it over.
        if let Some(tracked) = self.jobs.get_mut(&key) {
            tracked.job = None;
            tracked.settled = true;
            if tracked.pods.is_empty() {
                self.jobs.remove(&key);
            }
        }
    }

    async fn on_pod(&mut self, event: Result<Event<Pod>, watcher::Error>) {
        let (pod, present) = match event {
            Err(e) => {
                metrics::global().watcher_restart("pod");
                tracing::warn!("the pod watch failed and restarts: {e}");
                return;
            }
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => (pod, true),
            Ok(Event::Delete(pod)) => (pod, false),
            Ok(Event::Init | Event::InitDone) => return,
        };
        let (Some(key), Some(name)) = (key_of_pod(&pod), pod.metadata.name.clone()) else {
            return;
        };
        if !self.jobs.contains_key(&key) && (!present || pod.metadata.deletion_timestamp.is_some())
        {
            return;
        }
        let tracked = self.jobs.entry(key.clone()).or_default();
        if tracked.run.is_empty() {
            tracked.run = label(&pod.metadata, FLOW_RUN_LABEL).unwrap_or_default();
        }
        if present {
            tracked.pods.insert(name, pod);
            self.replay_events(&key).await;
        } else {
            tracked.pods.remove(&name);
            if tracked.job.is_none() && tracked.settled && tracked.pods.is_empty() {
                self.jobs.remove(&key);
                return;
            }
        }
        self.check_pods(&key).await;
    }

    /// Tells the run about new trouble, and crashes it when trouble outlasts its timeout.
    async fn check_pods(&mut self, key: &JobKey) {
        let Some(tracked) = self.jobs.get(key) else {
            return;
        };
        // Pods can be listed before their Job: wait for it, it may be over already.
        if tracked.settled || tracked.deleting || tracked.run.is_empty() || tracked.job.is_none() {
            return;
        }
        let diagnoses: Vec<(String, Diagnosis)> = tracked
            .pods
            .iter()
            .filter_map(|(pod, status)| Some((pod.clone(), diagnose(status)?)))
            .collect();
        for (pod, diagnosis) in diagnoses {
            let message = match diagnosis.trouble {
                Trouble::Unschedulable => format!(
                    "{} (waiting up to {} for the cluster to make room before reporting a crash)",
                    diagnosis.message(),
                    humantime::format_duration(self.options.schedule_timeout)
                ),
                _ => diagnosis.message(),
            };
            // Once per pod and kind of trouble: ErrImagePull and ImagePullBackOff alternate.
            let once = format!("{pod}: {:?}", diagnosis.trouble);
            self.tell_once(key, &once, WARNING, &message, &diagnosis.summary)
                .await;
            if let Some(reason) = self.overdue(&diagnosis) {
                self.crash(key, reason, diagnosis.message(), true).await;
                return;
            }
        }
    }

    /// The crash reason when `diagnosis` has lasted past its timeout.
    fn overdue(&self, diagnosis: &Diagnosis) -> Option<&'static str> {
        let (timeout, reason) = match diagnosis.trouble {
            Trouble::ImagePull | Trouble::Config => (self.options.pod_start_timeout, "pod-start"),
            Trouble::Unschedulable => (self.options.schedule_timeout, "unschedulable"),
            Trouble::OomKilled | Trouble::CrashLoop | Trouble::Evicted => return None,
        };
        let since = diagnosis.since?;
        (age(since) >= timeout).then_some(reason)
    }

    async fn check_deadlines(&mut self) {
        let waiting: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(_, t)| !t.settled && !t.deleting && !t.pods.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for key in waiting {
            self.check_pods(&key).await;
        }
    }

    /// Forwards the Events of the agent's Jobs and pods to their runs, each once.
    async fn on_event(&mut self, event: Result<Event<KubeEvent>, watcher::Error>) {
        let event = match event {
            Err(e) => {
                metrics::global().watcher_restart("event");
                tracing::debug!("the Event watch failed and restarts: {e}");
                return;
            }
            Ok(Event::Apply(event) | Event::InitApply(event)) => event,
            Ok(_) => return,
        };
        let object = &event.involved_object;
        let (Some(namespace), Some(name), Some(kind)) =
            (&object.namespace, &object.name, &object.kind)
        else {
            return;
        };
        let level = if event.type_.as_deref() == Some("Warning") {
            WARNING
        } else {
            INFO
        };
        let message = format!(
            "Kubernetes event on {kind} {name}: {}: {}",
            event.reason.as_deref().unwrap_or_default(),
            event.message.as_deref().unwrap_or_default()
        );
        let pending = PendingEvent {
            namespace: namespace.clone(),
            kind: kind.clone(),
            name: name.clone(),
            level,
            message,
        };
        match self.key_of_event(&pending) {
            Some(key) => self.tell_event(&key, &pending).await,
            // An Event can come before its Job or pod: kept until they come.
            None if matches!(kind.as_str(), "Job" | "Pod") => {
                if self.unmatched.len() >= MAX_UNMATCHED_EVENTS {
                    self.unmatched.pop_front();
                }
                self.unmatched.push_back(pending);
            }
            None => {}
        }
    }

    /// The Job an Event is about, if the agent knows it. A pod's Event waits for the pod's Job
    /// too: after a restart the pods can be listed first, and only the Job tells whether its run
    /// has had the agent's last word already.
    fn key_of_event(&self, event: &PendingEvent) -> Option<JobKey> {
        match event.kind.as_str() {
            "Job" => {
                let key = (event.namespace.clone(), event.name.clone());
                self.jobs.get(&key).filter(|t| t.job.is_some()).map(|_| key)
            }
            "Pod" => self
                .jobs
                .iter()
                .find(|(k, t)| {
                    k.0 == event.namespace && t.job.is_some() && t.pods.contains_key(&event.name)
                })
                .map(|(k, _)| k.clone()),
            _ => None,
        }
    }

    /// Tells a run an Event, unless its run has had the agent's last word already.
    async fn tell_event(&mut self, key: &JobKey, event: &PendingEvent) {
        if self.jobs.get(key).is_some_and(|t| !t.settled) {
            self.tell(key, event.level, &event.message).await;
        }
    }

    /// Tells the Events that came before the Job or pod of `key` did.
    async fn replay_events(&mut self, key: &JobKey) {
        let (matched, rest): (Vec<PendingEvent>, Vec<PendingEvent>) =
            std::mem::take(&mut self.unmatched)
                .into_iter()
                .partition(|e| self.key_of_event(e).as_ref() == Some(key));
        self.unmatched = rest.into();
        for event in matched {
            self.tell_event(key, &event).await;
        }
    }

    /// Writes `message` to the run's log unless it was written before.
    async fn tell(&mut self, key: &JobKey, level: u8, message: &str) {
        self.tell_once(key, message, level, message, message).await;
    }

    /// Writes `message` to the run's log unless something was written under `once` before,
    /// by this agent or (a line starting with `known_by`) before it restarted.
    async fn tell_once(
        &mut self,
        key: &JobKey,
        once: &str,
        level: u8,
        message: &str,
        known_by: &str,
    ) {
        let Some(tracked) = self.jobs.get(key) else {
            return;
        };
        if tracked.run.is_empty() || tracked.told.contains(once) {
            return;
        }
        let run = tracked.run.clone();
        if tracked.logged_before.is_none() {
            let before = match self.prefect.recent_log_messages(&run).await {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::debug!(flow_run = %run, "cannot read the run's log: {e}");
                    Vec::new()
                }
            };
            if let Some(tracked) = self.jobs.get_mut(key) {
                tracked.logged_before = Some(before);
            }
        }
        let Some(tracked) = self.jobs.get_mut(key) else {
            return;
        };
        tracked.told.insert(once.to_string());
        let known = tracked
            .logged_before
            .iter()
            .flatten()
            .any(|line| line.starts_with(known_by));
        if known {
            return;
        }
        tracing::info!(flow_run = %run, job = %format!("{}/{}", key.0, key.1), "{message}");
        if let Err(e) = self.prefect.log(&run, level, message).await {
            tracing::warn!(flow_run = %run, "could not write the run's log: {e}");
        }
    }

    /// Why the Job failed, with the pod's diagnosis and the last lines of its log. The pods are
    /// read afresh: the pod watch may not have brought their last status yet.
    async fn job_failure_report(&self, key: &JobKey, reason: &str, message: &str) -> String {
        let mut report = format!(
            "Kubernetes Job {}/{} failed: {reason}: {message}",
            key.0, key.1
        );
        let Some(tracked) = self.jobs.get(key) else {
            return report;
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
        let selector = format!("{FLOW_RUN_LABEL}={}", tracked.run);
        let mut listed: Vec<Pod> = match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|p| key_of_pod(p).as_ref() == Some(key))
                .collect(),
            Err(e) => {
                tracing::debug!("cannot list the pods of Job {}: {e}", key.1);
                tracked.pods.values().cloned().collect()
            }
        };
        listed.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        if let Some(diagnosis) = listed.iter().rev().find_map(diagnose) {
            report.push_str(&format!(". {}", diagnosis.message()));
        }
        if let Some(pod) = listed.last().and_then(|p| p.metadata.name.as_deref()) {
            let params = LogParams {
                tail_lines: Some(LOG_TAIL),
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
                Err(e) => tracing::debug!("cannot read the log of pod {pod}: {e}"),
            }
        }
        report
    }

    /// Proposes CRASHED with `message` if the run still belongs to this Job and is not final;
    /// deletes the Job when asked. A run already final, rescheduled or re-claimed is left alone.
    async fn crash(&mut self, key: &JobKey, reason: &'static str, message: String, delete: bool) {
        let Some(run_id) = self.jobs.get(key).map(|t| t.run.clone()) else {
            return;
        };
        let run = match self.prefect.read_flow_run(&run_id).await {
            Ok(run) => run,
            Err(e) => {
                // Not settled: the next event or tick tries again.
                tracing::warn!(flow_run = %run_id, "cannot read the run before reporting it: {e}");
                return;
            }
        };
        if let Some(tracked) = self.jobs.get_mut(key) {
            tracked.settled = true;
        }
        if !belongs_to(&run, key) {
            tracing::info!(flow_run = %run_id, state = ?run.state_type, "not reporting a crash: the run is final or no longer this Job's ({message})");
        } else {
            tracing::warn!(flow_run = %run_id, job = %format!("{}/{}", key.0, key.1), "crashed: {message}");
            if let Err(e) = self.prefect.log(&run_id, ERROR, &message).await {
                tracing::warn!(flow_run = %run_id, "could not write the run's log: {e}");
            }
            match self
                .prefect
                .propose_state(&run_id, "CRASHED", Some(&message))
                .await
            {
                Ok(p) if p.status == ProposalStatus::Accept => metrics::global().crash(reason),
                Ok(p) => {
                    tracing::info!(flow_run = %run_id, "Prefect did not take CRASHED ({:?}): the run moved on", p.status)
                }
                Err(e) => tracing::error!(flow_run = %run_id, "could not report CRASHED: {e}"),
            }
        }
        if delete {
            self.delete_job(key, PropagationPolicy::Background, reason)
                .await;
        }
    }

    async fn delete_job(&mut self, key: &JobKey, policy: PropagationPolicy, reason: &str) -> bool {
        if let Some(tracked) = self.jobs.get_mut(key) {
            tracked.deleting = true;
        }
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &key.0);
        let params = DeleteParams {
            propagation_policy: Some(policy),
            ..DeleteParams::default()
        };
        match jobs.delete(&key.1, &params).await {
            Ok(_) => {
                metrics::global().job_deleted(reason);
                true
            }
            Err(kube::Error::Api(status)) if status.code == 404 => true,
            Err(e) => {
                metrics::global().api_error("kubernetes", "delete");
                tracing::warn!(job = %format!("{}/{}", key.0, key.1), "cannot delete the Job: {e}");
                if let Some(tracked) = self.jobs.get_mut(key) {
                    tracked.deleting = false;
                }
                false
            }
        }
    }

    /// Runs of the pool in CANCELLING: delete their Job (Foreground: pods first) and propose
    /// CANCELLED once it is gone. A run with no Job anywhere is cancelled at once.
    async fn cancel_pass(&mut self) {
        let runs = match self.prefect.cancelling_flow_runs(&self.options.pool).await {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!("cannot look for cancelled runs: {e}");
                return;
            }
        };
        for run in runs {
            let key = self
                .jobs
                .iter()
                .find(|(_, t)| t.run == run.id)
                .map(|(k, _)| k.clone())
                .or_else(|| job_of_pid(run.infrastructure_pid.as_deref()));
            // A Job in a namespace this agent does not serve is another agent's to stop.
            if let Some((namespace, _)) = &key
                && !self.options.namespaces.is_empty()
                && !self.options.namespaces.contains(namespace)
            {
                continue;
            }
            let gone = match &key {
                None => true,
                Some(key) => self.job_is_gone(key).await,
            };
            if gone {
                self.propose_cancelled(&run.id, key.as_ref()).await;
            } else if let Some(key) = key {
                let deleting = self.jobs.get(&key).is_some_and(|t| t.deleting);
                if !deleting {
                    self.tell(
                        &key,
                        INFO,
                        &format!(
                            "Flow run is cancelling: deleting Kubernetes Job {}/{}",
                            key.0, key.1
                        ),
                    )
                    .await;
                    self.delete_job(&key, PropagationPolicy::Foreground, "cancelled")
                        .await;
                }
            }
        }
    }

    async fn job_is_gone(&self, key: &JobKey) -> bool {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &key.0);
        matches!(jobs.get_opt(&key.1).await, Ok(None))
    }

    async fn propose_cancelled(&mut self, run: &str, key: Option<&JobKey>) {
        let message = match key {
            Some((namespace, name)) => {
                format!("Flow run was cancelled; its Kubernetes Job {namespace}/{name} is deleted")
            }
            None => "Flow run was cancelled before a Job ran it".to_string(),
        };
        match self
            .prefect
            .propose_state(run, "CANCELLED", Some(&message))
            .await
        {
            Ok(p) if p.status == ProposalStatus::Accept => {
                metrics::global().cancelled.inc();
                tracing::info!(flow_run = %run, "{message}");
                if let Some(tracked) = key.and_then(|k| self.jobs.get_mut(k)) {
                    tracked.settled = true;
                }
            }
            Ok(p) => {
                tracing::info!(flow_run = %run, "Prefect did not take CANCELLED: {:?}", p.status)
            }
            Err(e) => tracing::warn!(flow_run = %run, "could not report CANCELLED: {e}"),
        }
    }

    /// Jobs still running for runs that are CANCELLED or CRASHED are deleted; finished Jobs of
    /// final runs are deleted once `--delete-succeeded-after` / `--delete-failed-after` passed.
    async fn clean_up_pass(&mut self) {
        let ids: Vec<String> = self
            .jobs
            .values()
            .filter(|t| !t.deleting && !t.run.is_empty() && t.job.is_some())
            .map(|t| t.run.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if ids.is_empty() {
            return;
        }
        let runs: HashMap<String, FlowRun> = match self.prefect.flow_runs_by_id(&ids).await {
            Ok(runs) => runs.into_iter().map(|r| (r.id.clone(), r)).collect(),
            Err(e) => {
                tracing::warn!("cannot read the runs of the agent's Jobs: {e}");
                return;
            }
        };
        let mut to_delete: Vec<(JobKey, PropagationPolicy, &'static str, String)> = Vec::new();
        for (key, tracked) in &self.jobs {
            let (Some(job), Some(run)) = (&tracked.job, runs.get(&tracked.run)) else {
                continue;
            };
            if tracked.deleting || !run.is_final() {
                continue;
            }
            let state = run.state_type.as_deref().unwrap_or_default();
            let finished = finished_at(job);
            match finished {
                None if matches!(state, "CANCELLED" | "CRASHED") => to_delete.push((
                    key.clone(),
                    PropagationPolicy::Foreground,
                    "run-final",
                    format!("Deleted Kubernetes Job {}/{}: it was still running, but its flow run is {state}", key.0, key.1),
                )),
                Some((succeeded, at)) => {
                    let keep = if succeeded {
                        self.options.delete_succeeded_after
                    } else {
                        self.options.delete_failed_after
                    };
                    if keep.is_some_and(|keep| age(at) >= keep) {
                        to_delete.push((
                            key.clone(),
                            PropagationPolicy::Background,
                            if succeeded { "janitor-succeeded" } else { "janitor-failed" },
                            String::new(),
                        ));
                    }
                }
                None => {}
            }
        }
        for (key, policy, reason, message) in to_delete {
            if !message.is_empty() {
                self.tell(&key, INFO, &message).await;
            }
            if self.delete_job(&key, policy, reason).await {
                tracing::info!(job = %format!("{}/{}", key.0, key.1), reason, "deleted the Job");
            }
        }
    }
}

/// Whether a crash report about the Job `key` is still the run's business: the run is not
/// final, not waiting to run again, and its infrastructure is this Job.
fn belongs_to(run: &FlowRun, key: &JobKey) -> bool {
    let active = matches!(run.state_type.as_deref(), Some("PENDING" | "RUNNING"));
    let same_job = match &run.infrastructure_pid {
        Some(pid) => job_of_pid(Some(pid)).as_ref() == Some(key),
        None => true,
    };
    active && same_job
}

/// `namespace:name` → the Job's key.
fn job_of_pid(pid: Option<&str>) -> Option<JobKey> {
    let (namespace, name) = pid?.split_once(':')?;
    Some((namespace.to_string(), name.to_string()))
}

fn key_of_job(job: &Job) -> Option<JobKey> {
    Some((job.metadata.namespace.clone()?, job.metadata.name.clone()?))
}

/// The Job a pod belongs to, by its controller owner reference.
fn key_of_pod(pod: &Pod) -> Option<JobKey> {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Job")?;
    Some((pod.metadata.namespace.clone()?, owner.name.clone()))
}

fn label(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    metadata.labels.as_ref()?.get(key).cloned()
}

/// The reason and message of a true condition of this type.
fn condition(job: &Job, kind: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// Whether the Job succeeded, and when it finished; `None` while it runs.
fn finished_at(job: &Job) -> Option<(bool, Timestamp)> {
    let status = job.status.as_ref()?;
    let at = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
            .map(|c| {
                c.last_transition_time
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or_else(Timestamp::now)
            })
    };
    if let Some(time) = at("Complete") {
        Some((
            true,
            status.completion_time.as_ref().map(|t| t.0).unwrap_or(time),
        ))
    } else {
        at("Failed").map(|time| (false, time))
    }
}

/// How long ago `time` was (zero for the future: clocks differ).
fn age(time: Timestamp) -> Duration {
    Duration::try_from(Timestamp::now().duration_since(time)).unwrap_or_default()
}

fn tokio_stream_interval(period: Duration) -> impl Stream<Item = ()> + Send {
    futures::stream::unfold(
        tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        |mut interval| async move {
            interval.tick().await;
            Some(((), interval))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &str, pid: Option<&str>) -> FlowRun {
        serde_json::from_value(serde_json::json!({
            "id": "r", "name": "n", "flow_id": "f",
            "state_type": state, "infrastructure_pid": pid,
        }))
        .unwrap()
    }

    #[test]
    fn a_crash_is_reported_only_while_the_run_is_this_jobs_and_not_final() {
        let job = ("ns".to_string(), "etl-abc".to_string());
        assert!(belongs_to(&run("PENDING", Some("ns:etl-abc")), &job));
        assert!(belongs_to(&run("RUNNING", Some("ns:etl-abc")), &job));
        assert!(belongs_to(&run("PENDING", None), &job));
        // Prefect's engine rescheduled an evicted run: not ours to crash.
        assert!(!belongs_to(&run("SCHEDULED", Some("ns:etl-abc")), &job));
        // Claimed again: the new claim has a new Job.
        assert!(!belongs_to(&run("PENDING", Some("ns:etl-xyz")), &job));
        for final_state in ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"] {
            assert!(!belongs_to(&run(final_state, Some("ns:etl-abc")), &job));
        }
    }
}
