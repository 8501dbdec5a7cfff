//! Dispatching runs: poll the pool, claim each scheduled run with a PENDING proposal, build its
//! Job through the plugin chain, create it, record it, tell the user. Reads top to bottom as
//! the data path: `poll` → `claim` → `build_job` → `submit` → `report_submitted`.
//!
//! What happens to the Job after creation (diagnosis, crashes, cancellation, clean-up) is the
//! `watch` module's.

use crate::cluster::{Reachability, SubmitError, Submitted, Submitter};
use crate::health::Health;
use crate::job::{self, InvalidJob, Tracking};
use crate::metrics::{CrashReason, Metrics};
use crate::plugins::{AgentSettings, CallError, Chain};
use crate::prefect::emit::{Events, Worker};
use crate::prefect::models::{Deployment, Flow, FlowRun, RunContext, WorkPool};
use crate::prefect::{
    PrefectClient, PrefectError, ProposalStatus, RunLabels, RunLogs, placeholders,
};
use crate::request::build_request;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

mod due;
mod orphans;
mod ready;

/// Prefect's log levels.
const INFO: u8 = 20;
const WARNING: u8 = 30;
const ERROR: u8 = 40;
/// How long a poll or heartbeat retries before giving up until the next poll.
const POLL_PATIENCE: Duration = Duration::from_secs(5);
/// A poll asks for this many times the submission slots (Prefect's worker asks for more than
/// it can start, too): the runs left over start as slots free up, without a poll each.
const SLOTS_PER_POLL: usize = 4;
/// How long runs a poll gave are started without asking again (at most the poll interval).
const READY_FOR: Duration = Duration::from_secs(10);

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    pub queues: Vec<String>,
    pub poll_interval: Duration,
    /// Runs scheduled up to this far ahead are claimed now, as Prefect's worker prefetches.
    pub prefetch: Duration,
    /// Submissions under way at once.
    pub limit: usize,
    /// This agent's flow runs running at once (its Jobs not finished), as Prefect's worker's
    /// `--limit`; `None`: no limit.
    pub running_limit: Option<u32>,
    /// How often the agent tells Prefect it is alive (Prefect's `PREFECT_WORKER_HEARTBEAT_SECONDS`).
    pub heartbeat_interval: Duration,
    /// A claim older than this whose run has no Job is finished by this agent.
    pub orphan_grace: Duration,
    /// How often claims left unfinished (an agent killed between claim and create) are looked
    /// for.
    pub orphan_interval: Duration,
    pub max_polls: Option<u64>,
    pub dry_run: bool,
    pub shutdown_grace: Duration,
    /// The namespaces Jobs may go to (`--namespace`, `--job-namespace`); empty: any.
    pub namespaces: Vec<String>,
}

/// What dispatching needs for every run, built once at start.
pub struct Parts {
    pub prefect: PrefectClient,
    pub logs: RunLogs,
    /// Where claimed runs are queued for the worker's labels.
    pub labels: RunLabels,
    /// `None` in a dry run.
    pub submitter: Option<Submitter>,
    pub chain: Arc<Chain>,
    pub settings: AgentSettings,
    /// The job variables the agent's own flags set (`--namespace`, `--service-account-name`).
    pub agent_variables: Map<String, Value>,
    pub template: Value,
    pub pool: WorkPool,
    pub options: DispatchOptions,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Whether Kubernetes answers (`None` in a dry run): no run is claimed while it does not.
    pub reachability: Option<Arc<Reachability>>,
    /// The agent as Prefect's worker, and where its events go.
    pub worker: Arc<Worker>,
    pub events: Events,
}

/// Claims and submits runs; one per agent.
pub struct Dispatcher {
    parts: Parts,
    /// This agent's Jobs not finished, as the watch counts them (for `running_limit`).
    running: Arc<AtomicUsize>,
    in_flight: Mutex<HashSet<String>>,
    flows: Mutex<HashMap<String, Flow>>,
}

