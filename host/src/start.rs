//! `agent start`: checks everything it can before the first poll (the API, the key, the pool,
//! the plugins, the cluster), then runs the dispatcher and the watch until a signal or
//! --max-polls.

use crate::assemble;
use crate::cluster::{Reachability, Submitter, describe, is_transient, secrets};
use crate::dispatch::{Dispatcher, Parts};
use crate::health::{self, Health};
use crate::metrics::Metrics;
use crate::prefect::emit::{Events, Worker};
use crate::prefect::{PrefectClient, PrefectError, RunLabels, RunLogs, event_stream};
use crate::settings::StartSettings;
use crate::stock::stock_template;
use crate::template_source;
use crate::watch::Observer;
use anyhow::{Context, bail};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long start-up waits for Prefect and Kubernetes before saying they cannot be reached.
const START_PATIENCE: Duration = Duration::from_secs(10);

pub fn main(settings: StartSettings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", crate::text::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

async fn start(settings: StartSettings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let api = settings.prefect.api_url.clone();
    let prefect =
        PrefectClient::new(&settings.prefect, metrics.clone()).map_err(anyhow::Error::msg)?;
    // Fail fast at start-up; later calls ride out a server restart.
    let version = match prefect.with_patience(START_PATIENCE).version().await {
        Ok(version) => version,
        Err(PrefectError::NotFound { .. }) => bail!("{}", not_an_api(&api)),
        Err(e) => return Err(e.into()),
    };
    let pool = match prefect.read_work_pool(&settings.pool).await {
        Ok(pool) => pool,
        Err(e) if e.is_not_found() && settings.create_pool => {
            tracing::info!(
                "work pool {:?} does not exist; creating it with the stock Kubernetes base job template",
                settings.pool
            );
            prefect
                .create_work_pool(&settings.pool, &stock_template())
                .await?
        }
        Err(e) if e.is_not_found() => bail!(
            "work pool {:?} does not exist at {api}; create it (or pass --create-pool)",
            settings.pool
        ),
        Err(e) => return Err(e.into()),
    };
    let replacement = match &settings.job_template {
        Some(location) => Some(template_source::read(location).await?),
        None => None,
    };
    let template = assemble::base_job_template(Some(&pool.base_job_template), replacement.as_ref())
        .with_context(|| {
            format!(
                "--job-template {}",
                settings.job_template.as_deref().unwrap_or_default()
            )
        })?;
    let jobs_namespaces = settings.jobs.namespaces();
    let kube_client = if settings.dispatch.dry_run {
        None
    } else {
        Some(cluster_client(&jobs_namespaces).await?)
    };
    let mut jobs = settings.jobs.clone();
    if let (Some(client), Some((name, key))) = (&kube_client, &settings.jobs.api_key_secret)
        && settings.manage_api_key_secret
    {
        let namespaces = match jobs.namespaces() {
            none if none.is_empty() => vec!["default".to_string()],
            some => some,
        };
        let managed = secrets::ManagedSecret {
            name,
            key,
            agent: &jobs.name,
            api_key: settings.prefect.key.as_deref(),
            auth_string: settings.prefect.auth_string.as_deref(),
        };
        secrets::ensure(client, &namespaces, &managed).await?;
        if settings.prefect.auth_string.is_some() && jobs.api_auth_string_secret.is_none() {
            jobs.api_auth_string_secret =
                Some((name.clone(), secrets::AUTH_STRING_KEY.to_string()));
        }
    }
    let mut plugin_settings = settings.plugins.clone();
    assemble::fetch_remote_plugins(&mut plugin_settings).await?;
    let (_plugin_runtime, chain) = assemble::plugin_chain(&plugin_settings, &jobs)?;
    let plugin_names: Vec<String> = chain.plugins().map(|p| p.name.clone()).collect();
    let reachability = Arc::new(Reachability::default());
    if let Some(client) = &kube_client {
        let (probe, client) = (reachability.clone(), client.clone());
        let namespace = jobs_namespaces
            .first()
            .cloned()
            .unwrap_or_else(|| "default".into());
        tokio::spawn(async move { probe.probe(client, namespace).await });
    }
    let submitter = kube_client.clone().map(|client| {
        Submitter::new(client, metrics.clone(), reachability.clone())
            .with_env_secret(settings.env_secret)
    });
    let health = Arc::new(Health::new(
        settings.dispatch.poll_interval,
        settings.health.unhealthy_after,
        settings.health.heartbeat_file.clone(),
        kube_client.as_ref().map(|_| reachability.clone()),
    ));
    if let Some(address) = settings.health.address {
        let bound = health::serve(address, health.clone(), metrics.clone()).await?;
        tracing::info!("serving /healthz, /readyz and /metrics on http://{bound}");
    }
    let queues = &settings.dispatch.queues;
    tracing::info!(
        "Starting agent {:?} with pool {:?}, queues {}, plugins {}; Prefect {version} at {api}{}",
        jobs.name,
        pool.name,
        if queues.is_empty() {
            "all".to_string()
        } else {
            queues.join(", ")
        },
        plugin_names.join(" → "),
        if settings.dispatch.dry_run {
            " (dry run: no Jobs are created)"
        } else {
            ""
        }
    );
    let logs = RunLogs::start(prefect.clone(), metrics.clone());
    // What Prefect's worker tells the server about itself, this agent tells too.
    let events = Events::start(prefect.clone(), metrics.clone());
    let worker = Arc::new(Worker {
        name: jobs.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pool: pool.clone(),
    });
    let started = worker.started();
    if !settings.dispatch.dry_run {
        events.emit(&started);
    }
    let labels = RunLabels::start(prefect.clone(), worker.run_labels(), metrics.clone());
    let dispatcher = Arc::new(Dispatcher::new(Parts {
        prefect: prefect.clone(),
        logs: logs.clone(),
        labels: labels.clone(),
        submitter,
        chain: Arc::new(chain),
        settings: assemble::agent_settings(&jobs, Some(version.clone())),
        agent_variables: assemble::agent_job_variables(&jobs),
        template,
        pool: pool.clone(),
        options: settings.dispatch.clone(),
        health,
        metrics: metrics.clone(),
        reachability: kube_client.as_ref().map(|_| reachability.clone()),
        worker: worker.clone(),
        events: events.clone(),
    }));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    // Prefect's event stream wakes the dispatcher for new runs and the watch for cancellations;
    // polling stays the safety net (a dry run only polls).
    let wakeups = Arc::new(tokio::sync::Notify::new());
    let (cancelling, cancelled_runs) = tokio::sync::mpsc::channel::<String>(1024);
    let stream = if settings.dispatch.dry_run {
        None
    } else {
        let (pool_events, connected) =
            event_stream::subscribe(&settings.prefect, &pool.id, metrics.clone());
        tokio::spawn(route_events(
            pool_events,
            settings.dispatch.queues.clone(),
            wakeups.clone(),
            cancelling,
            metrics.clone(),
        ));
        Some(connected)
    };
    let observer = kube_client.map(|client| {
        let observer = Observer::new(
            prefect.clone(),
            client,
            logs.clone(),
            metrics.clone(),
            settings.watch.clone(),
        )
        .with_running_count(dispatcher.running_jobs())
        .with_events(events.clone())
        .with_reachability(reachability.clone());
        let mut stopped = stopped.clone();
        let cancelled_runs = tokio_stream::wrappers::ReceiverStream::new(cancelled_runs);
        tokio::spawn(observer.run(cancelled_runs, stream, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    });
    let summary = {
        let mut stopped = stopped.clone();
        dispatcher
            .clone()
            .run(wakeups, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
    };
    // With --max-polls the loop ends by itself; the watch goes with it.
    if let Some(observer) = observer {
        observer.abort();
    }
    logs.flush().await;
    // Labels are a courtesy: the shutdown does not wait long for them.
    let _ = tokio::time::timeout(settings.dispatch.shutdown_grace, labels.flush()).await;
    if !settings.dispatch.dry_run {
        events.emit(&worker.stopped(&started));
    }
    events.flush().await;
    tracing::info!(
        "stopped: {} submitted, {} adopted, {} rejected, {} crashed, {} left for later, {} claimed elsewhere, {} dry runs",
        summary.submitted,
        summary.adopted,
        summary.rejected,
        summary.crashed,
        summary.deferred,
        summary.claimed_elsewhere,
        summary.dry_runs,
    );
    Ok(())
}

/// Sends what the event stream tells where it is news: a scheduled run of a queue this agent
/// serves wakes the dispatcher, a cancelling run goes to the watch.
async fn route_events(
    mut events: tokio::sync::mpsc::Receiver<event_stream::PoolEvent>,
    queues: Vec<String>,
    wakeups: Arc<tokio::sync::Notify>,
    cancelling: tokio::sync::mpsc::Sender<String>,
    metrics: Arc<Metrics>,
) {
    while let Some(event) = events.recv().await {
        match event {
            event_stream::PoolEvent::Scheduled { queue, .. } => {
                let served =
                    queues.is_empty() || queue.as_ref().is_some_and(|q| queues.contains(q));
                if served {
                    metrics.event_stream_wakeups.inc();
                    wakeups.notify_one();
                }
            }
            event_stream::PoolEvent::Cancelling { run } => {
                if cancelling.send(run).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What to say when the API URL answers 404 to the version: most often `/api` is missing.
fn not_an_api(api: &str) -> String {
    if api.ends_with("/api") {
        format!(
            "{api} is not a Prefect 3 API ({api}/admin/version is not found); check PREFECT_API_URL / --api-url"
        )
    } else {
        format!(
            "{api} is not a Prefect API ({api}/admin/version is not found); a Prefect API URL ends in /api: try PREFECT_API_URL={api}/api"
        )
    }
}

/// The Kubernetes client, checked: configured (KUBECONFIG, ~/.kube/config or the pod's
/// service account), and answering a list of the Jobs in each namespace served.
async fn cluster_client(namespaces: &[String]) -> anyhow::Result<kube::Client> {
    let source = kubeconfig_source();
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot configure the Kubernetes client from {source}: {e}. Set KUBECONFIG to a kubeconfig file, have ~/.kube/config, or run in a pod with a service account"
        )
    })?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| {
        anyhow::anyhow!(
            "cannot set up the Kubernetes client for {server} (from {source}): {}",
            describe(&e)
        )
    })?;
    let checked: Vec<&str> = if namespaces.is_empty() {
        vec!["default"]
    } else {
        namespaces.iter().map(String::as_str).collect()
    };
    for namespace in checked {
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let listed = tokio::time::timeout(START_PATIENCE, list_one_job(&jobs)).await;
        let problem = match listed {
            Ok(Ok(_)) => continue,
            Ok(Err(kube::Error::Api(status))) if status.code == 401 => format!(
                "the API server refused the credentials ({} {}); renew them in {source}",
                status.code, status.message
            ),
            Ok(Err(kube::Error::Api(status))) if status.code == 403 => format!(
                "the agent may not list Jobs in namespace {namespace:?} ({}); grant it the Role of `agent install --rbac` there",
                status.message
            ),
            Ok(Err(e)) => format!(
                "{}; check that the cluster is up and that {source} points at it",
                describe(&e)
            ),
            Err(_) => format!(
                "no answer in {}s; check that the cluster is up and that {source} points at it",
                START_PATIENCE.as_secs()
            ),
        };
        bail!(
            "cannot use Kubernetes at {server} (from {source}) in namespace {namespace:?}: {problem}"
        );
    }
    Ok(client)
}

/// One Job listed, the request retried while the failure is transient (a dropped connection,
/// a 5xx, a 429): a cluster that blinks at start-up is not a reason to refuse to start.
async fn list_one_job(jobs: &Api<Job>) -> Result<(), kube::Error> {
    let mut pause = Duration::from_millis(100);
    loop {
        match jobs.list(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_transient(&e) => {
                tracing::debug!(
                    "listing Jobs at start-up failed, retrying: {}",
                    describe(&e)
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Where the Kubernetes configuration comes from, for messages.
fn kubeconfig_source() -> String {
    if let Ok(path) = std::env::var("KUBECONFIG") {
        return format!("KUBECONFIG={path}");
    }
    match dirs::home_dir().map(|home| home.join(".kube").join("config")) {
        Some(path) if path.exists() => path.display().to_string(),
        _ => "the pod's service account (no KUBECONFIG, no ~/.kube/config)".into(),
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
