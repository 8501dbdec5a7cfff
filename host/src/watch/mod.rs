//! After submission, as a controller: watches on the agent's Jobs, their pods and Events
//! (selected by the agent's tracking label) feed what the agent knows (`tracked`); for each
//! Job that changed, a pure `decide` says what to do and `act` does it. Periodic passes read
//! the runs (clean-up) and look for cancelling runs (while no event stream tells at once).
//!
//! kube-rs' watcher resumes after disconnects and relists after a 410; a Job that vanished
//! while the watch was down is noticed at the relist.

pub mod act;
pub mod decide;
pub mod diagnose;
pub mod pod_events;
pub mod tracked;

pub use decide::WatchOptions;

use crate::cluster::{Reachability, describe_watch};
use crate::job::{AGENT_LABEL, label_value};
use crate::metrics::{Metrics, WatchKind};
use crate::prefect::emit::Events;
use crate::prefect::event_stream::Connected;
use crate::prefect::models::FlowRun;
use crate::prefect::{PrefectClient, RunLogs};
use act::{Actor, Next};
use decide::decide;
use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as KubeEvent, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use pod_events::PodEvents;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_stream::wrappers::IntervalStream;
use tracked::{JobKey, Jobs};

/// How often pods in trouble are looked at for their timeouts.
const TICK: Duration = Duration::from_millis(500);
/// How often runs in CANCELLING are looked for while the event stream is connected (it tells
/// at once; this catches what it may have missed).
const CONNECTED_CANCEL_PASS: Duration = Duration::from_secs(60);
/// How long a watch call to Prefect keeps retrying: the loop serves every Job, so one call
/// must not hold it for long (a report that failed is tried again on the next tick).
const PATIENCE: Duration = Duration::from_secs(5);

/// Follows the agent's Jobs after submission until they are over.
pub struct Observer {
    jobs: Jobs,
    actor: Actor,
    /// This agent's Jobs not finished, kept up to date for the dispatcher's `--limit`.
    running: Option<Arc<AtomicUsize>>,
    /// Told when the watches cannot reach the API server.
    reachability: Option<Arc<Reachability>>,
    /// Prefect's event stream, whose cancellations come at once while it is connected.
    stream: Option<Arc<Connected>>,
    last_cancel_pass: std::time::Instant,
    /// Where Prefect events about the Jobs' pods go (none: not emitted).
    events: Option<Events>,
    pod_events: PodEvents,
}

/// One thing that happened.
enum Input {
    /// The namespace the watch covers ("" for all), and what it saw.
    Job(String, Box<Result<Event<Job>, watcher::Error>>),
    Pod(String, Box<Result<Event<Pod>, watcher::Error>>),
    Event(Box<Result<Event<KubeEvent>, watcher::Error>>),
    /// A run of the pool that is cancelling, as the event stream told.
    Cancelling(String),
    Tick,
    Pass,
    CancelPass,
}

impl Observer {
    pub fn new(
        prefect: PrefectClient,
        client: kube::Client,
        logs: RunLogs,
        metrics: Arc<Metrics>,
        options: WatchOptions,
    ) -> Self {
        Observer {
            jobs: Jobs::default(),
            running: None,
            reachability: None,
            stream: None,
            last_cancel_pass: std::time::Instant::now(),
            events: None,
            pod_events: PodEvents::default(),
            actor: Actor {
                prefect: prefect.with_patience(PATIENCE),
                client,
                logs,
                metrics,
                options,
            },
        }
    }

    /// Keeps `running` at the count of this agent's Jobs not finished.
    pub fn with_running_count(mut self, running: Arc<AtomicUsize>) -> Self {
        self.running = Some(running);
        self
    }