/// How many runs ended how; counted, not kept, so a long-running agent stays small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub submitted: usize,
    pub adopted: usize,
    /// Claims left for later (Kubernetes out of reach): finished by an agent when it is back.
    pub deferred: usize,
    pub dry_runs: usize,
    pub claimed_elsewhere: usize,
    pub rejected: usize,
    pub crashed: usize,
}

impl Summary {
    fn count(&mut self, outcome: Option<Outcome>) {
        match outcome {
            Some(Outcome::Submitted(_)) => self.submitted += 1,
            Some(Outcome::Adopted(_)) => self.adopted += 1,
            Some(Outcome::Deferred) => self.deferred += 1,
            Some(Outcome::DryRun) => self.dry_runs += 1,
            Some(Outcome::ClaimedElsewhere) => self.claimed_elsewhere += 1,
            Some(Outcome::Rejected) => self.rejected += 1,
            Some(Outcome::Crashed) => self.crashed += 1,
            // A submission task that panicked: its run is logged where it failed.
            None => {}
        }
    }
}

/// What happened to one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Submitted(String),
    Adopted(String),
    /// Claimed, but Kubernetes could not be reached: the claim is finished later.
    Deferred,
    DryRun,
    ClaimedElsewhere,
    Rejected,
    Crashed,
}

impl Dispatcher {
    /// The count of this agent's Jobs not finished, for the watch to keep up to date.
    pub fn running_jobs(&self) -> Arc<AtomicUsize> {
        self.running.clone()
    }

    /// How many more runs may start now: free submission slots, and room under
    /// `running_limit` (Jobs not finished and submissions under way count against it).
    fn room(&self, free_slots: usize) -> usize {
        let Some(limit) = self.parts.options.running_limit else {
            return free_slots;
        };
        let busy = self.running.load(Ordering::Relaxed) + self.in_flight.lock().unwrap().len();
        free_slots.min((limit as usize).saturating_sub(busy))
    }

    pub fn new(parts: Parts) -> Self {
        Dispatcher {
            parts,
            running: Arc::new(AtomicUsize::new(0)),
            in_flight: Mutex::new(HashSet::new()),
            flows: Mutex::new(HashMap::new()),
        }
    }

