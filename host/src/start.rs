//! `agent start`: checks everything it can before the first poll (the API, the key, the pool,
//! the plugins, the cluster), then runs the loop until a signal or --max-polls.

use crate::assemble;
use crate::cli::StartArgs;
use crate::cluster::Submitter;
use crate::lifecycle::{Agent, LoopOptions};
use crate::prefect::PrefectClient;
use crate::stock::stock_template;
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
    let replacement = args
        .job_template
        .as_deref()
        .map(assemble::read_document)
        .transpose()?;
    let template = assemble::base_job_template(Some(&pool.base_job_template), replacement.as_ref())
        .with_context(|| {
            format!(
                "--job-template {}",
                args.job_template
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        })?;
    let (_plugin_runtime, chain) = assemble::plugin_chain(&args.plugins)?;
    let plugin_names: Vec<String> = chain.plugins().map(|p| p.name.clone()).collect();
    let submitter = if args.dry_run {
        None
    } else {
        let client = kube::Client::try_default()
            .await
            .context("cannot configure the Kubernetes client: set KUBECONFIG, have ~/.kube/config, or run in a pod with a service account")?;
        Some(Submitter::new(client))
    };
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
        namespace: args.agent.namespace.clone(),
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
        pool,
        options,
    ));
    let summary = agent.run(shutdown_signal()).await;
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