    /// Emits Prefect's pod events (`pod_events`) for the Jobs' pods.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = Some(events);
        self
    }

    /// Marks Kubernetes out of reach when a watch cannot reach it.
    pub fn with_reachability(mut self, reachability: Arc<Reachability>) -> Self {
        self.reachability = Some(reachability);
        self
    }

    fn options(&self) -> &WatchOptions {
        &self.actor.options
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
        let scopes: Vec<String> = if self.options().namespaces.is_empty() {
            vec![String::new()]
        } else {
            self.options().namespaces.clone()
        };
        let client = &self.actor.client;
        scopes
            .into_iter()
            .map(|scope| {
                let api = if scope.is_empty() {
                    Api::all(client.clone())
                } else {
                    Api::namespaced(client.clone(), &scope)
                };
                watcher::watcher(api, config.clone())
                    .default_backoff()
                    .map(move |event| input(scope.clone(), event))
                    .boxed()
            })
            .collect()
    }

    /// Watches until `shutdown` resolves. `cancelling` brings the ids of runs of the pool
    /// that turned CANCELLING (from Prefect's event stream); while `stream` says it is
    /// connected, the cancel pass (the safety net) runs only every `CONNECTED_CANCEL_PASS`.
    pub async fn run(
        mut self,
        cancelling: impl Stream<Item = String> + Send + 'static,
        stream: Option<Arc<Connected>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        self.stream = stream;
        let selector = format!("{AGENT_LABEL}={}", label_value(&self.options().agent));
        let config = watcher::Config::default().labels(&selector);
        let mut streams = self.watch::<Job>(&config, |scope, e| Input::Job(scope, Box::new(e)));
        streams.extend(self.watch::<Pod>(&config, |scope, e| Input::Pod(scope, Box::new(e))));
        // Events carry no labels of their object: select what can be (Jobs and Pods), and
        // keep only those of the agent's Jobs and pods (`Jobs::apply_kube_event`).
        for kind in ["Job", "Pod"] {
            let events = watcher::Config::default().fields(&format!("involvedObject.kind={kind}"));
            streams.extend(self.watch::<KubeEvent>(&events, |_, e| Input::Event(Box::new(e))));
        }
        let every = |period: Duration| {
            IntervalStream::new(tokio::time::interval_at(
                tokio::time::Instant::now() + period,
                period,
            ))
        };
        streams.push(every(TICK).map(|_| Input::Tick).boxed());
        streams.push(
            every(self.options().pass_interval)
                .map(|_| Input::Pass)
                .boxed(),
        );
        streams.push(
            every(self.options().cancel_interval)
                .map(|_| Input::CancelPass)
                .boxed(),
        );
        streams.push(cancelling.map(Input::Cancelling).boxed());
        let mut inputs: Pin<Box<dyn Stream<Item = Input> + Send>> =
            Box::pin(futures::stream::select_all(streams));
        tokio::pin!(shutdown);
        loop {
            let input = tokio::select! {
                _ = &mut shutdown => break,
                input = inputs.next() => match input { Some(input) => input, None => break },
            };
            self.handle(input).await;
        }
    }

    async fn handle(&mut self, input: Input) {
        let metrics = &self.actor.metrics;
        let changed: Vec<JobKey> = match input {
            Input::Job(scope, event) => match *event {
                Ok(event) => self.jobs.apply_job_event(&scope, event),
                Err(e) => {
                    metrics.watcher_restart(WatchKind::job);
                    tracing::warn!("the Job watch failed and restarts: {}", describe_watch(&e));
                    if let Some(reachability) = &self.reachability
                        && unreachable(&e)
                    {
                        reachability.mark_down(&describe_watch(&e));
                    }
                    Vec::new()
                }
            },
            Input::Pod(scope, event) => match *event {
                Ok(event) => {
                    self.emit_pod_event(&event);
                    self.jobs.apply_pod_event(&scope, event)
                }
                Err(e) => {
                    metrics.watcher_restart(WatchKind::pod);
                    tracing::warn!("the pod watch failed and restarts: {}", describe_watch(&e));
                    Vec::new()
                }
            },
            Input::Event(event) => match *event {
                Ok(event) => self.jobs.apply_kube_event(event).into_iter().collect(),
                Err(e) => {
                    metrics.watcher_restart(WatchKind::event);
                    tracing::debug!(
                        "the Event watch failed and restarts: {}",
                        describe_watch(&e)
                    );
                    Vec::new()
                }
            },
            Input::Tick => {
                if let Some(running) = &self.running {
                    running.store(self.jobs.running(), Ordering::Relaxed);
                }
                self.jobs.pending()
            }
            Input::Pass => return self.clean_up_pass().await,
            Input::CancelPass => return self.cancel_pass().await,
            Input::Cancelling(run) => {
                self.actor.metrics.event_stream_wakeups.inc();
                return match self.actor.prefect.read_flow_run(&run).await {
                    Ok(run) => self.cancel(vec![run]).await,
                    Err(e) => {
                        tracing::warn!(flow_run = %run, "cannot read a cancelling run (the next cancel pass tries again): {e}")
                    }
                };
            }
        };
        for key in changed {
            self.reconcile(&key, None).await;
        }
    }

    fn emit_pod_event(&mut self, event: &Event<Pod>) {
        let Some(events) = &self.events else {
            return;
        };
        let (pod, changed, gone) = match event {
            Event::InitApply(pod) => (pod, false, false),
            Event::Apply(pod) => (pod, true, false),
            Event::Delete(pod) => (pod, true, true),
            Event::Init | Event::InitDone => return,
        };
        if let Some(prefect_event) = self.pod_events.observe(pod, changed) {
            events.emit(&prefect_event);
        }
        if gone {
            self.pod_events.forget(pod);
        }
    }

    /// Decides and acts on the Job `key` until nothing is left to do (at most a few rounds:
    /// each read a decision waits for is one).
    async fn reconcile(&mut self, key: &JobKey, mut run: Option<FlowRun>) {
        for _ in 0..4 {
            let Some(tracked) = self.jobs.get(key) else {
                return;
            };
            let actions = decide(key, tracked, run.as_ref(), Timestamp::now(), self.options());
            if actions.is_empty() {
                break;
            }
            match self.actor.perform(&mut self.jobs, key, actions).await {
                Next::Done => break,
                Next::Again(fresh) => run = fresh.map(|run| *run).or(run),
            }
        }
        self.jobs.forget_if_done(key);
    }

    /// Reads the runs of the Jobs still there and decides with them: Jobs still running for
    /// final runs, and the janitor.
    async fn clean_up_pass(&mut self) {
        let mut ids: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, t)| !t.deleting && !t.run.is_empty() && t.job_known())
            .map(|(_, t)| t.run.clone())
            .collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return;
        }
        let runs: HashMap<String, FlowRun> = match self.actor.prefect.flow_runs_by_id(&ids).await {
            Ok(runs) => runs.into_iter().map(|r| (r.id.clone(), r)).collect(),
            Err(e) => {
                tracing::warn!("cannot read the runs of the agent's Jobs: {e}");
                return;
            }
        };
        let keys: Vec<(JobKey, FlowRun)> = self
            .jobs
            .iter()
            .filter_map(|(key, t)| Some((key.clone(), runs.get(&t.run)?.clone())))
            .collect();
        for (key, run) in keys {
            self.reconcile(&key, Some(run)).await;
        }
    }

    async fn cancel_pass(&mut self) {
        // The event stream tells at once; this pass is the safety net.
        if self.stream.as_ref().is_some_and(|s| s.is_connected())
            && self.last_cancel_pass.elapsed() < CONNECTED_CANCEL_PASS
        {
            return;
        }
        self.last_cancel_pass = std::time::Instant::now();
        let pool = self.options().pool.clone();
        match self.actor.prefect.cancelling_flow_runs(&pool).await {
            Ok(runs) => self.cancel(runs).await,
            Err(e) => tracing::warn!("cannot look for cancelled runs: {e}"),
        }
    }

    /// Runs that are cancelling: their Jobs are deleted (pods first), then they are CANCELLED.
    async fn cancel(&mut self, runs: Vec<FlowRun>) {
        for run in runs {
            match self.jobs.key_of_run(&run.id) {
                Some(key) => self.reconcile(&key, Some(run)).await,
                None => self.actor.cancel_untracked(&run).await,
            }
        }
    }
}

/// Whether a watch failed because the API server gave no answer at all.
fn unreachable(error: &watcher::Error) -> bool {
    use watcher::Error;
    match error {
        Error::InitialListFailed(e) | Error::WatchStartFailed(e) | Error::WatchFailed(e) => {
            matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_))
        }
        _ => false,
    }
}