    /// Polls until `shutdown` resolves or `max_polls` is reached, then lets the submissions
    /// under way finish (within the grace period). `wakeups` makes it poll before the poll
    /// interval is over (Prefect's event stream said a run was scheduled; several wakeups
    /// before a poll make one poll). Returns how the runs ended, counted.
    pub async fn run(
        self: Arc<Self>,
        wakeups: Arc<Notify>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Summary {
        let limit = self.parts.options.limit.max(1);
        let permits = Arc::new(Semaphore::new(limit));
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut summary = Summary::default();
        tokio::pin!(shutdown);
        let mut polls = 0u64;
        let mut next_heartbeat = Instant::now();
        let mut next_orphan_check = Instant::now();
        let mut ready = ready::Ready::new(READY_FOR.min(self.parts.options.poll_interval));
        let mut last_poll_full = false;
        let mut next_due = None;
        'polling: loop {
            let now = Instant::now();
            if now >= next_heartbeat {
                self.heartbeat().await;
                next_heartbeat = now + self.parts.options.heartbeat_interval;
            }
            // Nothing is claimed while Kubernetes is out of reach: it would burn the run.
            if let Some(cluster) = self.parts.reachability.as_ref().filter(|c| !c.is_up()) {
                tokio::select! {
                    _ = cluster.wait_up() => {}
                    _ = &mut shutdown => {
                        self.announce_shutdown(tasks.len());
                        break 'polling;
                    }
                }
            }
            // Wait for a free slot (a full agent has nothing to poll for), not past a shutdown.
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = permits.acquire() => {}
                    _ = &mut shutdown => {
                        self.announce_shutdown(tasks.len());
                        break 'polling;
                    }
                }
            }
            let room = self.room(permits.available_permits());
            if room == 0 {
                // At --limit: nothing to claim until a Job ends.
                tokio::select! {
                    _ = &mut shutdown => {
                        self.announce_shutdown(tasks.len());
                        break 'polling;
                    }
                    _ = tokio::time::sleep(self.parts.options.poll_interval) => {}
                    _ = wakeups.notified() => {}
                }
                continue;
            }
            if !ready.has_runs(Instant::now()) {
                // Claims left unfinished are looked for before the poll, not between the poll
                // and the starts: the look can take seconds on a busy server, and what a poll
                // gave is fresh for one poll interval only (a look in between made every poll
                // stale before its first run started, and the agent claimed nothing).
                let orphans = if !self.parts.options.dry_run && now >= next_orphan_check {
                    next_orphan_check = now + self.parts.options.orphan_interval;
                    self.orphans().await
                } else {
                    Vec::new()
                };
                // Runs handled here whose claims have not landed yet come back too: ask for
                // them on top, so that they do not crowd out new runs.
                let asked = SLOTS_PER_POLL * limit + self.in_flight.lock().unwrap().len();
                let polled_at = chrono::Utc::now();
                let polled = match self.poll(asked, polled_at).await {
                    Ok(runs) => {
                        self.parts.health.polled();
                        self.parts.metrics.polls.inc();
                        runs
                    }
                    Err(e) => {
                        tracing::warn!("polling the pool failed: {e}");
                        Vec::new()
                    }
                };
                // The pool had as many runs as asked for: more may be waiting.
                last_poll_full = polled.len() >= asked;
                let sorted = due::sort(polled, polled_at, self.parts.options.prefetch);
                next_due = sorted.next_due;
                let polled = ready::spread(sorted.due, |len| fastrand::usize(..len));
                ready.refill(polled.into_iter().chain(orphans), Instant::now());
            }
            let mut started = 0;
            while started < room {
                let Some(run) = ready.next(Instant::now()) else {
                    break;
                };
                if self.in_flight.lock().unwrap().contains(&run.id) {
                    continue;
                }
                let permit = tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    _ = &mut shutdown => {
                        self.announce_shutdown(tasks.len());
                        break 'polling;
                    }
                };
                self.in_flight.lock().unwrap().insert(run.id.clone());
                started += 1;
                let agent = self.clone();
                tasks.spawn(async move {
                    let id = run.id.clone();
                    let outcome = agent.handle(run).await;
                    agent.in_flight.lock().unwrap().remove(&id);
                    drop(permit);
                    outcome
                });
            }
            while let Some(done) = tasks.try_join_next() {
                summary.count(done.ok());
            }
            // Runs polled are still waiting, or a full batch was all started: more may be due;
            // go on as soon as a slot is free. Such a round does not count toward --run-once's
            // one poll: it drains what is due.
            if ready.has_runs(Instant::now()) || (last_poll_full && started > 0) {
                continue;
            }
            polls += 1;
            if self.parts.options.max_polls.is_some_and(|max| polls >= max) {
                break;
            }
            // Until the poll interval is over, a run falls due, or the event stream tells of a
            // new run.
            let mut pause = self.parts.options.poll_interval;
            if let Some(at) = next_due {
                pause = pause.min((at - chrono::Utc::now()).to_std().unwrap_or_default());
            }
            tokio::select! {
                _ = &mut shutdown => {
                    self.announce_shutdown(tasks.len());
                    break;
                }
                _ = tokio::time::sleep(pause) => {}
                _ = wakeups.notified() => {}
            }
        }
        let under_way = tasks.len();
        let drain = async {
            while let Some(done) = tasks.join_next().await {
                summary.count(done.ok());
            }
        };
        if tokio::time::timeout(self.parts.options.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period over; {under_way} submission(s) still under way were abandoned: their runs stay PENDING until an agent of this pool finishes their claims (any agent does, --orphan-grace after the claim)"
            );
        }
        summary
    }

    fn announce_shutdown(&self, under_way: usize) {
        self.parts.health.stopping();
        tracing::info!(
            "shutting down: no more polls; waiting up to {:?} for {under_way} submission(s) under way",
            self.parts.options.shutdown_grace
        );
    }

    async fn heartbeat(&self) {
        if let Err(e) = self
            .parts
            .prefect
            .with_patience(POLL_PATIENCE)
            .heartbeat(
                &self.parts.pool.name,
                &self.parts.settings.name,
                self.parts.options.heartbeat_interval,
            )
            .await
        {
            tracing::warn!("heartbeat failed: {e}");
        }
    }

    /// Up to `wanted` runs due before the poll's horizon (see `due`).
    async fn poll(
        &self,
        wanted: usize,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<FlowRun>, PrefectError> {
        let options = &self.parts.options;
        let before = due::horizon(now, options.prefetch, options.poll_interval);
        // A failed poll is retried by the next one; per-run calls are more patient.
        self.parts
            .prefect
            .with_patience(POLL_PATIENCE)
            .scheduled_flow_runs(
                &self.parts.pool.name,
                &self.parts.options.queues,
                before,
                wanted,
            )
            .await
    }

    /// One run, from claim to report. Never fails the loop: every error ends as a state and a
    /// log line on the run.
    async fn handle(&self, mut run: FlowRun) -> Outcome {
        let id = run.id.clone();
        // A claim another agent (or an earlier life of this one) left unfinished.
        let finishing = orphans::claimed_by(&run).map(str::to_string);
        if let Some(claimed_by) = &finishing {
            if let Some(outcome) = self.finish_existing(&run, claimed_by).await {
                return outcome;
            }
        } else {
            match self.claim(&run).await {
                Ok(Some(claim_id)) => {
                    self.parts.metrics.claimed.inc();
                    run.state_id = Some(claim_id);
                    self.label(&id);
                }
                Ok(None) => return Outcome::ClaimedElsewhere,
                Err(e) => {
                    tracing::warn!(flow_run = %id, "could not claim: {e}");
                    return Outcome::ClaimedElsewhere;
                }
            }
        }
        let claimed_at = Instant::now();
        let context = match self.context(run).await {
            Ok(context) => context,
            Err(e) => {
                self.parts.metrics.crash(CrashReason::Prefect);
                let message = format!("Reading the run's deployment or flow failed: {e}");
                return self
                    .report_failure(&id, "CRASHED", &message, Outcome::Crashed)
                    .await;
            }
        };
        let submitted_event = (!self.parts.options.dry_run).then(|| {
            let event = self.parts.worker.submitted(
                &context.flow_run,
                &context.flow,
                context.deployment.as_ref(),
            );
            self.parts.events.emit(&event);
            event
        });
        let job = match self.build_job(context).await {
            Ok(job) => job,
            Err(Failure::Rejected(message)) => {
                self.parts.metrics.rejected.inc();
                return self
                    .report_failure(&id, "FAILED", &message, Outcome::Rejected)
                    .await;
            }
            Err(Failure::Crashed(reason, message)) => {
                self.parts.metrics.crash(reason);
                return self
                    .report_failure(&id, "CRASHED", &message, Outcome::Crashed)
                    .await;
            }
        };
        if self.parts.options.dry_run {
            return self.dry_run(&id, &job).await;
        }
        match self.submit(&job).await {
            Ok(submitted) => {
                self.parts.metrics.submitted.inc();
                self.parts
                    .metrics
                    .claim_to_job
                    .observe(claimed_at.elapsed().as_secs_f64());
                if let Some(event) = &submitted_event {
                    let pid = submitted.infrastructure_pid();
                    self.parts.events.emit(&Worker::executed(event, &pid));
                }
                self.report_submitted(&id, &submitted, finishing.as_deref())
                    .await
            }
            // Kubernetes out of reach: an outage of ours, not the run's. The claim stays; any
            // agent finishes it once Kubernetes answers (see `orphans`).
            Err(e @ SubmitError::Unreachable { .. }) => {
                tracing::warn!(flow_run = %id, "{e}; the claim stays and is finished once Kubernetes answers");
                self.parts.logs.write(
                    &id,
                    WARNING,
                    &format!("Kubernetes could not be reached to create the Job ({e}); the run stays claimed and its Job is created once Kubernetes answers again"),
                );
                Outcome::Deferred
            }
            Err(e) => {
                self.parts.metrics.crash(CrashReason::Kubernetes);
                self.report_failure(
                    &id,
                    "CRASHED",
                    &format!("Submitting the Job failed: {e}"),
                    Outcome::Crashed,
                )
                .await
            }
        }
    }

    /// Proposes PENDING; the claim's state id when accepted, `None` when someone else has it.
    ///
    /// The proposal carries a token unique to this attempt, so that when its answer is lost
    /// (the server went away after accepting) the run can be read back and the claim recognised
    /// as ours instead of leaving the run PENDING with no Job.
    async fn claim(&self, run: &FlowRun) -> Result<Option<String>, PrefectError> {
        let message = orphans::claim_message(&self.parts.settings.name, &claim_token());
        let proposal = match self
            .parts
            .prefect
            .propose_state(&run.id, "PENDING", Some(&message))
            .await
        {
            Ok(proposal) => proposal,
            Err(e @ PrefectError::Unreachable { .. }) => {
                let (state_id, state_message) =
                    self.parts.prefect.read_flow_run_state(&run.id).await?;
                return if state_message.as_deref() == Some(message.as_str()) {
                    tracing::info!(flow_run = %run.id, "the claim's answer was lost, but the claim is ours: {e}");
                    Ok(state_id)
                } else {
                    Err(e)
                };
            }
            Err(e) => return Err(e),
        };
        match proposal.status {
            ProposalStatus::Accept => Ok(proposal.state_id),
            status => {
                tracing::debug!(flow_run = %run.id, ?status, reason = ?proposal.reason, "not claimed");
                Ok(None)
            }
        }
    }

    /// Gives the run the labels Prefect's worker gives the runs it submits, from a queue: a
    /// label is not worth a moment of the submission, and its failure is not the run's.
    fn label(&self, id: &str) {
        if !self.parts.options.dry_run {
            self.parts.labels.label(id);
        }
    }

    async fn build_job(&self, mut context: RunContext) -> Result<Value, Failure> {
        let mut template = self.parts.template.clone();
        placeholders::resolve_run(&self.parts.prefect, &mut context, &mut template)
            .await
            .map_err(|e| {
                Failure::Crashed(
                    CrashReason::Configuration,
                    format!("Resolving the job configuration failed: {e}"),
                )
            })?;
        let request = build_request(
            &context,
            self.parts.settings.clone(),
            &self.parts.agent_variables,
            &template,
        );
        let tracking = Tracking::for_request(&request, self.parts.options.namespaces.clone());
        // Plugins, the diff and the checks are CPU work: keep them off the async runtime's
        // threads.
        let chain = self.parts.chain.clone();
        let (outcome, steps) = tokio::task::spawn_blocking(move || {
            let outcome = chain.run(&request)?;
            let steps: Vec<(String, Duration)> = outcome
                .steps
                .iter()
                .map(|s| (s.plugin.clone(), s.duration))
                .collect();
            Ok::<_, CallError>((job::finalize(&outcome, &tracking), steps))
        })
        .await
        .map_err(|e| {
            Failure::Crashed(
                CrashReason::Plugin,
                format!("the plugin chain panicked: {e}"),
            )
        })?
        .map_err(|e| match e {
            CallError::Rejected { plugin, reason } => {
                Failure::Rejected(format!("Rejected by plugin {plugin}: {reason}"))
            }
            fault => Failure::Crashed(
                CrashReason::Plugin,
                format!("Building the Job failed: {fault}"),
            ),
        })?;
        for (plugin, duration) in steps {
            self.parts.metrics.plugin_call(&plugin, duration);
        }
        outcome.map_err(|e: InvalidJob| {
            if e.is_namespace_refused() {
                Failure::Rejected(format!("The Job was refused: {e}"))
            } else {
                Failure::Crashed(
                    CrashReason::InvalidJob,
                    format!("Building the Job failed: {e}"),
                )
            }
        })
    }

    async fn context(&self, run: FlowRun) -> Result<RunContext, PrefectError> {
        let cached = self.flows.lock().unwrap().get(&run.flow_id).cloned();
        let flow = match cached {
            Some(flow) => flow,
            None => {
                let flow = self.parts.prefect.read_flow(&run.flow_id).await?;
                self.flows
                    .lock()
                    .unwrap()
                    .insert(run.flow_id.clone(), flow.clone());
                flow
            }
        };
        // Deployments change (job variables): read each time, as Prefect's worker does.
        let deployment: Option<Deployment> = match &run.deployment_id {
            Some(id) => Some(self.parts.prefect.read_deployment(id).await?),
            None => None,
        };
        Ok(RunContext {
            flow_run: run,
            flow,
            deployment,
            work_pool: Some(self.parts.pool.clone()),
        })
    }

    async fn submit(&self, job: &Value) -> Result<Submitted, SubmitError> {
        self.parts
            .submitter
            .as_ref()
            .expect("a submitter outside dry runs")
            .create(job)
            .await
    }

    /// Records the Job on the run and says so in its log; `finished_for` names the agent
    /// whose claim this one finished.
    async fn report_submitted(
        &self,
        id: &str,
        submitted: &Submitted,
        finished_for: Option<&str>,
    ) -> Outcome {
        let pid = submitted.infrastructure_pid();
        let job = pid.replace(':', "/");
        let mut message = match (submitted.adopted, finished_for) {
            (true, Some(_)) => format!("Flow run is running as Kubernetes Job {job}"),
            (true, None) => format!(
                "Flow run is running as Kubernetes Job {job} (created by an earlier attempt of this claim)"
            ),
            (false, _) => format!("Submitted flow run to Kubernetes as Job {job}"),
        };
        if let Some(claimed_by) = finished_for {
            self.parts.metrics.claims_finished.inc();
            message.push_str(&format!(
                " (the claim of agent {claimed_by}, left unfinished, was finished by agent {})",
                self.parts.settings.name
            ));
        }
        // The line first, then the Job on the run: an agent killed in between leaves a run with
        // no Job recorded, which any agent finishes (line included).
        self.parts.logs.write_confirmed(id, INFO, &message).await;
        if let Err(e) = self.parts.prefect.set_infrastructure_pid(id, &pid).await {
            tracing::warn!(flow_run = %id, job = %pid, "created the Job but could not record it on the run: {e}");
        }
        tracing::info!(flow_run = %id, job = %pid, adopted = submitted.adopted, "submitted");
        if submitted.adopted {
            Outcome::Adopted(pid)
        } else {
            Outcome::Submitted(pid)
        }
    }

    async fn report_failure(
        &self,
        id: &str,
        state: &str,
        message: &str,
        outcome: Outcome,
    ) -> Outcome {
        tracing::warn!(flow_run = %id, state, "{message}");
        // In the run's log before its state changes: whoever looks finds why.
        self.parts.logs.write_confirmed(id, ERROR, message).await;
        match self
            .parts
            .prefect
            .propose_state(id, state, Some(message))
            .await
        {
            Ok(p) if p.status == ProposalStatus::Accept => {}
            Ok(p) => {
                tracing::warn!(flow_run = %id, "Prefect did not accept {state}: {:?} {}", p.status, p.reason.unwrap_or_default())
            }
            Err(e) => tracing::error!(flow_run = %id, "could not report {state}: {e}"),
        }
        outcome
    }

    /// Prints the Job instead of creating it and gives the run back to the pool.
    async fn dry_run(&self, id: &str, job: &Value) -> Outcome {
        println!(
            "---\n# flow run {id}\n{}",
            crate::yaml::to_string(job).trim_end()
        );
        match self
            .parts
            .prefect
            .propose_state(id, "SCHEDULED", Some("Released by a dry run of the agent"))
            .await
        {
            Ok(p) if p.status == ProposalStatus::Accept => {}
            Ok(p) => {
                tracing::warn!(flow_run = %id, "could not release the claim: {:?} {}", p.status, p.reason.unwrap_or_default())
            }
            Err(e) => tracing::warn!(flow_run = %id, "could not release the claim: {e}"),
        }
        Outcome::DryRun
    }
}

/// A token unique enough for one claim attempt.
fn claim_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

enum Failure {
    /// A plugin's policy said no: FAILED, not retried.
    Rejected(String),
    /// Anything else: CRASHED, with the reason the metrics count it under.
    Crashed(CrashReason, String),
}
