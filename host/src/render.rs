//! `agent render`: the Job for a flow run described in a file, built and checked exactly as
//! `agent start` builds and checks it, printed instead of created.

use crate::assemble;
use crate::cli::OutputFormat;
use crate::document::read_document;
use crate::job::{self, Tracking};
use crate::plugins::{CallError, ChainOutcome};
use crate::prefect::models::RunContext;
use crate::request::build_request;
use crate::settings::RenderSettings;
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;

/// Exit code when a plugin rejected the run (policy), as opposed to 1 for any failure.
pub const EXIT_REJECTED: u8 = 3;

pub fn main(args: RenderSettings) -> ExitCode {
    match render(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let rejected = matches!(
                error.downcast_ref::<CallError>(),
                Some(CallError::Rejected { .. })
            );
            eprintln!("error: {error:#}");
            ExitCode::from(if rejected { EXIT_REJECTED } else { 1 })
        }
    }
}

fn render(args: &RenderSettings) -> anyhow::Result<()> {
    let document = read_document(&args.flow_run)?;
    let run: RunContext = serde_json::from_value(document)
        .with_context(|| format!("{} does not describe a flow run (expected flow_run, flow, and optionally deployment and work_pool)", args.flow_run.display()))?;
    let replacement = args.template.as_deref().map(read_document).transpose()?;
    let pool_template = run.work_pool.as_ref().map(|p| &p.base_job_template);
    let template =
        assemble::base_job_template(pool_template, replacement.as_ref()).with_context(|| {
            format!(
                "--template {}",
                args.template
                    .as_deref()
                    .unwrap_or_else(|| "".as_ref())
                    .display()
            )
        })?;

    let mut plugin_args = args.plugins.clone();
    if plugin_args.plugins.iter().any(crate::plugins::is_remote) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(assemble::fetch_remote_plugins(&mut plugin_args))?;
    }
    let (_runtime, chain) = assemble::plugin_chain(&plugin_args, &args.jobs)?;
    let settings = assemble::agent_settings(&args.jobs, args.prefect_version.clone());
    let request = build_request(
        &run,
        settings,
        &assemble::agent_job_variables(&args.jobs),
        &template,
    );
    let tracking = Tracking::for_request(&request, args.jobs.namespaces());

    let outcome = chain
        .run(&request)
        .with_context(|| format!("flow run {}", run.flow_run.id))?;
    if args.explain {
        explain(&outcome);
    }
    let job = job::finalize(&outcome, &tracking)
        .with_context(|| format!("flow run {}", run.flow_run.id))?;
    let text = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&job)? + "\n",
        OutputFormat::Yaml => crate::yaml::to_string(&job),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing the Job to stdout")?;
    Ok(())
}

/// Plugin by plugin, what changed and how long it took, on stderr.
fn explain(outcome: &ChainOutcome) {
    let mut err = std::io::stderr().lock();
    for step in &outcome.steps {
        let _ = writeln!(
            err,
            "# plugin {} ({:.3} ms, {} changes)",
            step.plugin,
            step.duration.as_secs_f64() * 1e3,
            step.changes.len()
        );
        for change in &step.changes {
            let _ = writeln!(err, "#   {change}");
        }
        for line in &step.logs {
            let _ = writeln!(err, "#   log {}: {}", line.level, line.message);
        }
    }
}
