//! `agent render`: the Job for a flow run described in a file, built and checked exactly as
//! `agent start` builds and checks it, printed instead of created.

use crate::assemble;
use crate::cli::OutputFormat;
use crate::document::read_document;
use crate::job::{self, Tracking};
use crate::plugins::{AgentSettings, CallError, Chain, ChainOutcome, Runtime};
use crate::prefect::models::RunContext;
use crate::request::build_request;
use crate::settings::RenderSettings;
use anyhow::Context;
use serde_json::{Map, Value};
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
            eprintln!("error: {}", crate::text::error_chain(&error));
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
    let renderer = Renderer::new(args)?;
    let (job, outcome) = renderer.render(&run, &template)?;
    if args.explain {
        explain(&outcome);
    }
    let text = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&job)? + "\n",
        OutputFormat::Yaml => crate::yaml::to_string(&job),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing the Job to stdout")?;
    Ok(())
}

/// Builds the Job of flow runs with one plugin chain, as `agent start` would build it.
pub struct Renderer {
    _runtime: Runtime,
    chain: Chain,
    settings: AgentSettings,
    agent_variables: Map<String, Value>,
    namespaces: Vec<String>,
}

impl Renderer {
    /// The chain and settings of `args` (its flow run and output are not read).
    pub fn new(args: &RenderSettings) -> anyhow::Result<Self> {
        let mut plugin_args = args.plugins.clone();
        if plugin_args.plugins.iter().any(crate::plugins::is_remote) {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(assemble::fetch_remote_plugins(&mut plugin_args))?;
        }
        let (runtime, chain) = assemble::plugin_chain(&plugin_args, &args.jobs)?;
        Ok(Renderer {
            _runtime: runtime,
            chain,
            settings: assemble::agent_settings(&args.jobs, args.prefect_version.clone()),
            agent_variables: assemble::agent_job_variables(&args.jobs),
            namespaces: args.jobs.namespaces(),
        })
    }

    /// The checked Job for `run` with the base job `template` (see
    /// `assemble::base_job_template`), and what each plugin did.
    pub fn render(
        &self,
        run: &RunContext,
        template: &Value,
    ) -> anyhow::Result<(Value, ChainOutcome)> {
        let request = build_request(run, self.settings.clone(), &self.agent_variables, template);
        let tracking = Tracking::for_request(&request, self.namespaces.clone());
        let outcome = self
            .chain
            .run(&request)
            .with_context(|| format!("flow run {}", run.flow_run.id))?;
        let job = job::finalize(&outcome, &tracking)
            .with_context(|| format!("flow run {}", run.flow_run.id))?;
        Ok((job, outcome))
    }
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
