//! `agent start`: checks everything it can before the first poll (the API, the key, the pool,
//! the plugins, the cluster), then runs the loop until a signal or --max-polls.

use crate::assemble;
use crate::cli::StartArgs;
use crate::cluster::{Submitter, secrets};
use crate::health::{self, Health};
use crate::lifecycle::{Agent, LoopOptions};
use crate::prefect::PrefectClient;
use crate::stock::stock_template;
use crate::template_source;
use crate::watch::{WatchOptions, Watcher};
use anyhow::{Context, bail};
use std::process::ExitCode;
use std::sync::Arc;

pub fn main(args: StartArgs) -> ExitCode {
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
    match runtime.block_on(start(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    let api = args
        .agent
        .api_url
        .clone()
        .context("no Prefect API: set PREFECT_API_URL or --api-url")?;
    let prefect = PrefectClient::new(&api, args.key.as_deref(), args.auth_string.as_deref())?;
    // Fail fast at start-up; later calls ride out a server restart.
    let version = prefect
        .with_patience(std::time::Duration::from_secs(5))
        .version()
        .await?;
    let pool = match prefect.read_work_pool(&args.pool).await {
        Ok(pool) => pool,
        Err(e) if e.is_not_found() && args.create_pool => {
            tracing::info!(
                "work pool {:?} does not exist; creating it with the stock Kubernetes base job template",
                args.pool
            );
            prefect
                .create_work_pool(&args.pool, &stock_template())
                .await?
        }
        Err(e) if e.is_not_found() => bail!(
            "work pool {:?} does not exist at {api}; create it (or pass --create-pool)",
            args.pool
        ),
        Err(e) => return Err(e.into()),
    };
    let replacement = match &args.job_template {
        Some(location) => Some(template_source::read(location).await?),
        None => None,
    };
    let template = assemble::base_job_template(Some(&pool.base_job_template), replacement.as_ref())
        .with_context(|| {
            format!(
                "--job-template {}",
                args.job_template.as_deref().unwrap_or_default()
            )
        })?;
    let kube_client = if args.dry_run {
        None
    } else {
        Some(kube::Client::try_default()
            .await
            .context("cannot configure the Kubernetes client: set KUBECONFIG, have ~/.kube/config, or run in a pod with a service account")?)
    };
    let mut agent_args = args.agent.clone();
    if let (Some(client), Some((name, key))) = (&kube_client, &args.agent.api_key_secret)
        && args.manage_api_key_secret
    {
        let namespaces = match args.agent.namespaces() {
            none if none.is_empty() => vec!["default".to_string()],
            some => some,
        };
        let managed = secrets::ManagedSecret {
            name,
            key,
            agent: &args.agent.name,
            api_key: args.key.as_deref(),
            auth_string: args.auth_string.as_deref(),
        };
        secrets::ensure(client, &namespaces, &managed).await?;
        if args.auth_string.is_some() && agent_args.api_auth_string_secret.is_none() {
            agent_args.api_auth_string_secret =
                Some((name.clone(), secrets::AUTH_STRING_KEY.to_string()));
        }
    }
    let mut plugin_args = args.plugins.clone();
    assemble::fetch_remote_plugins(&mut plugin_args).await?;
    let (_plugin_runtime, chain) = assemble::plugin_chain(&plugin_args, &agent_args)?;
    let plugin_names: Vec<String> = chain.plugins().map(|p| p.name.clone()).collect();
    let submitter = kube_client
        .clone()
        .map(|client| Submitter::new(client).with_env_secret(args.env_secret));
    let health = Arc::new(Health::new(
        args.poll_interval,
        args.watch.unhealthy_after,
        args.watch.heartbeat_file.clone(),
    ));
    if let Some(address) = args.watch.agent_address {
        let bound = health::serve(address, health.clone()).await?;
        tracing::info!("serving /healthz, /readyz and /metrics on http://{bound}");
    }
    let settings = assemble::agent_settings(&args.agent, Some(version.clone()));
    let options = LoopOptions {
        queues: args.queues.clone(),
        poll_interval: args.poll_interval,
        prefetch: args.prefetch,
        limit: args.limit,
        max_polls: if args.run_once {
            Some(1)
        } else {
            args.max_polls
        },
        dry_run: args.dry_run,
        shutdown_grace: args.shutdown_grace,
        namespaces: args.agent.namespaces(),
    };
    tracing::info!(
        "Starting agent {:?} with pool {:?}, queues {}, plugins {}; Prefect {version} at {api}{}",
        args.agent.name,
        pool.name,
        if args.queues.is_empty() {
            "all".to_string()
        } else {
            args.queues.join(", ")
        },
        plugin_names.join(" → "),
        if args.dry_run {
            " (dry run: no Jobs are created)"
        } else {
            ""
        }
    );
    let agent = Arc::new(Agent::new(
        prefect,
        submitter,
        chain,
        settings,
        assemble::agent_job_variables(&args.agent),
        template,
        pool.clone(),
        options,
        health,
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let watcher = kube_client.map(|client| {
        let options = WatchOptions {
            agent: args.agent.name.clone(),
            pool: pool.name.clone(),
            namespaces: args.agent.namespaces(),
            pod_start_timeout: args.watch.pod_start_timeout,
            schedule_timeout: args.watch.schedule_timeout,
            delete_succeeded_after: args.watch.delete_succeeded_after,
            delete_failed_after: args.watch.delete_failed_after,
            pass_interval: args.poll_interval,
            cancel_interval: args.poll_interval.min(std::time::Duration::from_secs(2)),
        };
        let watcher = Watcher::new(agent.prefect.clone(), client, options);
        let mut stopped = stopped.clone();
        tokio::spawn(watcher.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    });
    let summary = {
        let mut stopped = stopped.clone();
        agent
            .run(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
    };
    // With --max-polls the loop ends by itself; the watcher goes with it.
    if let Some(watcher) = watcher {
        watcher.abort();
    }
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
