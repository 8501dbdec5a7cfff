//! `agent start`: checks everything it can before the first poll (the API, the key, the pool,
//! the plugins, the cluster), then runs the dispatcher and the watch until a signal or
//! --max-polls.

use crate::assemble;
use crate::cluster::{Submitter, secrets};
use crate::dispatch::{Dispatcher, Parts};
use crate::health::{self, Health};
use crate::metrics::Metrics;
use crate::prefect::{PrefectClient, RunLogs};
use crate::settings::StartSettings;
use crate::stock::stock_template;
use crate::template_source;
use crate::watch::Observer;
use anyhow::{Context, bail};
use std::process::ExitCode;
use std::sync::Arc;

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
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(settings: StartSettings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let api = settings.prefect.api_url.clone();
    let prefect = PrefectClient::new(
        &api,
        settings.prefect.key.as_deref(),
        settings.prefect.auth_string.as_deref(),
        metrics.clone(),
    )?;
    // Fail fast at start-up; later calls ride out a server restart.
    let version = prefect
        .with_patience(std::time::Duration::from_secs(5))
        .version()
        .await?;
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
    let kube_client = if settings.dispatch.dry_run {
        None
    } else {
        Some(kube::Client::try_default()
            .await
            .context("cannot configure the Kubernetes client: set KUBECONFIG, have ~/.kube/config, or run in a pod with a service account")?)
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
    let submitter = kube_client
        .clone()
        .map(|client| Submitter::new(client, metrics.clone()).with_env_secret(settings.env_secret));
    let health = Arc::new(Health::new(
        settings.dispatch.poll_interval,
        settings.health.unhealthy_after,
        settings.health.heartbeat_file.clone(),
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
    let dispatcher = Arc::new(Dispatcher::new(Parts {
        prefect: prefect.clone(),
        logs: logs.clone(),
        submitter,
        chain: Arc::new(chain),
        settings: assemble::agent_settings(&jobs, Some(version.clone())),
        agent_variables: assemble::agent_job_variables(&jobs),
        template,
        pool: pool.clone(),
        options: settings.dispatch.clone(),
        health,
        metrics: metrics.clone(),
    }));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let observer = kube_client.map(|client| {
        let observer = Observer::new(
            prefect.clone(),
            client,
            logs.clone(),
            metrics.clone(),
            settings.watch.clone(),
        );
        let mut stopped = stopped.clone();
        tokio::spawn(observer.run(futures::stream::pending(), async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    });
    let summary = {
        let mut stopped = stopped.clone();
        dispatcher
            .run(futures::stream::pending(), async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
    };
    // With --max-polls the loop ends by itself; the watch goes with it.
    if let Some(observer) = observer {
        observer.abort();
    }
    logs.flush().await;
    tracing::info!(
        "stopped: {} submitted, {} adopted, {} rejected, {} crashed, {} claimed elsewhere, {} dry runs",
        summary.submitted,
        summary.adopted,
        summary.rejected,
        summary.crashed,
        summary.claimed_elsewhere,
        summary.dry_runs,
    );
    Ok(())
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
